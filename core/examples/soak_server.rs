//! The Rust face of the soak run (scripts/soak.sh): an echo server that
//! also answers the soak client's commands, the same on every face
//! (tests/harness/soak_server.py and soak_server.php are the others).
//!
//! ```text
//! cargo run --release -p polysocket --features runtime --example soak_server -- --port 9001
//!     [--host H] [--max-send-buffer BYTES]
//! ```
//!
//! Every message is echoed as it came, except text starting with `soak:`:
//! * `soak:stats`: answered with `soak:stats {json}`, what the process
//!   knows of itself (open connections, tokio's alive tasks, bytes held
//!   for clients, malloc's live small blocks), sampled by the client next
//!   to /proc;
//! * `soak:bcast GROUP TEXT`: `soak:b GROUP TEXT` to every member of GROUP;
//! * `soak:flood N SIZE`: N text messages of SIZE bytes to this client at
//!   once (a client that does not read them must be cut off by
//!   `max_send_buffer`).
//!
//! A client joins the group named in its query (`?group=G`) when it opens.

use std::net::ToSocketAddrs;
use std::sync::{Arc, OnceLock};

use polysocket::runtime::{Conn, Handler, OpenInfo, Server, ServerConfig, ServerHandle};
use polysocket::{Incoming, Message};

/// The bytes malloc has handed out and not had back, in KiB (glibc:
/// `mallinfo2().uordblks`, every arena). soak.sh maps allocations of 64 KiB
/// and more apart (`MALLOC_MMAP_THRESHOLD_`), so messages in flight hardly
/// count: what a leak of connection state, tasks or table entries would
/// leave behind does, without the allocator's keep of freed pages that
/// RSS includes.
fn heap_kib() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and only reads malloc's
        // state under its own locks (glibc 2.33 and later).
        let info = unsafe { libc::mallinfo2() };
        Some(info.uordblks / 1024)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

#[derive(Default)]
struct Soak {
    handle: OnceLock<ServerHandle>,
}

impl Soak {
    fn command(&self, conn: &mut Conn<'_>, command: &str) {
        let Some(handle) = self.handle.get() else {
            return;
        };
        let mut words = command.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("stats"), _, _) => {
                let tasks = tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks();
                let stats = format!(
                    "soak:stats {{\"connections\":{},\"tasks\":{tasks},\"buffered\":{},\"over_budget\":{}{}}}",
                    handle.connection_count(),
                    handle.buffered_bytes(),
                    handle.over_budget_closes(),
                    heap_kib().map_or(String::new(), |kib| format!(",\"heap_kib\":{kib}")),
                );
                // Refused only once the sampler's connection is closing:
                // the client then reports the missing answer itself.
                let _ = conn.send(&Message::text(stats));
            }
            (Some("bcast"), Some(group), Some(text)) => {
                handle.broadcast_group(group, Message::text(format!("soak:b {group} {text}")));
            }
            (Some("flood"), Some(n), Some(size)) => {
                let (n, size) = (n.parse().unwrap_or(0), size.parse().unwrap_or(0));
                let message = Message::text("f".repeat(size));
                for _ in 0..n {
                    if conn.send(&message).is_err() {
                        break;
                    }
                }
            }
            _ => {
                // Refused only when already closing, which ends it anyway.
                let _ = conn.close(Some(1003), "unknown soak command");
            }
        }
    }
}

impl Handler for Soak {
    fn on_open(&self, _conn: &mut Conn<'_>, info: &Arc<OpenInfo>) {
        let group = info
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("group="));
        if let (Some(group), Some(handle)) = (group, self.handle.get()) {
            handle.join(info.id, group);
        }
    }

    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        match message.as_text().and_then(|t| t.strip_prefix("soak:")) {
            Some(command) => {
                let command = command.to_owned();
                self.command(conn, &command);
            }
            // Refused only once the connection is closing: nothing to answer.
            None => {
                let _ = conn.forward(message);
            }
        }
    }
}

fn main() {
    let (mut host, mut port) = ("127.0.0.1".to_string(), 9001u16);
    let mut config = ServerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--host", Some(v)) => host = v,
            ("--port", Some(v)) => port = v.parse().expect("--port takes a number"),
            ("--max-send-buffer", Some(v)) => {
                config.max_send_buffer = v.parse().expect("--max-send-buffer takes a number")
            }
            _ => {
                eprintln!("usage: soak_server [--host H] [--port P] [--max-send-buffer BYTES]");
                std::process::exit(2);
            }
        }
    }
    let Some(addr) = (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    else {
        eprintln!("soak_server: cannot resolve {host}:{port}");
        std::process::exit(2)
    };
    let soak = Arc::new(Soak::default());
    let server = Server::start(addr, config, soak.clone()).unwrap_or_else(|e| {
        eprintln!("soak_server: cannot serve on {addr}: {e}");
        std::process::exit(1)
    });
    let _ = soak.handle.set(server.handle());
    println!("soak server on ws://{}", server.local_addr());
    server.wait();
}
