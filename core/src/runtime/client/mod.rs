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
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use crate::draft::Draft;
use crate::error::{ProtocolError, SendError};
use crate::extensions::Agreed;
use crate::http::Headers;
use crate::protocol::{CloseFrame, Connection, Event, Message, MessageKind, State, NO_STATUS};

use super::{RuntimeError, Stream};

mod connect;
mod http2;

use connect::deadline_after;
pub use connect::{connect, ConnectOptions};
pub use http2::Http2Connection;

/// Room reserved in the receive buffer before each read: one TLS record.
const READ_CHUNK: usize = 16 * 1024;
/// An empty receive buffer larger than this is released before waiting
/// for more data, so an idle connection does not pin its largest message.
const IDLE_BUFFER_LIMIT: usize = 64 * 1024;

/// A TLS peer that closes TCP without `close_notify` reads as an
/// `UnexpectedEof` error; the WebSocket close handshake already tells a
/// clean end from a truncated one, so that is an end of stream here.
fn read_or_eof(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
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
            if let Stream::H2(h2) = stream {
                let sent = h2.poll_send_output(cx, conn);
                if sent.is_pending() {
                    read_ahead(cx, stream, conn, *read_ahead_limit, eof, read_error);
                }
                return sent;
            }
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
        let awaited = self.conn.awaited_bytes();
        let buf = self.conn.receive_buffer();
        if buf.is_empty() && buf.capacity() > IDLE_BUFFER_LIMIT {
            *buf = BytesMut::new();
        }
        reserve(buf, stream, awaited);
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

/// Room for the next read, in the engine's receive buffer: for the rest
/// of a large frame (`awaited` bytes) as the stream kind wants it.
fn reserve(buf: &mut BytesMut, stream: &Stream, awaited: usize) {
    if awaited > 0 {
        buf.reserve(stream.frame_room(awaited, buf.len(), READ_CHUNK));
    } else if buf.capacity() - buf.len() < READ_CHUNK / 2 {
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
        let awaited = conn.awaited_bytes();
        let buf = conn.receive_buffer();
        if buf.len() >= limit {
            return;
        }
        reserve(buf, stream, awaited);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_is_send() {
        fn send<T: Send>() {}
        send::<WebSocket>();
    }
}
