//! Close frames: which codes are valid per draft, and parsing and building
//! close payloads (DRAFTS.md §4.4, §5.6).

use bytes::{BufMut, Bytes, BytesMut};

use crate::draft::CloseBody;
use crate::error::{ProtocolError, SendError};

/// No status code was present (API only, never on the wire).
pub const NO_STATUS: u16 = 1005;
/// The connection dropped without a close frame (API only).
pub const ABNORMAL: u16 = 1006;

/// A close as reported to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The peer's status code, or 1005 when it sent none (1006 when the
    /// connection dropped without a close frame).
    pub code: u16,
    /// The UTF-8 reason after the code, often empty. On hybi-01..05, whose
    /// close body is opaque, the whole body (invalid UTF-8 replaced); empty
    /// on hixie and for 1006.
    pub reason: String,
}

/// Whether `code` may appear in a received close frame.
pub fn valid_received_code(rules: CloseBody, code: u16, accept_iana: bool) -> bool {
    match code {
        1000..=1003 | 1007..=1011 | 3000..=4999 => true,
        1004 => rules == CloseBody::Coded,
        1012..=1014 => accept_iana,
        _ => false,
    }
}

/// Whether the application may send `code`.
pub fn valid_sent_code(rules: CloseBody, code: u16) -> bool {
    valid_received_code(rules, code, true)
}

/// Parse a received close payload into what the application sees and the
/// payload of our reply (the echoed code; the echoed body for the drafts
/// whose body is opaque).
pub fn parse(
    rules: CloseBody,
    payload: &Bytes,
    accept_iana: bool,
) -> Result<(CloseFrame, Bytes), ProtocolError> {
    match rules {
        CloseBody::None => Ok((no_status(), Bytes::new())),
        CloseBody::Opaque => Ok((
            CloseFrame {
                code: NO_STATUS,
                reason: String::from_utf8_lossy(payload).into_owned(),
            },
            payload.clone(),
        )),
        CloseBody::Coded | CloseBody::Rfc6455 => match payload.len() {
            0 => Ok((no_status(), Bytes::new())),
            1 => Err(ProtocolError::CloseTooShort),
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !valid_received_code(rules, code, accept_iana) {
                    return Err(ProtocolError::InvalidCloseCode(code));
                }
                let reason = std::str::from_utf8(&payload[2..])
                    .map_err(|_| ProtocolError::InvalidCloseReason)?
                    .to_owned();
                Ok((CloseFrame { code, reason }, payload.slice(..2)))
            }
        },
    }
}

fn no_status() -> CloseFrame {
    CloseFrame {
        code: NO_STATUS,
        reason: String::new(),
    }
}

/// Build the payload of a close we initiate. `None` sends no code.
pub fn build(rules: CloseBody, code: Option<u16>, reason: &str) -> Result<BytesMut, SendError> {
    super::rules::check_close_body(rules, code, reason)?;
    let mut out = BytesMut::new();
    if let (Some(code), CloseBody::Coded | CloseBody::Rfc6455) = (code, rules) {
        out.put_u16(code);
        out.extend_from_slice(reason.as_bytes());
    }
    Ok(out)
}

/// The reason we put in a close frame we send on a protocol violation:
/// the error's text, cut to the 123 bytes a close frame can carry.
pub fn failure_reason(error: &ProtocolError) -> String {
    fit_reason(error.to_string())
}

/// `text` cut (at a character boundary) to the 123 bytes a close frame's
/// reason can carry.
pub(crate) fn fit_reason(mut text: String) -> String {
    if text.len() > 123 {
        let mut cut = 123;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autobahn_code_tables() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(
                valid_received_code(CloseBody::Rfc6455, code, true),
                "{code}"
            );
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(
                !valid_received_code(CloseBody::Rfc6455, code, true),
                "{code}"
            );
        }
        assert!(valid_received_code(CloseBody::Coded, 1004, true));
        assert!(!valid_received_code(CloseBody::Rfc6455, 1012, false));
    }

    #[test]
    fn parse_rules() {
        let p = |b: &[u8]| parse(CloseBody::Rfc6455, &Bytes::copy_from_slice(b), true);
        assert_eq!(p(&[]).unwrap().0.code, NO_STATUS);
        assert_eq!(p(&[3]), Err(ProtocolError::CloseTooShort));
        let (f, reply) = p(b"\x03\xe8bye").unwrap();
        assert_eq!(
            (f.code, f.reason.as_str(), &reply[..]),
            (1000, "bye", &b"\x03\xe8"[..])
        );
        assert_eq!(
            p(&[0x03, 0xe8, 0xff]),
            Err(ProtocolError::InvalidCloseReason)
        );
        assert_eq!(p(&[0x03, 0xed]), Err(ProtocolError::InvalidCloseCode(1005)));
        let (f, reply) = parse(CloseBody::Opaque, &Bytes::from_static(b"\x01\x02"), true).unwrap();
        assert_eq!((f.code, &reply[..]), (NO_STATUS, &b"\x01\x02"[..]));
    }

    #[test]
    fn build_rules() {
        assert_eq!(
            &build(CloseBody::Rfc6455, Some(1000), "bye").unwrap()[..],
            b"\x03\xe8bye"
        );
        assert!(build(CloseBody::Rfc6455, None, "").unwrap().is_empty());
        assert_eq!(
            build(CloseBody::Rfc6455, Some(1006), ""),
            Err(SendError::InvalidCloseCode(1006))
        );
        assert_eq!(
            build(CloseBody::Rfc6455, Some(1000), &"x".repeat(124)),
            Err(SendError::ControlTooLong)
        );
        assert!(build(CloseBody::Opaque, Some(1000), "x")
            .unwrap()
            .is_empty());
    }
}
