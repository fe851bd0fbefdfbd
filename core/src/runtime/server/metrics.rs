//! What an operator watches: counters kept as connections are accepted,
//! refused, exchange messages and close, and [`Stats`], a snapshot of them
//! with the open connections by draft and by extension, in Prometheus'
//! text format on request (`GET /metrics`, see [`ServerConfig::metrics`]).
//!
//! Nothing here runs per message: the engine keeps each connection's
//! [`Tally`]; the connection's task copies it into its mailbox once per
//! wake-up (plain stores to memory no other thread writes), and a snapshot
//! adds up the open connections' tallies and the totals of ended ones.
//! Everything else is counted once per connection or per refusal.
//!
//! [`ServerConfig::metrics`]: super::ServerConfig::metrics

use std::collections::BTreeMap;
use std::fmt::{Display, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::draft::Draft;
use crate::protocol::Tally;

/// The `tracing` target of the line logged for each refused handshake
/// (Python forwards it to the `polysocket.access` logger, the PHP daemon to
/// its log).
pub const ACCESS_LOG: &str = "polysocket::access";

/// A limit that refused or closed a connection, counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_connections`: refused with 503.
    MaxConnections,
    /// `max_connections_per_ip`: refused with 429.
    PerIp,
    /// `handshake_timeout`: the opening handshake (or TLS) took too long.
    HandshakeTimeout,
    /// `max_messages_per_minute`: closed with 1008.
    Rate,
    /// A frame, message or inflated message over its size limit: 1009.
    MessageSize,
    /// `max_send_buffer`: a peer that stopped reading was cut off (1008).
    SendBuffer,
    /// `max_buffered_total`: closed with 1013.
    Budget,
}

impl Limit {
    /// Every limit, in the order of their counters.
    pub const ALL: [Limit; 7] = [
        Limit::MaxConnections,
        Limit::PerIp,
        Limit::HandshakeTimeout,
        Limit::Rate,
        Limit::MessageSize,
        Limit::SendBuffer,
        Limit::Budget,
    ];

    /// The name used in [`Stats::limits`] and the `limit` label.
    pub fn name(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::PerIp => "max_connections_per_ip",
            Limit::HandshakeTimeout => "handshake_timeout",
            Limit::Rate => "max_messages_per_minute",
            Limit::MessageSize => "message_size",
            Limit::SendBuffer => "max_send_buffer",
            Limit::Budget => "max_buffered_total",
        }
    }
}

/// A [`Tally`] other threads can read while one thread updates it.
#[derive(Default)]
pub(crate) struct TallyCell([AtomicU64; 4]);

impl TallyCell {
    /// Set by the one thread that owns the connection.
    #[inline]
    pub(crate) fn store(&self, t: Tally) {
        let [a, b, c, d] = &self.0;
        a.store(t.messages_in, Ordering::Relaxed);
        b.store(t.bytes_in, Ordering::Relaxed);
        c.store(t.messages_out, Ordering::Relaxed);
        d.store(t.bytes_out, Ordering::Relaxed);
    }

    fn add(&self, t: Tally) {
        let [a, b, c, d] = &self.0;
        a.fetch_add(t.messages_in, Ordering::Relaxed);
        b.fetch_add(t.bytes_in, Ordering::Relaxed);
        c.fetch_add(t.messages_out, Ordering::Relaxed);
        d.fetch_add(t.bytes_out, Ordering::Relaxed);
    }

    pub(crate) fn load(&self) -> Tally {
        let [a, b, c, d] = &self.0;
        Tally {
            messages_in: a.load(Ordering::Relaxed),
            bytes_in: b.load(Ordering::Relaxed),
            messages_out: c.load(Ordering::Relaxed),
            bytes_out: d.load(Ordering::Relaxed),
        }
    }
}

fn sum(a: Tally, b: Tally) -> Tally {
    Tally {
        messages_in: a.messages_in + b.messages_in,
        bytes_in: a.bytes_in + b.bytes_in,
        messages_out: a.messages_out + b.messages_out,
        bytes_out: a.bytes_out + b.bytes_out,
    }
}

/// The server's counters (in [`Shared`](super::Shared)).
#[derive(Default)]
pub(crate) struct Metrics {
    accepted: AtomicU64,
    refused: Mutex<BTreeMap<u16, u64>>,
    closes: Mutex<BTreeMap<u16, u64>>,
    limits: [AtomicU64; Limit::ALL.len()],
    /// What connections that ended exchanged. Added while the registry's
    /// write lock removes their entry, and read under its read lock with
    /// the open ones': a snapshot never counts a connection twice, nor
    /// misses one for a moment (counters only grow).
    ended: TallyCell,
}

impl Metrics {
    pub(super) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A handshake refused with an HTTP `status`: counted, and one line
    /// on the [`ACCESS_LOG`] target with the client's address (the real one
    /// behind a trusted proxy, once its headers were read) and the reason.
    pub(super) fn refused(&self, status: u16, client: SocketAddr, reason: &dyn Display) {
        *self
            .refused
            .lock()
            .expect("metrics lock")
            .entry(status)
            .or_default() += 1;
        tracing::info!(target: ACCESS_LOG, "{client} handshake answered {status}: {reason}");
    }

    /// A connection ended; `code` is what its handler was told.
    pub(super) fn closed(&self, code: u16) {
        *self
            .closes
            .lock()
            .expect("metrics lock")
            .entry(code)
            .or_default() += 1;
    }

    pub(super) fn hit(&self, limit: Limit) {
        self.limits[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn hits(&self, limit: Limit) -> u64 {
        self.limits[limit as usize].load(Ordering::Relaxed)
    }

    /// A connection's final tally, with the registry's write lock held.
    pub(super) fn ended(&self, tally: Tally) {
        self.ended.add(tally);
    }

    /// The counters, with `open` (the registry's entries, read under its
    /// lock: draft, extension, tally) added.
    pub(super) fn snapshot(
        &self,
        open: impl Iterator<Item = (Draft, Option<&'static str>, bool, Tally)>,
    ) -> Stats {
        let mut stats = Stats {
            connections: 0,
            by_draft: BTreeMap::new(),
            by_extension: BTreeMap::new(),
            by_http_version: BTreeMap::new(),
            handshakes_accepted: self.accepted.load(Ordering::Relaxed),
            handshakes_refused: self.refused.lock().expect("metrics lock").clone(),
            tally: self.ended.load(),
            closes: self.closes.lock().expect("metrics lock").clone(),
            limits: Limit::ALL
                .iter()
                .map(|&l| (l.name(), self.hits(l)))
                .collect(),
            buffered_bytes: 0,
            #[cfg(feature = "cluster")]
            cluster: None,
        };
        for (draft, extension, http2, tally) in open {
            *stats
                .by_http_version
                .entry(if http2 { "2" } else { "1.1" })
                .or_default() += 1;
            stats.connections += 1;
            *stats.by_draft.entry(draft.name()).or_default() += 1;
            *stats
                .by_extension
                .entry(extension.unwrap_or("none"))
                .or_default() += 1;
            stats.tally = sum(stats.tally, tally);
        }
        stats
    }
}

/// A labelled metric family: name, type, help, label, samples.
type Labelled<'a> = (&'a str, &'a str, &'a str, &'a str, Vec<(String, u64)>);

/// A snapshot of a server's metrics ([`ServerHandle::stats`]).
///
/// [`ServerHandle::stats`]: super::ServerHandle::stats
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// Open connections by draft name (`rfc6455`, `hixie-76`, ...).
    pub by_draft: BTreeMap<&'static str, usize>,
    /// Open connections by compression extension (`none` without).
    pub by_extension: BTreeMap<&'static str, usize>,
    /// Open connections by HTTP version: `1.1` (an upgrade) or `2` (a
    /// stream of an HTTP/2 connection, RFC 8441).
    pub by_http_version: BTreeMap<&'static str, usize>,
    /// Opening handshakes answered with 101 since the start.
    pub handshakes_accepted: u64,
    /// Opening handshakes refused, by the HTTP status of the answer (a
    /// missing or invalid PROXY header, closed without an answer, as 400).
    pub handshakes_refused: BTreeMap<u16, u64>,
    /// Data messages and payload bytes received and sent, by every
    /// connection since the start.
    pub tally: Tally,
    /// Connections ended, by the close code their handler saw (1006 when
    /// the connection was dropped without a close).
    pub closes: BTreeMap<u16, u64>,
    /// Times each limit refused or closed a connection ([`Limit::name`]).
    pub limits: BTreeMap<&'static str, u64>,
    /// Bytes held on the clients' behalf now, against `max_buffered_total`.
    pub buffered_bytes: usize,
    /// The bus, when the server belongs to a cluster.
    #[cfg(feature = "cluster")]
    pub cluster: Option<crate::runtime::cluster::ClusterStats>,
}

impl Stats {
    /// The snapshot in Prometheus' text exposition format (version 0.0.4),
    /// every metric named `polysocket_*`.
    pub fn prometheus(&self) -> String {
        let t = self.tally;
        // One sample each: name, type, help, value.
        #[allow(unused_mut)] // the cluster's are added with the feature
        let mut single = vec![
            (
                "handshakes_accepted_total",
                "counter",
                "Opening handshakes answered with 101.",
                self.handshakes_accepted,
            ),
            (
                "messages_received_total",
                "counter",
                "Data messages received.",
                t.messages_in,
            ),
            (
                "messages_sent_total",
                "counter",
                "Data messages sent.",
                t.messages_out,
            ),
            (
                "received_bytes_total",
                "counter",
                "Payload bytes of the data messages received (inflated).",
                t.bytes_in,
            ),
            (
                "sent_bytes_total",
                "counter",
                "Payload bytes of the data messages sent (before compression).",
                t.bytes_out,
            ),
            (
                "buffered_bytes",
                "gauge",
                "Bytes held on the clients' behalf (against max_buffered_total).",
                self.buffered_bytes as u64,
            ),
        ];
        #[cfg(feature = "cluster")]
        if let Some(c) = &self.cluster {
            single.extend([
                (
                    "cluster_up",
                    "gauge",
                    "1 while both Redis connections are up.",
                    c.connected as u64,
                ),
                (
                    "cluster_published_total",
                    "counter",
                    "Envelopes handed to Redis.",
                    c.published,
                ),
                (
                    "cluster_received_total",
                    "counter",
                    "Envelopes from other nodes taken in.",
                    c.received,
                ),
                (
                    "cluster_dropped_total",
                    "counter",
                    "Envelopes that could not cross (bus down or queue full).",
                    c.dropped,
                ),
                (
                    "cluster_malformed_total",
                    "counter",
                    "Foreign or malformed messages on the namespace's channels.",
                    c.malformed,
                ),
                (
                    "cluster_unroutable_total",
                    "counter",
                    "Commands for a connection this node no longer has.",
                    c.unroutable,
                ),
                (
                    "cluster_reconnects_total",
                    "counter",
                    "Times the bus came back.",
                    c.reconnects,
                ),
            ]);
        }
        // Every draft and extension, open or not: a series that vanishes
        // at zero would read as "no data".
        let count =
            |map: &BTreeMap<&'static str, usize>, key: &str| *map.get(key).unwrap_or(&0) as u64;
        let drafts = Draft::ALL
            .iter()
            .map(|d| (d.name().to_string(), count(&self.by_draft, d.name())));
        let extensions = [
            "none",
            "permessage-deflate",
            "deflate-frame",
            "deflate-stream",
        ]
        .iter()
        .map(|e| (e.to_string(), count(&self.by_extension, e)));
        let versions = ["1.1", "2"]
            .iter()
            .map(|v| (v.to_string(), count(&self.by_http_version, v)));
        let coded = |map: &BTreeMap<u16, u64>| {
            map.iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect::<Vec<_>>()
        };
        // Labelled: name, type, help, label, samples.
        let labelled: [Labelled; 6] = [
            (
                "connections",
                "gauge",
                "Open connections, by draft.",
                "draft",
                drafts.collect(),
            ),
            (
                "connections_by_extension",
                "gauge",
                "Open connections, by compression extension.",
                "extension",
                extensions.collect(),
            ),
            (
                "connections_by_http_version",
                "gauge",
                "Open connections, by HTTP version (2: streams of HTTP/2 connections).",
                "version",
                versions.collect(),
            ),
            (
                "handshakes_refused_total",
                "counter",
                "Opening handshakes refused, by HTTP status.",
                "status",
                coded(&self.handshakes_refused),
            ),
            (
                "closes_total",
                "counter",
                "Connections ended, by close code.",
                "code",
                coded(&self.closes),
            ),
            (
                "limit_hits_total",
                "counter",
                "Connections refused or closed by a limit.",
                "limit",
                self.limits
                    .iter()
                    .map(|(l, n)| (l.to_string(), *n))
                    .collect(),
            ),
        ];
        let mut out = String::with_capacity(4096);
        // `writeln!` into a String cannot fail: its results are dropped.
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(
                out,
                "# HELP polysocket_{name} {help}\n# TYPE polysocket_{name} {kind}"
            );
        };
        for (name, kind, help, label, samples) in &labelled {
            head(&mut out, name, kind, help);
            for (value, n) in samples {
                let _ = writeln!(out, "polysocket_{name}{{{label}=\"{value}\"}} {n}");
            }
        }
        for (name, kind, help, value) in single {
            head(&mut out, name, kind, help);
            let _ = writeln!(out, "polysocket_{name} {value}");
        }
        out
    }

    /// [`Stats::prometheus`] as a complete HTTP response.
    pub fn prometheus_response(&self) -> Vec<u8> {
        crate::http::page_response(
            "text/plain; version=0.0.4; charset=utf-8",
            self.prometheus().as_bytes(),
        )
    }
}

/// `GET /metrics`, query aside.
pub(super) fn asked_for(head: &crate::http::RequestHead) -> bool {
    let path = head.target.split('?').next().unwrap_or("");
    path == "/metrics" && head.method == "GET"
}

/// Serves [`ServerConfig::metrics_port`](super::ServerConfig::metrics_port):
/// one request per connection, `/metrics` or 404, until the server stops.
pub(super) async fn serve(
    shared: std::sync::Arc<super::Shared>,
    listener: tokio::net::TcpListener,
) {
    let mut stopping = shared.stopping.subscribe();
    loop {
        let (tcp, _) = tokio::select! {
            _ = super::opening::stop_requested(&mut stopping) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let handle = super::ServerHandle {
            shared: shared.clone(),
        };
        tokio::spawn(answer(handle, tcp));
    }
}

async fn answer(handle: super::ServerHandle, mut tcp: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = &handle.shared.config;
    let timeout = config.handshake_timeout;
    let read_head = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            match crate::http::parse_request(&buf, &config.protocol) {
                Ok(Some((head, _))) => return Some(head),
                Ok(None) => continue,
                Err(_) => return None,
            }
        }
    };
    let head = tokio::time::timeout(timeout, read_head)
        .await
        .ok()
        .flatten();
    let response = match head {
        Some(head) if asked_for(&head) => handle.stats().prometheus_response(),
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = tokio::time::timeout(timeout, async {
        tcp.write_all(&response).await?;
        tcp.shutdown().await
    })
    .await;
}
