//! [`ServerHandle`] across a cluster: what reaches beyond this server when
//! it has a [`ClusterConfig`](crate::runtime::ClusterConfig), and stays
//! local (as before) when it has none. Only what is not local consults the
//! cluster, so a local send pays nothing for it.

use super::mailbox::Command;
use super::{ConnId, ServerHandle};
use crate::error::SendError;
use crate::protocol::Message;

#[cfg(feature = "cluster")]
use crate::runtime::cluster::{envelope::Body, ClusterStats};

impl ServerHandle {
    /// Send one message to every open connection: this server's, and when
    /// clustered every other node's in the namespace (through the bus).
    /// Returns how many local connections it was queued for.
    pub fn broadcast_all(&self, message: Message) -> usize {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.shared.cluster {
            cluster.broadcast(message.clone());
        }
        self.broadcast(&self.connections(), message)
    }

    /// Open connections in the namespace (`None`) or in a group, on every
    /// live node of the cluster (the others as of their last heartbeat).
    pub fn presence(&self, group: Option<&str>) -> usize {
        let remote = {
            #[cfg(feature = "cluster")]
            {
                self.shared
                    .cluster
                    .as_ref()
                    .map_or(0, |c| c.remote_presence(group))
            }
            #[cfg(not(feature = "cluster"))]
            0
        };
        self.local_presence(group) + remote
    }

    /// Open connections on this server, in all or in a group.
    pub(crate) fn local_presence(&self, group: Option<&str>) -> usize {
        match group {
            None => self.shared.conns.read().expect("registry lock").len(),
            Some(g) => {
                let groups = self.shared.groups.lock().expect("groups lock");
                groups.get(g).map_or(0, |m| m.len())
            }
        }
    }

    /// A command for an id that is not a connection of this server: to
    /// its node when clustered, else it is gone.
    pub(super) fn elsewhere(&self, id: ConnId, command: Command) -> Result<(), SendError> {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.shared.cluster {
            let body = match command {
                Command::Send(m) => Body::Send(id, m),
                Command::Prepared(p) => Body::Send(id, p.message().clone()),
                Command::Ping(d) => Body::Ping(id, d),
                Command::Pong(d) => Body::Pong(id, d),
                Command::Close(code, reason) => Body::Close(id, code, reason),
            };
            return cluster.remote(id, body);
        }
        let _ = (id, command);
        Err(SendError::Gone)
    }

    /// A group got its first local member or lost its last: the node's
    /// subscription to its channel follows.
    pub(super) fn group_changed(&self, group: &str) {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.shared.cluster {
            cluster.group_changed(group);
        }
        let _ = group;
    }
}

#[cfg(feature = "cluster")]
impl ServerHandle {
    /// This node's id in its cluster (the high bits of its connection ids;
    /// see [`node_of`](crate::runtime::cluster::node_of)), `None` when not
    /// clustered.
    pub fn node_id(&self) -> Option<u32> {
        self.shared.cluster.as_ref().map(|c| c.node())
    }

    /// The live nodes of the cluster, this one included (empty when not
    /// clustered).
    pub fn nodes(&self) -> Vec<u32> {
        self.shared
            .cluster
            .as_ref()
            .map_or_else(Vec::new, |c| c.nodes())
    }

    /// The bus's counters, `None` when not clustered.
    pub fn cluster_stats(&self) -> Option<ClusterStats> {
        self.shared.cluster.as_ref().map(|c| c.stats())
    }

    /// Resolves when the server is asked to stop (for the bus's tasks).
    pub(crate) fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.stopping.subscribe()
    }

    /// Run a task that [`stopped`](Self::stopped) waits for.
    pub(crate) fn spawn_counted(
        &self,
        fut: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        super::spawn_task(&self.shared, fut);
    }

    /// The groups with local members.
    pub(crate) fn local_groups(&self) -> Vec<String> {
        let groups = self.shared.groups.lock().expect("groups lock");
        groups.keys().cloned().collect()
    }

    pub(crate) fn has_local_members(&self, group: &str) -> bool {
        let groups = self.shared.groups.lock().expect("groups lock");
        groups.contains_key(group)
    }

    /// The groups with local members, and how many.
    pub(crate) fn local_group_sizes(&self) -> Vec<(String, usize)> {
        let groups = self.shared.groups.lock().expect("groups lock");
        groups.iter().map(|(g, m)| (g.clone(), m.len())).collect()
    }
}
