//! The tokio runtime: servers and clients that do all I/O, handshakes and
//! framing in Rust on top of the sans-I/O engine (feature `runtime`).
//!
//! * [`server`]: [`Server`] with a [`Handler`] called on each connection's
//!   task, a [`ServerHandle`] for other threads, limits and policy.
//! * [`events`]: [`EventQueue`], a handler that queues events for a
//!   foreign event loop behind a wake-up descriptor (the bindings).
//! * [`tls`], [`stream`]: `wss://` from PEM files.

pub mod client;
#[cfg(feature = "cluster")]
pub mod cluster;
mod current;
mod error;
pub mod events;
mod h2stream;
pub mod server;
pub mod stream;
pub mod tls;

pub use client::{connect, ConnectOptions, Http2Connection, WebSocket};
#[cfg(feature = "cluster")]
pub use cluster::{ClusterConfig, ClusterStats};
pub use error::RuntimeError;
pub use events::{EventQueue, ServerEvent};
pub use server::{
    bind_listener, parse_trusted_proxies, serve_listener, CloseInfo, Conn, ConnId, Handler, IpNet,
    Limit, OpenInfo, Server, ServerConfig, ServerHandle, Stats, ACCESS_LOG, OVERLOAD_CLOSE,
    UNCOUNTED,
};
pub use stream::Stream;

/// An RFC 6455 server engine with the default configuration, for the
/// runtime's unit tests.
#[cfg(test)]
fn test_engine() -> crate::protocol::Connection {
    use crate::session::{Role, Session};
    let session = Session::plain(Role::Server, crate::draft::Draft::Rfc6455);
    crate::protocol::Connection::new(
        std::sync::Arc::new(crate::config::Config::default()),
        session,
    )
}
