//! A chat node: serves the chat page at `/` and the room at `/chat`; every
//! message goes to everyone in the room on every node of the cluster. It
//! speaks the JSON events of the Python and PHP chat examples
//! (`{"event": "join" | "message" | "leave", "name", "text"}`), so nodes
//! of the three faces share one room.
//!
//! ```text
//! redis-server --port 6379 --save '' --appendonly no &
//! cargo run --release -p polysocket --features cluster --example chat_node -- \
//!     --port 9002 --cluster redis://127.0.0.1:6379 --namespace chat
//! cargo run --release -p polysocket --features cluster --example chat_node -- \
//!     --port 9003 --cluster redis://127.0.0.1:6379 --namespace chat
//! ```
//!
//! `--reuse-port` lets several nodes share one port. Without `--cluster` the
//! node runs alone.

mod shared;

use std::collections::HashMap;
use std::fmt::Write;
use std::net::ToSocketAddrs;
use std::sync::{Arc, Mutex, OnceLock};

use polysocket::http::RequestHead;
use polysocket::runtime::{
    CloseInfo, ClusterConfig, Conn, ConnId, Handler, OpenInfo, Server, ServerConfig, ServerHandle,
};
use polysocket::{Incoming, Message};

/// The page of the Python example, shared by every face.
const PAGE: &str = include_str!("../../examples/python/chat.html");
const ROOM: &str = "chat";

#[derive(Default)]
struct Chat {
    handle: OnceLock<ServerHandle>,
    names: Mutex<HashMap<ConnId, String>>,
}

impl Chat {
    /// Tell the whole room, on every node.
    fn tell(&self, event: &str, name: &str, text: Option<&str>) {
        let mut json = format!("{{\"event\":{},\"name\":{}", quote(event), quote(name));
        if let Some(text) = text {
            let _ = write!(json, ",\"text\":{}", quote(text));
        }
        json.push('}');
        if let Some(handle) = self.handle.get() {
            handle.broadcast_group(ROOM, Message::text(json));
        }
    }
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Handler for Chat {
    fn http(&self, _request: &RequestHead) -> Option<Vec<u8>> {
        Some(shared::page_response(PAGE))
    }

    fn on_open(&self, _conn: &mut Conn<'_>, info: &Arc<OpenInfo>) {
        let name = info
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("name="))
            .map(|n| n.chars().take(32).collect::<String>())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("guest-{}", info.id));
        self.names.lock().unwrap().insert(info.id, name.clone());
        if let Some(handle) = self.handle.get() {
            handle.join(info.id, ROOM);
        }
        self.tell("join", &name, None);
    }

    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        let Some(text) = message.as_text().map(str::trim) else {
            return;
        };
        if text.is_empty() {
            return;
        }
        let text: String = text.chars().take(4096).collect();
        let name = self.names.lock().unwrap().get(&conn.id()).cloned();
        if let Some(name) = name {
            self.tell("message", &name, Some(&text));
        }
    }

    fn on_close(&self, id: ConnId, _close: &CloseInfo) {
        let name = self.names.lock().unwrap().remove(&id);
        if let Some(name) = name {
            self.tell("leave", &name, None);
        }
    }
}

fn main() {
    let (mut host, mut port) = ("127.0.0.1".to_string(), 9002u16);
    let (mut cluster, mut namespace) = (None, "chat".to_string());
    let mut config = ServerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--reuse-port" {
            config.reuse_port = true;
            continue;
        }
        match (arg.as_str(), args.next()) {
            ("--host", Some(v)) => host = v,
            ("--port", Some(v)) => port = v.parse().expect("--port takes a number"),
            ("--cluster", Some(v)) => cluster = Some(v),
            ("--namespace", Some(v)) => namespace = v,
            _ => {
                eprintln!(
                    "usage: chat_node [--host H] [--port P] [--cluster URL] [--namespace NS] [--reuse-port]"
                );
                std::process::exit(2);
            }
        }
    }
    config.cluster = cluster.map(|url| ClusterConfig::new(url, namespace));
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| {
            eprintln!("chat_node: cannot resolve {host}:{port}");
            std::process::exit(2)
        });
    let chat = Arc::new(Chat::default());
    let server = Server::start(addr, config, chat.clone()).unwrap_or_else(|e| {
        eprintln!("chat_node: {e}");
        std::process::exit(2)
    });
    let handle = server.handle();
    let _ = chat.handle.set(handle.clone());
    match handle.node_id() {
        Some(node) => println!("chat node {node} on http://{}/", server.local_addr()),
        None => println!("chat (single node) on http://{}/", server.local_addr()),
    }
    server.wait();
}
