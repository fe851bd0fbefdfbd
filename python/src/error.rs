//! Core's [`SendError`] as the exception Tornado raises in its place:
//! `ValueError` for an argument the protocol or the connection's draft does
//! not allow, `WebSocketClosedError` for a connection that is closing or
//! gone. The rules are core's; this only translates, in one place.

use polysocket::SendError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The exception for a refused send, ping, pong or close.
pub fn send_error(py: Python<'_>, err: SendError) -> PyErr {
    if err.is_invalid_argument() {
        PyValueError::new_err(err.to_string())
    } else {
        closed_error(py, &err.to_string())
    }
}

/// Tornado's `WebSocketClosedError`, carrying `why`.
pub fn closed_error(py: Python<'_>, why: &str) -> PyErr {
    static CLOSED: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match CLOSED.import(py, "tornado.websocket", "WebSocketClosedError") {
        Ok(ty) => PyErr::from_type(ty.clone(), (why.to_string(),)),
        Err(e) => e,
    }
}

/// A close by connection id as Python sees it: `True` done (or handed to
/// the bus), `False` when no live node has the connection, `ValueError`
/// for a code or reason that may not be sent.
pub fn close_result(py: Python<'_>, result: Result<(), SendError>) -> PyResult<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.is_invalid_argument() => Err(send_error(py, e)),
        Err(_) => Ok(false),
    }
}
