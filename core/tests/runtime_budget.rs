//! The server-wide buffer budget over real sockets: many clients that send
//! most of a large frame and stall cannot take the server past
//! `max_buffered_total`; those the budget has no room for are closed with
//! 1013, while clients exchanging small messages keep being served.
#![allow(clippy::field_reassign_with_default)] // tests tweak one limit at a time

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use polysocket::runtime::{
    CloseInfo, Conn, ConnId, Handler, Server, ServerConfig, OVERLOAD_CLOSE, UNCOUNTED,
};
use polysocket::{Config, Draft, Event, Incoming, Message};

mod common;
use common::Client;

const MIB: usize = 1024 * 1024;
const BUDGET: usize = 8 * MIB;
const FRAME: usize = 3 * MIB;
/// What each slow sender sends of its frame before it stalls.
const SENT: usize = FRAME - FRAME / 6;
const SLOW_SENDERS: usize = 40;

struct Echo {
    closes: Mutex<Vec<(ConnId, CloseInfo)>>,
}

impl Handler for Echo {
    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        // Refused only once the connection is closing.
        let _ = conn.forward(message);
    }

    fn on_close(&self, id: ConnId, close: &CloseInfo) {
        self.closes.lock().unwrap().push((id, close.clone()));
    }
}

fn start(echo: Arc<Echo>) -> Server {
    let mut protocol = Config::default();
    protocol.max_message_size = 4 * MIB;
    protocol.max_frame_size = 4 * MIB;
    let mut config = ServerConfig::default();
    config.protocol = Arc::new(protocol);
    config.max_buffered_total = BUDGET;
    config.workers = 2;
    Server::start("127.0.0.1:0".parse().unwrap(), config, echo).unwrap()
}

/// A client that sends `SENT` bytes of a `FRAME`-byte binary message, in
/// fragments of 64 KiB, then waits without sending the last one. Write
/// errors (the server gave up on it meanwhile) end the sending early.
fn slow_sender(addr: SocketAddr) -> Client {
    let mut client = Client::connect_uncompressed(addr, Draft::Rfc6455);
    client
        .stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let fragment = vec![0x5a; 64 * 1024];
    let mut sent = 0;
    while sent < SENT {
        let n = fragment.len().min(SENT - sent);
        let kind = polysocket::protocol::MessageKind::Binary;
        client
            .conn
            .send_fragment(kind, &fragment[..n], false)
            .unwrap();
        let out = client.conn.take_output();
        if client.stream.write_all(&out).is_err() {
            break;
        }
        sent += n;
    }
    client
}

/// The close code the server sent this client, or None if it still holds
/// the client's frame (nothing arrives within `wait`).
fn close_code(client: &mut Client, wait: Duration) -> Option<u16> {
    client.stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        if let Ok(Some(Event::Close(frame))) = client.conn.poll() {
            return Some(frame.code);
        }
        match client.stream.read(&mut buf) {
            Ok(0) => return client.conn.receive_eof().map(|_| 1006),
            Ok(n) => client.conn.receive(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            // Reset after the close frame was read counts as that close.
            Err(_) => return Some(1006),
        }
    }
}

/// Wait until `count` has not changed for a second (at most 20 s).
fn settle(count: impl Fn() -> u64) {
    let (start, mut last, mut since) = (Instant::now(), count(), Instant::now());
    while since.elapsed() < Duration::from_secs(1) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// Echo small messages until `stop`; returns how many came back intact.
fn chatter(addr: SocketAddr, stop: Arc<AtomicBool>) -> usize {
    let mut client = Client::connect_uncompressed(addr, Draft::Rfc6455);
    let mut echoed = 0;
    while !stop.load(Ordering::Acquire) {
        let text = format!("message {echoed} {}", "x".repeat(1000));
        client.send(&text);
        assert_eq!(client.recv_message(), Message::text(text));
        echoed += 1;
    }
    echoed
}

#[test]
fn slow_senders_stay_within_the_budget_while_others_are_served() {
    let echo = Arc::new(Echo {
        closes: Mutex::new(Vec::new()),
    });
    let server = start(echo.clone());
    let (addr, handle) = (server.local_addr(), server.handle());

    // The accounted total, sampled throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, peak, handle) = (stop.clone(), peak.clone(), handle.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                peak.fetch_max(handle.buffered_bytes(), Ordering::AcqRel);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let chatters: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || chatter(addr, stop))
        })
        .collect();

    let senders: Vec<_> = (0..SLOW_SENDERS)
        .map(|_| std::thread::spawn(move || slow_sender(addr)))
        .collect();
    let mut senders: Vec<Client> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    // Let the server read what was sent (the refused ones are answered):
    // until no connection has been refused for a second, however loaded
    // the machine is.
    settle(|| handle.over_budget_closes());
    let codes: Vec<Option<u16>> = senders
        .iter_mut()
        .map(|c| close_code(c, Duration::from_millis(1000)))
        .collect();
    let held = codes.iter().filter(|c| c.is_none()).count();
    let refused = codes.iter().filter(|c| **c == Some(OVERLOAD_CLOSE)).count();
    let in_budget = (BUDGET / (SENT - UNCOUNTED)).max(1);
    assert!(
        held <= in_budget,
        "{held} slow senders held, room for {in_budget}: {codes:?}"
    );
    assert!(held >= 1, "the budget holds at least one frame: {codes:?}");
    assert_eq!(
        refused,
        SLOW_SENDERS - held,
        "every other one is closed with 1013: {codes:?}"
    );
    assert_eq!(handle.over_budget_closes(), refused as u64);
    assert!(handle.buffered_bytes() > 0, "the held frames are counted");

    stop.store(true, Ordering::Release);
    sampler.join().unwrap();
    for chatter in chatters {
        let echoed = chatter.join().expect("small messages kept echoing");
        assert!(echoed > 10, "only {echoed} echoes during the flood");
    }
    let peak = peak.load(Ordering::Acquire);
    assert!(peak <= BUDGET, "accounted {peak} bytes, budget {BUDGET}");
    assert!(peak >= SENT - UNCOUNTED, "the sampler saw a held frame");

    // The handler hears of each refusal (once the server stopped
    // discarding what the refused client still sent: up to a second).
    let reported = || {
        let closes = echo.closes.lock().unwrap();
        closes
            .iter()
            .filter(|(_, c)| c.code == OVERLOAD_CLOSE)
            .count()
    };
    let start = Instant::now();
    while reported() < refused {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{} reported",
            reported()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(reported(), refused);

    // The stalled clients go away: the budget is given back...
    drop(senders);
    let start = Instant::now();
    while handle.buffered_bytes() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} bytes still counted",
            handle.buffered_bytes()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // ...and a large message is served again.
    let mut client = Client::connect_uncompressed(addr, Draft::Rfc6455);
    let big = vec![7u8; FRAME];
    client.conn.send_binary(&big).unwrap();
    client.flush();
    assert_eq!(client.recv_message(), Message::binary(big));
    server.shutdown();
}

#[test]
fn a_reader_that_stalls_cannot_park_its_echoes_outside_the_budget() {
    let echo = Arc::new(Echo {
        closes: Mutex::new(Vec::new()),
    });
    let server = start(echo.clone());
    let (addr, handle) = (server.local_addr(), server.handle());
    // Clients that send whole 3 MiB messages and never read their echoes:
    // once the kernel's buffers are full, each echo waits in the server,
    // counted, until the budget is full.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect_uncompressed(addr, Draft::Rfc6455);
                client
                    .stream
                    .set_write_timeout(Some(Duration::from_secs(3)))
                    .unwrap();
                for _ in 0..8 {
                    client.conn.send_binary(&vec![1u8; FRAME]).unwrap();
                    let out = client.conn.take_output();
                    if client.stream.write_all(&out).is_err() {
                        break;
                    }
                }
                client
            })
        })
        .collect();
    let clients: Vec<Client> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    let start = Instant::now();
    while handle.over_budget_closes() == 0 {
        // Generous: on a loaded host the echoes pile up slowly.
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "8 unread 3 MiB echoes fit an 8 MiB budget? counted {}",
            handle.buffered_bytes()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(handle.buffered_bytes() <= BUDGET);
    drop(clients);
    let start = Instant::now();
    while handle.buffered_bytes() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "budget not given back"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.shutdown();
}

/// Over TLS too: the connection that would pass the budget gets its 1013
/// close (written on the way out, not only when the socket takes it at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_refused_client_reads_its_1013() {
    use polysocket::protocol::MessageKind;
    use polysocket::runtime::{connect, tls, ConnectOptions};
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut config = ServerConfig::default();
    config.max_buffered_total = MIB;
    config.tls = Some(tls::server_config(&cert_path, &key_path).unwrap());
    config.workers = 1;
    let echo = Arc::new(Echo {
        closes: Mutex::new(Vec::new()),
    });
    let server = Server::start("127.0.0.1:0".parse().unwrap(), config, echo).unwrap();
    let options = ConnectOptions {
        tls: Some(tls::client_config(&[&cert_path]).unwrap()),
        ..ConnectOptions::default()
    };
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let mut ws = connect(&url, options).await.unwrap();
    let piece = vec![9u8; 64 * 1024];
    for _ in 0..32 {
        if ws
            .send_fragment(MessageKind::Binary, &piece, false)
            .await
            .is_err()
        {
            break;
        }
    }
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.recv()).await {
            Ok(Ok(Some(Event::Close(frame)))) => break frame.code,
            Ok(Ok(Some(_))) => continue,
            other => panic!("no close: {other:?}"),
        }
    };
    assert_eq!(code, OVERLOAD_CLOSE);
    assert_eq!(server.handle().over_budget_closes(), 1);
    drop(server);
}
