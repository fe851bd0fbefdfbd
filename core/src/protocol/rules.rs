//! What may be sent: the rules that depend only on the draft and the
//! caller's arguments. They are checked here once, by every send path: the
//! engine's own, and a server handle's before it queues a command for a
//! connection served on another thread (so that the caller hears of a bad
//! argument at once instead of never).

use super::{close, MessageKind};
use crate::draft::{CloseBody, Draft};
use crate::error::SendError;

/// The most payload bytes a control frame (ping, pong, close) carries.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The most bytes a close reason carries: 2 of the 125 go to the code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// A data message of `kind`: the hixie drafts carry only text.
#[inline]
pub fn check_message(draft: Draft, kind: MessageKind) -> Result<(), SendError> {
    if kind == MessageKind::Binary && !draft.has_binary() {
        return Err(SendError::Unsupported(draft, "binary messages"));
    }
    Ok(())
}

/// A ping or pong of `len` payload bytes: hybi-01 on, at most 125 bytes.
pub fn check_control(draft: Draft, len: usize) -> Result<(), SendError> {
    if !draft.has_ping() {
        return Err(SendError::Unsupported(draft, "ping and pong"));
    }
    if len > MAX_CONTROL_PAYLOAD {
        return Err(SendError::ControlTooLong);
    }
    Ok(())
}

/// A close we start. Where the draft's close frame carries a code, `code`
/// must be one that may be sent and `reason` must fit beside it; where it
/// carries none (hixie, hybi-01..05) both are left out, and without a
/// `code` so is the reason.
pub fn check_close(draft: Draft, code: Option<u16>, reason: &str) -> Result<(), SendError> {
    check_close_body(draft.close_body(), code, reason)
}

/// [`check_close`] by the draft's close body.
pub(super) fn check_close_body(
    rules: CloseBody,
    code: Option<u16>,
    reason: &str,
) -> Result<(), SendError> {
    let Some(code) = code else {
        return Ok(());
    };
    match rules {
        CloseBody::None | CloseBody::Opaque => Ok(()),
        CloseBody::Coded | CloseBody::Rfc6455 => {
            if !close::valid_sent_code(rules, code) {
                return Err(SendError::InvalidCloseCode(code));
            }
            if reason.len() > MAX_CLOSE_REASON {
                return Err(SendError::ControlTooLong);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_rules() {
        assert!(check_message(Draft::Hixie76, MessageKind::Text).is_ok());
        assert_eq!(
            check_message(Draft::Hixie75, MessageKind::Binary),
            Err(SendError::Unsupported(Draft::Hixie75, "binary messages"))
        );
        assert!(check_message(Draft::Hybi01, MessageKind::Binary).is_ok());
        assert!(check_control(Draft::Hixie76, 0).is_err());
        assert!(check_control(Draft::Hybi01, 125).is_ok());
        assert_eq!(
            check_control(Draft::Rfc6455, 126),
            Err(SendError::ControlTooLong)
        );
    }

    #[test]
    fn close_rules() {
        for code in [1005, 1006, 1015, 5000, 999] {
            assert_eq!(
                check_close(Draft::Rfc6455, Some(code), ""),
                Err(SendError::InvalidCloseCode(code))
            );
        }
        assert!(check_close(Draft::Hybi06, Some(1004), "").is_ok());
        assert!(check_close(Draft::Rfc6455, Some(1004), "").is_err());
        assert!(check_close(Draft::Rfc6455, Some(1000), &"r".repeat(123)).is_ok());
        assert_eq!(
            check_close(Draft::Rfc6455, Some(1000), &"r".repeat(124)),
            Err(SendError::ControlTooLong)
        );
        // No code on the wire: nothing to check.
        assert!(check_close(Draft::Hixie76, Some(5000), "").is_ok());
        assert!(check_close(Draft::Hybi04, Some(5000), "").is_ok());
    }
}
