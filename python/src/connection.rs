//! `Connection`: the native base of `polysocket.WebSocketHandler`. The
//! calls a handler makes per message (`write_message`, `ping`, `close`) go
//! straight to the runtime's `ServerHandle` from here, without a Python
//! frame in between and without waiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use polysocket::runtime::{ConnId, ServerHandle};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};

use crate::error::{closed_error, send_error};
use crate::message::{close_code, ping_data, to_message};
use crate::server::NativeServer;

/// The connection a handler speaks for, once it is open.
struct Link {
    handle: ServerHandle,
    id: ConnId,
}

/// What `write_message` returns: an awaitable that is already complete,
/// shared by every call (no Future per message; the runtime queues the
/// bytes and applies back-pressure through `max_send_buffer`).
#[pyclass(frozen, module = "polysocket._native")]
pub struct Done;

#[pymethods]
impl Done {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Ends the `await` at once, with the result `None`.
    fn __next__(&self) -> Option<()> {
        None
    }

    fn done(&self) -> bool {
        true
    }

    fn cancelled(&self) -> bool {
        false
    }

    fn result(&self) {}

    fn exception(&self) -> Option<Py<PyAny>> {
        None
    }
}

static DONE: PyOnceLock<Py<Done>> = PyOnceLock::new();

/// Native state of a WebSocket handler.
#[pyclass(subclass, frozen, module = "polysocket._native")]
pub struct Connection {
    link: OnceLock<Link>,
    /// `close()` was called or the connection is gone. Threaded, a close
    /// is queued for the connection's task: until it is applied the core
    /// still takes sends, which Tornado refuses after `close()`.
    closing: AtomicBool,
}

impl Connection {
    fn link(&self, py: Python<'_>) -> PyResult<&Link> {
        match self.link.get() {
            Some(link) if !self.closing.load(Ordering::Acquire) => Ok(link),
            Some(_) => Err(closed_error(py, "the connection is closing")),
            None => Err(closed_error(py, "the connection is not open yet")),
        }
    }
}

#[pymethods]
impl Connection {
    /// Accepts and ignores the handler's own constructor arguments.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Connection {
            link: OnceLock::new(),
            closing: AtomicBool::new(false),
        }
    }

    /// Bind to the connection `id` of `server` (once, when it opens).
    fn _attach(&self, server: &NativeServer, id: ConnId) -> PyResult<()> {
        self.link
            .set(Link {
                handle: server.handle.clone(),
                id,
            })
            .map_err(|_| PyRuntimeError::new_err("handler already attached"))
    }

    /// Mark the connection gone (the peer closed it).
    fn _detach(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// The connection's id (0 before it opens).
    #[getter]
    fn connection_id(&self) -> ConnId {
        self.link.get().map_or(0, |l| l.id)
    }

    /// Queue a message; see `to_message` for the accepted types. Raises
    /// `ValueError` for what the draft cannot carry (binary on hixie),
    /// `WebSocketClosedError` once the connection is closing or gone.
    #[pyo3(signature = (message, binary=false))]
    fn write_message(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        binary: bool,
    ) -> PyResult<Py<Done>> {
        let link = self.link(py)?;
        let message = to_message(message, binary)?;
        link.handle
            .send(link.id, message)
            .map_err(|e| send_error(py, e))?;
        Ok(DONE
            .get_or_init(py, || Py::new(py, Done).expect("Done"))
            .clone_ref(py))
    }

    /// Send a ping (hybi-01 and later; `ValueError` otherwise, or over 125
    /// bytes).
    #[pyo3(signature = (data=None))]
    fn ping(&self, py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let link = self.link(py)?;
        let data = ping_data(data)?;
        link.handle
            .ping(link.id, data)
            .map_err(|e| send_error(py, e))
    }

    /// Start the close handshake. `ValueError` for a code or reason the
    /// draft does not allow to be sent; on a connection already closing or
    /// gone it does nothing (as Tornado's).
    #[pyo3(signature = (code=None, reason=None))]
    fn close(&self, py: Python<'_>, code: Option<i64>, reason: Option<&str>) -> PyResult<()> {
        let code = close_code(code)?;
        let Some(link) = self.link.get() else {
            return Ok(());
        };
        if self.closing.load(Ordering::Acquire) {
            return Ok(());
        }
        match link.handle.close(link.id, code, reason.unwrap_or("")) {
            Err(e) if e.is_invalid_argument() => Err(send_error(py, e)),
            _ => {
                self.closing.store(true, Ordering::Release);
                Ok(())
            }
        }
    }
}
