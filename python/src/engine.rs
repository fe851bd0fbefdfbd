//! `Engine`: one WebSocket connection's protocol state (core's sans-I/O
//! `Connection`) for Python I/O loops. Python feeds what it read and
//! writes what `take_output` returns; many frames cross in one call.

use std::borrow::Cow;

use polysocket::protocol::{State, ABNORMAL, NO_STATUS};
use polysocket::{Connection, Event, EventRef, Message, ProtocolError, SendError};
use pyo3::create_exception;
use pyo3::exceptions::{PyConnectionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString, PyTuple};

create_exception!(
    _native,
    ClosedError,
    PyConnectionError,
    "The connection is closing or closed: nothing more can be sent."
);

/// Event kinds in `Engine.receive`'s list: `(kind, payload)`. The data
/// kinds are the RFC 6455 opcodes, so Tornado's `_handle_message(opcode,
/// data)` hook sees what it always saw.
pub const TEXT: i32 = 1;
pub const BINARY: i32 = 2;
pub const CLOSE: i32 = 8;
pub const PING: i32 = 9;
pub const PONG: i32 = 10;
/// The peer broke the protocol: payload `(code, reason)` of the close
/// frame we queued (drafts without close frames queue nothing).
pub const FAILED: i32 = -1;

/// Buffers above this size are freed once empty (see `take_output`).
const RELEASE_ABOVE: usize = 1 << 20;

/// One connection: the engine plus the byte counters Tornado exposes.
#[pyclass(module = "polysocket._native")]
pub struct Engine {
    conn: Connection,
    message_bytes_in: u64,
    message_bytes_out: u64,
    wire_bytes_in: u64,
    wire_bytes_out: u64,
}

/// Tornado's wording for the limits (its tests compare close reasons).
fn failure_reason(error: &ProtocolError) -> String {
    match error {
        ProtocolError::MessageTooLarge(_) | ProtocolError::FrameTooLarge(_) => {
            "message too big".into()
        }
        ProtocolError::DecompressedTooLarge(_) => "message too big after decompression".into(),
        other => other.to_string(),
    }
}

fn send_error(e: SendError) -> PyErr {
    match e {
        SendError::Closed => ClosedError::new_err(e.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// `bytes`, `bytearray`/`memoryview` (copied) or `str` (UTF-8) as bytes.
fn payload<'a>(data: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(s) = data.cast::<PyString>() {
        return Ok(match s.to_cow()? {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        });
    }
    data.extract::<Vec<u8>>().map(Cow::Owned).map_err(|_| {
        PyTypeError::new_err(format!(
            "expected str or bytes, not {}",
            data.get_type().name().map_or("?".into(), |n| n.to_string())
        ))
    })
}

impl Engine {
    pub fn new(mut conn: Connection) -> Self {
        conn.set_failure_reason(failure_reason);
        Engine {
            conn,
            message_bytes_in: 0,
            message_bytes_out: 0,
            wire_bytes_in: 0,
            wire_bytes_out: 0,
        }
    }
}

/// One event as `(kind, payload)`; message sizes are added to `counted`.
/// The payload is copied once, straight into the Python object.
fn event_tuple<'py>(
    py: Python<'py>,
    e: EventRef<'_>,
    counted: &mut u64,
) -> PyResult<Bound<'py, PyTuple>> {
    let (kind, obj): (i32, Bound<'py, PyAny>) = match e {
        EventRef::Text(t) => {
            *counted += t.len() as u64;
            (TEXT, PyString::new(py, t).into_any())
        }
        EventRef::Binary(b) => {
            *counted += b.len() as u64;
            (BINARY, PyBytes::new(py, b).into_any())
        }
        EventRef::Event(Event::Message(m)) => {
            *counted += m.data().len() as u64;
            match m.as_text() {
                Some(t) => (TEXT, PyString::new(py, t).into_any()),
                None => (BINARY, PyBytes::new(py, m.data()).into_any()),
            }
        }
        EventRef::Event(Event::Ping(p)) => (PING, PyBytes::new(py, &p).into_any()),
        EventRef::Event(Event::Pong(p)) => (PONG, PyBytes::new(py, &p).into_any()),
        EventRef::Event(Event::Close(f)) => {
            // Tornado reports "no code" and "no reason" as None.
            let code = (f.code != NO_STATUS && f.code != ABNORMAL).then_some(f.code);
            let reason = (!f.reason.is_empty()).then_some(f.reason);
            (CLOSE, (code, reason).into_pyobject(py)?.into_any())
        }
    };
    PyTuple::new(py, [kind.into_pyobject(py)?.into_any(), obj])
}

#[pymethods]
impl Engine {
    /// Feed received bytes (`bytes` or `bytearray`); returns every event they complete, in order,
    /// as `(kind, payload)` tuples. A protocol violation ends the list with
    /// `(FAILED, (code, reason))`; the matching close frame is then queued.
    fn receive<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let n = if let Ok(array) = data.cast::<PyByteArray>() {
            // SAFETY: no Python code runs while the slice is borrowed (the
            // engine only copies it), so the bytearray cannot be resized.
            let bytes = unsafe { array.as_bytes() };
            self.conn.receive(bytes);
            bytes.len()
        } else {
            let bytes = data.cast::<PyBytes>()?.as_bytes();
            self.conn.receive(bytes);
            bytes.len()
        };
        self.wire_bytes_in += n as u64;
        let events = PyList::empty(py);
        loop {
            match self.conn.poll_ref() {
                Ok(Some(e)) => events.append(event_tuple(py, e, &mut self.message_bytes_in)?)?,
                Ok(None) => break,
                Err(err) => {
                    let failed = (FAILED, (err.close_code(), failure_reason(&err)));
                    events.append(failed.into_pyobject(py)?)?;
                    break;
                }
            }
        }
        Ok(events)
    }

    /// Queue a data message: `str` or `bytes`, sent as text unless `binary`.
    /// Text given as bytes is sent as it is (Tornado does not check it).
    #[pyo3(signature = (data, binary=false))]
    fn send(&mut self, data: &Bound<'_, PyAny>, binary: bool) -> PyResult<()> {
        let bytes = payload(data)?;
        let result = if binary {
            self.conn.send_binary(&bytes)
        } else {
            match std::str::from_utf8(&bytes) {
                Ok(text) => self.conn.send_text(text),
                Err(_) => self
                    .conn
                    .send(&Message::Text(bytes::Bytes::copy_from_slice(&bytes))),
            }
        };
        result.map_err(send_error)?;
        self.message_bytes_out += bytes.len() as u64;
        Ok(())
    }

    /// Queue a ping (at most 125 bytes; `ValueError` beyond, or on a draft
    /// without pings).
    fn ping(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.conn.send_ping(&payload(data)?).map_err(send_error)
    }

    /// Queue a pong (the answer to a ping, or a heartbeat).
    fn pong(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.conn.send_pong(&payload(data)?).map_err(send_error)
    }

    /// Start the close handshake (Tornado's rules: a reason without a code
    /// means 1000). On hixie-75, which has no close frame, the connection
    /// is closed at once.
    #[pyo3(signature = (code=None, reason=None))]
    fn close(&mut self, code: Option<u16>, reason: Option<&str>) -> PyResult<()> {
        let code = code.or(reason.map(|_| 1000));
        self.conn
            .close(code, reason.unwrap_or_default())
            .map_err(send_error)
    }

    /// Every byte waiting to be written (empty `bytes` when none).
    fn take_output<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let out = self.conn.pending_output();
        let bytes = PyBytes::new(py, out);
        let n = out.len();
        self.conn.advance_output(n);
        self.wire_bytes_out += n as u64;
        if n > RELEASE_ABOVE {
            // A connection that once sent a large message gives the memory
            // back (not for every mid-sized one: that would reallocate the
            // buffers for each message).
            self.conn.release_buffers(RELEASE_ABOVE);
        }
        bytes
    }

    /// Whether bytes wait to be written.
    #[getter]
    fn has_output(&self) -> bool {
        self.conn.has_output()
    }

    /// `"open"`, `"closing"` (our close sent) or `"closed"` (both closes
    /// exchanged, or failed: close TCP once the output is written).
    #[getter]
    fn state(&self) -> &'static str {
        match self.conn.state() {
            State::Open => "open",
            State::Closing => "closing",
            State::Closed => "closed",
        }
    }

    /// The negotiated draft's name (`"rfc6455"`, `"hixie-76"`, ...).
    #[getter]
    fn draft(&self) -> &'static str {
        self.conn.draft().name()
    }

    /// The subprotocol agreed on, if any.
    #[getter]
    fn subprotocol(&self) -> Option<String> {
        self.conn.session().subprotocol.clone()
    }

    /// The compression extension in force: `"permessage-deflate"`,
    /// `"deflate-frame"`, `"deflate-stream"` or None.
    #[getter]
    fn extension(&self) -> Option<&'static str> {
        use polysocket::extensions::Agreed;
        match self.conn.session().extensions {
            Agreed::None => None,
            Agreed::PerMessageDeflate(_) => Some("permessage-deflate"),
            Agreed::DeflateFrame(_) => Some("deflate-frame"),
            Agreed::DeflateStream => Some("deflate-stream"),
        }
    }

    /// Whether the draft has ping and pong frames (hybi-01 on).
    #[getter]
    fn has_ping(&self) -> bool {
        self.conn.draft().has_ping()
    }

    /// Whether the draft has binary messages (hybi-01 on).
    #[getter]
    fn has_binary(&self) -> bool {
        self.conn.draft().has_binary()
    }

    /// Payload bytes of the data messages received (after inflation).
    #[getter]
    fn message_bytes_in(&self) -> u64 {
        self.message_bytes_in
    }

    /// Payload bytes of the data messages sent (before compression).
    #[getter]
    fn message_bytes_out(&self) -> u64 {
        self.message_bytes_out
    }

    /// Bytes received since the handshake.
    #[getter]
    fn wire_bytes_in(&self) -> u64 {
        self.wire_bytes_in
    }

    /// Bytes handed out by `take_output`.
    #[getter]
    fn wire_bytes_out(&self) -> u64 {
        self.wire_bytes_out
    }
}
