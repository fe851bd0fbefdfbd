//! Python values to [`Message`]s, with at most one copy of the payload
//! (none for large `bytes`, whose buffer is shared with Rust).

use bytes::Bytes;
use polysocket::Message;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

/// Below this size a copy is cheaper than sharing the Python object.
const SHARE_AT: usize = 16 * 1024;

/// A `bytes` object lent to Rust: immutable, so its buffer can be read
/// without the GIL while the reference keeps it alive.
struct Lent {
    _owner: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: a `bytes` object's buffer never changes or moves while a
// reference to it exists; `Py` itself is Send + Sync (its drop is deferred
// to a thread holding the GIL).
unsafe impl Send for Lent {}
unsafe impl Sync for Lent {}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see `Lent`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

fn bytes_of(b: &Bound<'_, PyBytes>) -> Bytes {
    let data = b.as_bytes();
    if data.len() < SHARE_AT {
        Bytes::copy_from_slice(data)
    } else {
        Bytes::from_owner(Lent {
            ptr: data.as_ptr(),
            len: data.len(),
            _owner: b.clone().unbind(),
        })
    }
}

/// Tornado's rules: `dict` is sent as JSON text; `str` as text, or as
/// binary when `binary`; bytes-like as binary, or as text when not
/// `binary` (then it must be UTF-8).
pub fn to_message(obj: &Bound<'_, PyAny>, binary: bool) -> PyResult<Message> {
    if let Ok(s) = obj.cast::<PyString>() {
        // abi3-py39 has no borrowed UTF-8 view of a str: encode, then
        // share or copy like bytes.
        let data = bytes_of(&s.encode_utf8()?);
        return Ok(if binary {
            Message::Binary(data)
        } else {
            Message::Text(data)
        });
    }
    let data = if let Ok(b) = obj.cast::<PyBytes>() {
        bytes_of(b)
    } else if let Ok(b) = obj.cast::<PyByteArray>() {
        Bytes::from(b.to_vec())
    } else if obj.is_instance_of::<PyDict>() {
        static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let text = DUMPS.import(obj.py(), "json", "dumps")?.call1((obj,))?;
        return to_message(&text, binary);
    } else if let Ok(view) = obj.call_method0("tobytes") {
        // memoryview and other buffer exporters with tobytes()
        bytes_of(&view.cast_into::<PyBytes>()?)
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
