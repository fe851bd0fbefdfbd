//! XOR masking, word-wide with a runtime-selected AVX2 path.
//!
//! Masking touches every payload byte a server receives, so it must run at
//! memory speed: the key is widened to a `u64` and the buffer is XORed
//! eight bytes at a time with unaligned loads (vectorised by the compiler;
//! AVX2 when the CPU has it), with byte steps only for the last few bytes.

/// XOR `buf` with the cyclic 4-byte `key`, where `buf[0]` sits at position
/// `offset` of the key stream (hybi-05/06 keep one running index across the
/// masked header and the payload). Returns the key offset after `buf`
/// (modulo 4).
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let offset = offset % 4;
    // The key rotated to start at `offset`, then doubled: a rotate and a
    // multiply, where assembling it byte by byte cost more than masking a
    // small payload.
    let k = u32::from_le_bytes(key)
        .rotate_right(8 * offset as u32)
        .to_le_bytes();
    let k64 = u64::from(u32::from_ne_bytes(k)) * 0x1_0000_0001;
    #[cfg(target_arch = "x86_64")]
    {
        if buf.len() >= 512 && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `xor_words_avx2` requires only that the CPU supports
            // AVX2, which `is_x86_feature_detected!` just confirmed.
            unsafe { xor_words_avx2(buf, k64) };
        } else {
            xor_words(buf, k64);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    xor_words(buf, k64);
    let words = buf.len() & !7;
    for (b, k) in buf[words..].iter_mut().zip(k64.to_ne_bytes()) {
        *b ^= k;
    }
    (offset + buf.len() % 4) % 4
}

/// XOR every whole 8-byte word of `buf` (the tail is left to the caller).
#[inline(always)]
fn xor_words(buf: &mut [u8], k64: u64) {
    for word in buf.chunks_exact_mut(8) {
        let v = u64::from_ne_bytes(word.try_into().expect("8 bytes")) ^ k64;
        word.copy_from_slice(&v.to_ne_bytes());
    }
}

/// [`xor_words`] compiled for AVX2.
///
/// # Safety
///
/// The CPU must support AVX2 (executing its instructions otherwise is
/// undefined behaviour); the function itself touches only `buf`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn xor_words_avx2(buf: &mut [u8], k64: u64) {
    xor_words(buf, k64);
}

/// XOR `buf` with the cyclic 20-byte hybi-04 frame key, starting at key
/// position `offset`. Returns the key offset after `buf` (modulo 20).
pub fn apply_mask20(buf: &mut [u8], key: &[u8; 20], offset: usize) -> usize {
    let start = offset % 20;
    let mut rotated = [0u8; 20];
    for (i, r) in rotated.iter_mut().enumerate() {
        *r = key[(start + i) % 20];
    }
    let mut chunks = buf.chunks_exact_mut(20);
    for chunk in &mut chunks {
        for (b, k) in chunk.iter_mut().zip(rotated.iter()) {
            *b ^= k;
        }
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(rotated.iter()) {
        *b ^= k;
    }
    (start + buf.len() % 20) % 20
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: &[u8], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % key.len()];
        }
    }

    #[test]
    fn rfc6455_vector() {
        let mut p = *b"Hello";
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(p, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn matches_naive_at_every_length_offset_and_alignment() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let key20: [u8; 20] = std::array::from_fn(|i| (i * 37 + 11) as u8);
        let data: Vec<u8> = (0..1200u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..9 {
            for len in [0, 1, 3, 7, 8, 9, 63, 64, 65, 511, 512, 513, 1100] {
                for offset in 0..5 {
                    let mut a = data[start..start + len].to_vec();
                    let mut slice_buf = data.clone();
                    let b = &mut slice_buf[start..start + len];
                    naive(&mut a, &key, offset);
                    assert_eq!(apply_mask(b, key, offset), (offset + len) % 4);
                    assert_eq!(&a[..], &b[..], "start {start} len {len} offset {offset}");

                    let mut a = data[start..start + len].to_vec();
                    let mut c = data[start..start + len].to_vec();
                    naive(&mut a, &key20, offset);
                    apply_mask20(&mut c, &key20, offset);
                    assert_eq!(a, c);
                }
            }
        }
    }

    #[test]
    fn split_application_equals_whole() {
        let key = [9, 8, 7, 6];
        let mut whole: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        let mut parts = whole.clone();
        apply_mask(&mut whole, key, 0);
        let mut off = 0;
        for piece in parts.chunks_mut(13) {
            off = apply_mask(piece, key, off);
        }
        assert_eq!(whole, parts);
    }
}
