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
//! * [`task`]: an open connection's task: its loop, timers, dispatch.
//! * [`io`]: socket reads (in place, scratch, low-water mark) and writes.

mod admission;
mod clustered;
mod handle;
mod handler;
mod io;
mod mailbox;
mod opening;
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

pub use handle::ServerHandle;
pub use handler::{CloseInfo, Conn, Handler, OpenInfo};
pub(crate) use mailbox::Mailbox;
pub use opening::serve_listener;
#[cfg(feature = "cluster")]
pub(crate) use opening::stop_requested;

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
    /// Time for a client to complete its opening handshake (slowloris).
    pub handshake_timeout: Duration,
    /// Send a ping after this long without hearing from the peer.
    pub ping_interval: Option<Duration>,
    /// Drop the connection (1006) when nothing arrives this long after a
    /// keepalive ping.
    pub pong_timeout: Duration,
    /// Bytes queued for a peer (encoded and not yet written, plus commands
    /// not yet applied) beyond which the peer is deemed stuck: the
    /// connection is aborted and reported closed with 1008.
    pub max_send_buffer: usize,
    /// Time to wait for the peer's close frame after sending ours.
    pub close_timeout: Duration,
    /// Serve `wss://` with this TLS configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
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
            handshake_timeout: Duration::from_secs(10),
            ping_interval: None,
            pong_timeout: Duration::from_secs(20),
            max_send_buffer: 64 * 1024 * 1024,
            close_timeout: Duration::from_secs(5),
            tls: None,
            workers: 0,
            read_chunk: 64 * 1024,
            reuse_port: false,
            #[cfg(feature = "cluster")]
            cluster: None,
        }
    }
}

/// A connection's entry in the registry: how to reach its task.
pub(super) struct Entry {
    pub(super) mailbox: Arc<Mailbox>,
    pub(super) draft: Draft,
}

/// State shared by the accept loop, the connection tasks and handles.
pub(super) struct Shared {
    pub(super) config: ServerConfig,
    pub(super) handler: Arc<dyn Handler>,
    pub(super) conns: RwLock<HashMap<ConnId, Entry>>,
    pub(super) groups: Mutex<HashMap<String, HashSet<ConnId>>>,
    pub(super) per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub(super) open: AtomicUsize,
    pub(super) next_id: AtomicU64,
    /// `true` once stop was asked for: the accept loop ends. Connections
    /// learn it from their mailbox's [`STOP`] signal.
    pub(super) stopping: watch::Sender<bool>,
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
