//! A cluster node without a [`Server`](crate::runtime::Server): for
//! connections that live in a foreign I/O loop (the Tornado drop-in's
//! IOStreams). The bus runs as for a server, on a small runtime of its
//! own; what it receives for local connections is handed, decoded, to a
//! delivery callback (typically an [`EventQueue`](crate::runtime::EventQueue)
//! the loop drains), and the loop writes it to its connections. The loop
//! tells the node which connections are open and who is in which group,
//! so that presence, group subscriptions and commands for ids of other
//! nodes work exactly as for a server (docs/CLUSTER.md).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::bus::{self, Local};
use super::envelope::Body;
use super::{node_of, Cluster, ClusterConfig, ClusterStats};
use crate::error::SendError;
use crate::protocol::Message;
use crate::runtime::{ConnId, RuntimeError};

/// What the bus hands the foreign loop: a message or a command from
/// another node, for the loop's own connections.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// To every open connection.
    Broadcast(Message),
    /// To every local member of the group.
    Group(String, Message),
    /// A message to one connection.
    Send(ConnId, Message),
    /// A ping to one connection.
    Ping(ConnId, Bytes),
    /// A pong to one connection.
    Pong(ConnId, Bytes),
    /// `code` 0: no code.
    Close(ConnId, u16, String),
}

type Deliver = Box<dyn Fn(Delivery) + Send + Sync>;

/// The foreign loop's connections and groups, as the node knows them.
struct State {
    connections: Mutex<HashSet<ConnId>>,
    groups: Mutex<HashMap<String, HashSet<ConnId>>>,
    next_id: AtomicU64,
    stopping: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    runtime: tokio::runtime::Handle,
    deliver: Deliver,
}

/// The bus's view of a [`Node`].
#[derive(Clone)]
struct Foreign(Arc<State>);

impl Local for Foreign {
    fn stopping(&self) -> watch::Receiver<bool> {
        self.0.stopping.subscribe()
    }
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = self.0.runtime.spawn(task);
        self.0.tasks.lock().expect("tasks lock").push(handle);
    }
    fn local_groups(&self) -> Vec<String> {
        self.0
            .groups
            .lock()
            .expect("groups lock")
            .keys()
            .cloned()
            .collect()
    }
    fn has_local_members(&self, group: &str) -> bool {
        self.0
            .groups
            .lock()
            .expect("groups lock")
            .contains_key(group)
    }
    fn local_connections(&self) -> usize {
        self.0.connections.lock().expect("connections lock").len()
    }
    fn local_group_sizes(&self) -> Vec<(String, usize)> {
        let groups = self.0.groups.lock().expect("groups lock");
        groups.iter().map(|(g, m)| (g.clone(), m.len())).collect()
    }
    fn deliver(&self, body: Body) -> Result<(), SendError> {
        let has = |id: &ConnId| {
            let open = self.0.connections.lock().expect("connections lock");
            if open.contains(id) {
                Ok(())
            } else {
                Err(SendError::Gone)
            }
        };
        let delivery = match body {
            Body::Broadcast(m) => Delivery::Broadcast(m),
            Body::Group(g, m) => Delivery::Group(g, m),
            Body::Send(id, m) => has(&id).map(|()| Delivery::Send(id, m))?,
            Body::Ping(id, d) => has(&id).map(|()| Delivery::Ping(id, d))?,
            Body::Pong(id, d) => has(&id).map(|()| Delivery::Pong(id, d))?,
            Body::Close(id, code, reason) => {
                has(&id).map(|()| Delivery::Close(id, code.unwrap_or(0), reason))?
            }
            Body::Heartbeat(_) | Body::Leave(_) => return Ok(()),
        };
        (self.0.deliver)(delivery);
        Ok(())
    }
}

/// A node of a cluster whose connections a foreign I/O loop owns.
pub struct Node {
    cluster: Arc<Cluster>,
    local: Foreign,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Node {
    /// Join the cluster of `config` (checked: a bad URL or namespace is an
    /// error; Redis being unreachable is not, as for a server). Messages
    /// and commands from other nodes go to `deliver`, on the node's
    /// thread: it must only hand them over (queue them), never block.
    pub fn start(
        config: ClusterConfig,
        deliver: impl Fn(Delivery) + Send + Sync + 'static,
    ) -> Result<Node, RuntimeError> {
        let cluster = Cluster::new(config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("polysocket-cluster")
            .enable_all()
            .build()?;
        let (stopping, _) = watch::channel(false);
        let local = Foreign(Arc::new(State {
            connections: Mutex::new(HashSet::new()),
            groups: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(cluster.first_id()),
            stopping,
            tasks: Mutex::new(Vec::new()),
            runtime: runtime.handle().clone(),
            deliver: Box::new(deliver),
        }));
        bus::spawn(&cluster, &local);
        Ok(Node {
            cluster,
            local,
            runtime: Some(runtime),
        })
    }

    /// This node's id (the high bits of its connection ids).
    pub fn node_id(&self) -> u32 {
        self.cluster.node()
    }

    /// A connection opened: returns its id, unique in the cluster.
    pub fn open(&self) -> ConnId {
        let id = self.local.0.next_id.fetch_add(1, Ordering::Relaxed);
        let state = &self.local.0;
        state
            .connections
            .lock()
            .expect("connections lock")
            .insert(id);
        id
    }

    /// A connection closed: it leaves presence and its groups.
    pub fn closed(&self, id: ConnId) {
        let state = &self.local.0;
        state
            .connections
            .lock()
            .expect("connections lock")
            .remove(&id);
        let mut emptied = Vec::new();
        state
            .groups
            .lock()
            .expect("groups lock")
            .retain(|group, members| {
                if members.remove(&id) && members.is_empty() {
                    emptied.push(group.clone());
                }
                !members.is_empty()
            });
        for group in emptied {
            self.cluster.group_changed(&group);
        }
    }

    /// Add a local connection to a group (subscribes to the group's channel
    /// with its first member).
    pub fn join(&self, id: ConnId, group: &str) {
        let mut groups = self.local.0.groups.lock().expect("groups lock");
        let members = groups.entry(group.to_string()).or_default();
        let first = members.is_empty();
        members.insert(id);
        drop(groups);
        if first {
            self.cluster.group_changed(group);
        }
    }

    /// Remove a local connection from a group.
    pub fn leave(&self, id: ConnId, group: &str) {
        let mut groups = self.local.0.groups.lock().expect("groups lock");
        let Some(members) = groups.get_mut(group) else {
            return;
        };
        if members.remove(&id) && members.is_empty() {
            groups.remove(group);
            drop(groups);
            self.cluster.group_changed(group);
        }
    }

    /// The local members of a group.
    pub fn members(&self, group: &str) -> Vec<ConnId> {
        let groups = self.local.0.groups.lock().expect("groups lock");
        groups
            .get(group)
            .map_or_else(Vec::new, |m| m.iter().copied().collect())
    }

    /// Publish to every connection of the other nodes (the loop delivers
    /// to its own).
    pub fn broadcast(&self, message: Message) {
        self.cluster.broadcast(message);
    }

    /// Publish to the members of `group` on the other nodes.
    pub fn broadcast_group(&self, group: &str, message: Message) {
        self.cluster.broadcast_group(group, message);
    }

    /// A command for a connection of another node: `Err(Gone)` for an id
    /// of this node (the loop handles its own) or of no live node, as
    /// [`ServerHandle::send`](crate::runtime::ServerHandle::send).
    pub fn send(&self, id: ConnId, message: Message) -> Result<(), SendError> {
        self.cluster.remote(id, Body::Send(id, message))
    }

    /// A ping for a connection of another node; as [`Node::send`].
    pub fn ping(&self, id: ConnId, data: Bytes) -> Result<(), SendError> {
        self.cluster.remote(id, Body::Ping(id, data))
    }

    /// Close a connection of another node; as [`Node::send`].
    pub fn close(&self, id: ConnId, code: Option<u16>, reason: &str) -> Result<(), SendError> {
        self.cluster
            .remote(id, Body::Close(id, code, reason.to_string()))
    }

    /// Whether `id` is one of this node's ids.
    pub fn owns(&self, id: ConnId) -> bool {
        node_of(id) == self.cluster.node()
    }

    /// Connections (or a group's members) on every live node.
    pub fn presence(&self, group: Option<&str>) -> usize {
        let local = match group {
            None => self.local.local_connections(),
            Some(g) => self.members(g).len(),
        };
        local + self.cluster.remote_presence(group)
    }

    /// The live nodes, this one included.
    pub fn nodes(&self) -> Vec<u32> {
        self.cluster.nodes()
    }

    /// The bus's counters.
    pub fn stats(&self) -> ClusterStats {
        self.cluster.stats()
    }

    /// Leave the cluster (a Leave is published if Redis takes it within a
    /// second) and stop the bus.
    pub fn stop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        // Fails only when no bus task is left to receive it: nothing to stop.
        let _ = self.local.0.stopping.send(true);
        let tasks = std::mem::take(&mut *self.local.0.tasks.lock().expect("tasks lock"));
        runtime.block_on(async {
            let all = futures_util::future::join_all(tasks);
            let _ = tokio::time::timeout(Duration::from_secs(1), all).await;
        });
        runtime.shutdown_background();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
