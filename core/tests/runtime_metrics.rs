//! The server's metrics over real sockets: what the clients did —
//! connections on four drafts with and without compression, messages both
//! ways, handshakes refused by origin and by the per-IP limit, a message
//! over the size limit, closes with and without a code — is what
//! `ServerHandle::stats()` reports and what `GET /metrics` serves, on the
//! server's own port and on a port of its own.
#![allow(clippy::field_reassign_with_default)] // tests tweak one limit at a time

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use polysocket::runtime::{Conn, Handler, Server, ServerConfig, ServerHandle, Stats};
use polysocket::{Config, Draft, Event, Incoming};

mod common;
use common::Client;

const ORIGIN: &str = "http://good.example";
const LIMIT: usize = 1000;

struct Echo;

impl Handler for Echo {
    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        let _ = conn.forward(message);
    }
}

fn start(metrics: bool) -> Server {
    let mut protocol = Config::default();
    protocol.max_message_size = LIMIT;
    protocol.max_frame_size = LIMIT;
    protocol.max_decompressed_size = LIMIT;
    let mut config = ServerConfig::default();
    config.protocol = Arc::new(protocol);
    config.allowed_origins = Some(vec![ORIGIN.into()]);
    config.max_connections_per_ip = 4;
    config.metrics = metrics;
    config.metrics_port = metrics.then_some(0);
    config.workers = 2;
    Server::start("127.0.0.1:0".parse().unwrap(), config, Arc::new(Echo)).unwrap()
}

fn connect(addr: SocketAddr, draft: Draft, origin: &str) -> Result<Client, String> {
    Client::try_connect_with(addr, draft, Some(origin), Config::default())
}

/// Waits (up to 10 s) until the stats satisfy `ready`: the server counts
/// closes on its own tasks, after the client saw them.
fn stats_when(handle: &ServerHandle, ready: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = handle.stats();
        if ready(&stats) || Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `GET path` on `addr`: the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

fn counts<K: Ord, const N: usize>(pairs: [(K, u64); N]) -> BTreeMap<K, u64> {
    pairs.into_iter().collect()
}

#[test]
fn stats_and_the_metrics_endpoints_count_what_the_clients_did() {
    let server = start(true);
    let (addr, handle) = (server.local_addr(), server.handle());
    let fresh = handle.stats();
    assert_eq!((fresh.connections, fresh.handshakes_accepted), (0, 0));
    assert!(fresh.handshakes_refused.is_empty() && fresh.closes.is_empty());

    // Refused by origin (403), then four clients fill the per-IP limit and
    // a fifth is refused (429).
    let refused = connect(addr, Draft::Rfc6455, "http://evil.example")
        .err()
        .unwrap();
    assert!(refused.starts_with("403"), "{refused}");
    let drafts = [
        Draft::Rfc6455,
        Draft::Hybi08,
        Draft::Hixie76,
        Draft::Hixie75,
    ];
    let mut clients: Vec<Client> = drafts
        .iter()
        .map(|&d| connect(addr, d, ORIGIN).unwrap())
        .collect();
    let refused = connect(addr, Draft::Rfc6455, ORIGIN).err().unwrap();
    assert!(refused.starts_with("429"), "{refused}");

    // Three messages each way per client.
    let mut bytes = 0;
    for (i, client) in clients.iter_mut().enumerate() {
        for n in 0..3 {
            let text = format!("client {i} says {}", "hello ".repeat(n * 10 + 1));
            bytes += text.len() as u64;
            client.send(&text);
            assert_eq!(client.recv_message().data(), text.as_bytes());
        }
    }
    let mut extensions = BTreeMap::new();
    for client in &clients {
        let name = client.conn.session().extensions.name().unwrap_or("none");
        *extensions.entry(name).or_insert(0) += 1;
    }
    let open = handle.stats();
    assert_eq!(open.connections, 4);
    assert_eq!(
        open.by_draft,
        BTreeMap::from([
            ("hixie-75", 1),
            ("hixie-76", 1),
            ("hybi-08", 1),
            ("rfc6455", 1)
        ])
    );
    assert_eq!(open.by_extension, extensions);
    // The compression extensions were agreed where the drafts have them.
    assert_eq!(open.by_extension.get("none"), Some(&2), "{extensions:?}");
    assert_eq!(open.by_http_version, BTreeMap::from([("1.1", 4)]));
    assert_eq!((open.tally.messages_in, open.tally.bytes_in), (12, bytes));
    assert_eq!((open.tally.messages_out, open.tally.bytes_out), (12, bytes));

    // RFC 6455: a message over the limit (1009); hybi-08: the client
    // closes with 4001; hixie-76: its close frame (no code: 1005).
    let mut rfc = clients.remove(0);
    rfc.send(&"x".repeat(LIMIT + 1));
    assert_eq!(rfc.expect_close().code, 1009);
    let mut hybi = clients.remove(0);
    hybi.conn.close(Some(4001), "bye").unwrap();
    hybi.flush();
    assert_eq!(hybi.expect_close().code, 4001);
    let mut hixie = clients.remove(0);
    hixie.conn.close(None, "").unwrap();
    hixie.flush();
    assert!(matches!(hixie.recv(), Some(Event::Close(_)) | None));
    let after = stats_when(&handle, |s| s.closes.values().sum::<u64>() == 3);
    assert_eq!(after.closes, counts([(1005, 1), (1009, 1), (4001, 1)]));
    assert_eq!(after.connections, 1);
    assert_eq!(after.by_draft, BTreeMap::from([("hixie-75", 1)]));
    assert_eq!(after.handshakes_accepted, 4);
    assert_eq!(after.handshakes_refused, counts([(403, 1), (429, 1)]));
    assert_eq!(after.limits["max_connections_per_ip"], 1);
    assert_eq!(after.limits["message_size"], 1);
    assert_eq!(after.limits["max_connections"], 0);
    // Counters of ended connections stay counted.
    assert_eq!(
        (after.tally.messages_in, after.tally.messages_out),
        (12, 12)
    );

    // The same numbers in Prometheus' format, on both ports.
    let metrics_addr = handle.metrics_addr().expect("metrics_port was asked for");
    assert_ne!(metrics_addr.port(), addr.port());
    for at in [addr, metrics_addr] {
        let (status, body) = get(at, "/metrics");
        assert_eq!(status, 200, "{body}");
        for line in [
            "polysocket_connections{draft=\"hixie-75\"} 1",
            "polysocket_connections{draft=\"rfc6455\"} 0",
            "polysocket_connections_by_extension{extension=\"none\"} 1",
            "polysocket_connections_by_http_version{version=\"1.1\"} 1",
            "polysocket_connections_by_http_version{version=\"2\"} 0",
            "polysocket_handshakes_accepted_total 4",
            "polysocket_handshakes_refused_total{status=\"403\"} 1",
            "polysocket_handshakes_refused_total{status=\"429\"} 1",
            "polysocket_messages_received_total 12",
            "polysocket_messages_sent_total 12",
            &format!("polysocket_received_bytes_total {bytes}"),
            &format!("polysocket_sent_bytes_total {bytes}"),
            "polysocket_closes_total{code=\"1009\"} 1",
            "polysocket_closes_total{code=\"4001\"} 1",
            "polysocket_limit_hits_total{limit=\"message_size\"} 1",
            "polysocket_limit_hits_total{limit=\"max_connections_per_ip\"} 1",
            "# TYPE polysocket_messages_received_total counter",
        ] {
            assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
        }
    }
    assert_eq!(get(metrics_addr, "/").0, 404);

    // The last client closes TCP, which is hixie-75's close: 1005 again.
    drop(clients);
    let end = stats_when(&handle, |s| {
        s.connections == 0 && s.closes.values().sum::<u64>() == 4
    });
    assert_eq!(end.closes, counts([(1005, 2), (1009, 1), (4001, 1)]));
    assert_eq!(end.by_draft, BTreeMap::new());
}

#[test]
fn without_metrics_the_path_is_the_application_s() {
    let server = start(false);
    assert_eq!(server.handle().metrics_addr(), None);
    // No page of the application's own there: the answer to a plain
    // request, 400 (upgrade required is for a WebSocket path).
    let (status, body) = get(server.local_addr(), "/metrics");
    assert_ne!(status, 200, "{body}");
    assert!(!body.contains("polysocket_"), "{body}");
}
