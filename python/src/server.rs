//! `NativeServer`: the runtime's tokio server (core/src/runtime) with an
//! [`EventQueue`] between it and the Python event loop.
//!
//! The tokio threads never take the GIL except to decide a handshake
//! (routing, `check_origin`, `select_subprotocol` are Python code). Every
//! other event is queued; the queue's descriptor wakes the asyncio loop
//! (`loop.add_reader`), and one [`NativeServer::drain`] turns every queued
//! event into `(kind, id, payload)` tuples with one copy of each payload.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use polysocket::extensions::Agreed;
use polysocket::handshake::Request;
use polysocket::http::{Headers, RequestHead};
use polysocket::runtime::{
    CloseInfo, Conn, ConnId, EventQueue, Handler, OpenInfo, Server, ServerEvent, ServerHandle,
};
use polysocket::{HandshakeError, Message};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::config::ServerOptions;
use crate::message::to_message;

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

/// The runtime's [`Handler`]: events go to the queue, handshakes to Python,
/// plain HTTP requests to the configured pages.
struct Bridge {
    queue: Arc<EventQueue>,
    /// `accept(key, path, query, headers, offered, secure)` → `None`, a
    /// subprotocol, or `(status, reason)` to refuse.
    accept: Py<PyAny>,
    /// Full HTTP responses by request path.
    pages: HashMap<String, Vec<u8>>,
    secure: bool,
}

impl Bridge {
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

    fn on_open(&self, conn: &mut Conn<'_>, info: &Arc<OpenInfo>) {
        self.queue.on_open(conn, info);
    }

    fn on_message(&self, conn: &mut Conn<'_>, message: Message) {
        self.queue.on_message(conn, message);
    }

    fn on_ping(&self, conn: &mut Conn<'_>, data: Bytes) {
        self.queue.on_ping(conn, data);
    }

    fn on_pong(&self, conn: &mut Conn<'_>, data: Bytes) {
        self.queue.on_pong(conn, data);
    }

    fn on_close(&self, id: ConnId, close: &CloseInfo) {
        self.queue.on_close(id, close);
    }
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
    queue: Arc<EventQueue>,
    pub(crate) handle: ServerHandle,
    server: Mutex<Option<Server>>,
    addr: SocketAddr,
    /// Drained events, kept to reuse the vector's capacity.
    scratch: Mutex<Vec<ServerEvent>>,
}

#[pymethods]
impl NativeServer {
    /// Bind `host:port` and start serving. `pages` maps a path to
    /// `(content_type, body)` answered to plain HTTP GETs.
    #[new]
    #[pyo3(signature = (options, host, port, accept, pages=None))]
    fn new(
        py: Python<'_>,
        options: &ServerOptions,
        host: &str,
        port: u16,
        accept: Py<PyAny>,
        pages: Option<HashMap<String, (String, Vec<u8>)>>,
    ) -> PyResult<Self> {
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| PyValueError::new_err(format!("cannot resolve {host}:{port}: {e}")))?
            .next()
            .ok_or_else(|| PyValueError::new_err(format!("{host} has no address")))?;
        let queue = EventQueue::new()?;
        let config = options.config.clone();
        let bridge = Bridge {
            queue: queue.clone(),
            accept,
            pages: pages
                .unwrap_or_default()
                .into_iter()
                .map(|(path, (ctype, body))| (path, page_response(&ctype, &body)))
                .collect(),
            secure: config.tls.is_some(),
        };
        let server = py
            .detach(|| Server::start(addr, config, Arc::new(bridge)))
            .map_err(|e| PyOSError::new_err(format!("cannot serve on {addr}: {e}")))?;
        Ok(NativeServer {
            queue,
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

    /// The descriptor that becomes readable when events are queued.
    fn fileno(&self) -> i32 {
        self.queue.fileno()
    }

    /// Every queued event as `(kind, id, payload)`, oldest first:
    /// open `(key, ip, port, draft, subprotocol, extension, secure)`,
    /// message `str | bytes`, ping/pong `bytes`, close `(code, reason)`.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut events = self.scratch.lock().expect("scratch lock");
        self.queue.drain_into(&mut events);
        let list = PyList::empty(py);
        for event in events.drain(..) {
            let item = match event {
                ServerEvent::Message(id, Message::Text(data)) => {
                    (MESSAGE, id, PyString::from_bytes(py, &data)?.into_any())
                }
                ServerEvent::Message(id, Message::Binary(data)) => {
                    (MESSAGE, id, PyBytes::new(py, &data).into_any())
                }
                ServerEvent::Ping(id, data) => (PING, id, PyBytes::new(py, &data).into_any()),
                ServerEvent::Pong(id, data) => (PONG, id, PyBytes::new(py, &data).into_any()),
                ServerEvent::Close(id, close) => (
                    CLOSE,
                    id,
                    (close.code, close.reason).into_pyobject(py)?.into_any(),
                ),
                ServerEvent::Open(info) => (OPEN, info.id, open_payload(py, &info)?),
            };
            list.append(PyTuple::new(
                py,
                [
                    item.0.into_pyobject(py)?.into_any(),
                    item.1.into_pyobject(py)?.into_any(),
                    item.2,
                ],
            )?)?;
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
