//! permessage-deflate (RFC 7692): every compressed message is one raw
//! DEFLATE unit, sync-flushed, with the `00 00 FF FF` tail stripped.

use bytes::BytesMut;

use super::deflate::{Direction, UnitCodec};
use super::PmdParams;
use crate::error::ProtocolError;
use crate::session::Role;

/// Per-connection permessage-deflate state (one compressor for what we
/// send, one decompressor for what we receive).
pub struct PerMessageDeflate {
    codec: UnitCodec,
}

impl PerMessageDeflate {
    /// `level` is the zlib level (0..=9) of our compressor; `role` decides
    /// which of the agreed `server_*` / `client_*` parameters are ours.
    pub fn new(params: &PmdParams, role: Role, level: u32) -> Self {
        let server = Direction {
            window_bits: params.server_max_window_bits,
            no_context_takeover: params.server_no_context_takeover,
        };
        let client = Direction {
            window_bits: params.client_max_window_bits,
            no_context_takeover: params.client_no_context_takeover,
        };
        PerMessageDeflate {
            codec: UnitCodec::new(role, level, server, client),
        }
    }

    /// Append the compressed form of one whole message to `out` (trailing
    /// `00 00 FF FF` removed); resets our context if our side has
    /// no_context_takeover.
    pub fn compress(&mut self, payload: &[u8], out: &mut BytesMut) {
        self.codec.compress(payload, out);
    }

    /// See [`UnitCodec::release_compressor`].
    pub(crate) fn release_compressor(&mut self) {
        self.codec.release_compressor();
    }

    /// Inflate one frame's payload of a compressed message, appending to
    /// `out` (the message so far). `fin` marks the last frame: the
    /// `00 00 FF FF` tail is fed. A peer with no_context_takeover needs no
    /// reset on our side (its next message just stops referring back); a
    /// message ending in a BFINAL block does, before the next message.
    /// Fails with `DecompressedTooLarge(limit)` as soon as `out.len()` would
    /// exceed `limit`.
    pub fn decompress(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        self.codec.decompress(input, fin, out, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "f248cdc9c90700";

    fn params(server_nct: bool, client_nct: bool) -> PmdParams {
        PmdParams {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }

    fn compress(codec: &mut PerMessageDeflate, msg: &str) -> String {
        let mut out = BytesMut::new();
        codec.compress(msg.as_bytes(), &mut out);
        hex::encode(out)
    }

    /// Inflates one message given as hex frame payloads.
    fn decompress(codec: &mut PerMessageDeflate, frames: &[&str]) -> Result<String, ProtocolError> {
        let mut out = BytesMut::new();
        for (i, frame) in frames.iter().enumerate() {
            let fin = i + 1 == frames.len();
            codec.decompress(&hex::decode(frame).unwrap(), fin, &mut out, 1 << 20)?;
        }
        Ok(String::from_utf8(out.to_vec()).unwrap())
    }

    #[test]
    fn rfc7692_compression_vectors() {
        let mut server = PerMessageDeflate::new(&params(false, false), Role::Server, 6);
        assert_eq!(compress(&mut server, "Hello"), HELLO);
        // Context takeover: the second message refers back to the first.
        assert_eq!(compress(&mut server, "Hello"), "f200110000");
        assert_eq!(compress(&mut server, ""), "00");
        assert_eq!(compress(&mut server, ""), "00");
        // Our own no_context_takeover restarts every message.
        let mut server = PerMessageDeflate::new(&params(true, false), Role::Server, 6);
        assert_eq!(compress(&mut server, "Hello"), HELLO);
        assert_eq!(compress(&mut server, "Hello"), HELLO);
        // The client's flag only binds a client.
        let mut client = PerMessageDeflate::new(&params(true, false), Role::Client, 6);
        assert_eq!(compress(&mut client, "Hello"), HELLO);
        assert_eq!(compress(&mut client, "Hello"), "f200110000");
    }

    #[test]
    fn rfc7692_decompression_vectors() {
        let mut client = PerMessageDeflate::new(&params(false, false), Role::Client, 6);
        assert_eq!(decompress(&mut client, &[HELLO]).unwrap(), "Hello");
        assert_eq!(decompress(&mut client, &["f200110000"]).unwrap(), "Hello");
        // Fragmented: RSV1 on the first frame only, tail after the last.
        assert_eq!(
            decompress(&mut client, &["f248cd", "c9c90700"]).unwrap(),
            "Hello"
        );
        assert_eq!(
            decompress(&mut client, &["f2", "", "48cdc9c90700"]).unwrap(),
            "Hello"
        );
        assert_eq!(decompress(&mut client, &["00"]).unwrap(), "");
        // A stored block, as a sync flush writes it.
        assert_eq!(
            decompress(&mut client, &["000500faff48656c6c6f00"]).unwrap(),
            "Hello"
        );
        // BFINAL=1 ends the stream; the next message starts a new one.
        assert_eq!(
            decompress(&mut client, &["f348cdc9c9070000"]).unwrap(),
            "Hello"
        );
        assert_eq!(decompress(&mut client, &[HELLO]).unwrap(), "Hello");
        assert_eq!(
            decompress(&mut client, &["f348cdc9c90700", "00"]).unwrap(),
            "Hello"
        );
        assert_eq!(decompress(&mut client, &[HELLO]).unwrap(), "Hello");
        // The stored block exactly as RFC 7692 §7.2.3.3 prints it lacks the
        // header byte of the flush block that follows, so the appended tail
        // leaves the inflater inside a block: it decodes, as a last message.
        assert_eq!(
            decompress(&mut client, &["000500faff48656c6c6f"]).unwrap(),
            "Hello"
        );
    }

    #[test]
    fn peer_no_context_takeover_needs_no_reset() {
        let mut server = PerMessageDeflate::new(&params(false, true), Role::Server, 6);
        for _ in 0..3 {
            assert_eq!(decompress(&mut server, &[HELLO]).unwrap(), "Hello");
        }
    }

    #[test]
    fn limit_counts_the_whole_message() {
        let mut sender = PerMessageDeflate::new(&params(false, false), Role::Server, 6);
        let mut receiver = PerMessageDeflate::new(&params(false, false), Role::Client, 6);
        let mut wire = BytesMut::new();
        sender.compress(&[b'x'; 3000], &mut wire);
        let (a, b) = wire.split_at(wire.len() / 2);
        let mut out = BytesMut::new();
        receiver.decompress(a, false, &mut out, 3000).unwrap();
        receiver.decompress(b, true, &mut out, 3000).unwrap();
        assert_eq!(&out[..], &[b'x'; 3000][..]);

        let mut receiver = PerMessageDeflate::new(&params(false, false), Role::Client, 6);
        let mut out = BytesMut::new();
        assert_eq!(
            receiver.decompress(&wire, true, &mut out, 2999),
            Err(ProtocolError::DecompressedTooLarge(2999))
        );
    }

    #[test]
    fn corrupt_data_is_a_compression_error() {
        let mut client = PerMessageDeflate::new(&params(false, false), Role::Client, 6);
        // A stored block whose NLEN does not match LEN.
        let r = decompress(&mut client, &["000500faee48656c6c6f"]);
        assert!(matches!(r, Err(ProtocolError::Compression(_))), "{r:?}");
        // A distance before the start of the stream.
        let mut client = PerMessageDeflate::new(&params(false, false), Role::Client, 6);
        let r = decompress(&mut client, &["f200110000"]);
        assert!(matches!(r, Err(ProtocolError::Compression(_))), "{r:?}");
    }
}
