//! A client's opening request as the server sees it after detection.

use crate::draft::{Draft, HandshakeFamily};
use crate::http::{split_list, Headers};

use super::hixie75::{HIXIE75, HIXIE76};

/// A WebSocket opening request whose draft has been detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) headers: Headers,
    pub(super) draft: Draft,
    pub(super) challenge: Challenge,
}

/// What the client asked the server to prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Challenge {
    /// hixie-75 has no challenge.
    None,
    /// The parts of Key1/Key2; key3 is `None` until its 8 bytes arrived.
    Hixie76 {
        part1: u32,
        part2: u32,
        key3: Option<[u8; 8]>,
    },
    /// The trimmed `Sec-WebSocket-Key`, already checked to be 16 bytes.
    Key(String),
    /// RFC 8441's extended CONNECT on an HTTP/2 stream: nothing to prove.
    ExtendedConnect,
}

impl Request {
    /// The request method: `GET` (detection refuses any other), or
    /// `CONNECT` for a WebSocket on an HTTP/2 stream (RFC 8441).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: usually `/path?query`, possibly the
    /// absolute form (`ws://host/path`) that hybi-08 allowed.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The target in origin form (`/path?query`), also for an absolute
    /// target; empty when an absolute target names no path.
    pub fn resource(&self) -> &str {
        let t = self.target.as_str();
        if t.starts_with('/') {
            return t;
        }
        match t.find("://") {
            Some(i) => {
                let rest = &t[i + 3..];
                rest.find(['/', '?']).map_or("", |j| &rest[j..])
            }
            None => t,
        }
    }

    /// The path without the query string (`/` for an empty path).
    pub fn path(&self) -> &str {
        let r = self.resource();
        let p = r.split_once('?').map_or(r, |(p, _)| p);
        if p.is_empty() {
            "/"
        } else {
            p
        }
    }

    /// The query string without `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.resource().split_once('?').map(|(_, q)| q)
    }

    /// Every request header, in order, names as received (lookups are
    /// case-insensitive).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first value of a header (case-insensitive name).
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers.get(name)
    }

    /// The draft detected from `Sec-WebSocket-Version`, or from Key1/Key2 and
    /// `Sec-WebSocket-Draft`, or hixie-75 when neither is present.
    pub fn draft(&self) -> Draft {
        self.draft
    }

    /// The `Sec-WebSocket-Version` the client announced (hybi-04 on).
    pub fn version(&self) -> Option<u8> {
        self.draft.version()
    }

    /// `Origin`, falling back to `Sec-WebSocket-Origin` (which hybi-04..10
    /// clients send instead), for every draft.
    pub fn origin(&self) -> Option<&str> {
        self.headers
            .get("Origin")
            .or_else(|| self.headers.get("Sec-WebSocket-Origin"))
    }

    /// The `Host` header, with its port if the client sent one. Detection
    /// requires it, so a detected request always has one.
    pub fn host(&self) -> Option<&str> {
        self.headers.get("Host")
    }

    /// The subprotocols offered, in the client's order. hixie drafts carry
    /// one opaque value; hybi drafts carry comma lists, possibly spread over
    /// repeated headers.
    pub fn subprotocols(&self) -> Vec<&str> {
        let hixie_name = match self.draft.handshake_family() {
            HandshakeFamily::Hixie75 => HIXIE75.protocol,
            HandshakeFamily::Hixie76 => HIXIE76.protocol,
            HandshakeFamily::Hybi => {
                return self
                    .headers
                    .get_all("Sec-WebSocket-Protocol")
                    .flat_map(split_list)
                    .collect();
            }
        };
        self.headers
            .get(hixie_name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .into_iter()
            .collect()
    }

    /// Every `Sec-WebSocket-Extensions` value, in order (hybi-04 on; older
    /// drafts cannot negotiate extensions).
    pub fn extension_offers(&self) -> Vec<&str> {
        if !self.draft.has_extensions() {
            return Vec::new();
        }
        self.headers.get_all("Sec-WebSocket-Extensions").collect()
    }

    /// The trimmed `Sec-WebSocket-Key` (hybi-04 on).
    pub fn key(&self) -> Option<&str> {
        match &self.challenge {
            Challenge::Key(key) => Some(key),
            _ => None,
        }
    }

    /// hixie-76's 8 raw key3 bytes, once they arrived.
    pub fn key3(&self) -> Option<&[u8; 8]> {
        match &self.challenge {
            Challenge::Hixie76 { key3, .. } => key3.as_ref(),
            _ => None,
        }
    }

    /// Whether the request is still waiting for hixie-76's key3.
    pub(super) fn awaits_key3(&self) -> bool {
        matches!(self.challenge, Challenge::Hixie76 { key3: None, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(draft: Draft, target: &str, headers: &[(&str, &str)]) -> Request {
        let mut h = Headers::new();
        for (n, v) in headers {
            h.push(*n, *v);
        }
        Request {
            method: "GET".into(),
            target: target.into(),
            headers: h,
            draft,
            challenge: Challenge::None,
        }
    }

    #[test]
    fn target_parts() {
        let r = req(Draft::Rfc6455, "/chat/room?a=1&b", &[]);
        assert_eq!(r.path(), "/chat/room");
        assert_eq!(r.query(), Some("a=1&b"));
        let r = req(Draft::Hybi08, "ws://example.com:81/x?y", &[]);
        assert_eq!(r.resource(), "/x?y");
        assert_eq!(r.path(), "/x");
        assert_eq!(r.query(), Some("y"));
        let r = req(Draft::Hybi08, "http://example.com", &[]);
        assert_eq!((r.resource(), r.path(), r.query()), ("", "/", None));
        let r = req(Draft::Hybi08, "http://example.com?q", &[]);
        assert_eq!((r.path(), r.query()), ("/", Some("q")));
    }

    #[test]
    fn subprotocols_per_family() {
        let h = [
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("sec-websocket-protocol", " , v2 "),
            ("WebSocket-Protocol", "old proto"),
        ];
        assert_eq!(
            req(Draft::Rfc6455, "/", &h).subprotocols(),
            ["chat", "superchat", "v2"]
        );
        assert_eq!(
            req(Draft::Hixie76, "/", &h).subprotocols(),
            ["chat, superchat"]
        );
        assert_eq!(req(Draft::Hixie75, "/", &h).subprotocols(), ["old proto"]);
        assert!(req(Draft::Hixie75, "/", &[]).subprotocols().is_empty());
    }

    #[test]
    fn origin_falls_back_and_extensions_need_hybi04() {
        let h = [
            ("Sec-WebSocket-Origin", "http://a"),
            ("Sec-WebSocket-Extensions", "x"),
            ("Sec-WebSocket-Extensions", "y; p=1"),
        ];
        let r = req(Draft::Hybi07, "/", &h);
        assert_eq!(r.origin(), Some("http://a"));
        assert_eq!(r.extension_offers(), ["x", "y; p=1"]);
        assert!(req(Draft::Hybi02, "/", &h).extension_offers().is_empty());
        let mut both = h.to_vec();
        both.push(("Origin", "http://b"));
        assert_eq!(req(Draft::Rfc6455, "/", &both).origin(), Some("http://b"));
    }
}
