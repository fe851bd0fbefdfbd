//! `polysocket._native`: the Rust side of the Python package. Thin: it
//! translates types and moves bytes; protocol logic lives in `polysocket`
//! (core/).

mod cluster;
mod connection;
mod engine;
mod error;
mod handshake;
mod logs;
mod message;
mod options;
mod reactor;
mod server;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    logs::install();
    // The sans-I/O engine for Python I/O loops (the Tornado drop-in, the
    // asyncio client).
    m.add_class::<engine::Engine>()?;
    m.add_class::<handshake::ServerHandshake>()?;
    m.add_class::<handshake::ClientHandshake>()?;
    m.add("ClosedError", m.py().get_type::<engine::ClosedError>())?;
    m.add(
        "HandshakeError",
        m.py().get_type::<handshake::HandshakeError>(),
    )?;
    m.add("TEXT", engine::TEXT)?;
    m.add("BINARY", engine::BINARY)?;
    m.add("CLOSE", engine::CLOSE)?;
    m.add("PING", engine::PING)?;
    m.add("PONG", engine::PONG)?;
    m.add("FAILED", engine::FAILED)?;
    // The standalone server: the runtime's event queue, drained on the
    // asyncio loop.
    m.add_class::<options::ServerOptions>()?;
    m.add_class::<server::NativeServer>()?;
    m.add_class::<reactor::Reactor>()?;
    m.add_class::<connection::Connection>()?;
    m.add_class::<connection::Done>()?;
    // The cluster for connections of a Python I/O loop (the Tornado drop-in).
    m.add_class::<cluster::ClusterNode>()?;
    m.add_class::<cluster::Prepared>()?;
    Ok(())
}
