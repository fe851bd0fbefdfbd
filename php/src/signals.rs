//! SIGINT and SIGTERM end `run()` gracefully, without pcntl. While `run()`
//! is active our handler replaces whatever was installed (PHP's own zend
//! signal handler would re-raise with the default action and kill the
//! process); it sets a flag and writes a byte to a pipe the runtime
//! watches, so the server stops at once. A second signal takes the default action,
//! so a stuck shutdown can still be interrupted. The previous handlers come
//! back when `run()` returns.
//!
//! With `reload`, SIGHUP is caught the same way and reported as
//! [`Signal::Reload`] (the certificates are read again) for as long as
//! `run()` lasts; without it SIGHUP keeps its previous action.
//!
//! (signal-hook and tokio's signals chain to the previous handler, which
//! is exactly PHP's killing one, hence plain sigaction.)

use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::event_loop::Signal;

const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

static RECEIVED: AtomicBool = AtomicBool::new(false);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static RELOAD: AtomicBool = AtomicBool::new(false);

/// Wake the runtime: one byte down the pipe (async-signal-safe).
fn wake() {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: `fd` is the write end of the pipe, open while WAKE_FD
        // holds it; write(2) is async-signal-safe.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

extern "C" fn on_reload(_sig: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
    wake();
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe calls here.
    if RECEIVED.swap(true, Ordering::SeqCst) {
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        return;
    }
    wake();
}

/// Our handlers, installed for the life of this value.
pub struct Signals {
    previous: Vec<(libc::c_int, libc::sigaction)>,
    wake: UnixStream,
    _wake_tx: UnixStream,
}

impl Signals {
    pub fn install(reload: bool) -> std::io::Result<Signals> {
        let (wake, wake_tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        RECEIVED.store(false, Ordering::SeqCst);
        RELOAD.store(false, Ordering::SeqCst);
        WAKE_FD.store(wake_tx.as_raw_fd(), Ordering::SeqCst);
        let mut previous = Vec::with_capacity(SIGNALS.len());
        let reload = reload.then_some((libc::SIGHUP, on_reload as extern "C" fn(libc::c_int)));
        let stop = SIGNALS.map(|sig| (sig, on_signal as extern "C" fn(libc::c_int)));
        for (sig, handler) in stop.into_iter().chain(reload) {
            // SAFETY: a zeroed sigaction with a handler, an empty mask and
            // SA_RESTART is valid; `old` receives the previous action.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &action, &mut old) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                previous.push((sig, old));
            }
        }
        Ok(Signals {
            previous,
            wake,
            _wake_tx: wake_tx,
        })
    }

    /// The signal that arrived since `install` (or the last reload).
    fn received(&self) -> Option<Signal> {
        let mut sink = [0u8; 16];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        if RECEIVED.load(Ordering::SeqCst) {
            Some(Signal::Stop)
        } else {
            RELOAD
                .swap(false, Ordering::SeqCst)
                .then_some(Signal::Reload)
        }
    }

    /// Wait (within the runtime) until a signal arrives. Never returns when
    /// the pipe cannot be watched.
    pub async fn wait(&self) -> Signal {
        // SAFETY: `self.wake` owns the descriptor and outlives `fd`, which
        // is dropped (deregistered) when this future is.
        let registered =
            unsafe { AsyncFd::register_with_interest(self.wake.as_raw_fd(), Interest::READABLE) };
        let Ok(fd) = registered else {
            return std::future::pending().await;
        };
        loop {
            if let Some(signal) = self.received() {
                return signal;
            }
            match fd.readable().await {
                Ok(mut guard) => guard.clear_ready(),
                Err(_) => return std::future::pending().await,
            }
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for (sig, old) in &self.previous {
            // SAFETY: restores an action sigaction itself returned.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
        WAKE_FD.store(-1, Ordering::SeqCst);
    }
}
