//! `polysocket._native`: the Rust side of the Python package. Thin: it
//! translates types and moves bytes; protocol logic lives in `polysocket`
//! (core/).

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
