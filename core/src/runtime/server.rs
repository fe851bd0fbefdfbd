//! The server: accept, handshake with a timeout, one tokio task per
//! connection, limits and policy, graceful shutdown.
//!
//! The application sees a [`Handler`], called on the connection's task
//! with a [`Conn`] that sends straight into the engine (no channel, no
//! lock: a native echo costs one encode). Other threads act through a
//! [`ServerHandle`]: its commands reach the connection's task through a
//! mailbox whose queued bytes count against the send-buffer limit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use super::{current, RuntimeError, Stream};
use crate::config::Config;
use crate::draft::Draft;
use crate::error::{HandshakeError, SendError};
use crate::extensions::Agreed;
use crate::handshake::{reject_response, Hooks, Progress, Request, ServerHandshake};
use crate::http::{parse_request, Headers, RequestHead};
use crate::protocol::{
    rules, CloseFrame, Connection, Event, Incoming, Message, Polled, PreparedMessage, State,
};

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
        }
    }
}

/// What is known about a connection once its handshake succeeded.
#[derive(Debug, Clone)]
pub struct OpenInfo {
    /// The connection's id.
    pub id: ConnId,
    /// The draft the client spoke.
    pub draft: Draft,
    /// The request path (without query).
    pub path: String,
    /// The query string, without `?` (empty when absent).
    pub query: String,
    /// The request's headers.
    pub headers: Headers,
    /// `Origin` (or `Sec-WebSocket-Origin`), if sent.
    pub origin: Option<String>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The agreed subprotocol.
    pub subprotocol: Option<String>,
    /// The agreed compression extension.
    pub extensions: Agreed,
    /// Served over TLS.
    pub secure: bool,
}

/// How a connection ended, as reported to [`Handler::on_close`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The peer's code (1005 none, 1006 dropped), or the code we closed
    /// with when we failed the connection.
    pub code: u16,
    /// The peer's reason, or why we closed.
    pub reason: String,
    /// The close handshake completed.
    pub clean: bool,
}

/// The application's side of a server. Methods run on the connection's
/// task, on a runtime worker thread: they must not block.
pub trait Handler: Send + Sync + 'static {
    /// Decide on a handshake after the configured origin check: refuse with
    /// an error (its HTTP status is sent), or accept with an optional
    /// subprotocol chosen from `offered`. `id` is the connection's id from
    /// here on ([`OpenInfo::id`] once open): state kept for the request is
    /// keyed by it, never by fields of the request, which two clients may
    /// share. After `accept`, exactly one of [`on_open`](Self::on_open) and
    /// [`on_handshake_failed`](Self::on_handshake_failed) follows for `id`.
    fn accept(
        &self,
        id: ConnId,
        request: &Request,
        offered: &[&str],
    ) -> Result<Option<String>, HandshakeError> {
        let _ = (id, request, offered);
        Ok(None)
    }
    /// The handshake of `id`, whose [`accept`](Self::accept) was called,
    /// will never open: it was refused, the answer could not be written,
    /// it timed out, the client went away or the server is stopping. Drop
    /// what was kept for it.
    fn on_handshake_failed(&self, id: ConnId) {
        let _ = id;
    }
    /// Answer a plain HTTP request (one without `Upgrade`), e.g. with a
    /// page whose script opens the WebSocket: the full HTTP response bytes.
    /// `None` (the default) answers 400 as for any failed handshake.
    fn http(&self, request: &RequestHead) -> Option<Vec<u8>> {
        let _ = request;
        None
    }
    /// The connection is open.
    fn on_open(&self, conn: &mut Conn<'_>, info: &Arc<OpenInfo>) {
        let _ = (conn, info);
    }
    /// A complete message arrived. It is lent for the call (see
    /// [`Incoming`]): `into_message` keeps it, `conn.forward` sends it on,
    /// both without copying a large payload.
    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>);
    /// A ping arrived (already answered when auto-pong is on).
    fn on_ping(&self, conn: &mut Conn<'_>, data: Bytes) {
        let _ = (conn, data);
    }
    /// A pong arrived.
    fn on_pong(&self, conn: &mut Conn<'_>, data: Bytes) {
        let _ = (conn, data);
    }
    /// The connection is gone; called exactly once per opened connection.
    fn on_close(&self, id: ConnId, close: &CloseInfo) {
        let _ = (id, close);
    }
}

/// A connection as seen from inside its own task: sends go straight into
/// the engine and are written when the handler returns.
pub struct Conn<'a> {
    id: ConnId,
    /// The engine, shared with [`current`] for the handler call (see there).
    conn: NonNull<Connection>,
    _conn: PhantomData<&'a mut Connection>,
}

impl Conn<'_> {
    fn engine(&mut self) -> &mut Connection {
        // SAFETY: made by `call_handler` from the task's `&mut Connection`
        // for one handler call; the only other user of the pointer is
        // `current::with`, whose access never overlaps this short borrow.
        unsafe { self.conn.as_mut() }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The draft in use.
    pub fn draft(&self) -> Draft {
        // SAFETY: as in `engine`, a short shared borrow.
        unsafe { self.conn.as_ref() }.draft()
    }

    /// Send a message. Fails when the connection is closing or the draft
    /// cannot carry it (binary on hixie).
    pub fn send(&mut self, message: &Message) -> Result<(), SendError> {
        self.engine().send(message)
    }

    /// Send a received message on (an echo, a relay); see
    /// [`Connection::forward`].
    pub fn forward(&mut self, message: Incoming<'_>) -> Result<(), SendError> {
        self.engine().forward(message)
    }

    /// Send a message encoded once for many connections.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), SendError> {
        self.engine().send_prepared(message)
    }

    /// Send a ping (hybi-01 and later, up to 125 bytes).
    pub fn ping(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.engine().send_ping(data)
    }

    /// Send an unsolicited pong, a heartbeat (hybi-01 and later, up to 125
    /// bytes; pings are answered by the engine already).
    pub fn pong(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.engine().send_pong(data)
    }

    /// Start the close handshake (see [`Connection::close`]).
    pub fn close(&mut self, code: Option<u16>, reason: &str) -> Result<(), SendError> {
        self.engine().close(code, reason)
    }
}

/// Call the handler for connection `id` with its engine current on this
/// thread, so that the handle's commands for it from inside the call are
/// applied at once (see [`current`]).
fn call_handler<R>(
    id: ConnId,
    conn: &mut Connection,
    mailbox: &Mailbox,
    f: impl FnOnce(&mut Conn<'_>) -> R,
) -> R {
    let (_scope, ptr) = current::enter(id, conn, mailbox);
    f(&mut Conn {
        id,
        conn: ptr,
        _conn: PhantomData,
    })
}

/// What other threads ask a connection's task to do.
enum Command {
    Send(Message),
    Prepared(Arc<PreparedMessage>),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<u16>, String),
}

impl Command {
    fn queued_bytes(&self) -> usize {
        match self {
            Command::Send(m) => m.data().len(),
            Command::Prepared(p) => p.message().data().len(),
            Command::Ping(d) | Command::Pong(d) => d.len(),
            Command::Close(_, r) => r.len(),
        }
    }

    /// The stateless rules (see [`rules`]), for a connection speaking `draft`.
    fn check(&self, draft: Draft) -> Result<(), SendError> {
        match self {
            Command::Send(m) => rules::check_message(draft, m.kind()),
            Command::Prepared(p) => rules::check_message(draft, p.message().kind()),
            Command::Ping(d) | Command::Pong(d) => rules::check_control(draft, d.len()),
            Command::Close(code, reason) => rules::check_close(draft, *code, reason),
        }
    }
}

/// A connection's inbox for commands from other threads. It allocates
/// nothing until a command arrives (a tokio channel allocates a block of
/// slots per connection up front, which idle connections pay for).
///
/// Its signals are bits plus one waker: the task's wait registers with a
/// few atomic operations and stays registered across loop turns, where a
/// `Notify` would lock a waiter list on every turn of every connection.
#[derive(Default)]
pub(super) struct Mailbox {
    commands: Mutex<VecDeque<Command>>,
    /// Bytes of commands queued and not yet applied by the task.
    queued: AtomicUsize,
    /// [`READY`], [`OVERFLOW`], [`STOP`]; set by senders, taken by the task.
    signals: AtomicU8,
    /// Set by the task once its engine left [`State::Open`]: handles then
    /// answer [`SendError::Closed`] instead of queuing what cannot be sent.
    closed: AtomicBool,
    waker: AtomicWaker,
}

/// Commands were queued.
const READY: u8 = 1;
/// The send buffer overflowed: the task aborts.
const OVERFLOW: u8 = 2;
/// The server is stopping: the task closes with 1001.
const STOP: u8 = 4;

impl Mailbox {
    /// Apply every queued command, in order. The callers were told their
    /// command was queued: one that fails now (the connection closed in
    /// between) is logged.
    fn apply_all(&self, id: ConnId, conn: &mut Connection) {
        let commands = std::mem::take(&mut *self.commands.lock().expect("mailbox lock"));
        for command in commands {
            self.queued
                .fetch_sub(command.queued_bytes(), Ordering::AcqRel);
            if let Err(error) = apply(conn, command) {
                tracing::debug!(id, %error, "queued command failed when applied");
            }
        }
    }

    /// The connection left [`State::Open`]: no further command is queued.
    fn set_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The send buffer overflowed: the task aborts the connection, and
    /// nothing more is accepted for it.
    fn overflow(&self) {
        self.set_closed();
        self.signal(OVERFLOW);
    }

    /// Commands still queued when the task ended were never sent.
    fn discard(&self, id: ConnId) {
        let left = std::mem::take(&mut *self.commands.lock().expect("mailbox lock"));
        if !left.is_empty() {
            tracing::debug!(
                id,
                commands = left.len(),
                "connection ended before queued commands were applied"
            );
        }
    }

    fn signal(&self, bits: u8) {
        self.signals.fetch_or(bits, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Resolves with (and clears) the raised signals among `mask`.
    fn wait(&self, mask: u8) -> impl std::future::Future<Output = u8> + '_ {
        std::future::poll_fn(move |cx| self.poll_signals(cx, mask))
    }

    fn poll_signals(&self, cx: &mut std::task::Context<'_>, mask: u8) -> std::task::Poll<u8> {
        if let Some(raised) = self.take_raised(mask) {
            return std::task::Poll::Ready(raised);
        }
        self.waker.register(cx.waker());
        // A signal raised before the registration took effect.
        match self.take_raised(mask) {
            Some(raised) => std::task::Poll::Ready(raised),
            None => std::task::Poll::Pending,
        }
    }

    /// Takes the raised signals among `mask`, if any: one atomic load when
    /// none is.
    fn take_raised(&self, mask: u8) -> Option<u8> {
        if self.signals.load(Ordering::Acquire) & mask == 0 {
            return None;
        }
        Some(self.signals.fetch_and(!mask, Ordering::AcqRel) & mask)
    }
}

/// What woke a connection's task.
enum Wake {
    Signals(u8),
    Read(std::io::Result<usize>),
    Timer,
}

/// A connection's entry in the registry: how to reach its task.
struct Entry {
    mailbox: Arc<Mailbox>,
    draft: Draft,
}

/// State shared by the accept loop, the connection tasks and handles.
struct Shared {
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    conns: RwLock<HashMap<ConnId, Entry>>,
    groups: Mutex<HashMap<String, HashSet<ConnId>>>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    open: AtomicUsize,
    next_id: AtomicU64,
    /// `true` once stop was asked for: the accept loop ends. Connections
    /// learn it from their mailbox's [`STOP`] signal.
    stopping: watch::Sender<bool>,
    /// Every connection task and the accept loop ended.
    finished: Notify,
    running: AtomicUsize,
    accepting: AtomicBool,
}

/// A handle to a running server, usable from any thread.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Apply `command` now if `id`'s handler call is running on this
    /// thread, else check it and queue it for the connection's task.
    fn command(&self, id: ConnId, command: Command) -> Result<(), SendError> {
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
        let entry = conns.get(&id).ok_or(SendError::Gone)?;
        let mailbox = &entry.mailbox;
        if mailbox.is_closed() {
            return Err(SendError::Closed);
        }
        command.check(entry.draft)?;
        let queued = mailbox.queued.fetch_add(size, Ordering::AcqRel) + size;
        if queued > limit {
            mailbox.queued.fetch_sub(size, Ordering::AcqRel);
            mailbox.overflow();
            return Err(SendError::Overflow(limit));
        }
        mailbox
            .commands
            .lock()
            .expect("mailbox lock")
            .push_back(command);
        mailbox.signal(READY);
        Ok(())
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

    /// Send one message to every member of `group`.
    pub fn broadcast_group(&self, group: &str, message: Message) -> usize {
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
            groups.entry(group.to_string()).or_default().insert(id);
        }
    }

    /// Remove a connection from a group (dropped when empty).
    pub fn leave(&self, id: ConnId, group: &str) {
        let mut groups = self.shared.groups.lock().expect("groups lock");
        if let Some(members) = groups.get_mut(group) {
            members.remove(&id);
            if members.is_empty() {
                groups.remove(group);
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
        if !admit(&shared, peer.ip()) {
            return Err(RuntimeError::Config("connection limit reached".into()));
        }
        let opening = Box::pin(async move {
            let guard = Admitted::new(shared.clone(), peer.ip());
            open(&shared, Stream::Plain(stream), peer, handshake, guard)
                .await
                .ok()
        });
        spawn_task(&self.shared, serve(self.shared.clone(), opening));
        Ok(())
    }
}

/// Counts a task as running until dropped; the last one wakes `stopped`.
struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.finished.notify_waiters();
        }
    }
}

fn spawn_task(shared: &Arc<Shared>, fut: impl std::future::Future<Output = ()> + Send + 'static) {
    shared.running.fetch_add(1, Ordering::AcqRel);
    tokio::spawn(Counted {
        fut,
        _running: Running(shared.clone()),
    });
}

/// A future that counts as a running task until it is dropped. Written by
/// hand because an `async move` wrapper makes rustc store the inner future
/// twice (rust-lang/rust#59087), doubling every connection's task memory.
struct Counted<F> {
    fut: F,
    _running: Running,
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

/// Reserve a connection slot for `ip`; false when a limit is reached.
fn admit(shared: &Shared, ip: IpAddr) -> bool {
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
struct Admitted {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Admitted {
    fn new(shared: Arc<Shared>, ip: IpAddr) -> Self {
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

/// A running server and the runtime it owns.
pub struct Server {
    handle: ServerHandle,
    local_addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// Bind `addr` and serve on a new multi-threaded tokio runtime.
    pub fn start(
        addr: SocketAddr,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Server, RuntimeError> {
        let listener = std::net::TcpListener::bind(addr)?;
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

/// Serve on `listener` within the current tokio runtime (for applications
/// that run their own). Returns at once; see [`ServerHandle::stopped`].
pub fn serve_listener(
    listener: TcpListener,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
) -> Result<ServerHandle, RuntimeError> {
    if config.read_chunk == 0 {
        return Err(RuntimeError::Config("read_chunk must be positive".into()));
    }
    let (stopping, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        config,
        handler,
        conns: RwLock::new(HashMap::new()),
        groups: Mutex::new(HashMap::new()),
        per_ip: Mutex::new(HashMap::new()),
        open: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        stopping,
        finished: Notify::new(),
        running: AtomicUsize::new(0),
        accepting: AtomicBool::new(true),
    });
    let acceptor = shared.config.tls.clone().map(TlsAcceptor::from);
    let accept_shared = shared.clone();
    spawn_task(&shared, accept_loop(accept_shared, listener, acceptor));
    Ok(ServerHandle { shared })
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, acceptor: Option<TlsAcceptor>) {
    let mut stopping = shared.stopping.subscribe();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop_requested(&mut stopping) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors and the like: back off briefly.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if !shared.accepting.load(Ordering::Acquire) {
            return;
        }
        let _ = tcp.set_nodelay(true);
        let task_shared = shared.clone();
        let acceptor = acceptor.clone();
        let opening = Box::pin(async move {
            if !admit(&task_shared, peer.ip()) {
                refuse_over_limit(tcp, &task_shared, peer.ip()).await;
                return None;
            }
            let guard = Admitted::new(task_shared.clone(), peer.ip());
            let timeout = task_shared.config.handshake_timeout;
            let stream = match acceptor {
                None => Stream::Plain(tcp),
                Some(acceptor) => {
                    match tokio::time::timeout(timeout, Box::pin(acceptor.accept(tcp))).await {
                        Ok(Ok(tls)) => Stream::ServerTls(Box::new(tls)),
                        _ => return None,
                    }
                }
            };
            let handshake = ServerHandshake::new(task_shared.config.protocol.clone());
            open(&task_shared, stream, peer, handshake, guard)
                .await
                .ok()
        });
        spawn_task(&shared, serve(shared.clone(), opening));
    }
}

/// Answer a connection over a limit with 503 (server full) or 429 (too
/// many from this address) and close it.
async fn refuse_over_limit(mut tcp: TcpStream, shared: &Shared, ip: IpAddr) {
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

/// The configured origin check, then the application's decision.
struct ServerHooks<'a> {
    shared: &'a Shared,
    /// The id the connection has if it opens, given to the application.
    id: ConnId,
    /// [`Handler::accept`] was called.
    asked: std::cell::Cell<bool>,
    subprotocol: std::cell::RefCell<Option<String>>,
}

impl Hooks for ServerHooks<'_> {
    fn check(&self, req: &Request) -> Result<(), HandshakeError> {
        if let Some(allowed) = &self.shared.config.allowed_origins {
            let origin = req.origin().unwrap_or("");
            let ok = allowed
                .iter()
                .any(|a| a == "*" || a.eq_ignore_ascii_case(origin));
            if !ok {
                return Err(HandshakeError::OriginRefused(origin.to_string()));
            }
        }
        let offered = req.subprotocols();
        self.asked.set(true);
        let chosen = self.shared.handler.accept(self.id, req, &offered)?;
        *self.subprotocol.borrow_mut() = chosen;
        Ok(())
    }

    fn select_subprotocol(&self, _req: &Request, _offered: &[&str]) -> Option<String> {
        self.subprotocol.borrow_mut().take()
    }
}

/// A connection [`Handler::accept`] was asked about: unless it reaches
/// [`Handler::on_open`], [`Handler::on_handshake_failed`] is called when
/// this is dropped, however the opening ends (refusal, error, timeout, the
/// task dropped by a stopping runtime).
struct Accepted {
    shared: Arc<Shared>,
    id: ConnId,
    armed: bool,
}

impl Accepted {
    /// The connection opens: `on_open` takes over.
    fn opened(mut self) {
        self.armed = false;
    }
}

impl Drop for Accepted {
    fn drop(&mut self) {
        if self.armed {
            self.shared.handler.on_handshake_failed(self.id);
        }
    }
}

/// A connection whose opening handshake succeeded.
type Opened = (Box<Live>, Arc<OpenInfo>, Accepted);

/// What opens a connection: admission, TLS, the opening handshake.
type Opening = Pin<Box<dyn Future<Output = Option<Opened>> + Send>>;

/// A connection's task: the opening (boxed, so that its state — read
/// buffer, parser, TLS set-up — is freed when it ends), then the connection
/// in its place, the task left small.
async fn serve(shared: Arc<Shared>, opening: Opening) {
    if let Some((live, info, accepted)) = opening.await {
        run_connection(shared, live, info, accepted).await;
    }
}

/// The opening handshake: read, answer, register.
async fn open(
    shared: &Arc<Shared>,
    mut stream: Stream,
    peer: SocketAddr,
    mut handshake: ServerHandshake,
    admitted: Admitted,
) -> Result<Opened, RuntimeError> {
    let config = &shared.config;
    let deadline = Instant::now() + config.handshake_timeout;
    let mut buf = vec![0u8; 4096];
    // What was read, to answer a plain HTTP request (bounded by the
    // handshake's own head limit, which fails first).
    let mut received = Vec::new();
    let mut progress = handshake.feed(&[]);
    loop {
        match progress {
            Ok(Progress::Ready) => break,
            Ok(Progress::NeedMore) => {}
            Err(error) => {
                let plain = parse_request(&received, &config.protocol)
                    .ok()
                    .flatten()
                    .filter(|(head, _)| head.headers.get("upgrade").is_none());
                let answer = plain
                    .and_then(|(head, _)| shared.handler.http(&head))
                    .unwrap_or_else(|| reject_response(&error, &config.protocol));
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer)).await;
                return Err(error.into());
            }
        }
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return Err(RuntimeError::Closed),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(RuntimeError::Timeout("opening handshake")),
        };
        received.extend_from_slice(&buf[..n]);
        progress = handshake.feed(&buf[..n]);
    }
    drop(received);
    drop(buf);
    let request = handshake.request().expect("ready").clone();
    // The id exists before the application is asked; ids are never reused.
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let hooks = ServerHooks {
        shared,
        id,
        asked: Default::default(),
        subprotocol: Default::default(),
    };
    let completed = handshake.complete(&hooks, stream.is_tls());
    let accepted = Accepted {
        shared: shared.clone(),
        id,
        armed: hooks.asked.get(),
    };
    let completed = match completed {
        Ok(c) => c,
        Err(rejected) => {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), stream.write_all(&rejected.response))
                    .await;
            return Err(rejected.error.into());
        }
    };
    // Registered before the answer goes out: once a client sees its 101,
    // the server's handle can reach it.
    let mailbox = Arc::new(Mailbox::default());
    shared.conns.write().expect("registry lock").insert(
        id,
        Entry {
            mailbox: mailbox.clone(),
            draft: completed.session.draft,
        },
    );
    let registered = Registered {
        shared: shared.clone(),
        id,
    };
    if *shared.stopping.borrow() {
        mailbox.signal(STOP);
    }
    tokio::time::timeout_at(deadline, stream.write_all(&completed.response))
        .await
        .map_err(|_| RuntimeError::Timeout("writing the handshake answer"))??;
    let info = Arc::new(OpenInfo {
        id,
        draft: completed.session.draft,
        path: request.path().to_string(),
        query: request.query().unwrap_or("").to_string(),
        headers: request.headers().clone(),
        origin: request.origin().map(str::to_string),
        peer,
        subprotocol: completed.session.subprotocol.clone(),
        extensions: completed.session.extensions,
        secure: stream.is_tls(),
    });
    let live = Box::new(Live {
        mailbox,
        id,
        lowat: LowWater::new(),
        armed: None,
        close_deadline: None,
        stream,
        rate: RateLimit {
            max: config.max_messages_per_minute,
            window_start: Instant::now(),
            count: 0,
        },
        ping_sent: false,
        eof: false,
        conn: Connection::from_completed(config.protocol.clone(), completed),
        last_heard: Instant::now(),
        _registered: registered,
        _admitted: admitted,
    });
    Ok((live, info, accepted))
}

/// An open connection's state, in one allocation apart from its task. The
/// task reaches most of it on every message: laid out as written, hot
/// fields first (the engine's too, see [`Connection`]), a message touches
/// few cache lines, and with many connections each one is a miss.
#[repr(C, align(64))]
struct Live {
    mailbox: Arc<Mailbox>,
    id: ConnId,
    lowat: LowWater,
    /// When the timer is set to fire, if it is.
    armed: Option<Instant>,
    close_deadline: Option<Instant>,
    stream: Stream,
    rate: RateLimit,
    ping_sent: bool,
    eof: bool,
    conn: Connection,
    last_heard: Instant,
    /// Dropped with the rest when the task ends: unregisters the connection,
    /// then gives back its place under the connection limits.
    _registered: Registered,
    _admitted: Admitted,
}

/// The per-minute message budget of a connection.
struct RateLimit {
    max: u32,
    window_start: Instant,
    count: u32,
}

impl RateLimit {
    fn allow(&mut self) -> bool {
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

/// Unregisters a connection when its task ends, however it ends.
struct Registered {
    shared: Arc<Shared>,
    id: ConnId,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared
            .conns
            .write()
            .expect("registry lock")
            .remove(&self.id);
        let mut groups = self.shared.groups.lock().expect("groups lock");
        groups.retain(|_, members| {
            members.remove(&self.id);
            !members.is_empty()
        });
    }
}

async fn run_connection(
    shared: Arc<Shared>,
    mut live: Box<Live>,
    info: Arc<OpenInfo>,
    accepted: Accepted,
) {
    let config = &shared.config;
    let live = &mut *live;
    accepted.opened();
    call_handler(live.id, &mut live.conn, &live.mailbox, |c| {
        shared.handler.on_open(c, &info)
    });
    // The handler keeps what it wants of it; the task keeps only the id.
    drop(info);
    // Frames the client pipelined behind its request are already here.
    let mut outcome: Option<CloseInfo> = dispatch(&shared, live);
    // One timer for keepalive and the close handshake, made when first
    // needed (without keepalive, only a closing connection needs it), armed
    // at or before the earliest deadline and re-armed only when it fires
    // early: traffic moves the keepalive deadline without touching the
    // timer wheel.
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    // Keepalive pings (the hixie drafts have none), decided once: the
    // configuration is not read per message.
    let keepalive = config
        .ping_interval
        .filter(|_| live.conn.draft().has_ping());

    loop {
        // Handles refuse commands from here on, even while the last frames
        // (our close among them) are still being written.
        if live.conn.state() != State::Open {
            live.mailbox.set_closed();
        }
        // Write what the engine produced; a peer that does not read stalls
        // the write, which the overflow signal cuts short.
        if live.conn.has_output() && !write_now(&live.stream, &mut live.conn) {
            let written = tokio::select! {
                biased;
                r = write_out(&mut live.stream, &mut live.conn) => r,
                _ = live.mailbox.wait(OVERFLOW) => Err(std::io::ErrorKind::WouldBlock.into()),
            };
            if let Err(e) = written {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    outcome.get_or_insert_with(|| overflowed(config.max_send_buffer));
                }
                break;
            }
        }
        if live.conn.state() != State::Open || live.eof {
            if live.conn.state() == State::Closed || live.eof {
                break;
            }
            if live.close_deadline.is_none() {
                live.close_deadline = Some(Instant::now() + config.close_timeout);
            }
        }
        if let Some(at) = next_wake(config, keepalive, live) {
            if live.armed.is_none_or(|armed| at < armed) {
                match &mut timer {
                    Some(timer) => timer.as_mut().reset(at),
                    None => timer = Some(Box::pin(tokio::time::sleep_until(at))),
                }
                live.armed = Some(at);
            }
        }
        // Commands and signals first, then the socket, then the clock. The
        // mailbox's waker is registered only when the task is to sleep.
        let wake = std::future::poll_fn(|cx| {
            use std::future::Future;
            use std::task::Poll;
            const ANY: u8 = READY | OVERFLOW | STOP;
            if let Some(signals) = live.mailbox.take_raised(ANY) {
                return Poll::Ready(Wake::Signals(signals));
            }
            if let Poll::Ready(read) = poll_read_into(
                cx,
                &mut live.stream,
                &mut live.conn,
                config,
                &mut live.lowat,
            ) {
                return Poll::Ready(Wake::Read(read));
            }
            if let (Some(_), Some(timer)) = (live.armed, &mut timer) {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timer);
                }
            }
            live.mailbox.poll_signals(cx, ANY).map(Wake::Signals)
        })
        .await;
        match wake {
            Wake::Signals(signals) => {
                if signals & OVERFLOW != 0 {
                    outcome = Some(overflowed(config.max_send_buffer));
                    break;
                }
                if signals & READY != 0 {
                    // Apply everything queued before writing once.
                    live.mailbox.apply_all(live.id, &mut live.conn);
                }
                if signals & STOP != 0 && live.conn.state() == State::Open {
                    let _ = live.conn.close(Some(1001), "server shutting down");
                    if live.conn.state() == State::Closed {
                        outcome = Some(CloseInfo {
                            code: 1001,
                            reason: "server shutting down".into(),
                            clean: true,
                        });
                    }
                }
            }
            Wake::Read(read) => {
                match read {
                    Ok(0) => {
                        live.eof = true;
                        if let Some(Event::Close(frame)) = live.conn.receive_eof() {
                            outcome = Some(CloseInfo {
                                code: frame.code,
                                reason: frame.reason,
                                clean: live.conn.close_was_clean(),
                            });
                        }
                    }
                    Ok(_) => {
                        live.lowat.paused = false;
                        // Only keepalive needs the time (a clock read per
                        // message otherwise).
                        if keepalive.is_some() {
                            live.last_heard = Instant::now();
                        }
                        live.ping_sent = false;
                        if let Some(close) = dispatch(&shared, live) {
                            outcome = Some(close);
                        }
                        live.conn.release_buffers(KEEP_BUFFER);
                    }
                    Err(_) => {
                        outcome.get_or_insert_with(|| dropped("read error"));
                        break;
                    }
                }
            }
            Wake::Timer => {
                live.armed = None;
                let now = Instant::now();
                // Fired early: the deadline moved on since it was armed.
                if next_wake(config, keepalive, live).is_none_or(|at| at > now) {
                    continue;
                }
                // Part of a large frame may be waiting under the low-water
                // mark: read it first (the deadline is still due after).
                if live.lowat.pause(&live.stream) {
                    continue;
                }
                if live.close_deadline.is_some_and(|d| now >= d) {
                    outcome.get_or_insert_with(|| dropped("close handshake timed out"));
                    break;
                }
                if live.ping_sent {
                    outcome = Some(dropped("keepalive pong timed out"));
                    break;
                }
                let _ = live.conn.send_ping(b"");
                live.ping_sent = true;
            }
        }
    }
    live.mailbox.set_closed();
    live.mailbox.discard(live.id);
    let _ = tokio::time::timeout(Duration::from_secs(1), live.stream.shutdown()).await;
    // hixie-75 closes by closing TCP: a close we started ends clean there.
    let close = outcome.unwrap_or_else(|| {
        if live.conn.close_was_clean() {
            CloseInfo {
                code: crate::protocol::NO_STATUS,
                reason: String::new(),
                clean: true,
            }
        } else {
            dropped("connection ended")
        }
    });
    shared.handler.on_close(live.id, &close);
}

/// When the connection's task must next look at the clock: the keepalive
/// ping (the hixie drafts have none), its pong timeout, the close timeout.
fn next_wake(config: &ServerConfig, keepalive: Option<Duration>, live: &Live) -> Option<Instant> {
    let keepalive_at = keepalive.map(|interval| {
        if live.ping_sent {
            live.last_heard + interval + config.pong_timeout
        } else {
            live.last_heard + interval
        }
    });
    match (keepalive_at, live.close_deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Resolves once a stop was asked for (at once if it already was).
async fn stop_requested(stopping: &mut watch::Receiver<bool>) {
    loop {
        let stop = *stopping.borrow_and_update();
        if stop || stopping.changed().await.is_err() {
            return;
        }
    }
}

fn overflowed(limit: usize) -> CloseInfo {
    CloseInfo {
        code: POLICY_CLOSE,
        reason: format!("send buffer over {limit} bytes: peer not reading"),
        clean: false,
    }
}

fn dropped(reason: &str) -> CloseInfo {
    CloseInfo {
        code: crate::protocol::ABNORMAL,
        reason: reason.to_string(),
        clean: false,
    }
}

fn apply(conn: &mut Connection, command: Command) -> Result<(), SendError> {
    match command {
        Command::Send(m) => conn.send(&m),
        Command::Prepared(p) => conn.send_prepared(&p),
        Command::Ping(d) => conn.send_ping(&d),
        Command::Pong(d) => conn.send_pong(&d),
        Command::Close(code, reason) => conn.close(code, &reason),
    }
}

thread_local! {
    /// Per-worker read buffer: plain sockets are read into it and only the
    /// bytes received are copied to the connection, so an idle connection
    /// holds no read buffer of its own.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Read once into the engine's receive buffer.
fn poll_read_into(
    cx: &mut std::task::Context<'_>,
    stream: &mut Stream,
    conn: &mut Connection,
    config: &ServerConfig,
    lowat: &mut LowWater,
) -> std::task::Poll<std::io::Result<usize>> {
    // `config.read_chunk` is read only by the reads that use it: a small
    // frame read in place does not touch the configuration's cache line.
    let awaited = conn.awaited_bytes();
    lowat.follow(stream, awaited);
    if awaited > 0 {
        // The rest of a large frame: read it in place behind its start,
        // growing the buffer geometrically (never ahead of what arrived).
        let buf = conn.receive_buffer();
        buf.reserve(awaited.min(buf.len().max(config.read_chunk)));
        return poll_read_buf(cx, stream, buf);
    }
    if let Stream::Plain(tcp) = stream {
        // Room for a few more small frames: read in place (an emptied
        // buffer first takes back the room its consumed front held).
        let buf = conn.receive_buffer();
        if buf.is_empty() && buf.capacity() < SMALL_READ {
            // Whether it could is what the room below shows.
            let _ = buf.try_reclaim(SMALL_READ);
        }
        let room = buf.capacity() - buf.len();
        if buf.capacity() <= IN_PLACE_MAX && room >= SMALL_READ {
            let n = std::task::ready!(poll_read_buf(cx, tcp, buf))?;
            if n < room {
                return std::task::Poll::Ready(Ok(n));
            }
            // The room filled up: take what else is waiting (a burst of
            // frames) at once, through the scratch buffer. Whatever that
            // read meets (nothing yet, the end, an error) the next one
            // meets again.
            let more = match poll_read_scratch(cx, tcp, conn, config.read_chunk) {
                std::task::Poll::Ready(Ok(more)) => more,
                _ => 0,
            };
            return std::task::Poll::Ready(Ok(n + more));
        }
        return poll_read_scratch(cx, tcp, conn, config.read_chunk);
    }
    let buf = conn.receive_buffer();
    buf.reserve(config.read_chunk);
    poll_read_buf(cx, stream, buf)
}

/// Read once, up to `chunk` bytes, into the worker's scratch buffer and
/// copy what arrived to the engine, which then keeps [`RECEIVE_ROOM`].
/// `poll_read` rather than `readable` + `try_read`: after a short read
/// tokio knows the socket is drained and waits for the next edge instead
/// of spending a `recvfrom` to learn it.
fn poll_read_scratch(
    cx: &mut std::task::Context<'_>,
    tcp: &mut TcpStream,
    conn: &mut Connection,
    chunk: usize,
) -> std::task::Poll<std::io::Result<usize>> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.len() < chunk {
            scratch.resize(chunk, 0);
        }
        let mut buf = tokio::io::ReadBuf::new(&mut scratch[..chunk]);
        std::task::ready!(std::pin::Pin::new(&mut *tcp).poll_read(cx, &mut buf))?;
        let received = buf.filled();
        conn.receive_buffer()
            .reserve(received.len().max(RECEIVE_ROOM));
        conn.receive(received);
        std::task::Poll::Ready(Ok(received.len()))
    })
}

/// Read once into `buf`'s spare capacity.
fn poll_read_buf(
    cx: &mut std::task::Context<'_>,
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut bytes::BytesMut,
) -> std::task::Poll<std::io::Result<usize>> {
    let mut spare = tokio::io::ReadBuf::uninit(buf.spare_capacity_mut());
    std::task::ready!(std::pin::Pin::new(stream).poll_read(cx, &mut spare))?;
    let n = spare.filled().len();
    // SAFETY: `poll_read` initialised the first `n` spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    std::task::Poll::Ready(Ok(n))
}

/// The socket's receive low-water mark. While the rest of a large frame is
/// awaited, the kernel is asked to report the socket readable once that
/// much has arrived (it caps the mark at half its largest receive buffer)
/// instead of at every segment: fewer reads and far fewer sleeps and
/// wake-ups, which the sending peer pays for too. End of stream and errors
/// are reported regardless. A timer that fires meanwhile pauses it, so that
/// bytes already queued count as heard before keepalive or a deadline acts.
struct LowWater {
    /// The mark as set (1: the default).
    current: usize,
    /// Until the next read, stay at 1.
    paused: bool,
}

impl LowWater {
    const fn new() -> LowWater {
        LowWater {
            current: 1,
            paused: false,
        }
    }

    /// Follow the engine: the awaited rest of a held frame, else 1.
    fn follow(&mut self, stream: &Stream, awaited: usize) {
        let want = if self.paused { 1 } else { awaited.max(1) };
        self.set(stream, want);
    }

    /// Back to 1 until the next read; false if it was already.
    fn pause(&mut self, stream: &Stream) -> bool {
        self.paused = true;
        let was_raised = self.current > 1;
        self.set(stream, 1);
        was_raised
    }

    fn set(&mut self, stream: &Stream, want: usize) {
        let Stream::Plain(tcp) = stream else {
            return;
        };
        let want = want.min(i32::MAX as usize);
        if want == self.current {
            return;
        }
        self.current = want;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let value = want as libc::c_int;
            // SAFETY: a valid descriptor and an option value of the stated
            // size. Failure only loses the optimisation.
            unsafe {
                libc::setsockopt(
                    tcp.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVLOWAT,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        #[cfg(not(unix))]
        let _ = tcp;
    }
}

/// Write what the socket takes now, without waiting: true when all of it
/// went (the usual case: no future, no overflow watch). Errors are left for
/// [`write_out`] to meet and report.
fn write_now(stream: &Stream, conn: &mut Connection) -> bool {
    let Stream::Plain(tcp) = stream else {
        return false;
    };
    drain_output(conn, |pieces| match pieces {
        [one] => tcp.try_write(one),
        _ => tcp.try_write_vectored(pieces),
    })
    .is_ok()
}

async fn write_out(stream: &mut Stream, conn: &mut Connection) -> std::io::Result<()> {
    std::future::poll_fn(|cx| {
        let mut stream = std::pin::Pin::new(&mut *stream);
        let written = drain_output(conn, |pieces| {
            let poll = match pieces {
                [one] => stream.as_mut().poll_write(cx, one),
                _ => stream.as_mut().poll_write_vectored(cx, pieces),
            };
            match poll {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
            }
        });
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::task::Poll::Pending,
            r => std::task::Poll::Ready(r),
        }
    })
    .await?;
    stream.flush().await
}

/// Write the pending output through `write` until all of it went or
/// `write` fails (`WouldBlock`: not now). One piece, the usual case, goes
/// by plain `send`, cheaper in the kernel than `writev`.
fn drain_output(
    conn: &mut Connection,
    mut write: impl FnMut(&[std::io::IoSlice<'_>]) -> std::io::Result<usize>,
) -> std::io::Result<()> {
    while conn.has_output() {
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let count = conn.output_slices(&mut slices);
        let n = write(&slices[..count])?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        conn.advance_output(n);
    }
    conn.release_buffers(KEEP_BUFFER);
    Ok(())
}

/// Hand every complete event to the handler. Returns how the connection
/// ended if it did.
fn dispatch(shared: &Shared, live: &mut Live) -> Option<CloseInfo> {
    let handler = &shared.handler;
    let Live {
        conn,
        rate,
        id,
        mailbox,
        ..
    } = live;
    let (id, mailbox) = (*id, &**mailbox);
    loop {
        // The closure answers whether the message was within the rate
        // limit: a bool keeps the lending call's result in registers.
        let polled = conn.poll_lending(|conn, message| {
            let allowed = rate.allow();
            if allowed {
                call_handler(id, conn, mailbox, |c| handler.on_message(c, message));
            }
            allowed
        });
        let event = match polled {
            Ok(Some(Polled::Message(true))) => continue,
            Ok(Some(Polled::Message(false))) => {
                let _ = conn.close(Some(POLICY_CLOSE), "message rate limit exceeded");
                return Some(CloseInfo {
                    code: POLICY_CLOSE,
                    reason: "message rate limit exceeded".into(),
                    clean: false,
                });
            }
            Ok(Some(Polled::Event(event))) => event,
            Ok(None) => return None,
            Err(e) => {
                return Some(CloseInfo {
                    code: e.close_code(),
                    reason: e.to_string(),
                    clean: false,
                })
            }
        };
        match event {
            Event::Ping(d) => call_handler(id, conn, mailbox, |c| handler.on_ping(c, d)),
            Event::Pong(d) => call_handler(id, conn, mailbox, |c| handler.on_pong(c, d)),
            Event::Close(CloseFrame { code, reason }) => {
                return Some(CloseInfo {
                    code,
                    reason,
                    clean: true,
                })
            }
            // poll_lending hands messages to the callback.
            Event::Message(_) => unreachable!("poll_lending returned a message"),
        }
    }
}

/// Buffers above this size are given back once empty, so that one large
/// message does not pin its memory on an idle connection.
const KEEP_BUFFER: usize = 64 * 1024;

/// A connection that received something keeps [`RECEIVE_ROOM`] bytes of
/// receive buffer, so that small frames are read in place while at least
/// [`SMALL_READ`] of it is free, rather than through the worker's scratch
/// buffer and copied. Messages lent to the handler leave the buffer's
/// allocation in place; each frame header consumed shifts its start, so the
/// room runs out every few dozen frames and is then reclaimed at once.
const RECEIVE_ROOM: usize = 256;
const SMALL_READ: usize = 64;
/// Larger receive buffers belong to connections carrying large messages,
/// whose payloads are split off and sent on from where they arrived:
/// reading into what is left behind them mostly means moving it again
/// (64 KiB echoes had rounds at +25 % CPU that way). They read through the
/// scratch buffer.
const IN_PLACE_MAX: usize = 16 * 1024;
