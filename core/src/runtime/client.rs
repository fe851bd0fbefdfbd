//! The tokio client: [`connect`] to a `ws://` or `wss://` URL in any draft,
//! then [`WebSocket::send`] / [`WebSocket::recv`] / [`WebSocket::close`].
//!
//! The client only moves bytes: the opening handshake, framing, masking,
//! compression, pongs and the close handshake are the engine's
//! ([`ClientHandshake`], [`Connection`]). Every call writes out whatever the
//! engine queued before it returns, so an automatic pong or the echo of a
//! close never waits for the next send.
//!
//! ```no_run
//! # async fn demo() -> Result<(), polysocket::runtime::RuntimeError> {
//! use polysocket::runtime::client::{connect, ConnectOptions};
//! use polysocket::{Event, Message};
//!
//! let mut ws = connect("wss://example.com/chat?room=1", ConnectOptions::default()).await?;
//! ws.send_text("hello").await?;
//! if let Some(Event::Message(Message::Text(t))) = ws.recv().await? {
//!     println!("{}", String::from_utf8_lossy(&t));
//! }
//! ws.close(Some(1000), "bye").await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::{poll_fn, Future as _};
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig};
use tokio_rustls::TlsConnector;

use crate::config::Config;
use crate::draft::Draft;
use crate::error::{ProtocolError, SendError};
use crate::extensions::Agreed;
use crate::handshake::{ClientHandshake, ClientOptions, Completed};
use crate::http::Headers;
use crate::protocol::{CloseFrame, Connection, Event, Message, MessageKind, State, NO_STATUS};

use super::{tls, RuntimeError, Stream};

/// Room reserved in the receive buffer before each read: one TLS record.
const READ_CHUNK: usize = 16 * 1024;
/// An empty receive buffer larger than this is released before waiting
/// for more data, so an idle connection does not pin its largest message.
const IDLE_BUFFER_LIMIT: usize = 64 * 1024;

/// How to open a connection. `ConnectOptions::default()` speaks RFC 6455
/// with the engine's default [`Config`] (all compression extensions
/// offered), trusts the Mozilla roots for `wss://`, and bounds every
/// phase by a timeout.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The draft to speak; the server's answer must be that draft's (there
    /// is no fallback). Default: RFC 6455.
    pub draft: Draft,
    /// Limits and extensions offered, shared with the connection.
    pub config: Arc<Config>,
    /// The Origin to send. The hixie drafts, hybi-01..03 and hybi-04
    /// require one and send `http[s]://<host>` when it is unset.
    pub origin: Option<String>,
    /// Subprotocols to offer, preferred first.
    pub subprotocols: Vec<String>,
    /// Extra request headers (cookies, `Authorization`, ...).
    pub extra_headers: Vec<(String, String)>,
    /// TLS settings for `wss://`; `None` trusts the Mozilla root set
    /// ([`tls::client_config`]). Its ALPN list should be empty or
    /// `http/1.1`: the upgrade is an HTTP/1.1 request. Ignored for `ws://`.
    pub tls: Option<Arc<ClientConfig>>,
    /// Bounds DNS resolution, the TCP connection (all resolved addresses,
    /// tried in turn) and, for `wss://`, the TLS handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// Bounds the WebSocket opening handshake: the request written and the
    /// answer read and validated. Default 10 s.
    pub handshake_timeout: Duration,
    /// Bounds [`WebSocket::close`] (and the teardown after the server's
    /// close): our close frame written, the server's read, its TCP close
    /// awaited. Default 5 s.
    pub close_timeout: Duration,
    /// Disable Nagle's algorithm: small frames (pings, chat messages) go out
    /// at once instead of waiting for an ACK. Default on.
    pub nodelay: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            draft: Draft::Rfc6455,
            config: Arc::new(Config::default()),
            origin: None,
            subprotocols: Vec::new(),
            extra_headers: Vec::new(),
            tls: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            nodelay: true,
        }
    }
}

/// Open a WebSocket connection to `url` (`ws://` or `wss://`, host name or
/// IPv4/IPv6 literal such as `ws://[::1]:9001/`, optional port, path and
/// query), and run the opening handshake of `options.draft`.
///
/// The Host header carries `:port` only when it is not the scheme's
/// default (80, 443); TLS verifies the certificate against the URL's host
/// (SNI is sent for names, not for IP literals).
///
/// Errors: [`RuntimeError::Url`] for a URL that cannot be used,
/// [`RuntimeError::Io`] when no address accepts the connection,
/// [`RuntimeError::Tls`] when the certificate is refused,
/// [`RuntimeError::Timeout`] when a phase exceeds its limit, and
/// [`RuntimeError::Handshake`] when the server's answer is refused (e.g.
/// `UnexpectedStatus(403)`).
pub async fn connect(url: &str, options: ConnectOptions) -> Result<WebSocket, RuntimeError> {
    let target = Target::parse(url)?;
    let ConnectOptions {
        draft,
        config,
        origin,
        subprotocols,
        extra_headers,
        tls,
        connect_timeout,
        handshake_timeout,
        close_timeout,
        nodelay,
    } = options;

    // Build the request first: options that cannot be sent fail before
    // any connection is made.
    let mut request =
        ClientOptions::new(draft, target.host_header.clone(), target.resource.clone());
    request.secure = target.secure;
    request.origin = origin;
    request.subprotocols = subprotocols;
    request.extra_headers = extra_headers;
    let handshake = ClientHandshake::new(Arc::clone(&config), request)?;
    let tls = match (target.secure, tls) {
        (false, _) => None,
        (true, tls) => {
            // The name the certificate must carry; an IP literal sends no SNI.
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| RuntimeError::Url(url.to_owned(), "host is not a valid TLS name"))?;
            let tls = match tls {
                Some(tls) => tls,
                None => tls::client_config(&[])?,
            };
            Some((tls, name))
        }
    };

    let deadline = deadline_after(connect_timeout);
    let tcp = timeout_at(deadline, connect_tcp(&target.host, target.port))
        .await
        .map_err(|_| RuntimeError::Timeout("connect"))??;
    tcp.set_nodelay(nodelay)?;
    let local_addr = tcp.local_addr()?;
    let peer_addr = tcp.peer_addr()?;
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some((tls, name)) => {
            let tls_stream = timeout_at(deadline, TlsConnector::from(tls).connect(name, tcp))
                .await
                .map_err(|_| RuntimeError::Timeout("TLS handshake"))?
                .map_err(tls_error)?;
            Stream::ClientTls(Box::new(tls_stream))
        }
    };

    let deadline = deadline_after(handshake_timeout);
    let (stream, completed, response_headers) = timeout_at(deadline, open(stream, handshake))
        .await
        .map_err(|_| RuntimeError::Timeout("opening handshake"))??;
    Ok(WebSocket {
        stream: Some(stream),
        read_ahead_limit: config.max_message_size.saturating_add(READ_CHUNK),
        conn: Connection::from_completed(config, completed),
        response_headers,
        local_addr,
        peer_addr,
        close_timeout,
        ready: None,
        deferred: None,
        peer_close: None,
        eof: false,
        read_error: None,
        finished: false,
    })
}

/// Resolve `host` and connect to the first address that accepts; the
/// error is the last address's.
async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, RuntimeError> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(RuntimeError::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
    })))
}

/// A TLS handshake failure: rustls' verdict (certificate, protocol) as
/// [`RuntimeError::Tls`], anything else (a reset) as I/O.
fn tls_error(e: io::Error) -> RuntimeError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => RuntimeError::Tls(tls.to_string()),
        None => RuntimeError::Io(e),
    }
}

/// Write the request and feed the answer to the handshake until it
/// completes. Nothing is sent after the request before the answer is
/// validated (hybi-04 derives the mask key from the server's nonce).
async fn open(
    mut stream: Stream,
    mut handshake: ClientHandshake,
) -> Result<(Stream, Completed, Headers), RuntimeError> {
    stream.write_all(handshake.request_bytes()).await?;
    stream.flush().await?;
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = read_or_eof(stream.read(&mut buf).await)?;
        if n == 0 {
            return Err(RuntimeError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the opening handshake",
            )));
        }
        if let Some(completed) = handshake.feed(&buf[..n])? {
            let headers = handshake.response_headers().cloned().unwrap_or_default();
            return Ok((stream, completed, headers));
        }
    }
}

/// A TLS peer that closes TCP without `close_notify` reads as an
/// `UnexpectedEof` error; the WebSocket close handshake already tells a
/// clean end from a truncated one, so that is an end of stream here.
fn read_or_eof(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

/// `now + d`, or far in the future when `d` is huge (`Duration::MAX`
/// disables a limit).
fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Maps the engine's refusals to send: a closed connection is
/// [`RuntimeError::Closed`]; the rest are misuses of the API (binary on
/// hixie, an invalid close code, an oversized ping).
fn send_error(e: SendError) -> RuntimeError {
    match e {
        SendError::Closed => RuntimeError::Closed,
        other => RuntimeError::Send(other),
    }
}

/// An open client connection.
///
/// [`recv`](Self::recv) is cancel-safe (an event polled while its reply
/// was being written is kept for the next call), so it can sit in a
/// `tokio::select!` next to the sources of outgoing messages. A send that
/// is cancelled leaves its frame queued whole; the next call writes it.
///
/// Dropping a `WebSocket` closes the socket at once; call
/// [`close`](Self::close) (or `recv` until `Ok(None)`) for an orderly end.
pub struct WebSocket {
    /// `None` once the connection was torn down: the socket is released
    /// at once, not when the `WebSocket` is dropped.
    stream: Option<Stream>,
    conn: Connection,
    response_headers: Headers,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
    close_timeout: Duration,
    /// An event (or failure) polled whose reply had not been written yet
    /// when `recv` was cancelled; handed out by the next `recv`.
    ready: Option<Result<Event, ProtocolError>>,
    /// A write error met while an event was being handed out; reported by
    /// the next call, which then ends the connection.
    deferred: Option<io::Error>,
    /// The server's close frame (or the 1006 of a dropped connection).
    peer_close: Option<CloseFrame>,
    /// The server closed its end of the TCP connection (possibly seen by
    /// a read-ahead, before the bytes buffered ahead of it were decoded).
    eof: bool,
    /// A read error met by a read-ahead, for the next read to report.
    read_error: Option<io::Error>,
    /// How much a read-ahead may buffer: a whole message and then some.
    read_ahead_limit: usize,
    /// The socket was shut down (or failed) and released: no more I/O.
    finished: bool,
}

impl WebSocket {
    /// Send a text or binary message (binary needs hybi-01 or later).
    pub async fn send(&mut self, message: &Message) -> Result<(), RuntimeError> {
        self.ensure_usable()?;
        self.conn.send(message).map_err(send_error)?;
        self.write_out().await
    }

    /// Send a text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), RuntimeError> {
        self.ensure_usable()?;
        self.conn.send_text(text).map_err(send_error)?;
        self.write_out().await
    }

    /// Send a binary message (hybi-01 and later).
    pub async fn send_binary(&mut self, data: &[u8]) -> Result<(), RuntimeError> {
        self.ensure_usable()?;
        self.conn.send_binary(data).map_err(send_error)?;
        self.write_out().await
    }

    /// Send one fragment of a message of `kind`: the first call starts it,
    /// `fin` ends it; pings may go in between. Needs hybi-01 or later,
    /// except for a single fragment with `fin` (a whole message).
    pub async fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), RuntimeError> {
        self.ensure_usable()?;
        self.conn
            .send_fragment(kind, data, fin)
            .map_err(send_error)?;
        self.write_out().await
    }

    /// Send a ping (hybi-01 and later), payload up to 125 bytes; the pong
    /// arrives through [`recv`](Self::recv).
    pub async fn ping(&mut self, data: &[u8]) -> Result<(), RuntimeError> {
        self.ensure_usable()?;
        self.conn.send_ping(data).map_err(send_error)?;
        self.write_out().await
    }

    /// Send an unsolicited pong (a heartbeat), payload up to 125 bytes.
    /// Pings are answered automatically while `Config::auto_pong` is on.
    pub async fn pong(&mut self, data: &[u8]) -> Result<(), RuntimeError> {
        self.ensure_usable()?;
        self.conn.send_pong(data).map_err(send_error)?;
        self.write_out().await
    }

    /// The next event. `Ok(None)` once the connection is closed and every
    /// event was handed out: after the server's [`Event::Close`] (the
    /// following call waits up to `close_timeout` for the server to close
    /// TCP, then closes), or after an error.
    ///
    /// A protocol violation by the server is returned as
    /// [`RuntimeError::Protocol`] once the close frame with the matching
    /// code (1002, 1007, 1009) was written. A connection that drops
    /// without a close frame yields `Event::Close` with code 1006 (on
    /// hixie-75, whose close *is* the TCP close, 1005).
    pub async fn recv(&mut self) -> Result<Option<Event>, RuntimeError> {
        loop {
            if self.ready.is_none() {
                self.ready = self.conn.poll().transpose();
            }
            if self.ready.is_some() {
                // The reply (pong, close echo, failure close) goes out
                // before the event is handed out.
                let flushed = self.flush().await;
                let Some(item) = self.ready.take() else {
                    continue;
                };
                let event = match item {
                    Ok(event) => event,
                    Err(e) => return Err(RuntimeError::Protocol(e)),
                };
                if let Event::Close(frame) = &event {
                    self.peer_close = Some(frame.clone());
                }
                if let Err(e) = flushed {
                    // After the close, the peer may well be gone already.
                    if self.conn.state() != State::Closed {
                        self.deferred = Some(e);
                    }
                }
                return Ok(Some(event));
            }
            if let Some(e) = self.deferred.take() {
                self.abort();
                return Err(RuntimeError::Io(e));
            }
            if self.finished {
                return Ok(None);
            }
            if self.conn.state() == State::Closed {
                let wait = !self.eof;
                self.teardown(deadline_after(self.close_timeout), wait)
                    .await;
                return Ok(None);
            }
            if let Err(e) = self.flush().await {
                self.abort();
                return Err(RuntimeError::Io(e));
            }
            match self.read().await {
                Ok(0) => self.on_eof(),
                Ok(_) => {}
                Err(e) => {
                    self.abort();
                    return Err(RuntimeError::Io(e));
                }
            }
        }
    }

    /// Run the close handshake: send our close frame (`code` `None` sends
    /// none; drafts whose close body is opaque send an empty one), read
    /// until the server's close (messages arriving meanwhile are
    /// discarded), then wait for the server to close TCP, which RFC 6455
    /// leaves to it, and close our end. All of it is bounded by
    /// `close_timeout` ([`RuntimeError::Timeout`]; the connection is closed
    /// anyway).
    ///
    /// Returns the server's close frame: 1005 when it carried no code, 1006
    /// when the server dropped the connection instead of answering. On
    /// hixie-75, which has no close frame, this closes TCP and returns 1005.
    /// After the server's close was already received through `recv`, this
    /// completes the teardown and returns that frame.
    pub async fn close(
        &mut self,
        code: Option<u16>,
        reason: &str,
    ) -> Result<CloseFrame, RuntimeError> {
        let deadline = deadline_after(self.close_timeout);
        if self.finished || self.conn.state() == State::Closed {
            // A close already received (or the connection failed).
            if let Some(Ok(Event::Close(frame))) = self.ready.take() {
                self.peer_close = Some(frame);
            }
            let wait = !self.eof;
            self.teardown(deadline, wait).await;
            return self.peer_close.clone().ok_or(RuntimeError::Closed);
        }
        if self.conn.state() == State::Open {
            self.conn.close(code, reason).map_err(send_error)?;
        }
        if !self.conn.draft().has_close_frame() {
            // hixie-75: closing TCP is the close.
            self.teardown(deadline, false).await;
            return Ok(CloseFrame {
                code: NO_STATUS,
                reason: String::new(),
            });
        }
        match timeout_at(deadline, self.await_close()).await {
            Ok(Ok(frame)) => {
                let wait = !self.eof;
                self.teardown(deadline, wait).await;
                Ok(frame)
            }
            Ok(Err(e)) => {
                self.teardown(deadline, false).await;
                Err(e)
            }
            Err(_) => {
                // The server is not answering: one last try to write, no waiting.
                self.teardown(Instant::now(), false).await;
                Err(RuntimeError::Timeout("close handshake"))
            }
        }
    }

    /// Write our close, then read (discarding data) until the server's.
    async fn await_close(&mut self) -> Result<CloseFrame, RuntimeError> {
        if let Some(e) = self.deferred.take() {
            return Err(RuntimeError::Io(e));
        }
        loop {
            self.flush().await?;
            let item = match self.ready.take() {
                Some(item) => item,
                None => match self.conn.poll().transpose() {
                    Some(item) => item,
                    None if self.conn.state() == State::Closed => return Err(RuntimeError::Closed),
                    None => {
                        if self.read().await? == 0 {
                            self.on_eof();
                        }
                        continue;
                    }
                },
            };
            match item {
                Ok(Event::Close(frame)) => {
                    self.peer_close = Some(frame.clone());
                    // Our close went first; nothing is echoed, but be sure.
                    self.flush().await?;
                    return Ok(frame);
                }
                Ok(_) => {}
                Err(e) => return Err(RuntimeError::Protocol(e)),
            }
        }
    }

    /// The draft spoken.
    pub fn draft(&self) -> Draft {
        self.conn.draft()
    }

    /// The subprotocol the server selected, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.conn.session().subprotocol.as_deref()
    }

    /// The compression extension in force.
    pub fn extensions(&self) -> Agreed {
        self.conn.session().extensions
    }

    /// The headers of the server's 101 answer (cookies, server name, ...).
    pub fn response_headers(&self) -> &Headers {
        &self.response_headers
    }

    /// Where the close handshake stands.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// Our address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's address (the one that accepted, of those resolved).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    // ------------------------------------------------------------------ I/O

    fn ensure_usable(&mut self) -> Result<(), RuntimeError> {
        if let Some(e) = self.deferred.take() {
            self.abort();
            return Err(RuntimeError::Io(e));
        }
        if self.finished {
            return Err(RuntimeError::Closed);
        }
        Ok(())
    }

    /// Flush after a send; a write error ends the connection.
    async fn write_out(&mut self) -> Result<(), RuntimeError> {
        match self.flush().await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.abort();
                Err(RuntimeError::Io(e))
            }
        }
    }

    /// Write everything the engine queued. Progress is recorded after
    /// every write, so a cancelled flush loses nothing.
    ///
    /// While the socket does not take more, incoming bytes are read ahead
    /// into the receive buffer (up to a bound): a server that stops
    /// reading until its own large write is through would otherwise wait
    /// for us while we wait for it.
    async fn flush(&mut self) -> io::Result<()> {
        let WebSocket {
            stream: Some(stream),
            conn,
            eof,
            read_error,
            read_ahead_limit,
            ..
        } = self
        else {
            return Ok(());
        };
        poll_fn(|cx| {
            while conn.has_output() {
                match Pin::new(&mut *stream).poll_write(cx, conn.pending_output()) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => conn.advance_output(n),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        read_ahead(cx, stream, conn, *read_ahead_limit, eof, read_error);
                        return Poll::Pending;
                    }
                }
            }
            Pin::new(&mut *stream).poll_flush(cx)
        })
        .await
    }

    /// Read straight into the engine's receive buffer.
    async fn read(&mut self) -> io::Result<usize> {
        if let Some(e) = self.read_error.take() {
            return Err(e);
        }
        let Some(stream) = &mut self.stream else {
            return Ok(0);
        };
        if self.eof {
            return Ok(0);
        }
        let buf = self.conn.receive_buffer();
        if buf.is_empty() && buf.capacity() > IDLE_BUFFER_LIMIT {
            *buf = BytesMut::new();
        }
        reserve(buf);
        read_or_eof(stream.read_buf(buf).await)
    }

    /// The server closed TCP: the engine reports the close (1006, or the
    /// normal end of hixie-75) as the next event.
    fn on_eof(&mut self) {
        self.eof = true;
        if let Some(event) = self.conn.receive_eof() {
            self.ready = Some(Ok(event));
        }
    }

    /// After an I/O error: the socket released, the engine marked closed.
    fn abort(&mut self) {
        self.conn.receive_eof();
        self.release();
    }

    fn release(&mut self) {
        self.stream = None;
        self.finished = true;
        // Nothing more will be read or written: free the buffers.
        *self.conn.receive_buffer() = BytesMut::new();
        let queued = self.conn.pending_output().len();
        self.conn.advance_output(queued);
    }

    /// End the TCP connection by `deadline`: write what is queued, wait
    /// for the server's TCP close when `wait_for_peer` (the server closes
    /// first), then shut down our end (TLS `close_notify`, FIN).
    async fn teardown(&mut self, deadline: Instant, wait_for_peer: bool) {
        if self.finished {
            return;
        }
        let _ = timeout_at(deadline, self.flush()).await;
        if let Some(stream) = &mut self.stream {
            if wait_for_peer {
                let _ = timeout_at(deadline, drain_until_eof(stream)).await;
            }
            let _ = timeout_at(deadline, stream.shutdown()).await;
        }
        self.release();
    }
}

/// Room for the next read, in the engine's receive buffer.
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
}

/// Read what has arrived while a write waits, registering `cx` for more,
/// until the receive buffer holds `limit` bytes. The bytes are only
/// buffered; `recv` decodes them. An end of stream or an error is kept for
/// the next read.
fn read_ahead(
    cx: &mut Context<'_>,
    stream: &mut Stream,
    conn: &mut Connection,
    limit: usize,
    eof: &mut bool,
    read_error: &mut Option<io::Error>,
) {
    while !*eof && read_error.is_none() {
        let buf = conn.receive_buffer();
        if buf.len() >= limit {
            return;
        }
        reserve(buf);
        let read = std::pin::pin!(stream.read_buf(buf));
        match read.poll(cx).map(read_or_eof) {
            Poll::Ready(Ok(0)) => *eof = true,
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => *read_error = Some(e),
            Poll::Pending => return,
        }
    }
}

/// Read and discard until the server closes (or the socket fails).
async fn drain_until_eof(stream: &mut Stream) {
    let mut sink = [0u8; 4096];
    while let Ok(n) = read_or_eof(stream.read(&mut sink).await) {
        if n == 0 {
            break;
        }
    }
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("draft", &self.conn.draft())
            .field("state", &self.conn.state())
            .field("tls", &self.stream.as_ref().map(Stream::is_tls))
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .finish_non_exhaustive()
    }
}

// ------------------------------------------------------------------- URLs

/// What a `ws://` / `wss://` URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    secure: bool,
    /// Host to resolve and to verify the certificate against: a lowercase
    /// name, an IPv4 literal, or an IPv6 literal without brackets.
    host: String,
    port: u16,
    /// The Host header: brackets around IPv6, `:port` unless default.
    host_header: String,
    /// Path and query, percent-encoded where HTTP needs it.
    resource: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, RuntimeError> {
        let bad = |why: &'static str| RuntimeError::Url(url.to_owned(), why);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or(bad("expected ws://host/path or wss://host/path"))?;
        let (secure, default_port) = if scheme.eq_ignore_ascii_case("ws") {
            (false, 80)
        } else if scheme.eq_ignore_ascii_case("wss") {
            (true, 443)
        } else {
            return Err(bad("the scheme must be ws or wss"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(end);
        if resource.contains('#') {
            return Err(bad("WebSocket URLs cannot have a fragment"));
        }
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; send an Authorization header",
            ));
        }
        let (host, port, bracketed) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or(bad("unclosed [ in the host"))?;
            let addr: Ipv6Addr = addr.parse().map_err(|_| bad("invalid IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or(bad("junk after the IPv6 address"))?,
                ),
            };
            (addr.to_string(), port, true)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            if host.is_empty() {
                return Err(bad("missing host"));
            }
            if !host.is_ascii() {
                return Err(bad("non-ASCII host names must be given in punycode (xn--)"));
            }
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err(bad("invalid character in the host"));
            }
            (host.to_ascii_lowercase(), port, false)
        };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(bad("invalid port"))?,
        };
        let mut host_header = if bracketed {
            format!("[{host}]")
        } else {
            host.clone()
        };
        if port != default_port {
            host_header.push_str(&format!(":{port}"));
        }
        Ok(Target {
            secure,
            host,
            port,
            host_header,
            resource: encode_resource(resource),
        })
    }
}

/// Path and query as a request target: `/` when empty, a `/` before a bare
/// query, and bytes HTTP cannot carry (spaces, controls, non-ASCII)
/// percent-encoded.
fn encode_resource(resource: &str) -> String {
    let mut out = String::with_capacity(resource.len() + 1);
    if !resource.starts_with('/') {
        out.push('/');
    }
    for b in resource.bytes() {
        if (0x21..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn refused(url: &str) -> &'static str {
        match Target::parse(url) {
            Err(RuntimeError::Url(u, why)) => {
                assert_eq!(u, url);
                why
            }
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn hosts_ports_and_resources() {
        let t = target("ws://Example.COM/chat?room=1&x=%20");
        assert_eq!(
            t,
            Target {
                secure: false,
                host: "example.com".into(),
                port: 80,
                host_header: "example.com".into(),
                resource: "/chat?room=1&x=%20".into(),
            }
        );
        let t = target("wss://example.com");
        assert_eq!((t.secure, t.port, t.resource.as_str()), (true, 443, "/"));
        assert_eq!(target("WSS://h:443/").host_header, "h");
        assert_eq!(target("ws://h:443/").host_header, "h:443");
        assert_eq!(target("wss://h:80/").host_header, "h:80");
        assert_eq!(target("ws://h:/").port, 80);
        let t = target("ws://127.0.0.1:9001?q=1");
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.resource.as_str()
            ),
            ("127.0.0.1", 9001, "127.0.0.1:9001", "/?q=1")
        );
    }

    #[test]
    fn ipv6_literals() {
        let t = target("ws://[::1]:9001/a");
        assert_eq!(
            (t.host.as_str(), t.port, t.host_header.as_str()),
            ("::1", 9001, "[::1]:9001")
        );
        let t = target("wss://[2001:DB8::1]/");
        assert_eq!(
            (t.host.as_str(), t.host_header.as_str()),
            ("2001:db8::1", "[2001:db8::1]")
        );
    }

    #[test]
    fn resources_are_made_sendable() {
        assert_eq!(target("ws://h/a b/é").resource, "/a%20b/%C3%A9");
        assert_eq!(target("ws://h?x").resource, "/?x");
    }

    #[test]
    fn unusable_urls() {
        assert!(refused("http://h/").contains("scheme"));
        assert!(refused("h/path").contains("ws://"));
        assert!(refused("ws:///path").contains("missing host"));
        assert!(refused("ws://:80/").contains("missing host"));
        assert!(refused("ws://h/#frag").contains("fragment"));
        assert!(refused("ws://user:pw@h/").contains("credentials"));
        assert!(refused("ws://[::1/").contains("unclosed"));
        assert!(refused("ws://[::g]/").contains("IPv6"));
        assert!(refused("ws://[::1]x/").contains("junk"));
        for port in ["0", "65536", "-1", "+80", "8o", "1:2"] {
            assert!(
                refused(&format!("ws://h:{port}/")).contains("port"),
                "{port}"
            );
        }
        assert!(refused("ws://bücher.de/").contains("punycode"));
        assert!(refused("ws://a b/").contains("character"));
        assert!(refused("ws://a%20b/").contains("character"));
    }

    #[test]
    fn deadlines_saturate() {
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(3600));
    }

    #[test]
    fn websocket_is_send() {
        fn send<T: Send>() {}
        send::<WebSocket>();
    }
}
