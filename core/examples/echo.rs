//! The echo server on the tokio runtime: every path, every draft,
//! permessage-deflate (and deflate-frame, deflate-stream) on.
//!
//! ```text
//! cargo run --release -p polysocket --features runtime --example echo -- --host 127.0.0.1 --port 9001
//!     [--tls-cert cert.pem --tls-key key.pem] [--workers N]
//! ```
//!
//! A plain `GET` (no Upgrade) gets a test page whose script connects back
//! and echoes text and binary messages.

mod shared;

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;

use polysocket::http::RequestHead;
use polysocket::runtime::{tls, Conn, Handler, Server, ServerConfig};
use polysocket::Incoming;

/// The test page (shared with the blocking example).
const PAGE: &str = include_str!("page.html");

struct Echo;

impl Handler for Echo {
    fn http(&self, _request: &RequestHead) -> Option<Vec<u8>> {
        Some(shared::page_response(PAGE))
    }

    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        // Refused only once the connection is closing: nothing to answer.
        let _ = conn.forward(message);
    }
}

fn main() {
    let mut host = "127.0.0.1".to_string();
    let mut port = 9001u16;
    let mut cert: Option<PathBuf> = None;
    let mut key: Option<PathBuf> = None;
    let mut config = ServerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--host", Some(v)) => host = v,
            ("--port", Some(v)) => port = v.parse().expect("--port takes a number"),
            ("--tls-cert", Some(v)) => cert = Some(v.into()),
            ("--tls-key", Some(v)) => key = Some(v.into()),
            ("--workers", Some(v)) => config.workers = v.parse().expect("--workers takes a number"),
            _ => {
                eprintln!("usage: echo [--host H] [--port P] [--tls-cert PEM --tls-key PEM] [--workers N]");
                std::process::exit(2);
            }
        }
    }
    if let (Some(cert), Some(key)) = (&cert, &key) {
        config.tls = Some(tls::server_config(cert, key).unwrap_or_else(|e| {
            eprintln!("echo: {e}");
            std::process::exit(2)
        }));
    }
    let Some(addr) = (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        eprintln!("echo: cannot resolve {host}:{port}");
        std::process::exit(2)
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let server = Server::start(addr, config, Arc::new(Echo)).unwrap_or_else(|e| {
        eprintln!("echo: cannot serve on {addr}: {e}");
        std::process::exit(1)
    });
    println!("echo server on {scheme}://{}", server.local_addr());
    // Ctrl-C (or SIGTERM on Unix): close every connection with 1001, then exit.
    let handle = server.handle();
    server.runtime().spawn(async move {
        #[cfg(unix)]
        {
            let kind = tokio::signal::unix::SignalKind::terminate();
            let mut term = tokio::signal::unix::signal(kind).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        handle.stop();
    });
    server.wait();
}
