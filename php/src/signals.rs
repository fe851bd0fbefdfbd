//! SIGINT and SIGTERM end `run()` gracefully, without pcntl. While `run()`
//! is active our handler replaces whatever was installed (PHP's own zend
//! signal handler would re-raise with the default action and kill the
//! process); it sets a flag and writes a byte to a pipe the runtime
//! watches, so the server stops at once. A second signal takes the default action,
//! so a stuck shutdown can still be interrupted. The previous handlers come
//! back when `run()` returns.
//!
//! (signal-hook and tokio's signals chain to the previous handler, which
//! is exactly PHP's killing one, hence plain sigaction.)

use std::io::Read;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

static RECEIVED: AtomicBool = AtomicBool::new(false);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe calls here.
    if RECEIVED.swap(true, Ordering::SeqCst) {
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
        return;
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// Our handlers, installed for the life of this value.
pub struct Signals {
    previous: Vec<(libc::c_int, libc::sigaction)>,
    wake: UnixStream,
    _wake_tx: UnixStream,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        let (wake, wake_tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        RECEIVED.store(false, Ordering::SeqCst);
        WAKE_FD.store(wake_tx.as_raw_fd(), Ordering::SeqCst);
        let mut previous = Vec::with_capacity(SIGNALS.len());
        for sig in SIGNALS {
            // SAFETY: a zeroed sigaction with a handler, an empty mask and
            // SA_RESTART is valid; `old` receives the previous action.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
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

    /// A signal arrived since `install`.
    fn received(&self) -> bool {
        let mut sink = [0u8; 16];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        RECEIVED.load(Ordering::SeqCst)
    }

    /// Wait (within the runtime) until a signal arrives. Never returns when
    /// the pipe cannot be watched.
    pub async fn wait(&self) {
        // SAFETY: `self.wake` owns the descriptor and outlives `fd`, which
        // is dropped (deregistered) when this future is.
        let registered =
            unsafe { AsyncFd::register_with_interest(self.wake.as_raw_fd(), Interest::READABLE) };
        let Ok(fd) = registered else {
            return std::future::pending().await;
        };
        loop {
            if self.received() {
                return;
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
