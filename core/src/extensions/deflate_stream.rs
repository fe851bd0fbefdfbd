//! deflate-stream (hybi-04..08): the whole byte stream in each direction,
//! frame headers included, is one raw DEFLATE stream.

use bytes::BytesMut;

use super::deflate::{Deflater, Inflater};
use crate::error::ProtocolError;

/// deflate-stream: the whole byte stream in each direction is raw deflate,
/// sync-flushed after every write. The zlib states are created on first
/// use (an idle connection holds none).
pub struct DeflateStream {
    level: u32,
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
}

impl DeflateStream {
    /// `level` is the zlib level (0..=9); the window is always 32 KiB, as
    /// the extension has no parameters.
    pub fn new(level: u32) -> Self {
        DeflateStream {
            level,
            deflater: None,
            inflater: None,
        }
    }

    /// Deflate outgoing wire bytes and sync-flush (tail kept), appending to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut BytesMut) {
        let level = self.level;
        self.deflater
            .get_or_insert_with(|| Deflater::new(level, 15))
            .compress(input, out);
    }

    /// Inflate incoming wire bytes, appending to `out`; fails if one call
    /// would produce more than `limit` bytes. The stream lasts as long as
    /// the connection, so bytes after a BFINAL block are an error.
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let unused = self
            .inflater
            .get_or_insert_with(Inflater::new)
            .inflate(input, out, out.len().saturating_add(limit))
            .map_err(|e| match e {
                ProtocolError::DecompressedTooLarge(_) => {
                    ProtocolError::DecompressedTooLarge(limit)
                }
                e => e,
            })?;
        if unused > 0 {
            return Err(ProtocolError::Compression(
                "data after the end of the deflate stream".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_kept() {
        let mut stream = DeflateStream::new(6);
        let mut out = BytesMut::new();
        stream.compress(b"Hello", &mut out);
        assert_eq!(hex::encode(&out), "f248cdc9c907000000ffff");
        stream.compress(b"Hello", &mut out);
        assert_eq!(hex::encode(&out[11..]), "f2001100000000ffff");
    }

    #[test]
    fn decodes_in_any_chunking() {
        let mut tx = DeflateStream::new(6);
        let mut wire = BytesMut::new();
        for chunk in [&b"\x81\x05Hello"[..], b"", b"\x81\x05Hello", &[7u8; 1000]] {
            tx.compress(chunk, &mut wire);
        }
        let mut rx = DeflateStream::new(6);
        let mut out = BytesMut::new();
        for piece in wire.chunks(3) {
            rx.decompress(piece, &mut out, 1 << 20).unwrap();
        }
        assert_eq!(&out[..14], b"\x81\x05Hello\x81\x05Hello");
        assert_eq!(&out[14..], &[7u8; 1000][..]);
    }

    #[test]
    fn limit_applies_per_call() {
        let mut tx = DeflateStream::new(6);
        let mut wire = BytesMut::new();
        tx.compress(&[1u8; 100], &mut wire);
        let mut rx = DeflateStream::new(6);
        let mut out = BytesMut::from(&[0u8; 1000][..]);
        rx.decompress(&wire, &mut out, 100).unwrap();
        tx.compress(&[1u8; 101], &mut wire);
        let mut rx = DeflateStream::new(6);
        let mut out = BytesMut::new();
        assert_eq!(
            rx.decompress(&wire, &mut out, 200),
            Err(ProtocolError::DecompressedTooLarge(200))
        );
    }

    #[test]
    fn nothing_may_follow_the_end_of_the_stream() {
        // "Hello" in a final block, then one more byte.
        let mut rx = DeflateStream::new(6);
        let mut out = BytesMut::new();
        rx.decompress(&hex::decode("f348cdc9c90700").unwrap(), &mut out, 100)
            .unwrap();
        assert_eq!(&out[..], b"Hello");
        assert!(matches!(
            rx.decompress(&[0], &mut out, 100),
            Err(ProtocolError::Compression(_))
        ));
        let mut rx = DeflateStream::new(6);
        assert!(matches!(
            rx.decompress(&hex::decode("f348cdc9c9070000").unwrap(), &mut out, 100),
            Err(ProtocolError::Compression(_))
        ));
    }
}
