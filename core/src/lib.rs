//! # polysocket
//!
//! A sans-I/O WebSocket engine that speaks every version of the protocol
//! that clients ever shipped: hixie-75, hixie-76 (= hybi-00), hybi-01..17
//! and RFC 6455, with permessage-deflate, deflate-frame and deflate-stream.
//!
//! Bytes in, events out; calls in, bytes out. Nothing here touches a socket,
//! spawns a thread or awaits: the runtime and the Python/PHP bindings move
//! bytes and call handlers, the protocol logic lives here once.
//!
//! * [`handshake`]: server and client opening handshakes for every draft,
//!   incremental, with draft detection.
//! * [`framing`]: frame decoders and encoders for the sentinel (hixie) and
//!   the three length-prefixed binary families.
//! * [`protocol`]: [`Connection`], the message layer on top of the framing:
//!   reassembly, UTF-8 validation, ping/pong, the close handshake and
//!   compression.
//! * [`extensions`]: negotiation and codecs of the compression extensions.

#![warn(missing_docs)]

pub mod config;
pub mod draft;
pub mod error;
pub mod extensions;
pub mod framing;
pub mod handshake;
pub mod http;
pub mod protocol;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod session;
pub mod utf8;

pub use config::{Config, ExtensionsConfig, PerMessageDeflateConfig, Strictness};
pub use draft::{Draft, DraftSet};
pub use error::{Error, HandshakeError, ProtocolError, SendError};
pub use protocol::{Connection, Event, EventRef, Incoming, Message, PreparedMessage, Tally};
pub use session::{Role, Session};
