//! deflate-frame / x-webkit-deflate-frame: every RSV1 frame is one raw
//! DEFLATE unit, sync-flushed, with the `00 00 FF FF` tail stripped.

use bytes::BytesMut;

use super::deflate::{Direction, UnitCodec};
use super::DeflateFrameParams;
use crate::error::ProtocolError;
use crate::session::Role;

/// Per-connection deflate-frame state: every data frame with RSV1 is
/// compressed on its own (window carried over unless no_context_takeover).
pub struct DeflateFrame {
    codec: UnitCodec,
}

impl DeflateFrame {
    /// `level` is the zlib level (0..=9) of our compressor; `role` decides
    /// which of the agreed `server_*` / `client_*` parameters are ours.
    pub fn new(params: &DeflateFrameParams, role: Role, level: u32) -> Self {
        let server = Direction {
            window_bits: params.server_max_window_bits,
            no_context_takeover: params.server_no_context_takeover,
        };
        let client = Direction {
            window_bits: params.client_max_window_bits,
            no_context_takeover: params.client_no_context_takeover,
        };
        DeflateFrame {
            codec: UnitCodec::new(role, level, server, client),
        }
    }

    /// Append the compressed form of one frame payload (tail removed).
    pub fn compress(&mut self, payload: &[u8], out: &mut BytesMut) {
        self.codec.compress(payload, out);
    }

    /// See [`UnitCodec::release_compressor`].
    pub(crate) fn release_compressor(&mut self) {
        self.codec.release_compressor();
    }

    /// Inflate one RSV1 frame payload, appending to `out`; fails as soon as
    /// `out.len()` would exceed `limit`.
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        self.codec.decompress(input, true, out, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(server_nct: bool, client_nct: bool) -> DeflateFrameParams {
        DeflateFrameParams {
            webkit_name: true,
            server_max_window_bits: 15,
            server_no_context_takeover: server_nct,
            client_max_window_bits: 15,
            client_no_context_takeover: client_nct,
        }
    }

    fn frame(codec: &mut DeflateFrame, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        codec.compress(payload, &mut out);
        out.to_vec()
    }

    #[test]
    fn every_frame_is_flushed_and_stripped() {
        let mut client = DeflateFrame::new(&params(false, false), Role::Client, 6);
        let mut server = DeflateFrame::new(&params(false, false), Role::Server, 6);
        let first = frame(&mut client, b"Hello");
        let second = frame(&mut client, b"Hello");
        assert_eq!(hex::encode(&first), "f248cdc9c90700");
        assert_eq!(hex::encode(&second), "f200110000");
        assert_eq!(frame(&mut client, b""), [0]);
        let mut out = BytesMut::new();
        for f in [&first[..], &second[..], &[0][..]] {
            server.decompress(f, &mut out, 100).unwrap();
        }
        assert_eq!(&out[..], b"HelloHello");
    }

    #[test]
    fn no_context_takeover_is_per_side() {
        // The client's compressor resets, the server's keeps its window.
        let p = params(false, true);
        let mut client = DeflateFrame::new(&p, Role::Client, 6);
        let mut server = DeflateFrame::new(&p, Role::Server, 6);
        assert_eq!(frame(&mut client, b"Hello"), frame(&mut client, b"Hello"));
        assert_ne!(frame(&mut server, b"Hello"), frame(&mut server, b"Hello"));
    }

    #[test]
    fn limit_and_corruption() {
        let mut client = DeflateFrame::new(&params(false, false), Role::Client, 6);
        let mut server = DeflateFrame::new(&params(false, false), Role::Server, 6);
        let f = frame(&mut client, &[0u8; 500]);
        let mut out = BytesMut::new();
        assert_eq!(
            server.decompress(&f, &mut out, 499),
            Err(ProtocolError::DecompressedTooLarge(499))
        );
        let mut server = DeflateFrame::new(&params(false, false), Role::Server, 6);
        let r = server.decompress(&[0xff, 0xff, 0xff], &mut BytesMut::new(), 100);
        assert!(matches!(r, Err(ProtocolError::Compression(_))), "{r:?}");
    }
}
