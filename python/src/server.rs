//! `NativeServer`: the runtime's tokio server (core/src/runtime) serving
//! Python handlers through one Python dispatcher (`polysocket.dispatch`,
//! whose documented entry points [`Dispatcher`] looks up once), in one of
//! two ways:
//!
//! * inline, on polysocket's own asyncio loop ([`Reactor`]): the connection
//!   tasks run on the loop's thread and each event is handed to the
//!   dispatcher from the task that read it (a message straight to its
//!   handler's `on_message` when the dispatcher lists it as ready);
//! * threaded, on any other loop: the runtime has its own threads, which
//!   take the GIL only to decide a handshake (routing, `check_origin`,
//!   `select_subprotocol` are Python code) or drop a failed one. Every
//!   other event is queued in an [`EventQueue`] whose descriptor wakes the
//!   asyncio loop (`loop.add_reader`), and one [`NativeServer::drain`] turns
//!   every queued event into the same `(kind, id, payload)` tuples.
//!
//! Per-connection state is keyed by the [`ConnId`] the runtime gives
//! `accept`, the same id every later event carries. Either way each
//! payload is copied once, into its Python object.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use polysocket::handshake::Request;
use polysocket::http::RequestHead;
use polysocket::runtime::{
    bind_listener, serve_listener, CloseInfo, ClusterStats, Conn, ConnId, EventQueue, Handler,
    OpenInfo, RuntimeError, Server, ServerEvent, ServerHandle,
};
use polysocket::{HandshakeError, Incoming};
use pyo3::exceptions::{PyException, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::error::{close_result, send_error};
use crate::message::{close_code, ping_data, to_message};
use crate::options::ServerOptions;
use crate::reactor::{self, Reactor};

/// Event kinds as seen by Python (`polysocket.server` mirrors them).
const OPEN: u8 = 0;
const MESSAGE: u8 = 1;
const PING: u8 = 2;
const PONG: u8 = 3;
const CLOSE: u8 = 4;

/// Where a [`Bridge`] delivers events.
enum Sink {
    /// Threaded: queued for [`NativeServer::drain`].
    Queue(Arc<EventQueue>),
    /// Inline: delivered at once, on the loop's thread.
    Call(Inline),
}

/// The Python dispatcher's entry points (`polysocket.dispatch.Dispatcher`
/// documents them), looked up once, when the server is built.
struct Dispatcher {
    /// `accept(id, path, query, headers, offered, secure, http2)` → `None`, a
    /// subprotocol, or `(status, reason)` to refuse.
    accept: Py<PyAny>,
    /// `handshake_failed(id)`.
    handshake_failed: Py<PyAny>,
    /// `event(kind, id, payload)`.
    event: Py<PyAny>,
    /// `ready`: id → handler taking a message straight to `on_message`.
    ready: Py<PyDict>,
    /// `returned(handler, result)`: `on_message` returned something.
    returned: Py<PyAny>,
    /// `failed(handler, exception)`: `on_message` raised.
    failed: Py<PyAny>,
}

impl Dispatcher {
    /// The entry points of `dispatcher`, or a `TypeError` naming the first
    /// one missing.
    fn new(dispatcher: &Bound<'_, PyAny>) -> PyResult<Dispatcher> {
        let method = |name: &str| -> PyResult<Py<PyAny>> {
            match dispatcher.getattr(name) {
                Ok(m) if m.is_callable() => Ok(m.unbind()),
                _ => Err(PyTypeError::new_err(format!(
                    "the dispatcher {} has no method {name}() (see polysocket.dispatch)",
                    dispatcher.repr()?
                ))),
            }
        };
        let accept = method("accept")?;
        let handshake_failed = method("handshake_failed")?;
        let event = method("event")?;
        let returned = method("returned")?;
        let failed = method("failed")?;
        let Ok(Ok(ready)) = dispatcher.getattr("ready").map(|r| r.cast_into::<PyDict>()) else {
            return Err(PyTypeError::new_err(format!(
                "the dispatcher {} has no dict `ready` (see polysocket.dispatch)",
                dispatcher.repr()?
            )));
        };
        Ok(Dispatcher {
            accept,
            handshake_failed,
            event,
            ready: ready.unbind(),
            returned,
            failed,
        })
    }
}

/// Inline delivery: on the loop's thread, inside `Reactor.select`, which
/// holds the GIL.
struct Inline {
    dispatcher: Arc<Dispatcher>,
}

impl Inline {
    /// Hand an event other than a message over.
    fn deliver(&self, event: ServerEvent) {
        self.attach(|py| {
            event_tuple(py, event)
                .and_then(|args| self.dispatcher.event.bind(py).call1(args))
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

    /// Run a delivery with the GIL. The dispatcher handles the handlers'
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

    /// The hot path: one Python call, `on_message`, for a handler in
    /// `ready`; the dispatcher's `event` for any other.
    fn message(&self, py: Python<'_>, id: ConnId, payload: Bound<'_, PyAny>) -> PyResult<()> {
        let d = &self.dispatcher;
        let Some(handler) = d.ready.bind(py).get_item(id)? else {
            return d.event.bind(py).call1((MESSAGE, id, payload)).map(drop);
        };
        match handler.call_method1(intern!(py, "on_message"), (payload,)) {
            Ok(result) if result.is_none() => Ok(()),
            Ok(result) => d.returned.bind(py).call1((handler, result)).map(drop),
            Err(err) if !err.is_instance_of::<PyException>(py) => Err(err),
            Err(err) => d
                .failed
                .bind(py)
                .call1((handler, err.into_value(py)))
                .map(drop),
        }
    }
}

/// The runtime's [`Handler`]: events go to the sink, handshakes to Python,
/// plain HTTP requests to the configured pages.
struct Bridge {
    sink: Sink,
    dispatcher: Arc<Dispatcher>,
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

    fn decide(
        &self,
        py: Python<'_>,
        id: ConnId,
        request: &Request,
        offered: &[&str],
    ) -> PyResult<Decision> {
        let path = request.path();
        let query = request.query().unwrap_or("");
        let headers: Vec<(&str, &str)> = request.headers().iter().collect();
        let answer = self.dispatcher.accept.bind(py).call1((
            id,
            path,
            query,
            headers,
            offered.to_vec(),
            self.secure,
            // Only RFC 8441's extended CONNECT (an HTTP/2 stream) is not a GET.
            request.method() == "CONNECT",
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
        id: ConnId,
        request: &Request,
        offered: &[&str],
    ) -> Result<Option<String>, HandshakeError> {
        let decision = Python::attach(|py| {
            self.decide(py, id, request, offered).unwrap_or_else(|err| {
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

    fn on_handshake_failed(&self, id: ConnId) {
        Python::attach(|py| {
            if let Err(err) = self.dispatcher.handshake_failed.bind(py).call1((id,)) {
                err.write_unraisable(py, None);
            }
        });
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

/// `(kind, id, payload)`: open `(ip, port, draft, subprotocol, extension,
/// secure)`, message `str | bytes`, ping/pong `bytes`, close
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
    /// Bind `host:port` and start serving, handshakes and events going to
    /// `dispatcher` (see `polysocket.dispatch`; a `TypeError` if it lacks
    /// an entry point). `pages` maps a path to `(content_type, body)`
    /// answered to plain HTTP GETs. With `reactor` the server runs inline on
    /// it (see [`Inline`]); otherwise on its own threads, queuing events
    /// for `drain`.
    #[new]
    #[pyo3(signature = (options, host, port, dispatcher, pages=None, reactor=None))]
    fn new(
        py: Python<'_>,
        options: &ServerOptions,
        host: &str,
        port: u16,
        dispatcher: &Bound<'_, PyAny>,
        pages: Option<HashMap<String, (String, Vec<u8>)>>,
        reactor: Option<PyRef<'_, Reactor>>,
    ) -> PyResult<Self> {
        let dispatcher = Arc::new(Dispatcher::new(dispatcher)?);
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| PyValueError::new_err(format!("cannot resolve {host}:{port}: {e}")))?
            .next()
            .ok_or_else(|| PyValueError::new_err(format!("{host} has no address")))?;
        let config = options.config.clone();
        let pages = pages
            .unwrap_or_default()
            .into_iter()
            .map(|(path, (ctype, body))| (path, polysocket::http::page_response(&ctype, &body)))
            .collect();
        let secure = config.tls.is_some();
        let reuse_port = config.reuse_port;
        let cannot = |e: &dyn std::fmt::Display| -> PyErr {
            PyOSError::new_err(format!("cannot serve on {addr}: {e}"))
        };
        // The options checked the cluster settings; this is the last word.
        let refused = |e: RuntimeError| -> PyErr {
            match e {
                RuntimeError::Config(why) => PyValueError::new_err(why),
                e => cannot(&e),
            }
        };
        if let Some(reactor) = reactor {
            let bridge = Bridge {
                sink: Sink::Call(Inline {
                    dispatcher: dispatcher.clone(),
                }),
                dispatcher,
                pages,
                secure,
            };
            let listener = bind_listener(addr, reuse_port).map_err(|e| cannot(&e))?;
            listener.set_nonblocking(true).map_err(|e| cannot(&e))?;
            let addr = listener.local_addr().map_err(|e| cannot(&e))?;
            let runtime = reactor.handle()?;
            let _context = runtime.enter();
            let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| cannot(&e))?;
            let handle = serve_listener(listener, config, Arc::new(bridge)).map_err(refused)?;
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
            dispatcher,
            pages,
            secure,
        };
        let server = py
            .detach(|| Server::start(addr, config, Arc::new(bridge)))
            .map_err(refused)?;
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
    /// open `(ip, port, draft, subprotocol, extension, secure)`,
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

    /// Send one message to every open connection: this server's, and
    /// when clustered every other node's in the namespace. Returns how
    /// many local connections it was queued for.
    #[pyo3(signature = (message, binary=false))]
    fn broadcast_all(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        binary: bool,
    ) -> PyResult<usize> {
        let message = to_message(message, binary)?;
        Ok(py.detach(|| self.handle.broadcast_all(message)))
    }

    /// Send to the connection `id`, on this server or (clustered) another
    /// node. `ValueError` for what cannot be sent, `WebSocketClosedError`
    /// when no live node has the connection (or the bus is down).
    #[pyo3(signature = (id, message, binary=false))]
    fn send_to(
        &self,
        py: Python<'_>,
        id: ConnId,
        message: &Bound<'_, PyAny>,
        binary: bool,
    ) -> PyResult<()> {
        let message = to_message(message, binary)?;
        self.handle.send(id, message).map_err(|e| send_error(py, e))
    }

    /// Ping the connection `id` anywhere in the cluster; errors as `send_to`.
    #[pyo3(signature = (id, data=None))]
    fn ping_to(&self, py: Python<'_>, id: ConnId, data: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let data = ping_data(data)?;
        self.handle.ping(id, data).map_err(|e| send_error(py, e))
    }

    /// Close the connection `id` anywhere in the cluster. `ValueError` for
    /// a code or reason no draft may send; false when no live node has
    /// the connection (as `close()` on a gone handler, nothing happens).
    #[pyo3(signature = (id, code=None, reason=None))]
    fn close_to(
        &self,
        py: Python<'_>,
        id: ConnId,
        code: Option<i64>,
        reason: Option<&str>,
    ) -> PyResult<bool> {
        let code = close_code(code)?;
        close_result(py, self.handle.close(id, code, reason.unwrap_or("")))
    }

    /// Open connections (`group=None`) or members of `group`, on this
    /// server and every live node of its cluster.
    #[pyo3(signature = (group=None))]
    fn presence(&self, group: Option<&str>) -> usize {
        self.handle.presence(group)
    }

    /// This node's id in its cluster (`None` when not clustered).
    #[getter]
    fn node_id(&self) -> Option<u32> {
        self.handle.node_id()
    }

    /// The live nodes of the cluster, this one included (empty when not
    /// clustered).
    fn nodes(&self) -> Vec<u32> {
        self.handle.nodes()
    }

    /// The bus's counters as a dict (docs/CLUSTER.md), `None` when not
    /// clustered.
    fn cluster_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.handle
            .cluster_stats()
            .map(|s| stats_dict(py, &s))
            .transpose()
    }

    /// The server's metrics now (docs/OPERATIONS.md, "Metrics").
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.handle.stats();
        let d = PyDict::new(py);
        d.set_item("connections", s.connections)?;
        d.set_item("by_draft", s.by_draft)?;
        d.set_item("by_extension", s.by_extension)?;
        d.set_item("by_http_version", s.by_http_version)?;
        d.set_item("handshakes_accepted", s.handshakes_accepted)?;
        d.set_item("handshakes_refused", s.handshakes_refused)?;
        d.set_item("messages_in", s.tally.messages_in)?;
        d.set_item("bytes_in", s.tally.bytes_in)?;
        d.set_item("messages_out", s.tally.messages_out)?;
        d.set_item("bytes_out", s.tally.bytes_out)?;
        d.set_item("closes", s.closes)?;
        d.set_item("limits", s.limits)?;
        d.set_item("buffered_bytes", s.buffered_bytes)?;
        let cluster = s.cluster.map(|c| stats_dict(py, &c)).transpose()?;
        d.set_item("cluster", cluster)?;
        Ok(d)
    }

    /// Where `metrics_port` is served, `None` without one.
    #[getter]
    fn metrics_address(&self) -> Option<(String, u16)> {
        self.handle
            .metrics_addr()
            .map(|a| (a.ip().to_string(), a.port()))
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

    /// Read the certificate files again: new handshakes get the new
    /// certificates, open connections carry on. `ValueError` naming the
    /// file and the cause when one is broken (the old certificates stay);
    /// `RuntimeError` when the server does not serve `wss://`.
    fn reload_tls(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.handle.reload_tls()).map_err(|e| match e {
            RuntimeError::Config(why) => PyRuntimeError::new_err(why),
            e => PyValueError::new_err(e.to_string()),
        })
    }

    /// Rolling restart: close the listening socket, serve the open
    /// connections until they end or `drain_timeout` passes, then 1001 to
    /// the rest.
    fn begin_drain(&self) {
        self.handle.drain();
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
    Ok((
        info.peer.ip().to_string(),
        info.peer.port(),
        info.draft.name(),
        info.subprotocol.as_deref(),
        info.extensions.name(),
        info.secure,
    )
        .into_pyobject(py)?
        .into_any())
}

/// The bus's counters as Python sees them (`cluster_stats()`).
pub(crate) fn stats_dict<'py>(py: Python<'py>, s: &ClusterStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("node_id", s.node_id)?;
    d.set_item("connected", s.connected)?;
    d.set_item("published", s.published)?;
    d.set_item("received", s.received)?;
    d.set_item("dropped", s.dropped)?;
    d.set_item("malformed", s.malformed)?;
    d.set_item("unroutable", s.unroutable)?;
    d.set_item("reconnects", s.reconnects)?;
    d.set_item("last_outage", s.last_outage.map(|d| d.as_secs_f64()))?;
    Ok(d)
}
