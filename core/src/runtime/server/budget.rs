//! The server-wide budget for bytes buffered on behalf of clients
//! ([`ServerConfig::max_buffered_total`](super::ServerConfig::max_buffered_total)):
//! partial and held frames, messages being reassembled or inflated, output
//! not yet written. Per-connection limits bound what one client can make
//! the server hold; only a total bounds what many slow senders can.
//!
//! Each connection's task tells the shared total how its own share changed
//! after every read and write it makes (nothing happens while the share
//! stays the same: a connection that exchanges small messages holds no
//! share at all). A share that would take the total past the budget is
//! refused: that connection, the one asking for more, is closed with
//! [`OVERLOAD_CLOSE`] and counted; the others keep what they hold and keep
//! working. The total therefore never exceeds the budget; memory exceeds it
//! by at most what one read (and its inflation) brings on each worker
//! thread before it is counted and refused, plus [`UNCOUNTED`] per
//! connection.

use std::sync::atomic::Ordering;

use super::Shared;
use crate::protocol::Connection;

/// Close code sent to a client whose data would take the server past its
/// buffer budget: 1013, "try again later" (IANA registry). Not 1009
/// ("message too big"): the message is within the limits and may well be
/// taken once the server holds less for others.
pub const OVERLOAD_CLOSE: u16 = 1013;

/// Bytes a connection may hold outside the budget: a few small frames
/// split across reads, so that connections exchanging small messages never
/// meet a budget that slow senders filled. What it adds up to is bounded by
/// the number of connections ([`ServerConfig::max_connections`](super::ServerConfig::max_connections)).
pub const UNCOUNTED: usize = 16 * 1024;

/// A connection's share of the server's total, given back when dropped.
pub(super) struct Share<'a> {
    shared: &'a Shared,
    held: usize,
}

impl<'a> Share<'a> {
    pub(super) fn new(shared: &'a Shared) -> Self {
        Share { shared, held: 0 }
    }

    /// Bring the share up to date with what `conn` holds; false when it
    /// grew and the budget has no room for it (the share is then unchanged).
    #[inline]
    pub(super) fn update(&mut self, conn: &Connection) -> bool {
        let now = conn.buffered_bytes().saturating_sub(UNCOUNTED);
        now == self.held || self.change(now)
    }

    #[cold]
    fn change(&mut self, now: usize) -> bool {
        let total = &self.shared.buffered;
        if now < self.held {
            total.fetch_sub(self.held - now, Ordering::AcqRel);
            self.held = now;
            return true;
        }
        let more = now - self.held;
        let limit = match self.shared.config.max_buffered_total {
            0 => usize::MAX,
            limit => limit,
        };
        let taken = total.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(more).filter(|&t| t <= limit)
        });
        if taken.is_err() {
            self.shared.metrics.hit(super::Limit::Budget);
            return false;
        }
        self.held = now;
        true
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.shared.buffered.fetch_sub(self.held, Ordering::AcqRel);
        }
    }
}
