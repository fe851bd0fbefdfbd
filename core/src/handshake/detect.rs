//! Server-side draft detection (docs/PROTOCOL.md, "Handshakes: detection"):
//! which draft a request speaks, or why it is refused.
//!
//! Precedence is that of em-websocket and websocket-ruby, so that nonsense
//! mixtures resolve deterministically: `Sec-WebSocket-Version`, then
//! `Sec-WebSocket-Key1/Key2` (with `Sec-WebSocket-Draft`), then hixie-75.

use crate::config::Config;
use crate::draft::{Draft, HandshakeFamily};
use crate::error::HandshakeError;
use crate::http::Headers;

use super::hixie76::key_part;
use super::hybi::is_valid_key;
use super::request::{Challenge, Request};

/// Detects the draft of a request and validates its handshake headers.
///
/// `minor_version` is the HTTP/1.x minor version; every draft requires
/// HTTP/1.1.
pub(super) fn detect(
    config: &Config,
    method: String,
    target: String,
    minor_version: u8,
    headers: Headers,
) -> Result<Request, HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::MethodNotGet(method));
    }
    if minor_version < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    if !headers.has_token("Upgrade", "websocket") {
        return Err(HandshakeError::NotWebSocket(
            "\"Upgrade\" must be \"websocket\"",
        ));
    }
    if !headers.has_token("Connection", "upgrade") {
        return Err(HandshakeError::NotWebSocket(
            "\"Connection\" must contain \"Upgrade\"",
        ));
    }

    let (draft, challenge) = if let Some(v) = headers.get_single("Sec-WebSocket-Version")? {
        let draft = enabled(config, versioned_draft(v)?)?;
        let key = headers
            .get_single("Sec-WebSocket-Key")?
            .ok_or(HandshakeError::MissingHeader("Sec-WebSocket-Key"))?
            .trim();
        if !is_valid_key(key) {
            return Err(HandshakeError::InvalidHeader(
                "Sec-WebSocket-Key",
                "not the base64 of 16 bytes".into(),
            ));
        }
        (draft, Challenge::Key(key.to_owned()))
    } else if headers.get("Sec-WebSocket-Key1").is_some()
        || headers.get("Sec-WebSocket-Key2").is_some()
    {
        let key1 = headers
            .get_single("Sec-WebSocket-Key1")?
            .ok_or(HandshakeError::MissingHeader("Sec-WebSocket-Key1"))?;
        let key2 = headers
            .get_single("Sec-WebSocket-Key2")?
            .ok_or(HandshakeError::MissingHeader("Sec-WebSocket-Key2"))?;
        let draft = enabled(config, key12_draft(config, &headers)?)?;
        let invalid = |name, e: super::hixie76::KeyError| {
            HandshakeError::InvalidHeader(name, e.as_str().to_owned())
        };
        let part1 = key_part(key1).map_err(|e| invalid("Sec-WebSocket-Key1", e))?;
        let part2 = key_part(key2).map_err(|e| invalid("Sec-WebSocket-Key2", e))?;
        let challenge = Challenge::Hixie76 {
            part1,
            part2,
            key3: None,
        };
        (draft, challenge)
    } else if headers.get("Sec-WebSocket-Key").is_some() || headers.get("Origin").is_none() {
        // A Key without a Version has never been valid; without Origin the
        // request is no hixie-75 one either. Either way the client should
        // learn which versions we speak.
        return Err(HandshakeError::MissingHeader("Sec-WebSocket-Version"));
    } else {
        (enabled(config, Draft::Hixie75)?, Challenge::None)
    };

    if draft.handshake_family() != HandshakeFamily::Hybi && config.strict.hixie_exact_headers {
        exact(&headers, "Upgrade", "WebSocket")?;
        exact(&headers, "Connection", "Upgrade")?;
    }
    if headers.get_single("Host")?.is_none() {
        return Err(HandshakeError::MissingHeader("Host"));
    }

    Ok(Request {
        method,
        target,
        headers,
        draft,
        challenge,
    })
}

/// The draft a `Sec-WebSocket-Version` value announces: 1 to 3 digits
/// (400 otherwise), then a known version (426 otherwise).
fn versioned_draft(value: &str) -> Result<Draft, HandshakeError> {
    let v = value.trim();
    if v.is_empty() || v.len() > 3 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HandshakeError::InvalidHeader(
            "Sec-WebSocket-Version",
            v.to_owned(),
        ));
    }
    v.parse()
        .ok()
        .and_then(Draft::from_version)
        .ok_or_else(|| HandshakeError::UnsupportedVersion(v.to_owned()))
}

/// The draft of a Key1/Key2 request, from its optional
/// `Sec-WebSocket-Draft` marker. hybi-03 clients sent 2, but the widely
/// used websocket-ruby client sends 3, so both mean hybi-02/03.
fn key12_draft(config: &Config, headers: &Headers) -> Result<Draft, HandshakeError> {
    match headers.get_single("Sec-WebSocket-Draft")?.map(str::trim) {
        None if config.strict.draftless_key12_as_hybi01 => Ok(Draft::Hybi01),
        None | Some("0") => Ok(Draft::Hixie76),
        Some("1") => Ok(Draft::Hybi01),
        Some("2" | "3") => Ok(Draft::Hybi02),
        Some(other) => Err(HandshakeError::UnknownDraft(other.to_owned())),
    }
}

pub(super) fn enabled(config: &Config, draft: Draft) -> Result<Draft, HandshakeError> {
    if config.drafts.contains(draft) {
        Ok(draft)
    } else {
        Err(HandshakeError::DraftDisabled(draft))
    }
}

/// The exact single value the hixie drafts specify, for strict servers.
fn exact(headers: &Headers, name: &'static str, want: &str) -> Result<(), HandshakeError> {
    match headers.get_single(name)? {
        Some(v) if v == want => Ok(()),
        other => Err(HandshakeError::InvalidHeader(
            name,
            format!("{:?} is not exactly {want:?}", other.unwrap_or_default()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draft::DraftSet;

    fn headers(list: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in list {
            h.push(*n, *v);
        }
        h
    }

    fn run(config: &Config, extra: &[(&str, &str)]) -> Result<Request, HandshakeError> {
        let mut list = vec![
            ("Host", "example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
        ];
        list.extend_from_slice(extra);
        detect(config, "GET".into(), "/".into(), 1, headers(&list))
    }

    const KEY: (&str, &str) = ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
    const KEY1: (&str, &str) = ("Sec-WebSocket-Key1", "4 @1  46546xW%0l 1 5");
    const KEY2: (&str, &str) = ("Sec-WebSocket-Key2", "12998 5 Y3 1  .P00");

    fn draft_of(extra: &[(&str, &str)]) -> Result<Draft, HandshakeError> {
        run(&Config::default(), extra).map(|r| r.draft())
    }

    #[test]
    fn versions() {
        for (v, d) in [
            ("4", Draft::Hybi04),
            ("5", Draft::Hybi05),
            ("6", Draft::Hybi06),
            ("7", Draft::Hybi07),
            ("8", Draft::Hybi08),
            ("13", Draft::Rfc6455),
        ] {
            assert_eq!(draft_of(&[KEY, ("Sec-WebSocket-Version", v)]), Ok(d));
        }
        for v in ["0", "3", "9", "12", "14", "999"] {
            assert_eq!(
                draft_of(&[KEY, ("Sec-WebSocket-Version", v)]),
                Err(HandshakeError::UnsupportedVersion(v.into()))
            );
        }
        for v in ["", "1000", "13a", "-1", "0x1"] {
            assert!(matches!(
                draft_of(&[KEY, ("Sec-WebSocket-Version", v)]),
                Err(HandshakeError::InvalidHeader("Sec-WebSocket-Version", _))
            ));
        }
        assert_eq!(
            draft_of(&[
                KEY,
                ("Sec-WebSocket-Version", "13"),
                ("Sec-WebSocket-Version", "13")
            ]),
            Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Version"))
        );
    }

    #[test]
    fn version_takes_precedence_over_key12() {
        assert_eq!(
            draft_of(&[KEY, ("Sec-WebSocket-Version", "13"), KEY1, KEY2]),
            Ok(Draft::Rfc6455)
        );
    }

    #[test]
    fn key_checks() {
        let v = ("Sec-WebSocket-Version", "13");
        assert_eq!(
            draft_of(&[v]),
            Err(HandshakeError::MissingHeader("Sec-WebSocket-Key"))
        );
        assert_eq!(
            draft_of(&[v, KEY, KEY]),
            Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Key"))
        );
        assert!(matches!(
            draft_of(&[v, ("Sec-WebSocket-Key", "c2hvcnQ=")]),
            Err(HandshakeError::InvalidHeader("Sec-WebSocket-Key", _))
        ));
        assert_eq!(
            draft_of(&[KEY]),
            Err(HandshakeError::MissingHeader("Sec-WebSocket-Version"))
        );
        let r = run(
            &Config::default(),
            &[v, ("Sec-WebSocket-Key", " dGhlIHNhbXBsZSBub25jZQ== ")],
        )
        .unwrap();
        assert_eq!(r.key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
    }

    #[test]
    fn key12_drafts() {
        assert_eq!(draft_of(&[KEY1, KEY2]), Ok(Draft::Hixie76));
        let d = |v| draft_of(&[KEY1, KEY2, ("Sec-WebSocket-Draft", v)]);
        assert_eq!(d("0"), Ok(Draft::Hixie76));
        assert_eq!(d("1"), Ok(Draft::Hybi01));
        assert_eq!(d("2"), Ok(Draft::Hybi02));
        assert_eq!(d("3"), Ok(Draft::Hybi02));
        assert_eq!(d("4"), Err(HandshakeError::UnknownDraft("4".into())));
        let mut config = Config::default();
        config.strict.draftless_key12_as_hybi01 = true;
        assert_eq!(
            run(&config, &[KEY1, KEY2]).map(|r| r.draft()),
            Ok(Draft::Hybi01)
        );
        assert_eq!(
            run(&config, &[KEY1, KEY2, ("Sec-WebSocket-Draft", "0")]).map(|r| r.draft()),
            Ok(Draft::Hixie76)
        );
    }

    #[test]
    fn one_of_key1_key2_is_refused() {
        assert_eq!(
            draft_of(&[KEY1]),
            Err(HandshakeError::MissingHeader("Sec-WebSocket-Key2"))
        );
        assert_eq!(
            draft_of(&[KEY2]),
            Err(HandshakeError::MissingHeader("Sec-WebSocket-Key1"))
        );
    }

    #[test]
    fn bad_hixie76_keys() {
        for bad in ["12345678", "1 2 3", "99999999999 ", "no digits here"] {
            assert!(matches!(
                draft_of(&[("Sec-WebSocket-Key1", bad), KEY2]),
                Err(HandshakeError::InvalidHeader("Sec-WebSocket-Key1", _))
            ));
            assert!(matches!(
                draft_of(&[KEY1, ("Sec-WebSocket-Key2", bad)]),
                Err(HandshakeError::InvalidHeader("Sec-WebSocket-Key2", _))
            ));
        }
    }

    #[test]
    fn hixie75_needs_origin_and_host() {
        assert_eq!(draft_of(&[("Origin", "http://a")]), Ok(Draft::Hixie75));
        assert_eq!(
            draft_of(&[]),
            Err(HandshakeError::MissingHeader("Sec-WebSocket-Version"))
        );
        let h = headers(&[
            ("Upgrade", "WebSocket"),
            ("Connection", "Upgrade"),
            ("Origin", "http://a"),
        ]);
        assert_eq!(
            detect(&Config::default(), "GET".into(), "/".into(), 1, h),
            Err(HandshakeError::MissingHeader("Host"))
        );
    }

    #[test]
    fn request_line_and_upgrade_checks() {
        let c = Config::default();
        let h = || {
            headers(&[
                ("Host", "a"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
            ])
        };
        assert_eq!(
            detect(&c, "POST".into(), "/".into(), 1, h()),
            Err(HandshakeError::MethodNotGet("POST".into()))
        );
        assert_eq!(
            detect(&c, "GET".into(), "/".into(), 0, h()),
            Err(HandshakeError::HttpVersion)
        );
        let no_upgrade = headers(&[("Host", "a"), ("Connection", "Upgrade")]);
        assert!(matches!(
            detect(&c, "GET".into(), "/".into(), 1, no_upgrade),
            Err(HandshakeError::NotWebSocket(_))
        ));
        let no_conn = headers(&[
            ("Host", "a"),
            ("Upgrade", "WebSocket"),
            ("Connection", "close"),
        ]);
        assert!(matches!(
            detect(&c, "GET".into(), "/".into(), 1, no_conn),
            Err(HandshakeError::NotWebSocket(_))
        ));
    }

    #[test]
    fn hixie_exact_headers() {
        let mut c = Config::default();
        c.strict.hixie_exact_headers = true;
        // The default `run` headers use lowercase "websocket".
        assert!(matches!(
            run(&c, &[KEY1, KEY2]),
            Err(HandshakeError::InvalidHeader("Upgrade", _))
        ));
        let exact = headers(&[
            ("Host", "a"),
            ("Upgrade", "WebSocket"),
            ("Connection", "Upgrade"),
            ("Origin", "http://a"),
        ]);
        assert!(detect(&c, "GET".into(), "/".into(), 1, exact).is_ok());
        // hybi requests stay case-insensitive.
        assert!(run(&c, &[KEY, ("Sec-WebSocket-Version", "13")]).is_ok());
    }

    #[test]
    fn disabled_drafts() {
        let c = Config {
            drafts: DraftSet::only(&[Draft::Rfc6455]),
            ..Config::default()
        };
        assert_eq!(
            run(&c, &[KEY, ("Sec-WebSocket-Version", "8")]).map(|r| r.draft()),
            Err(HandshakeError::DraftDisabled(Draft::Hybi08))
        );
        assert_eq!(
            run(&c, &[KEY1, KEY2]).map(|r| r.draft()),
            Err(HandshakeError::DraftDisabled(Draft::Hixie76))
        );
        assert_eq!(
            run(&c, &[("Origin", "http://a")]).map(|r| r.draft()),
            Err(HandshakeError::DraftDisabled(Draft::Hixie75))
        );
    }
}
