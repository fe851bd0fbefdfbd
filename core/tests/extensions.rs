//! Compression codecs end to end: client↔server round trips for every
//! agreed parameter combination, the window-size guarantee (window 8
//! included), random messages split at random points, hostile input, and
//! decompression bombs measured with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use flate2::{Compress, Compression, FlushCompress};
use polysocket::extensions::{
    accept_response, negotiate_server, DeflateFrame, DeflateFrameParams, DeflateStream,
    PerMessageDeflate, PmdParams,
};
use polysocket::{Draft, ExtensionsConfig, ProtocolError, Role};
use proptest::prelude::*;

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// Tracks the bytes the current thread holds, and their peak, so that a
/// test can measure what one call allocates while other tests run.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn account(grown: usize, shrunk: usize) {
    let _ = LIVE.try_with(|live| {
        let now = (live.get() + grown).saturating_sub(shrunk);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(layout.size(), 0);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        account(0, layout.size());
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            account(new_size, layout.size());
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most memory this thread held
/// at once during it, beyond what it held before.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get) - base)
}

/// Deterministic bytes without long repeats.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Messages that exercise literals, short and long distances (past 256)
/// and the empty message. `scale` grows the larger ones.
fn corpus(scale: usize) -> Vec<Vec<u8>> {
    let json = br#"{"id":12345,"name":"polysocket","tags":["a","bb","ccc"],"ok":true}"#;
    vec![
        b"Hello".to_vec(),
        Vec::new(),
        json.repeat(20 * scale),
        noise(500 * scale, 1),
        noise(300, 2).repeat(3 * scale),
        [noise(300, 3), json.repeat(20 * scale), noise(300, 3)].concat(),
        b"Hello".to_vec(),
    ]
}

/// A plain RFC 1951 decoder that also reports the longest distance used:
/// zlib's inflaters keep a 32 KiB window whatever they are told, so they
/// cannot check that a peer kept within a smaller one.
fn inflate_measuring(stream: &[u8]) -> Result<(Vec<u8>, usize), &'static str> {
    let mut bits = Bits {
        data: stream,
        pos: 0,
    };
    let (mut out, mut longest) = (Vec::new(), 0);
    while bits.pos < stream.len() * 8 {
        let last = bits.take(1)?;
        match bits.take(2)? {
            0 => {
                bits.pos = bits.pos.div_ceil(8) * 8;
                let len = bits.take(16)?;
                if bits.take(16)? != !len & 0xffff {
                    return Err("stored length check");
                }
                for _ in 0..len {
                    out.push(bits.take(8)? as u8);
                }
            }
            1 => {
                let mut lengths = [8u8; 288];
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                let (lit, dist) = (Huffman::new(&lengths), Huffman::new(&[5; 30]));
                longest = longest.max(codes(&mut bits, &lit, &dist, &mut out)?);
            }
            2 => {
                let (lit, dist) = dynamic_tables(&mut bits)?;
                longest = longest.max(codes(&mut bits, &lit, &dist, &mut out)?);
            }
            _ => return Err("reserved block type"),
        }
        if last == 1 {
            break;
        }
    }
    Ok((out, longest))
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn take(&mut self, n: usize) -> Result<usize, &'static str> {
        let mut v = 0;
        for i in 0..n {
            let byte = self.data.get(self.pos / 8).ok_or("truncated")?;
            v |= usize::from(byte >> (self.pos % 8) & 1) << i;
            self.pos += 1;
        }
        Ok(v)
    }
}

/// A canonical Huffman code: how many codes of each length, and the
/// symbols in code order.
struct Huffman {
    counts: [usize; 16],
    symbols: Vec<usize>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Huffman {
        let mut counts = [0; 16];
        lengths.iter().for_each(|&l| counts[usize::from(l)] += 1);
        counts[0] = 0;
        let symbols = (1..16)
            .flat_map(|len| (0..lengths.len()).filter(move |&s| usize::from(lengths[s]) == len))
            .collect();
        Huffman { counts, symbols }
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<usize, &'static str> {
        let (mut code, mut first, mut index) = (0, 0, 0);
        for len in 1..16 {
            code |= bits.take(1)?;
            let count = self.counts[len];
            if code < first + count {
                return Ok(self.symbols[index + code - first]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("bad code")
    }
}

fn dynamic_tables(bits: &mut Bits<'_>) -> Result<(Huffman, Huffman), &'static str> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let (nlen, ndist, ncode) = (bits.take(5)? + 257, bits.take(5)? + 1, bits.take(4)? + 4);
    let mut code_lengths = [0u8; 19];
    for &i in &ORDER[..ncode] {
        code_lengths[i] = bits.take(3)? as u8;
    }
    let code = Huffman::new(&code_lengths);
    let mut lengths = Vec::with_capacity(nlen + ndist);
    while lengths.len() < nlen + ndist {
        let (value, repeat) = match code.decode(bits)? {
            sym @ 0..=15 => (sym as u8, 1),
            16 => (
                *lengths.last().ok_or("repeat of nothing")?,
                3 + bits.take(2)?,
            ),
            17 => (0, 3 + bits.take(3)?),
            _ => (0, 11 + bits.take(7)?),
        };
        lengths.extend(std::iter::repeat_n(value, repeat));
    }
    if lengths.len() > nlen + ndist {
        return Err("too many lengths");
    }
    Ok((
        Huffman::new(&lengths[..nlen]),
        Huffman::new(&lengths[nlen..]),
    ))
}

/// Decodes one compressed block; returns its longest distance.
fn codes(
    bits: &mut Bits<'_>,
    lit: &Huffman,
    dist: &Huffman,
    out: &mut Vec<u8>,
) -> Result<usize, &'static str> {
    const LEN_BASE: [usize; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [usize; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [usize; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    let mut longest = 0;
    loop {
        match lit.decode(bits)? {
            sym @ 0..=255 => out.push(sym as u8),
            256 => return Ok(longest),
            sym => {
                let i = sym - 257;
                let len = LEN_BASE.get(i).ok_or("bad length")? + bits.take(LEN_EXTRA[i])?;
                let d = dist.decode(bits)?;
                let extra = if d < 4 { 0 } else { d / 2 - 1 };
                let distance = DIST_BASE.get(d).ok_or("bad distance")? + bits.take(extra)?;
                let start = out.len().checked_sub(distance).ok_or("before the start")?;
                for k in 0..len {
                    out.push(out[start + k]);
                }
                longest = longest.max(distance);
            }
        }
    }
}

/// Decodes what a compressor sent and checks it kept within 2^bits
/// (window 8 included: it is compressed at window 9, whose distances stop
/// at 250).
fn assert_within_window(stream: &[u8], bits: u8, expected: &[u8]) {
    let (plain, longest) = inflate_measuring(stream).unwrap();
    assert_eq!(plain, expected);
    assert!(
        longest <= 1 << bits,
        "distance {longest} beyond window {bits}"
    );
}

/// Splits `data` at the given fractions of its length (any order, repeats
/// allowed).
fn split<'a>(data: &'a [u8], points: &[f64]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points
        .iter()
        .map(|p| (p * data.len() as f64) as usize)
        .collect();
    cuts.push(0);
    cuts.push(data.len());
    cuts.sort_unstable();
    cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

fn pmd_params(snct: bool, cnct: bool, server_bits: u8, client_bits: u8) -> PmdParams {
    PmdParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }
}

/// Sends `msgs` from `tx` to `rx` as messages cut into `cuts` frames and
/// returns the stream `tx` produced (messages with their tails put back).
fn pmd_send(
    tx: &mut PerMessageDeflate,
    rx: &mut PerMessageDeflate,
    msgs: &[Vec<u8>],
    cuts: &[f64],
) -> Vec<u8> {
    let mut stream = Vec::new();
    for msg in msgs {
        let mut wire = BytesMut::new();
        tx.compress(msg, &mut wire);
        let frames = split(&wire, cuts);
        let mut out = BytesMut::new();
        for (i, frame) in frames.iter().enumerate() {
            rx.decompress(frame, i + 1 == frames.len(), &mut out, msg.len())
                .unwrap();
        }
        assert_eq!(out, msg[..]);
        stream.extend_from_slice(&wire);
        stream.extend_from_slice(&TAIL);
    }
    stream
}

#[test]
fn pmd_round_trips_every_parameter_combination() {
    let msgs = corpus(1);
    let cuts = [0.3, 0.6];
    for snct in [false, true] {
        for cnct in [false, true] {
            for server_bits in 8..=15 {
                for client_bits in 8..=15 {
                    let p = pmd_params(snct, cnct, server_bits, client_bits);
                    let mut client = PerMessageDeflate::new(&p, Role::Client, 6);
                    let mut server = PerMessageDeflate::new(&p, Role::Server, 6);
                    let up = pmd_send(&mut client, &mut server, &msgs, &cuts);
                    let down = pmd_send(&mut server, &mut client, &msgs, &cuts);
                    let all = msgs.concat();
                    assert_within_window(&up, client_bits, &all);
                    assert_within_window(&down, server_bits, &all);
                }
            }
        }
    }
}

#[test]
fn every_window_size_is_respected() {
    // Past 32 KiB in all, so that the largest window fills up too.
    let msgs: Vec<Vec<u8>> = (0..5).flat_map(|_| corpus(4)).collect();
    for bits in 8..=15 {
        let p = pmd_params(false, false, bits, 15);
        let mut server = PerMessageDeflate::new(&p, Role::Server, 9);
        let mut stream = Vec::new();
        for msg in &msgs {
            let mut wire = BytesMut::new();
            server.compress(msg, &mut wire);
            stream.extend_from_slice(&wire);
            stream.extend_from_slice(&TAIL);
        }
        assert_within_window(&stream, bits, &msgs.concat());
    }
}

#[test]
fn the_measuring_decoder_sees_distances() {
    let longest = |bits| {
        let data = noise(300, 9).repeat(4);
        let mut deflate = Compress::new_with_window_bits(Compression::default(), false, bits);
        let mut stream = Vec::with_capacity(2000);
        deflate
            .compress_vec(&data, &mut stream, FlushCompress::Sync)
            .unwrap();
        let (plain, longest) = inflate_measuring(&stream).unwrap();
        assert_eq!(plain, data);
        longest
    };
    // zlib keeps distances within 2^bits - 262 (its MAX_DIST).
    assert!(longest(10) > 256);
    assert!(longest(9) <= 250);
    let hello_twice = hex::decode("f248cdc9c907000000fffff2001100000000ffff").unwrap();
    assert_eq!(
        inflate_measuring(&hello_twice),
        Ok((b"HelloHello".to_vec(), 5))
    );
}

#[test]
fn deflate_frame_round_trips() {
    let msgs = corpus(1);
    for (snct, cnct) in [(false, false), (true, false), (false, true), (true, true)] {
        for (server_bits, client_bits) in [(15, 15), (8, 15), (15, 8), (9, 12)] {
            let p = DeflateFrameParams {
                webkit_name: true,
                server_max_window_bits: server_bits,
                server_no_context_takeover: snct,
                client_max_window_bits: client_bits,
                client_no_context_takeover: cnct,
            };
            let mut client = DeflateFrame::new(&p, Role::Client, 6);
            let mut server = DeflateFrame::new(&p, Role::Server, 6);
            let up = frame_send(&mut client, &mut server, &msgs);
            assert_within_window(&up, client_bits, &msgs.concat());
            let down = frame_send(&mut server, &mut client, &msgs);
            assert_within_window(&down, server_bits, &msgs.concat());
        }
    }
}

/// Sends each of `frames` from `tx` to `rx` as one compressed frame and
/// returns the stream `tx` produced (frames with their tails put back).
fn frame_send(tx: &mut DeflateFrame, rx: &mut DeflateFrame, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut stream = Vec::new();
    for frame in frames {
        let mut wire = BytesMut::new();
        tx.compress(frame, &mut wire);
        let mut out = BytesMut::new();
        rx.decompress(&wire, &mut out, frame.len()).unwrap();
        assert_eq!(out, frame[..]);
        stream.extend_from_slice(&wire);
        stream.extend_from_slice(&TAIL);
    }
    stream
}

#[test]
fn deflate_stream_round_trips_in_any_chunking() {
    let msgs = corpus(1);
    let mut tx = DeflateStream::new(6);
    let mut rx = DeflateStream::new(6);
    let mut wire = BytesMut::new();
    for msg in &msgs {
        tx.compress(msg, &mut wire);
    }
    let mut out = BytesMut::new();
    for piece in wire.chunks(7) {
        rx.decompress(piece, &mut out, 1 << 20).unwrap();
    }
    assert_eq!(out, msgs.concat()[..]);
}

#[test]
fn negotiated_parameters_drive_both_codecs() {
    let cfg = ExtensionsConfig::default();
    let offer = "permessage-deflate; client_max_window_bits; server_max_window_bits=8";
    let (answer, agreed) = negotiate_server(&cfg, Draft::Rfc6455, &[offer]);
    let answer = answer.unwrap();
    assert_eq!(answer, "permessage-deflate; server_max_window_bits=8");
    assert_eq!(
        accept_response(&cfg, Draft::Rfc6455, &[&answer]),
        Ok(agreed)
    );
    let polysocket::extensions::Agreed::PerMessageDeflate(p) = agreed else {
        panic!("{agreed:?}");
    };
    let mut client = PerMessageDeflate::new(&p, Role::Client, 6);
    let mut server = PerMessageDeflate::new(&p, Role::Server, 6);
    let down = pmd_send(&mut server, &mut client, &corpus(1), &[]);
    assert_within_window(&down, 8, &corpus(1).concat());
}

/// 64 MiB of zeros as one raw deflate stream of about 64 KiB: 1 MiB
/// deflated from a fresh context refers only to itself, so 64 copies of it
/// form a valid stream.
fn bomb() -> Vec<u8> {
    let mut deflate = DeflateStream::new(9);
    let mut chunk = BytesMut::new();
    deflate.compress(&vec![0u8; 1 << 20], &mut chunk);
    let mut bomb = chunk.repeat(64);
    bomb.truncate(bomb.len() - TAIL.len());
    bomb
}

#[test]
fn decompression_bombs_stop_at_the_limit() {
    const LIMIT: usize = 1 << 20;
    let bomb = bomb();
    assert!(bomb.len() < 128 * 1024, "{}", bomb.len());

    let p = pmd_params(false, false, 15, 15);
    let mut pmd = PerMessageDeflate::new(&p, Role::Server, 6);
    let mut out = BytesMut::new();
    let (r, peak) = peak_during(|| pmd.decompress(&bomb, true, &mut out, LIMIT));
    assert_eq!(r, Err(ProtocolError::DecompressedTooLarge(LIMIT)));
    assert!(peak < 4 * LIMIT, "peak {peak}");
    assert!(out.capacity() < 4 * LIMIT);

    // Fed frame by frame, the limit covers the whole message.
    let mut pmd = PerMessageDeflate::new(&p, Role::Server, 6);
    let mut out = BytesMut::new();
    let (r, peak) = peak_during(|| {
        bomb.chunks(1024)
            .try_for_each(|frame| pmd.decompress(frame, false, &mut out, LIMIT))
    });
    assert_eq!(r, Err(ProtocolError::DecompressedTooLarge(LIMIT)));
    assert!(peak < 4 * LIMIT, "peak {peak}");

    let df = DeflateFrameParams {
        webkit_name: false,
        server_max_window_bits: 15,
        server_no_context_takeover: false,
        client_max_window_bits: 15,
        client_no_context_takeover: false,
    };
    let mut frame = DeflateFrame::new(&df, Role::Client, 6);
    let mut out = BytesMut::new();
    let (r, peak) = peak_during(|| frame.decompress(&bomb, &mut out, LIMIT));
    assert_eq!(r, Err(ProtocolError::DecompressedTooLarge(LIMIT)));
    assert!(peak < 4 * LIMIT, "peak {peak}");

    let mut stream = DeflateStream::new(6);
    let mut out = BytesMut::new();
    let (r, peak) = peak_during(|| stream.decompress(&bomb, &mut out, LIMIT));
    assert_eq!(r, Err(ProtocolError::DecompressedTooLarge(LIMIT)));
    assert!(peak < 4 * LIMIT, "peak {peak}");
}

#[test]
fn steady_state_compression_does_not_allocate() {
    let p = pmd_params(false, true, 15, 15);
    let mut client = PerMessageDeflate::new(&p, Role::Client, 6);
    let mut server = PerMessageDeflate::new(&p, Role::Server, 6);
    let msg = br#"{"op":"tick","seq":1,"payload":"steady state"}"#.repeat(20);
    let (mut wire, mut out) = (BytesMut::with_capacity(4096), BytesMut::with_capacity(4096));
    let mut once = |wire: &mut BytesMut, out: &mut BytesMut| {
        wire.clear();
        out.clear();
        client.compress(&msg, wire);
        server.decompress(wire, true, out, 1 << 20).unwrap();
        assert_eq!(out[..], msg[..]);
    };
    once(&mut wire, &mut out);
    let ((), peak) = peak_during(|| {
        for _ in 0..50 {
            once(&mut wire, &mut out);
        }
    });
    assert_eq!(peak, 0);
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..3000),
        (prop::collection::vec(any::<u8>(), 1..40), 1..300usize)
            .prop_map(|(unit, n)| unit.repeat(n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn pmd_random_messages_and_splits(
        msgs in prop::collection::vec(message(), 1..6),
        snct: bool,
        cnct: bool,
        server_bits in 8u8..=15,
        client_bits in 8u8..=15,
        level in 0u32..=9,
        cuts in prop::collection::vec(0.0..=1.0f64, 0..5),
    ) {
        let p = pmd_params(snct, cnct, server_bits, client_bits);
        let mut client = PerMessageDeflate::new(&p, Role::Client, level);
        let mut server = PerMessageDeflate::new(&p, Role::Server, level);
        let up = pmd_send(&mut client, &mut server, &msgs, &cuts);
        let down = pmd_send(&mut server, &mut client, &msgs, &cuts);
        assert_within_window(&up, client_bits, &msgs.concat());
        assert_within_window(&down, server_bits, &msgs.concat());
    }

    #[test]
    fn deflate_stream_random_writes_and_reads(
        writes in prop::collection::vec(message(), 1..6),
        cuts in prop::collection::vec(0.0..=1.0f64, 0..8),
    ) {
        let mut tx = DeflateStream::new(6);
        let mut rx = DeflateStream::new(6);
        let mut wire = BytesMut::new();
        for w in &writes {
            tx.compress(w, &mut wire);
        }
        let mut out = BytesMut::new();
        for piece in split(&wire, &cuts) {
            rx.decompress(piece, &mut out, 1 << 20).unwrap();
        }
        prop_assert_eq!(&out[..], &writes.concat()[..]);
    }

    #[test]
    fn garbage_never_panics(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..4),
        bits in 8u8..=15,
    ) {
        let p = pmd_params(false, false, bits, bits);
        let mut pmd = PerMessageDeflate::new(&p, Role::Server, 6);
        let df = DeflateFrameParams {
            webkit_name: true,
            server_max_window_bits: bits,
            server_no_context_takeover: false,
            client_max_window_bits: bits,
            client_no_context_takeover: false,
        };
        let mut frame = DeflateFrame::new(&df, Role::Server, 6);
        let mut stream = DeflateStream::new(6);
        let mut out = BytesMut::new();
        for (i, f) in frames.iter().enumerate() {
            let _ = pmd.decompress(f, i + 1 == frames.len(), &mut out, 10_000);
            let _ = frame.decompress(f, &mut out, 20_000);
            let _ = stream.decompress(f, &mut out, 10_000);
        }
    }

    #[test]
    fn any_header_value_is_handled(
        values in prop::collection::vec("[a-z_=;,\" \\\\0-9\t-]{0,60}|.{0,30}", 0..3),
    ) {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let cfg = ExtensionsConfig::default();
        for draft in [Draft::Hybi04, Draft::Hybi08, Draft::Rfc6455] {
            let (answer, agreed) = negotiate_server(&cfg, draft, &values);
            prop_assert_eq!(answer.is_some(), agreed != polysocket::extensions::Agreed::None);
            let _ = accept_response(&cfg, draft, &values);
        }
    }
}
