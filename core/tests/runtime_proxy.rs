//! Real client addresses behind a proxy, over real sockets: the PROXY
//! protocol (v1, v2) and the forwarding headers, believed only from a
//! trusted proxy, and the per-IP limit counting the clients behind it
//! apart. The test's own socket (127.0.0.1) plays the proxy; configuring
//! only 127.0.0.2 as trusted makes it an untrusted peer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polysocket::runtime::{parse_trusted_proxies, Conn, Handler, OpenInfo, Server, ServerConfig};
use polysocket::Incoming;

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// Records the address each opened connection was given.
#[derive(Default)]
struct Peers(Mutex<Vec<SocketAddr>>);

impl Handler for Peers {
    fn on_open(&self, _conn: &mut Conn<'_>, info: &Arc<OpenInfo>) {
        self.0.lock().unwrap().push(info.peer);
    }

    fn on_message(&self, _conn: &mut Conn<'_>, _message: Incoming<'_>) {}
}

impl Peers {
    /// The address of the `n`th connection opened (waits for its on_open).
    fn nth(&self, n: usize) -> SocketAddr {
        let start = Instant::now();
        loop {
            if let Some(peer) = self.0.lock().unwrap().get(n) {
                return *peer;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no open #{n}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn start(trusted: &[&str], proxy_protocol: bool, per_ip: usize) -> (Server, Arc<Peers>) {
    let config = ServerConfig {
        trusted_proxies: parse_trusted_proxies(trusted).unwrap(),
        proxy_protocol,
        max_connections_per_ip: per_ip,
        ..ServerConfig::default()
    };
    let peers = Arc::new(Peers::default());
    let server = Server::start("127.0.0.1:0".parse().unwrap(), config, peers.clone()).unwrap();
    (server, peers)
}

/// Send `prefix`, the opening handshake with `headers`; the answer's status
/// line ("" when the server closed without one) and the open socket.
fn exchange(addr: SocketAddr, prefix: &[u8], headers: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = prefix.to_vec();
    out.extend_from_slice(format!("{UPGRADE}{headers}\r\n").as_bytes());
    let _ = s.write_all(&out);
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let status = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (status, s)
}

fn v1(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 4000 80\r\n").into_bytes()
}

fn v2(client: &str) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let source: SocketAddr = client.parse().unwrap();
    let dest: SocketAddr = if source.is_ipv4() {
        "127.0.0.1:80"
    } else {
        "[::1]:80"
    }
    .parse()
    .unwrap();
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (source, dest),
    )
    .build()
    .unwrap()
}

#[test]
fn proxy_protocol_gives_the_client_address_and_counts_clients_apart() {
    let (server, peers) = start(&["127.0.0.1"], true, 1);
    let addr = server.local_addr();
    let (status, _a) = exchange(addr, &v1("192.0.2.1"), "");
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert_eq!(peers.nth(0), "192.0.2.1:4000".parse().unwrap());
    let (status, _b) = exchange(addr, &v2("[2001:db8::5]:7"), "");
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert_eq!(peers.nth(1), "[2001:db8::5]:7".parse().unwrap());
    // The limit is per client behind the proxy, not per proxy.
    let (status, _c) = exchange(addr, &v2("192.0.2.2:9"), "");
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    // Each open is awaited before the next connection: on_open runs after
    // the 101 is written, so without it two could be recorded swapped.
    assert_eq!(peers.nth(2), "192.0.2.2:9".parse().unwrap());
    let (status, _) = exchange(addr, &v1("192.0.2.1"), "");
    assert!(status.starts_with("HTTP/1.1 429"), "{status}");
    // A LOCAL header (a health check) leaves the proxy's own address.
    let local = ppp::v2::Builder::new(0x20, 0x00).build().unwrap();
    let (status, _d) = exchange(addr, &local, "");
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert_eq!(peers.nth(3).ip().to_string(), "127.0.0.1");
}

#[test]
fn missing_malformed_or_untrusted_proxy_headers_are_refused() {
    let (server, peers) = start(&["127.0.0.1"], true, 0);
    let addr = server.local_addr();
    let (_, _kept) = exchange(addr, &v1("192.0.2.1"), "");
    assert_eq!(peers.nth(0).ip().to_string(), "192.0.2.1");
    for prefix in [
        &b""[..],
        b"PROXY TCP4 nonsense\r\n",
        b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2",
    ] {
        let (status, _) = exchange(addr, prefix, "");
        assert_eq!(
            status,
            "",
            "refused by closing: {:?}",
            String::from_utf8_lossy(prefix)
        );
    }
    // Other connections are not harmed.
    let (status, _) = exchange(addr, &v1("192.0.2.3"), "");
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert_eq!(peers.nth(1).ip().to_string(), "192.0.2.3");

    // From an address that is not a trusted proxy, even a valid header.
    let (server, _) = start(&["127.0.0.2"], true, 0);
    let (status, _) = exchange(server.local_addr(), &v1("192.0.2.1"), "");
    assert_eq!(status, "");

    let config = ServerConfig {
        proxy_protocol: true,
        ..ServerConfig::default()
    };
    let refused = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Arc::new(Peers::default()),
    );
    assert!(refused
        .err()
        .unwrap()
        .to_string()
        .contains("trusted_proxies"));
}

#[test]
fn forwarding_headers_are_believed_from_trusted_proxies_only() {
    let (server, peers) = start(&["127.0.0.1", "10.0.0.0/8"], false, 1);
    let addr = server.local_addr();
    // The client wrote 1.1.1.1 itself; 10.0.0.2 is a trusted hop.
    let (status, _a) = exchange(
        addr,
        b"",
        "X-Forwarded-For: 1.1.1.1, 192.0.2.7\r\nX-Forwarded-For: 10.0.0.2\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert_eq!(peers.nth(0).ip().to_string(), "192.0.2.7");
    let (status, _b) = exchange(
        addr,
        b"",
        "Forwarded: for=\"[2001:db8::1]:4711\";proto=http\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert_eq!(peers.nth(1), "[2001:db8::1]:4711".parse().unwrap());
    let (status, _) = exchange(addr, b"", "X-Forwarded-For: 192.0.2.7\r\n");
    assert!(status.starts_with("HTTP/1.1 429"), "{status}");
    let (status, _c) = exchange(addr, b"", "X-Forwarded-For: 192.0.2.8\r\n");
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");

    // Not from a trusted proxy: ignored, the socket's address counts.
    let (server, peers) = start(&["127.0.0.2"], false, 1);
    let addr = server.local_addr();
    let (status, _d) = exchange(addr, b"", "X-Forwarded-For: 192.0.2.7\r\n");
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    assert_eq!(peers.nth(0).ip().to_string(), "127.0.0.1");
    let (status, _) = exchange(addr, b"", "X-Forwarded-For: 192.0.2.9\r\n");
    assert!(status.starts_with("HTTP/1.1 429"), "{status}");
}
