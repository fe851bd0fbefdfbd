//! One stream type for plain TCP, both TLS roles and HTTP/2 streams, so
//! that the connection loop is written once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{client, server};

use super::h2stream::{H2Stream, RESERVE_AHEAD};

/// A TCP stream, possibly under TLS, or one stream of an HTTP/2
/// connection (RFC 8441).
#[derive(Debug)]
pub enum Stream {
    /// `ws://`
    Plain(TcpStream),
    /// `wss://`, server side.
    ServerTls(Box<server::TlsStream<TcpStream>>),
    /// `wss://`, client side.
    ClientTls(Box<client::TlsStream<TcpStream>>),
    /// A WebSocket on an HTTP/2 stream (under TLS), either role.
    H2(Box<H2Stream>),
}

impl Stream {
    /// The underlying TCP stream (peer address, socket options), unless
    /// the HTTP/2 connection owns it (shared by its streams).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::ServerTls(s) => Some(s.get_ref().0),
            Stream::ClientTls(s) => Some(s.get_ref().0),
            Stream::H2(_) => None,
        }
    }

    /// Whether this is a stream of an HTTP/2 connection (RFC 8441).
    pub fn is_h2(&self) -> bool {
        matches!(self, Stream::H2(_))
    }

    /// Whether the stream is under TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }

    /// The room to reserve in a receive buffer holding `held` bytes for the
    /// rest of a frame (`awaited` bytes): on TCP it grows geometrically,
    /// never further ahead of what arrived than `held` (or one `chunk`);
    /// on an HTTP/2 stream the rest is given its room at once, up to
    /// [`RESERVE_AHEAD`].
    pub(crate) fn frame_room(&self, awaited: usize, held: usize, chunk: usize) -> usize {
        if self.is_h2() && awaited <= RESERVE_AHEAD {
            return awaited;
        }
        awaited.min(held.max(chunk))
    }
}

/// Forwards to the TCP or TLS stream; an HTTP/2 stream has its own arm.
macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr, $h:ident => $h2:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => $e,
            Stream::ServerTls($s) => $e,
            Stream::ClientTls($s) => $e,
            Stream::H2($h) => $h2,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf), h => h.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf), h => h.poll_write(cx, &[io::IoSlice::new(buf)]))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The HTTP/2 connection's task writes what its streams queued.
        delegate!(self, s => Pin::new(s).poll_flush(cx), _h => Poll::Ready(Ok(())))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx), h => h.poll_shutdown())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs), h => h.poll_write(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::ServerTls(s) => s.is_write_vectored(),
            Stream::ClientTls(s) => s.is_write_vectored(),
            Stream::H2(_) => true,
        }
    }
}
