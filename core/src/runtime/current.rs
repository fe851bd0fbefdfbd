//! The connection whose handler call is running on this thread.
//!
//! A binding's handler calls back into the server (`$client->send()`,
//! `self.write_message()`) through a [`ServerHandle`](super::ServerHandle).
//! When that call is for the connection being served on this very thread,
//! the command is applied to its engine at once and written when the
//! handler returns, in the same task poll, as a native handler's `Conn`
//! sends are: no mailbox, no wake-up, no second poll of the task.

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
/// restores the previous one when dropped.
pub(super) struct Scope<'a> {
    previous: Option<Current>,
    _conn: PhantomData<&'a mut Connection>,
}

/// Make `conn` current and return the pointer the handler's `Conn` must use:
/// both reach the engine only through this one pointer, never at the same
/// time (each access is a short `&mut` inside a method that calls nobody).
pub(super) fn enter<'a>(
    id: ConnId,
    conn: &'a mut Connection,
    mailbox: &'a Mailbox,
) -> (Scope<'a>, NonNull<Connection>) {
    let ptr = NonNull::from(conn);
    let previous = CURRENT.with(|c| c.replace(Some((id, ptr, NonNull::from(mailbox)))));
    let scope = Scope {
        previous,
        _conn: PhantomData,
    };
    (scope, ptr)
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Run `f` on connection `id`'s engine and mailbox if its handler call is
/// the one running on this thread.
pub(super) fn with<R>(id: ConnId, f: impl FnOnce(&mut Connection, &Mailbox) -> R) -> Option<R> {
    let (current, mut conn, mailbox) = CURRENT.with(Cell::get)?;
    if current != id {
        return None;
    }
    // SAFETY: both pointers came from references lent to the running
    // handler call (see `enter`), which outlive this call (the scope is
    // dropped only when the handler returns), and the task that owns the
    // engine is the one being polled on this thread, so no other reference
    // to the engine is in use while `f` runs.
    Some(f(unsafe { conn.as_mut() }, unsafe { mailbox.as_ref() }))
}
