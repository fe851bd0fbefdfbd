//! `polysocket._native`: the Rust side of the Python package. Thin: it
//! translates types and moves bytes; protocol logic lives in `polysocket`
//! (core/).

use pyo3::prelude::*;

mod config;
mod connection;
mod message;
mod server;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<config::ServerOptions>()?;
    m.add_class::<server::NativeServer>()?;
    m.add_class::<connection::Connection>()?;
    m.add_class::<connection::Done>()?;
    Ok(())
}
