//! The runtime on the PHP thread. `run()` drives a current-thread tokio
//! runtime with `block_on`, so every connection task (sockets, TLS,
//! framing, compression) runs on the PHP thread and the handler below calls
//! the applications straight from those tasks: no thread hop, no queue. A
//! callback's exception is logged with its trace and its client closed
//! with 1011; the server carries on.

use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::net::TcpListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, ThreadId};

use ext_php_rs::boxed::ZBox;
use ext_php_rs::convert::{FromZvalMut, IntoZval, IntoZvalDyn};
use ext_php_rs::error::Error;
use ext_php_rs::types::{ZendClassObject, ZendObject, Zval};
use ext_php_rs::zend::{try_catch, CatchError, ExecutorGlobals};
use polysocket::handshake::Request;
use polysocket::http::RequestHead;
use polysocket::runtime::{
    serve_listener, CloseInfo, Conn, ConnId, Handler, OpenInfo, ServerConfig, ServerHandle,
};
use polysocket::{HandshakeError, Incoming};

use crate::connection::Connection;
use crate::payload;
use crate::policy::Policy;
use crate::signals::Signals;

/// Key of the application that receives php-websocket's status hooks.
const STATUS_KEY: &str = "status";

/// How `run()` ended.
pub enum Outcome {
    /// `stop()` or a signal: every client was closed with 1001.
    Stopped,
    /// `exit()` in a callback; its unwind is pending again.
    Exit,
    /// A fatal error in a callback: the engine must bail out.
    Bailout,
}

/// What a signal asks of `run()`.
pub enum Signal {
    /// SIGINT, SIGTERM (or a console event): stop gracefully.
    Stop,
    /// SIGHUP while serving `wss://`: read the certificates again.
    Reload,
}

/// A callback did not return normally.
enum Abort {
    Exit(ZBox<ZendObject>),
    Bailout,
}

/// Serve `listener` on this (the PHP) thread until the server stops.
/// `started` gets the handle once serving (for `$server->stop()`).
pub fn run(
    listener: TcpListener,
    config: ServerConfig,
    policy: Policy,
    apps: HashMap<String, Zval>,
    started: impl FnOnce(ServerHandle),
) -> Result<Outcome, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let handler = Arc::new(PhpHandler {
        policy,
        php: PhpOnly::new(State {
            handle: RefCell::new(None),
            status: RefCell::new(apps.get(STATUS_KEY).map(Zval::shallow_clone)),
            apps: RefCell::new(apps),
            clients: RefCell::new(HashMap::new()),
            abort: RefCell::new(None),
            verbose: crate::ini::verbose(),
        }),
    });
    let reload = config.certificates.is_some();
    let signals = Signals::install(reload)
        .map_err(|e| crate::log::write(&format!("no signal handling: {e}"), "warning"))
        .ok();
    let served = runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|e| format!("listener: {e}"))?;
        let handle = serve_listener(listener, config, handler.clone())
            .map_err(|e| format!("cannot start the server: {e}"))?;
        if let Some(state) = handler.php.get() {
            *state.handle.borrow_mut() = Some(handle.clone());
        }
        started(handle.clone());
        // Graceful close on a signal: a drain (the listening socket closed,
        // the clients served up to the drain timeout; none by default),
        // then 1001 to everyone and the close handshakes (up to the close
        // timeout). `stop()` and aborting callbacks call `handle.stop()`
        // themselves.
        loop {
            tokio::select! {
                () = handle.stopped() => break,
                signal = wait_signal(signals.as_ref()) => match signal {
                    Signal::Stop => {
                        handle.drain();
                        handle.stopped().await;
                        break;
                    }
                    Signal::Reload => match handle.reload_tls() {
                        Ok(()) => crate::log::write("SIGHUP: TLS certificate reloaded", "info"),
                        Err(e) => crate::log::write(
                            &format!("SIGHUP: TLS certificate not reloaded (the old one stays): {e}"),
                            "error",
                        ),
                    },
                }
            }
        }
        Ok::<(), String>(())
    });
    drop(runtime);
    drop(signals);
    // Drop every PHP value here, on the PHP thread: `Connection` objects
    // keep the server (and so this handler) alive beyond `run()`. The
    // handle goes too: the server holds this handler, so a handle kept here
    // would be a cycle, never freed.
    let abort = handler.php.get().and_then(State::clear);
    served?;
    Ok(match abort {
        None => Outcome::Stopped,
        Some(Abort::Exit(unwind)) => {
            ExecutorGlobals::get_mut().exception = unwind.into_raw();
            Outcome::Exit
        }
        Some(Abort::Bailout) => Outcome::Bailout,
    })
}

async fn wait_signal(signals: Option<&Signals>) -> Signal {
    match signals {
        Some(signals) => signals.wait().await,
        None => std::future::pending().await,
    }
}

/// A value only ever used on the thread that made it (the PHP thread).
///
/// PHP values (`Zval`s, objects) are neither `Send` nor `Sync`, and the
/// engine may only be entered from its own thread; `Handler` must be both.
/// The runtime is current-thread and driven by `block_on` on the PHP
/// thread, so every handler call happens there. `get` enforces it: on any
/// other thread it gives nothing and the caller leaves PHP alone, and a
/// drop elsewhere leaks the value instead of touching PHP.
struct PhpOnly<T> {
    thread: ThreadId,
    value: ManuallyDrop<T>,
}

// SAFETY: moving a `PhpOnly` to another thread moves no access with it:
// the value is reached only through `get` and dropped only in `drop`, and
// both do nothing to it off the creating thread (`drop` leaks it there).
unsafe impl<T> Send for PhpOnly<T> {}
// SAFETY: a shared `&PhpOnly` gives access to the value only through `get`,
// which returns it on the creating thread alone, so the value is never
// reached from two threads.
unsafe impl<T> Sync for PhpOnly<T> {}

impl<T> PhpOnly<T> {
    fn new(value: T) -> Self {
        PhpOnly {
            thread: thread::current().id(),
            value: ManuallyDrop::new(value),
        }
    }

    /// The value, on the PHP thread only.
    fn get(&self) -> Option<&T> {
        if thread::current().id() == self.thread {
            Some(&self.value)
        } else {
            eprintln!("polysocket: PHP state reached from another thread; ignored");
            None
        }
    }
}

impl<T> Drop for PhpOnly<T> {
    fn drop(&mut self) {
        if thread::current().id() == self.thread {
            // SAFETY: `drop` runs once and `value` is not used after it;
            // this is the creating (PHP) thread, where T may be dropped.
            unsafe { ManuallyDrop::drop(&mut self.value) };
        }
    }
}

struct Client {
    conn: Zval,
    app: Zval,
    ip: String,
    /// A PHP string, as php-websocket's (it split `ip:port`), made once:
    /// the status hooks pass it on, and the status page gets it as before.
    port: Zval,
}

/// What the handler keeps on the PHP side. Cells, not locks: one thread.
struct State {
    /// The server's handle while `run()` serves (see `clear`).
    handle: RefCell<Option<ServerHandle>>,
    apps: RefCell<HashMap<String, Zval>>,
    status: RefCell<Option<Zval>>,
    clients: RefCell<HashMap<ConnId, Client>>,
    /// Set by the first `exit()`/fatal error; PHP is not called again.
    abort: RefCell<Option<Abort>>,
    verbose: bool,
}

impl State {
    /// Drop the PHP values; the pending abort, if any.
    fn clear(&self) -> Option<Abort> {
        self.handle.borrow_mut().take();
        for client in self.clients.borrow_mut().values_mut() {
            if let Some(conn) = <&mut ZendClassObject<Connection>>::from_zval_mut(&mut client.conn)
            {
                conn.forget_app();
            }
        }
        self.clients.borrow_mut().clear();
        self.apps.borrow_mut().clear();
        self.status.borrow_mut().take();
        self.abort.borrow_mut().take()
    }
}

struct PhpHandler {
    policy: Policy,
    php: PhpOnly<State>,
}

impl Handler for PhpHandler {
    fn accept(
        &self,
        _id: ConnId,
        request: &Request,
        offered: &[&str],
    ) -> Result<Option<String>, HandshakeError> {
        self.policy.accept(request, offered)
    }

    fn http(&self, request: &RequestHead) -> Option<Vec<u8>> {
        self.policy.page(&request.target)
    }

    // `$client->send()` from these callbacks reaches the engine directly:
    // the runtime makes the calling connection current (runtime::current).
    fn on_open(&self, _conn: &mut Conn<'_>, info: &Arc<OpenInfo>) {
        self.enter(|state, handle| self.open(state, handle, info));
    }

    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        let id = conn.id();
        self.enter(|state, handle| self.message(state, handle, id, &message));
    }

    fn on_close(&self, id: ConnId, close: &CloseInfo) {
        self.enter(|state, handle| self.close(state, handle, id, close));
    }
}

impl PhpHandler {
    /// Run a PHP-calling step: on the PHP thread only, never after an
    /// abort, and no panic unwinds into tokio; an abort stops the server.
    fn enter(&self, step: impl FnOnce(&State, &ServerHandle) -> Result<(), Abort>) {
        let Some(state) = self.php.get() else {
            return;
        };
        let handle = state.handle.borrow();
        let Some(handle) = handle.as_ref() else {
            return;
        };
        if state.abort.borrow().is_some() {
            return;
        }
        match catch_unwind(AssertUnwindSafe(|| step(state, handle))) {
            Ok(Ok(())) => {}
            Ok(Err(abort)) => {
                *state.abort.borrow_mut() = Some(abort);
                handle.stop();
            }
            Err(_) => crate::log::write("internal error (panic) in a callback", "error"),
        }
    }

    fn open(
        &self,
        state: &State,
        handle: &ServerHandle,
        info: &Arc<OpenInfo>,
    ) -> Result<(), Abort> {
        let id = info.id;
        let Some(app) = self
            .policy
            .route(&info.path)
            .and_then(|key| state.apps.borrow().get(key).map(Zval::shallow_clone))
        else {
            let _ = handle.close(id, Some(1011), "no application");
            return Ok(());
        };
        let ip = info.peer.ip().to_string();
        let port = payload::string(info.peer.port().to_string().as_bytes());
        if state.verbose {
            crate::log::write(
                &format!("Connected {} {} ({})", info.peer, info.path, info.draft),
                "info",
            );
        }
        let conn = match ZendClassObject::new(Connection::new(info.clone(), handle.clone(), &app))
            .into_zval(false)
        {
            Ok(conn) => conn,
            Err(e) => {
                crate::log::write(&format!("cannot create a connection object: {e}"), "error");
                let _ = handle.close(id, Some(1011), "internal server error");
                return Ok(());
            }
        };
        let args: [&dyn IntoZvalDyn; 1] = [&conn];
        state.clients.borrow_mut().insert(
            id,
            Client {
                conn: conn.shallow_clone(),
                app: app.shallow_clone(),
                ip: ip.clone(),
                port: port.shallow_clone(),
            },
        );
        call(handle, &app, "onConnect", &args, Some(id))?;
        self.status(state, handle, "clientConnected", &[&ip, &port])
    }

    fn message(
        &self,
        state: &State,
        handle: &ServerHandle,
        id: ConnId,
        message: &Incoming<'_>,
    ) -> Result<(), Abort> {
        let Some((app, conn, port)) = state.clients.borrow().get(&id).map(|c| {
            (
                c.app.shallow_clone(),
                c.conn.shallow_clone(),
                c.port.shallow_clone(),
            )
        }) else {
            return Ok(());
        };
        let data = payload::string(message.data());
        let args: [&dyn IntoZvalDyn; 2] = [&data, &conn];
        if message.is_text() {
            call(handle, &app, "onData", &args, Some(id))?;
        } else {
            // php-websocket closed with 1003 when the application has no
            // onBinaryData.
            if !call(handle, &app, "onBinaryData", &args, Some(id))? {
                let _ = handle.close(id, Some(1003), "unknown data (opcode)");
            }
        }
        self.status(state, handle, "clientActivity", &[&port])
    }

    fn close(
        &self,
        state: &State,
        handle: &ServerHandle,
        id: ConnId,
        close: &CloseInfo,
    ) -> Result<(), Abort> {
        let Some(client) = state.clients.borrow_mut().remove(&id) else {
            return Ok(());
        };
        if state.verbose {
            crate::log::write(
                &format!(
                    "Disconnected {}:{} ({} {})",
                    client.ip,
                    client.port.str().unwrap_or_default(),
                    close.code,
                    close.reason
                ),
                "info",
            );
        }
        let args: [&dyn IntoZvalDyn; 1] = [&client.conn];
        call(handle, &client.app, "onDisconnect", &args, None)?;
        self.status(
            state,
            handle,
            "clientDisconnected",
            &[&client.ip, &client.port],
        )
    }

    /// A hook of the `status` application (php-websocket's StatusApplication).
    fn status(
        &self,
        state: &State,
        handle: &ServerHandle,
        hook: &str,
        args: &[&dyn IntoZvalDyn],
    ) -> Result<(), Abort> {
        let status = state.status.borrow().as_ref().map(Zval::shallow_clone);
        match status {
            Some(status) => call(handle, &status, hook, args, None).map(|_| ()),
            None => Ok(()),
        }
    }
}

/// Call `$target->$method(...$args)`. False when there is no such method.
/// An exception is logged (message and trace) and, when the call was for a
/// client, that client is closed with 1011.
fn call(
    handle: &ServerHandle,
    target: &Zval,
    method: &str,
    args: &[&dyn IntoZvalDyn],
    client: Option<ConnId>,
) -> Result<bool, Abort> {
    let Some(object) = target.object() else {
        return Ok(false);
    };
    let result = try_catch(AssertUnwindSafe(|| {
        object.try_call_method(method, args.to_vec())
    }));
    let found = match result {
        Err(CatchError::Bailout) => return Err(Abort::Bailout),
        Err(e) => {
            crate::log::write(&format!("{method}: {e}"), "error");
            true
        }
        Ok(Err(Error::Callable)) => false,
        Ok(Err(e)) => {
            crate::log::write(&format!("{method}: {e}"), "error");
            true
        }
        Ok(Ok(_)) => true,
    };
    if let Some(exception) = ExecutorGlobals::take_exception() {
        if is_exit(&exception) {
            return Err(Abort::Exit(exception));
        }
        let class = object.get_class_name().unwrap_or_default();
        crate::log::write(
            &format!("{class}::{method}() threw {}", describe(&exception)),
            "error",
        );
        if let Some(id) = client {
            let _ = handle.close(id, Some(1011), "internal server error");
        }
    }
    Ok(found)
}

/// `exit()`/`die()` unwind the stack with an internal exception object.
fn is_exit(exception: &ZendObject) -> bool {
    matches!(
        exception.get_class_name().as_deref(),
        Ok("UnwindExit") | Ok("GracefulExit")
    )
}

/// PHP's own rendering: class, message, file:line and the stack trace.
fn describe(exception: &ZendObject) -> String {
    exception
        .try_call_method("__toString", vec![])
        .ok()
        .and_then(|s| s.string())
        .unwrap_or_else(|| exception.get_class_name().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_only_values_stay_on_their_thread() {
        let marker = Arc::new(());
        let value = Arc::new(PhpOnly::new(marker.clone()));
        assert!(value.get().is_some());
        let elsewhere = value.clone();
        let reached = thread::spawn(move || elsewhere.get().is_some())
            .join()
            .unwrap();
        assert!(!reached, "reached from another thread");
        // Dropped on another thread: leaked, not dropped there.
        let moved = PhpOnly::new(marker.clone());
        thread::spawn(move || drop(moved)).join().unwrap();
        assert_eq!(Arc::strong_count(&marker), 3);
        drop(value);
        assert_eq!(Arc::strong_count(&marker), 2);
    }
}
