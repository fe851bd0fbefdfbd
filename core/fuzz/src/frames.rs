//! `frames`: the frame [`Decoder`] for a fuzzer-chosen draft, role and
//! decoder options. Two modes:
//!
//! * **decode**: arbitrary bytes, fed whole to one decoder and in random
//!   reads to another;
//! * **round trip**: fuzzer-described frames are written with the peer's
//!   [`Encoder`] (real masking, hybi-04's SHA-1 keys, 64-bit lengths) and
//!   must decode to the same frames.
//!
//! Checked on every chunk (the [`Chunk`] contract): `len <= consumed <=
//! buf.len()`; each call makes progress (a chunk consumes bytes or its
//! frame header did); chunks of a frame run `first` .. `last` with the
//! same opcode, FIN and RSV and add up to the announced `frame_len`, which
//! respects `max_frame_size`; control frames are final and short; only a
//! sentinel frame's terminator is consumed beyond the payload. Across the
//! two decoders of a decode run: the same frames and the same error,
//! however the bytes were split.

use bytes::{Buf, BytesMut};

use polysocket::draft::Framing;
use polysocket::framing::{Chunk, Decoder, DecoderOptions, Encoder, OpCode};
use polysocket::{Config, Draft, ProtocolError, Role};

use super::input::{Input, Splitter};

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let draft = input.draft();
    let role = input.role();
    let mut config = Config::default();
    input.strictness(&mut config);
    let round_trip = input.bool();
    if !round_trip {
        config.max_frame_size = input.pick(&[1 << 20, 0, 1, 125, 126, 65535, 65536]);
    }
    let key = input.bool().then(|| input.array::<20>());
    let mut splitter = Splitter::new(&mut input);
    let new_decoder = || {
        let options = DecoderOptions::new(&config, role, draft);
        Decoder::new(draft, role, options, key)
    };

    if round_trip {
        let frames = describe_frames(&mut input, draft);
        let peer = match role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        let encoder = Encoder::new(draft, peer, key);
        let mut wire = BytesMut::new();
        for f in &frames {
            encoder.encode(f.opcode, f.fin, f.rsv, &f.payload, &mut wire);
        }
        let decoded = decode(new_decoder(), &config, &splitter.split(&wire));
        assert_eq!(decoded.error, None, "{draft} {role:?}: our own frames");
        assert_eq!(decoded.frames, frames, "{draft} {role:?}");
        assert!(decoded.partial.is_none());
    } else {
        let bytes = input.rest();
        let whole = decode(new_decoder(), &config, &[bytes]);
        let split = decode(new_decoder(), &config, &splitter.split(bytes));
        assert_eq!(whole.frames, split.frames, "{draft} {role:?}");
        assert_eq!(whole.error, split.error, "{draft} {role:?}");
    }
}

/// A frame as decoded (payload reassembled from its chunks).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    payload: Vec<u8>,
}

/// What a decoder made of some reads.
struct Decoded {
    frames: Vec<Frame>,
    /// The frame whose last chunk has not arrived.
    partial: Option<(Frame, Option<u64>)>,
    error: Option<ProtocolError>,
}

/// Runs `decoder` over `pieces` the way a connection does, checking every
/// chunk; stops at the first error.
fn decode(mut decoder: Decoder, config: &Config, pieces: &[&[u8]]) -> Decoded {
    let mut out = Decoded {
        frames: Vec::new(),
        partial: None,
        error: None,
    };
    let mut buf = BytesMut::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let chunk = match decoder.decode(&mut buf) {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            };
            check_chunk(&chunk, config, before, buf.len());
            let payload = &buf[..chunk.len];
            let (mut frame, frame_len) = match out.partial.take() {
                None => {
                    assert!(chunk.first, "a frame starts with its first chunk");
                    let frame = Frame {
                        opcode: chunk.opcode,
                        fin: chunk.fin,
                        rsv: chunk.rsv,
                        payload: Vec::new(),
                    };
                    (frame, chunk.frame_len)
                }
                Some((frame, frame_len)) => {
                    assert!(!chunk.first, "a frame has one first chunk");
                    assert_eq!(chunk.opcode, frame.opcode);
                    assert_eq!(chunk.rsv, frame.rsv);
                    assert_eq!(chunk.frame_len, frame_len);
                    // Sentinel frames only know they are final at the end.
                    if frame_len.is_some() {
                        assert_eq!(chunk.fin, frame.fin);
                    }
                    (frame, frame_len)
                }
            };
            frame.fin = chunk.fin;
            frame.payload.extend_from_slice(payload);
            if let Some(n) = frame_len {
                assert!(frame.payload.len() as u64 <= n, "chunks exceed frame_len");
                assert_eq!(chunk.last, frame.payload.len() as u64 == n);
            }
            buf.advance(chunk.consumed);
            if chunk.last {
                out.frames.push(frame);
            } else {
                out.partial = Some((frame, frame_len));
            }
        }
    }
    out
}

/// The per-chunk contract; `before` and `after` are the buffer's length
/// around the `decode` call that returned `chunk`.
fn check_chunk(chunk: &Chunk, config: &Config, before: usize, after: usize) {
    assert!(chunk.len <= chunk.consumed, "{chunk:?}");
    assert!(chunk.consumed <= after, "{chunk:?} with {after} bytes");
    assert!(
        chunk.consumed > 0 || after < before,
        "no progress: {chunk:?}"
    );
    assert_eq!(chunk.rsv & !0x70, 0, "{chunk:?}");
    match chunk.frame_len {
        Some(n) => {
            assert_eq!(chunk.consumed, chunk.len, "{chunk:?}");
            assert!(n <= config.max_frame_size as u64, "{chunk:?}");
        }
        None => assert!(chunk.consumed - chunk.len <= 1, "{chunk:?}"),
    }
    assert!(
        chunk.len as u64 <= config.max_frame_size as u64,
        "{chunk:?}"
    );
    if chunk.opcode.is_control() {
        assert!(chunk.fin, "{chunk:?}");
        assert!(chunk.frame_len.unwrap_or(0) <= 125, "{chunk:?}");
    }
}

/// Frames for the peer to send, as the fuzz input describes them, fitted
/// to what the draft's framing can carry.
fn describe_frames(input: &mut Input<'_>, draft: Draft) -> Vec<Frame> {
    const OPCODES: [OpCode; 6] = [
        OpCode::Text,
        OpCode::Binary,
        OpCode::Continuation,
        OpCode::Ping,
        OpCode::Pong,
        OpCode::Close,
    ];
    let sentinel = match draft.framing() {
        Framing::Sentinel { closing } => Some(closing),
        Framing::Binary(_) => None,
    };
    let mut frames = Vec::new();
    let mut big = false;
    while !input.is_empty() && frames.len() < 64 {
        let flags = input.byte();
        let mut opcode = OPCODES[usize::from(flags & 7) % OPCODES.len()];
        let mut fin = flags & 8 == 0;
        let mut rsv = [0, 0x40, 0x20, 0x10, 0x70][usize::from(flags >> 4) % 5];
        let size = input.byte();
        let mut payload = match size {
            // One 16-bit and one 64-bit length per input at most: they are
            // long, so their bytes repeat a short pattern.
            254 | 255 if !big => {
                big = true;
                let n = if size == 254 { 300 } else { 65536 + 7 };
                let pattern = input.bytes(3).to_vec();
                (0..n)
                    .map(|i| pattern.get(i % pattern.len().max(1)).copied().unwrap_or(0))
                    .collect()
            }
            n => input.bytes(usize::from(n)).to_vec(),
        };
        if opcode.is_control() {
            fin = true;
            payload.truncate(125);
        }
        if let Some(closing) = sentinel {
            // Only text frames (and hixie-76's empty close) exist; text
            // cannot contain the 0xFF sentinel.
            fin = true;
            rsv = 0;
            if opcode == OpCode::Close && closing {
                payload.clear();
            } else {
                opcode = OpCode::Text;
                payload
                    .iter_mut()
                    .filter(|b| **b == 0xFF)
                    .for_each(|b| *b = 0xFE);
            }
        }
        frames.push(Frame {
            opcode,
            fin,
            rsv,
            payload,
        });
    }
    frames
}
