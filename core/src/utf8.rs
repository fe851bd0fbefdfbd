//! Streaming UTF-8 validation that fails fast.
//!
//! A text message may arrive in many fragments and TCP reads; Autobahn 6.4.x
//! requires failing (1007) as soon as an invalid byte arrives, not at the end
//! of the message. Complete runs are checked with simdutf8; only a code
//! point split across two chunks (at most 3 bytes) is carried over.

use simdutf8::compat;

/// Incremental UTF-8 validator carrying a split code point between chunks.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: u8,
}

/// The bytes seen so far can never be valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validate a complete text (one shot, SIMD).
#[inline]
pub fn validate(data: &[u8]) -> Result<(), InvalidUtf8> {
    simdutf8::basic::from_utf8(data)
        .map(|_| ())
        .map_err(|_| InvalidUtf8)
}

/// Length of the sequence a lead byte starts (only called on valid leads).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validate the next chunk. An incomplete sequence at the end of the
    /// chunk is fine as long as it can still complete.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = sequence_len(self.partial[0]) - have;
            let take = need.min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            let filled = have + take;
            match compat::from_utf8(&self.partial[..filled]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {
                    self.partial_len = filled as u8;
                    return Ok(());
                }
            }
            data = &data[take..];
        }
        if simdutf8::basic::from_utf8(data).is_ok() {
            return Ok(());
        }
        match compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let rest = &data[e.valid_up_to()..];
                self.partial[..rest.len()].copy_from_slice(rest);
                self.partial_len = rest.len() as u8;
                Ok(())
            }
        }
    }

    /// The message ended: a pending partial sequence is an error. Resets
    /// the validator for the next message.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.partial_len == 0;
        self.partial_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Drop a pending partial code point without judging it, e.g. when a
    /// message is abandoned.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(data: &[u8], split: usize) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for c in data.chunks(split.max(1)) {
            v.feed(c)?;
        }
        v.finish()
    }

    #[test]
    fn agrees_with_std_at_every_split() {
        let cases: Vec<Vec<u8>> = vec![
            "".into(),
            "Hello-µ@ßöäüàá-UTF-8!!".into(),
            "κόσμε".into(),
            "\u{10FFFF}\u{FFFE}\u{FFFF}\u{FDD0}".into(),
            vec![0xC0, 0x80],
            vec![0xE0, 0x80, 0x80],
            vec![0xED, 0xA0, 0x80],
            vec![0xF4, 0x90, 0x80, 0x80],
            vec![0xF5],
            vec![0xFF],
            vec![0x80],
            vec![b'a', 0xE2, 0x82],
            vec![
                0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xED, 0xA0, 0x80,
                0x65, 0x64,
            ],
        ];
        for c in &cases {
            let expect = std::str::from_utf8(c).is_ok();
            assert_eq!(validate(c).is_ok(), expect);
            for split in 1..=c.len().max(1) {
                assert_eq!(streamed(c, split).is_ok(), expect, "{c:x?} split {split}");
            }
        }
    }

    #[test]
    fn fails_fast_before_the_message_ends() {
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        // F4 90 can never start a valid code point: fail now, not at the end.
        assert!(v.feed(&[0xF4, 0x90]).is_err());
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[0xE2]).is_ok());
        assert!(v.feed(&[0x28]).is_err());
    }

    #[test]
    fn truncated_sequence_fails_at_finish() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[b'x', 0xF0, 0x9F]).is_ok());
        assert!(v.finish().is_err());
        // finish resets
        assert!(v.feed(b"ok").is_ok());
        assert!(v.finish().is_ok());
    }
}
