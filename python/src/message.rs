//! Python values to [`Message`]s, with one copy of the payload.

use bytes::Bytes;
use polysocket::Message;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

/// One copy into a vector-backed `Bytes`, which the engine can take over
/// without copying again (sharing the Python object instead would make the
/// engine copy when it needs a vector, and defer the object's release).
fn bytes_of(b: &Bound<'_, PyBytes>) -> Bytes {
    Bytes::copy_from_slice(b.as_bytes())
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
