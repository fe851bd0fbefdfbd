//! SKELETON: deflate-frame codec.
use bytes::BytesMut;

use super::DeflateFrameParams;
use crate::error::ProtocolError;
use crate::session::Role;

/// Per-connection deflate-frame state: every data frame with RSV1 is
/// compressed on its own (window carried over unless no_context_takeover).
pub struct DeflateFrame {}

impl DeflateFrame {
    pub fn new(params: &DeflateFrameParams, role: Role, level: u32) -> Self {
        let _ = (params, role, level);
        DeflateFrame {}
    }
    /// Append the compressed form of one frame payload (tail removed).
    pub fn compress(&mut self, payload: &[u8], out: &mut BytesMut) {
        let _ = (payload, out);
    }
    /// Inflate one RSV1 frame payload, appending to `out`; fails as soon as
    /// `out.len()` would exceed `limit`.
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let _ = (input, out, limit);
        Ok(())
    }
}
