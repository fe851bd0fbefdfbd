//! Python values to [`Message`]s, with at most one copy of the payload.

use std::borrow::Cow;

use bytes::Bytes;
use polysocket::Message;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

/// Text at least this long is sent from its encoded `bytes` object itself;
/// shorter text is cheaper to copy than to hand over.
const LEND_AT: usize = 4096;

/// A `bytes` object owned by a `Bytes`: immutable, so its buffer can be
/// read without the GIL while the reference keeps it alive.
struct Lent {
    _owner: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: `Lent` is only read (through `as_ref`), from any thread and
// without the GIL. That is sound because `ptr..ptr + len` is the buffer of
// the `bytes` object `_owner` refers to: a `bytes` object's buffer is part
// of the object, never changes (immutable) and never moves, and `_owner`
// keeps the object alive until `Lent` is dropped. `Py<PyBytes>` itself is
// Send + Sync (dropped without the GIL, pyo3 defers the decref to a thread
// that holds it).
unsafe impl Send for Lent {}
// SAFETY: as for `Send`: shared access only reads an immutable buffer.
unsafe impl Sync for Lent {}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` and `len` were taken from `_owner`'s `as_bytes()`,
        // a buffer that stays valid, initialised and unchanged while
        // `_owner` lives (see the `Send` impl), and `self` borrows `_owner`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The payload of a `bytes` object (the caller's, or one made for this
/// message: a `str` encoded to UTF-8, a memoryview's `tobytes()`): large
/// ones are lent, not copied. `bytes` are immutable, and the runtime writes
/// a large message from the buffer it is given, so the object's own buffer
/// goes to the socket.
fn lend(b: Bound<'_, PyBytes>) -> Bytes {
    let data = b.as_bytes();
    if data.len() < LEND_AT {
        return Bytes::copy_from_slice(data);
    }
    let (ptr, len) = (data.as_ptr(), data.len());
    Bytes::from_owner(Lent {
        _owner: b.unbind(),
        ptr,
        len,
    })
}

/// Tornado's rules: `dict` is sent as JSON text; `str` as text, or as
/// binary when `binary`; bytes-like as binary, or as text when not
/// `binary` (then it must be UTF-8).
pub fn to_message(obj: &Bound<'_, PyAny>, binary: bool) -> PyResult<Message> {
    if let Ok(s) = obj.cast::<PyString>() {
        // The str's own UTF-8 (borrowed from 3.10 on; the stable ABI of 3.9
        // has no such view and encodes a copy): small text is copied once
        // from it, large text sent from a `bytes` (or the copy) as it is.
        let text = s.to_cow()?;
        let data = if text.len() < LEND_AT {
            Bytes::copy_from_slice(text.as_bytes())
        } else {
            match text {
                Cow::Owned(copy) => Bytes::from(copy),
                Cow::Borrowed(_) => lend(s.encode_utf8()?),
            }
        };
        return Ok(if binary {
            Message::Binary(data)
        } else {
            Message::Text(data)
        });
    }
    let data = if let Ok(b) = obj.cast::<PyBytes>() {
        lend(b.clone())
    } else if let Ok(b) = obj.cast::<PyByteArray>() {
        Bytes::from(b.to_vec())
    } else if obj.is_instance_of::<PyDict>() {
        static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let text = DUMPS.import(obj.py(), "json", "dumps")?.call1((obj,))?;
        return to_message(&text, binary);
    } else if let Ok(view) = obj.call_method0("tobytes") {
        // memoryview and other buffer exporters with tobytes()
        lend(view.cast_into::<PyBytes>()?)
    } else {
        return Err(PyTypeError::new_err(format!(
            "a message must be str, bytes, bytearray, memoryview or dict, not {}",
            obj.get_type().name()?
        )));
    };
    if binary {
        Ok(Message::Binary(data))
    } else if std::str::from_utf8(&data).is_ok() {
        Ok(Message::Text(data))
    } else {
        Err(PyValueError::new_err(
            "a text message must be valid UTF-8 (pass binary=True for bytes)",
        ))
    }
}

/// A ping's payload: none, or `str`/bytes-like (the draft's limit is core's).
pub fn ping_data(data: Option<&Bound<'_, PyAny>>) -> PyResult<Bytes> {
    Ok(match data {
        None => Bytes::new(),
        Some(d) => to_message(d, true)?.into_data(),
    })
}

/// A close code from Python: not even a 16-bit number is a `ValueError`
/// (core judges the rest).
pub fn close_code(code: Option<i64>) -> PyResult<Option<u16>> {
    code.map(|c| {
        u16::try_from(c).map_err(|_| PyValueError::new_err(format!("invalid close code {c}")))
    })
    .transpose()
}
