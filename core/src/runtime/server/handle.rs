//! [`ServerHandle`]: a running server as seen from any thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;

use super::admission::{admit, Admitted};
use super::mailbox::{apply, Command, STOP};
use super::opening::{open, serve};
use super::{spawn_task, ConnId, Shared};
use crate::draft::Draft;
use crate::error::SendError;
use crate::handshake::ServerHandshake;
use crate::protocol::{Message, PreparedMessage, State};
use crate::runtime::{current, RuntimeError, Stream};

/// A handle to a running server, usable from any thread.
#[derive(Clone)]
pub struct ServerHandle {
    pub(super) shared: Arc<Shared>,
}

impl ServerHandle {
    /// Apply `command` now if `id`'s handler call is running on this
    /// thread, else check it and queue it for the connection's task.
    pub(super) fn command(&self, id: ConnId, command: Command) -> Result<(), SendError> {
        let size = command.queued_bytes();
        let limit = self.shared.config.max_send_buffer;
        let mut command = Some(command);
        let direct = current::with(id, |conn, mailbox| {
            // What was queued for it earlier goes first.
            mailbox.apply_all(id, conn);
            let command = command.take().expect("once");
            if conn.state() != State::Open || mailbox.is_closed() {
                return Err(SendError::Closed);
            }
            command.check(conn.draft())?;
            if conn.output_len() + size > limit {
                mailbox.overflow();
                return Err(SendError::Overflow(limit));
            }
            apply(conn, command)
        });
        if let Some(result) = direct {
            return result;
        }
        let command = command.expect("not applied");
        let conns = self.shared.conns.read().expect("registry lock");
        match conns.get(&id) {
            Some(entry) => entry.mailbox.push(command, entry.draft, limit),
            None => {
                drop(conns);
                self.elsewhere(id, command)
            }
        }
    }

    /// Read the certificate files again ([`ServerConfig::certificates`]):
    /// new handshakes use the new certificates, open connections carry on.
    /// A broken, missing or mismatched file is an error naming it, and the
    /// old certificates stay.
    ///
    /// [`ServerConfig::certificates`]: super::ServerConfig::certificates
    pub fn reload_tls(&self) -> Result<(), RuntimeError> {
        match &self.shared.config.certificates {
            Some(certificates) => certificates.reload(),
            None => Err(RuntimeError::Config(
                "this server has no reloadable certificates".into(),
            )),
        }
    }

    /// Send a message to a connection. Fails when it is gone or closing,
    /// when its draft cannot carry the message, or when its send buffer is
    /// full (it is then aborted and reported closed with 1008).
    pub fn send(&self, id: ConnId, message: Message) -> Result<(), SendError> {
        self.command(id, Command::Send(message))
    }

    /// Send one message to many connections, encoded once per framing
    /// family. Returns how many connections it was queued for (see
    /// [`send`](Self::send) for why one is not).
    pub fn broadcast(&self, ids: &[ConnId], message: Message) -> usize {
        let prepared = Arc::new(PreparedMessage::new(message));
        ids.iter()
            .filter(|id| {
                self.command(**id, Command::Prepared(prepared.clone()))
                    .is_ok()
            })
            .count()
    }

    /// Send one message to every member of `group`, on every node of the
    /// cluster if there is one. Returns how many local members it was
    /// queued for.
    pub fn broadcast_group(&self, group: &str, message: Message) -> usize {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.shared.cluster {
            cluster.broadcast_group(group, message.clone());
        }
        let ids = self.members(group);
        self.broadcast(&ids, message)
    }

    /// Send a ping (hybi-01 and later, up to 125 bytes).
    pub fn ping(&self, id: ConnId, data: Bytes) -> Result<(), SendError> {
        self.command(id, Command::Ping(data))
    }

    /// Send an unsolicited pong, a heartbeat (hybi-01 and later, up to 125
    /// bytes; pings are answered by the engine already).
    pub fn pong(&self, id: ConnId, data: Bytes) -> Result<(), SendError> {
        self.command(id, Command::Pong(data))
    }

    /// Start the close handshake of a connection (see
    /// [`Connection::close`] for the codes and reasons allowed).
    pub fn close(&self, id: ConnId, code: Option<u16>, reason: &str) -> Result<(), SendError> {
        self.command(id, Command::Close(code, reason.to_string()))
    }

    /// Add a connection to a group (created on first use).
    pub fn join(&self, id: ConnId, group: &str) {
        if self
            .shared
            .conns
            .read()
            .expect("registry lock")
            .contains_key(&id)
        {
            let mut groups = self.shared.groups.lock().expect("groups lock");
            let members = groups.entry(group.to_string()).or_default();
            members.insert(id);
            if members.len() == 1 {
                self.group_changed(group);
            }
        }
    }

    /// Remove a connection from a group (dropped when empty).
    pub fn leave(&self, id: ConnId, group: &str) {
        let mut groups = self.shared.groups.lock().expect("groups lock");
        if let Some(members) = groups.get_mut(group) {
            members.remove(&id);
            if members.is_empty() {
                groups.remove(group);
                self.group_changed(group);
            }
        }
    }

    /// The members of a group.
    pub fn members(&self, group: &str) -> Vec<ConnId> {
        let groups = self.shared.groups.lock().expect("groups lock");
        groups
            .get(group)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The ids of the open connections.
    pub fn connections(&self) -> Vec<ConnId> {
        let conns = self.shared.conns.read().expect("registry lock");
        conns.keys().copied().collect()
    }

    /// The draft a connection speaks.
    pub fn draft(&self, id: ConnId) -> Option<Draft> {
        let conns = self.shared.conns.read().expect("registry lock");
        conns.get(&id).map(|e| e.draft)
    }

    /// How many connections are open (handshakes in progress included).
    pub fn connection_count(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }

    /// Bytes the connections hold on their clients' behalf, as counted
    /// against [`ServerConfig::max_buffered_total`](super::ServerConfig::max_buffered_total).
    pub fn buffered_bytes(&self) -> usize {
        self.shared.buffered.load(Ordering::Acquire)
    }

    /// Connections closed so far because the buffer budget had no room for
    /// their data.
    pub fn over_budget_closes(&self) -> u64 {
        self.shared.metrics.hits(super::Limit::Budget)
    }

    /// The server's metrics now: open connections by draft and extension,
    /// handshakes, messages and bytes, closes by code, limit hits, and the
    /// bus when the server belongs to a cluster.
    pub fn stats(&self) -> super::Stats {
        let mut stats = {
            let conns = self.shared.conns.read().expect("registry lock");
            self.shared.metrics.snapshot(
                conns
                    .values()
                    .map(|e| (e.draft, e.extension, e.http2, e.mailbox.tally.load())),
            )
        };
        stats.buffered_bytes = self.buffered_bytes();
        #[cfg(feature = "cluster")]
        {
            stats.cluster = self.cluster_stats();
        }
        stats
    }

    /// Where [`ServerConfig::metrics_port`](super::ServerConfig::metrics_port)
    /// is served, if it is.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.metrics_addr
    }

    /// Graceful shutdown for a rolling restart: the listening socket is
    /// closed at once (another process on the port, `reuse_port`, takes the
    /// new clients), open connections are served until they end or
    /// [`ServerConfig::drain_timeout`](super::ServerConfig::drain_timeout)
    /// passes, then the rest get 1001 as with [`stop`](Self::stop).
    /// [`stopped`](Self::stopped) resolves once every connection ended.
    pub fn drain(&self) {
        self.shared.draining.send_replace(true);
    }

    /// Graceful shutdown: stop accepting, send 1001 to every connection,
    /// let the close handshakes finish (up to the close timeout).
    pub fn stop(&self) {
        self.shared.accepting.store(false, Ordering::Release);
        self.shared.stopping.send_replace(true);
        // A connection registering now reads `stopping` after inserting
        // itself, so it either is seen here or sees the flag.
        for entry in self.shared.conns.read().expect("registry lock").values() {
            entry.mailbox.signal(STOP);
        }
    }

    /// Wait until the server stopped: the accept loop and every connection
    /// task ended.
    pub async fn stopped(&self) {
        loop {
            let finished = self.shared.finished.notified();
            if self.shared.running.load(Ordering::Acquire) == 0 {
                return;
            }
            finished.await;
        }
    }

    /// Serve a socket accepted elsewhere (the Tornado drop-in hands sockets
    /// over), with a handshake already started: built with
    /// [`ServerHandshake::new`] and fed the bytes already read, or with
    /// [`ServerHandshake::from_parsed`]. Must be called within the server's
    /// runtime (see [`Server::runtime`]).
    pub fn adopt(
        &self,
        stream: std::net::TcpStream,
        handshake: ServerHandshake,
    ) -> Result<(), RuntimeError> {
        stream.set_nonblocking(true)?;
        let peer = stream.peer_addr()?;
        let stream = TcpStream::from_std(stream)?;
        let shared = self.shared.clone();
        if !admit(&shared, Some(peer.ip())) {
            return Err(RuntimeError::Config("connection limit reached".into()));
        }
        let opening = Box::pin(async move {
            let guard = Admitted::new(shared.clone(), Some(peer.ip()));
            open(&shared, Stream::Plain(stream), peer, handshake, guard)
                .await
                .ok()
        });
        spawn_task(&self.shared, serve(self.shared.clone(), opening));
        Ok(())
    }
}
