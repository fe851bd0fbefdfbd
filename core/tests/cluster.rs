//! Servers clustered over a real `redis-server` (Debian package; started
//! here on a free port with persistence off, killed by PID). Without
//! `redis-server` on PATH these tests fail: they must not pass unrun.
#![allow(clippy::field_reassign_with_default)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use polysocket::runtime::cluster::envelope::{Body, Envelope, Heartbeat};
use polysocket::runtime::cluster::{node_of, NODE_SHIFT};
use polysocket::runtime::{
    ClusterConfig, ConnId, EventQueue, RuntimeError, Server, ServerConfig, ServerEvent,
    ServerHandle,
};
use polysocket::{Draft, Event, Message, SendError};

mod common;
use common::Client;

/// A child process of this test, killed (SIGKILL) and reaped when dropped,
/// however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `redis-server` of this test, killed by PID when dropped.
struct Redis {
    child: Option<Reaped>,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_on(free_port())
    }

    fn start_on(port: u16) -> Redis {
        let redis = Redis::spawn(port, &["--port", &port.to_string()]);
        wait_until("redis-server answers PING", Duration::from_secs(10), || {
            redis.command(&[b"PING"]).is_ok_and(|r| r == b"+PONG\r\n")
        });
        redis
    }

    /// `redis-server` on 127.0.0.1 without persistence, with `args`.
    fn spawn(port: u16, args: &[&str]) -> Redis {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is required (apt-get install -y redis-server)");
        Redis {
            child: Some(Reaped(child)),
            port,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL) and reap it.
    fn kill(&mut self) {
        self.child = None;
    }

    /// One RESP command on a connection of its own: the first reply line.
    fn command(&self, args: &[&[u8]]) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        s.write_all(&out)?;
        let mut reply = Vec::new();
        let mut byte = [0u8];
        while !reply.ends_with(b"\r\n") {
            if s.read(&mut byte)? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            reply.push(byte[0]);
        }
        Ok(reply)
    }

    /// Subscribers of `channel` (`PUBSUB NUMSUB`).
    fn subscribers(&self, channel: &str) -> usize {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let command = format!(
            "*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n${}\r\n{channel}\r\n",
            channel.len()
        );
        s.write_all(command.as_bytes()).unwrap();
        // *2, $len, the channel, :count
        let mut reply = Vec::new();
        let mut byte = [0u8];
        while reply.windows(2).filter(|w| w == b"\r\n").count() < 4 {
            assert_eq!(s.read(&mut byte).unwrap(), 1, "NUMSUB answered");
            reply.push(byte[0]);
        }
        let reply = String::from_utf8(reply).unwrap();
        let count = reply.lines().nth(3).unwrap();
        count.trim_start_matches(':').parse().unwrap()
    }

    fn publish(&self, channel: &str, payload: &[u8]) {
        let reply = self.command(&[b"PUBLISH", channel.as_bytes(), payload]);
        assert!(reply.unwrap().starts_with(b":"), "PUBLISH answered");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

/// A clustered server whose events the test reads.
struct Node {
    server: Server,
    queue: Arc<EventQueue>,
}

impl Node {
    fn start(url: &str, namespace: &str) -> Node {
        Node::start_with(url, namespace, ClusterConfig::new(url, namespace).queue)
    }

    /// A node whose bus queue holds `queue` envelopes.
    fn start_with(url: &str, namespace: &str, queue: usize) -> Node {
        let mut cluster = ClusterConfig::new(url, namespace);
        cluster.queue = queue;
        cluster.heartbeat_interval = Duration::from_millis(100);
        cluster.node_expiry = Duration::from_millis(600);
        cluster.reconnect_min = Duration::from_millis(20);
        cluster.reconnect_max = Duration::from_millis(200);
        cluster.redis_timeout = Duration::from_secs(1);
        let mut config = ServerConfig::default();
        config.workers = 1;
        config.cluster = Some(cluster);
        let queue = EventQueue::new().unwrap();
        let server = Server::start("127.0.0.1:0".parse().unwrap(), config, queue.clone())
            .expect("a clustered server starts");
        Node { server, queue }
    }

    fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn id(&self) -> u32 {
        self.handle().node_id().unwrap()
    }

    /// Connect clients of the given drafts (`true`: offer no compression);
    /// each with its connection id.
    fn clients(&self, drafts: &[(Draft, bool)]) -> Vec<(ConnId, Client)> {
        let clients: Vec<Client> = drafts
            .iter()
            .map(|&(draft, plain)| match plain {
                true => Client::connect_uncompressed(self.addr(), draft),
                false => Client::connect(self.addr(), draft),
            })
            .collect();
        let mut ids = HashMap::new();
        wait_until("every open is reported", Duration::from_secs(10), || {
            for event in self.queue.drain() {
                if let ServerEvent::Open(info) = event {
                    ids.insert(info.peer, info.id);
                }
            }
            ids.len() == clients.len()
        });
        clients
            .into_iter()
            .map(|c| (ids[&c.stream.local_addr().unwrap()], c))
            .collect()
    }

    fn stats(&self) -> polysocket::runtime::ClusterStats {
        self.handle().cluster_stats().unwrap()
    }
}

/// Every draft family: hixie-75, hixie-76, hybi-07, RFC 6455 with and
/// without permessage-deflate.
const MIXED: [(Draft, bool); 5] = [
    (Draft::Hixie75, false),
    (Draft::Hixie76, false),
    (Draft::Hybi07, false),
    (Draft::Rfc6455, false),
    (Draft::Rfc6455, true),
];

fn wait_for_nodes(nodes: &[&Node]) {
    wait_until(
        "every node sees every other",
        Duration::from_secs(10),
        || {
            nodes
                .iter()
                .all(|n| n.handle().nodes().len() == nodes.len())
        },
    );
}

/// The next event within `limit`, or `None` when nothing arrives.
fn next_within(client: &mut Client, limit: Duration) -> Option<Event> {
    client.stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 65536];
    let event = loop {
        if let Some(event) = client.conn.poll().unwrap() {
            break Some(event);
        }
        match client.stream.read(&mut buf) {
            Ok(0) => break client.conn.receive_eof(),
            Ok(n) => client.conn.receive(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break None
            }
            Err(e) => panic!("read: {e}"),
        }
    };
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    event
}

fn text(client: &mut Client) -> String {
    match client.recv_message() {
        Message::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[test]
fn broadcasts_and_group_messages_reach_every_client_once_in_publish_order() {
    let redis = Redis::start();
    let nodes: Vec<Node> = (0..3).map(|_| Node::start(&redis.url(), "order")).collect();
    wait_for_nodes(&nodes.iter().collect::<Vec<_>>());
    let mut clients: Vec<(usize, ConnId, Client)> = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for (id, client) in node.clients(&MIXED) {
            assert_eq!(node_of(id), node.id(), "the node id is in the high bits");
            assert!(id < 1 << 63, "PHP's signed integers hold every id");
            clients.push((n, id, client));
        }
    }
    // Members of "room" on nodes 0 and 1; node 2 has none but publishes.
    for (n, id, _) in &clients {
        if *n < 2 {
            nodes[*n].handle().join(*id, "room");
        }
    }
    wait_until(
        "presence is known everywhere",
        Duration::from_secs(10),
        || {
            nodes
                .iter()
                .all(|n| n.handle().presence(None) == 15 && n.handle().presence(Some("room")) == 10)
        },
    );
    // A heartbeat went out after the subscription was asked for; give
    // the subscribing connection the same time.
    std::thread::sleep(Duration::from_millis(200));
    const N: usize = 200;
    for i in 0..N {
        assert_eq!(
            nodes[0]
                .handle()
                .broadcast_all(Message::text(format!("a{i}"))),
            5
        );
        assert_eq!(
            nodes[1]
                .handle()
                .broadcast_group("room", Message::text(format!("b{i}"))),
            5
        );
        assert_eq!(
            nodes[2]
                .handle()
                .broadcast_group("room", Message::text(format!("c{i}"))),
            0
        );
    }
    for (n, id, client) in &mut clients {
        let member = *n < 2;
        let expected = if member { 3 * N } else { N };
        let mut next: HashMap<char, usize> = HashMap::new();
        for _ in 0..expected {
            let m = text(client);
            let (publisher, i) = m.split_at(1);
            let seen = next.entry(publisher.chars().next().unwrap()).or_default();
            assert_eq!(
                i.parse::<usize>().unwrap(),
                *seen,
                "client {id} on node {n}: order"
            );
            *seen += 1;
        }
        assert_eq!(next.get(&'a'), Some(&N));
        if member {
            assert_eq!((next.get(&'b'), next.get(&'c')), (Some(&N), Some(&N)));
        }
        let extra = next_within(client, Duration::from_millis(300));
        assert!(extra.is_none(), "client {id} got a duplicate: {extra:?}");
    }
    // Binary crosses to every client whose draft carries it; hixie clients
    // are refused it per connection and see only what follows.
    assert_eq!(
        nodes[1]
            .handle()
            .broadcast_all(Message::binary(vec![1, 2, 3])),
        3
    );
    nodes[1].handle().broadcast_all(Message::text("end"));
    for (_, _, client) in &mut clients {
        if client.conn.draft().has_binary() {
            assert_eq!(client.recv_message(), Message::binary(vec![1, 2, 3]));
        }
        assert_eq!(text(client), "end");
    }
    // What an RFC 6455 client says on node 2, its application broadcasts:
    // the hixie-75 clients of the other nodes read it too.
    let speaker = clients
        .iter_mut()
        .find(|(n, _, c)| *n == 2 && c.conn.draft() == Draft::Rfc6455)
        .unwrap();
    speaker.2.send("from a client");
    let mut said = None;
    wait_until("node 2 hears its client", Duration::from_secs(5), || {
        said = nodes[2].queue.drain().into_iter().find_map(|e| match e {
            ServerEvent::Message(_, m) => Some(m),
            _ => None,
        });
        said.is_some()
    });
    nodes[2].handle().broadcast_all(said.unwrap());
    for (_, _, client) in &mut clients {
        assert_eq!(text(client), "from a client");
    }
    for node in &nodes {
        let stats = node.stats();
        assert!(stats.connected);
        assert_eq!((stats.dropped, stats.malformed), (0, 0), "{stats:?}");
    }
}

#[test]
fn direct_commands_reach_connections_on_other_nodes() {
    let redis = Redis::start();
    let (a, b) = (
        Node::start(&redis.url(), "direct"),
        Node::start(&redis.url(), "direct"),
    );
    wait_for_nodes(&[&a, &b]);
    let mut on_b = b.clients(&[(Draft::Rfc6455, false), (Draft::Hixie76, false)]);
    let (rfc, hixie) = (on_b[0].0, on_b[1].0);
    let via = a.handle();
    via.send(rfc, Message::text("direct")).unwrap();
    assert_eq!(on_b[0].1.recv_message(), Message::text("direct"));
    via.ping(rfc, Bytes::from_static(b"p")).unwrap();
    assert_eq!(
        on_b[0].1.recv(),
        Some(Event::Ping(Bytes::from_static(b"p")))
    );
    // Rules that hold for every draft are checked before publishing.
    let long = Bytes::from(vec![0u8; 200]);
    assert_eq!(via.ping(rfc, long), Err(SendError::ControlTooLong));
    assert_eq!(
        via.close(rfc, Some(1005), ""),
        Err(SendError::InvalidCloseCode(1005))
    );
    // The draft's own rules are the owner's: refused there and counted.
    via.send(hixie, Message::binary(vec![1])).unwrap();
    // A connection the live node does not have: sent, counted there.
    via.send(
        (u64::from(b.id()) << NODE_SHIFT) | 999_999,
        Message::text("x"),
    )
    .unwrap();
    wait_until("b counted both", Duration::from_secs(5), || {
        b.stats().unroutable == 2
    });
    via.send(hixie, Message::text("to hixie")).unwrap();
    assert_eq!(on_b[1].1.recv_message(), Message::text("to hixie"));
    via.close(rfc, Some(4000), "bye").unwrap();
    let frame = on_b[0].1.expect_close();
    assert_eq!((frame.code, frame.reason.as_str()), (4000, "bye"));
    // No live node has it: Gone at once, nothing published.
    let dead_node = (1..).find(|n| !via.nodes().contains(n)).unwrap();
    let published = a.stats().published;
    let start = Instant::now();
    assert_eq!(
        via.send((u64::from(dead_node) << NODE_SHIFT) | 1, Message::text("x")),
        Err(SendError::Gone)
    );
    assert!(start.elapsed() < Duration::from_millis(50));
    assert_eq!(
        via.send(
            (u64::from(a.id()) << NODE_SHIFT) | 999_999,
            Message::text("x")
        ),
        Err(SendError::Gone),
        "an id of this node it does not have"
    );
    assert_eq!(a.stats().published, published);
}

#[test]
fn a_node_subscribes_to_a_group_only_while_it_has_members() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "subs");
    let mut on_a = a.clients(&MIXED[3..5]);
    let channel = "polysocket:subs:group:room";
    let redis = &redis;
    let subscribed = |n| move || redis.subscribers(channel) == n;
    wait_until("a subscribes", Duration::from_secs(5), || {
        redis.subscribers("polysocket:subs:all") == 1
    });
    assert_eq!(redis.subscribers(channel), 0);
    a.handle().join(on_a[0].0, "room");
    a.handle().join(on_a[1].0, "room");
    wait_until("first member", Duration::from_secs(5), subscribed(1));
    a.handle().leave(on_a[0].0, "room");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(redis.subscribers(channel), 1, "one member left");
    // The last member goes by closing.
    on_a[1].1.conn.close(Some(1000), "").unwrap();
    on_a[1].1.flush();
    on_a[1].1.expect_close();
    wait_until("no member", Duration::from_secs(5), subscribed(0));
    a.handle().join(on_a[0].0, "room");
    wait_until("a member again", Duration::from_secs(5), subscribed(1));
    a.handle().leave(on_a[0].0, "room");
    wait_until("left", Duration::from_secs(5), subscribed(0));
}

#[test]
fn presence_follows_heartbeats_and_forgets_a_silent_node() {
    let redis = Redis::start();
    let (a, b) = (
        Node::start(&redis.url(), "presence"),
        Node::start(&redis.url(), "presence"),
    );
    wait_for_nodes(&[&a, &b]);
    let on_a = a.clients(&MIXED[..2]);
    let on_b = b.clients(&MIXED[2..]);
    a.handle().join(on_a[0].0, "room");
    b.handle().join(on_b[0].0, "room");
    b.handle().join(on_b[1].0, "room");
    wait_until("counts cross", Duration::from_secs(5), || {
        a.handle().presence(None) == 5 && a.handle().presence(Some("room")) == 3
    });
    // A node that announces itself and then goes silent, as a SIGKILLed
    // one does: its connections count until its announced expiry passes.
    let ghost = (1..).find(|n| !a.handle().nodes().contains(n)).unwrap();
    let beat = Envelope {
        origin: ghost,
        body: Body::Heartbeat(Heartbeat {
            incarnation: 7,
            expiry_ms: 500,
            connections: 40,
            groups: vec![("room".into(), 10)],
        }),
    };
    redis.publish("polysocket:presence:presence", &beat.encode());
    wait_until("the ghost counts", Duration::from_secs(5), || {
        a.handle().presence(Some("room")) == 13
    });
    assert_eq!(a.handle().presence(None), 45);
    let ghost_conn = (u64::from(ghost) << NODE_SHIFT) | 1;
    assert_eq!(a.handle().send(ghost_conn, Message::text("x")), Ok(()));
    let gone = wait_until("the ghost expires", Duration::from_secs(5), || {
        a.handle().presence(None) == 5
    });
    println!("a silent node left the counts {gone:?} after its last heartbeat");
    assert!(!a.handle().nodes().contains(&ghost));
    assert_eq!(
        a.handle().send(ghost_conn, Message::text("x")),
        Err(SendError::Gone)
    );
    // A node that stops says so: it leaves the counts at once.
    drop(on_b);
    b.server.shutdown();
    let left = wait_until("b's leave", Duration::from_millis(400), || {
        a.handle().presence(None) == 2 && a.handle().nodes().len() == 1
    });
    println!("a stopping node left the counts after {left:?}");
}

/// Not a test of its own: the node [`a_sigkilled_node_leaves_the_counts`]
/// runs as a child process (this test binary, run again with the Redis URL
/// in `POLYSOCKET_CHILD_NODE`). It prints its address and serves until
/// killed.
#[test]
#[ignore]
fn child_node() {
    let Ok(url) = std::env::var("POLYSOCKET_CHILD_NODE") else {
        return;
    };
    let node = Node::start(&url, "sigkill");
    println!("CHILD {} {}", node.id(), node.addr());
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_sigkilled_node_leaves_the_counts() {
    let redis = Redis::start();
    let a = Node::start(&redis.url(), "sigkill");
    let mut child = Reaped(
        Command::new(std::env::current_exe().unwrap())
            .args(["child_node", "--exact", "--ignored", "--nocapture"])
            .env("POLYSOCKET_CHILD_NODE", redis.url())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let line = std::iter::from_fn(|| {
        let mut line = String::new();
        (std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0).then_some(line)
    })
    .find(|l| l.starts_with("CHILD "))
    .expect("the child node reports its address");
    let mut fields = line.split_whitespace().skip(1);
    let child_node: u32 = fields.next().unwrap().parse().unwrap();
    let child_addr: SocketAddr = fields.next().unwrap().parse().unwrap();
    let mut on_child: Vec<Client> = (0..3)
        .map(|_| Client::connect(child_addr, Draft::Rfc6455))
        .collect();
    let mut on_a = a.clients(&MIXED[..1]);
    wait_until(
        "a counts the child's clients",
        Duration::from_secs(10),
        || a.handle().presence(None) == 4 && a.handle().nodes().contains(&child_node),
    );
    a.handle().broadcast_all(Message::text("to the child"));
    for client in &mut on_child {
        assert_eq!(text(client), "to the child");
    }
    drop(child); // SIGKILL: no leave, no close
    let gone = wait_until(
        "the child leaves the counts",
        Duration::from_secs(5),
        || a.handle().presence(None) == 1,
    );
    println!("a SIGKILLed node left the counts {gone:?} after it died (expiry 600 ms)");
    assert!(!a.handle().nodes().contains(&child_node));
    assert_eq!(a.handle().broadcast_all(Message::text("still here")), 1);
    assert_eq!(text(&mut on_a[0].1), "to the child");
    assert_eq!(text(&mut on_a[0].1), "still here");
}

/// Run the test `name` of this binary in a child process with `env`; it
/// must pass.
fn run_child(name: &str, env: &[(&str, &str)]) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--nocapture"])
        .envs(env.iter().copied())
        .status()
        .unwrap();
    assert!(status.success(), "{name} failed in the child process");
}

#[test]
fn rediss_with_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let (cert_path, key_path) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
    let tls_port = port.to_string();
    let _redis = Redis::spawn(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            cert_path,
            "--tls-key-file",
            key_path,
            "--tls-ca-cert-file",
            cert_path,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret",
        ],
    );
    wait_until("redis-server listens", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // The certificate is trusted through the system roots' variable, set
    // for a child process only.
    let url = format!("rediss://:s3cret@127.0.0.1:{port}");
    run_child(
        "tls_child",
        &[("SSL_CERT_FILE", cert_path), ("POLYSOCKET_TLS_CHILD", &url)],
    );
}

/// Not a test of its own: [`rediss_with_a_password`] runs it in a child
/// process with `SSL_CERT_FILE` set.
#[test]
#[ignore]
fn tls_child() {
    let Ok(url) = std::env::var("POLYSOCKET_TLS_CHILD") else {
        return;
    };
    let (a, b) = (Node::start(&url, "tls"), Node::start(&url, "tls"));
    wait_for_nodes(&[&a, &b]);
    let mut on_a = a.clients(&MIXED[..1]);
    b.handle().broadcast_all(Message::text("over TLS"));
    assert_eq!(text(&mut on_a[0].1), "over TLS");
    let wrong = Node::start(&url.replace("s3cret", "wrong"), "tls");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!wrong.stats().connected, "a wrong password never connects");
    assert!(!a.handle().nodes().contains(&wrong.id()));
    println!("rediss:// with a password: connected; a wrong password refused");
}

#[test]
fn redis_restarted_mid_run_is_rejoined_by_every_node() {
    let mut redis = Redis::start();
    let port = redis.port;
    let (a, b) = (
        Node::start(&redis.url(), "restart"),
        Node::start(&redis.url(), "restart"),
    );
    wait_for_nodes(&[&a, &b]);
    let mut on_a = a.clients(&MIXED[..1]);
    let mut on_b = b.clients(&MIXED[3..4]);
    b.handle().broadcast_all(Message::text("before"));
    assert_eq!(text(&mut on_a[0].1), "before");
    assert_eq!(text(&mut on_b[0].1), "before");
    redis.kill();
    wait_until("both notice", Duration::from_secs(5), || {
        !a.stats().connected && !b.stats().connected
    });
    // Local traffic goes on; what cannot cross is counted, not queued.
    let dropped = a.stats().dropped;
    assert_eq!(a.handle().broadcast_all(Message::text("during")), 1);
    assert_eq!(text(&mut on_a[0].1), "during");
    assert_eq!(a.stats().dropped, dropped + 1);
    let restarted = Instant::now();
    let _redis = Redis::start_on(port);
    let took = wait_until("both reconnect", Duration::from_secs(10), || {
        a.stats().connected && b.stats().connected
    });
    wait_for_nodes(&[&a, &b]);
    assert_eq!(a.stats().reconnects, 1, "one outage, counted once");
    println!(
        "reconnected {took:?} after redis-server was started again (a: outage {:?}, b: outage {:?}); presence back after {:?}",
        a.stats().last_outage.unwrap(),
        b.stats().last_outage.unwrap(),
        restarted.elapsed()
    );
    assert!(a.stats().reconnects >= 1 && b.stats().reconnects >= 1);
    b.handle().broadcast_all(Message::text("after"));
    assert_eq!(text(&mut on_a[0].1), "after");
    assert_eq!(text(&mut on_b[0].1), "after", "b never got 'during'");
    a.handle().broadcast_all(Message::text("after too"));
    assert_eq!(text(&mut on_b[0].1), "after too");
}

#[test]
fn a_stalled_redis_never_blocks_local_traffic() {
    let mut redis = Redis::start();
    let a = Node::start_with(&redis.url(), "stall", 64);
    let b = Node::start(&redis.url(), "stall");
    wait_for_nodes(&[&a, &b]);
    let mut on_a = a.clients(&MIXED[3..4]);
    let mut on_b = b.clients(&MIXED[3..4]);
    let pid = redis.child.as_ref().unwrap().0.id().to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(status.success(), "kill {sig}");
    };
    signal("-STOP");
    // Redis takes nothing now: the queue fills, the rest is dropped at
    // once, and local clients get every message.
    const N: usize = 2_000;
    let start = Instant::now();
    for i in 0..N {
        assert_eq!(a.handle().broadcast_all(Message::text(format!("{i}"))), 1);
    }
    let took = start.elapsed();
    for i in 0..N {
        assert_eq!(text(&mut on_a[0].1), format!("{i}"));
    }
    let dropped = a.stats().dropped;
    println!("{N} broadcasts with Redis stopped took {took:?}; {dropped} could not cross");
    assert!(took < Duration::from_millis(500), "publishing never waits");
    assert!(dropped >= (N - 64 - 512) as u64, "bounded queue: {dropped}");
    signal("-CONT");
    wait_until("the bus recovers", Duration::from_secs(10), || {
        a.stats().connected && a.handle().nodes().len() == 2
    });
    // What crossed was a prefix of what was sent, in order, once each.
    let mut last = None;
    while let Some(event) = next_within(&mut on_b[0].1, Duration::from_millis(300)) {
        let Event::Message(Message::Text(t)) = event else {
            panic!("{event:?}")
        };
        let i: usize = std::str::from_utf8(&t).unwrap().parse().unwrap();
        assert!(last.is_none_or(|l| i > l), "in order, no duplicate");
        last = Some(i);
    }
    a.handle().broadcast_all(Message::text("after"));
    assert_eq!(text(&mut on_b[0].1), "after");
    redis.kill();
}

#[test]
fn a_node_started_without_redis_serves_and_joins_later() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let a = Node::start(&url, "late");
    let mut on_a = a.clients(&MIXED[..1]);
    assert_eq!(a.handle().broadcast_all(Message::text("local")), 1);
    assert_eq!(text(&mut on_a[0].1), "local");
    assert!(!a.stats().connected);
    assert!(a.stats().dropped >= 1);
    let _redis = Redis::start_on(port);
    let b = Node::start(&url, "late");
    let took = wait_until("a connects", Duration::from_secs(10), || {
        a.stats().connected
    });
    println!("a node without redis at start connected {took:?} after it came up");
    wait_for_nodes(&[&a, &b]);
    assert!(a.stats().reconnects >= 1);
    b.handle().broadcast_all(Message::text("hello late node"));
    assert_eq!(text(&mut on_a[0].1), "hello late node");
}

#[test]
fn garbage_on_the_channels_is_ignored_and_counted() {
    let redis = Redis::start();
    let (a, b) = (
        Node::start(&redis.url(), "junk"),
        Node::start(&redis.url(), "junk"),
    );
    wait_for_nodes(&[&a, &b]);
    let mut on_a = a.clients(&MIXED[3..4]);
    a.handle().join(on_a[0].0, "room");
    wait_until("b sees the group", Duration::from_secs(5), || {
        b.handle().presence(Some("room")) == 1
    });
    let to_a = Envelope {
        origin: b.id(),
        body: Body::Send(on_a[0].0, Message::text("misrouted")),
    };
    let garbage: [(&str, Vec<u8>); 7] = [
        ("all", b"hello".to_vec()),
        ("all", Vec::new()),
        ("presence", b"PS\x01\x07\0\0".to_vec()),
        ("group:room", b"PS\x09\x01\0\0\0\x01\0x".to_vec()),
        ("group:room", b"PS\x01\x01\0\0\0\x01\0\xff\xfe".to_vec()),
        (
            &format!("node:{}", a.id()),
            b"PS\x01\x03\0\0\0\x01\x07".to_vec(),
        ),
        // A real envelope on a channel its kind does not use.
        ("all", to_a.encode()),
    ];
    let malformed = a.stats().malformed;
    for (channel, payload) in &garbage {
        redis.publish(&format!("polysocket:junk:{channel}"), payload);
    }
    wait_until("a counted them", Duration::from_secs(5), || {
        a.stats().malformed == malformed + garbage.len() as u64
    });
    b.handle()
        .broadcast_group("room", Message::text("still fine"));
    assert_eq!(text(&mut on_a[0].1), "still fine");
    assert!(next_within(&mut on_a[0].1, Duration::from_millis(200)).is_none());
}

#[test]
fn two_servers_share_a_port_with_reuse_port() {
    let start = |port: u16| {
        let mut config = ServerConfig::default();
        config.workers = 1;
        config.reuse_port = true;
        let queue = EventQueue::new().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Server::start(addr, config, queue)
    };
    let first = start(0).unwrap();
    let port = first.local_addr().port();
    let second = start(port).expect("a second server binds the same port");
    assert!(
        Server::start(
            SocketAddr::from(([127, 0, 0, 1], port)),
            ServerConfig::default(),
            EventQueue::new().unwrap()
        )
        .is_err(),
        "without reuse_port the port is taken"
    );
    let clients: Vec<Client> = (0..40)
        .map(|_| Client::connect(first.local_addr(), Draft::Rfc6455))
        .collect();
    let counts = (
        first.handle().connection_count(),
        second.handle().connection_count(),
    );
    println!("40 connections spread as {counts:?}");
    assert_eq!(counts.0 + counts.1, clients.len());
    assert!(counts.0 > 0 && counts.1 > 0, "both servers got connections");
}

#[test]
fn a_bad_url_or_namespace_is_a_clear_error_at_start() {
    let bad = [
        ("http://127.0.0.1", "ns"),
        ("redis://127.0.0.1:notaport", "ns"),
        ("redis://127.0.0.1", ""),
        ("redis://127.0.0.1", "a b"),
        ("redis://127.0.0.1", "a:b"),
    ];
    for (url, namespace) in bad {
        let mut config = ServerConfig::default();
        config.cluster = Some(ClusterConfig::new(url, namespace));
        let queue = EventQueue::new().unwrap();
        match Server::start("127.0.0.1:0".parse().unwrap(), config, queue) {
            Err(RuntimeError::Config(why)) => println!("{url} {namespace:?}: {why}"),
            Err(other) => panic!("{url} {namespace:?}: {other}"),
            Ok(_) => panic!("{url} {namespace:?} accepted"),
        }
    }
}

/// A node without a server (a foreign loop's, e.g. the Tornado drop-in's):
/// it is live, counted and addressed like a server's, and what the others
/// send for its connections reaches its delivery callback, decoded.
#[test]
fn a_foreign_loop_node_takes_part_through_its_callback() {
    use polysocket::runtime::cluster::{Delivery, Node as Foreign};
    let redis = Redis::start();
    let server = Node::start(&redis.url(), "foreign");
    let mut config = ClusterConfig::new(redis.url(), "foreign");
    config.heartbeat_interval = Duration::from_millis(100);
    config.node_expiry = Duration::from_millis(600);
    let deliveries: Arc<EventQueue<Delivery>> = EventQueue::new().unwrap();
    let sink = deliveries.clone();
    let foreign = Foreign::start(config, move |d| sink.push(d)).unwrap();
    let (one, two) = (foreign.open(), foreign.open());
    assert_eq!(node_of(one), foreign.node_id());
    assert_eq!(two, one + 1);
    foreign.join(one, "g");
    let handle = server.handle();
    wait_until(
        "the foreign node is counted",
        Duration::from_secs(10),
        || {
            handle.nodes().len() == 2
                && handle.presence(Some("g")) == 1
                && handle.presence(None) == 2
        },
    );
    let mut on_server = server.clients(&[(Draft::Rfc6455, false)]);
    server.handle().join(on_server[0].0, "g");
    wait_until(
        "the server's member is counted",
        Duration::from_secs(10),
        || foreign.presence(Some("g")) == 2 && foreign.presence(None) == 3,
    );
    // Published by the server: reaches the foreign node's callback.
    handle.broadcast_group("g", Message::text("to g"));
    handle.broadcast_all(Message::text("to all"));
    handle.send(two, Message::text("to two")).unwrap();
    handle.close(one, Some(4000), "bye").unwrap();
    handle.send(one + 100, Message::text("nobody")).unwrap();
    let mut got = Vec::new();
    wait_until("four deliveries", Duration::from_secs(5), || {
        got.extend(deliveries.drain());
        got.len() >= 4
    });
    let seen: Vec<String> = got.iter().map(|d| format!("{d:?}")).collect();
    assert!(
        matches!(&got[0], Delivery::Group(g, m) if g == "g" && *m == Message::text("to g")),
        "{seen:?}"
    );
    assert!(
        matches!(&got[1], Delivery::Broadcast(m) if *m == Message::text("to all")),
        "{seen:?}"
    );
    assert!(
        matches!(&got[2], Delivery::Send(id, _) if *id == two),
        "{seen:?}"
    );
    assert!(
        matches!(&got[3], Delivery::Close(id, 4000, r) if *id == one && r == "bye"),
        "{seen:?}"
    );
    wait_until("the unknown id is counted", Duration::from_secs(5), || {
        foreign.stats().unroutable == 1
    });
    // The server's own member had both locally.
    assert_eq!(text(&mut on_server[0].1), "to g");
    assert_eq!(text(&mut on_server[0].1), "to all");
    // Published by the foreign node: reaches the server's client.
    foreign.broadcast_group("g", Message::text("from foreign"));
    assert_eq!(text(&mut on_server[0].1), "from foreign");
    assert_eq!(
        foreign.send(on_server[0].0, Message::text("direct")),
        Ok(())
    );
    assert_eq!(text(&mut on_server[0].1), "direct");
    assert_eq!(
        foreign.send(one, Message::text("mine")),
        Err(SendError::Gone)
    );
    // A connection that closes leaves presence and its groups.
    foreign.closed(one);
    wait_until("the member left", Duration::from_secs(5), || {
        handle.presence(Some("g")) == 1 && handle.presence(None) == 2
    });
    drop(foreign);
    wait_until("the stopped node left", Duration::from_secs(5), || {
        handle.nodes().len() == 1
    });
}
