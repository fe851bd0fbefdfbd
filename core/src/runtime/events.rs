//! Events for a foreign event loop (a Python asyncio loop, the PHP main
//! thread): a [`Handler`] that queues what happens, and a socket that
//! becomes readable when the queue goes from empty to non-empty, so one
//! wake-up drains many events.
//!
//! The socket is one end of a connected pair: a Unix socket pair on Unix;
//! elsewhere (Windows has no `socketpair`) two TCP sockets connected over
//! loopback. Either is what `select`-style loops watch: Python's
//! `loop.add_reader` and PHP's `stream_select` take sockets on Windows too.

use std::io::{Read, Write};
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

#[cfg(unix)]
type WakeStream = std::os::unix::net::UnixStream;
#[cfg(not(unix))]
type WakeStream = std::net::TcpStream;

/// What [`EventQueue::fileno`] returns: a file descriptor on Unix, a
/// `SOCKET` on Windows.
#[cfg(unix)]
pub type RawWake = std::os::unix::io::RawFd;
/// What [`EventQueue::fileno`] returns: a file descriptor on Unix, a
/// `SOCKET` on Windows.
#[cfg(windows)]
pub type RawWake = std::os::windows::io::RawSocket;

/// A queue of [`ServerEvent`]s (or of other items, e.g. what a cluster
/// node delivers to a foreign loop) with a wake-up socket.
pub struct EventQueue<T = ServerEvent> {
    events: Mutex<Vec<T>>,
    /// Set when a wake-up byte is pending; cleared by `drain`.
    pending: AtomicBool,
    wake_tx: WakeStream,
    wake_rx: WakeStream,
    /// Decides handshakes (subprotocol, refusals); accepts all when absent.
    acceptor: Option<Acceptor>,
}

impl<T> EventQueue<T> {
    /// A queue whose wake-up is a connected socket pair.
    pub fn new() -> std::io::Result<Arc<EventQueue<T>>> {
        Self::with_acceptor(None)
    }

    /// A queue with a handshake decision (run on the runtime's threads).
    pub fn with_acceptor(acceptor: Option<Acceptor>) -> std::io::Result<Arc<EventQueue<T>>> {
        #[cfg(unix)]
        let (wake_tx, wake_rx) = WakeStream::pair()?;
        #[cfg(not(unix))]
        let (wake_tx, wake_rx) = loopback_pair()?;
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
    #[cfg(unix)]
    pub fn fileno(&self) -> RawWake {
        use std::os::unix::io::AsRawFd;
        self.wake_rx.as_raw_fd()
    }

    /// The socket to watch for readability (e.g. `loop.add_reader` on a
    /// selector event loop, or PHP's `stream_select`).
    #[cfg(windows)]
    pub fn fileno(&self) -> RawWake {
        use std::os::windows::io::AsRawSocket;
        self.wake_rx.as_raw_socket()
    }

    /// Take every queued event, oldest first, and re-arm the wake-up.
    pub fn drain(&self) -> Vec<T> {
        let mut sink = [0u8; 64];
        while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.events.lock().expect("event queue lock"))
    }

    /// Like [`drain`](Self::drain), into a caller's vector (kept capacity).
    pub fn drain_into(&self, out: &mut Vec<T>) {
        let mut sink = [0u8; 64];
        while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
        self.pending.store(false, Ordering::Release);
        out.append(&mut self.events.lock().expect("event queue lock"));
    }

    /// Queue an event (for handlers that wrap a queue and decide per event
    /// where it goes).
    pub fn push(&self, event: T) {
        self.events.lock().expect("event queue lock").push(event);
        if !self.pending.swap(true, Ordering::AcqRel) {
            // A full socket buffer means a wake-up is already pending.
            let _ = (&self.wake_tx).write(&[1]);
        }
    }
}

/// Two TCP sockets connected over loopback, `(the connecting end, the
/// accepted end)`: the wake-up pair where there is no `socketpair`. Another
/// local process may connect to the listener in the short moment it
/// exists, so only the connection from our own address is kept.
#[cfg(any(not(unix), test))]
fn loopback_pair() -> std::io::Result<(std::net::TcpStream, std::net::TcpStream)> {
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let tx = TcpStream::connect(listener.local_addr()?)?;
    let ours = tx.local_addr()?;
    let rx = loop {
        let (rx, peer) = listener.accept()?;
        if peer == ours {
            break rx;
        }
    };
    // One byte says "look": send it now, not after Nagle's delay.
    tx.set_nodelay(true)?;
    Ok((tx, rx))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    /// Bytes readable on `rx` now, without waiting.
    fn readable(rx: &impl Fn(&mut [u8]) -> std::io::Result<usize>) -> usize {
        let mut sink = [0u8; 64];
        let mut n = 0;
        loop {
            match rx(&mut sink) {
                Ok(0) => return n,
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn one_wake_up_byte_per_batch() {
        let queue = EventQueue::new().unwrap();
        let peek = |buf: &mut [u8]| (&queue.wake_rx).read(buf);
        for i in 0..3 {
            queue.push(ServerEvent::Ping(i, Bytes::new()));
        }
        assert_eq!(readable(&peek), 1, "one byte for three events");
        assert_eq!(queue.drain().len(), 3);
        queue.push(ServerEvent::Ping(3, Bytes::new()));
        let mut out = Vec::new();
        queue.drain_into(&mut out);
        assert_eq!(out.len(), 1);
        // drain_into consumed that batch's byte: the socket is quiet.
        assert_eq!(readable(&peek), 0);
        queue.push(ServerEvent::Ping(4, Bytes::new()));
        assert_eq!(readable(&peek), 1, "re-armed after a drain");
    }

    /// The pair the queue uses where there is no `socketpair` (Windows),
    /// exercised here the way the queue uses it.
    #[test]
    fn loopback_pair_carries_the_wake_up_byte() {
        let (tx, rx) = loopback_pair().unwrap();
        assert_eq!(tx.peer_addr().unwrap(), rx.local_addr().unwrap());
        assert_eq!(rx.peer_addr().unwrap(), tx.local_addr().unwrap());
        rx.set_nonblocking(true).unwrap();
        let peek = |buf: &mut [u8]| (&rx).read(buf);
        assert_eq!(readable(&peek), 0);
        (&tx).write_all(&[1]).unwrap();
        let start = std::time::Instant::now();
        while readable(&peek) == 0 {
            assert!(start.elapsed().as_secs() < 5, "the byte never arrived");
            std::thread::yield_now();
        }
    }
}
