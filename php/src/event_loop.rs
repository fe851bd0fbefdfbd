//! The PHP thread's side of a running server. The runtime's threads queue
//! events (core's `EventQueue`) and never touch PHP; this loop waits on the
//! queue's descriptor, drains a batch and calls the applications. A
//! callback's exception is logged with its trace and its client closed
//! with 1011; the server carries on.

use std::collections::HashMap;
use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use ext_php_rs::boxed::ZBox;
use ext_php_rs::convert::{IntoZval, IntoZvalDyn};
use ext_php_rs::error::Error;
use ext_php_rs::types::{ZendClassObject, ZendObject, Zval};
use ext_php_rs::zend::{try_catch, CatchError, ExecutorGlobals};
use polysocket::runtime::{
    CloseInfo, ConnId, EventQueue, OpenInfo, Server, ServerConfig, ServerEvent, ServerHandle,
};
use polysocket::Message;

use crate::connection::Connection;
use crate::payload;
use crate::policy::Policy;
use crate::signals::Signals;

/// How long the PHP thread sleeps at most between looks at `stop()`.
const WAIT_MS: i32 = 250;
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

/// A callback did not return normally.
enum Abort {
    Exit(ZBox<ZendObject>),
    Bailout,
}

struct Client {
    conn: Zval,
    app: Zval,
    ip: String,
    port: i64,
}

pub struct EventLoop {
    server: Server,
    handle: ServerHandle,
    queue: Arc<EventQueue>,
    policy: Arc<Policy>,
    apps: HashMap<String, Zval>,
    status: Option<Zval>,
    clients: HashMap<ConnId, Client>,
    verbose: bool,
}

impl EventLoop {
    pub fn start(
        listener: TcpListener,
        config: ServerConfig,
        policy: Policy,
        apps: HashMap<String, Zval>,
    ) -> Result<EventLoop, String> {
        let policy = Arc::new(policy);
        let decide = policy.clone();
        let queue = EventQueue::with_acceptor(Some(Box::new(move |request, offered| {
            decide.accept(request, offered)
        })))
        .map_err(|e| format!("event queue: {e}"))?;
        let server = Server::start_with_listener(listener, config, queue.clone())
            .map_err(|e| format!("cannot start the server: {e}"))?;
        Ok(EventLoop {
            handle: server.handle(),
            server,
            queue,
            policy,
            status: apps.get(STATUS_KEY).map(Zval::shallow_clone),
            apps,
            clients: HashMap::new(),
            verbose: crate::ini::verbose(),
        })
    }

    pub fn run(mut self, stop_requested: &std::cell::Cell<bool>) -> Outcome {
        let signals = match Signals::install() {
            Ok(s) => Some(s),
            Err(e) => {
                crate::log::write(&format!("no signal handling: {e}"), "warning");
                None
            }
        };
        let mut batch = Vec::new();
        let abort = loop {
            if stop_requested.get() || signals.as_ref().is_some_and(Signals::received) {
                break None;
            }
            self.wait(signals.as_ref());
            self.queue.drain_into(&mut batch);
            if let Err(abort) = self.dispatch_all(&mut batch) {
                break Some(abort);
            }
        };
        // Graceful close: 1001 to everyone, wait for the close handshakes
        // (up to the close timeout), then tell the applications.
        self.handle.stop();
        self.server.wait();
        let outcome = match abort {
            None => {
                self.queue.drain_into(&mut batch);
                match self.dispatch_all(&mut batch) {
                    Ok(()) => Outcome::Stopped,
                    Err(Abort::Exit(unwind)) => restore(unwind),
                    Err(Abort::Bailout) => Outcome::Bailout,
                }
            }
            Some(Abort::Exit(unwind)) => restore(unwind),
            Some(Abort::Bailout) => Outcome::Bailout,
        };
        drop(signals);
        outcome
    }

    /// Sleep until events or a signal arrive, or the timeout passes.
    fn wait(&self, signals: Option<&Signals>) {
        let mut fds = [
            libc::pollfd {
                fd: self.queue.fileno(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.map_or(-1, Signals::fileno),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the call's duration;
        // a negative fd is ignored by poll(2). EINTR just ends the wait early.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, WAIT_MS) };
    }

    fn dispatch_all(&mut self, batch: &mut Vec<ServerEvent>) -> Result<(), Abort> {
        let mut events = batch.drain(..);
        for event in events.by_ref() {
            self.dispatch(event)?;
        }
        Ok(())
    }

    fn dispatch(&mut self, event: ServerEvent) -> Result<(), Abort> {
        match event {
            ServerEvent::Open(info) => self.open(info),
            ServerEvent::Message(id, message) => self.message(id, message),
            ServerEvent::Close(id, close) => self.close(id, &close),
            ServerEvent::Ping(..) | ServerEvent::Pong(..) => Ok(()),
        }
    }

    fn open(&mut self, info: Arc<OpenInfo>) -> Result<(), Abort> {
        let Some(app) = self
            .policy
            .route(&info.path)
            .and_then(|key| self.apps.get(key))
            .map(Zval::shallow_clone)
        else {
            self.handle.close(info.id, Some(1011), "no application");
            return Ok(());
        };
        let id = info.id;
        let ip = info.peer.ip().to_string();
        let port = i64::from(info.peer.port());
        if self.verbose {
            crate::log::write(
                &format!("Connected {} {} ({})", info.peer, info.path, info.draft),
                "info",
            );
        }
        let conn = match ZendClassObject::new(Connection::new(info, self.handle.clone(), &app))
            .into_zval(false)
        {
            Ok(conn) => conn,
            Err(e) => {
                crate::log::write(&format!("cannot create a connection object: {e}"), "error");
                self.handle.close(id, Some(1011), "internal server error");
                return Ok(());
            }
        };
        let args: [&dyn IntoZvalDyn; 1] = [&conn];
        self.clients.insert(
            id,
            Client {
                conn: conn.shallow_clone(),
                app: app.shallow_clone(),
                ip: ip.clone(),
                port,
            },
        );
        self.call(&app, "onConnect", &args, Some(id))?;
        self.status("clientConnected", &[&ip, &port])
    }

    fn message(&mut self, id: ConnId, message: Message) -> Result<(), Abort> {
        let Some(client) = self.clients.get(&id) else {
            return Ok(());
        };
        let (app, conn, port) = (
            client.app.shallow_clone(),
            client.conn.shallow_clone(),
            client.port,
        );
        let data = payload::string(message.data());
        let args: [&dyn IntoZvalDyn; 2] = [&data, &conn];
        match message {
            Message::Text(_) => {
                self.call(&app, "onData", &args, Some(id))?;
            }
            Message::Binary(_) => {
                // php-websocket closed with 1003 when the application has
                // no onBinaryData.
                if !self.call(&app, "onBinaryData", &args, Some(id))? {
                    self.handle.close(id, Some(1003), "unknown data (opcode)");
                }
            }
        }
        self.status("clientActivity", &[&port])
    }

    fn close(&mut self, id: ConnId, close: &CloseInfo) -> Result<(), Abort> {
        let Some(client) = self.clients.remove(&id) else {
            return Ok(());
        };
        if self.verbose {
            crate::log::write(
                &format!(
                    "Disconnected {}:{} ({} {})",
                    client.ip, client.port, close.code, close.reason
                ),
                "info",
            );
        }
        let args: [&dyn IntoZvalDyn; 1] = [&client.conn];
        self.call(&client.app, "onDisconnect", &args, None)?;
        self.status("clientDisconnected", &[&client.ip, &client.port])
    }

    /// A hook of the `status` application (php-websocket's StatusApplication).
    fn status(&mut self, hook: &str, args: &[&dyn IntoZvalDyn]) -> Result<(), Abort> {
        match self.status.as_ref().map(Zval::shallow_clone) {
            Some(status) => self.call(&status, hook, args, None).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Call `$target->$method(...$args)`. False when there is no such
    /// method. An exception is logged (message and trace) and, when the
    /// call was for a client, that client is closed with 1011.
    fn call(
        &mut self,
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
                self.handle.close(id, Some(1011), "internal server error");
            }
        }
        Ok(found)
    }
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

/// Put an `exit()` unwind back so it continues once `run()` returns.
fn restore(unwind: ZBox<ZendObject>) -> Outcome {
    ExecutorGlobals::get_mut().exception = unwind.into_raw();
    Outcome::Exit
}
