//! The echo server on the tokio runtime: every path, every draft,
//! permessage-deflate (and deflate-frame, deflate-stream) on.
//!
//! ```text
//! cargo run --release -p polysocket --features runtime --example echo -- --host 127.0.0.1 --port 9001
//!     [--tls-cert cert.pem --tls-key key.pem] [--workers N]
//!     [--max-message-size BYTES] [--max-buffered-total BYTES]
//!     [--ping-interval SECS] [--pong-timeout SECS] [--handshake-timeout SECS]
//!     [--page FILE] [--log] [--no-http2]
//! ```
//!
//! A plain `GET` (no Upgrade) gets a test page whose script connects back
//! and echoes text and binary messages (`--page` serves another file
//! instead). `--log` prints a line per opened connection (`open ID TARGET
//! http2=BOOL extension=NAME|none`) and per plain request (`http METHOD
//! TARGET`) to stdout. With TLS, browsers open their WebSockets as HTTP/2
//! streams (RFC 8441) unless `--no-http2`. With TLS, SIGHUP reloads the
//! certificate and key (a broken file is reported and the old one kept).

mod shared;

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use polysocket::http::RequestHead;
use polysocket::runtime::{tls, Conn, Handler, OpenInfo, Server, ServerConfig};
use polysocket::Incoming;

/// The test page (shared with the blocking example).
const PAGE: &str = include_str!("page.html");

struct Echo {
    /// What a plain request gets: [`PAGE`] or `--page`'s file.
    page: String,
    /// `--log`: report opens and plain requests on stdout.
    log: bool,
}

impl Handler for Echo {
    fn http(&self, request: &RequestHead) -> Option<Vec<u8>> {
        if self.log {
            println!("http {} {}", request.method, request.target);
        }
        Some(shared::page_response(&self.page))
    }

    fn on_open(&self, _conn: &mut Conn<'_>, info: &Arc<OpenInfo>) {
        if self.log {
            let query = if info.query.is_empty() { "" } else { "?" };
            println!(
                "open {} {}{query}{} http2={} extension={}",
                info.id,
                info.path,
                info.query,
                info.http2,
                info.extensions.name().unwrap_or("none")
            );
        }
    }

    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        // Refused only once the connection is closing: nothing to answer.
        let _ = conn.forward(message);
    }
}

/// A duration flag's value: seconds, fractions allowed (`0.5`).
fn seconds(flag: &str, value: &str) -> Duration {
    value
        .parse()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or_else(|| {
            eprintln!("echo: {flag} takes a number of seconds");
            std::process::exit(2)
        })
}

fn main() {
    let mut host = "127.0.0.1".to_string();
    let mut port = 9001u16;
    let mut cert: Option<PathBuf> = None;
    let mut key: Option<PathBuf> = None;
    let mut config = ServerConfig::default();
    let mut echo = Echo {
        page: PAGE.to_string(),
        log: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--log" {
            echo.log = true;
            continue;
        }
        if arg == "--no-http2" {
            // HTTP/1.1 upgrades only, also over TLS.
            config.http2 = false;
            continue;
        }
        let value = args.next();
        match (arg.as_str(), value) {
            ("--host", Some(v)) => host = v,
            ("--port", Some(v)) => port = v.parse().expect("--port takes a number"),
            ("--tls-cert", Some(v)) => cert = Some(v.into()),
            ("--tls-key", Some(v)) => key = Some(v.into()),
            ("--workers", Some(v)) => config.workers = v.parse().expect("--workers takes a number"),
            ("--max-message-size", Some(v)) => {
                let size = v.parse().expect("--max-message-size takes a number");
                let mut protocol = (*config.protocol).clone();
                protocol.max_frame_size = size;
                protocol.max_message_size = size;
                protocol.max_decompressed_size = size;
                config.protocol = Arc::new(protocol);
            }
            ("--max-buffered-total", Some(v)) => {
                config.max_buffered_total = v.parse().expect("--max-buffered-total takes a number")
            }
            ("--ping-interval", Some(v)) => config.ping_interval = Some(seconds(&arg, &v)),
            ("--pong-timeout", Some(v)) => config.pong_timeout = seconds(&arg, &v),
            ("--handshake-timeout", Some(v)) => config.handshake_timeout = seconds(&arg, &v),
            ("--page", Some(v)) => {
                echo.page = std::fs::read_to_string(&v).unwrap_or_else(|e| {
                    eprintln!("echo: --page {v}: {e}");
                    std::process::exit(2)
                })
            }
            _ => {
                eprintln!(
                    "usage: echo [--host H] [--port P] [--tls-cert PEM --tls-key PEM] [--workers N] \
                     [--max-message-size BYTES] [--max-buffered-total BYTES] \
                     [--ping-interval SECS] [--pong-timeout SECS] [--handshake-timeout SECS] \
                     [--page FILE] [--log] [--no-http2]"
                );
                std::process::exit(2);
            }
        }
    }
    if let (Some(cert), Some(key)) = (&cert, &key) {
        let certificates = tls::Certificates::load(tls::CertificateFiles::new(cert, key), vec![])
            .and_then(|certificates| config.serve_certificates(certificates));
        if let Err(e) = certificates {
            eprintln!("echo: {e}");
            std::process::exit(2)
        }
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
    let server = Server::start(addr, config, Arc::new(echo)).unwrap_or_else(|e| {
        eprintln!("echo: cannot serve on {addr}: {e}");
        std::process::exit(1)
    });
    println!("echo server on {scheme}://{}", server.local_addr());
    // Ctrl-C (or SIGTERM on Unix): close every connection with 1001, then exit.
    let handle = server.handle();
    #[cfg(unix)]
    if cert.is_some() {
        let handle = handle.clone();
        server.runtime().spawn(async move {
            let kind = tokio::signal::unix::SignalKind::hangup();
            let mut hangup = tokio::signal::unix::signal(kind).expect("SIGHUP handler");
            while hangup.recv().await.is_some() {
                match handle.reload_tls() {
                    Ok(()) => println!("echo: certificate reloaded"),
                    Err(e) => eprintln!("echo: certificate not reloaded (the old one stays): {e}"),
                }
            }
        });
    }
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
