//! `Engine`: one WebSocket connection's protocol state (core's sans-I/O
//! `Connection`) for Python I/O loops. Python feeds what it read, iterates
//! the events, and writes what `take_output` returns; many frames cross in
//! one call each way.

use std::borrow::Cow;
use std::io::IoSlice;

use bytes::Bytes;

use polysocket::protocol::{State, ABNORMAL, NO_STATUS};
use polysocket::{Connection, Event, EventRef, Message, ProtocolError, SendError};
use pyo3::create_exception;
use pyo3::exceptions::{PyBufferError, PyConnectionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyMemoryView, PyString, PyTuple};

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

/// Buffers above this size are freed by `release_buffers` once empty.
const RELEASE_ABOVE: usize = 64 * 1024;
/// The largest `read_view` beyond the rest of a frame (`awaited`): the
/// Tornado drop-in asks for at most 256 KiB otherwise. Without a bound a
/// caller's `read_view(2**40)` made the allocator abort the interpreter
/// (found by python/tests/standalone/fuzz_args.py).
const READ_VIEW_MAX: usize = 1 << 20;
/// Binary `bytes` from this size on are sent from the object itself; the
/// engine writes such payloads from their own buffer. Smaller ones are
/// copied into its output buffer: a stream (Tornado's) writes each piece
/// handed back with a send of its own, which costs more than copying up
/// to about this size (measured on the drop-in's 64 KiB echo: 164 µs of
/// server CPU per message shared, 148 copied).
const SHARE_MIN: usize = 256 * 1024;

/// One connection: the engine plus the byte counters Tornado exposes.
#[pyclass(module = "polysocket._native")]
pub struct Engine {
    conn: Connection,
    message_bytes_in: u64,
    message_bytes_out: u64,
    wire_bytes_in: u64,
    wire_bytes_out: u64,
    /// Large `bytes` sent from the object itself since the last
    /// `take_output`, as (address, length, object): handed back instead
    /// of copied.
    sent_whole: Vec<(usize, usize, Py<PyBytes>)>,
    /// The spare room of the receive buffer lent by `read_view` (address,
    /// length), until `commit` or anything that touches the buffer.
    window: Option<(usize, usize)>,
    /// Buffer views of `window` still held by Python: while any is, nothing
    /// may move or free the receive buffer.
    exports: usize,
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

/// Core's classification (see `crate::error`): a bad argument is a
/// `ValueError`; anything else means this connection can send no more, which
/// the drop-in and the client translate to their own closed errors.
fn send_error(e: SendError) -> PyErr {
    if e.is_invalid_argument() {
        PyValueError::new_err(e.to_string())
    } else {
        ClosedError::new_err(e.to_string())
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
    /// Copy received bytes into the engine; room for the rest of a large
    /// frame on its way is made at once (one allocation, not one per
    /// doubling). Returns how many bytes were taken.
    fn feed(&mut self, bytes: &[u8]) -> PyResult<usize> {
        if self.exports > 0 {
            return Err(PyBufferError::new_err(
                "a read view of the engine is still held: release it first",
            ));
        }
        self.window = None;
        if self.conn.state() == State::Closed {
            return Ok(bytes.len());
        }
        let awaited = self.conn.awaited_bytes();
        let buf = self.conn.receive_buffer();
        buf.reserve(bytes.len().max(awaited));
        buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    pub fn new(mut conn: Connection) -> Self {
        conn.set_failure_reason(failure_reason);
        Engine {
            conn,
            message_bytes_in: 0,
            message_bytes_out: 0,
            wire_bytes_in: 0,
            wire_bytes_out: 0,
            sent_whole: Vec::new(),
            window: None,
            exports: 0,
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
    /// Feed received bytes (`bytes`, or the first `n` bytes of a
    /// `bytearray` that the caller reuses between reads) and return the
    /// engine as an iterator over the events they complete, in order, as
    /// `(kind, payload)` tuples. Each event is decoded when the iteration
    /// asks for it, so that what the caller does with one (an echo) is
    /// queued before the next frame is even looked at: a message followed
    /// by an invalid frame gets its answer out before the close. A protocol
    /// violation ends the events with `(FAILED, (code, reason))`; the
    /// matching close frame is then queued.
    #[pyo3(signature = (data, n=None))]
    fn receive<'py>(
        mut slf: PyRefMut<'py, Self>,
        data: &Bound<'py, PyAny>,
        n: Option<usize>,
    ) -> PyResult<PyRefMut<'py, Self>> {
        let fed = if let Ok(array) = data.cast::<PyByteArray>() {
            // SAFETY: `as_bytes` requires that the bytearray is not resized
            // or freed while the slice lives. The slice lives only inside
            // this block, where no Python code runs (the engine copies it
            // into its own buffer, and we hold the GIL), so nothing can
            // resize the bytearray meanwhile.
            let bytes = unsafe { array.as_bytes() };
            slf.feed(&bytes[..n.unwrap_or(bytes.len()).min(bytes.len())])?
        } else {
            let bytes = data.cast::<PyBytes>()?.as_bytes();
            slf.feed(&bytes[..n.unwrap_or(bytes.len()).min(bytes.len())])?
        };
        slf.wire_bytes_in += fed as u64;
        Ok(slf)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next event of what was received, or the end of them for now.
    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        match self.conn.poll_ref() {
            Ok(Some(e)) => event_tuple(py, e, &mut self.message_bytes_in).map(Some),
            Ok(None) => Ok(None),
            Err(err) => {
                let failed = (FAILED, (err.close_code(), failure_reason(&err)));
                Ok(Some(failed.into_pyobject(py)?))
            }
        }
    }

    /// Queue a data message: `str` or `bytes`, sent as text unless `binary`.
    /// Text given as bytes is sent as it is (Tornado does not check it).
    #[pyo3(signature = (data, binary=false))]
    fn send(&mut self, data: &Bound<'_, PyAny>, binary: bool) -> PyResult<()> {
        if binary && data.len().is_ok_and(|n| n >= SHARE_MIN) {
            if let Ok(b) = data.cast::<PyBytes>() {
                // A large `bytes` is written from the object itself (kept
                // alive until written) instead of being copied.
                let payload = b.as_bytes();
                let whole = (payload.as_ptr() as usize, payload.len());
                let shared = Bytes::from_owner(PyBackedBytes::from(b.clone()));
                self.conn
                    .send(&Message::Binary(shared))
                    .map_err(send_error)?;
                self.sent_whole.push((whole.0, whole.1, b.clone().unbind()));
                self.message_bytes_out += whole.1 as u64;
                return Ok(());
            }
        }
        let bytes = payload(data)?;
        let result = if binary {
            self.conn.send_binary(&bytes)
        } else {
            match std::str::from_utf8(&bytes) {
                Ok(text) => self.conn.send_text(text),
                Err(_) => self
                    .conn
                    .send(&Message::Text(Bytes::copy_from_slice(&bytes))),
            }
        };
        result.map_err(send_error)?;
        self.message_bytes_out += bytes.len() as u64;
        Ok(())
    }

    /// Queue a message prepared once for many connections (its frame is
    /// copied, not encoded again, on a server connection).
    fn send_prepared(&mut self, prepared: &crate::cluster::Prepared) -> PyResult<()> {
        self.conn.send_prepared(&prepared.0).map_err(send_error)?;
        self.message_bytes_out += prepared.0.message().data().len() as u64;
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

    /// Every byte waiting to be written, in order: one `bytes` (empty when
    /// none), or, when large `bytes` sent as binary messages are among
    /// them, a list of `bytes` in which those are the very objects sent
    /// (nothing copied).
    fn take_output<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pieces = {
            let mut probe = [IoSlice::new(&[]); 2];
            self.conn.output_slices(&mut probe)
        };
        if pieces < 2 {
            // The usual case: one buffer, copied once; it keeps its
            // capacity for the next messages.
            let bytes = PyBytes::new(py, self.conn.pending_output());
            let n = bytes.as_bytes().len();
            self.conn.advance_output(n);
            self.wire_bytes_out += n as u64;
            self.sent_whole.clear();
            return Ok(bytes.into_any());
        }
        let total = self.conn.output_len();
        let list = PyList::empty(py);
        {
            // Each large piece is at least SHARE_MIN, with at most one
            // small piece before it.
            let mut slices = vec![IoSlice::new(&[]); 2 * (total / SHARE_MIN) + 2];
            let count = self.conn.output_slices(&mut slices);
            for piece in &slices[..count] {
                // A piece is an object's payload exactly when it starts at
                // that payload and has its length: the object, kept alive
                // in `sent_whole`, cannot have been freed and reused.
                let at = (piece.as_ptr() as usize, piece.len());
                match self.sent_whole.iter().position(|(p, n, _)| (*p, *n) == at) {
                    Some(i) => list.append(self.sent_whole.swap_remove(i).2)?,
                    None => list.append(PyBytes::new(py, piece))?,
                }
            }
        }
        self.sent_whole.clear();
        self.conn.advance_output(total);
        self.wire_bytes_out += total as u64;
        Ok(list.into_any())
    }

    /// Give back the memory of empty buffers above 64 KiB (receive,
    /// output, compression) and the compressor if it keeps no context
    /// between messages: for an I/O loop to call once a connection has
    /// gone quiet (not after each message: they would be allocated again
    /// for the next).
    fn release_buffers(&mut self) {
        // A buffer lent to a read is in use, not idle.
        if self.exports == 0 {
            self.window = None;
            self.conn.release_buffers(RELEASE_ABOVE);
            self.conn.release_compressor();
        }
    }

    /// A writable `memoryview` of `size` bytes of free room at the end of
    /// the receive buffer, for a stream to read into (Tornado's
    /// `read_into`); then release the view and `commit(n)` the bytes read.
    /// This saves the copy that `receive` makes: for the rest of a large
    /// frame (`awaited`). Only in builds for CPython 3.11+, whose stable
    /// ABI has the buffer protocol.
    #[cfg(any(Py_3_11, not(Py_LIMITED_API)))]
    fn read_view<'py>(slf: &Bound<'py, Self>, size: usize) -> PyResult<Bound<'py, PyMemoryView>> {
        {
            let mut this = slf.borrow_mut();
            if this.exports > 0 {
                return Err(PyBufferError::new_err("a read view is still held"));
            }
            let limit = this.conn.awaited_bytes().max(READ_VIEW_MAX);
            if size > limit {
                return Err(PyValueError::new_err(format!(
                    "read_view({size}): more than the {limit} bytes a read may need"
                )));
            }
            let buf = this.conn.receive_buffer();
            buf.reserve(size);
            let at = buf.spare_capacity_mut().as_mut_ptr() as usize;
            this.window = Some((at, size));
        }
        PyMemoryView::from(slf.as_any())
    }

    /// Take the first `n` bytes that a read wrote into the last
    /// `read_view` (released by then) as received; iterate the engine for
    /// the events they complete.
    #[cfg(any(Py_3_11, not(Py_LIMITED_API)))]
    fn commit(mut slf: PyRefMut<'_, Self>, n: usize) -> PyResult<PyRefMut<'_, Self>> {
        let Some((at, size)) = slf.window else {
            return Err(PyValueError::new_err("commit() without a read_view()"));
        };
        if n > size {
            return Err(PyValueError::new_err(format!(
                "commit({n}) beyond the read view of {size} bytes"
            )));
        }
        slf.window = None;
        slf.wire_bytes_in += n as u64;
        if slf.conn.state() == State::Closed {
            return Ok(slf);
        }
        let buf = slf.conn.receive_buffer();
        if buf.spare_capacity_mut().as_ptr() as usize != at {
            return Err(PyValueError::new_err(
                "the receive buffer moved after read_view()",
            ));
        }
        // SAFETY: the `n` bytes after the buffer's end are initialised:
        // they are the start of the `window` (same address, checked just
        // above, so the buffer was not moved or refilled since `read_view`:
        // every call that could has cleared `window`), into which the read
        // wrote them (Python's `recv_into` reports the count written, and
        // `n <= size` fits the room `read_view` reserved).
        unsafe { buf.set_len(buf.len() + n) };
        Ok(slf)
    }

    /// The buffer protocol for `read_view`: the lent window, writable.
    #[cfg(any(Py_3_11, not(Py_LIMITED_API)))]
    unsafe fn __getbuffer__(
        mut slf: PyRefMut<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        let Some((at, size)) = slf.window else {
            return Err(PyBufferError::new_err(
                "the engine lends its buffer only through read_view()",
            ));
        };
        // SAFETY: `view` is the struct CPython asks us to fill; the window
        // is allocated room of `size` bytes in the receive buffer, which
        // stays where it is while `exports > 0` (`receive` and
        // `release_buffers` refuse to touch it, nothing else reallocates
        // it) and the view keeps the engine alive through `obj`. Python
        // may read bytes of it before its read writes them: plain bytes of
        // this process's heap, never read as Rust values until `commit`.
        let rc = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                at as *mut std::ffi::c_void,
                size as isize,
                0,
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        slf.exports += 1;
        Ok(())
    }

    #[cfg(any(Py_3_11, not(Py_LIMITED_API)))]
    unsafe fn __releasebuffer__(mut slf: PyRefMut<'_, Self>, _view: *mut pyo3::ffi::Py_buffer) {
        slf.exports -= 1;
    }

    /// Bytes known to be on their way (the rest of a large frame being
    /// received): a read buffer of this size takes them in one read.
    #[getter]
    fn awaited(&self) -> usize {
        self.conn.awaited_bytes()
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
        self.conn.session().extensions.name()
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
