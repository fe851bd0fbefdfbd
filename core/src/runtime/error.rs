//! Errors of the runtime: I/O and TLS set-up on top of the engine's errors.

use crate::error::{HandshakeError, ProtocolError, SendError};

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A socket operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Certificates, keys or a TLS handshake.
    #[error("TLS: {0}")]
    Tls(String),
    /// The WebSocket opening handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The peer violated the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A send the connection's draft or state does not allow.
    #[error(transparent)]
    Send(SendError),
    /// A `ws://` / `wss://` URL that cannot be used.
    #[error("invalid URL {0:?}: {1}")]
    Url(String, &'static str),
    /// A configured time limit ran out.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The connection is closed (or the server stopped).
    #[error("connection closed")]
    Closed,
    /// A configuration value that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
}
