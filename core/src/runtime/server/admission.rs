//! Admission and policy: connection limits (total, per address), the
//! refusal of connections over them, allowed origins, the message rate
//! limit.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{ServerConfig, Shared};
use crate::error::HandshakeError;
use crate::handshake::{reject_response, Request};

/// Reserve a connection slot for `ip`; false when a limit is reached.
pub(super) fn admit(shared: &Shared, ip: IpAddr) -> bool {
    let config = &shared.config;
    let open = shared.open.fetch_add(1, Ordering::AcqRel) + 1;
    if config.max_connections > 0 && open > config.max_connections {
        shared.open.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    let mut per_ip = shared.per_ip.lock().expect("per-ip lock");
    let count = per_ip.entry(ip).or_default();
    if config.max_connections_per_ip > 0 && *count >= config.max_connections_per_ip {
        drop(per_ip);
        shared.open.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    *count += 1;
    true
}

/// A reserved connection slot, released when dropped.
pub(super) struct Admitted {
    pub(super) shared: Arc<Shared>,
    pub(super) ip: IpAddr,
}

impl Admitted {
    pub(super) fn new(shared: Arc<Shared>, ip: IpAddr) -> Self {
        Admitted { shared, ip }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = self.shared.per_ip.lock().expect("per-ip lock");
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Answer a connection over a limit with 503 (server full) or 429 (too
/// many from this address) and close it.
pub(super) async fn refuse_over_limit(mut tcp: TcpStream, shared: &Shared, ip: IpAddr) {
    let per_ip_full = shared.config.max_connections_per_ip > 0
        && shared
            .per_ip
            .lock()
            .expect("per-ip lock")
            .get(&ip)
            .is_some_and(|n| *n >= shared.config.max_connections_per_ip);
    let error = if per_ip_full {
        HandshakeError::Refused(429, "too many connections from this address".into())
    } else {
        HandshakeError::Refused(503, "connection limit reached".into())
    };
    let answer = reject_response(&error, &shared.config.protocol);
    // Read the request first (briefly, bounded): closing a socket with
    // unread bytes makes the kernel send a reset, which can destroy the
    // answer before the client reads it.
    let wait = shared.config.handshake_timeout.min(Duration::from_secs(1));
    let _ = tokio::time::timeout(wait, async {
        let mut head = Vec::new();
        let mut buf = [0u8; 2048];
        while head.len() < shared.config.protocol.max_head_bytes {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            if memchr::memmem::find(&head, b"\r\n\r\n").is_some() {
                break;
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(&answer).await?;
        tcp.shutdown().await
    })
    .await;
}

/// The per-minute message budget of a connection.
pub(super) struct RateLimit {
    pub(super) max: u32,
    pub(super) window_start: Instant,
    pub(super) count: u32,
}

impl RateLimit {
    #[inline]
    pub(super) fn allow(&mut self) -> bool {
        if self.max == 0 {
            return true;
        }
        let now = Instant::now();
        if now.duration_since(self.window_start) >= Duration::from_secs(60) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= self.max
    }
}

/// The configured origin check: 403 for an origin not allowed.
pub(super) fn check_origin(config: &ServerConfig, req: &Request) -> Result<(), HandshakeError> {
    if let Some(allowed) = &config.allowed_origins {
        let origin = req.origin().unwrap_or("");
        let ok = allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin));
        if !ok {
            return Err(HandshakeError::OriginRefused(origin.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_its_budget_per_minute() {
        let mut rate = RateLimit {
            max: 3,
            window_start: Instant::now(),
            count: 0,
        };
        assert!((0..3).all(|_| rate.allow()));
        assert!(!rate.allow(), "the fourth message in the minute");
        // A new minute starts a new budget.
        rate.window_start = Instant::now() - Duration::from_secs(61);
        assert!(rate.allow());
        assert_eq!(rate.count, 1);
        let mut unlimited = RateLimit {
            max: 0,
            window_start: Instant::now(),
            count: 0,
        };
        assert!((0..10_000).all(|_| unlimited.allow()));
    }
}
