//! Turning fuzzer bytes into decisions and read splits.

use polysocket::{Config, Draft, DraftSet, Role};

/// A cursor handing out decisions from the front of the fuzz input. Once
/// the input runs out every decision reads as zero, so any input is valid
/// and a short one picks the first (most common) option everywhere.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | u64::from(self.byte()) << (8 * i))
    }

    /// One of `options` (the first once the input is exhausted).
    pub fn pick<T: Copy>(&mut self, options: &[T]) -> T {
        options[usize::from(self.byte()) % options.len()]
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }

    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.iter_mut().for_each(|b| *b = self.byte());
        out
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Everything not yet read.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }

    pub fn draft(&mut self) -> Draft {
        self.pick(&Draft::ALL)
    }

    pub fn role(&mut self) -> Role {
        if self.bool() {
            Role::Client
        } else {
            Role::Server
        }
    }

    /// Some drafts, for a server's `Config::drafts`: usually all of them,
    /// sometimes a fuzzer-chosen subset (possibly empty).
    pub fn draft_set(&mut self) -> DraftSet {
        if !self.bool() {
            return DraftSet::ALL;
        }
        let bits = self.u16();
        Draft::ALL
            .into_iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, d)| d)
            .collect()
    }

    /// Flips every strictness switch the fuzzer asks for, starting from
    /// the defaults.
    pub fn strictness(&mut self, config: &mut Config) {
        let bits = self.u16();
        let s = &mut config.strict;
        let flip = |b: &mut bool, i: u32| *b ^= bits & (1 << i) != 0;
        flip(&mut s.minimal_length, 0);
        flip(&mut s.require_mask_v7_v8, 1);
        flip(&mut s.reject_server_mask_v7_v8, 2);
        flip(&mut s.hixie_strict_frame_type, 3);
        flip(&mut s.old_drafts_fail_invalid_utf8, 4);
        flip(&mut s.accept_iana_close_codes, 5);
        flip(&mut s.draftless_key12_as_hybi01, 6);
        flip(&mut s.reject_early_data, 7);
        flip(&mut s.hixie_exact_headers, 8);
    }
}

/// A small deterministic PRNG (SplitMix64): the harnesses derive read
/// lengths and call sequences from one fuzzer-chosen seed, which keeps the
/// payload bytes contiguous for the mutator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    /// `len` bytes of printable ASCII with the odd multi-byte character:
    /// always valid UTF-8 and never 0xFF (the hixie sentinel).
    pub fn text(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            match self.below(16) {
                0 => s.push('é'),
                1 => s.push('€'),
                2 => s.push('😀'),
                _ => s.push(char::from(b' ' + self.below(95) as u8)),
            }
        }
        s
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Cuts a byte string into pieces the way socket reads would: whole, one
/// byte at a time, or pseudo-random lengths up to a fuzzer-chosen maximum,
/// with the occasional empty read.
pub struct Splitter {
    rng: Rng,
    max: usize,
}

impl Splitter {
    pub fn new(input: &mut Input<'_>) -> Self {
        let mode = input.byte();
        let seed = u64::from(input.u16());
        let max = match mode {
            0 => usize::MAX,
            1 => 1,
            m => 1 << (m % 13),
        };
        Splitter {
            rng: Rng::new(seed),
            max,
        }
    }

    /// The length of the next read (may be 0).
    pub fn next_len(&mut self) -> usize {
        match self.max {
            usize::MAX | 1 => self.max,
            max if self.rng.chance(8) => self.rng.below(2) * max,
            max => 1 + self.rng.below(max),
        }
    }

    /// `data` as a sequence of reads; their concatenation is `data`.
    pub fn split<'d>(&mut self, mut data: &'d [u8]) -> Vec<&'d [u8]> {
        let mut pieces = Vec::new();
        let mut empty_run = false;
        while !data.is_empty() {
            let n = self.next_len().min(data.len());
            // Never two empty reads in a row: the split always progresses.
            if n == 0 && std::mem::replace(&mut empty_run, true) {
                continue;
            }
            empty_run = n == 0;
            let (piece, rest) = data.split_at(n);
            pieces.push(piece);
            data = rest;
        }
        pieces
    }
}
