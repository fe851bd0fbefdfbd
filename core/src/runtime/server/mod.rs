//! The server: accept, handshake with a timeout, one tokio task per
//! connection, limits and policy, graceful shutdown.
//!
//! The application sees a [`Handler`], called on the connection's task
//! with a [`Conn`] that sends straight into the engine (no channel, no
//! lock: a native echo costs one encode). Other threads act through a
//! [`ServerHandle`]: its commands reach the connection's task through a
//! mailbox whose queued bytes count against the send-buffer limit.
//!
//! The modules follow a connection's life:
//!
//! * [`handler`]: what the application implements and sees ([`Handler`],
//!   [`Conn`], [`OpenInfo`], [`CloseInfo`]).
//! * [`handle`] and [`mailbox`]: [`ServerHandle`], and how its commands
//!   reach a connection served on another thread.
//! * [`clustered`]: what [`ServerHandle`] does beyond this server when it
//!   belongs to a cluster (feature `cluster`).
//! * [`admission`]: connection limits, origins, the message rate limit.
//! * [`opening`]: the accept loop and the opening handshake.
//! * [`http2`]: HTTP/2 connections, whose streams are WebSockets (RFC 8441).
//! * [`task`]: an open connection's task: its loop, timers, dispatch.
//! * [`proxy`]: the client's address behind a trusted proxy (PROXY
//!   protocol, `X-Forwarded-For`, `Forwarded`).
//! * [`io`]: socket reads (in place, scratch, low-water mark) and writes.
//! * [`metrics`]: counters and [`Stats`], in Prometheus' format on request.

mod admission;
mod budget;
mod clustered;
mod handle;
mod handler;
mod http2;
mod io;
mod mailbox;
mod metrics;
mod opening;
mod proxy;
mod task;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio_rustls::rustls;

use super::RuntimeError;
use crate::config::Config;
use crate::draft::Draft;

pub use budget::{OVERLOAD_CLOSE, UNCOUNTED};
pub use handle::ServerHandle;
pub use handler::{CloseInfo, Conn, Handler, OpenInfo};
pub(crate) use mailbox::Mailbox;
pub use metrics::{Limit, Stats, ACCESS_LOG};
pub use opening::serve_listener;
#[cfg(feature = "cluster")]
pub(crate) use opening::stop_requested;
pub use proxy::{parse_trusted_proxies, IpNet};

/// The parsers of what a proxy (or anyone claiming to be one) sends, for
/// the fuzz harness in `core/fuzz`; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::proxy::{forwarded_client, is_trusted, parse_header};
}

/// Identifies a connection for the lifetime of its server.
pub type ConnId = u64;

/// Close code sent to a peer whose send buffer overflowed (it stopped
/// reading) or that exceeded its message rate: policy violation.
pub const POLICY_CLOSE: u16 = 1008;

/// Limits and policy of a server. Every limit of the protocol engine is in
/// [`ServerConfig::protocol`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The engine's limits and switches (drafts, sizes, extensions).
    pub protocol: Arc<Config>,
    /// Connections open at once; further ones are answered 503. 0: no limit.
    pub max_connections: usize,
    /// Connections open at once from one IP address; further ones are
    /// answered 429. 0: no limit.
    pub max_connections_per_ip: usize,
    /// Messages a connection may send per minute; the next one closes it
    /// with 1008. 0: no limit.
    pub max_messages_per_minute: u32,
    /// Accepted `Origin` values (exact, case-insensitive; `*` any); others
    /// are refused with 403. `None`: every origin (and none) is accepted.
    pub allowed_origins: Option<Vec<String>>,
    /// Proxies believed about the client's address (CIDRs or single
    /// addresses, see [`parse_trusted_proxies`]): their PROXY header (when
    /// [`ServerConfig::proxy_protocol`]) or else their `Forwarded` /
    /// `X-Forwarded-For` header names the client that per-IP limits,
    /// [`OpenInfo::peer`] and logs use. Headers from anyone else are ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Every connection starts with a PROXY protocol header (v1 or v2, as
    /// HAProxy's `send-proxy` / `send-proxy-v2` write), read before TLS: a
    /// connection from an untrusted address, or without a valid header, is
    /// closed. Needs [`ServerConfig::trusted_proxies`].
    pub proxy_protocol: bool,
    /// Time for a client to complete its opening handshake (slowloris).
    pub handshake_timeout: Duration,
    /// Send a ping after this long without hearing from the peer.
    pub ping_interval: Option<Duration>,
    /// Drop the connection (1006) when nothing arrives this long after a
    /// keepalive ping, or when the peer takes none of our output (a write
    /// is stuck, so no ping can go) for `ping_interval + pong_timeout`
    /// since it was last heard: a link cut mid-transfer.
    pub pong_timeout: Duration,
    /// Bytes queued for a peer (encoded and not yet written, plus commands
    /// not yet applied) beyond which the peer is deemed stuck: the
    /// connection is aborted and reported closed with 1008.
    pub max_send_buffer: usize,
    /// Bytes all connections together may hold on their clients' behalf:
    /// partial frames, messages being reassembled or inflated, output not
    /// yet written (each connection's first [`UNCOUNTED`] bytes aside). A
    /// connection whose data would take the total past it is closed with
    /// [`OVERLOAD_CLOSE`] (1013, try again later) and counted
    /// ([`Limit::Budget`] in [`ServerHandle::stats`]); the others keep working.
    /// The default, 256 MiB, holds fifteen messages of the default maximum
    /// size (17 MiB) at once and keeps a flood of slow senders far from a small
    /// machine's memory (20 clients each holding most of a 60 MiB frame
    /// took an unbudgeted server to 1.2 GiB). 0: no budget.
    pub max_buffered_total: usize,
    /// Time to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
    /// How long [`ServerHandle::drain`] lets open connections carry on
    /// after the listening socket is closed, before the rest get 1001 as on
    /// a stop: in a rolling restart, the time clients have to finish and
    /// reconnect to the new process on the port. 0: draining is stopping.
    pub drain_timeout: Duration,
    /// Answer `GET /metrics` on the server's own port with
    /// [`ServerHandle::stats`] in Prometheus' text format (before the
    /// handler's [`Handler::http`] is asked). Anyone who reaches the port
    /// can read them: prefer [`ServerConfig::metrics_port`] on a server
    /// that faces the Internet.
    pub metrics: bool,
    /// Serve `GET /metrics` on this port of the server's address instead,
    /// nothing else there (0: a free port, see
    /// [`ServerHandle::metrics_addr`]).
    pub metrics_port: Option<u16>,
    /// Serve `wss://` with this TLS configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// With [`ServerConfig::tls`]: offer HTTP/2 by ALPN, so that browsers
    /// open their WebSockets as streams of one connection (RFC 8441); each
    /// stream counts as a connection for the limits.
    pub http2: bool,
    /// Streams an HTTP/2 connection may have open at once (its
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`); further ones are refused with
    /// `RST_STREAM` (`REFUSED_STREAM`).
    pub http2_max_streams: u32,
    /// Streams of an HTTP/2 connection reset by the client before the
    /// server took them up that the connection may accumulate before it is
    /// closed with `GOAWAY` (`ENHANCE_YOUR_CALM`): the "rapid reset" attack
    /// (CVE-2023-44487). Streams the server resets for the client's errors
    /// are bounded too (`h2`'s default, 1024).
    pub http2_max_pending_resets: usize,
    /// The certificates `tls` serves, when they can be reloaded
    /// ([`ServerHandle::reload_tls`]); set both with
    /// [`ServerConfig::serve_certificates`].
    pub certificates: Option<Arc<super::tls::Certificates>>,
    /// Worker threads of the runtime [`Server::start`] creates (0: one per
    /// core).
    pub workers: usize,
    /// Bytes read from the socket at a time.
    pub read_chunk: usize,
    /// Set `SO_REUSEPORT` on the listening socket [`Server::start`] binds,
    /// so that several processes serve one port (the kernel spreads the
    /// connections among them).
    pub reuse_port: bool,
    /// Share broadcasts, groups, connection ids and presence with the other
    /// servers of a namespace over Redis (see docs/CLUSTER.md).
    #[cfg(feature = "cluster")]
    pub cluster: Option<super::cluster::ClusterConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            protocol: Arc::new(Config::default()),
            max_connections: 0,
            max_connections_per_ip: 0,
            max_messages_per_minute: 0,
            allowed_origins: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: None,
            pong_timeout: Duration::from_secs(20),
            max_send_buffer: 64 * 1024 * 1024,
            max_buffered_total: 256 * 1024 * 1024,
            close_timeout: Duration::from_secs(5),
            drain_timeout: Duration::ZERO,
            metrics: false,
            metrics_port: None,
            tls: None,
            http2: true,
            http2_max_streams: 100,
            http2_max_pending_resets: 20,
            certificates: None,
            workers: 0,
            read_chunk: 64 * 1024,
            reuse_port: false,
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }
}

impl ServerConfig {
    /// Serve `wss://` with `certificates`, reloadable while the server runs.
    pub fn serve_certificates(
        &mut self,
        certificates: Arc<super::tls::Certificates>,
    ) -> Result<(), super::RuntimeError> {
        self.tls = Some(certificates.server_config()?);
        self.certificates = Some(certificates);
        Ok(())
    }
}

/// A connection's entry in the registry: how to reach its task.
pub(super) struct Entry {
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) draft: Draft,
    /// The compression extension agreed on, if any (for the metrics).
    pub(super) extension: Option<&'static str>,
    /// An HTTP/2 stream (for the metrics).
    pub(super) http2: bool,
}

/// State shared by the accept loop, the connection tasks and handles.
pub(super) struct Shared {
    pub(super) config: ServerConfig,
    pub(super) handler: Arc<dyn Handler>,
    pub(super) conns: RwLock<HashMap<ConnId, Entry>>,
    pub(super) groups: Mutex<HashMap<String, HashSet<ConnId>>>,
    pub(super) per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub(super) open: AtomicUsize,
    /// Bytes the connections hold on their clients' behalf, within
    /// `config.max_buffered_total` (see [`budget`]).
    pub(super) buffered: AtomicUsize,
    pub(super) metrics: metrics::Metrics,
    /// Where `config.metrics_port` is served.
    pub(super) metrics_addr: Option<SocketAddr>,
    pub(super) next_id: AtomicU64,
    /// `true` once stop was asked for: the accept loop ends. Connections
    /// learn it from their mailbox's [`STOP`] signal.
    pub(super) stopping: watch::Sender<bool>,
    /// `true` once a drain was asked for: the accept loop closes the
    /// listener, waits for the connections to end, then stops.
    pub(super) draining: watch::Sender<bool>,
    /// Every connection task and the accept loop ended.
    pub(super) finished: Notify,
    pub(super) running: AtomicUsize,
    pub(super) accepting: AtomicBool,
    /// The cluster this server belongs to, if any.
    #[cfg(feature = "cluster")]
    pub(super) cluster: Option<Arc<super::cluster::Cluster>>,
}

/// Counts a task as running until dropped; the last one wakes `stopped`.
pub(super) struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.finished.notify_waiters();
        }
    }
}

pub(super) fn spawn_task(
    shared: &Arc<Shared>,
    fut: impl std::future::Future<Output = ()> + Send + 'static,
) {
    shared.running.fetch_add(1, Ordering::AcqRel);
    tokio::spawn(Counted {
        fut,
        _running: Running(shared.clone()),
    });
}

/// A future that counts as a running task until it is dropped. Written by
/// hand because an `async move` wrapper makes rustc store the inner future
/// twice (rust-lang/rust#59087), doubling every connection's task memory.
pub(super) struct Counted<F> {
    pub(super) fut: F,
    pub(super) _running: Running,
}

impl<F: std::future::Future<Output = ()>> std::future::Future for Counted<F> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of
        // `Counted`, and `Counted` has no Drop impl of its own.
        unsafe { self.map_unchecked_mut(|c| &mut c.fut) }.poll(cx)
    }
}

/// A running server and the runtime it owns.
pub struct Server {
    pub(super) handle: ServerHandle,
    pub(super) local_addr: SocketAddr,
    pub(super) runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Bind `addr` and serve on a new multi-threaded tokio runtime.
    pub fn start(
        addr: SocketAddr,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Server, RuntimeError> {
        let listener = bind_listener(addr, config.reuse_port)?;
        Server::start_with_listener(listener, config, handler)
    }

    /// Serve on an already bound listener.
    pub fn start_with_listener(
        listener: std::net::TcpListener,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Server, RuntimeError> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if config.workers > 0 {
            builder.worker_threads(config.workers);
        }
        let runtime = builder.enable_all().thread_name("polysocket").build()?;
        let local_addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let handle = {
            let _guard = runtime.enter();
            let listener = TcpListener::from_std(listener)?;
            serve_listener(listener, config, handler)?
        };
        Ok(Server {
            handle,
            local_addr,
            runtime: Some(runtime),
        })
    }

    /// A handle usable from any thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The tokio runtime the server runs on (to spawn related work, or to
    /// enter it before [`ServerHandle::adopt`]).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("runtime lives until drop")
    }

    /// Block until the server stopped (after [`ServerHandle::stop`]).
    pub fn wait(&self) {
        let handle = self.handle.clone();
        self.runtime()
            .block_on(async move { handle.stopped().await });
    }

    /// Stop gracefully and wait for every connection to finish.
    pub fn shutdown(self) {
        self.handle.stop();
        self.wait();
    }
}

/// A listening socket on `addr`, shared with other processes' when
/// `reuse_port` (`SO_REUSEPORT`: the kernel spreads new connections over
/// every socket that asked for it; Unix only, elsewhere an error says so).
/// Public for faces that bind before they start a server: PHP binds in
/// php-websocket's constructor, Python hands [`serve_listener`] a listener
/// of its own (on its loop's runtime).
pub fn bind_listener(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    if !reuse_port {
        return std::net::TcpListener::bind(addr);
    }
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As std's bind does on Unix: restart at once after a stop.
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    #[cfg(not(unix))]
    return Err(std::io::Error::other(
        "reuse_port needs SO_REUSEPORT (Unix)",
    ));
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(runtime) = self.runtime.take() {
            // Blocking to wait is not allowed inside another runtime.
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(self.handle.shared.config.close_timeout);
            }
        }
    }
}
