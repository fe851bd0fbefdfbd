//! An echo server on `std::net`, one thread per connection: the smallest
//! complete driver of the sans-I/O engine, speaking every draft.
//!
//! ```text
//! cargo run --release -p polysocket --example echo_blocking -- --host 127.0.0.1 --port 9001
//! ```
//!
//! A plain `GET /` (no Upgrade) gets a test page whose JavaScript connects
//! back and echoes text and binary messages. The production server is the
//! tokio runtime; this example shows the byte flow every driver follows:
//! read → handshake `feed` → `Connection::receive` → `poll` → `send_*` →
//! write `pending_output`.

mod shared;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use polysocket::handshake::{reject_response, Hooks, Progress, ServerHandshake};
use polysocket::protocol::State;
use polysocket::{Config, Connection, Event};

/// The test page (shared with the tokio example).
const PAGE: &str = include_str!("page.html");

struct EchoHooks;
impl Hooks for EchoHooks {}

fn main() {
    let mut host = "127.0.0.1".to_string();
    let mut port = 9001u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--host", Some(v)) => host = v,
            ("--port", Some(v)) => port = v.parse().expect("--port takes a number"),
            _ => {
                eprintln!("usage: echo_blocking [--host HOST] [--port PORT]");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind((host.as_str(), port)).expect("bind");
    println!("echo server on http://{}", listener.local_addr().unwrap());
    let config = Arc::new(Config::default());
    for stream in listener.incoming().flatten() {
        let config = config.clone();
        std::thread::spawn(move || {
            let peer = stream.peer_addr().ok();
            if let Err(e) = serve(stream, config) {
                eprintln!("{peer:?}: {e}");
            }
        });
    }
}

fn serve(mut stream: TcpStream, config: Arc<Config>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut handshake = ServerHandshake::new(config.clone());
    let mut head = Vec::new();
    // Opening handshake.
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        match handshake.feed(&buf[..n]) {
            Ok(Progress::NeedMore) => continue,
            Ok(Progress::Ready) => break,
            Err(error) => {
                let plain_get = polysocket::http::parse_request(&head, &config)
                    .ok()
                    .flatten()
                    .is_some_and(|(req, _)| req.headers.get("upgrade").is_none());
                let answer = if plain_get {
                    shared::page_response(PAGE)
                } else {
                    reject_response(&error, &config)
                };
                return stream.write_all(&answer);
            }
        }
    }
    let completed = match handshake.complete(&EchoHooks, false) {
        Ok(c) => c,
        Err(rejected) => return stream.write_all(&rejected.response),
    };
    stream.write_all(&completed.response)?;
    println!("open: {}", completed.session.draft);
    stream.set_read_timeout(None)?;
    let mut conn = Connection::from_completed(config, completed);
    // Frames: echo every message until the close handshake ends.
    loop {
        loop {
            match conn.poll() {
                Ok(Some(Event::Message(m))) => {
                    // The peer may have started closing; nothing to echo then.
                    let _ = conn.send(&m);
                }
                Ok(Some(Event::Close(frame))) => println!("close: {}", frame.code),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    println!("protocol error: {e} (close {})", e.close_code());
                    break;
                }
            }
        }
        stream.write_all(conn.pending_output())?;
        let written = conn.pending_output().len();
        conn.advance_output(written);
        if conn.state() == State::Closed {
            return Ok(());
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            if let Some(Event::Close(frame)) = conn.receive_eof() {
                println!("dropped: {}", frame.code);
            }
            return Ok(());
        }
        conn.receive(&buf[..n]);
    }
}
