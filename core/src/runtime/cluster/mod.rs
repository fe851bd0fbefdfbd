//! One broadcast and group namespace across servers, over Redis pub/sub
//! (feature `cluster`; docs/CLUSTER.md is the contract every face and
//! version follows).
//!
//! * [`envelope`]: the versioned binary wire format, sans-I/O.
//! * `bus`: the Redis tasks: one subscribing connection, one publishing
//!   connection behind a bounded FIFO queue, reconnection.
//! * `presence`: which nodes live and what they serve, from heartbeats.
//! * [`Node`]: the bus for connections a foreign I/O loop owns (the
//!   Tornado drop-in), delivering through a callback.
//!
//! A server with [`ServerConfig::cluster`](super::ServerConfig::cluster)
//! set holds a `Cluster`; its [`ServerHandle`](super::ServerHandle)
//! consults it only for what is not local (an id of another node, a
//! broadcast's remote half), so local traffic pays nothing for it.

mod bus;
pub mod envelope;
mod node;
mod presence;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use self::envelope::{Body, Envelope};
use self::presence::Presence;
use super::server::ConnId;
use super::RuntimeError;
use crate::draft::Draft;
use crate::error::SendError;
use crate::protocol::{rules, Message};

pub(crate) use bus::spawn;
pub use node::{Delivery, Node};

/// Bits of a [`ConnId`] below the node id: a per-node counter.
pub const NODE_SHIFT: u32 = 39;
/// Node ids are 1..2^24: with the counter they keep ids below 2^63, so a
/// signed 64-bit integer (PHP's) holds every id.
pub const NODE_BITS: u32 = 24;

/// The node a connection id belongs to (0: an id of a server that is not
/// clustered).
pub fn node_of(id: ConnId) -> u32 {
    (id >> NODE_SHIFT) as u32
}

/// How a server joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://[:password@]host[:port][/db]` or `rediss://…` (TLS).
    pub url: String,
    /// Applications sharing one Redis are kept apart by namespace: 1 to 64
    /// of `A-Z a-z 0-9 _ - .`.
    pub namespace: String,
    /// How often this node announces its presence.
    pub heartbeat_interval: Duration,
    /// Other nodes forget this one when they hear nothing from it this long.
    pub node_expiry: Duration,
    /// Messages waiting for the bus; beyond this they are dropped (counted).
    pub queue: usize,
    /// First wait before reconnecting to Redis; doubled each failure...
    pub reconnect_min: Duration,
    /// ...up to this.
    pub reconnect_max: Duration,
    /// Longest a Redis connection attempt or command may take.
    pub redis_timeout: Duration,
}

impl ClusterConfig {
    /// A cluster on `url` under `namespace`, other values the defaults.
    pub fn new(url: impl Into<String>, namespace: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            url: url.into(),
            namespace: namespace.into(),
            heartbeat_interval: Duration::from_secs(1),
            node_expiry: Duration::from_secs(3),
            queue: 65_536,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            redis_timeout: Duration::from_secs(2),
        }
    }

    /// The error `Server::start` would give for this configuration, if
    /// any, without starting anything: bindings report a bad URL or
    /// namespace when their options are built.
    pub fn check(&self) -> Result<(), RuntimeError> {
        self.validate().map(drop)
    }

    fn validate(&self) -> Result<redis::Client, RuntimeError> {
        let ns = &self.namespace;
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
        if ns.is_empty() || ns.len() > 64 || !ns.chars().all(allowed) {
            return Err(RuntimeError::Config(format!(
                "cluster namespace {ns:?}: 1 to 64 of A-Z a-z 0-9 _ - ."
            )));
        }
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://")) {
            return Err(RuntimeError::Config(format!(
                "cluster URL {:?}: redis:// or rediss:// expected",
                self.url
            )));
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| RuntimeError::Config(format!("cluster URL {:?}: {e}", self.url)))?;
        if self.heartbeat_interval.is_zero() || self.node_expiry <= self.heartbeat_interval {
            return Err(RuntimeError::Config(
                "cluster node_expiry must exceed a positive heartbeat_interval".into(),
            ));
        }
        if self.queue == 0 || self.reconnect_min.is_zero() || self.reconnect_max.is_zero() {
            return Err(RuntimeError::Config(
                "cluster queue and reconnect delays must be positive".into(),
            ));
        }
        Ok(client)
    }
}

/// What crossed the bus and what could not, since the server started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// This node's id (the high bits of its connection ids).
    pub node_id: u32,
    /// Both Redis connections are up.
    pub connected: bool,
    /// Envelopes handed to Redis.
    pub published: u64,
    /// Envelopes from other nodes taken in (heartbeats included).
    pub received: u64,
    /// Envelopes that could not cross: the bus was down or its queue full.
    pub dropped: u64,
    /// Foreign or malformed messages on the namespace's channels, ignored.
    pub malformed: u64,
    /// Commands from other nodes for a connection this node no longer has.
    pub unroutable: u64,
    /// Times the bus came back after being lost (or absent at start).
    pub reconnects: u64,
    /// How long the last outage lasted, from loss to resubscribed.
    pub last_outage: Option<Duration>,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    unroutable: AtomicU64,
    reconnects: AtomicU64,
}

/// The names of the namespace's channels (docs/CLUSTER.md, channels).
pub(crate) struct Channels {
    prefix: String,
}

impl Channels {
    fn all(&self) -> String {
        format!("{}all", self.prefix)
    }
    fn presence(&self) -> String {
        format!("{}presence", self.prefix)
    }
    fn node(&self, node: u32) -> String {
        format!("{}node:{node}", self.prefix)
    }
    fn group(&self, group: &str) -> String {
        format!("{}group:{group}", self.prefix)
    }
}

/// An envelope waiting for the publishing connection.
pub(crate) struct Outgoing {
    channel: String,
    bytes: Vec<u8>,
}

/// A server's membership of a cluster: its identity, the queue to the bus,
/// what it knows of the other nodes, its counters.
pub(crate) struct Cluster {
    node: u32,
    incarnation: u64,
    config: ClusterConfig,
    client: redis::Client,
    channels: Channels,
    outgoing: mpsc::Sender<Outgoing>,
    /// The publisher's end of `outgoing`, until the bus takes it.
    queue: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    /// Groups whose subscription may have to change: a set, so that it
    /// stays as small as the groups however often members come and go
    /// while Redis is away.
    changed_groups: Mutex<HashSet<String>>,
    groups_changed: Notify,
    presence: Presence,
    counters: Counters,
    /// The publishing connection is up: while it is not, what would cross
    /// is dropped at once rather than queued.
    up: AtomicBool,
    /// The subscribing connection is up and subscribed.
    subscribed: AtomicBool,
    /// Since when a connection is down (`None`: both up, or not yet tried).
    outage: Mutex<Option<Instant>>,
    last_outage: Mutex<Option<Duration>>,
    /// The subscribing connection was lost: the publishing one, most
    /// likely to the same dead Redis, reconnects too (it would notice only
    /// at its next PUBLISH).
    reset_publisher: Notify,
    /// How often the subscribing connection was lost: tells the publisher
    /// whether a `reset_publisher` wake-up is about its own connection.
    subscriber_losses: AtomicU64,
    /// Ask the heartbeat task to announce this node now (on resubscribing).
    beat_now: Notify,
    /// When the last "could not cross" warning was logged.
    last_drop_log: Mutex<Option<Instant>>,
}

impl Cluster {
    /// Check the configuration and pick this node's id.
    pub(crate) fn new(config: ClusterConfig) -> Result<Arc<Cluster>, RuntimeError> {
        let client = config.validate()?;
        let node = rand::random_range(1..(1u32 << NODE_BITS));
        let (outgoing, out_rx) = mpsc::channel(config.queue);
        Ok(Arc::new(Cluster {
            node,
            incarnation: rand::random(),
            channels: Channels {
                prefix: format!("polysocket:{}:", config.namespace),
            },
            config,
            client,
            outgoing,
            queue: Mutex::new(Some(out_rx)),
            changed_groups: Mutex::new(HashSet::new()),
            groups_changed: Notify::new(),
            presence: Presence::default(),
            counters: Counters::default(),
            up: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            outage: Mutex::new(None),
            last_outage: Mutex::new(None),
            beat_now: Notify::new(),
            reset_publisher: Notify::new(),
            subscriber_losses: AtomicU64::new(0),
            last_drop_log: Mutex::new(None),
        }))
    }

    pub(crate) fn node(&self) -> u32 {
        self.node
    }

    /// The first connection id this node gives out.
    pub(crate) fn first_id(&self) -> ConnId {
        (u64::from(self.node) << NODE_SHIFT) | 1
    }

    /// Queue an envelope for the bus, or count it dropped (never waits).
    fn publish(&self, channel: String, body: Body) -> bool {
        if !self.up.load(Ordering::SeqCst) {
            self.dropped("the bus is down");
            return false;
        }
        match self.outgoing.try_send(self.envelope(channel, body)) {
            Ok(()) => true,
            Err(_) => {
                self.dropped("the bus queue is full");
                false
            }
        }
    }

    fn envelope(&self, channel: String, body: Body) -> Outgoing {
        let origin = self.node;
        let bytes = Envelope { origin, body }.encode();
        Outgoing { channel, bytes }
    }

    fn dropped(&self, why: &'static str) {
        let total = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_drop_log.lock().expect("log lock");
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(total, "cluster: a message could not cross: {why}");
        }
    }

    /// Publish a message to every connection of the namespace elsewhere.
    pub(crate) fn broadcast(&self, message: Message) {
        self.publish(self.channels.all(), Body::Broadcast(message));
    }

    /// Publish a message to a group's members elsewhere.
    pub(crate) fn broadcast_group(&self, group: &str, message: Message) {
        if group.len() > usize::from(u16::MAX) {
            tracing::warn!("cluster: group name over 65535 bytes not published");
            self.dropped("group name too long");
            return;
        }
        self.publish(
            self.channels.group(group),
            Body::Group(group.to_string(), message),
        );
    }

    /// A command for `id`, which is not a connection of this server: sent
    /// to its node if that node is alive, after the rules that do not
    /// depend on the connection's draft (the owner checks the rest).
    pub(crate) fn remote(&self, id: ConnId, body: Body) -> Result<(), SendError> {
        let node = node_of(id);
        if node == self.node || !self.presence.is_live(node) {
            return Err(SendError::Gone);
        }
        // RFC 6455 allows the most: what it refuses no draft accepts.
        let draft = Draft::Rfc6455;
        match &body {
            Body::Ping(_, d) | Body::Pong(_, d) => rules::check_control(draft, d.len())?,
            Body::Close(_, code, reason) => rules::check_close(draft, *code, reason)?,
            _ => {}
        }
        if self.publish(self.channels.node(node), body) {
            Ok(())
        } else {
            // Not sent: the caller must not believe it was.
            Err(SendError::Gone)
        }
    }

    /// A group's local membership may have changed between none and some.
    pub(crate) fn group_changed(&self, group: &str) {
        let mut changed = self.changed_groups.lock().expect("groups lock");
        if !changed.contains(group) {
            changed.insert(group.to_string());
        }
        drop(changed);
        self.groups_changed.notify_one();
    }

    /// Connections on the other live nodes, in the namespace or a group.
    pub(crate) fn remote_presence(&self, group: Option<&str>) -> usize {
        self.presence.count(group)
    }

    /// The live nodes, this one included.
    pub(crate) fn nodes(&self) -> Vec<u32> {
        let mut nodes = self.presence.live_nodes();
        nodes.push(self.node);
        nodes.sort_unstable();
        nodes
    }

    pub(crate) fn stats(&self) -> ClusterStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClusterStats {
            node_id: self.node,
            connected: self.up.load(Ordering::SeqCst) && self.subscribed.load(Ordering::SeqCst),
            published: load(&c.published),
            received: load(&c.received),
            dropped: load(&c.dropped),
            malformed: load(&c.malformed),
            unroutable: load(&c.unroutable),
            reconnects: load(&c.reconnects),
            last_outage: *self.last_outage.lock().expect("outage lock"),
        }
    }
}
