//! A rolling restart on one port: an old and a new server share it
//! (`reuse_port`). Draining the old one closes its listening socket at
//! once: every client that connects from then on reaches the new one,
//! while the old one's clients keep echoing until the drain timeout, when
//! they get 1001. A drain whose clients all leave ends at once.
#![allow(clippy::field_reassign_with_default)] // tests tweak one limit at a time

use std::sync::Arc;
use std::time::{Duration, Instant};

use polysocket::runtime::{bind_listener, Conn, Handler, OpenInfo, Server, ServerConfig};
use polysocket::{Draft, Event, Incoming, Message};

mod common;
use common::Client;

/// Greets each client with its name, then echoes.
struct Named(&'static str);

impl Handler for Named {
    fn on_open(&self, conn: &mut Conn<'_>, _info: &Arc<OpenInfo>) {
        let _ = conn.send(&Message::text(self.0));
    }

    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        let _ = conn.forward(message);
    }
}

fn start(addr: std::net::SocketAddr, name: &'static str, drain: Duration) -> Server {
    let mut config = ServerConfig::default();
    config.drain_timeout = drain;
    config.workers = 1;
    let listener = bind_listener(addr, true).unwrap();
    Server::start_with_listener(listener, config, Arc::new(Named(name))).unwrap()
}

/// A client and the name of the server that greeted it.
fn connect(addr: std::net::SocketAddr) -> (Client, String) {
    let mut client = Client::connect(addr, Draft::Rfc6455);
    let name = String::from_utf8(client.recv_message().data().to_vec()).unwrap();
    (client, name)
}

fn echo(client: &mut Client, text: &str) {
    client.send(text);
    assert_eq!(
        client.recv_message().data(),
        text.as_bytes(),
        "echo of {text}"
    );
}

#[test]
fn a_drained_server_keeps_its_clients_until_the_timeout_and_new_ones_go_to_the_other() {
    const DRAIN: Duration = Duration::from_millis(1500);
    let old = start("127.0.0.1:0".parse().unwrap(), "old", DRAIN);
    let addr = old.local_addr();
    let new = start(addr, "new", Duration::ZERO);

    // The kernel spreads connections over both listeners: keep those the
    // old server took (at least five).
    let mut on_old = Vec::new();
    let mut on_new = Vec::new();
    while on_old.len() < 5 {
        let (client, name) = connect(addr);
        match name.as_str() {
            "old" => on_old.push(client),
            _ => on_new.push(client),
        }
        assert!(
            on_old.len() + on_new.len() < 500,
            "the old server took no connection"
        );
    }

    let drained = Instant::now();
    old.handle().drain();
    // Its listening socket is closed at once: from now on every client is
    // the new server's, and none is refused.
    std::thread::sleep(Duration::from_millis(100));
    let mut late = Vec::new();
    while drained.elapsed() < DRAIN - Duration::from_millis(400) {
        let (mut client, name) = connect(addr);
        assert_eq!(name, "new", "a client reached the draining server");
        echo(&mut client, "late");
        late.push(client);
        // Meanwhile the old server's clients are served.
        for (i, client) in on_old.iter_mut().enumerate() {
            echo(client, &format!("old client {i}"));
        }
    }
    assert!(
        late.len() >= 5,
        "only {} clients connected during the drain",
        late.len()
    );

    // At the timeout the rest get 1001, not before.
    for client in &mut on_old {
        let close = client.expect_close();
        assert_eq!(close.code, 1001);
    }
    assert!(
        drained.elapsed() >= DRAIN,
        "closed after {:?}",
        drained.elapsed()
    );
    old.wait();
    // The new server and its clients carry on.
    for client in on_new.iter_mut().chain(late.iter_mut()) {
        echo(client, "still here");
    }
    drop(new);
}

#[test]
fn a_drain_ends_when_the_last_client_leaves() {
    let server = start(
        "127.0.0.1:0".parse().unwrap(),
        "old",
        Duration::from_secs(60),
    );
    let (mut client, _) = connect(server.local_addr());
    let drained = Instant::now();
    server.handle().drain();
    echo(&mut client, "during the drain");
    client.conn.close(Some(1000), "bye").unwrap();
    client.flush();
    assert!(matches!(client.recv(), Some(Event::Close(_))));
    server.wait();
    assert!(
        drained.elapsed() < Duration::from_secs(5),
        "took {:?}",
        drained.elapsed()
    );
    // The port is free: nothing listens there any more.
    assert!(std::net::TcpStream::connect(server.local_addr()).is_err());
}
