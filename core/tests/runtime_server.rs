//! The runtime server over real sockets: the event queue, limits and
//! policy, faults, broadcast and shutdown. The clients are small blocking
//! drivers of the engine's client role.
#![allow(clippy::field_reassign_with_default)] // tests tweak one limit at a time

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use polysocket::handshake::{ClientHandshake, ClientOptions, ServerHandshake};
use polysocket::protocol::{CloseFrame, State};
use polysocket::runtime::{
    CloseInfo, Conn, ConnId, EventQueue, Handler, Server, ServerConfig, ServerEvent,
};
use polysocket::{Config, Connection, Draft, Event, Incoming, Message};

/// A blocking client driving the engine over std::net.
struct Client {
    stream: TcpStream,
    conn: Connection,
}

impl Client {
    fn connect(addr: SocketAddr, draft: Draft) -> Client {
        Client::try_connect(addr, draft, None).expect("handshake")
    }

    fn try_connect(addr: SocketAddr, draft: Draft, origin: Option<&str>) -> Result<Client, String> {
        Client::try_connect_with(addr, draft, origin, Config::default())
    }

    /// A client that offers no compression extension.
    fn connect_uncompressed(addr: SocketAddr, draft: Draft) -> Client {
        let mut config = Config::default();
        config.extensions.permessage_deflate = None;
        config.extensions.deflate_frame = false;
        config.extensions.deflate_stream = false;
        Client::try_connect_with(addr, draft, None, config).expect("handshake")
    }

    fn try_connect_with(
        addr: SocketAddr,
        draft: Draft,
        origin: Option<&str>,
        config: Config,
    ) -> Result<Client, String> {
        let config = Arc::new(config);
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut opts = ClientOptions::new(draft, addr.to_string(), "/chat?room=1");
        opts.origin = origin.map(str::to_string);
        let mut hs = ClientHandshake::new(config.clone(), opts).unwrap();
        stream.write_all(hs.request_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during handshake".into());
            }
            match hs.feed(&buf[..n]) {
                Ok(Some(done)) => {
                    let conn = Connection::from_completed(config, done);
                    return Ok(Client { stream, conn });
                }
                Ok(None) => {}
                Err(e) => return Err(format!("{} {e}", hs.response_status().unwrap_or(0))),
            }
        }
    }

    fn flush(&mut self) {
        let out = self.conn.take_output();
        self.stream.write_all(&out).unwrap();
    }

    fn send(&mut self, text: &str) {
        self.conn.send_text(text).unwrap();
        self.flush();
    }

    /// The next event, or None when the server closed TCP.
    fn recv(&mut self) -> Option<Event> {
        let mut buf = [0u8; 65536];
        loop {
            match self.conn.poll() {
                Ok(Some(e)) => {
                    self.flush();
                    return Some(e);
                }
                Ok(None) => {}
                Err(e) => panic!("client saw a protocol error: {e}"),
            }
            let n = self.stream.read(&mut buf).expect("read");
            if n == 0 {
                return self.conn.receive_eof();
            }
            self.conn.receive(&buf[..n]);
        }
    }

    fn recv_message(&mut self) -> Message {
        match self.recv() {
            Some(Event::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn expect_close(&mut self) -> CloseFrame {
        loop {
            match self.recv() {
                Some(Event::Close(f)) => return f,
                Some(_) => {}
                None => panic!("connection ended without a close"),
            }
        }
    }
}

/// Raw HTTP exchange: the status line of the answer.
fn raw_status(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn upgrade_request(origin: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    )
}

struct Echo {
    closes: Mutex<Vec<(ConnId, CloseInfo)>>,
}

impl Echo {
    fn new() -> Arc<Echo> {
        Arc::new(Echo {
            closes: Mutex::new(Vec::new()),
        })
    }

    fn wait_close(&self) -> CloseInfo {
        let start = Instant::now();
        loop {
            if let Some((_, c)) = self.closes.lock().unwrap().first() {
                return c.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no close reported"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Handler for Echo {
    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        conn.forward(message);
    }

    fn on_close(&self, id: ConnId, close: &CloseInfo) {
        self.closes.lock().unwrap().push((id, close.clone()));
    }
}

fn start(config: ServerConfig, handler: Arc<dyn Handler>) -> Server {
    let mut config = config;
    config.workers = 2;
    Server::start("127.0.0.1:0".parse().unwrap(), config, handler).unwrap()
}

fn drain_until(queue: &EventQueue, count: usize) -> Vec<ServerEvent> {
    let start = Instant::now();
    let mut events = Vec::new();
    while events.len() < count {
        queue.drain_into(&mut events);
        assert!(start.elapsed() < Duration::from_secs(10), "only {events:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    events
}

#[test]
fn event_queue_sees_every_draft_and_sends_back() {
    let queue = EventQueue::new().unwrap();
    let server = start(ServerConfig::default(), queue.clone());
    let handle = server.handle();
    for draft in Draft::ALL {
        let mut client = Client::connect(server.local_addr(), draft);
        client.send("hello");
        let events = drain_until(&queue, 2);
        let ServerEvent::Open(info) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(info.draft, draft);
        assert_eq!(
            (info.path.as_str(), info.query.as_str()),
            ("/chat", "room=1")
        );
        let ServerEvent::Message(id, Message::Text(t)) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!((*id, &t[..]), (info.id, &b"hello"[..]));
        assert!(handle.send(info.id, Message::text("from the app")));
        assert_eq!(client.recv_message(), Message::text("from the app"));
        assert!(handle.close(info.id, Some(1000), "bye"));
        if draft.has_close_frame() {
            let frame = client.expect_close();
            if draft.close_body() == polysocket::draft::CloseBody::Rfc6455 {
                assert_eq!((frame.code, frame.reason.as_str()), (1000, "bye"));
            }
        } else {
            assert_eq!(
                client.recv(),
                Some(Event::Close(CloseFrame {
                    code: 1005,
                    reason: String::new()
                }))
            );
        }
        let events = drain_until(&queue, 1);
        assert!(
            matches!(&events[0], ServerEvent::Close(id, c) if *id == info.id && c.clean),
            "{draft}: {events:?}"
        );
    }
}

#[test]
#[cfg(unix)] // poll(2) below; the Windows pair is a unit test of runtime::events
fn wake_up_descriptor_becomes_readable_once_per_batch() {
    let queue = EventQueue::new().unwrap();
    let server = start(ServerConfig::default(), queue.clone());
    let mut client = Client::connect(server.local_addr(), Draft::Rfc6455);
    for i in 0..50 {
        client.conn.send_text(&i.to_string()).unwrap();
    }
    client.flush();
    let fd = queue.fileno();
    let mut pollfd = [libc_pollfd(fd)];
    assert!(poll(&mut pollfd, 5000), "the descriptor signals events");
    let events = drain_until(&queue, 51);
    assert_eq!(events.len(), 51);
    assert!(!poll(&mut pollfd, 0), "drained: nothing pending");
}

#[test]
fn a_burst_of_pipelined_frames_is_echoed_whole_and_in_order() {
    // Small frames are read in place into a little receive room; a burst
    // that fills it must still all be read (the rest through the worker's
    // scratch buffer), and a larger frame in between must not disturb that.
    let server = start(ServerConfig::default(), Echo::new());
    let mut client = Client::connect_uncompressed(server.local_addr(), Draft::Rfc6455);
    for round in 0..3 {
        let mut sent = Vec::new();
        for i in 0..3_000 {
            let text = if i % 1000 == 999 {
                format!("{round}/{i}:{}", "x".repeat(20_000))
            } else {
                format!("{round}/{i}")
            };
            client.conn.send_text(&text).unwrap();
            sent.push(text);
        }
        client.flush();
        for text in sent {
            assert_eq!(client.recv_message(), Message::text(text));
        }
    }
}

#[test]
fn limits_answer_with_http_statuses() {
    let mut config = ServerConfig::default();
    config.max_connections_per_ip = 2;
    config.allowed_origins = Some(vec!["http://good.example".into()]);
    let server = start(config, Echo::new());
    let addr = server.local_addr();
    assert!(raw_status(addr, &upgrade_request("http://evil.example")).starts_with("HTTP/1.1 403"));
    let _a = Client::try_connect(addr, Draft::Rfc6455, Some("http://good.example")).unwrap();
    let _b = Client::try_connect(addr, Draft::Rfc6455, Some("http://good.example")).unwrap();
    let third = Client::try_connect(addr, Draft::Rfc6455, Some("http://good.example"));
    assert!(third.err().unwrap().starts_with("429"));
    drop(_a);
    // The slot frees once the server notices the drop.
    let start_t = Instant::now();
    loop {
        if Client::try_connect(addr, Draft::Rfc6455, Some("http://good.example")).is_ok() {
            break;
        }
        assert!(start_t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut config = ServerConfig::default();
    config.max_connections = 1;
    let server = start(config, Echo::new());
    let _only = Client::connect(server.local_addr(), Draft::Rfc6455);
    let refused = Client::try_connect(server.local_addr(), Draft::Rfc6455, None);
    assert!(refused.err().unwrap().starts_with("503"));
    assert!(raw_status(server.local_addr(), "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503"));
}

#[test]
fn bad_handshakes_get_the_right_status() {
    let server = start(ServerConfig::default(), Echo::new());
    let addr = server.local_addr();
    assert!(raw_status(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 400"));
    let v99 = upgrade_request("o").replace("Version: 13", "Version: 99");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(v99.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(
        answer.contains("Sec-WebSocket-Version: 13, 8, 7, 6, 5, 4"),
        "{answer}"
    );
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(raw_status(addr, &huge).starts_with("HTTP/1.1 431"));
}

#[test]
fn slowloris_is_cut_off_by_the_handshake_timeout() {
    let mut config = ServerConfig::default();
    config.handshake_timeout = Duration::from_millis(300);
    let server = start(config, Echo::new());
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The server still serves others.
    let mut c = Client::connect(server.local_addr(), Draft::Rfc6455);
    c.send("alive");
    assert_eq!(c.recv_message(), Message::text("alive"));
}

#[test]
fn protocol_violation_closes_with_its_code_and_others_keep_going() {
    let echo = Echo::new();
    let server = start(ServerConfig::default(), echo.clone());
    let mut good = Client::connect(server.local_addr(), Draft::Rfc6455);
    let mut bad = Client::connect(server.local_addr(), Draft::Rfc6455);
    // Masked text frame with invalid UTF-8 (key 0).
    bad.stream
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xC0, 0x80])
        .unwrap();
    assert_eq!(bad.expect_close().code, 1007);
    assert_eq!(echo.wait_close().code, 1007);
    good.send("still here");
    assert_eq!(good.recv_message(), Message::text("still here"));
}

#[test]
fn abrupt_disconnect_mid_frame_is_reported_abnormal() {
    let echo = Echo::new();
    let server = start(ServerConfig::default(), echo.clone());
    let mut c = Client::connect(server.local_addr(), Draft::Rfc6455);
    // A fragment-sent message is never compressed: the frame stays 10 kB.
    c.conn
        .send_fragment(
            polysocket::protocol::MessageKind::Binary,
            &[7u8; 10_000],
            true,
        )
        .unwrap();
    let out = c.conn.take_output();
    c.stream.write_all(&out[..5000]).unwrap();
    drop(c);
    let close = echo.wait_close();
    assert_eq!((close.code, close.clean), (1006, false));
}

#[test]
fn message_rate_limit_closes_with_1008() {
    let mut config = ServerConfig::default();
    config.max_messages_per_minute = 5;
    let server = start(config, Echo::new());
    let mut c = Client::connect(server.local_addr(), Draft::Rfc6455);
    for i in 0..6 {
        c.conn.send_text(&i.to_string()).unwrap();
    }
    c.flush();
    for _ in 0..5 {
        c.recv_message();
    }
    assert_eq!(c.expect_close().code, 1008);
}

#[test]
fn a_peer_that_stops_reading_is_cut_off_not_buffered_forever() {
    let echo = Echo::new();
    let mut config = ServerConfig::default();
    config.max_send_buffer = 256 * 1024;
    let server = start(config, echo.clone());
    let handle = server.handle();
    // Uncompressed: 64 KiB of zeros deflate to a few bytes, which the
    // socket buffers would absorb by the thousand.
    let stuck = Client::connect_uncompressed(server.local_addr(), Draft::Rfc6455);
    let id = handle.connections()[0];
    let chunk = Message::binary(vec![0u8; 64 * 1024]);
    let mut refused_at = None;
    for i in 0..10_000 {
        if !handle.send(id, chunk.clone()) {
            refused_at = Some(i);
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(refused_at.is_some(), "the send buffer must be bounded");
    let close = echo.wait_close();
    assert_eq!((close.code, close.clean), (1008, false), "{close:?}");
    drop(stuck);
    // Others are unaffected.
    let mut c = Client::connect(server.local_addr(), Draft::Rfc6455);
    c.send("ok");
    assert_eq!(c.recv_message(), Message::text("ok"));
}

#[test]
fn broadcast_reaches_every_draft_in_a_group() {
    let queue = EventQueue::new().unwrap();
    let server = start(ServerConfig::default(), queue.clone());
    let handle = server.handle();
    let drafts = [
        Draft::Hixie76,
        Draft::Hybi02,
        Draft::Hybi06,
        Draft::Hybi08,
        Draft::Rfc6455,
    ];
    let mut clients: Vec<Client> = drafts
        .iter()
        .map(|d| Client::connect(server.local_addr(), *d))
        .collect();
    let events = drain_until(&queue, drafts.len());
    for e in &events {
        let ServerEvent::Open(info) = e else { panic!() };
        handle.join(info.id, "room");
    }
    assert_eq!(
        handle.broadcast_group("room", Message::text("to all")),
        drafts.len()
    );
    for c in &mut clients {
        assert_eq!(c.recv_message(), Message::text("to all"));
    }
}

#[test]
fn graceful_shutdown_sends_1001_to_everyone() {
    let echo = Echo::new();
    let server = start(ServerConfig::default(), echo.clone());
    let mut a = Client::connect(server.local_addr(), Draft::Rfc6455);
    let mut b = Client::connect(server.local_addr(), Draft::Hixie76);
    let handle = server.handle();
    let stopper = std::thread::spawn(move || server.shutdown());
    assert_eq!(a.expect_close().code, 1001);
    assert_eq!(
        b.expect_close().code,
        1005,
        "hixie-76 closes without a code"
    );
    stopper.join().unwrap();
    assert_eq!(handle.connection_count(), 0);
}

#[test]
fn keepalive_drops_a_silent_peer() {
    let echo = Echo::new();
    let mut config = ServerConfig::default();
    config.ping_interval = Some(Duration::from_millis(100));
    config.pong_timeout = Duration::from_millis(200);
    let server = start(config, echo.clone());
    // Connected but never reads or answers: the ping goes unanswered.
    let _silent = Client::connect(server.local_addr(), Draft::Rfc6455);
    let close = echo.wait_close();
    assert_eq!((close.code, close.clean), (1006, false), "{close:?}");
}

#[test]
fn keepalive_keeps_a_peer_that_answers_and_pings_again() {
    let echo = Echo::new();
    let mut config = ServerConfig::default();
    config.ping_interval = Some(Duration::from_millis(100));
    config.pong_timeout = Duration::from_millis(150);
    let server = start(config, echo.clone());
    let mut client = Client::connect(server.local_addr(), Draft::Rfc6455);
    // Each ping is answered (auto-pong, flushed by recv); the server pings
    // again after each silence, well past several pong timeouts.
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(800) {
        match client.recv() {
            Some(Event::Ping(_)) => pings += 1,
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    assert!(pings >= 4, "{pings} pings in 800 ms");
    client.send("still here");
    assert_eq!(client.recv_message(), Message::text("still here"));
    assert!(echo.closes.lock().unwrap().is_empty());
}

#[test]
fn adopted_socket_with_bytes_already_read() {
    let echo = Echo::new();
    let server = start(ServerConfig::default(), echo);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::thread::spawn(move || {
        let mut c = Client::connect(addr, Draft::Hixie76);
        c.send("adopted");
        c.recv_message()
    });
    let (mut sock, _) = listener.accept().unwrap();
    // Another framework read the head already.
    let mut head = vec![0u8; 16];
    let n = sock.read(&mut head).unwrap();
    let mut hs = ServerHandshake::new(Arc::new(Config::default()));
    hs.feed(&head[..n]).unwrap();
    let _guard = server.runtime().enter();
    server.handle().adopt(sock, hs).unwrap();
    assert_eq!(client.join().unwrap(), Message::text("adopted"));
}

#[test]
fn plain_http_can_be_answered_by_the_handler() {
    struct Page;
    impl Handler for Page {
        fn http(&self, _r: &polysocket::http::RequestHead) -> Option<Vec<u8>> {
            Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec())
        }
        fn on_message(&self, _c: &mut Conn<'_>, _m: Incoming<'_>) {}
    }
    let server = start(ServerConfig::default(), Arc::new(Page));
    assert!(
        raw_status(server.local_addr(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .starts_with("HTTP/1.1 200")
    );
    // An upgrade still goes through.
    let c = Client::connect(server.local_addr(), Draft::Rfc6455);
    assert_eq!(c.conn.state(), State::Open);
}

// Minimal poll(2) for the wake-up descriptor test.
#[cfg(unix)]
#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

#[cfg(unix)]
fn libc_pollfd(fd: i32) -> PollFd {
    PollFd {
        fd,
        events: 1,
        revents: 0,
    }
}

#[cfg(unix)]
extern "C" {
    #[link_name = "poll"]
    fn sys_poll(fds: *mut PollFd, nfds: u64, timeout: i32) -> i32;
}

#[cfg(unix)]
fn poll(fds: &mut [PollFd], timeout_ms: i32) -> bool {
    // SAFETY: fds is a valid array of pollfd-layout structs.
    unsafe { sys_poll(fds.as_mut_ptr(), fds.len() as u64, timeout_ms) > 0 }
}

#[test]
fn frames_pipelined_behind_the_request_are_served_at_once() {
    let server = start(ServerConfig::default(), Echo::new());
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut bytes = upgrade_request("o").into_bytes();
    // Masked "hi" (key 0) right behind the request, in the same write.
    bytes.extend_from_slice(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i']);
    s.write_all(&bytes).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(&[0x81, 0x02, b'h', b'i']) {
        let n = s
            .read(&mut buf)
            .expect("the echo arrives without another write");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn handle_sends_pings_and_unsolicited_pongs() {
    let queue = EventQueue::new().unwrap();
    let server = start(ServerConfig::default(), queue.clone());
    let handle = server.handle();
    let mut client = Client::connect(server.local_addr(), Draft::Rfc6455);
    let ServerEvent::Open(info) = &drain_until(&queue, 1)[0] else {
        panic!("expected open")
    };
    assert!(handle.ping(info.id, Bytes::from_static(b"are you there")));
    assert!(handle.pong(info.id, Bytes::from_static(b"heartbeat")));
    assert_eq!(
        client.recv(),
        Some(Event::Ping(Bytes::from_static(b"are you there")))
    );
    assert_eq!(
        client.recv(),
        Some(Event::Pong(Bytes::from_static(b"heartbeat")))
    );
    // The client's automatic answer to the ping reaches the application.
    let events = drain_until(&queue, 1);
    assert!(
        matches!(&events[0], ServerEvent::Pong(id, d) if *id == info.id && &d[..] == b"are you there"),
        "{events:?}"
    );
}

/// Sends through the handle from inside a connection's own handler call,
/// as a binding's `send` makes them.
struct ThroughHandle {
    handle: std::sync::OnceLock<polysocket::runtime::ServerHandle>,
    refused: Mutex<Vec<usize>>,
    closes: Mutex<Vec<CloseInfo>>,
}

impl Handler for ThroughHandle {
    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        let handle = self.handle.get().expect("handle set");
        let id = conn.id();
        if message.data() == b"flood" {
            // Far more than the send buffer in one call: refused past it.
            // (Incompressible, each one new: the client offers
            // permessage-deflate.)
            let mut x = 0x9E37_79B9u32;
            let mut noise = || {
                let bytes: Vec<u8> = (0..16 * 1024)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                Message::binary(bytes)
            };
            let sent = (0..64).take_while(|_| handle.send(id, noise())).count();
            self.refused.lock().unwrap().push(sent);
            return;
        }
        // Interleaved with the handler's own `Conn` sends, in call order:
        // through the mailbox, "a" and "c" would follow "b".
        assert!(handle.send(id, Message::text("a")));
        conn.send(&Message::text("b"));
        assert!(handle.send(id, Message::text("c")));
    }

    fn on_close(&self, _id: ConnId, close: &CloseInfo) {
        self.closes.lock().unwrap().push(close.clone());
    }
}

#[test]
fn handle_sends_from_the_connections_own_handler_keep_call_order_and_the_buffer_limit() {
    let handler = Arc::new(ThroughHandle {
        handle: Default::default(),
        refused: Mutex::new(Vec::new()),
        closes: Mutex::new(Vec::new()),
    });
    let mut config = ServerConfig::default();
    config.max_send_buffer = 256 * 1024;
    let server = start(config, handler.clone());
    handler.handle.set(server.handle()).ok().unwrap();
    let mut c = Client::connect(server.local_addr(), Draft::Rfc6455);
    for _ in 0..3 {
        c.send("go");
        for want in ["a", "b", "c"] {
            assert_eq!(c.recv_message(), Message::text(want));
        }
    }
    c.send("flood");
    let start = Instant::now();
    while handler.closes.lock().unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "no close");
        std::thread::sleep(Duration::from_millis(10));
    }
    // 16 sends fill 256 KiB; the one that would pass the limit is refused
    // and the connection is cut off as when its mailbox overflows.
    assert_eq!(*handler.refused.lock().unwrap(), vec![15]);
    let close = handler.closes.lock().unwrap()[0].clone();
    assert_eq!((close.code, close.clean), (1008, false), "{close:?}");
}

#[test]
fn a_large_frame_trickling_in_counts_as_heard_by_keepalive() {
    // The server waits for the rest of a large frame under a receive
    // low-water mark; a slow sender must still count as alive.
    let echo = Echo::new();
    let mut config = ServerConfig::default();
    config.ping_interval = Some(Duration::from_millis(100));
    config.pong_timeout = Duration::from_millis(100);
    let server = start(config, echo.clone());
    let mut c = Client::connect_uncompressed(server.local_addr(), Draft::Rfc6455);
    let payload: Vec<u8> = (0..500_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    c.conn.send_binary(&payload).unwrap();
    let frame = c.conn.take_output();
    // 10 kB every 20 ms, 1 s in all: far longer than a ping interval plus
    // its pong timeout, and slow enough that the kernel's receive buffer
    // does not fill up to the mark in that time.
    for piece in frame.chunks(10_000) {
        c.stream.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    loop {
        match c.recv() {
            Some(Event::Message(m)) => {
                assert_eq!(m.data().as_ref(), &payload[..]);
                break;
            }
            Some(Event::Ping(_)) => {}
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    assert!(
        echo.closes.lock().unwrap().is_empty(),
        "dropped while sending"
    );
}
