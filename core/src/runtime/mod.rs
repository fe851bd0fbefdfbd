//! The tokio runtime: servers and clients that do all I/O, handshakes and
//! framing in Rust on top of the sans-I/O engine (feature `runtime`).

pub mod client;
mod error;
pub mod stream;
pub mod tls;

pub use client::{connect, ConnectOptions, WebSocket};
pub use error::RuntimeError;
pub use stream::Stream;
