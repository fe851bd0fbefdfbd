//! WebSockets over HTTP/2 (RFC 8441) between the runtime's server and its
//! client, over real TLS sockets: several WebSockets on one connection
//! with interleaved large and small messages, flow control (a stream whose
//! reader stalls does not stall the others), a stream reset mid-message,
//! limits counted per stream, a refused origin, plain requests on h2, and
//! the switch that turns HTTP/2 off.
#![allow(clippy::field_reassign_with_default)] // tests tweak one limit at a time

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use polysocket::error::HandshakeError;
use polysocket::protocol::MessageKind;
use polysocket::runtime::{
    tls, CloseInfo, Conn, ConnectOptions, Handler, Http2Connection, OpenInfo, RuntimeError, Server,
    ServerConfig, WebSocket,
};
use polysocket::{Event, Incoming, Message};

const ORIGIN: &str = "https://good.example";

/// Echoes, and reports opens and closes.
struct Echo {
    events: Mutex<Sender<Seen>>,
}

#[derive(Debug)]
enum Seen {
    Open {
        http2: bool,
        extension: Option<&'static str>,
        path: String,
    },
    Close(u16),
}

impl Handler for Echo {
    fn on_open(&self, _conn: &mut Conn<'_>, info: &Arc<OpenInfo>) {
        let seen = Seen::Open {
            http2: info.http2,
            extension: info.extensions.name(),
            path: info.path.clone(),
        };
        // Fails only once the test stopped listening (it failed already).
        let _ = self.events.lock().unwrap().send(seen);
    }

    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        let _ = conn.forward(message);
    }

    fn on_close(&self, _id: u64, close: &CloseInfo) {
        // Fails only once the test stopped listening (it failed already).
        let _ = self.events.lock().unwrap().send(Seen::Close(close.code));
    }
}

struct Fixture {
    server: Server,
    events: Receiver<Seen>,
    client: ConnectOptions,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("wss://localhost:{}{path}", self.server.local_addr().port())
    }

    /// A WebSocket over HTTP/1.1 (TLS) to the same server.
    async fn http1(&self, path: &str) -> WebSocket {
        let options = ConnectOptions {
            http2: false,
            ..self.client.clone()
        };
        polysocket::runtime::connect(&self.url(path), options)
            .await
            .unwrap()
    }

    /// An HTTP/2 connection to the server.
    async fn h2(&self) -> Http2Connection {
        Http2Connection::connect(&self.url("/"), &self.client)
            .await
            .unwrap()
    }

    fn next(&self) -> Seen {
        self.events
            .recv_timeout(Duration::from_secs(10))
            .expect("a server event")
    }
}

fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut config = ServerConfig::default();
    config.tls = Some(tls::server_config(&cert_path, &key_path).unwrap());
    config.allowed_origins = Some(vec![ORIGIN.into()]);
    config.workers = 2;
    tweak(&mut config);
    let (tx, events) = channel();
    let handler = Arc::new(Echo {
        events: Mutex::new(tx),
    });
    let server = Server::start("127.0.0.1:0".parse().unwrap(), config, handler).unwrap();
    let client = ConnectOptions {
        tls: Some(tls::client_config(&[&cert_path]).unwrap()),
        origin: Some(ORIGIN.into()),
        http2: true,
        ..ConnectOptions::default()
    };
    Fixture {
        server,
        events,
        client,
        _dir: dir,
    }
}

/// The status of a stream the server refused.
async fn refused(h2: &Http2Connection, path: &str, options: &ConnectOptions) -> u16 {
    match h2.open(path, options).await {
        Err(RuntimeError::Handshake(HandshakeError::UnexpectedStatus(status))) => status,
        other => panic!("{other:?}"),
    }
}

async fn message(ws: &mut WebSocket) -> Message {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.recv()).await {
            Ok(Ok(Some(Event::Message(m)))) => return m,
            Ok(Ok(Some(_))) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_websockets_share_one_connection() {
    let f = start(|_| {});
    let h2 = f.h2().await;
    let mut sockets = Vec::new();
    for room in ["/a", "/b?x=1", "/c"] {
        sockets.push(h2.open(room, &f.client).await.unwrap());
        match f.next() {
            Seen::Open {
                http2,
                extension,
                path,
            } => {
                assert!(http2);
                assert_eq!(extension, Some("permessage-deflate"));
                assert_eq!(path, room.split('?').next().unwrap());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sockets[0].extensions().name(), Some("permessage-deflate"));
    assert_eq!(
        sockets[0].local_addr(),
        sockets[2].local_addr(),
        "one TCP connection"
    );
    // Interleaved: a 1 MiB binary message on one stream, small texts on
    // the others, before any echo is read.
    let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    sockets[0].send_binary(&big).await.unwrap();
    for i in 0..50 {
        sockets[1].send_text(&format!("small {i}")).await.unwrap();
        sockets[2].send_text(&"z".repeat(i * 100)).await.unwrap();
    }
    for i in 0..50 {
        assert_eq!(
            message(&mut sockets[1]).await.data(),
            format!("small {i}").as_bytes()
        );
        assert_eq!(
            message(&mut sockets[2]).await.data(),
            "z".repeat(i * 100).as_bytes()
        );
    }
    assert_eq!(message(&mut sockets[0]).await.data(), &big[..]);
    for ws in &mut sockets {
        ws.close(Some(1000), "bye").await.unwrap();
    }
    let codes: Vec<_> = (0..3).map(|_| f.next()).collect();
    assert!(
        codes.iter().all(|c| matches!(c, Seen::Close(1000))),
        "{codes:?}"
    );
    // The same server speaks HTTP/1.1 to a client that asks for it.
    let mut plain = f.http1("/plain").await;
    assert!(matches!(f.next(), Seen::Open { http2: false, .. }));
    plain.send_text("one one").await.unwrap();
    assert_eq!(message(&mut plain).await.data(), &b"one one"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_does_not_stall_the_others() {
    let f = start(|_| {});
    let h2 = f.h2().await;
    let mut stalled = h2.open("/stalled", &f.client).await.unwrap();
    let mut lively = h2.open("/lively", &f.client).await.unwrap();
    // 4 MiB echoed to a reader that reads nothing: far beyond the stream's
    // window, so the server's echo waits on it.
    let chunk = vec![b'x'; 256 * 1024];
    for _ in 0..16 {
        stalled.send_binary(&chunk).await.unwrap();
    }
    for i in 0..100 {
        let text = format!("still going {i}");
        lively.send_text(&text).await.unwrap();
        assert_eq!(message(&mut lively).await.data(), text.as_bytes());
    }
    // Then the stalled reader reads all of it.
    for _ in 0..16 {
        assert_eq!(message(&mut stalled).await.data().len(), chunk.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_stream_leaves_the_others_going() {
    let f = start(|_| {});
    let h2 = f.h2().await;
    let mut doomed = h2.open("/doomed", &f.client).await.unwrap();
    let mut survivor = h2.open("/survivor", &f.client).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(f.next(), Seen::Open { .. }));
    }
    // Half of a fragmented message, then the stream is dropped: reset.
    doomed
        .send_fragment(MessageKind::Text, b"the first half", false)
        .await
        .unwrap();
    drop(doomed);
    assert!(matches!(f.next(), Seen::Close(1006)));
    survivor.send_text("still here").await.unwrap();
    assert_eq!(message(&mut survivor).await.data(), &b"still here"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_count_streams_and_refusals_get_their_status() {
    let f = start(|c| c.max_connections_per_ip = 2);
    let h2 = f.h2().await;
    // An origin the server does not allow: 403.
    let evil = ConnectOptions {
        origin: Some("https://evil.example".into()),
        ..f.client.clone()
    };
    assert_eq!(refused(&h2, "/5", &evil).await, 403);
    let first = h2.open("/1", &f.client).await.unwrap();
    let _second = h2.open("/2", &f.client).await.unwrap();
    // A third session from the address, on the same connection: 429.
    assert_eq!(refused(&h2, "/3", &f.client).await, 429);
    drop(first);
    // Its slot is free once the server saw it go.
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(ws) = h2.open("/4", &f.client).await {
            reopened = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut reopened = reopened.expect("the freed slot is taken again");
    reopened.send_text("again").await.unwrap();
    assert_eq!(message(&mut reopened).await.data(), &b"again"[..]);
    // A new TLS connection from the address, over its limit: the 429 comes
    // after the TLS handshake, as HTTP/1.1, where the client can read it.
    let options = ConnectOptions {
        http2: false,
        ..f.client.clone()
    };
    match polysocket::runtime::connect(&f.url("/6"), options).await {
        Err(RuntimeError::Handshake(HandshakeError::UnexpectedStatus(429))) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_connection_are_bounded() {
    let f = start(|c| c.http2_max_streams = 2);
    let h2 = f.h2().await;
    let _a = h2.open("/a", &f.client).await.unwrap();
    let _b = h2.open("/b", &f.client).await.unwrap();
    // The third waits for a free stream slot (the client honours the
    // server's SETTINGS_MAX_CONCURRENT_STREAMS): it times out here.
    let short = ConnectOptions {
        handshake_timeout: Duration::from_millis(300),
        ..f.client.clone()
    };
    match h2.open("/c", &short).await {
        Err(RuntimeError::Timeout(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_off_offers_only_http11() {
    let f = start(|c| c.http2 = false);
    // The client offers only h2; the server knows only http/1.1.
    match Http2Connection::connect(&f.url("/"), &f.client).await {
        Err(RuntimeError::Tls(why)) => assert!(why.contains("NoApplicationProtocol"), "{why}"),
        other => panic!("{other:?}"),
    }
    let mut ws = f.http1("/").await;
    ws.send_text("one one").await.unwrap();
    assert_eq!(message(&mut ws).await.data(), &b"one one"[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_streams_is_closed_after_the_handshake_timeout() {
    let f = start(|c| c.handshake_timeout = Duration::from_millis(400));
    let h2 = f.h2().await;
    let mut ws = h2.open("/once", &f.client).await.unwrap();
    // While a stream is open the connection stays, however long.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ws.send_text("still open").await.unwrap();
    assert_eq!(message(&mut ws).await.data(), &b"still open"[..]);
    ws.close(Some(1000), "").await.unwrap();
    drop(ws);
    // Then, with no stream, it is closed (GOAWAY): no new stream opens.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(h2.open("/again", &f.client).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_connections_to_the_server_handle() {
    let f = start(|_| {});
    let handle = f.server.handle();
    let h2 = f.h2().await;
    let mut streams = [
        h2.open("/s1", &f.client).await.unwrap(),
        h2.open("/s2", &f.client).await.unwrap(),
    ];
    let mut plain = f.http1("/plain").await;
    for _ in 0..3 {
        assert!(matches!(f.next(), Seen::Open { .. }));
    }
    let ids = handle.connections();
    assert_eq!(ids.len(), 3);
    let stats = handle.stats();
    assert_eq!(stats.by_http_version, [("1.1", 1), ("2", 2)].into());
    let metrics = stats.prometheus();
    assert!(metrics.contains("polysocket_connections_by_http_version{version=\"2\"} 2\n"));
    for &id in &ids {
        handle.join(id, "room");
    }
    assert_eq!(handle.broadcast_group("room", Message::text("to all")), 3);
    for ws in streams.iter_mut().chain([&mut plain]) {
        assert_eq!(message(ws).await.data(), &b"to all"[..]);
    }
    // Closes by id from the server's side reach every client.
    for &id in &ids {
        handle.close(id, Some(4000), "by id").unwrap();
    }
    for ws in streams.iter_mut().chain([&mut plain]) {
        let event = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await;
        match event {
            Ok(Ok(Some(Event::Close(frame)))) => assert_eq!(frame.code, 4000),
            other => panic!("{other:?}"),
        }
    }
    for _ in 0..3 {
        assert!(matches!(f.next(), Seen::Close(4000)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_open_streams_finish_and_takes_no_new_one() {
    let f = start(|c| c.drain_timeout = Duration::from_secs(30));
    let h2 = f.h2().await;
    let mut ws = h2.open("/staying", &f.client).await.unwrap();
    assert!(matches!(f.next(), Seen::Open { .. }));
    f.server.handle().drain();
    // GOAWAY: the connection takes no new stream (a browser opens a new
    // connection, to the process that took over the port)...
    let mut refused = false;
    let mut early = Vec::new();
    for _ in 0..100 {
        match h2.open("/new", &f.client).await {
            Ok(ws) => early.push(ws),
            Err(_) => {
                refused = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "a new stream after the GOAWAY");
    // ...while the open one carries on until it closes.
    ws.send_text("still served").await.unwrap();
    assert_eq!(message(&mut ws).await.data(), &b"still served"[..]);
    ws.close(Some(1000), "done").await.unwrap();
    // (A stream opened before the GOAWAY reached the client opened.)
    let close = std::iter::repeat_with(|| f.next()).find(|e| matches!(e, Seen::Close(_)));
    assert!(matches!(close, Some(Seen::Close(1000))), "{close:?}");
}
