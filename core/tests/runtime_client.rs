//! The tokio client against a small in-test server built from the engine's
//! public API, over real sockets on 127.0.0.1: every draft, compression,
//! `wss://` with a certificate made at test time, subprotocols, refusals,
//! timeouts, a server that breaks the protocol, and unusable URLs.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use polysocket::error::{HandshakeError, ProtocolError};
use polysocket::extensions::Agreed;
use polysocket::handshake::{Hooks, Progress, Request, ServerHandshake};
use polysocket::protocol::{CloseFrame, MessageKind, State};
use polysocket::runtime::client::{connect, ConnectOptions, WebSocket};
use polysocket::runtime::{tls, RuntimeError, Stream};
use polysocket::{Config, Connection, Draft, Event, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

// ------------------------------------------------------------------------
// Test fixture: an echo server on the engine. Texts "close-me" and
// "ping-me" make it close (4000 "bye") or ping ("hb") before echoing.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Echo,
    /// Refuse every handshake with 403.
    Refuse,
    /// Never answer the handshake.
    Silent,
    /// Answer the handshake, then neither read nor write.
    Mute,
    /// Answer the first message with a frame of reserved opcode 3.
    Violate,
}

/// What the server saw on one connection.
#[derive(Debug, Default)]
struct Seen {
    host: String,
    resource: String,
    close: Option<CloseFrame>,
    clean: bool,
    pongs: Vec<Bytes>,
}

struct TestHooks(Mode, Option<&'static str>);
impl Hooks for TestHooks {
    fn check(&self, _: &Request) -> Result<(), HandshakeError> {
        match self.0 {
            Mode::Refuse => Err(HandshakeError::Refused(403, "Forbidden".into())),
            _ => Ok(()),
        }
    }
    fn select_subprotocol(&self, _: &Request, offered: &[&str]) -> Option<String> {
        self.1.filter(|p| offered.contains(p)).map(str::to_owned)
    }
}

struct Server {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

async fn start(config: Config, tls: Option<Arc<ServerConfig>>, hooks: TestHooks) -> Server {
    server_on("127.0.0.1:0", config, tls, hooks).await.unwrap()
}

async fn server_on(
    bind: &str,
    config: Config,
    tls: Option<Arc<ServerConfig>>,
    hooks: TestHooks,
) -> io::Result<Server> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let (tx, seen) = mpsc::unbounded_channel();
    let (config, hooks) = (Arc::new(config), Arc::new(hooks));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (config, tls, hooks, tx) = (config.clone(), tls.clone(), hooks.clone(), tx.clone());
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let _ = serve(tcp, config, tls, &hooks, &mut seen).await;
                let _ = tx.send(seen);
            });
        }
    });
    Ok(Server { addr, seen })
}

async fn serve(
    tcp: tokio::net::TcpStream,
    config: Arc<Config>,
    tls: Option<Arc<ServerConfig>>,
    hooks: &TestHooks,
    seen: &mut Seen,
) -> io::Result<()> {
    let secure = tls.is_some();
    let mut s = match tls {
        Some(tls) => Stream::ServerTls(Box::new(TlsAcceptor::from(tls).accept(tcp).await?)),
        None => Stream::Plain(tcp),
    };
    let mut hs = ServerHandshake::new(config.clone());
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.read(&mut buf).await?;
        match hs.feed(&buf[..n]) {
            Ok(Progress::NeedMore) if n > 0 => {}
            Ok(Progress::Ready) => break,
            _ => return Ok(()),
        }
    }
    let req = hs.request().expect("a ready handshake has a request");
    seen.host = req.host().unwrap_or_default().to_owned();
    seen.resource = req.resource().to_owned();
    if hooks.0 == Mode::Silent {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let completed = match hs.complete(hooks, secure) {
        Ok(c) => c,
        Err(rejected) => return s.write_all(&rejected.response).await,
    };
    s.write_all(&completed.response).await?;
    if hooks.0 == Mode::Mute {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let mut conn = Connection::from_completed(config, completed);
    loop {
        while let Ok(Some(event)) = conn.poll() {
            match event {
                Event::Message(_) if hooks.0 == Mode::Violate => s.write_all(&[0x83, 0]).await?,
                Event::Message(m) if m.as_text() == Some("close-me") => {
                    conn.close(Some(4000), "bye").unwrap();
                }
                Event::Message(m) => {
                    if m.as_text() == Some("ping-me") {
                        conn.send_ping(b"hb").unwrap();
                    }
                    let _ = conn.send(&m);
                }
                Event::Pong(p) => seen.pongs.push(p),
                Event::Close(frame) => seen.close = Some(frame),
                Event::Ping(_) => {}
            }
        }
        s.write_all(&conn.take_output()).await?;
        if conn.state() == State::Closed {
            break;
        }
        conn.receive_buffer().reserve(64 * 1024);
        let n = s.read_buf(conn.receive_buffer()).await.or_else(eof)?;
        if n == 0 {
            if let Some(Event::Close(frame)) = conn.receive_eof() {
                seen.close = Some(frame);
            }
            break;
        }
    }
    seen.clean = conn.close_was_clean();
    // The server closes TCP first (RFC 6455 §7.1.1).
    s.shutdown().await
}

/// A TLS peer that closes without close_notify.
fn eof(e: io::Error) -> io::Result<usize> {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => Ok(0),
        _ => Err(e),
    }
}

// ------------------------------------------------------------------------

fn echo() -> TestHooks {
    TestHooks(Mode::Echo, None)
}

fn options(draft: Draft) -> ConnectOptions {
    ConnectOptions {
        draft,
        ..ConnectOptions::default()
    }
}

async fn recv(ws: &mut WebSocket) -> Event {
    tokio::time::timeout(Duration::from_secs(30), ws.recv())
        .await
        .expect("recv timed out")
        .unwrap_or_else(|e| panic!("recv failed: {e}"))
        .expect("connection ended")
}

async fn seen(server: &mut Server) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), server.seen.recv())
        .await
        .expect("the server did not finish")
        .expect("server gone")
}

fn text(t: &str) -> Event {
    Event::Message(Message::text(t))
}

/// The compression a default configuration agrees on for `draft`.
fn default_extension(draft: Draft, agreed: Agreed) -> bool {
    match draft {
        d if d < Draft::Hybi04 => agreed == Agreed::None,
        d if d < Draft::Hybi07 => matches!(agreed, Agreed::DeflateFrame(_)),
        _ => matches!(agreed, Agreed::PerMessageDeflate(_)),
    }
}

/// Handshake, every kind of message the draft has, 16 MiB, clean close.
async fn roundtrip(draft: Draft) {
    let mut server = start(Config::default(), None, echo()).await;
    let url = format!("ws://127.0.0.1:{}/echo?draft={draft}", server.addr.port());
    let mut ws = connect(&url, options(draft)).await.unwrap();
    assert_eq!(ws.draft(), draft);
    assert_eq!(ws.peer_addr(), server.addr);
    assert!(
        default_extension(draft, ws.extensions()),
        "{:?}",
        ws.extensions()
    );

    ws.send_text("hello ✓").await.unwrap();
    assert_eq!(recv(&mut ws).await, text("hello ✓"));
    if draft.has_binary() {
        ws.send_binary(&[0, 1, 2, 255]).await.unwrap();
        assert_eq!(
            recv(&mut ws).await,
            Event::Message(Message::binary(vec![0, 1, 2, 255]))
        );
        ws.ping(b"p").await.unwrap();
        assert_eq!(recv(&mut ws).await, Event::Pong(Bytes::from_static(b"p")));
        ws.send_fragment(MessageKind::Text, b"frag", false)
            .await
            .unwrap();
        ws.ping(b"between").await.unwrap();
        ws.send_fragment(MessageKind::Text, "ment ✓".as_bytes(), true)
            .await
            .unwrap();
        assert_eq!(
            recv(&mut ws).await,
            Event::Pong(Bytes::from_static(b"between"))
        );
        assert_eq!(recv(&mut ws).await, text("fragment ✓"));
        // The server pings; the automatic pong must go out without a send.
        ws.send_text("ping-me").await.unwrap();
        assert_eq!(recv(&mut ws).await, Event::Ping(Bytes::from_static(b"hb")));
        assert_eq!(recv(&mut ws).await, text("ping-me"));
    } else {
        assert!(matches!(
            ws.send_binary(b"x").await,
            Err(RuntimeError::Send(polysocket::SendError::Unsupported(..)))
        ));
        ws.send_fragment(MessageKind::Text, b"whole", true)
            .await
            .unwrap();
        assert_eq!(recv(&mut ws).await, text("whole"));
    }
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| b'a' + (i % 26) as u8).collect();
    let big = if draft.has_binary() {
        Message::binary(big)
    } else {
        Message::text(String::from_utf8(big).unwrap())
    };
    ws.send(&big).await.unwrap();
    assert_eq!(recv(&mut ws).await, Event::Message(big));

    let started = Instant::now();
    let frame = ws.close(Some(1000), "bye").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "close waited for a timeout"
    );
    let expected = match draft.close_body() {
        polysocket::draft::CloseBody::Coded | polysocket::draft::CloseBody::Rfc6455 => 1000,
        _ => 1005,
    };
    assert_eq!(frame.code, expected);
    assert_eq!(ws.recv().await.unwrap(), None);
    assert!(matches!(
        ws.send_text("late").await,
        Err(RuntimeError::Closed)
    ));

    let seen = seen(&mut server).await;
    assert_eq!(seen.host, format!("127.0.0.1:{}", server.addr.port()));
    assert_eq!(seen.resource, format!("/echo?draft={draft}"));
    assert!(seen.clean, "{draft}: {seen:?}");
    assert_eq!(seen.close.map(|f| f.code), Some(expected));
    if draft.has_ping() {
        assert_eq!(seen.pongs, [Bytes::from_static(b"hb")]);
    }
}

macro_rules! drafts {
    ($($name:ident => $draft:expr),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            roundtrip($draft).await;
        }
    )*};
}

drafts! {
    hixie75 => Draft::Hixie75,
    hixie76 => Draft::Hixie76,
    hybi01 => Draft::Hybi01,
    hybi02 => Draft::Hybi02,
    hybi04 => Draft::Hybi04,
    hybi05 => Draft::Hybi05,
    hybi06 => Draft::Hybi06,
    hybi07 => Draft::Hybi07,
    hybi08 => Draft::Hybi08,
    rfc6455 => Draft::Rfc6455,
}

#[tokio::test]
async fn permessage_deflate_and_deflate_stream() {
    let server = start(Config::default(), None, echo()).await;
    let url = format!("ws://{}/", server.addr);
    let mut ws = connect(&url, ConnectOptions::default()).await.unwrap();
    let Agreed::PerMessageDeflate(params) = ws.extensions() else {
        panic!("{:?}", ws.extensions());
    };
    assert_eq!(params.server_max_window_bits, 15);
    assert!(ws
        .response_headers()
        .get("Sec-WebSocket-Extensions")
        .unwrap()
        .starts_with("permessage-deflate"));
    let page = "compressible ".repeat(100_000);
    for _ in 0..3 {
        ws.send_text(&page).await.unwrap();
        assert_eq!(recv(&mut ws).await, text(&page));
    }
    ws.close(None, "").await.unwrap();

    // No compression when the configuration offers none.
    let mut config = Config::default();
    config.extensions.permessage_deflate = None;
    config.extensions.deflate_frame = false;
    let plain = ConnectOptions {
        config: Arc::new(config),
        ..ConnectOptions::default()
    };
    let mut ws = connect(&url, plain).await.unwrap();
    assert_eq!(ws.extensions(), Agreed::None);
    ws.close(Some(1001), "").await.unwrap();

    // deflate-stream: the whole byte stream deflated (hybi-04..08).
    let mut config = Config::default();
    config.extensions.permessage_deflate = None;
    config.extensions.deflate_frame = false;
    let stream = ConnectOptions {
        draft: Draft::Hybi08,
        config: Arc::new(config),
        ..ConnectOptions::default()
    };
    let mut ws = connect(&url, stream).await.unwrap();
    assert_eq!(ws.extensions(), Agreed::DeflateStream);
    ws.send_text(&page).await.unwrap();
    assert_eq!(recv(&mut ws).await, text(&page));
    assert_eq!(ws.close(Some(1000), "").await.unwrap().code, 1000);
}

/// A self-signed certificate for localhost and 127.0.0.1, in a temp dir.
fn certificate(dir: &tempfile::TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[tokio::test]
async fn wss_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(&dir);
    let server_tls = tls::server_config(&cert, &key).unwrap();
    let mut server = start(Config::default(), Some(server_tls), echo()).await;
    let port = server.addr.port();
    let trusted = ConnectOptions {
        tls: Some(tls::client_config(&[&cert]).unwrap()),
        ..ConnectOptions::default()
    };
    for (host, draft) in [("localhost", Draft::Rfc6455), ("127.0.0.1", Draft::Hixie76)] {
        let url = format!("wss://{host}:{port}/secure");
        let mut ws = connect(
            &url,
            ConnectOptions {
                draft,
                ..trusted.clone()
            },
        )
        .await
        .unwrap();
        ws.send_text("over TLS").await.unwrap();
        assert_eq!(recv(&mut ws).await, text("over TLS"));
        ws.close(None, "").await.unwrap();
        let seen = seen(&mut server).await;
        assert!(seen.clean, "{seen:?}");
        assert_eq!(seen.host, format!("{host}:{port}"));
    }
    // The Mozilla roots alone do not trust it.
    let url = format!("wss://localhost:{port}/");
    match connect(&url, ConnectOptions::default()).await {
        Err(RuntimeError::Tls(why)) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ipv6_literal() {
    let Ok(server) = server_on("[::1]:0", Config::default(), None, echo()).await else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let url = format!("ws://[::1]:{}/v6", server.addr.port());
    let mut ws = connect(&url, ConnectOptions::default()).await.unwrap();
    ws.send_text("six").await.unwrap();
    assert_eq!(recv(&mut ws).await, text("six"));
    ws.close(None, "").await.unwrap();
}

#[tokio::test]
async fn subprotocol_selection() {
    let server = start(Config::default(), None, TestHooks(Mode::Echo, Some("chat"))).await;
    let url = format!("ws://{}/", server.addr);
    for draft in [Draft::Rfc6455, Draft::Hybi07] {
        let offer = ConnectOptions {
            draft,
            subprotocols: vec!["v2.chat".into(), "chat".into()],
            ..ConnectOptions::default()
        };
        let mut ws = connect(&url, offer).await.unwrap();
        assert_eq!(ws.subprotocol(), Some("chat"));
        assert_eq!(
            ws.response_headers().get("Sec-WebSocket-Protocol"),
            Some("chat")
        );
        ws.close(None, "").await.unwrap();
    }
    let other = ConnectOptions {
        subprotocols: vec!["mqtt".into()],
        ..ConnectOptions::default()
    };
    let mut ws = connect(&url, other).await.unwrap();
    assert_eq!(ws.subprotocol(), None);
    ws.close(None, "").await.unwrap();
}

#[tokio::test]
async fn refused_handshake() {
    let server = start(Config::default(), None, TestHooks(Mode::Refuse, None)).await;
    let url = format!("ws://{}/", server.addr);
    for draft in [Draft::Rfc6455, Draft::Hixie76] {
        match connect(&url, options(draft)).await {
            Err(RuntimeError::Handshake(HandshakeError::UnexpectedStatus(403))) => {}
            other => panic!("{draft}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn server_initiated_close() {
    let mut server = start(Config::default(), None, echo()).await;
    let mut ws = connect(&format!("ws://{}/", server.addr), ConnectOptions::default())
        .await
        .unwrap();
    ws.send_text("close-me").await.unwrap();
    let Event::Close(frame) = recv(&mut ws).await else {
        panic!("expected the close")
    };
    assert_eq!((frame.code, frame.reason.as_str()), (4000, "bye"));
    assert_eq!(ws.state(), State::Closed);
    assert!(matches!(ws.send_text("x").await, Err(RuntimeError::Closed)));
    assert_eq!(ws.recv().await.unwrap(), None);
    assert_eq!(ws.recv().await.unwrap(), None);
    // close() after the fact reports the server's close.
    assert_eq!(ws.close(Some(1000), "").await.unwrap().code, 4000);
    let seen = seen(&mut server).await;
    assert!(seen.clean);
    assert_eq!(seen.close.unwrap().code, 4000);
}

#[tokio::test]
async fn protocol_violation() {
    let mut server = start(Config::default(), None, TestHooks(Mode::Violate, None)).await;
    let mut ws = connect(&format!("ws://{}/", server.addr), ConnectOptions::default())
        .await
        .unwrap();
    ws.send_text("provoke").await.unwrap();
    match ws.recv().await {
        Err(RuntimeError::Protocol(ProtocolError::ReservedOpcode(3))) => {}
        other => panic!("{other:?}"),
    }
    // The failure close (1002) was written before the error was returned.
    let seen = seen(&mut server).await;
    assert_eq!(seen.close.map(|f| f.code), Some(1002));
    assert_eq!(ws.recv().await.unwrap(), None);
    assert!(matches!(
        ws.close(None, "").await,
        Err(RuntimeError::Closed)
    ));
}

#[tokio::test]
async fn refused_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    match connect(&format!("ws://{addr}/"), ConnectOptions::default()).await {
        Err(RuntimeError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn connect_timeout() {
    // A listener that never accepts, its backlog full: further SYNs are
    // dropped and the connection hangs.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let attempt = tokio::net::TcpStream::connect(addr);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), attempt).await {
            fillers.push(s);
        }
    }
    let opts = ConnectOptions {
        connect_timeout: Duration::from_millis(300),
        ..ConnectOptions::default()
    };
    let started = Instant::now();
    match connect(&format!("ws://{addr}/"), opts).await {
        Err(RuntimeError::Timeout(what)) => assert_eq!(what, "connect"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn handshake_and_close_timeouts() {
    let server = start(Config::default(), None, TestHooks(Mode::Silent, None)).await;
    let opts = ConnectOptions {
        handshake_timeout: Duration::from_millis(300),
        ..ConnectOptions::default()
    };
    match connect(&format!("ws://{}/", server.addr), opts).await {
        Err(RuntimeError::Timeout(what)) => assert_eq!(what, "opening handshake"),
        other => panic!("{other:?}"),
    }

    let server = start(Config::default(), None, TestHooks(Mode::Mute, None)).await;
    let opts = ConnectOptions {
        close_timeout: Duration::from_millis(300),
        ..ConnectOptions::default()
    };
    let mut ws = connect(&format!("ws://{}/", server.addr), opts)
        .await
        .unwrap();
    let started = Instant::now();
    match ws.close(Some(1000), "").await {
        Err(RuntimeError::Timeout(what)) => assert_eq!(what, "close handshake"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(ws.recv().await.unwrap(), None);
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    let server = start(Config::default(), None, echo()).await;
    let mut ws = connect(&format!("ws://{}/", server.addr), ConnectOptions::default())
        .await
        .unwrap();
    // Nothing arrives: the cancelled recv loses nothing.
    let idle = tokio::time::timeout(Duration::from_millis(50), ws.recv()).await;
    assert!(idle.is_err());
    for i in 0..20 {
        ws.send_text(&format!("m{i}")).await.unwrap();
    }
    for i in 0..20 {
        assert_eq!(recv(&mut ws).await, text(&format!("m{i}")));
    }
    ws.close(None, "").await.unwrap();
}

/// The client sends far more than the socket buffers hold without reading,
/// while the server echoes and stops reading until its echo is written:
/// the client must read ahead while its writes wait.
#[tokio::test]
async fn sending_while_the_server_sends_does_not_deadlock() {
    let server = start(Config::default(), None, echo()).await;
    let mut config = Config::default();
    config.extensions.permessage_deflate = None;
    let opts = ConnectOptions {
        config: Arc::new(config),
        ..ConnectOptions::default()
    };
    let mut ws = connect(&format!("ws://{}/", server.addr), opts)
        .await
        .unwrap();
    // Incompressible bytes (xorshift), 16 MiB in all.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let send_all = async {
        for i in 0..16u8 {
            let mut m = chunk.clone();
            m[0] = i;
            ws.send_binary(&m).await.unwrap();
        }
        for i in 0..16u8 {
            let Event::Message(Message::Binary(m)) = recv(&mut ws).await else {
                panic!()
            };
            assert_eq!((m[0], m.len()), (i, 1 << 20));
        }
        ws.close(None, "").await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(60), send_all)
        .await
        .expect("deadlock");
}

#[tokio::test]
async fn unusable_urls_and_options() {
    for url in [
        "http://127.0.0.1/",
        "ws://127.0.0.1:99999/",
        "ws://h/#f",
        "ws://[::1/",
        "127.0.0.1",
    ] {
        match connect(url, ConnectOptions::default()).await {
            Err(RuntimeError::Url(u, _)) => assert_eq!(u, url),
            other => panic!("{url}: {other:?}"),
        }
    }
    // Options that cannot be written into a request fail before connecting.
    let bad = ConnectOptions {
        subprotocols: vec!["a,b".into()],
        ..ConnectOptions::default()
    };
    match connect("ws://127.0.0.1:9/", bad).await {
        Err(RuntimeError::Handshake(HandshakeError::InvalidHeader(..))) => {}
        other => panic!("{other:?}"),
    }
}
