//! The application's side of a server: the [`Handler`] it implements, the
//! [`Conn`] its calls get, what it learns of a connection.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::mailbox::Mailbox;
use super::ConnId;
use crate::draft::Draft;
use crate::error::{HandshakeError, SendError};
use crate::extensions::Agreed;
use crate::handshake::Request;
use crate::http::{Headers, RequestHead};
use crate::protocol::{Connection, Incoming, Message, PreparedMessage};
use crate::runtime::current;

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
    /// Served as a stream of an HTTP/2 connection (RFC 8441) rather than
    /// an HTTP/1.1 upgrade: the HTTP version is 2.
    pub http2: bool,
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
    /// Lives no longer than the handler call that lends the engine.
    _engine: PhantomData<&'a mut Connection>,
}

impl Conn<'_> {
    /// Run `f` on the engine, reached the one way there is to it: as the
    /// connection current on this thread (see [`current`]).
    #[inline]
    fn engine<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        current::with(self.id, |conn, _| f(conn))
            .expect("a Conn exists only within its connection's handler call")
    }

    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The draft in use.
    pub fn draft(&self) -> Draft {
        self.engine(|conn| conn.draft())
    }

    /// Send a message. Fails when the connection is closing or the draft
    /// cannot carry it (binary on hixie).
    pub fn send(&mut self, message: &Message) -> Result<(), SendError> {
        self.engine(|conn| conn.send(message))
    }

    /// Send a received message on (an echo, a relay); see
    /// [`Connection::forward`].
    pub fn forward(&mut self, message: Incoming<'_>) -> Result<(), SendError> {
        self.engine(|conn| conn.forward(message))
    }

    /// Send a message encoded once for many connections.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), SendError> {
        self.engine(|conn| conn.send_prepared(message))
    }

    /// Send a ping (hybi-01 and later, up to 125 bytes).
    pub fn ping(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.engine(|conn| conn.send_ping(data))
    }

    /// Send an unsolicited pong, a heartbeat (hybi-01 and later, up to 125
    /// bytes; pings are answered by the engine already).
    pub fn pong(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.engine(|conn| conn.send_pong(data))
    }

    /// Start the close handshake (see [`Connection::close`]).
    pub fn close(&mut self, code: Option<u16>, reason: &str) -> Result<(), SendError> {
        self.engine(|conn| conn.close(code, reason))
    }
}

/// Call the handler for connection `id` with its engine current on this
/// thread, so that the handle's commands for it from inside the call are
/// applied at once (see [`current`]).
pub(super) fn call_handler<R>(
    id: ConnId,
    conn: &mut Connection,
    mailbox: &Mailbox,
    f: impl FnOnce(&mut Conn<'_>) -> R,
) -> R {
    let _scope = current::enter(id, conn, mailbox);
    f(&mut Conn {
        id,
        _engine: PhantomData,
    })
}
