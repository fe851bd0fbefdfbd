//! The Redis side: three tasks per node.
//!
//! * The publisher owns one connection and the FIFO queue: envelopes leave
//!   in the order they were queued (pipelined in batches), so one node's
//!   messages reach every subscriber in publish order.
//! * The subscriber owns one pub/sub connection: the namespace's channel,
//!   the presence channel, this node's channel, and a group's channel
//!   while the group has local members. It decodes what arrives and
//!   delivers it to local connections in Rust.
//! * The heartbeat announces this node and forgets silent ones.
//!
//! Either connection lost: retry with capped exponential backoff, log once
//! per outage, resubscribe everything. Nothing here ever blocks local
//! traffic: producers only `try_send` into the bounded queue.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::envelope::{Body, Envelope, Heartbeat};
use super::{node_of, Cluster, Outgoing};
use crate::error::SendError;
use crate::runtime::server::{stop_requested, ServerHandle};

/// Envelopes pipelined to Redis in one round trip, at most.
const BATCH: usize = 512;

/// The connections of a node, as the bus sees them: a [`ServerHandle`]
/// (the runtime's own connections), or a [`Node`](super::Node) whose
/// connections live in a foreign I/O loop.
pub(crate) trait Local: Clone + Send + Sync + 'static {
    /// Becomes true when the node stops.
    fn stopping(&self) -> watch::Receiver<bool>;
    /// Run one of the bus's tasks until the node stops.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static);
    /// Groups with local members.
    fn local_groups(&self) -> Vec<String>;
    fn has_local_members(&self, group: &str) -> bool;
    /// Open local connections.
    fn local_connections(&self) -> usize;
    fn local_group_sizes(&self) -> Vec<(String, usize)>;
    /// Apply a Broadcast, Group, Send, Ping, Pong or Close from another
    /// node to local connections; `Err` when a command's connection is
    /// not (or no longer) here, or its draft refuses it.
    fn deliver(&self, body: Body) -> Result<(), SendError>;
}

impl Local for ServerHandle {
    fn stopping(&self) -> watch::Receiver<bool> {
        ServerHandle::stopping(self)
    }
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.spawn_counted(task);
    }
    fn local_groups(&self) -> Vec<String> {
        ServerHandle::local_groups(self)
    }
    fn has_local_members(&self, group: &str) -> bool {
        ServerHandle::has_local_members(self, group)
    }
    fn local_connections(&self) -> usize {
        self.local_presence(None)
    }
    fn local_group_sizes(&self) -> Vec<(String, usize)> {
        ServerHandle::local_group_sizes(self)
    }
    fn deliver(&self, body: Body) -> Result<(), SendError> {
        match body {
            Body::Broadcast(message) => {
                self.broadcast(&self.connections(), message);
                Ok(())
            }
            Body::Group(group, message) => {
                self.broadcast(&self.members(&group), message);
                Ok(())
            }
            Body::Send(id, message) => self.send(id, message),
            Body::Ping(id, data) => self.ping(id, data),
            Body::Pong(id, data) => self.pong(id, data),
            Body::Close(id, code, reason) => self.close(id, code, &reason),
            Body::Heartbeat(_) | Body::Leave(_) => Ok(()),
        }
    }
}

/// Start the bus tasks of a node (within its runtime).
pub(crate) fn spawn(cluster: &Arc<Cluster>, local: &impl Local) {
    let queue = cluster
        .queue
        .lock()
        .expect("queue lock")
        .take()
        .expect("the bus starts once");
    local.spawn(publisher(cluster.clone(), queue, local.clone()));
    local.spawn(subscriber(cluster.clone(), local.clone()));
    local.spawn(heartbeat(cluster.clone(), local.clone()));
}

/// Waits between reconnection attempts: doubled each failure, capped.
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(cluster: &Cluster) -> Backoff {
        let (min, max) = (cluster.config.reconnect_min, cluster.config.reconnect_max);
        Backoff {
            next: min,
            min,
            max,
        }
    }

    /// Sleep the current delay; `false` when the server stops meanwhile.
    async fn wait(&mut self, stopping: &mut watch::Receiver<bool>) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = stop_requested(stopping) => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

impl Cluster {
    /// A Redis connection failed or could not be made: logged once per
    /// outage, however many attempts it takes.
    fn lost(&self, what: &str, error: &dyn std::fmt::Display) {
        let mut outage = self.outage.lock().expect("outage lock");
        if outage.is_none() {
            *outage = Some(Instant::now());
            tracing::warn!(
                node = self.node,
                "cluster bus down ({what}: {error}); retrying"
            );
        }
    }

    /// One connection is back: once both are, the outage ends. The flags
    /// are `SeqCst`: of two connections coming back at once, at least one
    /// task sees both up.
    fn restored(&self) {
        if !(self.up.load(Ordering::SeqCst) && self.subscribed.load(Ordering::SeqCst)) {
            return;
        }
        if let Some(since) = self.outage.lock().expect("outage lock").take() {
            let took = since.elapsed();
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
            *self.last_outage.lock().expect("outage lock") = Some(took);
            tracing::info!(node = self.node, ?took, "cluster bus back");
        }
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.config.redis_timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }
}

async fn publisher(cluster: Arc<Cluster>, mut queue: mpsc::Receiver<Outgoing>, handle: impl Local) {
    let mut stopping = handle.stopping();
    let mut backoff = Backoff::new(&cluster);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let what = "publishing connection";
        let connect = || cluster.timed(cluster.client.get_multiplexed_async_connection());
        let Some(mut conn) =
            connect_until_up(&cluster, what, &mut backoff, &mut stopping, connect).await
        else {
            return;
        };
        // Read before `up` is set: a loss of the subscriber after this
        // read (which may have cleared `up` again) resets this connection.
        let losses = cluster.subscriber_losses.load(Ordering::SeqCst);
        cluster.up.store(true, Ordering::SeqCst);
        cluster.restored();
        loop {
            let stop = tokio::select! {
                _ = stop_requested(&mut stopping) => true,
                n = queue.recv_many(&mut batch, BATCH) => n == 0,
                _ = cluster.reset_publisher.notified() => {
                    if cluster.subscriber_losses.load(Ordering::SeqCst) == losses {
                        continue; // a permit left from before this connection
                    }
                    cluster.up.store(false, Ordering::SeqCst);
                    break;
                }
            };
            if stop {
                // Say goodbye after what is queued, if Redis takes it soon.
                cluster.up.store(false, Ordering::SeqCst);
                while let Ok(out) = queue.try_recv() {
                    batch.push(out);
                }
                batch.push(cluster.envelope(
                    cluster.channels.presence(),
                    Body::Leave(cluster.incarnation),
                ));
                // `send` counts the batch published or dropped itself; the
                // server is stopping, so nobody else is left to tell.
                let _ = send(&cluster, &mut conn, &mut batch).await;
                return;
            }
            if let Err(error) = send(&cluster, &mut conn, &mut batch).await {
                cluster.up.store(false, Ordering::SeqCst);
                cluster.lost("publishing connection", &error);
                break;
            }
        }
    }
}

/// Run `connect` until it succeeds (`None`: the server stops first),
/// waiting out the backoff after each failure.
async fn connect_until_up<T, F: std::future::Future<Output = Result<T, String>>>(
    cluster: &Cluster,
    what: &str,
    backoff: &mut Backoff,
    stopping: &mut watch::Receiver<bool>,
    mut connect: impl FnMut() -> F,
) -> Option<T> {
    loop {
        let result = tokio::select! {
            _ = stop_requested(stopping) => return None,
            r = connect() => r,
        };
        match result {
            Ok(value) => {
                backoff.reset();
                return Some(value);
            }
            Err(error) => {
                cluster.lost(what, &error);
                if !backoff.wait(stopping).await {
                    return None;
                }
            }
        }
    }
}

/// PUBLISH a batch in one pipeline; on failure it counts as dropped.
async fn send(
    cluster: &Cluster,
    conn: &mut redis::aio::MultiplexedConnection,
    batch: &mut Vec<Outgoing>,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for out in batch.iter() {
        pipe.cmd("PUBLISH")
            .arg(&out.channel)
            .arg(&out.bytes[..])
            .ignore();
    }
    let n = batch.len() as u64;
    batch.clear();
    let result = cluster.timed(pipe.query_async::<()>(conn)).await;
    let counter = match result {
        Ok(()) => &cluster.counters.published,
        Err(_) => &cluster.counters.dropped,
    };
    counter.fetch_add(n, Ordering::Relaxed);
    result
}

async fn subscriber(cluster: Arc<Cluster>, handle: impl Local) {
    let mut stopping = handle.stopping();
    let mut backoff = Backoff::new(&cluster);
    let channels = &cluster.channels;
    loop {
        // Everything, afresh: the groups with local members now.
        let connect = || async {
            let (mut sink, stream) = cluster
                .timed(cluster.client.get_async_pubsub())
                .await?
                .split();
            let groups: HashSet<String> = handle.local_groups().into_iter().collect();
            let mut names = vec![
                channels.all(),
                channels.presence(),
                channels.node(cluster.node),
            ];
            names.extend(groups.iter().map(|g| channels.group(g)));
            cluster.timed(sink.subscribe(&names)).await?;
            Ok((sink, stream, groups))
        };
        let what = "subscribing connection";
        let Some((mut sink, mut stream, mut groups)) =
            connect_until_up(&cluster, what, &mut backoff, &mut stopping, connect).await
        else {
            return;
        };
        cluster.subscribed.store(true, Ordering::SeqCst);
        cluster.restored();
        // Announce this node now rather than at the next tick.
        cluster.beat_now.notify_one();
        let lost: String = loop {
            tokio::select! {
                _ = stop_requested(&mut stopping) => return,
                message = stream.next() => match message {
                    Some(m) => receive(&cluster, &handle, m.get_channel_name(), m.get_payload_bytes()),
                    None => break "connection closed".into(),
                },
                _ = cluster.groups_changed.notified() => {
                    if let Err(error) = reconcile(&cluster, &handle, &mut sink, &mut groups).await {
                        break error;
                    }
                }
            }
        };
        cluster.subscribed.store(false, Ordering::SeqCst);
        // What would cross is dropped from now on, not queued for a
        // publishing connection that is most likely dead too; the
        // publisher reconnects when it next waits (a stored permit: it may
        // be in the middle of a PUBLISH now).
        cluster.up.store(false, Ordering::SeqCst);
        cluster.subscriber_losses.fetch_add(1, Ordering::SeqCst);
        cluster.lost("subscribing connection", &lost);
        cluster.reset_publisher.notify_one();
    }
}

/// Follow the groups whose local membership changed: subscribe to those
/// that have local members now, unsubscribe from those that have none.
async fn reconcile(
    cluster: &Cluster,
    handle: &impl Local,
    sink: &mut redis::aio::PubSubSink,
    subscribed: &mut HashSet<String>,
) -> Result<(), String> {
    let changed = std::mem::take(&mut *cluster.changed_groups.lock().expect("groups lock"));
    let (mut join, mut leave) = (Vec::new(), Vec::new());
    for group in changed {
        let channel = cluster.channels.group(&group);
        if handle.has_local_members(&group) {
            if subscribed.insert(group) {
                join.push(channel);
            }
        } else if subscribed.remove(&group) {
            leave.push(channel);
        }
    }
    if !join.is_empty() {
        cluster.timed(sink.subscribe(&join)).await?;
    }
    if !leave.is_empty() {
        cluster.timed(sink.unsubscribe(&leave)).await?;
    }
    Ok(())
}

/// Deliver one message from the bus to local connections, all in Rust.
fn receive(cluster: &Cluster, handle: &impl Local, channel: &str, payload: &[u8]) {
    let envelope = match Envelope::decode(payload) {
        Ok(e) if cluster.fits(channel, &e.body) => e,
        outcome => {
            let total = cluster.counters.malformed.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged at powers of two: visible, never a flood.
            if total.is_power_of_two() {
                let why = outcome.map_or_else(|e| e.to_string(), |_| "wrong channel".into());
                tracing::warn!(channel, total, "cluster: ignored a message: {why}");
            }
            return;
        }
    };
    if envelope.origin == cluster.node {
        // Our own, echoed by Redis: delivered locally when published.
        if let Body::Heartbeat(beat) = &envelope.body {
            if beat.incarnation != cluster.incarnation {
                tracing::error!(
                    node = cluster.node,
                    "cluster: another node has this node id"
                );
            }
        }
        return;
    }
    cluster.counters.received.fetch_add(1, Ordering::Relaxed);
    let id = match envelope.body {
        Body::Heartbeat(beat) => {
            if cluster.presence.heard(envelope.origin, beat) {
                tracing::info!(node = envelope.origin, "cluster: node joined");
            }
            return;
        }
        Body::Leave(incarnation) => {
            cluster.presence.left(envelope.origin, incarnation);
            tracing::info!(node = envelope.origin, "cluster: node left");
            return;
        }
        Body::Broadcast(_) | Body::Group(..) => None,
        Body::Send(id, _) | Body::Ping(id, _) | Body::Pong(id, _) | Body::Close(id, ..) => Some(id),
    };
    if let Err(error) = handle.deliver(envelope.body) {
        cluster.counters.unroutable.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id, from = envelope.origin, %error, "cluster: command not applied");
    }
}

impl Cluster {
    /// Whether a decoded envelope came on the channel its kind uses: a
    /// command for another node's connection, or a group message on
    /// another group's channel, is foreign here.
    fn fits(&self, channel: &str, body: &Body) -> bool {
        let Some(rest) = channel.strip_prefix(self.channels.prefix.as_str()) else {
            return false;
        };
        match body {
            Body::Broadcast(_) => rest == "all",
            Body::Group(group, _) => rest.strip_prefix("group:") == Some(group.as_str()),
            Body::Heartbeat(_) | Body::Leave(_) => rest == "presence",
            Body::Send(id, _) | Body::Ping(id, _) | Body::Pong(id, _) | Body::Close(id, ..) => {
                node_of(*id) == self.node
                    && rest.strip_prefix("node:") == Some(self.node.to_string().as_str())
            }
        }
    }
}

async fn heartbeat(cluster: Arc<Cluster>, handle: impl Local) {
    let mut stopping = handle.stopping();
    let mut tick = tokio::time::interval(cluster.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let expiry_ms = u32::try_from(cluster.config.node_expiry.as_millis()).unwrap_or(u32::MAX);
    loop {
        tokio::select! {
            _ = stop_requested(&mut stopping) => return,
            _ = tick.tick() => {}
            _ = cluster.beat_now.notified() => {}
        }
        for node in cluster.presence.expire() {
            tracing::warn!(node, "cluster: node expired (no heartbeat)");
        }
        // A heartbeat lost in an outage is not worth counting as dropped.
        if !cluster.up.load(Ordering::SeqCst) {
            continue;
        }
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let beat = Heartbeat {
            incarnation: cluster.incarnation,
            expiry_ms,
            connections: count(handle.local_connections()),
            groups: handle
                .local_group_sizes()
                .into_iter()
                .filter(|(g, _)| g.len() <= usize::from(u16::MAX))
                .map(|(g, n)| (g, count(n)))
                .collect(),
        };
        cluster.publish(cluster.channels.presence(), Body::Heartbeat(beat));
    }
}
