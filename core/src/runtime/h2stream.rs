//! An HTTP/2 stream carrying a WebSocket (RFC 8441) as a byte stream, so
//! that the connection loop that serves TCP and TLS serves it unchanged.
//!
//! HTTP/2 flow control is honoured both ways: received bytes are released
//! to the peer's window only once the engine has taken them (a stream whose
//! application lags stops its peer, not the connection's other streams), and
//! a write takes only the capacity the peer's window grants (what it does
//! not take stays in the engine's output, where the send-buffer limit
//! counts it, per stream).

use std::io;
use std::task::{ready, Context, Poll};

use bytes::{Buf as _, Bytes};
use h2::{Reason, RecvStream, SendStream};

/// The receive window of one stream (both roles): what the peer may send
/// before the engine has read it (the engine's own limits apply once it
/// has). h2's default, 64 KiB, would leave a large message waiting on
/// WINDOW_UPDATEs.
pub(crate) const STREAM_WINDOW: u32 = 256 * 1024;
/// The receive window of a whole connection, shared by its streams.
pub(crate) const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;

/// The largest DATA frame we accept (SETTINGS_MAX_FRAME_SIZE): a peer
/// that honours it sends a large message in fewer frames than 16 KiB ones.
pub(crate) const MAX_FRAME: u32 = 64 * 1024;

/// The rest of a WebSocket frame up to this size is given its room in the
/// receive buffer at once on a stream. Growing the buffer as the bytes
/// arrive (as on TCP) reallocates it several times per large message, and
/// behind h2's per-frame read buffers the allocator cannot extend it in
/// place: each growth copied what had arrived (a tenth of the server's
/// CPU at 1 MiB). Room not yet written is address space, not resident
/// memory; this bounds what one stream can claim ahead of its bytes.
pub(crate) const RESERVE_AHEAD: usize = 4 * 1024 * 1024;

/// Both halves of one stream.
pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received and not yet read.
    buf: Bytes,
    /// `END_STREAM` went out.
    ended: bool,
}

impl std::fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Stream")
            .field("id", &self.send.stream_id().as_u32())
            .finish()
    }
}

impl H2Stream {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        H2Stream {
            send,
            recv,
            buf: Bytes::new(),
            ended: false,
        }
    }

    /// Copies what has arrived, across DATA frames (at most 16 KiB each
    /// by default), as far as `out` has room: one read per burst, as on
    /// TCP, rather than one per frame.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let start = out.filled().len();
        while out.remaining() > 0 {
            if self.buf.is_empty() {
                let got = out.filled().len() > start;
                match self.recv.poll_data(cx) {
                    Poll::Ready(Some(Ok(data))) => self.buf = data,
                    // END_STREAM (the peer sends nothing more): EOF once
                    // what was copied is taken.
                    Poll::Ready(None) => break,
                    // Met again by the next read, after what was copied.
                    Poll::Ready(Some(Err(_))) if got => break,
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(read_error(e)),
                    Poll::Pending if got => break,
                    Poll::Pending => return Poll::Pending,
                }
                continue;
            }
            let n = self.buf.len().min(out.remaining());
            out.put_slice(&self.buf[..n]);
            self.buf.advance(n);
            // Only fails once the stream is gone, which a read reports.
            let _ = self.recv.flow_control().release_capacity(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Sends what the peer's window takes of `bufs`, as one DATA frame's
    /// worth of bytes (h2 owns what it sends: one copy, as TLS makes).
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(self.poll_capacity(cx, total))?.min(total);
        let mut data = bytes::BytesMut::with_capacity(n);
        for buf in bufs {
            let take = buf.len().min(n - data.len());
            data.extend_from_slice(&buf[..take]);
            if data.len() == n {
                break;
            }
        }
        self.send
            .send_data(data.freeze(), false)
            .map_err(write_error)?;
        Poll::Ready(Ok(n))
    }

    /// Sends the engine's pending output as far as the peer's window
    /// allows, handing h2 the engine's own buffers (no copy); `Pending`
    /// until all of it went.
    pub(crate) fn poll_send_output(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut crate::protocol::Connection,
    ) -> Poll<io::Result<()>> {
        while conn.has_output() {
            let granted = ready!(self.poll_capacity(cx, conn.output_len()))?;
            let data = conn.split_output(granted);
            self.send.send_data(data, false).map_err(write_error)?;
        }
        Poll::Ready(Ok(()))
    }

    /// Asks for `want` bytes of the peer's window; ready with what was
    /// granted (at least one byte). Asked for only while there is something
    /// to send: a reservation held while idle would pin the connection's
    /// window.
    fn poll_capacity(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        self.send.reserve_capacity(want);
        while self.send.capacity() == 0 {
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(write_error(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
        Poll::Ready(Ok(self.send.capacity()))
    }

    /// `END_STREAM`, once: the WebSocket's TCP FIN.
    pub(crate) fn poll_shutdown(&mut self) -> Poll<io::Result<()>> {
        if !self.ended {
            self.ended = true;
            self.send.reserve_capacity(0);
            // Fails only when the peer already reset the stream: then it is
            // as closed as a shutdown would make it.
            let _ = self.send.send_data(Bytes::new(), true);
        }
        Poll::Ready(Ok(()))
    }
}

/// A reset by the peer is its way of closing a stream (as a TCP reset).
fn read_error(e: h2::Error) -> io::Result<()> {
    match e.reason() {
        Some(Reason::NO_ERROR) | Some(Reason::CANCEL) => {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, e))
        }
        _ => Err(io::Error::other(e)),
    }
}

fn write_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::ErrorKind::BrokenPipe.into());
    }
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}

/// A header block as the handshakes read it (names lowercase, values as
/// Latin-1-safe text), for both roles.
pub(crate) fn headers_of(map: &http::HeaderMap) -> crate::http::Headers {
    let mut headers = crate::http::Headers::new();
    for (name, value) in map {
        headers.push(name.as_str(), &*String::from_utf8_lossy(value.as_bytes()));
    }
    headers
}
