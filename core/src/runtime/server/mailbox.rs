//! How commands from other threads reach a connection's task: a queue
//! and a few signal bits behind one waker.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use atomic_waker::AtomicWaker;
use bytes::Bytes;

use super::ConnId;
use crate::draft::Draft;
use crate::error::SendError;
use crate::protocol::{rules, Connection, Message, PreparedMessage};

/// What other threads ask a connection's task to do.
pub(super) enum Command {
    Send(Message),
    Prepared(Arc<PreparedMessage>),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<u16>, String),
}

impl Command {
    pub(super) fn queued_bytes(&self) -> usize {
        match self {
            Command::Send(m) => m.data().len(),
            Command::Prepared(p) => p.message().data().len(),
            Command::Ping(d) | Command::Pong(d) => d.len(),
            Command::Close(_, r) => r.len(),
        }
    }

    /// The stateless rules (see [`rules`]), for a connection speaking `draft`.
    pub(super) fn check(&self, draft: Draft) -> Result<(), SendError> {
        match self {
            Command::Send(m) => rules::check_message(draft, m.kind()),
            Command::Prepared(p) => rules::check_message(draft, p.message().kind()),
            Command::Ping(d) | Command::Pong(d) => rules::check_control(draft, d.len()),
            Command::Close(code, reason) => rules::check_close(draft, *code, reason),
        }
    }
}

/// A connection's inbox for commands from other threads. It allocates
/// nothing until a command arrives (a tokio channel allocates a block of
/// slots per connection up front, which idle connections pay for).
///
/// Its signals are bits plus one waker: the task's wait registers with a
/// few atomic operations and stays registered across loop turns, where a
/// `Notify` would lock a waiter list on every turn of every connection.
#[derive(Default)]
pub(crate) struct Mailbox {
    pub(super) commands: Mutex<VecDeque<Command>>,
    /// Bytes of commands queued and not yet applied by the task.
    pub(super) queued: AtomicUsize,
    /// [`READY`], [`OVERFLOW`], [`STOP`]; set by senders, taken by the task.
    pub(super) signals: AtomicU8,
    /// Set by the task once its engine left [`State::Open`]: handles then
    /// answer [`SendError::Closed`] instead of queuing what cannot be sent.
    pub(super) closed: AtomicBool,
    pub(super) waker: AtomicWaker,
    /// The engine's tally, copied by the task once per wake-up, for
    /// [`ServerHandle::stats`](super::ServerHandle::stats).
    pub(super) tally: super::metrics::TallyCell,
}

/// Commands were queued.
pub(super) const READY: u8 = 1;

/// The send buffer overflowed: the task aborts.
pub(super) const OVERFLOW: u8 = 2;

/// The server is stopping: the task closes with 1001.
pub(super) const STOP: u8 = 4;

impl Mailbox {
    /// Queue `command` for a connection speaking `draft`, unless it is
    /// closed, the command breaks a rule, or the queued bytes would pass
    /// `limit` (the connection is then aborted).
    pub(super) fn push(
        &self,
        command: Command,
        draft: Draft,
        limit: usize,
    ) -> Result<(), SendError> {
        // Under the queue's lock: of a close and a send from two threads,
        // the one queued second sees what the first did. A closed
        // connection answers Closed whatever was asked of it.
        let mut commands = self.commands.lock().expect("mailbox lock");
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        command.check(draft)?;
        let size = command.queued_bytes();
        let queued = self.queued.fetch_add(size, Ordering::AcqRel) + size;
        if queued > limit {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            drop(commands);
            self.overflow();
            return Err(SendError::Overflow(limit));
        }
        // Once a close is queued nothing may follow it: later commands
        // are refused now rather than failing unseen when applied.
        if matches!(command, Command::Close(..)) {
            self.set_closed();
        }
        commands.push_back(command);
        drop(commands);
        self.signal(READY);
        Ok(())
    }

    /// Apply every queued command, in order. The callers were told their
    /// command was queued: one that fails now (the connection closed in
    /// between) is logged.
    pub(super) fn apply_all(&self, id: ConnId, conn: &mut Connection) {
        let commands = std::mem::take(&mut *self.commands.lock().expect("mailbox lock"));
        for command in commands {
            self.queued
                .fetch_sub(command.queued_bytes(), Ordering::AcqRel);
            if let Err(error) = apply(conn, command) {
                tracing::debug!(id, %error, "queued command failed when applied");
            }
        }
    }

    /// The connection left [`State::Open`]: no further command is queued.
    pub(super) fn set_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The send buffer overflowed: the task aborts the connection, and
    /// nothing more is accepted for it.
    pub(super) fn overflow(&self) {
        self.set_closed();
        self.signal(OVERFLOW);
    }

    /// Commands still queued when the task ended were never sent.
    pub(super) fn discard(&self, id: ConnId) {
        let left = std::mem::take(&mut *self.commands.lock().expect("mailbox lock"));
        if !left.is_empty() {
            tracing::debug!(
                id,
                commands = left.len(),
                "connection ended before queued commands were applied"
            );
        }
    }

    pub(super) fn signal(&self, bits: u8) {
        self.signals.fetch_or(bits, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Resolves with (and clears) the raised signals among `mask`.
    pub(super) fn wait(&self, mask: u8) -> impl std::future::Future<Output = u8> + '_ {
        std::future::poll_fn(move |cx| self.poll_signals(cx, mask))
    }

    pub(super) fn poll_signals(
        &self,
        cx: &mut std::task::Context<'_>,
        mask: u8,
    ) -> std::task::Poll<u8> {
        if let Some(raised) = self.take_raised(mask) {
            return std::task::Poll::Ready(raised);
        }
        self.waker.register(cx.waker());
        // A signal raised before the registration took effect.
        match self.take_raised(mask) {
            Some(raised) => std::task::Poll::Ready(raised),
            None => std::task::Poll::Pending,
        }
    }

    /// Takes the raised signals among `mask`, if any: one atomic load when
    /// none is.
    #[inline]
    pub(super) fn take_raised(&self, mask: u8) -> Option<u8> {
        if self.signals.load(Ordering::Acquire) & mask == 0 {
            return None;
        }
        Some(self.signals.fetch_and(!mask, Ordering::AcqRel) & mask)
    }
}

pub(super) fn apply(conn: &mut Connection, command: Command) -> Result<(), SendError> {
    match command {
        Command::Send(m) => conn.send(&m),
        Command::Prepared(p) => conn.send_prepared(&p),
        Command::Ping(d) => conn.send_ping(&d),
        Command::Pong(d) => conn.send_pong(&d),
        Command::Close(code, reason) => conn.close(code, &reason),
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Wake, Waker};

    use super::*;

    fn engine() -> Connection {
        crate::runtime::test_engine()
    }

    #[test]
    fn signals_are_taken_once_and_only_those_asked_for() {
        let mailbox = Mailbox::default();
        assert_eq!(mailbox.take_raised(READY | STOP), None);
        mailbox.signal(READY);
        mailbox.signal(STOP);
        assert_eq!(mailbox.take_raised(READY), Some(READY));
        assert_eq!(mailbox.take_raised(READY), None);
        assert_eq!(mailbox.take_raised(READY | OVERFLOW | STOP), Some(STOP));
    }

    #[test]
    fn a_signal_wakes_the_waiting_task() {
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mailbox = Mailbox::default();
        assert_eq!(mailbox.poll_signals(&mut cx, READY), Poll::Pending);
        mailbox.signal(READY);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(mailbox.poll_signals(&mut cx, READY), Poll::Ready(READY));
    }

    #[test]
    fn commands_are_applied_in_order_and_release_their_bytes() {
        let mailbox = Mailbox::default();
        let mut conn = engine();
        mailbox
            .push(Command::Send(Message::text("a")), Draft::Rfc6455, 64)
            .unwrap();
        mailbox
            .push(Command::Ping(Bytes::from_static(b"p")), Draft::Rfc6455, 64)
            .unwrap();
        mailbox
            .push(Command::Send(Message::text("b")), Draft::Rfc6455, 64)
            .unwrap();
        assert_eq!(mailbox.queued.load(Ordering::Acquire), 3);
        assert_eq!(mailbox.take_raised(READY), Some(READY));
        mailbox.apply_all(1, &mut conn);
        assert_eq!(mailbox.queued.load(Ordering::Acquire), 0);
        assert_eq!(&conn.take_output()[..], b"\x81\x01a\x89\x01p\x81\x01b");
    }

    #[test]
    fn a_full_mailbox_refuses_and_aborts_and_a_closed_one_refuses() {
        let mailbox = Mailbox::default();
        let ten = || Command::Send(Message::binary(vec![0u8; 10]));
        mailbox.push(ten(), Draft::Rfc6455, 16).unwrap();
        assert_eq!(
            mailbox.push(ten(), Draft::Rfc6455, 16),
            Err(SendError::Overflow(16))
        );
        assert_eq!(mailbox.queued.load(Ordering::Acquire), 10);
        assert_eq!(mailbox.take_raised(OVERFLOW), Some(OVERFLOW));
        assert_eq!(
            mailbox.push(ten(), Draft::Rfc6455, 1 << 20),
            Err(SendError::Closed)
        );
        // A rule is checked before anything is queued.
        let open = Mailbox::default();
        assert_eq!(
            open.push(ten(), Draft::Hixie76, 64),
            Err(SendError::Unsupported(Draft::Hixie76, "binary messages"))
        );
        assert_eq!(open.queued.load(Ordering::Acquire), 0);
    }

    #[test]
    fn nothing_is_queued_behind_a_close() {
        let mailbox = Mailbox::default();
        let close = || Command::Close(Some(1000), String::new());
        mailbox.push(close(), Draft::Rfc6455, 64).unwrap();
        assert_eq!(
            mailbox.push(Command::Send(Message::text("late")), Draft::Rfc6455, 64),
            Err(SendError::Closed)
        );
        assert_eq!(
            mailbox.push(close(), Draft::Rfc6455, 64),
            Err(SendError::Closed)
        );
        assert_eq!(mailbox.commands.lock().unwrap().len(), 1);
    }
}
