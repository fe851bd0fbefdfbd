//! Admission and policy: connection limits (total, per address), the
//! refusal of connections over them, allowed origins, the message rate
//! limit.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::{Limit, ServerConfig, Shared};
use crate::error::HandshakeError;
use crate::handshake::{reject_response, Request};

/// Reserve a connection slot, counted against `ip` too when the client's
/// address is known (`None` for a trusted proxy's connection: its client
/// is counted by [`Admitted::claim_ip`] once known); false when a limit is
/// reached.
pub(super) fn admit(shared: &Shared, ip: Option<IpAddr>) -> bool {
    let config = &shared.config;
    let open = shared.open.fetch_add(1, Ordering::AcqRel) + 1;
    if config.max_connections > 0 && open > config.max_connections
        || ip.is_some_and(|ip| !take_ip(shared, ip))
    {
        shared.open.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    true
}

/// Count a connection from `ip`; false when it already has its limit.
fn take_ip(shared: &Shared, ip: IpAddr) -> bool {
    let limit = shared.config.max_connections_per_ip;
    let mut per_ip = shared.per_ip.lock().expect("per-ip lock");
    let count = per_ip.entry(ip).or_default();
    if limit > 0 && *count >= limit {
        return false;
    }
    *count += 1;
    true
}

/// A reserved connection slot, released when dropped.
pub(super) struct Admitted {
    pub(super) shared: Arc<Shared>,
    /// The address counted against the per-IP limit, once known.
    pub(super) ip: Option<IpAddr>,
}

impl Admitted {
    pub(super) fn new(shared: Arc<Shared>, ip: Option<IpAddr>) -> Self {
        Admitted { shared, ip }
    }

    /// Count the slot against the client's address found behind a proxy;
    /// false when that address already has its limit.
    pub(super) fn claim_ip(&mut self, ip: IpAddr) -> bool {
        debug_assert!(self.ip.is_none(), "a slot is counted against one address");
        let taken = take_ip(&self.shared, ip);
        if taken {
            self.ip = Some(ip);
        }
        taken
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
        let Some(ip) = self.ip else { return };
        let mut per_ip = self.shared.per_ip.lock().expect("per-ip lock");
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// Answer a connection over a limit with 503 (server full) or 429 (too
/// many from this address) and close it; on a `wss://` listener after the
/// TLS handshake (`tls`: HTTP/1.1 only), so that the client reads it.
pub(super) async fn refuse_over_limit(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    shared: &Shared,
    client: SocketAddr,
) {
    let error = over_limit(shared, client);
    let answer = reject_response(&error, &shared.config.protocol);
    // Bounded like the read below: a refused client gets no more time.
    let wait = shared.config.handshake_timeout.min(Duration::from_secs(1));
    let max_head = shared.config.protocol.max_head_bytes;
    match tls {
        None => answer_and_close(tcp, &answer, wait, max_head).await,
        Some(tls) => {
            if let Ok(Ok(tls)) = tokio::time::timeout(wait, tls.accept(tcp)).await {
                answer_and_close(tls, &answer, wait, max_head).await;
            }
        }
    }
}

/// Reads the request (briefly, at most `max_head` bytes), writes
/// `answer`, closes.
async fn answer_and_close(
    mut tcp: impl AsyncRead + AsyncWrite + Unpin,
    answer: &[u8],
    wait: Duration,
    max_head: usize,
) {
    // Read the request first (briefly, bounded): closing a socket with
    // unread bytes makes the kernel send a reset, which can destroy the
    // answer before the client reads it.
    let _ = tokio::time::timeout(wait, async {
        let mut head = Vec::new();
        let mut buf = [0u8; 2048];
        while head.len() < max_head {
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
        tcp.write_all(answer).await?;
        tcp.shutdown().await
    })
    .await;
}

/// Why a connection (or an HTTP/2 stream) over a limit is refused: 503
/// (server full) or 429 (too many from this address), counted.
pub(super) fn over_limit(shared: &Shared, client: SocketAddr) -> HandshakeError {
    let ip = client.ip();
    let per_ip_full = shared.config.max_connections_per_ip > 0
        && shared
            .per_ip
            .lock()
            .expect("per-ip lock")
            .get(&ip)
            .is_some_and(|n| *n >= shared.config.max_connections_per_ip);
    let (error, limit) = if per_ip_full {
        let error = HandshakeError::Refused(429, "too many connections from this address".into());
        (error, Limit::PerIp)
    } else {
        let error = HandshakeError::Refused(503, "connection limit reached".into());
        (error, Limit::MaxConnections)
    };
    shared.metrics.hit(limit);
    shared.metrics.refused(error.status(), client, &error);
    error
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
