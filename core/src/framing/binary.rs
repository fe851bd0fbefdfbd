//! The length-prefixed binary framings: hybi-01..03 (FB1), hybi-04..06 (FB2)
//! and hybi-07+ / RFC 6455 (FB3), one parser parameterised by
//! [`BinaryFraming`] (DRAFTS.md §3.2, §4.2, §4.3, §5.2).
//!
//! ```text
//! FB1/FB2: [key prefix (FB2 client)] b0: MORE|FIN RSV1-3 OP  b1: RSV4 LEN7  [ext len]  payload
//! FB3:                               b0: FIN RSV1-3 OP       b1: MASK LEN7  [ext len] [key] payload
//! ```
//! In FB2 the prefix key masks the whole frame, header included, so the
//! header is unmasked before its length can be read, and the key index runs
//! on from the header into the payload.

use bytes::{Buf, BytesMut};
use sha1::{Digest, Sha1};

use super::mask::{apply_mask, apply_mask20};
use super::{Chunk, DecoderOptions, MaskRule, Masking, OpCode};
use crate::draft::{BinaryFraming, MaskLayout, OpcodeTable};
use crate::error::ProtocolError;

/// Longest header: 4-byte prefix or key + 2 + 8-byte length.
const MAX_HEADER: usize = 14;

fn decode_opcode(table: OpcodeTable, code: u8) -> Result<OpCode, ProtocolError> {
    Ok(match (table, code) {
        (_, 0) => OpCode::Continuation,
        (OpcodeTable::A, 1) | (OpcodeTable::B, 8) => OpCode::Close,
        (OpcodeTable::A, 2) | (OpcodeTable::B, 9) => OpCode::Ping,
        (OpcodeTable::A, 3) | (OpcodeTable::B, 10) => OpCode::Pong,
        (OpcodeTable::A, 4) | (OpcodeTable::B, 1) => OpCode::Text,
        (OpcodeTable::A, 5) | (OpcodeTable::B, 2) => OpCode::Binary,
        _ => return Err(ProtocolError::ReservedOpcode(code)),
    })
}

fn encode_opcode(table: OpcodeTable, opcode: OpCode) -> u8 {
    match (table, opcode) {
        (_, OpCode::Continuation) => 0,
        (OpcodeTable::A, OpCode::Close) => 1,
        (OpcodeTable::A, OpCode::Ping) => 2,
        (OpcodeTable::A, OpCode::Pong) => 3,
        (OpcodeTable::A, OpCode::Text) => 4,
        (OpcodeTable::A, OpCode::Binary) => 5,
        (OpcodeTable::B, OpCode::Text) => 1,
        (OpcodeTable::B, OpCode::Binary) => 2,
        (OpcodeTable::B, OpCode::Close) => 8,
        (OpcodeTable::B, OpCode::Ping) => 9,
        (OpcodeTable::B, OpCode::Pong) => 10,
    }
}

/// hybi-04 frame key: SHA1(frame nonce ‖ connection mask key).
fn hybi04_frame_key(nonce: &[u8], conn_key: &[u8; 20]) -> [u8; 20] {
    Sha1::new()
        .chain_update(nonce)
        .chain_update(conn_key)
        .finalize()
        .into()
}

#[derive(Debug, Clone, Copy)]
enum PayloadMask {
    None,
    Key4 { key: [u8; 4], offset: usize },
    Key20 { key: [u8; 20], offset: usize },
}

impl PayloadMask {
    #[inline]
    fn apply(&mut self, data: &mut [u8]) {
        match self {
            PayloadMask::None => {}
            PayloadMask::Key4 { key, offset } => *offset = apply_mask(data, *key, *offset),
            PayloadMask::Key20 { key, offset } => *offset = apply_mask20(data, key, *offset),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Header {
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    len: u64,
}

#[derive(Debug)]
enum State {
    Header,
    Payload {
        header: Header,
        remaining: u64,
        first: bool,
        mask: PayloadMask,
    },
}

/// Streaming decoder for FB1/FB2/FB3 frames. Laid out as written: what
/// every frame reads first, the partial frame's state and hybi-04's key last.
#[derive(Debug)]
#[repr(C)]
pub struct BinaryDecoder {
    params: BinaryFraming,
    options: DecoderOptions,
    /// Whole single-frame binary messages up to this size are left in the
    /// buffer until complete (see [`Decoder::set_hold`](super::Decoder::set_hold)).
    hold_max: u64,
    /// Buffer bytes the held frame occupies once complete; 0: none held.
    held: usize,
    state: State,
    conn_key: [u8; 20],
}

// Layout guards (64-bit targets): a field added or moved changes these
// numbers and fails the build instead of silently pushing what every
// message touches onto another cache line. Change them only together with
// a layout that still keeps the hot fields together.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<BinaryDecoder>() == 128);
    // What every frame reads, in the first cache line of the decoder...
    assert!(offset_of!(BinaryDecoder, params) == 0);
    assert!(offset_of!(BinaryDecoder, options) == 8);
    assert!(offset_of!(BinaryDecoder, held) == 32);
    assert!(offset_of!(BinaryDecoder, state) == 40);
    // ...and hybi-04's key, which no other draft reads, last.
    assert!(offset_of!(BinaryDecoder, conn_key) == 104);
};

impl BinaryDecoder {
    /// A decoder for frames laid out as `params` describes, as they arrive:
    /// `params.mask` must be [`MaskLayout::None`] for server→client frames of
    /// hybi-04..06 ([`Decoder::new`](super::Decoder::new) sees to it).
    /// `conn_key` is hybi-04's connection mask key (all zero when `None`),
    /// used only with [`MaskLayout::PrefixSha1`].
    pub fn new(params: BinaryFraming, options: DecoderOptions, conn_key: Option<[u8; 20]>) -> Self {
        BinaryDecoder {
            params,
            options,
            conn_key: conn_key.unwrap_or([0; 20]),
            state: State::Header,
            hold_max: 0,
            held: 0,
        }
    }

    /// See [`Decoder::set_hold`](super::Decoder::set_hold).
    #[inline]
    pub fn set_hold(&mut self, max: u64) {
        self.hold_max = max;
    }

    /// See [`Decoder::held`](super::Decoder::held).
    #[inline]
    pub fn held(&self) -> usize {
        self.held
    }

    /// See [`Decoder::decode`](super::Decoder::decode): headers (and a
    /// hybi-04..06 mask prefix) are consumed, the payload is unmasked in place
    /// and yielded as it arrives; `Ok(None)` when more bytes are needed.
    #[inline(always)]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, ProtocolError> {
        if matches!(self.state, State::Header) {
            if let Some(chunk) = self.short_masked_frame(buf) {
                return Ok(Some(chunk));
            }
        }
        loop {
            match &mut self.state {
                State::Header => match self.parse_header(buf)? {
                    None => return Ok(None),
                    Some((header, consumed, mut mask)) => {
                        let complete = header.len <= (buf.len() - consumed) as u64;
                        if !complete
                            && header.len <= self.hold_max
                            && header.opcode == OpCode::Binary
                            && header.fin
                            && header.rsv == 0
                        {
                            // Nothing to check before it ends: wait for all
                            // of it (the header is parsed again then).
                            self.held = consumed + header.len as usize;
                            return Ok(None);
                        }
                        self.held = 0;
                        buf.advance(consumed);
                        // Common case: the whole payload is here; no state to keep.
                        if complete {
                            let len = header.len as usize;
                            mask.apply(&mut buf[..len]);
                            return Ok(Some(Chunk {
                                opcode: header.opcode,
                                fin: header.fin,
                                rsv: header.rsv,
                                frame_len: Some(header.len),
                                first: true,
                                last: true,
                                len,
                                consumed: len,
                            }));
                        }
                        self.state = State::Payload {
                            header,
                            remaining: header.len,
                            first: true,
                            mask,
                        };
                    }
                },
                State::Payload {
                    header,
                    remaining,
                    first,
                    mask,
                } => {
                    let take = (*remaining).min(buf.len() as u64) as usize;
                    if take == 0 && *remaining > 0 {
                        return Ok(None);
                    }
                    mask.apply(&mut buf[..take]);
                    *remaining -= take as u64;
                    let chunk = Chunk {
                        opcode: header.opcode,
                        fin: header.fin,
                        rsv: header.rsv,
                        frame_len: Some(header.len),
                        first: *first,
                        last: *remaining == 0,
                        len: take,
                        consumed: take,
                    };
                    *first = false;
                    if chunk.last {
                        self.state = State::Header;
                    }
                    return Ok(Some(chunk));
                }
            }
        }
    }

    /// The frame nearly every message comes in, taken without the general
    /// header parser when `buf` starts with it whole: a masked data frame
    /// with a 7-bit length (FB3 layout), its payload unmasked in place.
    /// Anything else, including anything to reject, is left to
    /// [`parse_header`](Self::parse_header).
    #[inline(always)]
    fn short_masked_frame(&mut self, buf: &mut BytesMut) -> Option<Chunk> {
        if self.params.mask != MaskLayout::AfterLength
            || self.options.mask_rule == MaskRule::Forbidden
            || buf.len() < 6
        {
            return None;
        }
        let (b0, b1) = (buf[0], buf[1]);
        let len = usize::from(b1 & 0x7F);
        if b1 & 0x80 == 0
            || len > 125
            || buf.len() < 6 + len
            || len as u64 > self.options.max_frame_size
        {
            return None;
        }
        let opcode = decode_opcode(self.params.opcodes, b0 & 0x0F)
            .ok()
            .filter(|op| !op.is_control())?;
        let key = [buf[2], buf[3], buf[4], buf[5]];
        buf.advance(6);
        apply_mask(&mut buf[..len], key, 0);
        self.held = 0;
        Some(Chunk {
            opcode,
            fin: (b0 & 0x80 != 0) != self.params.more_bit,
            rsv: b0 & 0x70,
            frame_len: Some(len as u64),
            first: true,
            last: true,
            len,
            consumed: len,
        })
    }

    /// Parse a complete header at the start of `buf` without consuming it:
    /// (header, bytes it occupies, payload mask state), or None if partial.
    #[inline(always)]
    fn parse_header(
        &self,
        buf: &[u8],
    ) -> Result<Option<(Header, usize, PayloadMask)>, ProtocolError> {
        let prefixed = matches!(
            self.params.mask,
            MaskLayout::Prefix | MaskLayout::PrefixSha1
        );
        let prefix = if prefixed { 4 } else { 0 };
        if buf.len() < prefix + 2 {
            return Ok(None);
        }
        let n = (buf.len() - prefix).min(MAX_HEADER);
        let mut mask = match self.params.mask {
            MaskLayout::Prefix => {
                let key = [buf[0], buf[1], buf[2], buf[3]];
                PayloadMask::Key4 { key, offset: 0 }
            }
            MaskLayout::PrefixSha1 => PayloadMask::Key20 {
                key: hybi04_frame_key(&buf[..4], &self.conn_key),
                offset: 0,
            },
            _ => PayloadMask::None,
        };
        // FB2 masks the header too: unmask a private copy of it; the payload
        // continues at the running key offset.
        let mut copy = [0u8; MAX_HEADER];
        let head: &[u8] = if prefixed {
            copy[..n].copy_from_slice(&buf[prefix..prefix + n]);
            let mut header_mask = mask;
            header_mask.apply(&mut copy[..n]);
            &copy[..n]
        } else {
            &buf[..n]
        };

        let b0 = head[0];
        let b1 = head[1];
        let fin = if self.params.more_bit {
            b0 & 0x80 == 0
        } else {
            b0 & 0x80 != 0
        };
        let rsv = b0 & 0x70;
        let opcode = decode_opcode(self.params.opcodes, b0 & 0x0F)?;
        let has_mask_bit = self.params.mask == MaskLayout::AfterLength;
        let masked = has_mask_bit && b1 & 0x80 != 0;
        if !has_mask_bit && b1 & 0x80 != 0 {
            // RSV4 in FB1/FB2: no extension ever defined it.
            return Err(ProtocolError::ReservedBits);
        }
        if opcode.is_control() && !fin {
            return Err(ProtocolError::FragmentedControl);
        }
        if has_mask_bit {
            match (self.options.mask_rule, masked) {
                (MaskRule::Required, false) | (MaskRule::Forbidden, true) => {
                    return Err(ProtocolError::BadMask)
                }
                _ => {}
            }
        }
        let len7 = b1 & 0x7F;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let key_len = if masked { 4 } else { 0 };
        let header_len = 2 + ext + key_len;
        if n < header_len {
            return Ok(None);
        }
        let len = match len7 {
            126 => {
                let l = u64::from(u16::from_be_bytes([head[2], head[3]]));
                if self.options.minimal_length && l < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                l
            }
            127 => {
                let l = u64::from_be_bytes(head[2..10].try_into().expect("8 bytes"));
                if l >> 63 != 0 {
                    return Err(ProtocolError::LengthOverflow);
                }
                if self.options.minimal_length && l < 65536 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                l
            }
            l => u64::from(l),
        };
        if opcode.is_control() && len > 125 {
            return Err(ProtocolError::ControlTooLong);
        }
        if len > self.options.max_frame_size {
            return Err(ProtocolError::FrameTooLarge(
                self.options.max_frame_size as usize,
            ));
        }
        if masked {
            let k = &head[2 + ext..6 + ext];
            mask = PayloadMask::Key4 {
                key: [k[0], k[1], k[2], k[3]],
                offset: 0,
            };
        } else if let PayloadMask::Key4 { offset, .. } | PayloadMask::Key20 { offset, .. } =
            &mut mask
        {
            *offset = header_len;
        }
        let header = Header {
            opcode,
            fin,
            rsv,
            len,
        };
        Ok(Some((header, prefix + header_len, mask)))
    }
}

/// Encoder for FB1/FB2/FB3 frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryEncoder {
    params: BinaryFraming,
    masking: Masking,
}

impl BinaryEncoder {
    /// An encoder for `params` framing; `masking` is how this side masks
    /// ([`Masking::None`] for a server).
    pub fn new(params: BinaryFraming, masking: Masking) -> Self {
        BinaryEncoder { params, masking }
    }

    /// The frame header (without any mask key or prefix) and its length.
    #[inline]
    fn head(&self, opcode: OpCode, fin: bool, rsv: u8, len: usize) -> ([u8; MAX_HEADER], usize) {
        let final_bit = if fin != self.params.more_bit { 0x80 } else { 0 };
        let b0 = final_bit | (rsv & 0x70) | encode_opcode(self.params.opcodes, opcode);
        let mask_bit = if self.masking == Masking::AfterLength {
            0x80
        } else {
            0
        };
        let mut head = [0u8; MAX_HEADER];
        head[0] = b0;
        let mut n = 2;
        if len < 126 {
            head[1] = mask_bit | len as u8;
        } else if len <= 0xFFFF {
            head[1] = mask_bit | 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            n = 4;
        } else {
            head[1] = mask_bit | 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            n = 10;
        }
        (head, n)
    }

    /// Append only the header of an unmasked frame of `len` payload bytes,
    /// for a caller that sends the payload from where it already is.
    /// False (nothing appended) when frames are masked.
    #[inline]
    pub fn encode_header(
        &self,
        opcode: OpCode,
        fin: bool,
        rsv: u8,
        len: usize,
        out: &mut BytesMut,
    ) -> bool {
        if self.masking != Masking::None {
            return false;
        }
        let (head, n) = self.head(opcode, fin, rsv, len);
        out.extend_from_slice(&head[..n]);
        true
    }

    /// Append one frame. `rsv` is RSV1..3 as in byte 0.
    #[inline]
    pub fn encode(&self, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8], out: &mut BytesMut) {
        let len = payload.len();
        let (mut head, n) = self.head(opcode, fin, rsv, len);
        match self.masking {
            Masking::None => {
                out.reserve(n + len);
                out.extend_from_slice(&head[..n]);
                out.extend_from_slice(payload);
            }
            Masking::AfterLength => {
                let key: [u8; 4] = rand::random();
                head[n..n + 4].copy_from_slice(&key);
                out.reserve(n + 4 + len);
                out.extend_from_slice(&head[..n + 4]);
                let start = out.len();
                out.extend_from_slice(payload);
                apply_mask(&mut out[start..], key, 0);
            }
            Masking::Prefix | Masking::PrefixSha1(_) => {
                let nonce: [u8; 4] = rand::random();
                out.reserve(4 + n + len);
                out.extend_from_slice(&nonce);
                let start = out.len();
                out.extend_from_slice(&head[..n]);
                out.extend_from_slice(payload);
                match self.masking {
                    Masking::PrefixSha1(conn_key) => {
                        apply_mask20(&mut out[start..], &hybi04_frame_key(&nonce, &conn_key), 0);
                    }
                    _ => {
                        apply_mask(&mut out[start..], nonce, 0);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // tests tweak one limit at a time
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::draft::Draft;
    use crate::framing::{Decoder, Encoder};
    use crate::session::Role;
    use hex::FromHex;

    fn h(s: &str) -> Vec<u8> {
        Vec::from_hex(s.replace(' ', "")).unwrap()
    }

    fn decode_all(draft: Draft, role: Role, wire: &[u8]) -> Result<Vec<Owned>, ProtocolError> {
        let opts = DecoderOptions::new(&Config::default(), role, draft);
        let mut d = Decoder::new(draft, role, opts, None);
        let mut buf = BytesMut::from(wire);
        let mut out = Vec::new();
        while let Some(c) = take(&mut d, &mut buf)? {
            out.push(c);
        }
        assert!(buf.is_empty(), "undecoded bytes left");
        Ok(out)
    }

    /// A decoded chunk with its payload split off the buffer.
    #[derive(Debug)]
    struct Owned {
        opcode: OpCode,
        fin: bool,
        last: bool,
        data: Vec<u8>,
    }

    fn take(d: &mut Decoder, buf: &mut BytesMut) -> Result<Option<Owned>, ProtocolError> {
        Ok(d.decode(buf)?.map(|c| {
            let data = buf[..c.len].to_vec();
            buf.advance(c.consumed);
            Owned {
                opcode: c.opcode,
                fin: c.fin,
                last: c.last,
                data,
            }
        }))
    }

    fn one(draft: Draft, role: Role, wire: &[u8]) -> Owned {
        let mut c = decode_all(draft, role, wire).unwrap();
        assert_eq!(c.len(), 1);
        c.remove(0)
    }

    #[test]
    fn drafts_12_2_vectors_decode() {
        let c = one(Draft::Hybi02, Role::Server, &h("04 05 48 65 6c 6c 6f"));
        assert_eq!(
            (c.opcode, c.fin, &c.data[..]),
            (OpCode::Text, true, &b"Hello"[..])
        );
        let c = decode_all(
            Draft::Hybi01,
            Role::Server,
            &h("84 03 48 65 6c 00 02 6c 6f"),
        )
        .unwrap();
        assert_eq!((c[0].opcode, c[0].fin), (OpCode::Text, false));
        assert_eq!((c[1].opcode, c[1].fin), (OpCode::Continuation, true));
        assert_eq!(
            one(Draft::Hybi02, Role::Server, &h("01 00")).opcode,
            OpCode::Close
        );
        assert_eq!(
            one(Draft::Hybi02, Role::Server, &h("02 00")).opcode,
            OpCode::Ping
        );
        // hybi-04..06 server→client
        let c = one(Draft::Hybi06, Role::Client, &h("84 05 48 65 6c 6c 6f"));
        assert_eq!(
            (c.opcode, c.fin, &c.data[..]),
            (OpCode::Text, true, &b"Hello"[..])
        );
        // hybi-05/06 client→server, key in front
        let c = one(
            Draft::Hybi05,
            Role::Server,
            &h("37 fa 21 3d b3 ff 69 58 5b 96 4e"),
        );
        assert_eq!((c.opcode, &c.data[..]), (OpCode::Text, &b"Hello"[..]));
        // RFC 6455
        let c = one(Draft::Rfc6455, Role::Client, &h("81 05 48 65 6c 6c 6f"));
        assert_eq!(&c.data[..], b"Hello");
        let c = one(
            Draft::Rfc6455,
            Role::Server,
            &h("81 85 37 fa 21 3d 7f 9f 4d 51 58"),
        );
        assert_eq!(&c.data[..], b"Hello");
        let c = one(
            Draft::Rfc6455,
            Role::Server,
            &h("8a 85 37 fa 21 3d 7f 9f 4d 51 58"),
        );
        assert_eq!((c.opcode, &c.data[..]), (OpCode::Pong, &b"Hello"[..]));
        let c = one(Draft::Rfc6455, Role::Client, &h("89 05 48 65 6c 6c 6f"));
        assert_eq!(c.opcode, OpCode::Ping);
        let c = one(
            Draft::Rfc6455,
            Role::Server,
            &h("88 85 37 fa 21 3d 34 12 43 44 52"),
        );
        assert_eq!(
            (c.opcode, &c.data[..]),
            (OpCode::Close, &b"\x03\xe8bye"[..])
        );
    }

    #[test]
    fn hybi04_vector() {
        let conn: [u8; 20] = h("23222d4ecf9af2084f4d83043abf7747dd56c5b7")
            .try_into()
            .unwrap();
        assert_eq!(
            hybi04_frame_key(&h("37 fa 21 3d"), &conn).to_vec(),
            h("9d201bbb5a4c941ac5087543ca409c45bb3ce784")
        );
        let opts = DecoderOptions::new(&Config::default(), Role::Server, Draft::Hybi04);
        let mut d = Decoder::new(Draft::Hybi04, Role::Server, opts, Some(conn));
        let mut buf = BytesMut::from(&h("37 fa 21 3d 19 25 53 de 36 20 fb")[..]);
        let c = take(&mut d, &mut buf).unwrap().unwrap();
        assert_eq!((c.opcode, &c.data[..]), (OpCode::Text, &b"Hello"[..]));
    }

    #[test]
    fn server_frames_encode_to_the_vectors() {
        let mut out = BytesMut::new();
        let e = Encoder::new(Draft::Rfc6455, Role::Server, None);
        e.encode(OpCode::Text, true, 0, b"Hello", &mut out);
        e.encode(OpCode::Text, false, 0, b"Hel", &mut out);
        e.encode(OpCode::Continuation, true, 0, b"lo", &mut out);
        e.encode(OpCode::Close, true, 0, &[3, 0xe8], &mut out);
        assert_eq!(
            &out[..],
            &h("81 05 48 65 6c 6c 6f 01 03 48 65 6c 80 02 6c 6f 88 02 03 e8")[..]
        );
        out.clear();
        e.encode(OpCode::Binary, true, 0, &[0; 256], &mut out);
        assert_eq!(&out[..4], &h("82 7e 01 00")[..]);
        out.clear();
        e.encode(OpCode::Binary, true, 0, &[0; 65536], &mut out);
        assert_eq!(&out[..10], &h("82 7f 00 00 00 00 00 01 00 00")[..]);
        out.clear();
        let e = Encoder::new(Draft::Hybi01, Role::Server, None);
        e.encode(OpCode::Text, false, 0, b"Hel", &mut out);
        e.encode(OpCode::Continuation, true, 0, b"lo", &mut out);
        assert_eq!(&out[..], &h("84 03 48 65 6c 00 02 6c 6f")[..]);
        out.clear();
        Encoder::new(Draft::Hybi06, Role::Server, None).encode(
            OpCode::Text,
            true,
            0,
            b"Hello",
            &mut out,
        );
        assert_eq!(&out[..], &h("84 05 48 65 6c 6c 6f")[..]);
        out.clear();
        let e = Encoder::new(Draft::Rfc6455, Role::Server, None);
        e.encode(
            OpCode::Text,
            true,
            0x40,
            &h("f2 48 cd c9 c9 07 00"),
            &mut out,
        );
        assert_eq!(&out[..], &h("c1 07 f2 48 cd c9 c9 07 00")[..]);
    }

    #[test]
    fn client_frames_round_trip_every_binary_draft() {
        let conn = [7u8; 20];
        for draft in Draft::ALL.into_iter().filter(|d| d.has_binary()) {
            let key = (draft == Draft::Hybi04).then_some(conn);
            for role in [Role::Client, Role::Server] {
                let peer = if role == Role::Client {
                    Role::Server
                } else {
                    Role::Client
                };
                let e = Encoder::new(draft, role, key);
                let mut wire = BytesMut::new();
                for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
                    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                    e.encode(OpCode::Binary, true, 0, &payload, &mut wire);
                }
                let opts = DecoderOptions::new(&Config::default(), peer, draft);
                let mut d = Decoder::new(draft, peer, opts, key);
                let mut got = Vec::new();
                let mut cur = Vec::new();
                // Feed 997 bytes at a time (Autobahn's "chopped" delivery).
                let mut input = BytesMut::new();
                for piece in wire.chunks(997) {
                    input.extend_from_slice(piece);
                    while let Some(c) = take(&mut d, &mut input).unwrap() {
                        cur.extend_from_slice(&c.data);
                        if c.last {
                            got.push(std::mem::take(&mut cur));
                        }
                    }
                }
                let lens: Vec<usize> = got.iter().map(Vec::len).collect();
                assert_eq!(
                    lens,
                    [0, 1, 125, 126, 127, 65535, 65536, 70000],
                    "{draft} {role:?}"
                );
                assert!(got[7]
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == (i % 251) as u8));
            }
        }
    }

    #[test]
    fn header_violations() {
        let err = |draft, role, wire: &str| decode_all(draft, role, &h(wire)).unwrap_err();
        use ProtocolError::*;
        assert_eq!(
            err(Draft::Rfc6455, Role::Server, "81 05 48 65 6c 6c 6f"),
            BadMask
        );
        assert_eq!(
            err(
                Draft::Rfc6455,
                Role::Client,
                "81 85 37 fa 21 3d 7f 9f 4d 51 58"
            ),
            BadMask
        );
        assert_eq!(
            err(Draft::Rfc6455, Role::Client, "83 00"),
            ReservedOpcode(3)
        );
        assert_eq!(
            err(Draft::Rfc6455, Role::Client, "8b 00"),
            ReservedOpcode(0xb)
        );
        assert_eq!(err(Draft::Hybi02, Role::Client, "06 00"), ReservedOpcode(6));
        assert_eq!(
            err(Draft::Rfc6455, Role::Client, "09 00"),
            FragmentedControl
        );
        assert_eq!(err(Draft::Hybi02, Role::Client, "82 00"), FragmentedControl);
        assert_eq!(
            err(Draft::Rfc6455, Role::Client, "89 7e 00 7e"),
            ControlTooLong
        );
        assert_eq!(
            err(Draft::Rfc6455, Role::Client, "82 7e 00 05"),
            NonMinimalLength
        );
        assert_eq!(
            err(
                Draft::Rfc6455,
                Role::Client,
                "82 7f 00 00 00 00 00 00 ff ff"
            ),
            NonMinimalLength
        );
        assert_eq!(
            err(
                Draft::Rfc6455,
                Role::Client,
                "82 7f 80 00 00 00 00 00 00 00"
            ),
            LengthOverflow
        );
        assert_eq!(err(Draft::Hybi02, Role::Client, "04 85"), ReservedBits);
    }

    #[test]
    fn frame_size_limit_fails_at_the_header() {
        let mut cfg = Config::default();
        cfg.max_frame_size = 1000;
        let opts = DecoderOptions::new(&cfg, Role::Client, Draft::Rfc6455);
        let mut d = Decoder::new(Draft::Rfc6455, Role::Client, opts, None);
        let mut ok = BytesMut::from(&h("82 7e 03 e8")[..]);
        assert!(d.decode(&mut ok).unwrap().is_none());
        let mut d = Decoder::new(
            Draft::Rfc6455,
            Role::Client,
            DecoderOptions::new(&cfg, Role::Client, Draft::Rfc6455),
            None,
        );
        let mut big = BytesMut::from(&h("82 7e 03 e9")[..]);
        assert_eq!(
            d.decode(&mut big).unwrap_err(),
            ProtocolError::FrameTooLarge(1000)
        );
    }

    #[test]
    fn lenient_switches() {
        let mut cfg = Config::default();
        cfg.strict.minimal_length = false;
        cfg.strict.require_mask_v7_v8 = false;
        let opts = DecoderOptions::new(&cfg, Role::Server, Draft::Hybi08);
        let mut d = Decoder::new(Draft::Hybi08, Role::Server, opts, None);
        let mut buf = BytesMut::from(&h("82 7e 00 02 61 62 81 01 63")[..]);
        assert_eq!(take(&mut d, &mut buf).unwrap().unwrap().data, b"ab");
        assert_eq!(take(&mut d, &mut buf).unwrap().unwrap().data, b"c");
    }
}
