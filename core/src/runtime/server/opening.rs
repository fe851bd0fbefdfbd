//! From a socket to an open connection: the accept loop, TLS, the
//! opening handshake with its timeout, the application's decision, the
//! registration.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::admission::{admit, check_origin, refuse_over_limit, Admitted, RateLimit};
use super::handle::ServerHandle;
use super::handler::{Handler, OpenInfo};
use super::io::LowWater;
use super::mailbox::{Mailbox, STOP};
use super::proxy::{self, forwarded_client, is_trusted};
use super::task::{run_connection, Live};
use super::{metrics, spawn_task, ConnId, Entry, Limit, ServerConfig, Shared};
use crate::error::HandshakeError;
use crate::handshake::{reject_response, Completed, Hooks, Progress, Request, ServerHandshake};
use crate::http::parse_request;
use crate::protocol::Connection;
use crate::runtime::{RuntimeError, Stream};

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
    if config.proxy_protocol && config.trusted_proxies.is_empty() {
        return Err(RuntimeError::Config(
            "proxy_protocol needs trusted_proxies (whose PROXY headers to believe)".into(),
        ));
    }
    #[cfg(feature = "cluster")]
    let cluster = match &config.cluster {
        Some(c) => Some(crate::runtime::cluster::Cluster::new(c.clone())?),
        None => None,
    };
    #[cfg(feature = "cluster")]
    let first_id = cluster.as_ref().map_or(1, |c| c.first_id());
    #[cfg(not(feature = "cluster"))]
    let first_id = 1;
    let metrics_listener = match config.metrics_port {
        Some(port) => {
            let addr = SocketAddr::new(listener.local_addr()?.ip(), port);
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Some(TcpListener::from_std(l)?)
        }
        None => None,
    };
    let (stopping, _) = watch::channel(false);
    let (draining, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        config,
        handler,
        conns: RwLock::new(HashMap::new()),
        groups: Mutex::new(HashMap::new()),
        per_ip: Mutex::new(HashMap::new()),
        open: AtomicUsize::new(0),
        buffered: AtomicUsize::new(0),
        metrics: Default::default(),
        metrics_addr: match &metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        },
        next_id: AtomicU64::new(first_id),
        stopping,
        draining,
        finished: Notify::new(),
        running: AtomicUsize::new(0),
        accepting: AtomicBool::new(true),
        #[cfg(feature = "cluster")]
        cluster,
    });
    let acceptor = shared.config.tls.as_ref().map(|tls| Acceptors {
        serve: TlsAcceptor::from(with_alpn(tls, shared.config.http2)),
        refuse: TlsAcceptor::from(with_alpn(tls, false)),
    });
    let accept_shared = shared.clone();
    spawn_task(&shared, accept_loop(accept_shared, listener, acceptor));
    if let Some(l) = metrics_listener {
        spawn_task(&shared, metrics::serve(shared.clone(), l));
    }
    let handle = ServerHandle { shared };
    #[cfg(feature = "cluster")]
    if let Some(cluster) = &handle.shared.cluster {
        crate::runtime::cluster::spawn(cluster, &handle);
    }
    Ok(handle)
}

/// The TLS acceptors of a `wss://` listener.
#[derive(Clone)]
pub(super) struct Acceptors {
    /// For connections served: ALPN as configured (`h2` first when HTTP/2
    /// is on).
    serve: TlsAcceptor,
    /// For connections refused over a limit: `http/1.1` only, so that the
    /// refusal is an HTTP/1.1 answer the client can read.
    refuse: TlsAcceptor,
}

/// The TLS configuration with ALPN offering `h2` first when HTTP/2 is on,
/// and never when it is off (whatever the application's configuration
/// said), then what else it offered (`http/1.1` by default).
fn with_alpn(
    tls: &Arc<tokio_rustls::rustls::ServerConfig>,
    http2: bool,
) -> Arc<tokio_rustls::rustls::ServerConfig> {
    let mut protocols: Vec<Vec<u8>> = tls
        .alpn_protocols
        .iter()
        .filter(|p| p.as_slice() != b"h2")
        .cloned()
        .collect();
    if http2 {
        protocols.insert(0, b"h2".to_vec());
    }
    if protocols == tls.alpn_protocols {
        return tls.clone();
    }
    let mut config = (**tls).clone();
    config.alpn_protocols = protocols;
    Arc::new(config)
}

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: Option<Acceptors>,
) {
    let mut stopping = shared.stopping.subscribe();
    let mut draining = shared.draining.subscribe();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop_requested(&mut stopping) => return,
            _ = stop_requested(&mut draining) => break,
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
        take(&shared, tcp, peer, acceptor.clone());
    }
    // Draining: the socket closes now, so that the port's other listeners
    // (another process's, `reuse_port`) take every new client. What the
    // kernel already queued for this socket is taken first: closing resets
    // it (unless `net.ipv4.tcp_migrate_req` moves it to another listener).
    if let Ok(listener) = listener.into_std() {
        while let Ok((tcp, peer)) = listener.accept() {
            // accept(2) does not pass O_NONBLOCK on; tokio needs it.
            let ready = tcp.set_nonblocking(true);
            match ready.and_then(|()| tokio::net::TcpStream::from_std(tcp)) {
                Ok(tcp) => take(&shared, tcp, peer, acceptor.clone()),
                Err(_) => break,
            }
        }
    }
    drain(&shared, &mut stopping).await;
}

/// Starts serving one accepted socket: admission, the PROXY header, TLS,
/// the opening handshake, then the connection, in a task of its own.
fn take(
    shared: &Arc<Shared>,
    mut tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<Acceptors>,
) {
    // Only latency is at stake if the option cannot be set.
    let _ = tcp.set_nodelay(true);
    let task_shared = shared.clone();
    let opening = Box::pin(async move {
        let config = &task_shared.config;
        // A trusted proxy's own address is not a client's: the slot is
        // counted against its client once known.
        let trusted = is_trusted(&config.trusted_proxies, peer.ip());
        let ip = (!trusted).then(|| peer.ip());
        if !admit(&task_shared, ip) {
            refuse_over_limit(tcp, acceptor.map(|a| a.refuse), &task_shared, peer).await;
            return None;
        }
        let mut guard = Admitted::new(task_shared.clone(), ip);
        let timeout = config.handshake_timeout;
        let mut client = peer;
        if config.proxy_protocol {
            let header = match trusted {
                false => Err("PROXY protocol from an untrusted address".into()),
                true => proxy::read_header(&mut tcp, timeout).await,
            };
            match header {
                Ok(found) => client = found.unwrap_or(peer),
                Err(reason) => {
                    // Closed without an answer: counted as a bad request.
                    task_shared.metrics.refused(400, peer, &reason);
                    return None;
                }
            }
            if !is_trusted(&config.trusted_proxies, client.ip()) && !guard.claim_ip(client.ip()) {
                refuse_over_limit(tcp, acceptor.map(|a| a.refuse), &task_shared, client).await;
                return None;
            }
        }
        let stream = match acceptor {
            None => Stream::Plain(tcp),
            Some(acceptor) => {
                match tokio::time::timeout(timeout, Box::pin(acceptor.serve.accept(tcp))).await {
                    Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                        // A task of its own, sized for HTTP/2: this one's
                        // state, sized for every way of opening (15 KiB),
                        // is freed rather than held for the connection's life.
                        let connection =
                            super::http2::serve(task_shared.clone(), Box::new(tls), client, guard);
                        spawn_task(&task_shared, connection);
                        return None;
                    }
                    Ok(Ok(tls)) => Stream::ServerTls(Box::new(tls)),
                    Ok(Err(_)) => return None,
                    Err(_) => {
                        task_shared.metrics.hit(Limit::HandshakeTimeout);
                        return None;
                    }
                }
            }
        };
        let handshake = ServerHandshake::new(config.protocol.clone());
        open(&task_shared, stream, client, handshake, guard)
            .await
            .ok()
    });
    spawn_task(shared, serve(shared.clone(), opening));
}

/// The open connections carry on until they are all gone or the drain
/// timeout passes (or a stop comes first); then the server stops.
async fn drain(shared: &Arc<Shared>, stopping: &mut watch::Receiver<bool>) {
    let deadline = Instant::now() + shared.config.drain_timeout;
    let gone = async {
        while shared.open.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = stop_requested(stopping) => return,
        () = gone => {}
        () = tokio::time::sleep_until(deadline) => {}
    }
    ServerHandle {
        shared: shared.clone(),
    }
    .stop();
}

/// The configured origin check, then the application's decision.
pub(super) struct ServerHooks<'a> {
    pub(super) shared: &'a Shared,
    /// The id the connection has if it opens, given to the application.
    pub(super) id: ConnId,
    /// [`Handler::accept`] was called.
    pub(super) asked: std::cell::Cell<bool>,
    pub(super) subprotocol: std::cell::RefCell<Option<String>>,
}

impl Hooks for ServerHooks<'_> {
    fn check(&self, req: &Request) -> Result<(), HandshakeError> {
        check_origin(&self.shared.config, req)?;
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
pub(super) struct Accepted {
    pub(super) shared: Arc<Shared>,
    pub(super) id: ConnId,
    pub(super) armed: bool,
}

impl Accepted {
    /// The connection opens: `on_open` takes over.
    pub(super) fn opened(mut self) {
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
pub(super) type Opened = (Box<Live>, Arc<OpenInfo>, Accepted);

/// What opens a connection: admission, TLS, the opening handshake.
pub(super) type Opening = Pin<Box<dyn Future<Output = Option<Opened>> + Send>>;

/// A connection's task: the opening (boxed, so that its state — read
/// buffer, parser, TLS set-up — is freed when it ends), then the connection
/// in its place, the task left small.
pub(super) async fn serve(shared: Arc<Shared>, opening: Opening) {
    if let Some((live, info, accepted)) = opening.await {
        run_connection(shared, live, info, accepted).await;
    }
}

/// The opening handshake over HTTP/1.1: read, answer, register.
pub(super) async fn open(
    shared: &Arc<Shared>,
    mut stream: Stream,
    peer: SocketAddr,
    mut handshake: ServerHandshake,
    admitted: Admitted,
) -> Result<Opened, RuntimeError> {
    let deadline = Instant::now() + shared.config.handshake_timeout;
    read_request(
        shared,
        &mut stream,
        peer,
        &mut handshake,
        &admitted,
        deadline,
    )
    .await?;
    establish(
        shared,
        Answer::Http1(stream),
        peer,
        handshake,
        admitted,
        deadline,
    )
    .await
}

/// Reads the request until the handshake is ready; a plain HTTP request,
/// or a bad one, is answered here.
async fn read_request(
    shared: &Arc<Shared>,
    stream: &mut Stream,
    peer: SocketAddr,
    handshake: &mut ServerHandshake,
    admitted: &Admitted,
    deadline: Instant,
) -> Result<(), RuntimeError> {
    let config = &shared.config;
    let mut buf = vec![0u8; 4096];
    // What was read, to answer a plain HTTP request (bounded by the
    // handshake's own head limit, which fails first).
    let mut received = Vec::new();
    let mut progress = handshake.feed(&[]);
    loop {
        match progress {
            Ok(Progress::Ready) => return Ok(()),
            Ok(Progress::NeedMore) => {}
            Err(error) => {
                let head = parse_request(&received, &config.protocol).ok().flatten();
                let client = match (&head, admitted.ip) {
                    (Some((head, _)), None) => {
                        forwarded_client(&config.trusted_proxies, peer, &head.headers)
                    }
                    _ => peer,
                };
                let plain = head.filter(|(head, _)| head.headers.get("upgrade").is_none());
                let answer = plain
                    .and_then(|(head, _)| http_answer(shared, &head))
                    .unwrap_or_else(|| {
                        shared.metrics.refused(error.status(), client, &error);
                        reject_response(&error, &config.protocol)
                    });
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer)).await;
                return Err(error.into());
            }
        }
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) => return Err(RuntimeError::Closed),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                shared.metrics.hit(Limit::HandshakeTimeout);
                return Err(RuntimeError::Timeout("opening handshake"));
            }
        };
        received.extend_from_slice(&buf[..n]);
        progress = handshake.feed(&buf[..n]);
    }
}

/// The answer to a plain HTTP request (no upgrade), as HTTP/1.1 bytes:
/// the metrics when asked for, else what the handler serves.
pub(super) fn http_answer(
    shared: &Arc<Shared>,
    head: &crate::http::RequestHead,
) -> Option<Vec<u8>> {
    if shared.config.metrics && metrics::asked_for(head) {
        let handle = ServerHandle {
            shared: shared.clone(),
        };
        return Some(handle.stats().prometheus_response());
    }
    shared.handler.http(head)
}

/// Where a handshake's answer goes.
pub(super) enum Answer {
    /// HTTP/1.1: the stream the request came on.
    Http1(Stream),
    /// An extended CONNECT on an HTTP/2 stream (RFC 8441): its response
    /// half and its body, the WebSocket's bytes once answered.
    H2(h2::server::SendResponse<Bytes>, h2::RecvStream),
}

impl Answer {
    fn is_tls(&self) -> bool {
        match self {
            Answer::Http1(stream) => stream.is_tls(),
            Answer::H2(..) => true,
        }
    }

    /// Refuses the handshake with `error`'s status (HTTP/1.1 then closes).
    async fn refuse(&mut self, error: &HandshakeError, config: &ServerConfig) {
        match self {
            Answer::Http1(stream) => {
                let answer = reject_response(error, &config.protocol);
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer)).await;
            }
            Answer::H2(respond, _) => super::http2::refuse(respond, error, &config.protocol),
        }
    }

    /// Accepts: the 101 (or the stream's 200), then the stream the
    /// connection runs on.
    async fn accept(
        self,
        completed: &Completed,
        deadline: Instant,
    ) -> Result<Stream, RuntimeError> {
        match self {
            Answer::Http1(mut stream) => {
                tokio::time::timeout_at(deadline, stream.write_all(&completed.response))
                    .await
                    .map_err(|_| RuntimeError::Timeout("writing the handshake answer"))??;
                Ok(stream)
            }
            Answer::H2(respond, body) => super::http2::accept(respond, body, &completed.fields),
        }
    }
}

/// A ready handshake: the application's decision, the answer, the
/// registration.
pub(super) async fn establish(
    shared: &Arc<Shared>,
    mut answer: Answer,
    peer: SocketAddr,
    handshake: ServerHandshake,
    admitted: Admitted,
    deadline: Instant,
) -> Result<Opened, RuntimeError> {
    let config = &shared.config;
    let request = handshake.request().expect("ready").clone();
    // Through a trusted proxy: the client is the one its headers name.
    let mut admitted = admitted;
    let mut peer = peer;
    if admitted.ip.is_none() {
        peer = forwarded_client(&config.trusted_proxies, peer, request.headers());
        if !admitted.claim_ip(peer.ip()) {
            let error =
                HandshakeError::Refused(429, "too many connections from this address".into());
            shared.metrics.hit(Limit::PerIp);
            shared.metrics.refused(429, peer, &error);
            answer.refuse(&error, config).await;
            return Err(error.into());
        }
    }
    // The id exists before the application is asked; ids are never reused.
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let hooks = ServerHooks {
        shared,
        id,
        asked: Default::default(),
        subprotocol: Default::default(),
    };
    let secure = answer.is_tls();
    let completed = handshake.complete(&hooks, secure);
    let accepted = Accepted {
        shared: shared.clone(),
        id,
        armed: hooks.asked.get(),
    };
    let completed = match completed {
        Ok(c) => c,
        Err(rejected) => {
            shared
                .metrics
                .refused(rejected.error.status(), peer, &rejected.error);
            answer.refuse(&rejected.error, config).await;
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
            extension: completed.session.extensions.name(),
            http2: matches!(answer, Answer::H2(..)),
        },
    );
    let registered = Registered {
        shared: shared.clone(),
        id,
        close_code: None,
    };
    if *shared.stopping.borrow() {
        mailbox.signal(STOP);
    }
    let stream = answer.accept(&completed, deadline).await?;
    shared.metrics.accepted();
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
        secure,
        http2: stream.is_h2(),
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
        registered,
        _admitted: admitted,
    });
    Ok((live, info, accepted))
}

/// Unregisters a connection when its task ends, however it ends.
pub(super) struct Registered {
    pub(super) shared: Arc<Shared>,
    pub(super) id: ConnId,
    /// The close code the handler was told, counted with the entry's
    /// removal so that a snapshot's closes and open connections agree.
    pub(super) close_code: Option<u16>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut conns = self.shared.conns.write().expect("registry lock");
        if let Some(entry) = conns.remove(&self.id) {
            // With the entry's removal, under the same lock (see Metrics).
            self.shared.metrics.ended(entry.mailbox.tally.load());
            if let Some(code) = self.close_code {
                self.shared.metrics.closed(code);
            }
        }
        drop(conns);
        let mut groups = self.shared.groups.lock().expect("groups lock");
        groups.retain(|_group, members| {
            members.remove(&self.id);
            let kept = !members.is_empty();
            #[cfg(feature = "cluster")]
            if let (false, Some(cluster)) = (kept, &self.shared.cluster) {
                cluster.group_changed(_group);
            }
            kept
        });
    }
}

/// Resolves once a stop was asked for (at once if it already was).
pub(crate) async fn stop_requested(stopping: &mut watch::Receiver<bool>) {
    loop {
        let stop = *stopping.borrow_and_update();
        if stop || stopping.changed().await.is_err() {
            return;
        }
    }
}
