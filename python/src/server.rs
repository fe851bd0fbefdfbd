//! `NativeServer`: the runtime's tokio server (core/src/runtime) serving
//! Python handlers, in one of two ways:
//!
//! * inline, on polysocket's own asyncio loop ([`Reactor`]): the connection
//!   tasks run on the loop's thread and each event is handed to the Python
//!   server from the task that read it (a message straight to its
//!   handler's `on_message` when nothing holds it back);
//! * threaded, on any other loop: the runtime has its own threads, which
//!   take the GIL only to decide a handshake (routing, `check_origin`,
//!   `select_subprotocol` are Python code). Every other event is queued in
//!   an [`EventQueue`] whose descriptor wakes the asyncio loop
//!   (`loop.add_reader`), and one [`NativeServer::drain`] turns every
//!   queued event into the same `(kind, id, payload)` tuples.
//!
//! Either way each payload is copied once, into its Python object.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use polysocket::extensions::Agreed;
use polysocket::handshake::Request;
use polysocket::http::{Headers, RequestHead};
use polysocket::runtime::{
    serve_listener, CloseInfo, Conn, ConnId, EventQueue, Handler, OpenInfo, Server, ServerEvent,
    ServerHandle,
};
use polysocket::{HandshakeError, Incoming};
use pyo3::exceptions::{PyException, PyOSError, PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::config::ServerOptions;
use crate::message::to_message;
use crate::reactor::{self, Reactor};

/// Event kinds as seen by Python (`polysocket.server` mirrors them).
const OPEN: u8 = 0;
const MESSAGE: u8 = 1;
const PING: u8 = 2;
const PONG: u8 = 3;
const CLOSE: u8 = 4;

/// Names one handshake so that the handler made while deciding it (on a
/// tokio thread) is found again when the connection opens: the request's
/// path, query and client nonce (the same in [`Request`] and [`OpenInfo`]).
fn handshake_key(path: &str, query: &str, headers: &Headers) -> String {
    let nonce = headers
        .get("sec-websocket-key")
        .map(str::to_string)
        .or_else(|| {
            let k1 = headers.get("sec-websocket-key1")?;
            let k2 = headers.get("sec-websocket-key2")?;
            Some(format!("{k1}\n{k2}"))
        })
        .unwrap_or_default();
    format!("{path}?{query}\n{}", nonce.trim())
}

fn extension_name(agreed: &Agreed) -> Option<&'static str> {
    match agreed {
        Agreed::None => None,
        Agreed::PerMessageDeflate(_) => Some("permessage-deflate"),
        Agreed::DeflateFrame(_) => Some("deflate-frame"),
        Agreed::DeflateStream => Some("deflate-stream"),
    }
}

/// Where a [`Bridge`] delivers events.
enum Sink {
    /// Threaded: queued for [`NativeServer::drain`].
    Queue(Arc<EventQueue>),
    /// Inline: delivered at once, on the loop's thread.
    Call(Inline),
}

/// The Python server's entry points for inline delivery.
struct Inline {
    /// `_event(kind, id, payload)`: every event but the plain message.
    event: Py<PyAny>,
    /// `_handlers`: id → handler of the open connections.
    handlers: Py<PyDict>,
    /// `_maybe_await(handler, result)`: a handler returned something.
    maybe_await: Py<PyAny>,
    /// `_failed(handler, None, exception)`: a handler raised.
    failed: Py<PyAny>,
}

impl Inline {
    fn new(server: &Bound<'_, PyAny>) -> PyResult<Inline> {
        Ok(Inline {
            event: server.getattr("_event")?.unbind(),
            handlers: server.getattr("_handlers")?.cast_into::<PyDict>()?.unbind(),
            maybe_await: server.getattr("_maybe_await")?.unbind(),
            failed: server.getattr("_failed")?.unbind(),
        })
    }

    /// Hand an event other than a message over (to `Server._event`): the
    /// runtime task runs on the loop's thread inside `Reactor.select`,
    /// which holds the GIL.
    fn deliver(&self, event: ServerEvent) {
        self.attach(|py| {
            event_tuple(py, event)
                .and_then(|args| self.event.bind(py).call1(args))
                .map(drop)
        });
    }

    /// A message, straight from the receive buffer it arrived in.
    fn deliver_message(&self, id: ConnId, message: &Incoming<'_>) {
        self.attach(|py| {
            let payload = payload_object(py, message.is_text(), message.data())?;
            self.message(py, id, payload)
        });
    }

    /// Run a delivery with the GIL. The Python side handles the handlers'
    /// exceptions; an `Exception` escaping it is reported as unraisable,
    /// anything else leaves the loop.
    fn attach(&self, deliver: impl FnOnce(Python<'_>) -> PyResult<()>) {
        Python::attach(|py| match deliver(py) {
            Ok(()) => reactor::handler_ran(),
            // SystemExit, KeyboardInterrupt: out of the loop, as from
            // any asyncio callback.
            Err(err) if !err.is_instance_of::<PyException>(py) => reactor::raise_later(err),
            Err(err) => {
                err.write_unraisable(py, None);
                reactor::handler_ran();
            }
        });
    }

    /// The hot path, as `Server._event` and `_run` do it for a message: to the
    /// handler's `on_message` unless a coroutine of it holds its events.
    fn message(&self, py: Python<'_>, id: ConnId, payload: Bound<'_, PyAny>) -> PyResult<()> {
        let Some(handler) = self.handlers.bind(py).get_item(id)? else {
            return Ok(());
        };
        if !handler.getattr(intern!(py, "_backlog"))?.is_none() {
            return self.event.bind(py).call1((MESSAGE, id, payload)).map(drop);
        }
        match handler.call_method1(intern!(py, "on_message"), (payload,)) {
            Ok(result) if result.is_none() => Ok(()),
            Ok(result) => self.maybe_await.bind(py).call1((handler, result)).map(drop),
            Err(err) if !err.is_instance_of::<PyException>(py) => Err(err),
            Err(err) => self
                .failed
                .bind(py)
                .call1((handler, py.None(), err.into_value(py)))
                .map(drop),
        }
    }
}

/// The runtime's [`Handler`]: events go to the sink, handshakes to Python,
/// plain HTTP requests to the configured pages.
struct Bridge {
    sink: Sink,
    /// `accept(key, path, query, headers, offered, secure)` → `None`, a
    /// subprotocol, or `(status, reason)` to refuse.
    accept: Py<PyAny>,
    /// Full HTTP responses by request path.
    pages: HashMap<String, Vec<u8>>,
    secure: bool,
}

impl Bridge {
    fn deliver(&self, event: ServerEvent) {
        match &self.sink {
            Sink::Queue(queue) => queue.push(event),
            Sink::Call(inline) => inline.deliver(event),
        }
    }

    fn decide(&self, py: Python<'_>, request: &Request, offered: &[&str]) -> PyResult<Decision> {
        let path = request.path();
        let query = request.query().unwrap_or("");
        let headers: Vec<(&str, &str)> = request.headers().iter().collect();
        let key = handshake_key(path, query, request.headers());
        let answer = self.accept.bind(py).call1((
            key,
            path,
            query,
            headers,
            offered.to_vec(),
            self.secure,
        ))?;
        if answer.is_none() {
            Ok(Decision::Accept(None))
        } else if let Ok(sub) = answer.extract::<String>() {
            Ok(Decision::Accept(Some(sub)))
        } else {
            let (status, reason): (u16, String) = answer.extract()?;
            Ok(Decision::Refuse(status, reason))
        }
    }
}

enum Decision {
    Accept(Option<String>),
    Refuse(u16, String),
}

impl Handler for Bridge {
    fn accept(
        &self,
        _id: ConnId,
        request: &Request,
        offered: &[&str],
    ) -> Result<Option<String>, HandshakeError> {
        let decision = Python::attach(|py| {
            self.decide(py, request, offered).unwrap_or_else(|err| {
                // The Python side logs its own errors; this is a broken answer.
                err.write_unraisable(py, None);
                Decision::Refuse(500, "Internal Server Error".into())
            })
        });
        match decision {
            Decision::Accept(sub) => Ok(sub),
            Decision::Refuse(status, reason) => Err(HandshakeError::Refused(status, reason)),
        }
    }

    fn http(&self, request: &RequestHead) -> Option<Vec<u8>> {
        let path = request.target.split('?').next().unwrap_or("");
        self.pages.get(path).cloned()
    }

    fn on_open(&self, _conn: &mut Conn<'_>, info: &Arc<OpenInfo>) {
        self.deliver(ServerEvent::Open(info.clone()));
    }

    fn on_message(&self, conn: &mut Conn<'_>, message: Incoming<'_>) {
        match &self.sink {
            Sink::Queue(queue) => {
                queue.push(ServerEvent::Message(conn.id(), message.into_message()))
            }
            Sink::Call(inline) => inline.deliver_message(conn.id(), &message),
        }
    }

    fn on_ping(&self, conn: &mut Conn<'_>, data: Bytes) {
        self.deliver(ServerEvent::Ping(conn.id(), data));
    }

    fn on_pong(&self, conn: &mut Conn<'_>, data: Bytes) {
        self.deliver(ServerEvent::Pong(conn.id(), data));
    }

    fn on_close(&self, id: ConnId, close: &CloseInfo) {
        self.deliver(ServerEvent::Close(id, close.clone()));
    }
}

/// A message's payload: `str` for text, `bytes` for binary.
fn payload_object<'py>(py: Python<'py>, text: bool, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    Ok(if text {
        PyString::from_bytes(py, data)?.into_any()
    } else {
        PyBytes::new(py, data).into_any()
    })
}

/// `(kind, id, payload)`: open `(key, ip, port, draft, subprotocol,
/// extension, secure)`, message `str | bytes`, ping/pong `bytes`, close
/// `(code, reason)`.
fn event_tuple(py: Python<'_>, event: ServerEvent) -> PyResult<Bound<'_, PyTuple>> {
    let (kind, id, payload) = match event {
        ServerEvent::Message(id, message) => (
            MESSAGE,
            id,
            payload_object(py, message.is_text(), message.data())?,
        ),
        ServerEvent::Ping(id, data) => (PING, id, PyBytes::new(py, &data).into_any()),
        ServerEvent::Pong(id, data) => (PONG, id, PyBytes::new(py, &data).into_any()),
        ServerEvent::Close(id, close) => (
            CLOSE,
            id,
            (close.code, close.reason).into_pyobject(py)?.into_any(),
        ),
        ServerEvent::Open(info) => (OPEN, info.id, open_payload(py, &info)?),
    };
    PyTuple::new(
        py,
        [
            kind.into_pyobject(py)?.into_any(),
            id.into_pyobject(py)?.into_any(),
            payload,
        ],
    )
}

/// An HTTP 200 response carrying `body`.
fn page_response(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// A running server. Methods that may wait release the GIL.
#[pyclass(frozen, module = "polysocket._native")]
pub struct NativeServer {
    /// Threaded: the queue Python drains (inline: `None`).
    queue: Option<Arc<EventQueue>>,
    pub(crate) handle: ServerHandle,
    /// Threaded: the server with its own runtime (inline: the reactor's).
    server: Mutex<Option<Server>>,
    addr: SocketAddr,
    /// Drained events, kept to reuse the vector's capacity.
    scratch: Mutex<Vec<ServerEvent>>,
}

#[pymethods]
impl NativeServer {
    /// Bind `host:port` and start serving. `pages` maps a path to
    /// `(content_type, body)` answered to plain HTTP GETs. With `reactor`
    /// the server runs inline on it and hands events to the Python
    /// `server` (see [`Inline`]); otherwise on its own threads, queuing
    /// events for `drain`.
    #[new]
    #[pyo3(signature = (options, host, port, accept, pages=None, reactor=None, server=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        options: &ServerOptions,
        host: &str,
        port: u16,
        accept: Py<PyAny>,
        pages: Option<HashMap<String, (String, Vec<u8>)>>,
        reactor: Option<PyRef<'_, Reactor>>,
        server: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| PyValueError::new_err(format!("cannot resolve {host}:{port}: {e}")))?
            .next()
            .ok_or_else(|| PyValueError::new_err(format!("{host} has no address")))?;
        let config = options.config.clone();
        let pages = pages
            .unwrap_or_default()
            .into_iter()
            .map(|(path, (ctype, body))| (path, page_response(&ctype, &body)))
            .collect();
        let secure = config.tls.is_some();
        let cannot =
            |e: &dyn std::fmt::Display| PyOSError::new_err(format!("cannot serve on {addr}: {e}"));
        if let Some(reactor) = reactor {
            let server = server
                .ok_or_else(|| PyValueError::new_err("an inline server needs its Python server"))?;
            let bridge = Bridge {
                sink: Sink::Call(Inline::new(&server)?),
                accept,
                pages,
                secure,
            };
            let listener = std::net::TcpListener::bind(addr).map_err(|e| cannot(&e))?;
            listener.set_nonblocking(true).map_err(|e| cannot(&e))?;
            let addr = listener.local_addr().map_err(|e| cannot(&e))?;
            let runtime = reactor.handle()?;
            let _context = runtime.enter();
            let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| cannot(&e))?;
            let handle =
                serve_listener(listener, config, Arc::new(bridge)).map_err(|e| cannot(&e))?;
            return Ok(NativeServer {
                queue: None,
                handle,
                addr,
                server: Mutex::new(None),
                scratch: Mutex::new(Vec::new()),
            });
        }
        let queue = EventQueue::new()?;
        let bridge = Bridge {
            sink: Sink::Queue(queue.clone()),
            accept,
            pages,
            secure,
        };
        let server = py
            .detach(|| Server::start(addr, config, Arc::new(bridge)))
            .map_err(|e| cannot(&e))?;
        Ok(NativeServer {
            queue: Some(queue),
            handle: server.handle(),
            addr: server.local_addr(),
            server: Mutex::new(Some(server)),
            scratch: Mutex::new(Vec::new()),
        })
    }

    /// `(host, port)` the server listens on.
    #[getter]
    fn address(&self) -> (String, u16) {
        (self.addr.ip().to_string(), self.addr.port())
    }

    /// Threaded: the descriptor that becomes readable when events are
    /// queued.
    fn fileno(&self) -> PyResult<i32> {
        Ok(self.queue()?.fileno())
    }

    /// Every queued event as `(kind, id, payload)`, oldest first:
    /// open `(key, ip, port, draft, subprotocol, extension, secure)`,
    /// message `str | bytes`, ping/pong `bytes`, close `(code, reason)`.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut events = self.scratch.lock().expect("scratch lock");
        self.queue()?.drain_into(&mut events);
        let list = PyList::empty(py);
        for event in events.drain(..) {
            list.append(event_tuple(py, event)?)?;
        }
        Ok(list)
    }

    /// Send one message to many connections, encoded once per framing
    /// family. Returns how many it was queued for.
    #[pyo3(signature = (ids, message, binary=false))]
    fn broadcast(
        &self,
        py: Python<'_>,
        ids: Vec<ConnId>,
        message: &Bound<'_, PyAny>,
        binary: bool,
    ) -> PyResult<usize> {
        let message = to_message(message, binary)?;
        Ok(py.detach(|| self.handle.broadcast(&ids, message)))
    }

    /// Send one message to every member of `group`.
    #[pyo3(signature = (group, message, binary=false))]
    fn broadcast_group(
        &self,
        py: Python<'_>,
        group: &str,
        message: &Bound<'_, PyAny>,
        binary: bool,
    ) -> PyResult<usize> {
        let message = to_message(message, binary)?;
        Ok(py.detach(|| self.handle.broadcast_group(group, message)))
    }

    /// Add a connection to a group.
    fn join(&self, id: ConnId, group: &str) {
        self.handle.join(id, group);
    }

    /// Remove a connection from a group.
    fn leave(&self, id: ConnId, group: &str) {
        self.handle.leave(id, group);
    }

    /// The ids of a group's members.
    fn members(&self, group: &str) -> Vec<ConnId> {
        self.handle.members(group)
    }

    /// The ids of the open connections.
    fn connections(&self) -> Vec<ConnId> {
        self.handle.connections()
    }

    /// Open connections, handshakes in progress included.
    fn connection_count(&self) -> usize {
        self.handle.connection_count()
    }

    /// Graceful stop: no new connections, 1001 to every open one.
    fn stop(&self) {
        self.handle.stop();
    }

    /// Block (without the GIL) until every connection ended.
    fn wait(&self, py: Python<'_>) {
        let server = self.server.lock().expect("server lock");
        if let Some(server) = server.as_ref() {
            py.detach(|| server.wait());
        }
    }

    /// Stop, wait, and free the runtime's threads.
    fn close(&self, py: Python<'_>) {
        let server = self.server.lock().expect("server lock").take();
        if let Some(server) = server {
            py.detach(|| server.shutdown());
        }
    }
}

impl Drop for NativeServer {
    fn drop(&mut self) {
        // Without the GIL: the runtime's threads may be waiting for it.
        if let Some(server) = self.server.get_mut().expect("server lock").take() {
            Python::attach(|py| py.detach(|| drop(server)));
        }
    }
}

impl NativeServer {
    fn queue(&self) -> PyResult<&EventQueue> {
        self.queue
            .as_deref()
            .ok_or_else(|| PyRuntimeError::new_err("an inline server has no event queue"))
    }
}

fn open_payload<'py>(py: Python<'py>, info: &OpenInfo) -> PyResult<Bound<'py, PyAny>> {
    let key = handshake_key(&info.path, &info.query, &info.headers);
    Ok((
        key,
        info.peer.ip().to_string(),
        info.peer.port(),
        info.draft.name(),
        info.subprotocol.as_deref(),
        extension_name(&info.extensions),
        info.secure,
    )
        .into_pyobject(py)?
        .into_any())
}
