//! The client side: the request of each draft and strict validation of the
//! server's answer (docs/PROTOCOL.md, "Handshakes: client side").

use std::sync::Arc;

use bytes::{Buf as _, BytesMut};

use crate::config::Config;
use crate::draft::{Draft, HandshakeFamily};
use crate::error::HandshakeError;
use crate::extensions::{self, Agreed};
use crate::http::{self, is_token_byte, write_header, HeadScanner, Headers, ResponseHead};
use crate::session::{Role, Session};

use super::hixie75::{location, HixieNames, HIXIE75, HIXIE76};
use super::{hixie76, hybi, Completed};

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// The draft to speak. The answer is validated by this draft's rules;
    /// there is no fallback to another draft.
    pub draft: Draft,
    /// The Host header, with `:port` when it is not the default.
    pub host: String,
    /// Path and query (`/chat?room=1`).
    pub resource: String,
    /// TLS: hixie answers must then name a `wss://` Location.
    pub secure: bool,
    /// The Origin to send. hixie-75/76, hybi-00..03 and hybi-04 servers
    /// require one, so those drafts send `http[s]://<host>` when unset.
    pub origin: Option<String>,
    /// Subprotocols to offer, preferred first. hixie drafts carry a single
    /// opaque value: several entries are sent space-separated as one.
    pub subprotocols: Vec<String>,
    /// Extra request headers (cookies, `Authorization`, ...), written after the
    /// WebSocket ones. Names must be tokens, values ISO-8859-1 without CR, LF
    /// or NUL.
    pub extra_headers: Vec<(String, String)>,
    /// Versions 4-8: send `Sec-WebSocket-Origin` (drafts 04-10, the
    /// default) instead of `Origin` (drafts 11-12).
    pub sec_origin_header: bool,
    /// hybi-01: send the unofficial `Sec-WebSocket-Draft: 1`, without which
    /// servers take the request for hixie-76 (default on).
    pub draft_header: bool,
}

impl ClientOptions {
    /// Options for `draft`, `host` and `resource`, with defaults: plain TCP,
    /// the default origin, no subprotocols, no extra headers,
    /// `sec_origin_header` and `draft_header` on.
    pub fn new(draft: Draft, host: impl Into<String>, resource: impl Into<String>) -> Self {
        ClientOptions {
            draft,
            host: host.into(),
            resource: resource.into(),
            secure: false,
            origin: None,
            subprotocols: Vec::new(),
            extra_headers: Vec::new(),
            sec_origin_header: true,
            draft_header: true,
        }
    }
}

/// The client side of one opening handshake.
#[derive(Debug)]
pub struct ClientHandshake {
    config: Arc<Config>,
    draft: Draft,
    request: Vec<u8>,
    expect: Expect,
    buf: BytesMut,
    scanner: HeadScanner,
    head: Option<ResponseHead>,
    state: State,
}

/// What the answer must contain, fixed when the request is built.
#[derive(Debug)]
enum Expect {
    Hixie {
        names: &'static HixieNames,
        origin: String,
        location: String,
        protocol: Option<String>,
        /// hixie-76's MD5 body; `None` for hixie-75.
        body: Option<[u8; 16]>,
    },
    Hybi {
        key: String,
        accept: String,
        offered: Vec<String>,
    },
}

#[derive(Debug)]
enum State {
    Head,
    /// The head was valid; hixie-76's 16-byte body is still awaited.
    Body(Session),
    Done,
    Failed(HandshakeError),
}

impl ClientHandshake {
    /// Builds the request with fresh random keys. Fails on options that
    /// cannot be written into a request (control characters, an empty
    /// host, a resource with spaces, an invalid subprotocol name).
    pub fn new(config: Arc<Config>, opts: ClientOptions) -> Result<Self, HandshakeError> {
        let draft = opts.draft;
        let (request, expect) = build_request(&config, opts)?;
        Ok(ClientHandshake {
            config,
            draft,
            request,
            expect,
            buf: BytesMut::new(),
            scanner: HeadScanner::default(),
            head: None,
            state: State::Head,
        })
    }

    /// The bytes to send: the request (with hixie-76's key3 after it).
    pub fn request_bytes(&self) -> &[u8] {
        &self.request
    }

    /// Feed the server's bytes (any segmentation). `Ok(None)`: need more.
    /// On success `leftover` holds the bytes after the answer, the start of
    /// the frame stream. After an error every call returns the same error.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Completed>, HandshakeError> {
        let result = self.advance(data);
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    /// The answer's headers, once its head was read (also when the answer
    /// was refused, e.g. to follow a redirect or read a 401 challenge).
    pub fn response_headers(&self) -> Option<&Headers> {
        self.head.as_ref().map(|h| &h.headers)
    }

    /// The answer's status code, once its head was read.
    pub fn response_status(&self) -> Option<u16> {
        self.head.as_ref().map(|h| h.status)
    }

    /// The request's `Sec-WebSocket-Key` (hybi drafts), for a framework
    /// that writes the request itself.
    pub fn key(&self) -> Option<&str> {
        match &self.expect {
            Expect::Hybi { key, .. } => Some(key),
            Expect::Hixie { .. } => None,
        }
    }

    /// The request's `Sec-WebSocket-Extensions` offer, if any.
    pub fn extension_offer(&self) -> Option<String> {
        extensions::client_offer(&self.config.extensions, self.draft)
    }

    /// For frameworks that read the answer themselves (Tornado's HTTP
    /// client): check an answer head they parsed, as [`feed`](Self::feed)
    /// would. hixie-76's 16-byte body then still comes through `feed`
    /// (`Ok(None)` until it did); hixie-75, whose answer is compared byte
    /// for byte, needs `feed`.
    pub fn feed_head(
        &mut self,
        status: u16,
        headers: Headers,
    ) -> Result<Option<Completed>, HandshakeError> {
        if !matches!(self.state, State::Head) {
            return self.feed(&[]);
        }
        let head = self.head.insert(ResponseHead {
            minor_version: 1,
            status,
            reason: String::new(),
            headers,
        });
        match validate(&self.config, self.draft, &self.expect, head, false) {
            Ok(session) => {
                self.state = State::Body(session);
                self.feed(&[])
            }
            Err(e) => {
                self.state = State::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// One step; `feed` records any error as the final state.
    fn advance(&mut self, data: &[u8]) -> Result<Option<Completed>, HandshakeError> {
        let session = match std::mem::replace(&mut self.state, State::Done) {
            State::Failed(e) => return Err(e),
            State::Done => return Err(HandshakeError::Finished),
            State::Body(session) => {
                self.buf.extend_from_slice(data);
                session
            }
            State::Head => {
                self.buf.extend_from_slice(data);
                match self.read_head(data)? {
                    Some(session) => session,
                    None => {
                        self.state = State::Head;
                        return Ok(None);
                    }
                }
            }
        };
        if let Expect::Hixie {
            body: Some(expected),
            ..
        } = &self.expect
        {
            let Some(body) = self.buf.get(..16) else {
                self.state = State::Body(session);
                return Ok(None);
            };
            if body != expected {
                return Err(HandshakeError::ChallengeMismatch);
            }
            self.buf.advance(16);
        }
        Ok(Some(Completed {
            response: Vec::new(),
            fields: Vec::new(),
            session,
            leftover: std::mem::take(&mut self.buf),
        }))
    }

    /// Parses and validates the answer head once it is complete.
    fn read_head(&mut self, chunk: &[u8]) -> Result<Option<Session>, HandshakeError> {
        if !self
            .scanner
            .should_parse(chunk, self.buf.len(), &self.config)?
        {
            return Ok(None);
        }
        let Some((head, n)) = http::parse_response(&self.buf, &self.config)? else {
            return Ok(None);
        };
        // hixie-75 clients compare the raw bytes, not the parsed head.
        let exact_prefix = self.buf.starts_with(HIXIE75.prefix);
        self.buf.advance(n);
        let head = self.head.insert(head);
        validate(&self.config, self.draft, &self.expect, head, exact_prefix).map(Some)
    }
}

/// The request bytes and what the answer must then contain.
fn build_request(
    config: &Config,
    opts: ClientOptions,
) -> Result<(Vec<u8>, Expect), HandshakeError> {
    let ClientOptions {
        draft,
        host,
        resource,
        secure,
        origin,
        subprotocols,
        extra_headers,
        sec_origin_header,
        draft_header,
    } = opts;
    let resource = if resource.is_empty() {
        "/".to_owned()
    } else {
        resource
    };
    if !resource.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(HandshakeError::InvalidHeader(
            "request target",
            resource.escape_default().to_string(),
        ));
    }
    if host.is_empty() {
        return Err(HandshakeError::InvalidHeader("Host", "empty".into()));
    }
    let family = draft.handshake_family();
    // hybi protocol names are RFC 7230 tokens; hixie's single value may be
    // any printable ASCII but not empty.
    for p in &subprotocols {
        let valid = match family {
            HandshakeFamily::Hybi => p.bytes().all(is_token_byte),
            _ => p.bytes().all(|b| (0x21..0x7f).contains(&b)),
        };
        if p.is_empty() || !valid {
            return Err(HandshakeError::InvalidHeader(
                "Sec-WebSocket-Protocol",
                p.escape_default().to_string(),
            ));
        }
    }
    let origin = origin.or_else(|| {
        (family != HandshakeFamily::Hybi || draft == Draft::Hybi04).then(|| {
            let scheme = if secure { "https://" } else { "http://" };
            format!("{scheme}{host}")
        })
    });

    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(resource.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut key3 = None;
    let expect = if family == HandshakeFamily::Hybi {
        let key = hybi::random_key();
        write_header(&mut out, "Host", &host)?;
        out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
        write_header(&mut out, "Sec-WebSocket-Key", &key)?;
        if let Some(origin) = &origin {
            let name = if draft < Draft::Rfc6455 && sec_origin_header {
                "Sec-WebSocket-Origin"
            } else {
                "Origin"
            };
            write_header(&mut out, name, origin)?;
        }
        if let Some(v) = draft.version() {
            write_header(&mut out, "Sec-WebSocket-Version", &v.to_string())?;
        }
        if !subprotocols.is_empty() {
            write_header(&mut out, "Sec-WebSocket-Protocol", &subprotocols.join(", "))?;
        }
        if let Some(offer) = extensions::client_offer(&config.extensions, draft) {
            write_header(&mut out, "Sec-WebSocket-Extensions", &offer)?;
        }
        Expect::Hybi {
            accept: hybi::accept_key(&key),
            key,
            offered: subprotocols,
        }
    } else {
        // hixie-75 servers may check the order of the first lines.
        out.extend_from_slice(b"Upgrade: WebSocket\r\nConnection: Upgrade\r\n");
        write_header(&mut out, "Host", &host)?;
        let origin = origin.unwrap_or_default();
        write_header(&mut out, "Origin", &origin)?;
        let marker = match draft {
            Draft::Hybi01 if draft_header => Some("1"),
            Draft::Hybi02 => Some("2"),
            _ => None,
        };
        if let Some(marker) = marker {
            write_header(&mut out, "Sec-WebSocket-Draft", marker)?;
        }
        let (names, body) = if family == HandshakeFamily::Hixie76 {
            let (key1, part1) = hixie76::generate_key();
            let (key2, part2) = hixie76::generate_key();
            write_header(&mut out, "Sec-WebSocket-Key1", &key1)?;
            write_header(&mut out, "Sec-WebSocket-Key2", &key2)?;
            let k3 = hixie76::generate_key3();
            key3 = Some(k3);
            (&HIXIE76, Some(hixie76::response(part1, part2, &k3)))
        } else {
            (&HIXIE75, None)
        };
        let protocol = (!subprotocols.is_empty()).then(|| subprotocols.join(" "));
        if let Some(p) = &protocol {
            write_header(&mut out, names.protocol, p)?;
        }
        Expect::Hixie {
            names,
            origin,
            location: location(secure, &host, &resource),
            protocol,
            body,
        }
    };
    for (name, value) in &extra_headers {
        write_header(&mut out, name, value)?;
    }
    out.extend_from_slice(b"\r\n");
    if let Some(key3) = key3 {
        out.extend_from_slice(&key3);
    }
    Ok((out, expect))
}

/// The subprotocol (one of `offered`) and the extensions a hybi answer
/// agreed to: the same on an HTTP/1.1 upgrade and an HTTP/2 stream.
pub(super) fn agreed(
    config: &Config,
    draft: Draft,
    offered: &[String],
    h: &Headers,
) -> Result<(Option<String>, Agreed), HandshakeError> {
    let mut subprotocol = None;
    if let Some(p) = h.get_single("Sec-WebSocket-Protocol")? {
        let p = p.trim();
        if !offered.iter().any(|o| o == p) {
            return Err(HandshakeError::UnofferedSubprotocol(p.to_owned()));
        }
        subprotocol = Some(p.to_owned());
    }
    let answers: Vec<&str> = h.get_all("Sec-WebSocket-Extensions").collect();
    let extensions = extensions::accept_response(&config.extensions, draft, &answers)?;
    Ok((subprotocol, extensions))
}

/// Checks an answer head against the request; the session it opens.
fn validate(
    config: &Config,
    draft: Draft,
    expect: &Expect,
    head: &ResponseHead,
    hixie75_prefix: bool,
) -> Result<Session, HandshakeError> {
    if head.status != 101 {
        return Err(HandshakeError::UnexpectedStatus(head.status));
    }
    if head.minor_version != 1 {
        return Err(HandshakeError::InvalidResponse("not HTTP/1.1".into()));
    }
    let h = &head.headers;
    let mut session = Session {
        role: Role::Client,
        draft,
        subprotocol: None,
        extensions: Agreed::None,
        hybi04_mask_key: None,
    };
    match expect {
        Expect::Hybi {
            key,
            accept,
            offered,
        } => {
            if !h.has_token("Upgrade", "websocket") {
                return Err(invalid("\"Upgrade\" is not \"websocket\""));
            }
            if !h.has_token("Connection", "upgrade") {
                return Err(invalid("\"Connection\" lacks \"Upgrade\""));
            }
            let got = h
                .get_single("Sec-WebSocket-Accept")?
                .ok_or(HandshakeError::MissingHeader("Sec-WebSocket-Accept"))?;
            if got.trim() != accept {
                return Err(HandshakeError::ChallengeMismatch);
            }
            if draft == Draft::Hybi04 {
                let nonce = h
                    .get_single("Sec-WebSocket-Nonce")?
                    .ok_or(HandshakeError::MissingHeader("Sec-WebSocket-Nonce"))?;
                if !hybi::is_valid_key(nonce) {
                    return Err(HandshakeError::InvalidHeader(
                        "Sec-WebSocket-Nonce",
                        "not the base64 of 16 bytes".into(),
                    ));
                }
                session.hybi04_mask_key = Some(hybi::connection_mask_key(key, nonce));
            }
            (session.subprotocol, session.extensions) = agreed(config, draft, offered, h)?;
        }
        Expect::Hixie {
            names,
            origin,
            location,
            protocol,
            ..
        } => {
            if draft == Draft::Hixie75 && !hixie75_prefix {
                return Err(invalid("the first 85 bytes are not the hixie-75 prefix"));
            }
            if config.strict.hixie_exact_headers {
                if h.get("Upgrade") != Some("WebSocket") || h.get("Connection") != Some("Upgrade") {
                    return Err(invalid(
                        "\"Upgrade: WebSocket\" and \"Connection: Upgrade\" expected exactly",
                    ));
                }
            } else if !h.has_token("Upgrade", "websocket") || !h.has_token("Connection", "upgrade")
            {
                return Err(invalid(
                    "\"Upgrade: WebSocket\" and \"Connection: Upgrade\" expected",
                ));
            }
            echo(h, names.origin, origin)?;
            echo(h, names.location, location)?;
            match (h.get_single(names.protocol)?, protocol) {
                (None, None) => {}
                (Some(got), Some(sent)) if got == sent => {
                    session.subprotocol = Some(got.to_owned())
                }
                (None, Some(_)) => return Err(HandshakeError::MissingHeader(names.protocol)),
                (Some(got), _) => return Err(HandshakeError::UnofferedSubprotocol(got.to_owned())),
            }
        }
    }
    Ok(session)
}

/// A hixie header that must repeat what the client sent.
fn echo(h: &Headers, name: &'static str, sent: &str) -> Result<(), HandshakeError> {
    match h.get_single(name)? {
        Some(got) if got == sent => Ok(()),
        Some(got) => Err(HandshakeError::InvalidHeader(
            name,
            format!("{got:?} instead of {sent:?}"),
        )),
        None => Err(HandshakeError::MissingHeader(name)),
    }
}

fn invalid(why: &str) -> HandshakeError {
    HandshakeError::InvalidResponse(why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{AcceptOptions, Progress, ServerHandshake};

    fn config() -> Arc<Config> {
        Arc::new(Config::default())
    }

    fn client(opts: ClientOptions) -> ClientHandshake {
        ClientHandshake::new(config(), opts).unwrap()
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// The answer our server gives to this client's request.
    fn answer(c: &ClientHandshake, subprotocol: Option<&str>) -> Vec<u8> {
        let mut server = ServerHandshake::new(config());
        assert_eq!(server.feed(c.request_bytes()), Ok(Progress::Ready));
        let opts = AcceptOptions {
            subprotocol: subprotocol.map(str::to_owned),
            ..AcceptOptions::default()
        };
        server.accept(&opts).unwrap().response
    }

    fn opts(draft: Draft) -> ClientOptions {
        let mut o = ClientOptions::new(draft, "example.com", "/demo");
        o.subprotocols = vec!["sample".into()];
        o
    }

    #[test]
    fn hixie75_request_order() {
        let c = client(opts(Draft::Hixie75));
        assert_eq!(
            c.request_bytes(),
            b"GET /demo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
Host: example.com\r\nOrigin: http://example.com\r\nWebSocket-Protocol: sample\r\n\r\n"
        );
    }

    #[test]
    fn hixie76_request_carries_keys_and_key3() {
        let mut o = opts(Draft::Hixie76);
        o.origin = Some("http://app.example".into());
        let c = client(o);
        let r = c.request_bytes();
        let (head, n) = http::parse_request(r, &Config::default()).unwrap().unwrap();
        assert_eq!(r.len() - n, 8, "key3 follows the head");
        let h = &head.headers;
        assert_eq!(h.get("Origin"), Some("http://app.example"));
        assert_eq!(h.get("Sec-WebSocket-Protocol"), Some("sample"));
        assert_eq!(h.get("Sec-WebSocket-Draft"), None);
        assert!(hixie76::key_part(h.get("Sec-WebSocket-Key1").unwrap()).is_ok());
        assert!(hixie76::key_part(h.get("Sec-WebSocket-Key2").unwrap()).is_ok());
        assert_ne!(
            c.request_bytes(),
            client(opts(Draft::Hixie76)).request_bytes()
        );
    }

    #[test]
    fn draft_markers() {
        let has = |o: ClientOptions, line: &str| text(client(o).request_bytes()).contains(line);
        assert!(has(opts(Draft::Hybi01), "\r\nSec-WebSocket-Draft: 1\r\n"));
        let mut quiet = opts(Draft::Hybi01);
        quiet.draft_header = false;
        assert!(!has(quiet, "Sec-WebSocket-Draft"));
        assert!(has(opts(Draft::Hybi02), "\r\nSec-WebSocket-Draft: 2\r\n"));
    }

    #[test]
    fn hybi_request_headers() {
        let mut o = ClientOptions::new(Draft::Hybi08, "h:8080", "/a?b");
        o.origin = Some("http://o".into());
        o.subprotocols = vec!["chat".into(), "superchat".into()];
        o.extra_headers = vec![("Cookie".into(), "k=v".into())];
        let r = text(client(o.clone()).request_bytes());
        assert!(r.starts_with(
            "GET /a?b HTTP/1.1\r\nHost: h:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        ));
        assert!(r.contains("\r\nSec-WebSocket-Origin: http://o\r\n"));
        assert!(r.contains("\r\nSec-WebSocket-Version: 8\r\n"));
        assert!(r.contains("\r\nSec-WebSocket-Protocol: chat, superchat\r\n"));
        assert!(r.ends_with("\r\nCookie: k=v\r\n\r\n"));
        o.sec_origin_header = false;
        assert!(text(client(o.clone()).request_bytes()).contains("\r\nOrigin: http://o\r\n"));
        o.draft = Draft::Rfc6455;
        o.sec_origin_header = true;
        let r = text(client(o).request_bytes());
        assert!(r.contains("\r\nOrigin: http://o\r\n") && r.contains("Version: 13\r\n"));
        // No origin unless asked for, except for hybi-04 which requires one.
        let r = text(client(ClientOptions::new(Draft::Rfc6455, "h", "/")).request_bytes());
        assert!(!r.contains("Origin"));
        let r = text(client(ClientOptions::new(Draft::Hybi04, "h", "/")).request_bytes());
        assert!(r.contains("\r\nSec-WebSocket-Origin: http://h\r\n"));
    }

    #[test]
    fn invalid_options_are_refused() {
        let bad = |f: fn(&mut ClientOptions)| {
            let mut o = ClientOptions::new(Draft::Rfc6455, "h", "/");
            f(&mut o);
            ClientHandshake::new(config(), o).unwrap_err()
        };
        assert!(matches!(
            bad(|o| o.host = "h\r\nX: y".into()),
            HandshakeError::InvalidHeader("header value", _)
        ));
        assert!(matches!(
            bad(|o| o.host.clear()),
            HandshakeError::InvalidHeader("Host", _)
        ));
        assert!(matches!(
            bad(|o| o.resource = "/a b".into()),
            HandshakeError::InvalidHeader("request target", _)
        ));
        assert!(matches!(
            bad(|o| o.subprotocols = vec!["a,b".into()]),
            HandshakeError::InvalidHeader(..)
        ));
        assert!(matches!(
            bad(|o| o.subprotocols = vec![String::new()]),
            HandshakeError::InvalidHeader(..)
        ));
        assert!(matches!(
            bad(|o| o.extra_headers = vec![("X".into(), "\n".into())]),
            HandshakeError::InvalidHeader(..)
        ));
        let r = client(ClientOptions::new(Draft::Rfc6455, "h", ""));
        assert!(r.request_bytes().starts_with(b"GET / HTTP/1.1\r\n"));
    }

    /// Applies `edit` to the head of an answer, keeping its body bytes.
    fn edit_head(answer: &[u8], edit: impl Fn(String) -> String) -> Vec<u8> {
        let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut out = edit(text(&answer[..end])).into_bytes();
        out.extend_from_slice(&answer[end..]);
        out
    }

    /// Feeds `answer` to a client for `draft` after `edit` tampered with it.
    fn refused(
        draft: Draft,
        subprotocol: Option<&str>,
        edit: impl Fn(String) -> String,
    ) -> HandshakeError {
        let mut c = client(opts(draft));
        let good = answer(&c, subprotocol);
        let bad = edit_head(&good, edit);
        assert_ne!(bad, good, "the edit changed nothing");
        let err = c.feed(&bad).unwrap_err();
        assert_eq!(c.feed(b""), Err(err.clone()), "errors are sticky");
        err
    }

    #[test]
    fn wrong_accept() {
        let err = refused(Draft::Rfc6455, None, |a| {
            let i = a.find("Accept: ").unwrap() + 8;
            let mut a = a.into_bytes();
            a[i] = if a[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(a).unwrap()
        });
        assert_eq!(err, HandshakeError::ChallengeMismatch);
        let err = refused(Draft::Rfc6455, None, |a| {
            a.replace("Sec-WebSocket-Accept", "X-Accept")
        });
        assert_eq!(err, HandshakeError::MissingHeader("Sec-WebSocket-Accept"));
    }

    #[test]
    fn wrong_md5() {
        for draft in [Draft::Hixie76, Draft::Hybi01, Draft::Hybi02] {
            let mut c = client(opts(draft));
            let mut good = answer(&c, Some("sample"));
            let last = good.len() - 1;
            good[last] ^= 1;
            assert_eq!(
                c.feed(&good).unwrap_err(),
                HandshakeError::ChallengeMismatch
            );
        }
    }

    #[test]
    fn unoffered_subprotocols() {
        let err = refused(Draft::Rfc6455, Some("sample"), |a| {
            a.replace("Protocol: sample", "Protocol: other")
        });
        assert_eq!(err, HandshakeError::UnofferedSubprotocol("other".into()));
        let err = refused(Draft::Hixie76, Some("sample"), |a| {
            a.replace("Protocol: sample", "Protocol: sampl")
        });
        assert_eq!(err, HandshakeError::UnofferedSubprotocol("sampl".into()));
        // A hixie server must echo the requested protocol.
        let err = refused(Draft::Hixie75, Some("sample"), |a| {
            a.replace("WebSocket-Protocol: sample\r\n", "")
        });
        assert_eq!(err, HandshakeError::MissingHeader("WebSocket-Protocol"));
        // Nothing offered: any selection is refused.
        let mut c = client(ClientOptions::new(Draft::Rfc6455, "h", "/"));
        let good = text(&answer(&c, None));
        let bad = good.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat\r\n\r\n");
        assert_eq!(
            c.feed(bad.as_bytes()),
            Err(HandshakeError::UnofferedSubprotocol("chat".into()))
        );
    }

    #[test]
    fn non_101_is_refused_with_headers_available() {
        let mut c = client(opts(Draft::Rfc6455));
        let err = c
            .feed(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")
            .unwrap_err();
        assert_eq!(err, HandshakeError::UnexpectedStatus(302));
        assert_eq!(c.response_status(), Some(302));
        assert_eq!(
            c.response_headers().unwrap().get("location"),
            Some("/elsewhere")
        );
        let mut c = client(opts(Draft::Hixie75));
        assert_eq!(
            c.feed(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Err(HandshakeError::UnexpectedStatus(404))
        );
    }

    #[test]
    fn hixie75_prefix_is_exact() {
        for (from, to) in [
            (
                "Web Socket Protocol Handshake",
                "WebSocket Protocol Handshake",
            ),
            ("Upgrade: WebSocket", "Upgrade: websocket"),
            ("Connection: Upgrade", "Connection: upgrade"),
        ] {
            let err = refused(Draft::Hixie75, None, |a| a.replace(from, to));
            assert!(matches!(err, HandshakeError::InvalidResponse(_)), "{err}");
        }
        // Reordered headers break the prefix as well.
        let err = refused(Draft::Hixie75, None, |a| {
            a.replace(
                "Upgrade: WebSocket\r\nConnection: Upgrade\r\n",
                "Connection: Upgrade\r\nUpgrade: WebSocket\r\n",
            )
        });
        assert!(matches!(err, HandshakeError::InvalidResponse(_)));
    }

    #[test]
    fn hixie_echoes_are_checked() {
        let err = refused(Draft::Hixie76, None, |a| {
            a.replace("Origin: http://example.com", "Origin: http://evil")
        });
        assert!(matches!(
            err,
            HandshakeError::InvalidHeader("Sec-WebSocket-Origin", _)
        ));
        let err = refused(Draft::Hixie76, None, |a| {
            a.replace("ws://example.com/demo", "wss://example.com/demo")
        });
        assert!(matches!(
            err,
            HandshakeError::InvalidHeader("Sec-WebSocket-Location", _)
        ));
        let err = refused(Draft::Hixie75, None, |a| {
            a.replace("WebSocket-Location", "X-Location")
        });
        assert_eq!(err, HandshakeError::MissingHeader("WebSocket-Location"));
        let err = refused(Draft::Hixie76, None, |a| {
            a.replace("Upgrade: WebSocket", "Upgrade: h2c")
        });
        assert!(matches!(err, HandshakeError::InvalidResponse(_)));
    }

    #[test]
    fn hybi_upgrade_connection_and_nonce_checks() {
        let err = refused(Draft::Rfc6455, None, |a| {
            a.replace("Upgrade: websocket", "Upgrade: h2c")
        });
        assert!(matches!(err, HandshakeError::InvalidResponse(_)));
        let err = refused(Draft::Hybi07, None, |a| {
            a.replace("Connection: Upgrade", "Connection: close")
        });
        assert!(matches!(err, HandshakeError::InvalidResponse(_)));
        let err = refused(Draft::Hybi04, None, |a| {
            a.replace("Sec-WebSocket-Nonce", "X-Nonce")
        });
        assert_eq!(err, HandshakeError::MissingHeader("Sec-WebSocket-Nonce"));
        let err = refused(Draft::Hybi04, None, |a| {
            let i = a.find("Nonce: ").unwrap() + 7;
            format!("{}AAAA{}", &a[..i], &a[i + 24..])
        });
        assert!(matches!(
            err,
            HandshakeError::InvalidHeader("Sec-WebSocket-Nonce", _)
        ));
        let err = refused(Draft::Rfc6455, None, |a| {
            a.replace("HTTP/1.1 101", "HTTP/1.0 101")
        });
        assert!(matches!(err, HandshakeError::InvalidResponse(_)));
    }

    #[test]
    fn strict_hixie_headers_on_the_client() {
        let strict = Arc::new(Config {
            strict: crate::config::Strictness {
                hixie_exact_headers: true,
                ..Default::default()
            },
            ..Config::default()
        });
        let mut c = ClientHandshake::new(strict.clone(), opts(Draft::Hixie76)).unwrap();
        let good = answer(&c, Some("sample"));
        let lower = |a: String| a.replace("Upgrade: WebSocket", "Upgrade: websocket");
        let bad = edit_head(&good, lower);
        assert!(matches!(
            c.feed(&bad),
            Err(HandshakeError::InvalidResponse(_))
        ));
        // The lenient default takes it.
        let mut c = client(opts(Draft::Hixie76));
        let lenient = edit_head(&answer(&c, Some("sample")), lower);
        assert!(c.feed(&lenient).unwrap().is_some());
    }

    #[test]
    fn leftover_and_finished() {
        let mut c = client(opts(Draft::Hixie76));
        let mut bytes = answer(&c, Some("sample"));
        bytes.extend_from_slice(b"\x00hi\xff");
        let done = c.feed(&bytes).unwrap().unwrap();
        assert_eq!(&done.leftover[..], b"\x00hi\xff");
        assert!(done.response.is_empty());
        assert_eq!(done.session.role, Role::Client);
        assert_eq!(c.feed(b"x").unwrap_err(), HandshakeError::Finished);
    }

    #[test]
    fn oversized_answers() {
        let cfg = Arc::new(Config {
            max_head_bytes: 64,
            ..Config::default()
        });
        let mut c = ClientHandshake::new(cfg.clone(), opts(Draft::Rfc6455)).unwrap();
        let good = answer(&c, None);
        assert_eq!(c.feed(&good).unwrap_err(), HandshakeError::HeadTooLarge(64));
        let cfg = Arc::new(Config {
            max_headers: 2,
            ..Config::default()
        });
        let mut c = ClientHandshake::new(cfg, opts(Draft::Rfc6455)).unwrap();
        let good = answer(&c, None);
        assert_eq!(
            c.feed(&good).unwrap_err(),
            HandshakeError::TooManyHeaders(2)
        );
    }
}
