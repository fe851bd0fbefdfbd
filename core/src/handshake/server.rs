//! The server side: an incremental request reader, the 101 answer of each
//! draft, and refusals as complete HTTP answers.

use std::sync::Arc;

use bytes::{Buf as _, BytesMut};

use crate::config::Config;
use crate::draft::Draft;
use crate::error::HandshakeError;
use crate::extensions::{self, Agreed};
use crate::http::{self, write_header, HeadScanner, Headers};
use crate::session::{Role, Session};

use super::detect::detect;
use super::hixie75::{location, HixieNames, HIXIE75, HIXIE76};
use super::request::Challenge;
use super::{hixie76, hybi, Completed};

pub use super::request::Request;

/// How far a [`ServerHandshake`] got with the bytes fed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The request (or hixie-76's key3) is not complete yet.
    NeedMore,
    /// The request is complete and its draft detected: answer it.
    Ready,
}

/// How to answer an acceptable request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcceptOptions {
    /// The subprotocol chosen; it must be one the client offered.
    pub subprotocol: Option<String>,
    /// Extra headers for the 101 answer (cookies, `Server`, ...).
    pub extra_headers: Vec<(String, String)>,
    /// The connection runs over TLS: hixie's Location says `wss://`.
    pub secure: bool,
}

/// Application decisions taken while answering a request.
pub trait Hooks {
    /// Refuse the request (e.g. [`HandshakeError::OriginRefused`] for a 403,
    /// [`HandshakeError::Refused`] for any status).
    fn check(&self, req: &Request) -> Result<(), HandshakeError> {
        let _ = req;
        Ok(())
    }

    /// Choose one of the offered subprotocols. Called exactly once per
    /// accepted request, also when nothing was offered.
    fn select_subprotocol(&self, req: &Request, offered: &[&str]) -> Option<String> {
        let _ = (req, offered);
        None
    }

    /// Extra headers for the 101 answer.
    fn response_headers(&self, req: &Request) -> Vec<(String, String)> {
        let _ = req;
        Vec::new()
    }
}

/// A refused handshake: why, and the HTTP answer to write before closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Why the request was refused.
    pub error: HandshakeError,
    /// The complete HTTP refusal to write before closing (see
    /// [`reject_response`]).
    pub response: Vec<u8>,
}

/// The server side of one opening handshake.
#[derive(Debug)]
pub struct ServerHandshake {
    config: Arc<Config>,
    /// Bytes received and not yet consumed: the head while it is being
    /// read, then key3 and any early frame data.
    buf: BytesMut,
    scanner: HeadScanner,
    state: State,
}

#[derive(Debug)]
enum State {
    Head,
    /// Detected; complete unless it still awaits hixie-76's key3.
    Request(Request),
    Failed(HandshakeError),
}

impl ServerHandshake {
    /// A handshake awaiting the request bytes. `config` bounds the head and
    /// chooses the drafts and extensions accepted.
    pub fn new(config: Arc<Config>) -> Self {
        ServerHandshake {
            config,
            buf: BytesMut::new(),
            scanner: HeadScanner::default(),
            state: State::Head,
        }
    }

    /// For frameworks that parse HTTP themselves (Tornado): method, request
    /// target, headers, and body bytes already read. Detection runs at
    /// once; call [`feed`](Self::feed) (with later bytes, or none) for the
    /// outcome.
    pub fn from_parsed(
        config: Arc<Config>,
        method: &str,
        target: &str,
        headers: Headers,
        body: &[u8],
    ) -> Self {
        let state = match detect(&config, method.to_owned(), target.to_owned(), 1, headers) {
            Ok(req) => State::Request(req),
            Err(e) => State::Failed(e),
        };
        let mut hs = ServerHandshake {
            config,
            buf: BytesMut::from(body),
            scanner: HeadScanner::default(),
            state,
        };
        if let Err(e) = hs.settle() {
            hs.state = State::Failed(e);
        }
        hs
    }

    /// A WebSocket on an HTTP/2 stream (RFC 8441): the extended CONNECT's
    /// `:protocol`, `:path` and `:authority`, and its other headers, as the
    /// HTTP/2 layer decoded them. Ready at once (or failed): answer it with
    /// [`complete`](Self::complete), whose [`Completed::fields`] are the
    /// `200`'s headers.
    pub fn extended_connect(
        config: Arc<Config>,
        protocol: &str,
        path: &str,
        authority: &str,
        headers: Headers,
    ) -> Self {
        let state =
            match super::extended_connect::detect(&config, protocol, path, authority, headers) {
                Ok(req) => State::Request(req),
                Err(e) => State::Failed(e),
            };
        ServerHandshake {
            config,
            buf: BytesMut::new(),
            scanner: HeadScanner::default(),
            state,
        }
    }

    /// Feed bytes (may be one byte at a time). Ready once the request (and
    /// hixie-76's 8-byte key3, which may arrive later than the head) is
    /// complete and detected. Bytes after that are kept as the start of the
    /// frame stream, unless `strict.reject_early_data` refuses them.
    ///
    /// After an error every call returns the same error.
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, HandshakeError> {
        let result = self.advance(data);
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    fn advance(&mut self, data: &[u8]) -> Result<Progress, HandshakeError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(data);
        if let State::Head = self.state {
            if !self
                .scanner
                .should_parse(data, self.buf.len(), &self.config)?
            {
                return Ok(Progress::NeedMore);
            }
            let Some((head, n)) = http::parse_request(&self.buf, &self.config)? else {
                return Ok(Progress::NeedMore);
            };
            self.buf.advance(n);
            let req = detect(
                &self.config,
                head.method,
                head.target,
                head.minor_version,
                head.headers,
            )?;
            self.state = State::Request(req);
        }
        self.settle()
    }

    /// Takes key3 once it is there and polices early data.
    fn settle(&mut self) -> Result<Progress, HandshakeError> {
        let req = match &mut self.state {
            State::Request(req) => req,
            State::Head => return Ok(Progress::NeedMore),
            State::Failed(e) => return Err(e.clone()),
        };
        if let Challenge::Hixie76 {
            key3: key3 @ None, ..
        } = &mut req.challenge
        {
            let Some(bytes) = self.buf.get(..8) else {
                return Ok(Progress::NeedMore);
            };
            let mut k = [0u8; 8];
            k.copy_from_slice(bytes);
            *key3 = Some(k);
            self.buf.advance(8);
        }
        if self.config.strict.reject_early_data && !self.buf.is_empty() {
            return Err(HandshakeError::EarlyData);
        }
        Ok(Progress::Ready)
    }

    /// The request, once its head is parsed and its draft detected (also
    /// while hixie-76's key3 is still awaited).
    pub fn request(&self) -> Option<&Request> {
        match &self.state {
            State::Request(req) => Some(req),
            _ => None,
        }
    }

    /// The request if it can be answered now, else why not: the stored
    /// failure, or [`HandshakeError::Incomplete`].
    fn ready_request(&self) -> Result<&Request, HandshakeError> {
        match &self.state {
            State::Request(req) if !req.awaits_key3() => Ok(req),
            State::Failed(e) => Err(e.clone()),
            _ => Err(HandshakeError::Incomplete),
        }
    }

    /// Build the 101 answer for the detected draft.
    pub fn accept(self, opts: &AcceptOptions) -> Result<Completed, HandshakeError> {
        let req = match self.state {
            State::Request(req) if !req.awaits_key3() => req,
            State::Failed(e) => return Err(e),
            _ => return Err(HandshakeError::Incomplete),
        };
        let completed = answer(&self.config, req, opts)?;
        Ok(Completed {
            leftover: self.buf,
            ..completed
        })
    }

    /// Convenience: run the hooks (check → reject, select_subprotocol) then
    /// accept; on refusal returns the error and the HTTP answer bytes.
    pub fn complete(self, hooks: &dyn Hooks, secure: bool) -> Result<Completed, Rejected> {
        let config = Arc::clone(&self.config);
        let reject = |error: HandshakeError| Rejected {
            response: reject_response(&error, &config),
            error,
        };
        let req = self.ready_request().map_err(reject)?;
        hooks.check(req).map_err(reject)?;
        let opts = AcceptOptions {
            subprotocol: hooks.select_subprotocol(req, &req.subprotocols()),
            extra_headers: hooks.response_headers(req),
            secure,
        };
        self.accept(&opts).map_err(reject)
    }
}

/// The 101 answer (or an HTTP/2 stream's `200` fields) and the session it
/// opens; the caller adds what was received after the request.
fn answer(
    config: &Config,
    req: Request,
    opts: &AcceptOptions,
) -> Result<Completed, HandshakeError> {
    if let Some(p) = &opts.subprotocol {
        if !req.subprotocols().contains(&p.as_str()) {
            return Err(HandshakeError::UnofferedSubprotocol(p.clone()));
        }
    }
    let mut out = Vec::with_capacity(256);
    let mut extensions = Agreed::None;
    let mut hybi04_mask_key = None;
    match &req.challenge {
        Challenge::Key(key) => {
            out.extend_from_slice(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
            );
            out.extend_from_slice(hybi::accept_key(key).as_bytes());
            out.extend_from_slice(b"\r\n");
            if req.draft == Draft::Hybi04 {
                let nonce = hybi::random_key();
                write_header(&mut out, "Sec-WebSocket-Nonce", &nonce)?;
                hybi04_mask_key = Some(hybi::connection_mask_key(key, &nonce));
            }
            let (fields, agreed) = hybi_fields(config, &req, opts);
            extensions = agreed;
            for (name, value) in &fields {
                write_header(&mut out, name, value)?;
            }
        }
        Challenge::ExtendedConnect => {
            let (mut fields, agreed) = hybi_fields(config, &req, opts);
            fields.extend(opts.extra_headers.iter().cloned());
            let session = Session {
                role: Role::Server,
                draft: req.draft,
                subprotocol: opts.subprotocol.clone(),
                extensions: agreed,
                hybi04_mask_key: None,
            };
            return Ok(Completed {
                response: Vec::new(),
                fields,
                session,
                leftover: BytesMut::new(),
            });
        }
        Challenge::None => hixie_head(&mut out, &HIXIE75, &req, opts)?,
        Challenge::Hixie76 { .. } => hixie_head(&mut out, &HIXIE76, &req, opts)?,
    }
    for (name, value) in &opts.extra_headers {
        write_header(&mut out, name, value)?;
    }
    out.extend_from_slice(b"\r\n");
    if let Challenge::Hixie76 {
        part1,
        part2,
        key3: Some(key3),
    } = &req.challenge
    {
        out.extend_from_slice(&hixie76::response(*part1, *part2, key3));
    }
    let session = Session {
        role: Role::Server,
        draft: req.draft,
        subprotocol: opts.subprotocol.clone(),
        extensions,
        hybi04_mask_key,
    };
    Ok(Completed {
        response: out,
        fields: Vec::new(),
        session,
        leftover: BytesMut::new(),
    })
}

/// The subprotocol and the extensions agreed, as answer headers: the same
/// on an HTTP/1.1 upgrade and on an HTTP/2 stream.
fn hybi_fields(
    config: &Config,
    req: &Request,
    opts: &AcceptOptions,
) -> (Vec<(String, String)>, Agreed) {
    let mut fields = Vec::new();
    if let Some(p) = &opts.subprotocol {
        fields.push(("Sec-WebSocket-Protocol".to_owned(), p.clone()));
    }
    let mut extensions = Agreed::None;
    let offers = req.extension_offers();
    if req.draft.has_extensions() && !offers.is_empty() {
        let (value, agreed) = extensions::negotiate_server(&config.extensions, req.draft, &offers);
        if let Some(value) = value {
            fields.push(("Sec-WebSocket-Extensions".to_owned(), value));
        }
        extensions = agreed;
    }
    (fields, extensions)
}

/// The hixie status prefix, origin echo, Location and protocol lines.
fn hixie_head(
    out: &mut Vec<u8>,
    names: &HixieNames,
    req: &Request,
    opts: &AcceptOptions,
) -> Result<(), HandshakeError> {
    out.extend_from_slice(names.prefix);
    if let Some(origin) = req.origin() {
        write_header(out, names.origin, origin)?;
    }
    // Detection guarantees a Host header.
    let host = req.host().unwrap_or_default();
    write_header(
        out,
        names.location,
        &location(opts.secure, host, req.resource()),
    )?;
    if let Some(p) = &opts.subprotocol {
        write_header(out, names.protocol, p)?;
    }
    Ok(())
}

/// What a refusal says, for frameworks that write their own HTTP answer
/// (see [`refusal`]); [`reject_response`] writes it as HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status code (300..=599).
    pub status: u16,
    /// Headers beyond the framework's own `Content-*` and `Connection`:
    /// `Allow` for a 405, the enabled `Sec-WebSocket-Version`s for a
    /// version problem.
    pub headers: Vec<(&'static str, String)>,
    /// The reason, as text/plain.
    pub body: String,
}

/// The status, headers and text of the answer refusing a handshake.
pub fn refusal(error: &HandshakeError, config: &Config) -> Refusal {
    let status = reject_status(error, config);
    let mut headers = Vec::new();
    if status == 405 {
        headers.push(("Allow", "GET".to_owned()));
    }
    let versions = config.drafts.version_list();
    if is_version_problem(error) && !versions.is_empty() {
        headers.push(("Sec-WebSocket-Version", versions));
    }
    Refusal {
        status,
        headers,
        body: error.to_string(),
    }
}

/// The complete HTTP answer refusing a handshake: status, a text/plain
/// reason, `Connection: close`, and for version problems the
/// `Sec-WebSocket-Version` list of the enabled drafts so the client can
/// retry with one of them.
pub fn reject_response(error: &HandshakeError, config: &Config) -> Vec<u8> {
    let Refusal {
        status,
        headers,
        body,
    } = refusal(error, config);
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    if status == 426 {
        // RFC 9110 §15.5.22: a 426 names the protocol to upgrade to.
        out.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade, close\r\n");
    } else {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// The status of a refusal: [`HandshakeError::status`], except that
/// version mismatches use `config.version_mismatch_status` and a disabled
/// draft without a version number (hixie, hybi-00..03) is a plain 400.
/// A status that cannot refuse an upgrade (outside 300..=599) becomes 500.
fn reject_status(error: &HandshakeError, config: &Config) -> u16 {
    let status = if error.is_version_mismatch() {
        config.version_mismatch_status
    } else {
        error.status()
    };
    if (300..=599).contains(&status) {
        status
    } else {
        500
    }
}

fn is_version_problem(error: &HandshakeError) -> bool {
    const VERSION: &str = "Sec-WebSocket-Version";
    match error {
        HandshakeError::UnsupportedVersion(_) | HandshakeError::DraftDisabled(_) => true,
        HandshakeError::MissingHeader(h)
        | HandshakeError::DuplicateHeader(h)
        | HandshakeError::InvalidHeader(h, _) => *h == VERSION,
        _ => false,
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draft::DraftSet;

    const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

    /// The request of the "Making HTML5 WebSockets Work" article.
    const ARTICLE_HEAD: &[u8] = b"GET /demo HTTP/1.1\r\n\
Host: example.com\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n\
Sec-WebSocket-Protocol: sample\r\n\
Upgrade: WebSocket\r\n\
Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n\
Origin: http://example.com\r\n\r\n";
    const ARTICLE_KEY3: &[u8] = b"^n:ds[4U";

    const HIXIE75_REQUEST: &[u8] = b"GET /demo HTTP/1.1\r\n\
Upgrade: WebSocket\r\n\
Connection: Upgrade\r\n\
Host: example.com\r\n\
Origin: http://example.com\r\n\
WebSocket-Protocol: sample\r\n\r\n";

    fn config() -> Arc<Config> {
        Arc::new(Config::default())
    }

    fn with(f: impl FnOnce(&mut Config)) -> Arc<Config> {
        let mut c = Config::default();
        f(&mut c);
        Arc::new(c)
    }

    fn article() -> Vec<u8> {
        [ARTICLE_HEAD, ARTICLE_KEY3].concat()
    }

    fn hybi_request(version: &str) -> Vec<u8> {
        format!(
            "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Origin: http://o\r\n\
             Sec-WebSocket-Version: {version}\r\n\r\n"
        )
        .into_bytes()
    }

    fn key12_request(draft_header: Option<&str>) -> Vec<u8> {
        let mut r = b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\
Sec-WebSocket-Key1: 18x 6]8vM;54 *(5:  {   U1]8  z [  8\r\n\
Sec-WebSocket-Key2: 1_ tx7X d  <  nw  334J702) 7]o}` 0\r\n\
Origin: http://example.com\r\n"
            .to_vec();
        if let Some(d) = draft_header {
            r.extend_from_slice(format!("Sec-WebSocket-Draft: {d}\r\n").as_bytes());
        }
        r.extend_from_slice(b"\r\nTm[K T2u");
        r
    }

    /// Feeds `bytes` in one piece or one byte at a time; the last progress.
    fn feed(
        hs: &mut ServerHandshake,
        bytes: &[u8],
        bytewise: bool,
    ) -> Result<Progress, HandshakeError> {
        if !bytewise {
            return hs.feed(bytes);
        }
        let mut last = Progress::NeedMore;
        for (i, b) in bytes.iter().enumerate() {
            last = hs.feed(std::slice::from_ref(b))?;
            if i + 1 < bytes.len() {
                assert_eq!(last, Progress::NeedMore, "ready early at byte {i}");
            }
        }
        Ok(last)
    }

    fn accept(bytes: &[u8], opts: &AcceptOptions) -> Completed {
        let mut hs = ServerHandshake::new(config());
        assert_eq!(hs.feed(bytes), Ok(Progress::Ready));
        hs.accept(opts).unwrap()
    }

    fn status_of(response: &[u8]) -> (u16, Headers, Vec<u8>) {
        let (head, n) = http::parse_response(response, &Config::default())
            .unwrap()
            .unwrap();
        let len: usize = head.headers.get("Content-Length").unwrap().parse().unwrap();
        assert_eq!(response.len() - n, len, "Content-Length matches the body");
        assert_eq!(
            head.headers.get("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        assert!(head.headers.has_token("Connection", "close"));
        (head.status, head.headers, response[n..].to_vec())
    }

    fn reject(cfg: Arc<Config>, bytes: &[u8]) -> (HandshakeError, u16, Headers) {
        let mut hs = ServerHandshake::new(cfg.clone());
        let err = hs.feed(bytes).unwrap_err();
        assert_eq!(hs.feed(b"more"), Err(err.clone()), "errors are sticky");
        let (status, headers, body) = status_of(&reject_response(&err, &cfg));
        assert_eq!(body, err.to_string().as_bytes());
        (err, status, headers)
    }

    fn chat() -> AcceptOptions {
        AcceptOptions {
            subprotocol: Some("chat".into()),
            ..AcceptOptions::default()
        }
    }

    #[test]
    fn rfc6455_example_answer() {
        let done = accept(RFC_REQUEST, &chat());
        assert_eq!(
            done.response,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
        assert_eq!(done.session.role, Role::Server);
        assert_eq!(done.session.draft, Draft::Rfc6455);
        assert_eq!(done.session.subprotocol.as_deref(), Some("chat"));
        assert_eq!(done.session.hybi04_mask_key, None);
        assert!(done.leftover.is_empty());
    }

    #[test]
    fn request_accessors() {
        let mut hs = ServerHandshake::new(config());
        assert!(hs.request().is_none());
        hs.feed(b"GET /chat?room=1 HTTP/1.1\r\nHost: h:8080\r\nUpgrade: WebSocket\r\nConnection: upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b, c\r\n\r\n")
            .unwrap();
        let r = hs.request().unwrap();
        assert_eq!(
            (r.method(), r.target(), r.path(), r.query()),
            ("GET", "/chat?room=1", "/chat", Some("room=1"))
        );
        assert_eq!(
            (r.host(), r.origin(), r.version()),
            (Some("h:8080"), None, Some(13))
        );
        assert_eq!(r.subprotocols(), ["a", "b", "c"]);
        assert_eq!(r.extension_offers(), ["permessage-deflate"]);
        assert_eq!(r.key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(r.key3(), None);
        assert_eq!(r.header("sec-websocket-version"), Some("13"));
        assert_eq!(r.headers().len(), 8);
    }

    #[test]
    fn hixie76_article_answer() {
        let done = accept(
            &article(),
            &AcceptOptions {
                subprotocol: Some("sample".into()),
                ..AcceptOptions::default()
            },
        );
        assert_eq!(
            done.response,
            b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Origin: http://example.com\r\nSec-WebSocket-Location: ws://example.com/demo\r\n\
Sec-WebSocket-Protocol: sample\r\n\r\n8jKS'y:G*Co,Wxa-"
        );
        assert_eq!(done.session.draft, Draft::Hixie76);
    }

    #[test]
    fn hixie76_official_example_and_draft_markers() {
        for (marker, draft) in [
            (None, Draft::Hixie76),
            (Some("0"), Draft::Hixie76),
            (Some("1"), Draft::Hybi01),
            (Some("2"), Draft::Hybi02),
            (Some("3"), Draft::Hybi02),
        ] {
            let done = accept(
                &key12_request(marker),
                &AcceptOptions {
                    secure: true,
                    ..Default::default()
                },
            );
            assert_eq!(done.session.draft, draft);
            assert!(done.response.ends_with(b"\r\n\r\nfQJ,fN/4F4!~K~MH"));
            let text = String::from_utf8_lossy(&done.response);
            assert!(text.contains("Sec-WebSocket-Location: wss://example.com/demo\r\n"));
        }
    }

    #[test]
    fn hixie75_answer() {
        let done = accept(
            HIXIE75_REQUEST,
            &AcceptOptions {
                subprotocol: Some("sample".into()),
                extra_headers: vec![("Set-Cookie".into(), "a=b".into())],
                secure: false,
            },
        );
        assert_eq!(
            done.response,
            b"HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
WebSocket-Origin: http://example.com\r\nWebSocket-Location: ws://example.com/demo\r\n\
WebSocket-Protocol: sample\r\nSet-Cookie: a=b\r\n\r\n"
        );
        assert_eq!(done.session.draft, Draft::Hixie75);
    }

    #[test]
    fn hybi_versions_and_hybi04_nonce() {
        for (v, draft) in [
            ("4", Draft::Hybi04),
            ("5", Draft::Hybi05),
            ("6", Draft::Hybi06),
            ("7", Draft::Hybi07),
            ("8", Draft::Hybi08),
        ] {
            let done = accept(&hybi_request(v), &AcceptOptions::default());
            assert_eq!(done.session.draft, draft);
            let (head, _) = http::parse_response(&done.response, &Config::default())
                .unwrap()
                .unwrap();
            assert_eq!(
                head.headers.get("Sec-WebSocket-Accept"),
                Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            );
            let nonce = head.headers.get("Sec-WebSocket-Nonce");
            if draft == Draft::Hybi04 {
                let nonce = nonce.unwrap();
                assert!(hybi::is_valid_key(nonce));
                assert_eq!(
                    done.session.hybi04_mask_key,
                    Some(hybi::connection_mask_key("dGhlIHNhbXBsZSBub25jZQ==", nonce))
                );
            } else {
                assert_eq!(nonce, None);
                assert_eq!(done.session.hybi04_mask_key, None);
            }
        }
    }

    #[test]
    fn every_draft_byte_at_a_time_and_in_one_piece() {
        let requests: Vec<(Vec<u8>, Draft)> = vec![
            (HIXIE75_REQUEST.to_vec(), Draft::Hixie75),
            (article(), Draft::Hixie76),
            (key12_request(Some("1")), Draft::Hybi01),
            (key12_request(Some("2")), Draft::Hybi02),
            (hybi_request("4"), Draft::Hybi04),
            (hybi_request("5"), Draft::Hybi05),
            (hybi_request("6"), Draft::Hybi06),
            (hybi_request("7"), Draft::Hybi07),
            (hybi_request("8"), Draft::Hybi08),
            (RFC_REQUEST.to_vec(), Draft::Rfc6455),
        ];
        for (bytes, draft) in requests {
            for bytewise in [false, true] {
                let mut hs = ServerHandshake::new(config());
                assert_eq!(
                    feed(&mut hs, &bytes, bytewise),
                    Ok(Progress::Ready),
                    "{draft}"
                );
                assert_eq!(hs.request().unwrap().draft(), draft);
                let done = hs.accept(&AcceptOptions::default()).unwrap();
                assert_eq!(done.session.draft, draft);
                assert!(done.leftover.is_empty());
            }
        }
    }

    #[test]
    fn hixie76_key3_arrives_after_the_head() {
        let mut hs = ServerHandshake::new(config());
        assert_eq!(hs.feed(ARTICLE_HEAD), Ok(Progress::NeedMore));
        let req = hs.request().unwrap();
        assert_eq!((req.draft(), req.key3()), (Draft::Hixie76, None));
        assert_eq!(hs.feed(&ARTICLE_KEY3[..5]), Ok(Progress::NeedMore));
        assert_eq!(hs.feed(&ARTICLE_KEY3[5..]), Ok(Progress::Ready));
        assert_eq!(hs.request().unwrap().key3(), Some(b"^n:ds[4U"));
        let done = hs.accept(&AcceptOptions::default()).unwrap();
        assert!(done.response.ends_with(b"8jKS'y:G*Co,Wxa-"));
    }

    #[test]
    fn leftover_bytes_are_kept() {
        let frame = b"\x00hello\xff";
        let mut bytes = article();
        bytes.extend_from_slice(frame);
        let mut hs = ServerHandshake::new(config());
        assert_eq!(hs.feed(&bytes), Ok(Progress::Ready));
        // Bytes arriving after Ready are kept too.
        assert_eq!(hs.feed(b"\x00more\xff"), Ok(Progress::Ready));
        let done = hs.accept(&AcceptOptions::default()).unwrap();
        assert_eq!(&done.leftover[..], b"\x00hello\xff\x00more\xff");

        let mut bytes = RFC_REQUEST.to_vec();
        bytes.extend_from_slice(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
        let done = accept(&bytes, &AcceptOptions::default());
        assert_eq!(
            &done.leftover[..],
            b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
        );
    }

    #[test]
    fn early_data_refused_when_strict() {
        let strict = with(|c| c.strict.reject_early_data = true);
        for request in [HIXIE75_REQUEST.to_vec(), article(), RFC_REQUEST.to_vec()] {
            let mut bytes = request.clone();
            bytes.push(0);
            let (err, status, _) = reject(strict.clone(), &bytes);
            assert_eq!((err, status), (HandshakeError::EarlyData, 400));
            // Also when the extra bytes come after Ready.
            let mut hs = ServerHandshake::new(strict.clone());
            assert_eq!(hs.feed(&request), Ok(Progress::Ready));
            assert_eq!(hs.feed(b"x"), Err(HandshakeError::EarlyData));
            assert_eq!(
                hs.accept(&AcceptOptions::default()).unwrap_err(),
                HandshakeError::EarlyData
            );
        }
    }

    #[test]
    fn accept_refuses_unoffered_subprotocol_and_bad_headers() {
        let mut hs = ServerHandshake::new(config());
        hs.feed(RFC_REQUEST).unwrap();
        let opts = AcceptOptions {
            subprotocol: Some("other".into()),
            ..Default::default()
        };
        assert_eq!(
            hs.accept(&opts).unwrap_err(),
            HandshakeError::UnofferedSubprotocol("other".into())
        );

        let mut hs = ServerHandshake::new(config());
        hs.feed(HIXIE75_REQUEST).unwrap();
        let opts = AcceptOptions {
            subprotocol: Some("samp".into()),
            ..Default::default()
        };
        assert_eq!(
            hs.accept(&opts).unwrap_err(),
            HandshakeError::UnofferedSubprotocol("samp".into())
        );

        let mut hs = ServerHandshake::new(config());
        hs.feed(RFC_REQUEST).unwrap();
        let opts = AcceptOptions {
            extra_headers: vec![("X-Evil".into(), "a\r\nSet-Cookie: x".into())],
            ..Default::default()
        };
        assert!(matches!(
            hs.accept(&opts),
            Err(HandshakeError::InvalidHeader(..))
        ));
    }

    #[test]
    fn malformed_request_is_400() {
        let (err, status, _) = reject(config(), b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n");
        assert!(matches!(err, HandshakeError::MalformedHead(_)));
        assert_eq!(status, 400);
        let (err, status, _) = reject(config(), b"\x16\x03\x01\x02\x00");
        assert!(matches!(err, HandshakeError::MalformedHead(_)));
        assert_eq!(status, 400);
        let (err, status, _) = reject(config(), b"GET / HTTP/1.0\r\nHost: h\r\n\r\n");
        assert_eq!((err, status), (HandshakeError::HttpVersion, 400));
        let (err, status, _) = reject(config(), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(matches!(err, HandshakeError::NotWebSocket(_)));
        assert_eq!(status, 400);
    }

    #[test]
    fn missing_or_bad_fields_are_400() {
        let replace = |from: &str, to: &str| {
            String::from_utf8(RFC_REQUEST.to_vec())
                .unwrap()
                .replace(from, to)
        };
        let cases = [
            (
                replace("Host: server.example.com\r\n", ""),
                HandshakeError::MissingHeader("Host"),
            ),
            (
                replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                HandshakeError::MissingHeader("Sec-WebSocket-Key"),
            ),
        ];
        for (request, want) in cases {
            let (err, status, _) = reject(config(), request.as_bytes());
            assert_eq!((err, status), (want, 400));
        }
        // Version header duplicated or not numeric: 400 with the list.
        for bad in [
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13",
            "Sec-WebSocket-Version: thirteen",
        ] {
            let (_, status, headers) = reject(
                config(),
                replace("Sec-WebSocket-Version: 13", bad).as_bytes(),
            );
            assert_eq!(status, 400);
            assert_eq!(
                headers.get("Sec-WebSocket-Version"),
                Some("13, 8, 7, 6, 5, 4")
            );
        }
        // Sec-WebSocket-Key that is not 16 bytes.
        let (err, status, _) = reject(
            config(),
            replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==").as_bytes(),
        );
        assert!(matches!(
            err,
            HandshakeError::InvalidHeader("Sec-WebSocket-Key", _)
        ));
        assert_eq!(status, 400);
        // A Key without a Version.
        let (err, status, headers) = reject(
            config(),
            replace("Sec-WebSocket-Version: 13\r\n", "").as_bytes(),
        );
        assert_eq!(
            (err, status),
            (HandshakeError::MissingHeader("Sec-WebSocket-Version"), 400)
        );
        assert_eq!(
            headers.get("Sec-WebSocket-Version"),
            Some("13, 8, 7, 6, 5, 4")
        );
    }

    #[test]
    fn hixie76_rejections_are_400() {
        let head = String::from_utf8(ARTICLE_HEAD.to_vec()).unwrap();
        for (from, to) in [
            ("4 @1  46546xW%0l 1 5", "12345678"),
            ("4 @1  46546xW%0l 1 5", "1 2 3"),
            ("4 @1  46546xW%0l 1 5", "99999999999 1"),
            ("4 @1  46546xW%0l 1 5", "4294967296 "),
            ("4 @1  46546xW%0l 1 5", "no digits"),
            ("Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n", ""),
            ("Sec-WebSocket-Protocol: sample", "Sec-WebSocket-Draft: 9"),
        ] {
            let (err, status, _) = reject(config(), head.replace(from, to).as_bytes());
            assert_eq!(status, 400, "{err}");
        }
    }

    #[test]
    fn method_not_get_is_405() {
        let (err, status, headers) = reject(config(), b"POST /chat HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            (err, status),
            (HandshakeError::MethodNotGet("POST".into()), 405)
        );
        assert_eq!(headers.get("Allow"), Some("GET"));
    }

    #[test]
    fn unknown_version_is_426_with_the_list() {
        let (err, status, headers) = reject(config(), &hybi_request("9"));
        assert_eq!(
            (err, status),
            (HandshakeError::UnsupportedVersion("9".into()), 426)
        );
        assert_eq!(
            headers.get("Sec-WebSocket-Version"),
            Some("13, 8, 7, 6, 5, 4")
        );
        assert_eq!(headers.get("Upgrade"), Some("websocket"));
        let four_hundred = with(|c| c.version_mismatch_status = 400);
        let (_, status, headers) = reject(four_hundred, &hybi_request("14"));
        assert_eq!(status, 400);
        assert_eq!(
            headers.get("Sec-WebSocket-Version"),
            Some("13, 8, 7, 6, 5, 4")
        );
    }

    #[test]
    fn disabled_drafts_are_refused() {
        let only13 = with(|c| c.drafts = DraftSet::only(&[Draft::Rfc6455]));
        let (err, status, headers) = reject(only13.clone(), &hybi_request("8"));
        assert_eq!(
            (err, status),
            (HandshakeError::DraftDisabled(Draft::Hybi08), 426)
        );
        assert_eq!(headers.get("Sec-WebSocket-Version"), Some("13"));
        let (err, status, _) = reject(only13.clone(), &article());
        assert_eq!(
            (err, status),
            (HandshakeError::DraftDisabled(Draft::Hixie76), 400)
        );
        let (err, status, _) = reject(only13.clone(), HIXIE75_REQUEST);
        assert_eq!(
            (err, status),
            (HandshakeError::DraftDisabled(Draft::Hixie75), 400)
        );
        let mut hs = ServerHandshake::new(only13);
        assert_eq!(hs.feed(RFC_REQUEST), Ok(Progress::Ready));
    }

    #[test]
    fn oversized_heads_are_431() {
        let small = with(|c| c.max_head_bytes = RFC_REQUEST.len() - 1);
        let (err, status, _) = reject(small.clone(), RFC_REQUEST);
        assert_eq!(
            (err, status),
            (HandshakeError::HeadTooLarge(RFC_REQUEST.len() - 1), 431)
        );
        // Crossing the limit byte by byte, before the head is complete.
        let mut hs = ServerHandshake::new(small.clone());
        let mut failed_at = None;
        for (i, b) in RFC_REQUEST.iter().enumerate() {
            if hs.feed(std::slice::from_ref(b)).is_err() {
                failed_at = Some(i);
                break;
            }
        }
        assert_eq!(failed_at, Some(RFC_REQUEST.len() - 1));
        // A head without any line end is refused once it is too long.
        let mut hs = ServerHandshake::new(small);
        assert_eq!(hs.feed(&[b'G'; 10]), Ok(Progress::NeedMore));
        assert_eq!(
            hs.feed(&vec![b'G'; RFC_REQUEST.len()]),
            Err(HandshakeError::HeadTooLarge(RFC_REQUEST.len() - 1))
        );
        // Exactly at the limit is fine, and key3 does not count.
        let exact = with(|c| c.max_head_bytes = ARTICLE_HEAD.len());
        assert_eq!(
            ServerHandshake::new(exact).feed(&article()),
            Ok(Progress::Ready)
        );

        let few = with(|c| c.max_headers = 6);
        let (err, status, _) = reject(few, RFC_REQUEST);
        assert_eq!((err, status), (HandshakeError::TooManyHeaders(6), 431));
        let enough = with(|c| c.max_headers = 7);
        assert_eq!(
            ServerHandshake::new(enough).feed(RFC_REQUEST),
            Ok(Progress::Ready)
        );
    }

    struct App {
        allowed_origin: &'static str,
    }

    impl Hooks for App {
        fn check(&self, req: &Request) -> Result<(), HandshakeError> {
            if req.path() == "/missing" {
                return Err(HandshakeError::Refused(404, "no such endpoint".into()));
            }
            match req.origin() {
                Some(o) if o != self.allowed_origin => Err(HandshakeError::OriginRefused(o.into())),
                _ => Ok(()),
            }
        }

        fn select_subprotocol(&self, _req: &Request, offered: &[&str]) -> Option<String> {
            offered
                .iter()
                .find(|p| p.starts_with("super"))
                .map(|p| p.to_string())
        }

        fn response_headers(&self, _req: &Request) -> Vec<(String, String)> {
            vec![("Server".into(), "polysocket".into())]
        }
    }

    #[test]
    fn complete_runs_the_hooks() {
        let app = App {
            allowed_origin: "http://example.com",
        };
        let mut hs = ServerHandshake::new(config());
        hs.feed(RFC_REQUEST).unwrap();
        let done = hs.complete(&app, false).unwrap();
        assert_eq!(done.session.subprotocol.as_deref(), Some("superchat"));
        let text = String::from_utf8(done.response).unwrap();
        assert!(text.contains("Sec-WebSocket-Protocol: superchat\r\nServer: polysocket\r\n\r\n"));

        let strict = App {
            allowed_origin: "https://elsewhere",
        };
        let mut hs = ServerHandshake::new(config());
        hs.feed(RFC_REQUEST).unwrap();
        let refused = hs.complete(&strict, false).unwrap_err();
        assert_eq!(
            refused.error,
            HandshakeError::OriginRefused("http://example.com".into())
        );
        assert_eq!(status_of(&refused.response).0, 403);

        let mut hs = ServerHandshake::new(config());
        hs.feed(
            &String::from_utf8_lossy(RFC_REQUEST)
                .replace("/chat", "/missing")
                .into_bytes(),
        )
        .unwrap();
        let refused = hs.complete(&app, false).unwrap_err();
        assert_eq!(status_of(&refused.response).0, 404);

        // Refusals of the request itself come back the same way.
        let mut hs = ServerHandshake::new(config());
        hs.feed(&hybi_request("9")).unwrap_err();
        let refused = hs.complete(&app, false).unwrap_err();
        assert_eq!(status_of(&refused.response).0, 426);
    }

    #[test]
    fn incomplete_requests_cannot_be_answered() {
        let mut hs = ServerHandshake::new(config());
        hs.feed(ARTICLE_HEAD).unwrap();
        let refused = hs.complete(&App { allowed_origin: "" }, false).unwrap_err();
        assert_eq!(refused.error, HandshakeError::Incomplete);
        assert_eq!(status_of(&refused.response).0, 400);
        let mut hs = ServerHandshake::new(config());
        hs.feed(&RFC_REQUEST[..20]).unwrap();
        assert_eq!(
            hs.accept(&AcceptOptions::default()).unwrap_err(),
            HandshakeError::Incomplete
        );
    }

    fn parsed_headers(head: &[u8]) -> (String, String, Headers) {
        let (h, _) = http::parse_request(head, &Config::default())
            .unwrap()
            .unwrap();
        (h.method, h.target, h.headers)
    }

    #[test]
    fn from_parsed_entry_point() {
        let (method, target, headers) = parsed_headers(RFC_REQUEST);
        let mut hs = ServerHandshake::from_parsed(config(), &method, &target, headers, b"");
        assert_eq!(hs.request().unwrap().draft(), Draft::Rfc6455);
        assert_eq!(hs.feed(&[]), Ok(Progress::Ready));
        let done = hs.accept(&chat()).unwrap();
        assert!(done
            .response
            .starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));

        // hixie-76 with key3 arriving after the framework parsed the head.
        let (method, target, headers) = parsed_headers(ARTICLE_HEAD);
        let mut hs =
            ServerHandshake::from_parsed(config(), &method, &target, headers.clone(), b"^n:d");
        assert_eq!(hs.feed(&[]), Ok(Progress::NeedMore));
        assert_eq!(hs.request().unwrap().draft(), Draft::Hixie76);
        assert_eq!(hs.feed(b"s[4U\x00hi\xff"), Ok(Progress::Ready));
        let done = hs.accept(&AcceptOptions::default()).unwrap();
        assert!(done.response.ends_with(b"8jKS'y:G*Co,Wxa-"));
        assert_eq!(&done.leftover[..], b"\x00hi\xff");

        // key3 and more already in the body the framework read.
        let mut hs =
            ServerHandshake::from_parsed(config(), &method, &target, headers, b"^n:ds[4Uxy");
        assert_eq!(hs.feed(&[]), Ok(Progress::Ready));
        assert_eq!(
            &hs.accept(&AcceptOptions::default()).unwrap().leftover[..],
            b"xy"
        );

        // Refusals are reported by feed.
        let (_, target, headers) = parsed_headers(RFC_REQUEST);
        let mut hs = ServerHandshake::from_parsed(config(), "PUT", &target, headers, b"");
        assert!(hs.request().is_none());
        assert_eq!(
            hs.feed(&[]),
            Err(HandshakeError::MethodNotGet("PUT".into()))
        );
    }

    #[test]
    fn reject_response_shape() {
        let bytes = reject_response(
            &HandshakeError::Refused(503, "busy".into()),
            &Config::default(),
        );
        assert_eq!(
            bytes,
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 13\r\nConnection: close\r\n\r\nrefused: busy"
        );
        let bytes = reject_response(
            &HandshakeError::Refused(101, "no".into()),
            &Config::default(),
        );
        assert!(bytes.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
        let none = Config {
            drafts: DraftSet::only(&[Draft::Hixie76]),
            ..Config::default()
        };
        let bytes = reject_response(&HandshakeError::UnsupportedVersion("13".into()), &none);
        let (status, headers, _) = status_of(&bytes);
        assert_eq!(status, 426);
        assert_eq!(
            headers.get("Sec-WebSocket-Version"),
            None,
            "no versioned draft enabled"
        );
    }
}
