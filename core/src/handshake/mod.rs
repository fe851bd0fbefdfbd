//! Opening handshakes, server and client, for every draft.
//!
//! Both sides are sans-I/O state machines: feed them the bytes read from
//! the peer (any segmentation, down to one byte) and write what they hand
//! back. A server detects the draft from the request (docs/PROTOCOL.md,
//! "Handshakes: detection") and answers in that draft's dialect; a client
//! speaks the draft it is told.
//!
//! ```
//! use std::sync::Arc;
//! use polysocket::handshake::{ClientHandshake, ClientOptions, ServerHandshake, Progress, AcceptOptions};
//! use polysocket::{Config, Draft};
//!
//! let config = Arc::new(Config::default());
//! let mut client = ClientHandshake::new(
//!     config.clone(),
//!     ClientOptions::new(Draft::Rfc6455, "example.com", "/chat"),
//! ).unwrap();
//! let mut server = ServerHandshake::new(config);
//! assert_eq!(server.feed(client.request_bytes()).unwrap(), Progress::Ready);
//! let accepted = server.accept(&AcceptOptions::default()).unwrap();
//! let done = client.feed(&accepted.response).unwrap().unwrap();
//! assert_eq!(done.session.draft, Draft::Rfc6455);
//! ```

mod client;
mod detect;
pub mod extended_connect;
mod hixie75;
pub mod hixie76;
pub mod hybi;
mod request;
mod server;

use bytes::BytesMut;

use crate::session::Session;

pub use client::{ClientHandshake, ClientOptions};
pub use hybi::accept_key;
pub use server::{
    refusal, reject_response, AcceptOptions, Hooks, Progress, Refusal, Rejected, Request,
    ServerHandshake,
};

/// A completed handshake: the bytes to write (server: the 101 answer) and
/// what was agreed. `leftover` holds bytes received after the handshake;
/// they are the start of the frame stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Completed {
    /// Server: the whole 101 answer to write, with hixie-76's 16-byte MD5
    /// body. Client: empty (the request was already sent).
    pub response: Vec<u8>,
    /// Server, for a WebSocket on an HTTP/2 stream (RFC 8441): the `200`
    /// answer's header fields, which the HTTP/2 layer encodes (`response`
    /// is empty then). Empty otherwise.
    pub fields: Vec<(String, String)>,
    /// The draft, role, subprotocol and extension agreed on: what a
    /// [`Connection`](crate::Connection) needs.
    pub session: Session,
    /// Bytes received after the handshake (after hixie-76's key3 on a
    /// server, after the answer on a client): the start of the frame
    /// stream, which [`Connection::from_completed`](crate::Connection::from_completed)
    /// takes over.
    pub leftover: BytesMut,
}
