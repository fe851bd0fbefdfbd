//! Moving bytes between PHP strings and messages (one copy each way), and
//! the exception for an argument that cannot be sent.

use bytes::Bytes;
use ext_php_rs::exception::PhpException;
use ext_php_rs::exception::PhpResult;
use ext_php_rs::types::{ZendStr, Zval};
use ext_php_rs::zend::{ce, ClassEntry};
use polysocket::Message;

/// What `$client->send($payload, $type)` sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
}

impl Kind {
    /// The kind `$type` names, if any.
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "text" => Kind::Text,
            "binary" => Kind::Binary,
            "ping" => Kind::Ping,
            "pong" => Kind::Pong,
            "close" => Kind::Close,
            _ => return None,
        })
    }
}

/// The payload's bytes: a PHP string is copied once; other scalars are
/// converted as PHP's `(string)` would (`false` and `null` give "", as
/// php-websocket wrote them). `None` for text that is not UTF-8 (a warning
/// says why) and for values without a string form.
pub fn bytes(payload: &Zval, kind: Kind) -> Option<Bytes> {
    let data = match payload.zend_str() {
        Some(s) => Bytes::copy_from_slice(s.as_bytes()),
        None if payload.is_null() || payload.is_false() => Bytes::new(),
        None => Bytes::from(payload.coerce_to_string()?),
    };
    if kind == Kind::Text && simdutf8::basic::from_utf8(&data).is_err() {
        crate::log::warning(
            "WebSocket\\Connection::send(): a text message must be UTF-8; send it as 'binary'",
        );
        return None;
    }
    Some(data)
}

/// The data message a broadcast sends: `$type` is `text` or `binary`
/// (`\InvalidArgumentException` otherwise, naming `method`); `None` when
/// the payload cannot be sent (see [`bytes`]).
pub fn data_message(payload: &Zval, r#type: &str, method: &str) -> PhpResult<Option<Message>> {
    let kind = match Kind::parse(r#type) {
        Some(kind @ (Kind::Text | Kind::Binary)) => kind,
        _ => {
            return Err(invalid_argument(format!(
                "{method}: type must be 'text' or 'binary', not '{type}'",
                type = r#type
            )))
        }
    };
    Ok(bytes(payload, kind).map(|data| match kind {
        Kind::Text => Message::Text(data),
        _ => Message::Binary(data),
    }))
}

/// `\InvalidArgumentException` (SPL's, always defined) with `message`.
pub fn invalid_argument(message: String) -> PhpException {
    let class = ClassEntry::try_find("InvalidArgumentException").unwrap_or_else(ce::exception);
    PhpException::new(exception_text(message), 0, class)
}

/// `\Exception` with `message` (see [`exception_text`]).
pub fn exception(message: String) -> PhpException {
    PhpException::from_message(exception_text(message))
}

/// `text` fit for a PHP exception's message. Messages quote what the script
/// passed (a host, a file name), and PHP cannot hold a NUL byte in one:
/// ext-php-rs then throws an `\Error` about the NUL instead of our
/// exception (found by php/tests/fuzz_args.php). NULs are written `\0`.
pub fn exception_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\\0")
    } else {
        text
    }
}

/// A PHP string holding a copy of `data`.
pub fn string(data: &[u8]) -> Zval {
    let mut zval = Zval::new();
    zval.set_zend_string(ZendStr::new(data, false));
    zval
}

#[cfg(test)]
mod tests {
    use super::exception_text;

    #[test]
    fn exception_text_has_no_nul() {
        assert_eq!(
            exception_text("cannot resolve a\0b".into()),
            "cannot resolve a\\0b"
        );
        assert_eq!(exception_text("plain".into()), "plain");
    }
}
