//! `Reactor`: the runtime on the asyncio loop's own thread.
//!
//! `polysocket.new_event_loop()` is an asyncio `SelectorEventLoop` whose
//! selector waits here: `select()` drives a current-thread tokio runtime
//! (`block_on`) until one of asyncio's descriptors is ready, its timeout
//! passes, or a handler ran. A server started on that loop runs its
//! connection tasks on this runtime, so each message is read, handed to the
//! Python handler and answered within one task poll on one thread: no
//! thread hop, no queue, no second poll (the handler's own sends go
//! straight into its engine, see core's `runtime::current`).
//!
//! The GIL is released only while the runtime sleeps (its park hooks), not
//! around each handler call.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::runtime::{Handle, Runtime};

/// `selectors.EVENT_READ` and `selectors.EVENT_WRITE`.
const READ: u8 = 1;
const WRITE: u8 = 2;

thread_local! {
    /// A handler ran during this `select`: asyncio must get its turn
    /// (the handler may have scheduled callbacks).
    static RAN: Cell<bool> = const { Cell::new(false) };
    /// Wakes the waiting `select` when a handler runs.
    static WAITER: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// `select` is waiting: the park hooks may release the GIL.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// What a handler raised that must end `select` (`SystemExit`,
    /// `KeyboardInterrupt`): re-raised to the loop when `select` returns.
    static PENDING: RefCell<Option<PyErr>> = const { RefCell::new(None) };
    /// The thread state saved while parked without the GIL.
    static SAVED: Cell<*mut pyo3::ffi::PyThreadState> = const { Cell::new(std::ptr::null_mut()) };
}

/// Called by the inline server after it called Python.
pub fn handler_ran() {
    if !RAN.replace(true) {
        if let Some(waker) = WAITER.with(|w| w.borrow_mut().take()) {
            waker.wake();
        }
    }
}

/// Raise `err` out of the running `select` (the first one wins).
pub fn raise_later(err: PyErr) {
    PENDING.with(|p| {
        p.borrow_mut().get_or_insert(err);
    });
    handler_ran();
}

/// One `select` running on this thread: set up on entry and undone on
/// every exit, a panic's included, so that neither the flags nor the GIL
/// stay behind for the next call.
struct Selecting;

impl Selecting {
    /// `None` when a `select` already runs on this thread.
    fn enter() -> Option<Selecting> {
        if ARMED.get() {
            return None;
        }
        RAN.set(false);
        ARMED.set(true);
        Some(Selecting)
    }
}

impl Drop for Selecting {
    fn drop(&mut self) {
        ARMED.set(false);
        WAITER.with(|w| w.borrow_mut().take());
        reacquire_gil();
    }
}

/// The text of a panic's payload (`panic!` with a literal or a format).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn release_gil() {
    if ARMED.get() && SAVED.get().is_null() {
        // SAFETY: `PyEval_SaveThread` needs the GIL held by this thread:
        // `ARMED` is set only by a `select` on this thread, a Python method
        // that holds the GIL, and `SAVED` is null, so it was not released
        // yet. Nothing touches Python objects while the runtime is parked,
        // and `reacquire_gil` (the unpark hook, or `Selecting::drop` at the
        // latest) takes it back before `select` returns.
        SAVED.set(unsafe { pyo3::ffi::PyEval_SaveThread() });
    }
}

fn reacquire_gil() {
    let saved = SAVED.replace(std::ptr::null_mut());
    if !saved.is_null() {
        // SAFETY: `saved` is the thread state `release_gil` saved on this
        // thread (`SAVED` is thread-local) and has not been restored yet:
        // it was swapped for null above, so it is restored exactly once.
        unsafe { pyo3::ffi::PyEval_RestoreThread(saved) };
    }
}

/// A descriptor asyncio watches, registered through a duplicate of it:
/// readiness is the same (one open file), and asyncio may close its own
/// number at any time without the runtime's registration outliving it.
struct Watched {
    fd: AsyncFd<OwnedFd>,
    events: u8,
}

/// The runtime and asyncio's descriptors. Handlers run inside `select`
/// and may call back (`loop.add_reader` registers here): locks are held
/// only briefly, never while the runtime runs tasks.
#[pyclass(frozen, module = "polysocket._native")]
pub struct Reactor {
    runtime: Mutex<Option<Arc<Runtime>>>,
    watched: Mutex<HashMap<RawFd, Watched>>,
}

impl Reactor {
    fn runtime(&self) -> PyResult<Arc<Runtime>> {
        self.runtime
            .lock()
            .expect("runtime lock")
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("the reactor is closed"))
    }

    /// The watched descriptors. A panic while the lock was held (reported
    /// by `select`) leaves the map as it was: a poisoned lock is taken as
    /// it is rather than failing every later call.
    fn watched(&self) -> MutexGuard<'_, HashMap<RawFd, Watched>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The runtime's handle, to start servers on it.
    pub fn handle(&self) -> PyResult<Handle> {
        Ok(self.runtime()?.handle().clone())
    }

    /// Run tasks until a watched descriptor is ready (true), `wait` passed
    /// or a handler ran (false); a zero `wait` runs what is ready (up to
    /// tokio's batch) and returns.
    async fn wait(&self, wait: Duration) -> bool {
        if wait.is_zero() {
            tokio::task::yield_now().await;
            return false;
        }
        let sleep = (wait != Duration::MAX).then(|| tokio::time::sleep(wait));
        tokio::pin!(sleep);
        std::future::poll_fn(|cx| {
            if RAN.get() {
                return Poll::Ready(false);
            }
            WAITER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
            let mut any = false;
            for w in self.watched().values() {
                if w.events & READ != 0 {
                    if let Poll::Ready(Ok(mut guard)) = w.fd.poll_read_ready(cx) {
                        guard.clear_ready();
                        any = true;
                    }
                }
                if w.events & WRITE != 0 {
                    if let Poll::Ready(Ok(mut guard)) = w.fd.poll_write_ready(cx) {
                        guard.clear_ready();
                        any = true;
                    }
                }
            }
            if any {
                return Poll::Ready(true);
            }
            match sleep.as_mut().as_pin_mut() {
                Some(sleep) => sleep.poll(cx).map(|()| false),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Which watched descriptors are ready now (level-triggered, as
    /// asyncio expects), by `poll(2)` without waiting.
    fn ready_now(&self) -> PyResult<Vec<(RawFd, u8)>> {
        let watched = self.watched();
        let mut polled: Vec<libc::pollfd> = watched
            .iter()
            .map(|(&fd, w)| libc::pollfd {
                fd,
                events: if w.events & READ != 0 {
                    libc::POLLIN
                } else {
                    0
                } | if w.events & WRITE != 0 {
                    libc::POLLOUT
                } else {
                    0
                },
                revents: 0,
            })
            .collect();
        if polled.is_empty() {
            return Ok(Vec::new());
        }
        // SAFETY: `poll` reads and writes `polled.len()` initialised
        // `pollfd`s through the pointer, which the vector owns and does not
        // move during the call; a timeout of 0 never blocks.
        let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(Vec::new());
            }
            return Err(PyOSError::new_err(format!("poll: {e}")));
        }
        let errors = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        Ok(polled
            .iter()
            .filter_map(|p| {
                let mut events = 0;
                if p.revents & (libc::POLLIN | errors) != 0 {
                    events |= READ;
                }
                if p.revents & (libc::POLLOUT | errors) != 0 {
                    events |= WRITE;
                }
                let wanted = watched.get(&p.fd).map_or(0, |w| w.events);
                (events & wanted != 0).then_some((p.fd, events & wanted))
            })
            .collect())
    }
}

#[pymethods]
impl Reactor {
    #[new]
    fn new() -> PyResult<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(release_gil)
            .on_thread_unpark(reacquire_gil)
            .build()
            .map_err(|e| PyOSError::new_err(format!("cannot start the runtime: {e}")))?;
        Ok(Reactor {
            runtime: Mutex::new(Some(Arc::new(runtime))),
            watched: Mutex::new(HashMap::new()),
        })
    }

    /// Watch `fd` for `events` (`EVENT_READ | EVENT_WRITE`); replaces an
    /// earlier registration.
    fn register(&self, fd: RawFd, events: u8) -> PyResult<()> {
        let interest = match (events & READ != 0, events & WRITE != 0) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (true, false) => Interest::READABLE,
            (false, true) => Interest::WRITABLE,
            (false, false) => return Err(PyValueError::new_err(format!("no events for fd {fd}"))),
        };
        let runtime = self.runtime()?;
        let _context = runtime.enter();
        self.watched().remove(&fd);
        let cannot = |e: std::io::Error| PyOSError::new_err(format!("cannot watch fd {fd}: {e}"));
        if fd < 0 {
            return Err(cannot(std::io::ErrorKind::InvalidInput.into()));
        }
        // SAFETY: `borrow_raw` needs `fd` open for the borrow's lifetime,
        // which ends in this statement: asyncio registers only open
        // descriptors and cannot close one while this call holds the GIL
        // (if it was closed already, `dup` fails with EBADF, reported).
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(cannot)?;
        // SAFETY: the descriptor must stay open and the same for the
        // AsyncFd's life: the AsyncFd owns `owned`, a duplicate no one else
        // knows, which is closed only when the AsyncFd is dropped.
        let watched = unsafe { AsyncFd::register_with_interest(owned, interest) }
            .map_err(|e| cannot(e.into_parts().1))?;
        self.watched().insert(
            fd,
            Watched {
                fd: watched,
                events,
            },
        );
        Ok(())
    }

    /// Stop watching `fd`.
    fn unregister(&self, fd: RawFd) {
        self.watched().remove(&fd);
    }

    /// Run the runtime until a watched descriptor is ready, `timeout`
    /// seconds passed (`None`: no limit) or a handler ran; returns the
    /// ready `(fd, events)`.
    #[pyo3(signature = (timeout=None))]
    fn select(&self, timeout: Option<f64>) -> PyResult<Vec<(RawFd, u8)>> {
        let runtime = self.runtime()?;
        let ready = self.ready_now()?;
        let wait = match timeout {
            _ if !ready.is_empty() => Duration::ZERO,
            Some(t) if t <= 0.0 => Duration::ZERO,
            Some(t) => Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX),
            None => Duration::MAX,
        };
        let Some(selecting) = Selecting::enter() else {
            // A handler made the loop select again (a nested loop, as
            // nest_asyncio patches in): this thread's runtime is busy.
            return Err(PyRuntimeError::new_err(
                "the reactor's select was re-entered (a nested event loop on the thread \
                 of a running polysocket loop?)",
            ));
        };
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(self.wait(wait))
        }));
        drop(selecting);
        let pending = PENDING.with(|p| p.borrow_mut().take());
        let fd_woke = waited.map_err(|payload| {
            PanicException::new_err(format!(
                "panic in the reactor: {}",
                panic_message(&*payload)
            ))
        })?;
        if let Some(err) = pending {
            return Err(err);
        }
        // Woken by a handler or the timeout: what became ready meanwhile
        // is found by the next call's first check.
        if ready.is_empty() && fd_woke {
            self.ready_now()
        } else {
            Ok(ready)
        }
    }

    /// Stop the runtime: connection tasks still running are dropped.
    fn close(&self) {
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.watched().clear();
        // Inside `select` (a handler closed the loop) `select` holds the
        // last reference and shuts it down when it returns.
        if let Some(runtime) = runtime.and_then(|r| Arc::try_unwrap(r).ok()) {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        self.close();
    }
}
