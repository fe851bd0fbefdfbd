//! hixie-75 / hixie-76 framing (docs/PROTOCOL.md, "Framing: sentinel").
//!
//! A type byte with the high bit clear starts a sentinel frame running to
//! the next `0xFF` (only type 0x00, UTF-8 text, carries data); a type byte
//! with the high bit set is followed by a base-128 length and that many
//! bytes, which are discarded — except hixie-76's `FF 00`, the close frame.

use bytes::{Buf, BytesMut};

use super::{Chunk, DecoderOptions, OpCode};
use crate::error::ProtocolError;

/// A length varint longer than this (63 bits of value) never ends honestly.
const MAX_LENGTH_BYTES: usize = 9;

#[derive(Debug)]
enum State {
    Idle,
    /// Inside a sentinel frame; `discard` for frame types other than 0x00.
    Text {
        discard: bool,
        first: bool,
        len: u64,
    },
    /// Skipping the payload of a length-prefixed frame.
    Discard {
        remaining: u64,
    },
}

/// Streaming decoder for the hixie framings.
#[derive(Debug)]
pub struct SentinelDecoder {
    closing: bool,
    options: DecoderOptions,
    state: State,
}

impl SentinelDecoder {
    /// `closing`: hixie-76, where `FF 00` is the close frame; on hixie-75 it is
    /// an empty length-prefixed frame and is discarded.
    pub fn new(closing: bool, options: DecoderOptions) -> Self {
        SentinelDecoder {
            closing,
            options,
            state: State::Idle,
        }
    }

    /// See [`Decoder::decode`](super::Decoder::decode). Text chunks have no
    /// `frame_len` (the end is only known at `0xFF`) and are final with their
    /// frame: each sentinel frame is one whole message. Other frames are
    /// skipped without yielding anything, except hixie-76's close.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, ProtocolError> {
        loop {
            match &mut self.state {
                State::Idle => {
                    let Some(&kind) = buf.first() else {
                        return Ok(None);
                    };
                    if kind & 0x80 == 0 {
                        let discard = kind != 0;
                        if discard && self.options.hixie_strict_frame_type {
                            return Err(ProtocolError::BadFrameType(kind));
                        }
                        buf.advance(1);
                        self.state = State::Text {
                            discard,
                            first: true,
                            len: 0,
                        };
                        continue;
                    }
                    let Some((len, used)) = read_length(&buf[1..])? else {
                        return Ok(None);
                    };
                    buf.advance(1 + used);
                    if self.closing && kind == 0xFF && len == 0 {
                        return Ok(Some(chunk(OpCode::Close, true, true, 0, 0)));
                    }
                    if len > self.options.max_frame_size {
                        return Err(ProtocolError::FrameTooLarge(
                            self.options.max_frame_size as usize,
                        ));
                    }
                    self.state = State::Discard { remaining: len };
                }
                State::Discard { remaining } => {
                    let take = (*remaining).min(buf.len() as u64) as usize;
                    buf.advance(take);
                    *remaining -= take as u64;
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Idle;
                }
                State::Text {
                    discard,
                    first,
                    len,
                } => {
                    let end = memchr::memchr(0xFF, buf);
                    let take = end.unwrap_or(buf.len());
                    *len += take as u64;
                    if *len > self.options.max_frame_size {
                        return Err(ProtocolError::FrameTooLarge(
                            self.options.max_frame_size as usize,
                        ));
                    }
                    if end.is_none() && take == 0 {
                        return Ok(None);
                    }
                    let last = end.is_some();
                    let consumed = take + usize::from(last);
                    let was_first = std::mem::replace(first, false);
                    let discard = *discard;
                    if last {
                        self.state = State::Idle;
                    }
                    if discard {
                        buf.advance(consumed);
                        continue;
                    }
                    return Ok(Some(chunk(OpCode::Text, was_first, last, take, consumed)));
                }
            }
        }
    }
}

fn chunk(opcode: OpCode, first: bool, last: bool, len: usize, consumed: usize) -> Chunk {
    Chunk {
        opcode,
        // A sentinel frame is a whole message: it ends with the frame.
        fin: last,
        rsv: 0,
        frame_len: None,
        first,
        last,
        len,
        consumed,
    }
}

/// Parse a base-128 big-endian length: (value, bytes used) or None if partial.
fn read_length(buf: &[u8]) -> Result<Option<(u64, usize)>, ProtocolError> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i == MAX_LENGTH_BYTES {
            return Err(ProtocolError::BadLengthPrefix);
        }
        value = (value << 7) | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_LENGTH_BYTES {
        return Err(ProtocolError::BadLengthPrefix);
    }
    Ok(None)
}

/// Append a frame; only text and (hixie-76) close exist.
pub fn encode(opcode: OpCode, payload: &[u8], out: &mut BytesMut) {
    match opcode {
        OpCode::Close => out.extend_from_slice(&[0xFF, 0x00]),
        _ => {
            out.reserve(payload.len() + 2);
            out.extend_from_slice(&[0x00]);
            out.extend_from_slice(payload);
            out.extend_from_slice(&[0xFF]);
        }
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // tests tweak one limit at a time
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::draft::Draft;
    use crate::session::Role;

    fn decoder(closing: bool, cfg: &Config) -> SentinelDecoder {
        let draft = if closing {
            Draft::Hixie76
        } else {
            Draft::Hixie75
        };
        SentinelDecoder::new(closing, DecoderOptions::new(cfg, Role::Server, draft))
    }

    /// Feed `wire` in pieces of `split` bytes; collect (opcode, message).
    fn run(
        closing: bool,
        wire: &[u8],
        split: usize,
    ) -> Result<Vec<(OpCode, Vec<u8>)>, ProtocolError> {
        let mut d = decoder(closing, &Config::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut cur = Vec::new();
        for piece in wire.chunks(split) {
            buf.extend_from_slice(piece);
            while let Some(c) = d.decode(&mut buf)? {
                cur.extend_from_slice(&buf[..c.len]);
                buf.advance(c.consumed);
                if c.last {
                    out.push((c.opcode, std::mem::take(&mut cur)));
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn length_vectors() {
        for (v, bytes) in [
            (0u64, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x81, 0x00]),
            (300, &[0x82, 0x2C]),
            (16384, &[0x81, 0x80, 0x00]),
        ] {
            assert_eq!(read_length(bytes).unwrap(), Some((v, bytes.len())));
        }
        assert_eq!(read_length(&[0x81]).unwrap(), None);
        assert_eq!(
            read_length(&[0xFF; 10]),
            Err(ProtocolError::BadLengthPrefix)
        );
    }

    #[test]
    fn text_close_and_discarded_frames_at_every_split() {
        let mut wire = vec![0x00, b'H', b'e', b'l', b'l', b'o', 0xFF];
        wire.extend_from_slice(&[0x80, 0x82, 0x2C]);
        wire.extend_from_slice(&[0xAB; 300]);
        wire.extend_from_slice(&[0x05, b'x', 0xFF]); // unknown sentinel type: dropped
        wire.extend_from_slice(&[0x00, 0xFF]); // empty text
        wire.extend_from_slice(&[0xFF, 0x00]);
        for split in 1..wire.len() {
            let got = run(true, &wire, split).unwrap();
            assert_eq!(
                got,
                vec![
                    (OpCode::Text, b"Hello".to_vec()),
                    (OpCode::Text, vec![]),
                    (OpCode::Close, vec![])
                ],
                "split {split}"
            );
            // hixie-75 has no close frame: FF 00 is discarded.
            let got = run(false, &wire, split).unwrap();
            assert_eq!(
                got,
                vec![(OpCode::Text, b"Hello".to_vec()), (OpCode::Text, vec![])]
            );
        }
    }

    #[test]
    fn strict_frame_type_and_limits() {
        let mut cfg = Config::default();
        cfg.strict.hixie_strict_frame_type = true;
        let mut d = decoder(true, &cfg);
        assert_eq!(
            d.decode(&mut BytesMut::from(&[0x05, b'x', 0xFF][..]))
                .unwrap_err(),
            ProtocolError::BadFrameType(5)
        );
        let mut cfg = Config::default();
        cfg.max_frame_size = 4;
        let mut d = decoder(true, &cfg);
        assert_eq!(
            d.decode(&mut BytesMut::from(&b"\x00abcde"[..]))
                .unwrap_err(),
            ProtocolError::FrameTooLarge(4)
        );
        let mut d = decoder(true, &cfg);
        assert_eq!(
            d.decode(&mut BytesMut::from(&[0x80, 0x05][..]))
                .unwrap_err(),
            ProtocolError::FrameTooLarge(4)
        );
        // An unterminated frame within the limit streams as partial chunks.
        let mut d = decoder(true, &Config::default());
        let c = d
            .decode(&mut BytesMut::from(&b"\x00abc"[..]))
            .unwrap()
            .unwrap();
        assert!(c.first && !c.last && c.len == 3 && c.consumed == 3);
    }

    #[test]
    fn encodes_the_vectors() {
        let mut out = BytesMut::new();
        encode(OpCode::Text, b"Hello", &mut out);
        encode(OpCode::Close, b"", &mut out);
        assert_eq!(
            &out[..],
            &[0x00, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0xff, 0xff, 0x00]
        );
    }
}
