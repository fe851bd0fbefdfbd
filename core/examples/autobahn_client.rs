//! The tokio client against the Autobahn|Testsuite fuzzing server
//! (`wstest -m fuzzingserver`): asks for the number of cases, runs each
//! one echoing every message until the server closes, then has the
//! reports written. `scripts/autobahn.sh` runs it (`AB_TARGET=client`).
//!
//! cargo run --release -p polysocket --features runtime --example autobahn_client -- ws://127.0.0.1:9001 polysocket-rust

use std::sync::Arc;

use polysocket::runtime::client::{connect, ConnectOptions};
use polysocket::{Config, Event, Message};

fn options() -> ConnectOptions {
    // Section 9 sends messages of up to 16 MiB.
    let config = Config {
        max_frame_size: 64 << 20,
        max_message_size: 64 << 20,
        max_decompressed_size: 64 << 20,
        ..Config::default()
    };
    ConnectOptions {
        config: Arc::new(config),
        ..ConnectOptions::default()
    }
}

/// Echo every message of one connection until it ends.
async fn echo(url: &str) -> Option<Message> {
    let mut ws = match connect(url, options()).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("{url}: {e}");
            return None;
        }
    };
    let mut first = None;
    loop {
        match ws.recv().await {
            Ok(Some(Event::Message(m))) => {
                if first.is_none() {
                    first = Some(m.clone());
                }
                // The server may have started closing: nothing to echo then.
                let _ = ws.send(&m).await;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return first,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let agent = args.next().unwrap_or_else(|| "polysocket-rust".into());
    let count = match echo(&format!("{base}/getCaseCount")).await {
        Some(Message::Text(t)) => String::from_utf8_lossy(&t).parse::<u32>().unwrap_or(0),
        _ => 0,
    };
    if count == 0 {
        eprintln!("no case count from {base}");
        std::process::exit(2);
    }
    for case in 1..=count {
        echo(&format!("{base}/runCase?case={case}&agent={agent}")).await;
    }
    echo(&format!("{base}/updateReports?agent={agent}")).await;
    println!("{count} cases run");
}
