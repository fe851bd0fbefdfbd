//! The cluster for the Tornado drop-in, whose connections are Tornado
//! IOStreams rather than the runtime's: core's [`Node`] runs the bus on its
//! own thread and queues what other nodes send in an [`EventQueue`] whose
//! descriptor wakes the IOLoop; one `drain()` there returns every queued
//! delivery, broadcasts as a [`Prepared`] message (encoded at most once per
//! framing family, whatever the number of local connections).

use std::sync::{Arc, Mutex};

use polysocket::runtime::cluster::{Delivery, Node};
use polysocket::runtime::{ClusterStats, ConnId, EventQueue};
use polysocket::PreparedMessage;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::error::{close_result, send_error};
use crate::message::{close_code, ping_data, to_message};
use crate::options::{cluster_config, count, seconds};
use crate::server::stats_dict;

/// Delivery kinds as seen by Python (`polysocket._tornado_cluster`).
const BROADCAST: u8 = 0;
const GROUP: u8 = 1;
const SEND: u8 = 2;
const PING: u8 = 3;
const PONG: u8 = 4;
const CLOSE: u8 = 5;

/// A message encoded once per framing family, for many `Engine`s
/// (`Engine.send_prepared`).
#[pyclass(frozen, module = "polysocket._native")]
pub struct Prepared(pub(crate) PreparedMessage);

#[pymethods]
impl Prepared {
    #[new]
    #[pyo3(signature = (message, binary=false))]
    fn new(message: &Bound<'_, PyAny>, binary: bool) -> PyResult<Self> {
        Ok(Prepared(PreparedMessage::new(to_message(message, binary)?)))
    }
}

/// A node of a cluster for connections a Python I/O loop owns.
#[pyclass(frozen, module = "polysocket._native")]
pub struct ClusterNode {
    node: Mutex<Option<Node>>,
    queue: Arc<EventQueue<Delivery>>,
}

impl ClusterNode {
    fn with<T>(&self, f: impl FnOnce(&Node) -> T) -> PyResult<T> {
        match self.node.lock().expect("node lock").as_ref() {
            Some(node) => Ok(f(node)),
            None => Err(PyRuntimeError::new_err("the cluster node is stopped")),
        }
    }
}

#[pymethods]
impl ClusterNode {
    /// Join the cluster on `url` under `namespace` (`ValueError` for a bad
    /// URL, namespace or limit; Redis being down is not an error).
    #[new]
    #[pyo3(signature = (url, namespace, *, heartbeat=1.0, expiry=3.0, queue=65536))]
    fn new(
        py: Python<'_>,
        url: String,
        namespace: String,
        heartbeat: f64,
        expiry: f64,
        queue: i64,
    ) -> PyResult<Self> {
        let config = cluster_config(
            url,
            Some(namespace),
            seconds("heartbeat", heartbeat)?,
            seconds("expiry", expiry)?,
            count("queue", queue)?,
        )?;
        let events = EventQueue::new()?;
        let sink = events.clone();
        let node = py
            .detach(|| Node::start(config, move |d| sink.push(d)))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(ClusterNode {
            node: Mutex::new(Some(node)),
            queue: events,
        })
    }

    /// The descriptor that becomes readable when deliveries are queued.
    fn fileno(&self) -> i32 {
        self.queue.fileno()
    }

    /// Every queued delivery as `(kind, target, payload)`: broadcast
    /// `(0, None, Prepared)`, group `(1, name, Prepared)`, send
    /// `(2, id, str | bytes)`, ping / pong `(3 | 4, id, bytes)`, close
    /// `(5, id, (code | None, reason))`.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for delivery in self.queue.drain() {
            let (kind, target, payload) = match delivery {
                Delivery::Broadcast(m) => (BROADCAST, py.None().into_bound(py), prepared(py, m)?),
                Delivery::Group(g, m) => {
                    (GROUP, PyString::new(py, &g).into_any(), prepared(py, m)?)
                }
                Delivery::Send(id, m) => {
                    let payload = if m.is_text() {
                        PyString::from_bytes(py, m.data())?.into_any()
                    } else {
                        PyBytes::new(py, m.data()).into_any()
                    };
                    (SEND, id.into_pyobject(py)?.into_any(), payload)
                }
                Delivery::Ping(id, d) => (
                    PING,
                    id.into_pyobject(py)?.into_any(),
                    PyBytes::new(py, &d).into_any(),
                ),
                Delivery::Pong(id, d) => (
                    PONG,
                    id.into_pyobject(py)?.into_any(),
                    PyBytes::new(py, &d).into_any(),
                ),
                Delivery::Close(id, code, reason) => {
                    let code = (code != 0).then_some(code);
                    (
                        CLOSE,
                        id.into_pyobject(py)?.into_any(),
                        (code, reason).into_pyobject(py)?.into_any(),
                    )
                }
            };
            list.append(PyTuple::new(
                py,
                [kind.into_pyobject(py)?.into_any(), target, payload],
            )?)?;
        }
        Ok(list)
    }

    /// This node's id.
    #[getter]
    fn node_id(&self) -> PyResult<u32> {
        self.with(Node::node_id)
    }

    /// A connection opened: its id, unique in the cluster.
    fn open(&self) -> PyResult<ConnId> {
        self.with(Node::open)
    }

    /// A connection closed (it leaves presence and its groups).
    fn closed(&self, id: ConnId) -> PyResult<()> {
        self.with(|n| n.closed(id))
    }

    fn join(&self, id: ConnId, group: &str) -> PyResult<()> {
        self.with(|n| n.join(id, group))
    }

    fn leave(&self, id: ConnId, group: &str) -> PyResult<()> {
        self.with(|n| n.leave(id, group))
    }

    /// The local members of a group.
    fn members(&self, group: &str) -> PyResult<Vec<ConnId>> {
        self.with(|n| n.members(group))
    }

    /// Publish to every connection of the other nodes; returns the message
    /// prepared for the caller's own connections.
    #[pyo3(signature = (message, binary=false))]
    fn broadcast(&self, message: &Bound<'_, PyAny>, binary: bool) -> PyResult<Prepared> {
        let message = to_message(message, binary)?;
        self.with(|n| n.broadcast(message.clone()))?;
        Ok(Prepared(PreparedMessage::new(message)))
    }

    /// Publish to the members of `group` on the other nodes; returns the
    /// message prepared for the local members.
    #[pyo3(signature = (group, message, binary=false))]
    fn broadcast_group(
        &self,
        group: &str,
        message: &Bound<'_, PyAny>,
        binary: bool,
    ) -> PyResult<Prepared> {
        let message = to_message(message, binary)?;
        self.with(|n| n.broadcast_group(group, message.clone()))?;
        Ok(Prepared(PreparedMessage::new(message)))
    }

    /// Send to a connection of another node (`ValueError` for what no
    /// draft carries, `WebSocketClosedError` when no live node has it).
    #[pyo3(signature = (id, message, binary=false))]
    fn send(
        &self,
        py: Python<'_>,
        id: ConnId,
        message: &Bound<'_, PyAny>,
        binary: bool,
    ) -> PyResult<()> {
        let message = to_message(message, binary)?;
        self.with(|n| n.send(id, message))?
            .map_err(|e| send_error(py, e))
    }

    /// Ping a connection of another node; errors as `send`.
    #[pyo3(signature = (id, data=None))]
    fn ping(&self, py: Python<'_>, id: ConnId, data: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let data = ping_data(data)?;
        self.with(|n| n.ping(id, data))?
            .map_err(|e| send_error(py, e))
    }

    /// Close a connection of another node: false when no live node has it.
    #[pyo3(signature = (id, code=None, reason=None))]
    fn close(
        &self,
        py: Python<'_>,
        id: ConnId,
        code: Option<i64>,
        reason: Option<&str>,
    ) -> PyResult<bool> {
        let code = close_code(code)?;
        close_result(py, self.with(|n| n.close(id, code, reason.unwrap_or("")))?)
    }

    /// Whether `id` belongs to this node.
    fn owns(&self, id: ConnId) -> PyResult<bool> {
        self.with(|n| n.owns(id))
    }

    #[pyo3(signature = (group=None))]
    fn presence(&self, group: Option<&str>) -> PyResult<usize> {
        self.with(|n| n.presence(group))
    }

    fn nodes(&self) -> PyResult<Vec<u32>> {
        self.with(Node::nodes)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats: ClusterStats = self.with(Node::stats)?;
        stats_dict(py, &stats)
    }

    /// Leave the cluster (without the GIL: the bus's thread may want it
    /// never, but the wait is up to a second).
    fn stop(&self, py: Python<'_>) {
        let node = self.node.lock().expect("node lock").take();
        if let Some(mut node) = node {
            py.detach(|| node.stop());
        }
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        if let Some(mut node) = self.node.get_mut().expect("node lock").take() {
            Python::attach(|py| py.detach(|| node.stop()));
        }
    }
}

fn prepared(py: Python<'_>, message: polysocket::Message) -> PyResult<Bound<'_, PyAny>> {
    Ok(Py::new(py, Prepared(PreparedMessage::new(message)))?
        .into_bound(py)
        .into_any())
}
