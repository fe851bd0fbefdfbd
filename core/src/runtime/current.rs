//! The connection whose handler call is running on this thread: the one
//! path from application code to a connection's engine.
//!
//! A native handler's [`Conn`](super::Conn) and a binding's calls back into
//! the server (`$client->send()`, `self.write_message()`) through a
//! [`ServerHandle`](super::ServerHandle) both reach the engine here. For
//! the handle this means a command for the connection being served on this
//! very thread is applied at once and written when the handler returns, in
//! the same task poll: no mailbox, no wake-up, no second poll of the task.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;

use super::server::{ConnId, Mailbox};
use crate::protocol::Connection;

/// The current connection: its id, engine and mailbox.
type Current = (ConnId, NonNull<Connection>, NonNull<Mailbox>);

thread_local! {
    static CURRENT: Cell<Option<Current>> = const { Cell::new(None) };
}

/// Marks a connection current for as long as it lives (one handler call);
/// restores the previous one when dropped. It holds the borrows the
/// pointers were made from, so the engine and mailbox outlive it.
pub(super) struct Scope<'a> {
    previous: Option<Current>,
    _lent: PhantomData<(&'a mut Connection, &'a Mailbox)>,
}

/// Make `conn` current on this thread until the returned scope is dropped.
pub(super) fn enter<'a>(id: ConnId, conn: &'a mut Connection, mailbox: &'a Mailbox) -> Scope<'a> {
    let current = (id, NonNull::from(conn), NonNull::from(mailbox));
    let previous = CURRENT.with(|c| c.replace(Some(current)));
    Scope {
        previous,
        _lent: PhantomData,
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Run `f` on connection `id`'s engine and mailbox if its handler call is
/// the one running on this thread.
#[inline]
pub(super) fn with<R>(id: ConnId, f: impl FnOnce(&mut Connection, &Mailbox) -> R) -> Option<R> {
    let (current, mut conn, mailbox) = CURRENT.with(Cell::get)?;
    if current != id {
        return None;
    }
    // SAFETY: the one place the pointers are used. Invariant: while a
    // `Scope` is current, the `&mut Connection` and `&Mailbox` it was made
    // from are lent to it and to nobody else — the task that owns them is
    // inside the handler call (`call_handler`), on this thread, and does
    // not touch them until the scope is dropped, which restores the
    // previous entry before those borrows end (`Scope<'a>`). So the
    // pointers are valid here, and this `&mut` is the only reference to
    // the engine as long as `with` is not re-entered while `f` runs: `with`
    // is private to the runtime, and every `f` given to it (the methods of
    // `Conn`, `ServerHandle::command`) calls engine and mailbox methods
    // only, never application code.
    Some(f(unsafe { conn.as_mut() }, unsafe { mailbox.as_ref() }))
}

#[cfg(test)]
mod tests {

    use super::*;

    fn engine() -> Connection {
        crate::runtime::test_engine()
    }

    #[test]
    fn only_the_current_connection_is_reached() {
        let (mut conn, mailbox) = (engine(), Mailbox::default());
        assert_eq!(with(1, |_, _| ()), None, "nothing is current");
        {
            let _scope = enter(1, &mut conn, &mailbox);
            assert_eq!(with(2, |_, _| ()), None, "another id");
            with(1, |c, _| c.send_text("a").unwrap()).expect("current");
            with(1, |c, _| c.send_text("b").unwrap()).expect("current");
        }
        assert_eq!(with(1, |_, _| ()), None, "the scope ended");
        // What was sent through the pointer is in the engine.
        assert_eq!(&conn.take_output()[..], b"\x81\x01a\x81\x01b");
    }

    #[test]
    fn a_nested_scope_restores_the_outer_one() {
        let (mut outer, mut inner) = (engine(), engine());
        let mailbox = Mailbox::default();
        let _outer = enter(1, &mut outer, &mailbox);
        {
            let _inner = enter(2, &mut inner, &mailbox);
            assert_eq!(with(1, |_, _| ()), None);
            with(2, |c, _| c.send_text("in").unwrap()).unwrap();
        }
        with(1, |c, _| c.send_text("out").unwrap()).unwrap();
        drop(_outer);
        assert_eq!(&inner.take_output()[..], b"\x81\x02in");
        assert_eq!(&outer.take_output()[..], b"\x81\x03out");
    }
}
