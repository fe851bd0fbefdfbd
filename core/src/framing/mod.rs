//! Frame codecs for every framing family.
//!
//! * [`sentinel`]: hixie-75/76 (`0x00 text 0xFF`, length-prefixed frames,
//!   hixie-76's `0xFF 0x00` close).
//! * [`binary`]: one parser and one encoder for the three length-prefixed
//!   families, parameterised by [`BinaryFraming`]: hybi-01..03 (MORE bit,
//!   no mask), hybi-04..06 (FIN bit, mask in front of the whole frame) and
//!   hybi-07+ (MASK bit, key after the length).
//!
//! Decoders stream: they yield [`Chunk`]s of unmasked payload as bytes
//! arrive, so the message layer can validate UTF-8 and enforce limits
//! before a long frame is complete. A chunk's payload is unmasked in place
//! at the front of the input buffer and left there: the caller borrows it,
//! copies it or splits it off without copying, then consumes it.
//!
//! [`BinaryFraming`]: crate::draft::BinaryFraming

pub mod binary;
pub mod mask;
pub mod sentinel;

use bytes::BytesMut;

use crate::config::Config;
use crate::draft::{Draft, Framing, MaskLayout};
use crate::error::ProtocolError;
use crate::session::Role;

pub use mask::{apply_mask, apply_mask20};

/// A frame's opcode, independent of the draft's numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// A further fragment of the message in progress (0 in both tables).
    Continuation,
    /// The first or only frame of a UTF-8 text message (4 in table A, 1 in
    /// table B; hixie's `0x00` sentinel frame).
    Text,
    /// The first or only frame of a binary message (5 in table A, 2 in
    /// table B). hixie has none.
    Binary,
    /// Starts or answers the close handshake (1 in table A, 8 in table B;
    /// hixie-76's `FF 00`).
    Close,
    /// Asks for a pong with the same payload (2 in table A, 9 in table B).
    Ping,
    /// Answers a ping, or serves as an unsolicited heartbeat (3 in table A,
    /// 0xA in table B).
    Pong,
}

impl OpCode {
    /// Close, ping and pong: at most 125 payload bytes, never fragmented,
    /// never compressed, and allowed between the fragments of a message.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A piece of one frame's payload, unmasked in place: it is the first
/// `len` bytes of the buffer given to [`Decoder::decode`]. The caller must
/// remove `consumed` bytes from the front of that buffer before decoding
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// The frame's opcode: [`OpCode::Continuation`] for the later fragments of
    /// a message, not the message's kind.
    pub opcode: OpCode,
    /// The frame is the last of its message.
    pub fin: bool,
    /// RSV1..3 as they sit in byte 0 (`0x40 | 0x20 | 0x10`).
    pub rsv: u8,
    /// The frame's payload length, when the framing announces it up front
    /// (hixie sentinel frames do not).
    pub frame_len: Option<u64>,
    /// First chunk of its frame.
    pub first: bool,
    /// Last chunk of its frame.
    pub last: bool,
    /// Payload bytes at the front of the buffer.
    pub len: usize,
    /// Bytes to consume: the payload plus any frame terminator.
    pub consumed: usize,
}

/// What the receiving side requires of the MASK bit (hybi-07+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskRule {
    /// Unmasked frames fail with [`ProtocolError::BadMask`]: a server on
    /// Version 13, and on 7/8 by default.
    Required,
    /// Masked frames fail with [`ProtocolError::BadMask`]: a client on
    /// Version 13, and on 7/8 with `reject_server_mask_v7_v8`.
    Forbidden,
    /// Accepted either way; masked payloads are unmasked.
    Optional,
}

/// The limits and switches a decoder enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Largest frame payload accepted, in bytes
    /// ([`Config::max_frame_size`]); longer frames fail with
    /// [`ProtocolError::FrameTooLarge`].
    pub max_frame_size: u64,
    /// Refuse non-minimal length encodings
    /// ([`Strictness::minimal_length`](crate::Strictness::minimal_length)).
    pub minimal_length: bool,
    /// What the MASK bit must be. Only hybi-07+ frames have one; the
    /// hybi-04..06 prefix is implied by the direction.
    pub mask_rule: MaskRule,
    /// hixie: fail on a sentinel frame type other than 0x00 instead of
    /// discarding the frame.
    pub hixie_strict_frame_type: bool,
}

impl DecoderOptions {
    /// The options for receiving as `role` on `draft` under `config`.
    pub fn new(config: &Config, role: Role, draft: Draft) -> DecoderOptions {
        let strict = &config.strict;
        let mask_rule = match (role, draft) {
            (Role::Server, Draft::Rfc6455) => MaskRule::Required,
            (Role::Client, Draft::Rfc6455) => MaskRule::Forbidden,
            (Role::Server, _) if strict.require_mask_v7_v8 => MaskRule::Required,
            (Role::Client, _) if strict.reject_server_mask_v7_v8 => MaskRule::Forbidden,
            _ => MaskRule::Optional,
        };
        DecoderOptions {
            max_frame_size: config.max_frame_size as u64,
            minimal_length: strict.minimal_length,
            mask_rule,
            hixie_strict_frame_type: strict.hixie_strict_frame_type,
        }
    }
}

/// A frame decoder for one connection's receiving direction.
#[derive(Debug)]
pub enum Decoder {
    /// hixie-75 and hixie-76 frames.
    Sentinel(sentinel::SentinelDecoder),
    /// hybi-01 and later frames.
    Binary(binary::BinaryDecoder),
}

impl Decoder {
    /// The decoder for frames that `role` receives on `draft`.
    /// `hybi04_key` is the connection mask key (hybi-04 servers only).
    pub fn new(
        draft: Draft,
        role: Role,
        options: DecoderOptions,
        hybi04_key: Option<[u8; 20]>,
    ) -> Decoder {
        match draft.framing() {
            Framing::Sentinel { closing } => {
                Decoder::Sentinel(sentinel::SentinelDecoder::new(closing, options))
            }
            Framing::Binary(mut params) => {
                // Only client→server frames carry the hybi-04..06 prefix.
                if role == Role::Client
                    && matches!(params.mask, MaskLayout::Prefix | MaskLayout::PrefixSha1)
                {
                    params.mask = MaskLayout::None;
                }
                Decoder::Binary(binary::BinaryDecoder::new(params, options, hybi04_key))
            }
        }
    }

    /// Decode the next chunk from `buf`: frame headers are consumed, the
    /// payload is unmasked in place at the front (see [`Chunk`]).
    /// `Ok(None)`: more bytes are needed.
    #[inline(always)]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, ProtocolError> {
        match self {
            Decoder::Sentinel(d) => d.decode(buf),
            Decoder::Binary(d) => d.decode(buf),
        }
    }

    /// Leave an unfragmented, uncompressed binary frame of up to `max`
    /// payload bytes in the buffer until all of it arrived, instead of
    /// yielding its payload as it comes: it then becomes one message
    /// without being copied out in pieces, and an I/O layer can read the
    /// rest straight behind it ([`held`](Self::held)). Binary payloads have
    /// nothing to validate on the way, so nothing fails later for it.
    /// 0 (the default) holds nothing. Sentinel (hixie) frames are text.
    #[inline]
    pub fn set_hold(&mut self, max: u64) {
        if let Decoder::Binary(d) = self {
            d.set_hold(max);
        }
    }

    /// The buffer length at which the held frame is complete (header
    /// included); 0 when no frame is held.
    #[inline]
    pub fn held(&self) -> usize {
        match self {
            Decoder::Sentinel(_) => 0,
            Decoder::Binary(d) => d.held(),
        }
    }
}

/// How a sender masks its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masking {
    /// Server frames, and every frame of the unmasked drafts.
    None,
    /// hybi-07+ client: fresh random key per frame after the length.
    AfterLength,
    /// hybi-05/06 client: fresh random 4-byte key in front of the frame.
    Prefix,
    /// hybi-04 client: random nonce in front, key derived with the
    /// connection mask key.
    PrefixSha1([u8; 20]),
}

/// A frame encoder for one connection's sending direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// hixie-75/76: only text frames (`00 … FF`) and, when `closing`, the
    /// `FF 00` close.
    Sentinel {
        /// hixie-76: the `FF 00` close frame exists.
        closing: bool,
    },
    /// hybi-01 and later frames.
    Binary(binary::BinaryEncoder),
}

impl Encoder {
    /// The encoder for frames that `role` sends on `draft`.
    pub fn new(draft: Draft, role: Role, hybi04_key: Option<[u8; 20]>) -> Encoder {
        match draft.framing() {
            Framing::Sentinel { closing } => Encoder::Sentinel { closing },
            Framing::Binary(params) => {
                let masking = match (role, params.mask) {
                    (Role::Server, _) | (_, MaskLayout::None) => Masking::None,
                    (Role::Client, MaskLayout::AfterLength) => Masking::AfterLength,
                    (Role::Client, MaskLayout::Prefix) => Masking::Prefix,
                    (Role::Client, MaskLayout::PrefixSha1) => {
                        Masking::PrefixSha1(hybi04_key.unwrap_or([0; 20]))
                    }
                };
                Encoder::Binary(binary::BinaryEncoder::new(params, masking))
            }
        }
    }

    /// Append only the header of an unmasked binary-framing frame of `len`
    /// payload bytes (the caller sends the payload from where it is).
    /// False, with nothing appended, for masked or sentinel frames.
    #[inline]
    pub fn encode_header(
        &self,
        opcode: OpCode,
        fin: bool,
        rsv: u8,
        len: usize,
        out: &mut BytesMut,
    ) -> bool {
        match self {
            Encoder::Sentinel { .. } => false,
            Encoder::Binary(e) => e.encode_header(opcode, fin, rsv, len, out),
        }
    }

    /// Append one frame to `out`. The caller has checked that the draft can
    /// carry the opcode (see [`Encoder::supports`]).
    #[inline]
    pub fn encode(&self, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8], out: &mut BytesMut) {
        match self {
            Encoder::Sentinel { .. } => sentinel::encode(opcode, payload, out),
            Encoder::Binary(e) => e.encode(opcode, fin, rsv, payload, out),
        }
    }

    /// Whether frames of this opcode exist in the framing.
    pub fn supports(&self, opcode: OpCode) -> bool {
        match self {
            Encoder::Sentinel { closing } => {
                opcode == OpCode::Text || (*closing && opcode == OpCode::Close)
            }
            Encoder::Binary(_) => true,
        }
    }
}
