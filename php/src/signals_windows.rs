//! The Windows side of `signals.rs`: Ctrl+C, Ctrl+Break, closing the
//! console window, logging off and shutting down end `run()` gracefully,
//! as SIGINT and SIGTERM do on Unix.
//!
//! tokio's console control handler reports an event as handled only while
//! a listener for it is alive, and otherwise lets the next handler (in the
//! end the default one, which ends the process) have it. Our listeners
//! live from `install` until the first event: a second Ctrl+C during the
//! graceful stop takes the default action, so a stuck shutdown can still
//! be interrupted, as on Unix. For close, logoff and shutdown Windows ends
//! the process itself a few seconds after the event, graceful stop or not.

use std::sync::Mutex;

use tokio::signal::windows::{self, CtrlBreak, CtrlC, CtrlClose, CtrlLogoff, CtrlShutdown};

use crate::event_loop::Signal;

/// The console events we stop on, registered for the life of this value
/// or until the first of them arrives.
pub struct Signals {
    listeners: Mutex<Option<Listeners>>,
}

struct Listeners {
    c: CtrlC,
    brk: CtrlBreak,
    close: CtrlClose,
    logoff: CtrlLogoff,
    shutdown: CtrlShutdown,
}

impl Signals {
    /// `_reload`: Windows has no SIGHUP; `reloadCertificate()` reloads.
    pub fn install(_reload: bool) -> std::io::Result<Signals> {
        // Console handlers need no runtime: an event that arrives before
        // `wait` runs is kept by its listener.
        let listeners = Listeners {
            c: windows::ctrl_c()?,
            brk: windows::ctrl_break()?,
            close: windows::ctrl_close()?,
            logoff: windows::ctrl_logoff()?,
            shutdown: windows::ctrl_shutdown()?,
        };
        Ok(Signals {
            listeners: Mutex::new(Some(listeners)),
        })
    }

    /// Wait (within the runtime) until a console event arrives; the
    /// listeners are dropped with it. Never returns when called again.
    pub async fn wait(&self) -> Signal {
        let taken = self.listeners.lock().map(|mut l| l.take());
        let Ok(Some(mut l)) = taken else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = l.c.recv() => {}
            _ = l.brk.recv() => {}
            _ = l.close.recv() => {}
            _ = l.logoff.recv() => {}
            _ = l.shutdown.recv() => {}
        }
        Signal::Stop
    }
}
