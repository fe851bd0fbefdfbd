//! A small raw-DEFLATE decoder (RFC 1951), after zlib's `contrib/puff`,
//! used as an oracle for what the compression extensions send: unlike
//! zlib-rs, which accepts distances within 32 KiB whatever window it is
//! given, it checks every back-reference against the agreed window, and it
//! shares no code with the inflater it is compared to. Slow (bit by bit)
//! and strict; only for fuzzing.

/// Decodes a sender's units (messages, frames or stream flushes) in order,
/// keeping the history a conforming sender may refer back to.
pub struct WindowChecker {
    window: usize,
    /// The sender drops its context after every unit (no_context_takeover):
    /// nothing before the unit may be referred to.
    reset: bool,
    history: Vec<u8>,
}

impl WindowChecker {
    pub fn new(window_bits: u8, reset: bool) -> Self {
        WindowChecker {
            window: 1 << window_bits,
            reset,
            history: Vec::new(),
        }
    }

    /// Decodes one unit: whole blocks up to the end of `input` (every unit
    /// ends with a sync flush, so on a byte boundary). Returns its bytes, or
    /// why the unit is invalid or leaves the window.
    pub fn unit(&mut self, input: &[u8]) -> Result<Vec<u8>, String> {
        if self.reset {
            self.history.clear();
        }
        let start = self.history.len();
        let mut r = Reader {
            data: input,
            pos: 0,
            buf: 0,
            cnt: 0,
        };
        while r.pos < input.len() {
            let last = r.bits(1)?;
            match r.bits(2)? {
                0 => self.stored(&mut r)?,
                1 => self.codes(&mut r, &FIXED.0, &FIXED.1)?,
                2 => {
                    let (lencode, distcode) = dynamic(&mut r)?;
                    self.codes(&mut r, &lencode, &distcode)?;
                }
                _ => return Err("invalid block type 3".into()),
            }
            if last == 1 && r.pos < input.len() {
                return Err("data after the final block".into());
            }
        }
        let unit = self.history[start..].to_vec();
        // Only the window can be referred to later.
        let excess = self.history.len().saturating_sub(self.window);
        self.history.drain(..excess);
        Ok(unit)
    }

    fn stored(&mut self, r: &mut Reader<'_>) -> Result<(), String> {
        r.align();
        let len = r.bits(16)?;
        let nlen = r.bits(16)?;
        if len != !nlen & 0xFFFF {
            return Err("stored block length does not match its complement".into());
        }
        let bytes = r
            .data
            .get(r.pos..r.pos + len as usize)
            .ok_or("input ends inside a stored block")?;
        self.history.extend_from_slice(bytes);
        r.pos += len as usize;
        Ok(())
    }

    fn codes(
        &mut self,
        r: &mut Reader<'_>,
        lencode: &Huffman,
        distcode: &Huffman,
    ) -> Result<(), String> {
        const LBASE: [u16; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99,
            115, 131, 163, 195, 227, 258,
        ];
        const LEXT: [u8; 29] = [
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
        ];
        const DBASE: [u16; 30] = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025,
            1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
        ];
        const DEXT: [u8; 30] = [
            0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12,
            12, 13, 13,
        ];
        loop {
            let symbol = usize::from(lencode.decode(r)?);
            if symbol < 256 {
                self.history.push(symbol as u8);
                continue;
            }
            if symbol == 256 {
                return Ok(());
            }
            let i = symbol - 257;
            if i >= LBASE.len() {
                return Err(format!("invalid length symbol {symbol}"));
            }
            let len = usize::from(LBASE[i]) + r.bits(u32::from(LEXT[i]))? as usize;
            let d = usize::from(distcode.decode(r)?);
            if d >= DBASE.len() {
                return Err(format!("invalid distance symbol {d}"));
            }
            let dist = usize::from(DBASE[d]) + r.bits(u32::from(DEXT[d]))? as usize;
            if dist > self.window {
                return Err(format!(
                    "distance {dist} beyond the {}-byte window",
                    self.window
                ));
            }
            if dist > self.history.len() {
                return Err(format!("distance {dist} before the start of the context"));
            }
            for _ in 0..len {
                let b = self.history[self.history.len() - dist];
                self.history.push(b);
            }
        }
    }
}

/// Least-significant-bit-first reader.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    cnt: u32,
}

impl Reader<'_> {
    fn bits(&mut self, n: u32) -> Result<u32, String> {
        while self.cnt < n {
            let b = *self.data.get(self.pos).ok_or("input ends inside a block")?;
            self.pos += 1;
            self.buf |= u64::from(b) << self.cnt;
            self.cnt += 8;
        }
        let v = (self.buf & ((1 << n) - 1)) as u32;
        self.buf >>= n;
        self.cnt -= n;
        Ok(v)
    }

    /// Drops the bits left in the current byte (stored blocks start on a
    /// byte boundary).
    fn align(&mut self) {
        self.buf = 0;
        self.cnt = 0;
    }
}

/// A canonical Huffman code: how many codes of each length, and the
/// symbols in code order.
struct Huffman {
    count: [u16; 16],
    symbol: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman, String> {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        let mut left: i32 = 1;
        for &c in &count[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return Err("over-subscribed Huffman code".into());
            }
        }
        let mut offs = [0u16; 16];
        for len in 1..15 {
            offs[len + 1] = offs[len] + count[len];
        }
        let mut symbol = vec![0; lengths.len()];
        for (s, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbol[usize::from(offs[usize::from(l)])] = s as u16;
                offs[usize::from(l)] += 1;
            }
        }
        Ok(Huffman { count, symbol })
    }

    fn decode(&self, r: &mut Reader<'_>) -> Result<u16, String> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for &count in &self.count[1..] {
            code |= r.bits(1)? as i32;
            let count = i32::from(count);
            if code - first < count {
                return Ok(self.symbol[(index + code - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("invalid Huffman code".into())
    }
}

/// The fixed literal/length and distance codes (RFC 1951 §3.2.6).
static FIXED: std::sync::LazyLock<(Huffman, Huffman)> = std::sync::LazyLock::new(|| {
    let mut lengths = [8u8; 288];
    lengths[144..256].fill(9);
    lengths[256..280].fill(7);
    let lencode = Huffman::new(&lengths).expect("the fixed code is complete");
    let distcode = Huffman::new(&[5; 30]).expect("the fixed code is valid");
    (lencode, distcode)
});

/// Reads a dynamic block's code descriptions (RFC 1951 §3.2.7).
fn dynamic(r: &mut Reader<'_>) -> Result<(Huffman, Huffman), String> {
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let nlen = r.bits(5)? as usize + 257;
    let ndist = r.bits(5)? as usize + 1;
    let ncode = r.bits(4)? as usize + 4;
    if nlen > 286 || ndist > 30 {
        return Err("too many length or distance codes".into());
    }
    let mut lengths = [0u8; 19];
    for &i in &ORDER[..ncode] {
        lengths[i] = r.bits(3)? as u8;
    }
    let lencode = Huffman::new(&lengths)?;
    let mut lengths = Vec::with_capacity(nlen + ndist);
    while lengths.len() < nlen + ndist {
        let (value, repeat) = match lencode.decode(r)? {
            s @ 0..=15 => (s as u8, 1),
            16 => {
                let prev = *lengths.last().ok_or("repeat with no previous length")?;
                (prev, 3 + r.bits(2)?)
            }
            17 => (0, 3 + r.bits(3)?),
            _ => (0, 11 + r.bits(7)?),
        };
        if lengths.len() + repeat as usize > nlen + ndist {
            return Err("too many lengths".into());
        }
        lengths.extend(std::iter::repeat_n(value, repeat as usize));
    }
    if lengths[256] == 0 {
        return Err("no end-of-block code".into());
    }
    Ok((
        Huffman::new(&lengths[..nlen])?,
        Huffman::new(&lengths[nlen..])?,
    ))
}
