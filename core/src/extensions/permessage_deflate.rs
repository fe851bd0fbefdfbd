//! SKELETON: permessage-deflate codec.
use bytes::BytesMut;

use super::PmdParams;
use crate::error::ProtocolError;
use crate::session::Role;

/// Per-connection permessage-deflate state (one compressor for what we
/// send, one decompressor for what we receive).
pub struct PerMessageDeflate {}

impl PerMessageDeflate {
    pub fn new(params: &PmdParams, role: Role, level: u32) -> Self {
        let _ = (params, role, level);
        PerMessageDeflate {}
    }
    /// Append the compressed form of one whole message to `out` (trailing
    /// `00 00 FF FF` removed); resets our context if our side has
    /// no_context_takeover.
    pub fn compress(&mut self, payload: &[u8], out: &mut BytesMut) {
        let _ = (payload, out);
    }
    /// Inflate one frame's payload of a compressed message, appending to
    /// `out` (the message so far). `fin` marks the last frame: the
    /// `00 00 FF FF` tail is fed, and the peer's context reset if it has
    /// no_context_takeover. Fails with `DecompressedTooLarge(limit)` as soon
    /// as `out.len()` would exceed `limit`.
    pub fn decompress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let _ = (input, fin, out, limit);
        Ok(())
    }
}
