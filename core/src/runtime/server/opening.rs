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
use super::task::{run_connection, Live};
use super::{spawn_task, ConnId, Entry, ServerConfig, Shared};
use crate::error::HandshakeError;
use crate::handshake::{reject_response, Hooks, Progress, Request, ServerHandshake};
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
    #[cfg(feature = "cluster")]
    let cluster = match &config.cluster {
        Some(c) => Some(crate::runtime::cluster::Cluster::new(c.clone())?),
        None => None,
    };
    #[cfg(feature = "cluster")]
    let first_id = cluster.as_ref().map_or(1, |c| c.first_id());
    #[cfg(not(feature = "cluster"))]
    let first_id = 1;
    let (stopping, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        config,
        handler,
        conns: RwLock::new(HashMap::new()),
        groups: Mutex::new(HashMap::new()),
        per_ip: Mutex::new(HashMap::new()),
        open: AtomicUsize::new(0),
        next_id: AtomicU64::new(first_id),
        stopping,
        finished: Notify::new(),
        running: AtomicUsize::new(0),
        accepting: AtomicBool::new(true),
        #[cfg(feature = "cluster")]
        cluster,
    });
    let acceptor = shared.config.tls.clone().map(TlsAcceptor::from);
    let accept_shared = shared.clone();
    spawn_task(&shared, accept_loop(accept_shared, listener, acceptor));
    let handle = ServerHandle { shared };
    #[cfg(feature = "cluster")]
    if let Some(cluster) = &handle.shared.cluster {
        crate::runtime::cluster::spawn(cluster, &handle);
    }
    Ok(handle)
}

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
) {
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

/// The opening handshake: read, answer, register.
pub(super) async fn open(
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

/// Unregisters a connection when its task ends, however it ends.
pub(super) struct Registered {
    pub(super) shared: Arc<Shared>,
    pub(super) id: ConnId,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared
            .conns
            .write()
            .expect("registry lock")
            .remove(&self.id);
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
