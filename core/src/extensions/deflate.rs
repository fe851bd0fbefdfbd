//! The raw-DEFLATE engine shared by the three compression extensions.
//!
//! [`Deflater`] and [`Inflater`] write straight into the caller's `BytesMut`
//! spare capacity and are reused for the whole connection, so steady-state
//! traffic allocates nothing here. [`UnitCodec`] is the part permessage-deflate
//! and deflate-frame have in common: they differ only in what a "unit" is (a
//! message or a frame).

use std::mem::MaybeUninit;

use bytes::BytesMut;
use flate2::{Decompress, FlushDecompress, Status as InflateStatus};
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Status as DeflateStatus};

use crate::error::ProtocolError;
use crate::session::Role;

/// The empty stored block a sync flush ends with; permessage-deflate and
/// deflate-frame strip it from the wire and the receiver appends it again.
pub(crate) const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output is produced in pieces of at most this size so that a limit check
/// runs between pieces and a small payload does not reserve a large buffer.
const CHUNK: usize = 16 * 1024;

/// Appends what `run` writes into `out`'s spare capacity (at most `max`
/// bytes, reserving up to that first). `run` returns the number of bytes it
/// initialised from the start of the slice.
fn fill_spare<R>(
    out: &mut BytesMut,
    max: usize,
    run: impl FnOnce(&mut [MaybeUninit<u8>]) -> (usize, R),
) -> (usize, usize, R) {
    out.reserve(max);
    let spare = out.spare_capacity_mut();
    let room = spare.len().min(max);
    let (written, result) = run(&mut spare[..room]);
    assert!(
        written <= room,
        "codec reported more output than it was given"
    );
    // SAFETY: `run` initialised the first `written` bytes of the spare
    // capacity (zlib's own output count), and `written <= room <= spare`.
    unsafe { out.set_len(out.len() + written) };
    (room, written, result)
}

/// A raw-DEFLATE compressor that sync-flushes after every input.
pub(crate) struct Deflater {
    raw: Deflate,
}

impl Deflater {
    /// `window_bits` is the agreed maximum (8..=15, clamped). zlib refuses a
    /// raw 256-byte window, but zlib (and zlib-rs, its port) never emits a
    /// distance beyond its MAX_DIST = 2^bits - 262: at window 9 that is 250,
    /// within 256, so window 9 serves an agreed 8 with full compression.
    pub(crate) fn new(level: u32, window_bits: u8) -> Self {
        let window_bits = window_bits.clamp(8, 15);
        let config = DeflateConfig {
            level: level.min(9) as i32,
            window_bits: -i32::from(window_bits.max(9)),
            ..DeflateConfig::default()
        };
        Deflater {
            raw: Deflate::new_with_config(config),
        }
    }

    /// Deflates `input` and sync-flushes, appending to `out`. The output
    /// ends with [`SYNC_TAIL`], except when `input` is empty and the previous
    /// call already flushed (zlib then has nothing to write).
    pub(crate) fn compress(&mut self, mut input: &[u8], out: &mut BytesMut) {
        loop {
            let estimate = (input.len() + input.len() / 8 + 64).min(CHUNK);
            let (in_before, out_before) = (self.raw.total_in(), self.raw.total_out());
            let (room, written, status) = fill_spare(out, estimate, |spare| {
                let status = self
                    .raw
                    .compress_uninit(input, spare, DeflateFlush::SyncFlush);
                ((self.raw.total_out() - out_before) as usize, status)
            });
            input = &input[(self.raw.total_in() - in_before) as usize..];
            // zlib reports an error only for a stream in an invalid state,
            // which this type never creates: init is checked by zlib-rs and
            // every call passes a non-empty output buffer.
            match status.expect("deflate on a valid stream") {
                // Output space left over with all input taken: flush done.
                DeflateStatus::Ok if input.is_empty() && written < room => return,
                // Nothing left to do (a repeated flush with no input).
                DeflateStatus::BufError => return,
                _ => {}
            }
        }
    }

    /// Starts a fresh LZ77 context (no_context_takeover); allocation-free.
    pub(crate) fn reset(&mut self) {
        self.raw.reset();
    }
}

/// A raw-DEFLATE decompressor with an output limit.
pub(crate) struct Inflater {
    raw: Decompress,
    /// A block with BFINAL was seen: the stream is over until `reset`.
    ended: bool,
}

impl Inflater {
    /// Always a 32 KiB window: it decodes whatever window the peer agreed
    /// to, and zlib-rs allocates (and accepts distances within) 32 KiB
    /// whatever it is told, so a smaller one would save nothing.
    pub(crate) fn new() -> Self {
        Inflater {
            raw: Decompress::new(false),
            ended: false,
        }
    }

    /// Inflates `input`, appending to `out`, and fails with
    /// `DecompressedTooLarge(max_len)` as soon as `out.len()` would exceed
    /// `max_len`: output is produced in bounded pieces, never all at once.
    /// Returns how many trailing input bytes went unused because the stream
    /// ended (a BFINAL block) before them.
    pub(crate) fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut BytesMut,
        max_len: usize,
    ) -> Result<usize, ProtocolError> {
        if self.ended {
            return Ok(input.len());
        }
        loop {
            // One byte beyond the limit is room enough to detect a bomb.
            let allowed = max_len.saturating_sub(out.len()).saturating_add(1);
            let (in_before, out_before) = (self.raw.total_in(), self.raw.total_out());
            let (room, written, status) = fill_spare(out, allowed.min(CHUNK), |spare| {
                let status = self
                    .raw
                    .decompress_uninit(input, spare, FlushDecompress::None);
                ((self.raw.total_out() - out_before) as usize, status)
            });
            input = &input[(self.raw.total_in() - in_before) as usize..];
            let status = status.map_err(|e| ProtocolError::Compression(e.to_string()))?;
            if out.len() > max_len {
                return Err(ProtocolError::DecompressedTooLarge(max_len));
            }
            if status == InflateStatus::StreamEnd {
                self.ended = true;
                return Ok(input.len());
            }
            // zlib stops short of a full buffer only once it has taken all
            // the input; a full buffer may hide more pending output.
            if written < room {
                return Ok(0);
            }
        }
    }

    /// Makes the inflater ready for a new stream after a BFINAL block.
    /// Only then is a reset needed: a peer that drops its context between
    /// messages continues the same stream, it just stops referring back.
    pub(crate) fn reset_if_ended(&mut self) {
        if self.ended {
            self.raw.reset(false);
            self.ended = false;
        }
    }
}

/// One direction's agreed compression parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Direction {
    pub(crate) window_bits: u8,
    pub(crate) no_context_takeover: bool,
}

/// The codec of permessage-deflate and deflate-frame: each unit (a message,
/// or a frame) is deflated with a sync flush and its tail stripped; the
/// receiver appends the tail after the unit's last piece.
///
/// The zlib states (a compressor holds about 256 KiB, an inflater 40 KiB)
/// are created on first use, so an idle connection that negotiated
/// compression costs nothing until it compresses or inflates.
pub(crate) struct UnitCodec {
    deflater: Option<Deflater>,
    level: u32,
    window_bits: u8,
    /// Our side agreed to no_context_takeover.
    reset_after_unit: bool,
    inflater: Option<Inflater>,
}

impl UnitCodec {
    /// `server` and `client` are what each end's compressor agreed to;
    /// `role` says which of the two we are. The peer's side needs nothing
    /// from our inflater (see [`Inflater::new`] and
    /// [`Inflater::reset_if_ended`]).
    pub(crate) fn new(role: Role, level: u32, server: Direction, client: Direction) -> Self {
        let ours = match role {
            Role::Server => server,
            Role::Client => client,
        };
        UnitCodec {
            deflater: None,
            level,
            window_bits: ours.window_bits,
            reset_after_unit: ours.no_context_takeover,
            inflater: None,
        }
    }

    /// Appends the compressed unit to `out`, without the trailing
    /// `00 00 FF FF`. An empty unit is the single byte `00` (RFC 7692
    /// §7.2.3.6), also when zlib has nothing to write for it.
    pub(crate) fn compress(&mut self, payload: &[u8], out: &mut BytesMut) {
        let start = out.len();
        let (level, bits) = (self.level, self.window_bits);
        let deflater = self
            .deflater
            .get_or_insert_with(|| Deflater::new(level, bits));
        deflater.compress(payload, out);
        if out[start..].ends_with(&SYNC_TAIL) {
            out.truncate(out.len() - SYNC_TAIL.len());
        }
        if out.len() == start {
            out.extend_from_slice(&[0x00]);
        }
        if self.reset_after_unit {
            deflater.reset();
        }
    }

    /// Drops the compressor when it keeps nothing between units (our side
    /// agreed to no_context_takeover): a new one, made on the next unit,
    /// compresses it the same. For a connection gone quiet: the compressor
    /// is most of its memory.
    pub(crate) fn release_compressor(&mut self) {
        if self.reset_after_unit {
            self.deflater = None;
        }
    }

    /// Inflates one piece of a unit into `out` (the unit so far); `last`
    /// feeds the stripped tail. Input after a BFINAL block is ignored.
    pub(crate) fn decompress(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        let inflater = self.inflater.get_or_insert_with(Inflater::new);
        inflater.inflate(input, out, limit)?;
        if last {
            inflater.inflate(&SYNC_TAIL, out, limit)?;
            inflater.reset_if_ended();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deflate(d: &mut Deflater, input: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        d.compress(input, &mut out);
        out.to_vec()
    }

    #[test]
    fn a_compressor_without_context_is_released_and_remade_alike() {
        let side = |no_context_takeover| Direction {
            window_bits: 15,
            no_context_takeover,
        };
        let message = b"the same message twice, the same message twice";
        for (ours, released) in [(true, true), (false, false)] {
            let mut codec = UnitCodec::new(Role::Server, 6, side(ours), side(false));
            let (mut first, mut second) = (BytesMut::new(), BytesMut::new());
            codec.compress(message, &mut first);
            codec.release_compressor();
            assert_eq!(codec.deflater.is_none(), released);
            codec.compress(message, &mut second);
            // Without context the second is the first again; with it, the
            // compressor was kept and refers back to the first.
            assert_eq!(first == second, ours);
        }
    }

    #[test]
    fn sync_flush_keeps_the_tail() {
        let mut d = Deflater::new(6, 15);
        let out = deflate(&mut d, b"Hello");
        assert_eq!(hex::encode(out), "f248cdc9c907000000ffff");
    }

    #[test]
    fn empty_input_flushes_once() {
        let mut d = Deflater::new(6, 15);
        assert_eq!(deflate(&mut d, b""), [0, 0, 0, 0xff, 0xff]);
        assert_eq!(deflate(&mut d, b""), [0u8; 0]);
        assert_eq!(
            hex::encode(deflate(&mut d, b"Hello")),
            "f248cdc9c907000000ffff"
        );
    }

    #[test]
    fn window_8_still_compresses() {
        // Served at window 9: matches within 250 bytes are used
        // (tests/extensions.rs decodes and checks every distance).
        let input = b"abcabcabcabcabcabcabcabcabcabc".repeat(100);
        let mut d = Deflater::new(9, 8);
        let out = deflate(&mut d, &input);
        assert!(out.len() < input.len() / 20, "{} bytes", out.len());
        let mut i = Inflater::new();
        let mut plain = BytesMut::new();
        i.inflate(&out, &mut plain, usize::MAX).unwrap();
        assert_eq!(&plain[..], &input[..]);
    }

    #[test]
    fn inflate_limit_is_exact() {
        let mut d = Deflater::new(6, 15);
        let packed = deflate(&mut d, &[7u8; 1000]);
        let mut out = BytesMut::new();
        Inflater::new().inflate(&packed, &mut out, 1000).unwrap();
        assert_eq!(out.len(), 1000);
        let mut out = BytesMut::new();
        assert_eq!(
            Inflater::new().inflate(&packed, &mut out, 999),
            Err(ProtocolError::DecompressedTooLarge(999))
        );
    }

    #[test]
    fn inflate_reports_input_after_the_end() {
        // "Hello" with BFINAL=1 (RFC 7692 §7.2.3.5), then the appended tail:
        // the block ends in the 7th byte.
        let bytes = hex::decode("f348cdc9c90700000000ffff").unwrap();
        let mut i = Inflater::new();
        let mut out = BytesMut::new();
        assert_eq!(i.inflate(&bytes, &mut out, usize::MAX), Ok(5));
        assert_eq!(&out[..], b"Hello");
        assert_eq!(i.inflate(b"more", &mut out, usize::MAX), Ok(4));
        i.reset_if_ended();
        let hello = hex::decode("f248cdc9c90700").unwrap();
        assert_eq!(i.inflate(&hello, &mut out, usize::MAX), Ok(0));
        assert_eq!(&out[..], b"HelloHello");
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let mut out = BytesMut::new();
        // BTYPE=11 is reserved.
        let r = Inflater::new().inflate(&[0xff, 0xff], &mut out, usize::MAX);
        assert!(matches!(r, Err(ProtocolError::Compression(_))), "{r:?}");
    }
}
