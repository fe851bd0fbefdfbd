//! RFC 8441: a WebSocket as an HTTP/2 stream. The client's request is an
//! extended CONNECT (`:protocol websocket`) whose pseudo-headers the HTTP/2
//! layer has already parsed; the answer is a `200` carrying only the
//! subprotocol and extension headers. There is no key to prove: an HTTP/2
//! peer that sends `:protocol` read the server's
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`, so it is no confused HTTP client.
//! The session is RFC 6455's, so the engine runs it unchanged.

use crate::config::Config;
use crate::draft::Draft;
use crate::error::HandshakeError;
use crate::http::Headers;

use super::detect::enabled;
use super::request::{Challenge, Request};

/// The `:protocol` value RFC 8441 registers for WebSocket.
pub const PROTOCOL: &str = "websocket";

/// Validates an extended CONNECT: `protocol` must be `websocket` and
/// `Sec-WebSocket-Version` 13 (RFC 8441 §5). The `:authority` becomes the
/// `Host` header, so that origin checks and handlers read it as on
/// HTTP/1.1.
pub(super) fn detect(
    config: &Config,
    protocol: &str,
    path: &str,
    authority: &str,
    mut headers: Headers,
) -> Result<Request, HandshakeError> {
    if !protocol.eq_ignore_ascii_case(PROTOCOL) {
        return Err(HandshakeError::NotWebSocket(
            "\":protocol\" must be \"websocket\"",
        ));
    }
    let version = headers
        .get_single("Sec-WebSocket-Version")?
        .ok_or(HandshakeError::MissingHeader("Sec-WebSocket-Version"))?;
    if version.trim() != "13" {
        return Err(HandshakeError::UnsupportedVersion(
            version.trim().to_owned(),
        ));
    }
    let draft = enabled(config, Draft::Rfc6455)?;
    if headers.get("Host").is_none() {
        headers.push("Host", authority);
    }
    Ok(Request {
        method: "CONNECT".to_owned(),
        target: if path.is_empty() { "/" } else { path }.to_owned(),
        headers,
        draft,
        challenge: Challenge::ExtendedConnect,
    })
}

/// The client side of an extended CONNECT: the headers to send beside the
/// pseudo-headers (`:method CONNECT`, `:protocol websocket`, `:scheme`,
/// `:path` = the options' resource, `:authority` = their host), and the
/// check of the server's answer.
#[derive(Debug)]
pub struct ClientConnect {
    fields: Vec<(String, String)>,
    offered: Vec<String>,
}

impl ClientConnect {
    /// The request for `opts` (whose draft must be RFC 6455: the only one
    /// RFC 8441 carries).
    pub fn new(config: &Config, opts: &super::ClientOptions) -> Result<Self, HandshakeError> {
        if opts.draft != Draft::Rfc6455 {
            return Err(HandshakeError::InvalidHeader(
                "Sec-WebSocket-Version",
                "HTTP/2 streams carry RFC 6455 only".into(),
            ));
        }
        let mut fields = vec![("sec-websocket-version".to_owned(), "13".to_owned())];
        if let Some(origin) = &opts.origin {
            fields.push(("origin".to_owned(), origin.clone()));
        }
        if let Some(p) = opts
            .subprotocols
            .iter()
            .find(|p| !p.bytes().all(crate::http::is_token_byte) || p.is_empty())
        {
            return Err(HandshakeError::InvalidHeader(
                "Sec-WebSocket-Protocol",
                p.escape_default().to_string(),
            ));
        }
        if !opts.subprotocols.is_empty() {
            fields.push((
                "sec-websocket-protocol".to_owned(),
                opts.subprotocols.join(", "),
            ));
        }
        if let Some(offer) = crate::extensions::client_offer(&config.extensions, Draft::Rfc6455) {
            fields.push(("sec-websocket-extensions".to_owned(), offer));
        }
        fields.extend(opts.extra_headers.iter().cloned());
        Ok(ClientConnect {
            fields,
            offered: opts.subprotocols.clone(),
        })
    }

    /// The request's header fields.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// Checks the answer's status (200) and headers; the session it opens.
    pub fn accept(
        &self,
        config: &Config,
        status: u16,
        headers: &Headers,
    ) -> Result<crate::session::Session, HandshakeError> {
        if status != 200 {
            return Err(HandshakeError::UnexpectedStatus(status));
        }
        let (subprotocol, extensions) =
            super::client::agreed(config, Draft::Rfc6455, &self.offered, headers)?;
        Ok(crate::session::Session {
            role: crate::session::Role::Client,
            draft: Draft::Rfc6455,
            subprotocol,
            extensions,
            hybi04_mask_key: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::handshake::{ClientOptions, Hooks, ServerHandshake};

    struct Chat;

    impl Hooks for Chat {
        fn select_subprotocol(&self, _req: &Request, offered: &[&str]) -> Option<String> {
            offered.contains(&"chat").then(|| "chat".to_owned())
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.push(*n, *v);
        }
        h
    }

    #[test]
    fn a_stream_opens_an_rfc6455_session_with_what_the_client_offered() {
        let config = Arc::new(Config::default());
        let client = ClientOptions {
            subprotocols: vec!["superchat".into(), "chat".into()],
            origin: Some("https://example.com".into()),
            ..ClientOptions::new(Draft::Rfc6455, "example.com", "/room?x=1")
        };
        let connect = ClientConnect::new(&config, &client).unwrap();
        let sent = headers(
            &connect
                .fields()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        let server = ServerHandshake::extended_connect(
            config.clone(),
            "websocket",
            "/room?x=1",
            "example.com",
            sent,
        );
        let req = server.request().unwrap();
        assert_eq!(
            (req.method(), req.path(), req.query()),
            ("CONNECT", "/room", Some("x=1"))
        );
        assert_eq!(
            req.host(),
            Some("example.com"),
            ":authority stands for Host"
        );
        assert_eq!(req.origin(), Some("https://example.com"));
        let done = server.complete(&Chat, true).unwrap();
        assert!(done.response.is_empty(), "HTTP/2 writes the 200 itself");
        let answer = headers(
            &done
                .fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        assert_eq!(answer.get("Sec-WebSocket-Protocol"), Some("chat"));
        assert!(
            answer.get("Sec-WebSocket-Accept").is_none(),
            "no key, no accept"
        );
        assert_eq!(done.session.extensions.name(), Some("permessage-deflate"));
        let session = connect.accept(&config, 200, &answer).unwrap();
        assert_eq!(session.subprotocol.as_deref(), Some("chat"));
        assert_eq!(session.extensions, done.session.extensions);
    }

    #[test]
    fn what_a_stream_cannot_open_is_refused_with_its_status() {
        let config = Arc::new(Config::default());
        let v13 = || headers(&[("sec-websocket-version", "13")]);
        let refused = |protocol: &str, h: Headers| {
            ServerHandshake::extended_connect(config.clone(), protocol, "/", "a", h)
                .complete(&Chat, true)
                .unwrap_err()
                .error
        };
        assert!(matches!(
            refused("h2c", v13()),
            HandshakeError::NotWebSocket(_)
        ));
        let old = refused("websocket", headers(&[("sec-websocket-version", "8")]));
        assert_eq!((old.status(), old.is_version_mismatch()), (426, true));
        let none = refused("websocket", Headers::new());
        assert_eq!(none, HandshakeError::MissingHeader("Sec-WebSocket-Version"));
        let only_hixie = Config {
            drafts: crate::draft::DraftSet::only(&[Draft::Hixie76]),
            ..Config::default()
        };
        let off =
            ServerHandshake::extended_connect(Arc::new(only_hixie), "websocket", "/", "a", v13())
                .complete(&Chat, true)
                .unwrap_err()
                .error;
        assert_eq!(off, HandshakeError::DraftDisabled(Draft::Rfc6455));
    }

    #[test]
    fn the_client_checks_the_answer() {
        let config = Config::default();
        let connect =
            ClientConnect::new(&config, &ClientOptions::new(Draft::Rfc6455, "a", "/")).unwrap();
        assert_eq!(
            connect.accept(&config, 404, &Headers::new()).unwrap_err(),
            HandshakeError::UnexpectedStatus(404)
        );
        let unoffered = headers(&[("sec-websocket-protocol", "chat")]);
        assert!(matches!(
            connect.accept(&config, 200, &unoffered),
            Err(HandshakeError::UnofferedSubprotocol(_))
        ));
        let hixie = ClientOptions::new(Draft::Hixie76, "a", "/");
        assert!(
            ClientConnect::new(&config, &hixie).is_err(),
            "RFC 6455 only"
        );
    }
}
