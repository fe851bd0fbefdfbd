//! Events for a foreign event loop (a Python asyncio loop, the PHP main
//! thread): a [`Handler`] that queues what happens, and a file descriptor
//! that becomes readable when the queue goes from empty to non-empty, so
//! one wake-up drains many events.

use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::server::{CloseInfo, Conn, ConnId, Handler, OpenInfo};
use crate::error::HandshakeError;
use crate::handshake::Request;
use crate::protocol::{Incoming, Message};

/// What happened on a connection, in order per connection.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// A handshake succeeded.
    Open(Arc<OpenInfo>),
    /// A complete message arrived.
    Message(ConnId, Message),
    /// A ping arrived (already answered when auto-pong is on).
    Ping(ConnId, Bytes),
    /// A pong arrived.
    Pong(ConnId, Bytes),
    /// The connection is gone.
    Close(ConnId, CloseInfo),
}

/// Decides a handshake for an [`EventQueue`] (see [`Handler::accept`]).
pub type Acceptor =
    Box<dyn Fn(&Request, &[&str]) -> Result<Option<String>, HandshakeError> + Send + Sync>;

/// A queue of [`ServerEvent`]s with a wake-up descriptor.
pub struct EventQueue {
    events: Mutex<Vec<ServerEvent>>,
    /// Set when a wake-up byte is pending; cleared by `drain`.
    pending: AtomicBool,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    /// Decides handshakes (subprotocol, refusals); accepts all when absent.
    acceptor: Option<Acceptor>,
}

impl EventQueue {
    /// A queue whose wake-up descriptor is a socket pair.
    pub fn new() -> std::io::Result<Arc<EventQueue>> {
        Self::with_acceptor(None)
    }

    /// A queue with a handshake decision (run on the runtime's threads).
    pub fn with_acceptor(acceptor: Option<Acceptor>) -> std::io::Result<Arc<EventQueue>> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Arc::new(EventQueue {
            events: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            wake_tx,
            wake_rx,
            acceptor,
        }))
    }

    /// The descriptor to watch for readability (e.g. `loop.add_reader`).
    pub fn fileno(&self) -> RawFd {
        self.wake_rx.as_raw_fd()
    }

    /// Take every queued event, oldest first, and re-arm the wake-up.
    pub fn drain(&self) -> Vec<ServerEvent> {
        let mut sink = [0u8; 64];
        while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.events.lock().expect("event queue lock"))
    }

    /// Like [`drain`](Self::drain), into a caller's vector (kept capacity).
    pub fn drain_into(&self, out: &mut Vec<ServerEvent>) {
        let mut sink = [0u8; 64];
        while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
        self.pending.store(false, Ordering::Release);
        out.append(&mut self.events.lock().expect("event queue lock"));
    }

    /// Queue an event (for handlers that wrap a queue and decide per event
    /// where it goes).
    pub fn push(&self, event: ServerEvent) {
        self.events.lock().expect("event queue lock").push(event);
        if !self.pending.swap(true, Ordering::AcqRel) {
            // A full socket buffer means a wake-up is already pending.
            let _ = (&self.wake_tx).write(&[1]);
        }
    }
}

impl Handler for EventQueue {
    fn accept(
        &self,
        _id: ConnId,
        request: &Request,
        offered: &[&str],
    ) -> Result<Option<String>, HandshakeError> {
        match &self.acceptor {
            Some(f) => f(request, offered),
            None => Ok(None),
        }
    }

    fn on_open(&self, _conn: &mut Conn<'_>, info: &Arc<OpenInfo>) {
        self.push(ServerEvent::Open(info.clone()));
    }

    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        self.push(ServerEvent::Message(conn.id(), message.into_message()));
    }

    fn on_ping(&self, conn: &mut Conn<'_>, data: Bytes) {
        self.push(ServerEvent::Ping(conn.id(), data));
    }

    fn on_pong(&self, conn: &mut Conn<'_>, data: Bytes) {
        self.push(ServerEvent::Pong(conn.id(), data));
    }

    fn on_close(&self, id: ConnId, close: &CloseInfo) {
        self.push(ServerEvent::Close(id, close.clone()));
    }
}
