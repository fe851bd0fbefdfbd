//! SKELETON: opening handshakes (server and client) for every draft.
//! The types below are the contract with `protocol` and the runtime.

use bytes::BytesMut;

use crate::session::Session;

/// A completed handshake: the bytes to write (server: the 101 answer) and
/// what was agreed. `leftover` holds bytes received after the handshake;
/// they are the start of the frame stream.
#[derive(Debug)]
pub struct Completed {
    pub response: Vec<u8>,
    pub session: Session,
    pub leftover: BytesMut,
}
