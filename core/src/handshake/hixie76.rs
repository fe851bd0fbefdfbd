//! The hixie-76 challenge (also hybi-00..03): `Sec-WebSocket-Key1/Key2`
//! plus 8 raw bytes of key3, answered with a 16-byte MD5 body.

use md5::{Digest as _, Md5};
use rand::{Rng as _, RngCore as _};

/// Why a `Sec-WebSocket-Key1/2` value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// No ASCII digit in the value, so it encodes no number.
    NoDigits,
    /// More than 10 digits: no conforming key has them, and they could
    /// overflow the arithmetic.
    TooManyDigits,
    /// The digits exceed 4294967295.
    TooLarge,
    /// No U+0020: the cross-protocol-attack symptom the draft calls out.
    NoSpaces,
    /// The number is not a multiple of the space count.
    NotMultiple,
}

impl KeyError {
    /// A short reason, used as the text of
    /// [`HandshakeError::InvalidHeader`](crate::HandshakeError::InvalidHeader).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyError::NoDigits => "no digits",
            KeyError::TooManyDigits => "more than 10 digits",
            KeyError::TooLarge => "number exceeds 4294967295",
            KeyError::NoSpaces => "no spaces",
            KeyError::NotMultiple => "number is not a multiple of the space count",
        }
    }
}

/// The 32-bit part a key encodes: its digits read as one number, divided by
/// its count of spaces (docs/PROTOCOL.md, "Handshakes: hixie-76"). Only
/// U+0020 counts as a space.
pub fn key_part(value: &str) -> Result<u32, KeyError> {
    let mut number: u64 = 0;
    let mut digits = 0u32;
    let mut spaces = 0u64;
    for b in value.bytes() {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 10 {
                    return Err(KeyError::TooManyDigits);
                }
                // At most 10 digits: below 10^10, far from u64 overflow.
                number = number * 10 + u64::from(b - b'0');
            }
            b' ' => spaces += 1,
            _ => {}
        }
    }
    if digits == 0 {
        return Err(KeyError::NoDigits);
    }
    if number > u64::from(u32::MAX) {
        return Err(KeyError::TooLarge);
    }
    if spaces == 0 {
        return Err(KeyError::NoSpaces);
    }
    if number % spaces != 0 {
        return Err(KeyError::NotMultiple);
    }
    u32::try_from(number / spaces).map_err(|_| KeyError::TooLarge)
}

/// The 16 challenge bytes: part1 and part2 big-endian, then key3.
pub fn challenge(part1: u32, part2: u32, key3: &[u8; 8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..4].copy_from_slice(&part1.to_be_bytes());
    c[4..8].copy_from_slice(&part2.to_be_bytes());
    c[8..].copy_from_slice(key3);
    c
}

/// The server's 16-byte answer: MD5 of the challenge.
pub fn response(part1: u32, part2: u32, key3: &[u8; 8]) -> [u8; 16] {
    Md5::digest(challenge(part1, part2, key3)).into()
}

/// A client key as the draft builds it (docs/PROTOCOL.md, "Handshakes:
/// hixie-76"), with the part it encodes.
///
/// The digits spell `part × spaces`; noise characters and spaces are mixed
/// in at random positions, never putting a space first or last.
pub fn generate_key() -> (String, u32) {
    let mut rng = rand::rng();
    let spaces: u32 = rng.random_range(1..=12);
    let part = rng.random_range(0..=u32::MAX / spaces);
    // part ≤ u32::MAX / spaces, so the product fits in 32 bits.
    let mut key = (u64::from(part) * u64::from(spaces))
        .to_string()
        .into_bytes();
    for _ in 0..rng.random_range(1..=12) {
        // 0x21-0x2F and 0x3A-0x7E: printable, neither digit nor space.
        let pick = rng.random_range(0..(15 + 69));
        let noise = if pick < 15 {
            0x21 + pick
        } else {
            0x3A + pick - 15
        };
        let at = rng.random_range(0..=key.len());
        key.insert(at, noise);
    }
    for _ in 0..spaces {
        // The key has at least two characters, so 1..len is never empty.
        let at = rng.random_range(1..key.len());
        key.insert(at, b' ');
    }
    (key.into_iter().map(char::from).collect(), part)
}

/// 8 random bytes for key3.
pub fn generate_key3() -> [u8; 8] {
    let mut key3 = [0u8; 8];
    rand::rng().fill_bytes(&mut key3);
    key3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_example() {
        let p1 = key_part("18x 6]8vM;54 *(5:  {   U1]8  z [  8").unwrap();
        let p2 = key_part("1_ tx7X d  <  nw  334J702) 7]o}` 0").unwrap();
        assert_eq!((p1, p2), (155712099, 173347027));
        let key3 = b"Tm[K T2u";
        assert_eq!(
            hex::encode(challenge(p1, p2, key3)),
            "0947fa630a5510d3546d5b4b20543275"
        );
        let r = response(p1, p2, key3);
        assert_eq!(hex::encode(r), "66514a2c664e2f344634217e4b7e4d48");
        assert_eq!(&r, b"fQJ,fN/4F4!~K~MH");
    }

    #[test]
    fn article_example() {
        let p1 = key_part("4 @1  46546xW%0l 1 5").unwrap();
        let p2 = key_part("12998 5 Y3 1  .P00").unwrap();
        assert_eq!((p1, p2), (829309203, 259970620));
        let key3 = b"^n:ds[4U";
        assert_eq!(
            hex::encode(challenge(p1, p2, key3)),
            "316e41130f7ed63c5e6e3a64735b3455"
        );
        let r = response(p1, p2, key3);
        assert_eq!(hex::encode(r), "386a4b5327793a472a436f2c5778612d");
        assert_eq!(&r, b"8jKS'y:G*Co,Wxa-");
    }

    #[test]
    fn negative_keys() {
        assert_eq!(key_part("12345678"), Err(KeyError::NoSpaces));
        assert_eq!(key_part("1 2 3"), Err(KeyError::NotMultiple));
        assert_eq!(key_part("99999999999 "), Err(KeyError::TooManyDigits));
        assert_eq!(key_part("4294967296 "), Err(KeyError::TooLarge));
        assert_eq!(key_part("abc de f"), Err(KeyError::NoDigits));
        assert_eq!(key_part(""), Err(KeyError::NoDigits));
        assert_eq!(
            key_part("123456789012345678901234 "),
            Err(KeyError::TooManyDigits)
        );
        // Tabs are not spaces.
        assert_eq!(key_part("12\t34"), Err(KeyError::NoSpaces));
        assert_eq!(key_part("4294967295 "), Ok(u32::MAX));
        assert_eq!(key_part("0 "), Ok(0));
    }

    #[test]
    fn generated_keys_round_trip() {
        for _ in 0..500 {
            let (key, part) = generate_key();
            assert_eq!(key_part(&key), Ok(part), "{key:?}");
            assert!(!key.starts_with(' ') && !key.ends_with(' '));
            assert!(key.bytes().all(|b| (0x20..0x7f).contains(&b)));
            assert!(key.bytes().any(|b| !b.is_ascii_digit() && b != b' '));
        }
    }
}
