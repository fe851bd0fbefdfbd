//! SKELETON: deflate-stream codec.
use bytes::BytesMut;

use crate::error::ProtocolError;

/// deflate-stream: the whole byte stream in each direction is raw deflate,
/// sync-flushed after every write.
pub struct DeflateStream {}

impl DeflateStream {
    pub fn new(level: u32) -> Self {
        let _ = level;
        DeflateStream {}
    }
    /// Deflate outgoing wire bytes and sync-flush (tail kept), appending to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut BytesMut) {
        let _ = (input, out);
    }
    /// Inflate incoming wire bytes, appending to `out`; fails if one call
    /// would produce more than `limit` bytes.
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
