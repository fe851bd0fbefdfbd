//! HTTP/2 connections (RFC 8441): a TLS client that chose `h2` by ALPN
//! opens its WebSockets as extended CONNECT streams. Each becomes a
//! connection of its own task, counted by the limits and seen by the
//! application like any HTTP/1.1 one ([`OpenInfo::http2`] tells them apart);
//! other requests are answered as on HTTP/1.1.
//!
//! The `h2` crate's protections are on and bounded by the configuration:
//! concurrent streams per connection, the header list size (the head
//! limit), streams reset before they were accepted (rapid reset) or by our
//! own errors, what is buffered for sending per stream, and the receive
//! windows (what a peer may send before the engine reads it).
//!
//! [`OpenInfo::http2`]: super::OpenInfo::http2

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::admission::{admit, over_limit, Admitted};
use super::opening::{establish, http_answer, serve as serve_opened, stop_requested, Answer};
use super::proxy::is_trusted;
use super::{spawn_task, Shared};
use crate::config::Config;
use crate::error::HandshakeError;
use crate::handshake::{refusal, ServerHandshake};
use crate::http::RequestHead;
use crate::runtime::h2stream::{headers_of, H2Stream, CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use crate::runtime::{RuntimeError, Stream};

/// What `h2` buffers for sending per stream; the rest waits in the
/// engine's output, counted by the send-buffer limit.
const SEND_BUFFER: usize = 256 * 1024;

/// Serves an HTTP/2 connection until the client or the server ends it.
/// The TCP connection's admission slot is released: limits count the
/// WebSocket sessions, each stream admitted as it opens.
pub(super) async fn serve(
    shared: Arc<Shared>,
    // Boxed: an async fn keeps its arguments for its whole life, so a TLS
    // stream passed by value would be held twice (here and in h2's codec).
    tls: Box<TlsStream<TcpStream>>,
    client: SocketAddr,
    slot: Admitted,
) {
    drop(slot);
    let config = &shared.config;
    let mut builder = h2::server::Builder::new();
    builder
        .enable_connect_protocol()
        .max_concurrent_streams(config.http2_max_streams)
        .max_header_list_size(u32::try_from(config.protocol.max_head_bytes).unwrap_or(u32::MAX))
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buffer_size(SEND_BUFFER)
        .max_pending_accept_reset_streams(config.http2_max_pending_resets);
    let timeout = config.handshake_timeout;
    let mut conn = match tokio::time::timeout(timeout, builder.handshake::<_, Bytes>(tls)).await {
        Ok(Ok(conn)) => conn,
        _ => return,
    };
    let trusted = is_trusted(&config.trusted_proxies, client.ip());
    let mut stopping = shared.stopping.subscribe();
    let mut draining = shared.draining.subscribe();
    let mut stop = pin!(stop_requested(&mut stopping));
    let mut drain = pin!(stop_requested(&mut draining));
    // GOAWAY went out: no new stream; the open ones carry on (a drain).
    let mut goaway = false;
    // Stopping: the streams were told (1001) and get the close timeout to
    // finish; then the connection is dropped, whatever the client does
    // (one that stops reading must not hold the server's stop).
    let mut deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
    // A connection without a stream for a handshake timeout is closed (with
    // GOAWAY): it holds no slot of its own. Streams end without waking the
    // accept below, so a tick looks.
    let mut tick = tokio::time::interval((timeout / 2).max(Duration::from_millis(50)));
    let mut idle_since = tokio::time::Instant::now();
    let controls = Arc::new(Controls::default());
    let controls_waker = Waker::from(controls.clone());
    loop {
        let event = std::future::poll_fn(|cx| {
            if controls.fired(cx) {
                let mut own = Context::from_waker(&controls_waker);
                let heard = if deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(&mut own).is_ready())
                {
                    Some(Event::Deadline)
                } else if deadline.is_none() && stop.as_mut().poll(&mut own).is_ready() {
                    Some(Event::Stop)
                } else if !goaway && drain.as_mut().poll(&mut own).is_ready() {
                    Some(Event::Drain)
                } else if !goaway {
                    match tick.poll_tick(&mut own) {
                        Poll::Ready(now) => Some(Event::Tick(now)),
                        Poll::Pending => None,
                    }
                } else {
                    None
                };
                if let Some(event) = heard {
                    // The others are looked at again on the next turn.
                    controls.rearm();
                    return Poll::Ready(event);
                }
            }
            conn.poll_accept(cx).map(Event::Stream)
        })
        .await;
        match event {
            Event::Stream(Some(Ok((request, respond)))) => {
                idle_since = tokio::time::Instant::now();
                route(&shared, request, respond, client, trusted);
            }
            // Closed, or a connection error (already sent as GOAWAY).
            Event::Stream(Some(Err(_)) | None) => break,
            Event::Tick(now) => {
                if conn.has_streams() {
                    idle_since = now;
                } else if now.duration_since(idle_since) >= timeout {
                    // No stream to let finish: GOAWAY and close at once
                    // (a graceful shutdown's PING round trip is for them).
                    goaway = true;
                    conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                    deadline = Some(Box::pin(tokio::time::sleep(config.close_timeout)));
                }
            }
            Event::Drain => {
                goaway = true;
                conn.graceful_shutdown();
            }
            Event::Stop => {
                if !goaway {
                    goaway = true;
                    conn.graceful_shutdown();
                }
                // The streams' own close timeout, and a second to flush.
                let grace = config.close_timeout + Duration::from_secs(1);
                deadline = Some(Box::pin(tokio::time::sleep(grace)));
            }
            Event::Deadline => return,
        }
    }
    // Flushes the GOAWAY; the streams' own tasks are done or failing.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        std::future::poll_fn(|cx| conn.poll_closed(cx)),
    )
    .await;
}

/// What h2's accept gives: a request, the end, or a connection error.
type Accepted = Option<Result<(http::Request<RecvStream>, SendResponse<Bytes>), h2::Error>>;

/// What woke the connection's task. Lives only between a poll and the
/// match on it, so the request is not boxed.
#[allow(clippy::large_enum_variant)]
enum Event {
    Stream(Accepted),
    Tick(tokio::time::Instant),
    Drain,
    Stop,
    Deadline,
}

/// The waker of what the connection's task waits for besides h2: stop,
/// drain, the idle tick, the deadline. h2 wakes the task for every frame;
/// these are polled only after one of them woke it, so a frame costs no
/// poll of a watch channel (a lock) or a timer.
struct Controls {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Default for Controls {
    fn default() -> Self {
        // Fired: the first turn polls them, which registers them.
        Controls {
            fired: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }
    }
}

impl Controls {
    /// Whether one of them woke the task since the last look; registers
    /// the task's waker first, so that a wake in between is not lost.
    fn fired(&self, cx: &Context<'_>) -> bool {
        self.task.register(cx.waker());
        self.fired.swap(false, Ordering::AcqRel)
    }

    fn rearm(&self) {
        self.fired.store(true, Ordering::Release);
    }
}

impl Wake for Controls {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.rearm();
        self.task.wake();
    }
}

/// One request: an extended CONNECT for `websocket` opens a WebSocket in a
/// task of its own; anything else is answered at once.
fn route(
    shared: &Arc<Shared>,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    client: SocketAddr,
    trusted: bool,
) {
    let protocol = request
        .extensions()
        .get::<h2::ext::Protocol>()
        .map(|p| p.as_str().to_owned());
    let (parts, body) = request.into_parts();
    let headers = headers_of(&parts.headers);
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let config = &shared.config;
    let Some(protocol) = protocol.filter(|_| parts.method == http::Method::CONNECT) else {
        let head = RequestHead {
            method: parts.method.as_str().to_owned(),
            target,
            minor_version: 1,
            headers,
        };
        return answer_plain(shared, &head, respond, client);
    };
    let ip = (!trusted).then(|| client.ip());
    if !admit(shared, ip) {
        let error = over_limit(shared, client);
        return refuse(&mut respond, &error, &config.protocol);
    }
    let slot = Admitted::new(shared.clone(), ip);
    let authority = parts.uri.authority().map_or("", |a| a.as_str());
    let handshake = ServerHandshake::extended_connect(
        config.protocol.clone(),
        &protocol,
        &target,
        authority,
        headers,
    );
    let deadline = tokio::time::Instant::now() + config.handshake_timeout;
    let task_shared = shared.clone();
    let opening = Box::pin(async move {
        let answer = Answer::H2(respond, body);
        establish(&task_shared, answer, client, handshake, slot, deadline)
            .await
            .ok()
    });
    spawn_task(shared, serve_opened(shared.clone(), opening));
}

/// A request that opens no WebSocket, answered as on HTTP/1.1: the
/// metrics, the handler's page, or the refusal the handshake would give.
fn answer_plain(
    shared: &Arc<Shared>,
    head: &RequestHead,
    mut respond: SendResponse<Bytes>,
    client: SocketAddr,
) {
    let config = &shared.config;
    if let Some(bytes) = http_answer(shared, head) {
        return send_http1(&mut respond, &bytes, &config.protocol);
    }
    let error = ServerHandshake::from_parsed(
        config.protocol.clone(),
        &head.method,
        &head.target,
        head.headers.clone(),
        b"",
    )
    .feed(&[])
    .err()
    .unwrap_or(HandshakeError::NotWebSocket(
        "\":protocol\" must be \"websocket\"",
    ));
    shared.metrics.refused(error.status(), client, &error);
    refuse(&mut respond, &error, &config.protocol);
}

/// The stream's `200` with the handshake's headers: the WebSocket starts.
pub(super) fn accept(
    mut respond: SendResponse<Bytes>,
    body: RecvStream,
    fields: &[(String, String)],
) -> Result<Stream, RuntimeError> {
    let mut response = http::Response::new(());
    for (name, value) in fields {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) else {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            return Err(RuntimeError::Config(format!(
                "header {name:?} cannot be sent"
            )));
        };
        response.headers_mut().append(name, value);
    }
    let send = respond
        .send_response(response, false)
        .map_err(|e| RuntimeError::Io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, e)))?;
    Ok(Stream::H2(Box::new(H2Stream::new(send, body))))
}

/// A refused handshake: its status, headers and reason as on HTTP/1.1.
pub(super) fn refuse(respond: &mut SendResponse<Bytes>, error: &HandshakeError, config: &Config) {
    let refusal = refusal(error, config);
    let mut response = http::Response::builder()
        .status(refusal.status)
        .header("content-type", "text/plain; charset=utf-8");
    for (name, value) in &refusal.headers {
        response = response.header(*name, value.as_str());
    }
    send(respond, response, Bytes::from(refusal.body));
}

/// An HTTP/1.1 answer (the handler's page, the metrics) on a stream: its
/// status, its headers but those HTTP/2 forbids, its body.
fn send_http1(respond: &mut SendResponse<Bytes>, bytes: &[u8], config: &Config) {
    let Ok(Some((head, n))) = crate::http::parse_response(bytes, config) else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    };
    let mut response = http::Response::builder().status(head.status);
    for (name, value) in head.headers.iter() {
        let hop = [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "proxy-connection",
        ];
        if !hop.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            response = response.header(name, value);
        }
    }
    send(respond, response, Bytes::copy_from_slice(&bytes[n..]));
}

fn send(respond: &mut SendResponse<Bytes>, response: http::response::Builder, body: Bytes) {
    let Ok(response) = response.body(()) else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    };
    // A failure means the client reset the stream: nobody to tell.
    if let Ok(mut stream) = respond.send_response(response, body.is_empty()) {
        if !body.is_empty() {
            let _ = stream.send_data(body, true);
        }
    }
}
