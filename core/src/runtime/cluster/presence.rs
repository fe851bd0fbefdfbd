//! What this node knows of the others: the last heartbeat of each, kept
//! until its announced expiry passes (a node that dies, even by SIGKILL,
//! leaves the counts then) or until it says it leaves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::envelope::Heartbeat;

struct Node {
    incarnation: u64,
    expires: Instant,
    connections: usize,
    groups: HashMap<String, usize>,
}

/// The other live nodes, from their heartbeats.
#[derive(Default)]
pub(super) struct Presence {
    nodes: Mutex<HashMap<u32, Node>>,
}

impl Presence {
    /// Record a heartbeat from `node`; `true` when the node is new to us
    /// (or restarted with a new incarnation).
    pub(super) fn heard(&self, node: u32, beat: Heartbeat) -> bool {
        let expires = Instant::now() + Duration::from_millis(u64::from(beat.expiry_ms));
        let entry = Node {
            incarnation: beat.incarnation,
            expires,
            connections: beat.connections as usize,
            groups: beat
                .groups
                .into_iter()
                .map(|(g, n)| (g, n as usize))
                .collect(),
        };
        let mut nodes = self.nodes.lock().expect("presence lock");
        let previous = nodes.insert(node, entry);
        previous.is_none_or(|p| p.incarnation != beat.incarnation || p.expires < Instant::now())
    }

    /// `node` said it leaves.
    pub(super) fn left(&self, node: u32, incarnation: u64) {
        let mut nodes = self.nodes.lock().expect("presence lock");
        if nodes
            .get(&node)
            .is_some_and(|n| n.incarnation == incarnation)
        {
            nodes.remove(&node);
        }
    }

    /// Forget the nodes whose expiry passed; returns them.
    pub(super) fn expire(&self) -> Vec<u32> {
        let now = Instant::now();
        let mut gone = Vec::new();
        self.nodes.lock().expect("presence lock").retain(|id, n| {
            let live = n.expires > now;
            if !live {
                gone.push(*id);
            }
            live
        });
        gone
    }

    pub(super) fn is_live(&self, node: u32) -> bool {
        let nodes = self.nodes.lock().expect("presence lock");
        nodes.get(&node).is_some_and(|n| n.expires > Instant::now())
    }

    pub(super) fn live_nodes(&self) -> Vec<u32> {
        let now = Instant::now();
        let nodes = self.nodes.lock().expect("presence lock");
        nodes
            .iter()
            .filter(|(_, n)| n.expires > now)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Connections on the live nodes, in the namespace or in `group`.
    pub(super) fn count(&self, group: Option<&str>) -> usize {
        let now = Instant::now();
        let nodes = self.nodes.lock().expect("presence lock");
        nodes
            .values()
            .filter(|n| n.expires > now)
            .map(|n| match group {
                None => n.connections,
                Some(g) => n.groups.get(g).copied().unwrap_or(0),
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(incarnation: u64, expiry_ms: u32, connections: u32) -> Heartbeat {
        Heartbeat {
            incarnation,
            expiry_ms,
            connections,
            groups: vec![("g".into(), 2)],
        }
    }

    #[test]
    fn counts_live_nodes_until_they_expire_or_leave() {
        let presence = Presence::default();
        assert!(presence.heard(1, beat(10, 60_000, 5)));
        assert!(!presence.heard(1, beat(10, 60_000, 6)), "same node again");
        assert!(presence.heard(2, beat(20, 0, 7)));
        assert!(presence.is_live(1));
        assert!(!presence.is_live(2), "expired at once");
        assert_eq!(presence.count(None), 6);
        assert_eq!(presence.count(Some("g")), 2);
        assert_eq!(presence.count(Some("h")), 0);
        assert_eq!(presence.expire(), vec![2]);
        presence.left(1, 11);
        assert!(presence.is_live(1), "another incarnation's leave");
        presence.left(1, 10);
        assert_eq!(presence.count(None), 0);
        assert!(presence.live_nodes().is_empty());
    }
}
