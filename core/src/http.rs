//! HTTP/1.1 head parsing for the opening handshake: request and response
//! heads via `httparse`, with the size and header-count limits of
//! [`Config`], plus the small header helpers the handshake needs.
//!
//! Parsing is incremental by re-parsing: a caller keeps the bytes received
//! so far and asks again when more arrive; the handshakes only ask when a
//! new attempt can succeed, so byte-at-a-time input costs one parse per line.

use std::fmt;

use crate::config::Config;
use crate::error::HandshakeError;

/// The header lines of a request or response, in order, names as received.
/// Values are decoded as ISO-8859-1 (lossless for any byte).
///
/// All names and values live in one string, so a parsed head costs two
/// allocations however many headers it has.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// Per header: where its name ends and where its value ends in `text`.
    /// The name starts where the previous value ended.
    entries: Vec<(usize, usize)>,
}

impl Headers {
    /// An empty list, e.g. to hand headers parsed elsewhere to
    /// [`ServerHandshake::from_parsed`](crate::handshake::ServerHandshake::from_parsed).
    pub fn new() -> Self {
        Headers::default()
    }
    /// Appends a header line, after any with the same name (it never
    /// replaces one). Name and value are stored as given.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.text.push_str(&name.into());
        let name_end = self.text.len();
        self.text.push_str(&value.into());
        self.entries.push((name_end, self.text.len()));
    }
    /// First value of a header (case-insensitive name).
    pub fn get<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.get_all(name).next()
    }
    /// Every value of a header (case-insensitive name), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        // Names are compared as bytes (ASCII case folding is the same on
        // bytes) and only matching values are sliced out as `str`.
        let bytes = self.text.as_bytes();
        self.spans()
            .filter(move |&(start, name_end, _)| {
                bytes
                    .get(start..name_end)
                    .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            })
            .map(|(_, name_end, value_end)| self.text.get(name_end..value_end).unwrap_or_default())
    }
    /// Every `(name, value)` line, in order, names in their original case.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans().map(|(start, name_end, value_end)| {
            (
                self.text.get(start..name_end).unwrap_or_default(),
                self.text.get(name_end..value_end).unwrap_or_default(),
            )
        })
    }
    /// Per header: where its name starts, where it ends (and the value
    /// starts), and where the value ends.
    fn spans(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let mut start = 0;
        self.entries.iter().map(move |&(name_end, value_end)| {
            let span = (start, name_end, value_end);
            start = value_end;
            span
        })
    }
    /// The number of header lines; a repeated header counts once per line.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether there is no header line at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any value of `name` contains `token` in its comma-separated
    /// list, case-insensitively (`Connection: keep-alive, Upgrade`).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name).any(|v| has_token(v, token))
    }

    /// The value of a header that must not repeat: `Ok(None)` when absent,
    /// an error when it occurs more than once.
    pub fn get_single(&self, name: &'static str) -> Result<Option<&str>, HandshakeError> {
        let mut values = self.get_all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(HandshakeError::DuplicateHeader(name));
        }
        Ok(first)
    }

    fn from_httparse(raw: &[httparse::Header<'_>]) -> Headers {
        let size = raw.iter().map(|h| h.name.len() + h.value.len()).sum();
        let mut bytes = Vec::with_capacity(size);
        let mut entries = Vec::with_capacity(raw.len());
        for h in raw {
            bytes.extend_from_slice(h.name.as_bytes());
            let name_end = bytes.len();
            bytes.extend_from_slice(h.value);
            entries.push((name_end, bytes.len()));
        }
        // One validation pass for the usual all-ASCII head; otherwise the
        // values are decoded byte by byte (offsets then shift).
        match String::from_utf8(bytes) {
            Ok(text) if text.is_ascii() => Headers { text, entries },
            _ => {
                let mut headers = Headers {
                    text: String::with_capacity(size * 2),
                    entries: Vec::with_capacity(raw.len()),
                };
                for h in raw {
                    headers.text.push_str(h.name);
                    let name_end = headers.text.len();
                    headers.text.extend(h.value.iter().map(|&b| char::from(b)));
                    headers.entries.push((name_end, headers.text.len()));
                }
                headers
            }
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Whether the comma-separated `list` contains `token` (case-insensitive,
/// surrounding whitespace ignored).
pub fn has_token(list: &str, token: &str) -> bool {
    split_list(list).any(|t| t.eq_ignore_ascii_case(token))
}

/// The non-empty, trimmed elements of a comma-separated header value.
pub fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// A parsed request line and header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method as sent (case-sensitive: `get` is not `GET`).
    pub method: String,
    /// The request target as sent (origin form `/path?query`, or absolute).
    pub target: String,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// The header lines, in order.
    pub headers: Headers,
}

/// A parsed status line and header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    /// The status code; 101 accepts the upgrade.
    pub status: u16,
    /// The reason phrase as sent, possibly empty. The client handshake
    /// ignores it; hixie-75's exact prefix is compared on the raw bytes.
    pub reason: String,
    /// The header lines, in order.
    pub headers: Headers,
}

/// A complete `200 OK` response carrying `body` (a page, metrics), not
/// cached, the connection closed after it.
pub fn page_response(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// Parses a request head at the start of `buf`.
///
/// `Ok(None)`: the head is not complete yet. `Ok(Some((head, n)))`: the head
/// occupies the first `n` bytes of `buf` (blank line included). Fails with
/// [`HandshakeError::HeadTooLarge`] as soon as the head is known to exceed
/// `config.max_head_bytes`, complete or not.
pub fn parse_request(
    buf: &[u8],
    config: &Config,
) -> Result<Option<(RequestHead, usize)>, HandshakeError> {
    check_leading_empty_lines(buf)?;
    with_header_slots(buf, config.max_headers, |slots| {
        let mut req = httparse::Request::new(slots);
        let status = req.parse(buf).map_err(|e| parse_error(e, config))?;
        complete_within_limit(status, buf, config)?
            .map(|n| {
                let (Some(method), Some(target), Some(minor_version)) =
                    (req.method, req.path, req.version)
                else {
                    return Err(HandshakeError::MalformedHead(
                        "incomplete request line".into(),
                    ));
                };
                let head = RequestHead {
                    method: method.to_owned(),
                    target: target.to_owned(),
                    minor_version,
                    headers: Headers::from_httparse(req.headers),
                };
                Ok((head, n))
            })
            .transpose()
    })
}

/// Parses a response head at the start of `buf`; see [`parse_request`].
pub fn parse_response(
    buf: &[u8],
    config: &Config,
) -> Result<Option<(ResponseHead, usize)>, HandshakeError> {
    check_leading_empty_lines(buf)?;
    with_header_slots(buf, config.max_headers, |slots| {
        let mut res = httparse::Response::new(slots);
        let status = res.parse(buf).map_err(|e| parse_error(e, config))?;
        complete_within_limit(status, buf, config)?
            .map(|n| {
                let (Some(minor_version), Some(status)) = (res.version, res.code) else {
                    return Err(HandshakeError::MalformedHead(
                        "incomplete status line".into(),
                    ));
                };
                let head = ResponseHead {
                    minor_version,
                    status,
                    reason: res.reason.unwrap_or_default().to_owned(),
                    headers: Headers::from_httparse(res.headers),
                };
                Ok((head, n))
            })
            .transpose()
    })
}

/// Empty lines tolerated before the start line. RFC 9112 §2.2 asks to
/// ignore at least one; a bound keeps a peer from making every re-parse
/// of an incomplete head skip an ever longer run of them.
const MAX_LEADING_EMPTY_LINES: usize = 4;

fn check_leading_empty_lines(buf: &[u8]) -> Result<(), HandshakeError> {
    let empty = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .filter(|&&b| b == b'\n')
        .take(MAX_LEADING_EMPTY_LINES + 1)
        .count();
    if empty > MAX_LEADING_EMPTY_LINES {
        return Err(HandshakeError::MalformedHead(
            "too many empty lines before the start line".into(),
        ));
    }
    Ok(())
}

/// Tracks a growing receive buffer and says when re-parsing its head is
/// worthwhile.
///
/// A head can only become complete with a chunk holding a line feed, and a
/// malformed start shows in the first bytes, so parsing is attempted for
/// the first chunk and for chunks containing `\n` only. That keeps
/// byte-at-a-time input at one parse per line instead of one per byte.
#[derive(Debug, Default, Clone)]
pub(crate) struct HeadScanner {
    started: bool,
}

impl HeadScanner {
    /// Called with each chunk appended to a buffer now `buffered` bytes
    /// long. Returns whether to run the parser; fails once an incomplete
    /// head has grown past `max_head_bytes`.
    pub(crate) fn should_parse(
        &mut self,
        chunk: &[u8],
        buffered: usize,
        config: &Config,
    ) -> Result<bool, HandshakeError> {
        let first = !self.started;
        self.started |= !chunk.is_empty();
        let due = (first && !chunk.is_empty()) || chunk.contains(&b'\n');
        if !due && buffered > config.max_head_bytes {
            return Err(HandshakeError::HeadTooLarge(config.max_head_bytes));
        }
        Ok(due)
    }
}

/// Appends `name: value\r\n`, refusing values that would break the head
/// (CR, LF, NUL) or cannot be written as ISO-8859-1.
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    name: &str,
    value: &str,
) -> Result<(), HandshakeError> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(HandshakeError::InvalidHeader(
            "header name",
            name.escape_default().to_string(),
        ));
    }
    let start = out.len();
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    if !push_latin1(out, value) {
        out.truncate(start);
        return Err(HandshakeError::InvalidHeader(
            "header value",
            format!("{name}: {}", value.escape_default()),
        ));
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Appends `value` encoded as ISO-8859-1; false (with a partial write) for
/// characters that are not allowed in a header value.
fn push_latin1(out: &mut Vec<u8>, value: &str) -> bool {
    if value.is_ascii() {
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return false;
        }
        out.extend_from_slice(value.as_bytes());
        return true;
    }
    for c in value.chars() {
        match u8::try_from(u32::from(c)) {
            Ok(b) if b != b'\r' && b != b'\n' && b != 0 => out.push(b),
            _ => return false,
        }
    }
    true
}

/// RFC 7230 `tchar`.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Runs `f` with header slots for `max_headers` headers, on the stack for
/// the usual limits. The slot count is also capped by what `buf` can hold
/// (a header line takes at least three bytes) so a huge limit cannot force
/// a huge allocation.
fn with_header_slots<'b, R>(
    buf: &'b [u8],
    max_headers: usize,
    f: impl FnOnce(&mut [httparse::Header<'b>]) -> R,
) -> R {
    const STACK_SLOTS: usize = 64;
    let slots = max_headers.min(buf.len() / 3 + 1);
    if slots <= STACK_SLOTS {
        let mut storage = [httparse::EMPTY_HEADER; STACK_SLOTS];
        f(&mut storage[..slots])
    } else {
        let mut storage = vec![httparse::EMPTY_HEADER; slots];
        f(&mut storage)
    }
}

fn complete_within_limit(
    status: httparse::Status<usize>,
    buf: &[u8],
    config: &Config,
) -> Result<Option<usize>, HandshakeError> {
    let (len, complete) = match status {
        httparse::Status::Complete(n) => (n, Some(n)),
        httparse::Status::Partial => (buf.len(), None),
    };
    if len > config.max_head_bytes {
        return Err(HandshakeError::HeadTooLarge(config.max_head_bytes));
    }
    Ok(complete)
}

fn parse_error(e: httparse::Error, config: &Config) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders(config.max_headers),
        httparse::Error::Version => HandshakeError::HttpVersion,
        other => HandshakeError::MalformedHead(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_head_bytes: usize, max_headers: usize) -> Config {
        Config {
            max_head_bytes,
            max_headers,
            ..Config::default()
        }
    }

    #[test]
    fn parses_request_head_and_reports_consumed() {
        let buf = b"GET /chat?x=1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nX: \xe9t\xe9\r\n\r\nrest";
        let (head, n) = parse_request(buf, &Config::default()).unwrap().unwrap();
        assert_eq!(n, buf.len() - 4);
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/chat?x=1");
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.headers.get("host"), Some("a"));
        assert!(head.headers.has_token("CONNECTION", "upgrade"));
        assert!(!head.headers.has_token("Connection", "upgrad"));
        assert_eq!(head.headers.get("x"), Some("été"));
    }

    #[test]
    fn partial_head_needs_more() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n";
        assert_eq!(parse_request(buf, &Config::default()).unwrap(), None);
        assert_eq!(
            parse_response(b"HTTP/1.1 101", &Config::default()).unwrap(),
            None
        );
    }

    #[test]
    fn parses_response_head() {
        let buf = b"HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\n\r\n";
        let (head, n) = parse_response(buf, &Config::default()).unwrap().unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(head.status, 101);
        assert_eq!(head.reason, "Web Socket Protocol Handshake");
        assert_eq!(head.headers.get("upgrade"), Some("WebSocket"));
    }

    #[test]
    fn head_size_limit_applies_to_complete_and_partial_heads() {
        let buf = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let small = cfg(buf.len() - 1, 10);
        assert_eq!(
            parse_request(buf, &small),
            Err(HandshakeError::HeadTooLarge(buf.len() - 1))
        );
        assert!(parse_request(buf, &cfg(buf.len(), 10)).unwrap().is_some());
        let partial = b"GET / HTTP/1.1\r\nHost: example.com\r\n";
        assert_eq!(
            parse_request(partial, &cfg(20, 10)),
            Err(HandshakeError::HeadTooLarge(20))
        );
    }

    #[test]
    fn header_count_limit() {
        let buf = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            parse_request(buf, &cfg(1000, 2)),
            Err(HandshakeError::TooManyHeaders(2))
        );
        assert!(parse_request(buf, &cfg(1000, 3)).unwrap().is_some());
        // Above the stack slot count as well.
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            big.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert!(parse_request(&big, &cfg(1 << 20, 100)).unwrap().is_some());
        assert_eq!(
            parse_request(&big, &cfg(1 << 20, 99)),
            Err(HandshakeError::TooManyHeaders(99))
        );
    }

    #[test]
    fn malformed_and_version_errors() {
        assert!(matches!(
            parse_request(b"\x16\x03\x01", &Config::default()),
            Err(HandshakeError::MalformedHead(_))
        ));
        assert_eq!(
            parse_request(b"GET / HTTP/2.0\r\n\r\n", &Config::default()),
            Err(HandshakeError::HttpVersion)
        );
    }

    #[test]
    fn leading_empty_lines_are_bounded() {
        let ok = b"\r\n\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(parse_request(ok, &Config::default()).unwrap().is_some());
        assert!(matches!(
            parse_request(b"\r\n\r\n\r\n\r\n\r\n", &Config::default()),
            Err(HandshakeError::MalformedHead(_))
        ));
        assert!(matches!(
            parse_response(b"\n\n\n\n\nHTTP/1.1 101 x\r\n\r\n", &Config::default()),
            Err(HandshakeError::MalformedHead(_))
        ));
    }

    #[test]
    fn token_lists() {
        assert!(has_token("keep-alive, Upgrade", "upgrade"));
        assert!(has_token(" upgrade ", "Upgrade"));
        assert!(!has_token("keep-alive", "upgrade"));
        assert!(!has_token("", "upgrade"));
        assert_eq!(
            split_list("a, ,b,, c ").collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn get_single_refuses_repeats() {
        let mut h = Headers::new();
        h.push("Sec-WebSocket-Key", "a");
        assert_eq!(h.get_single("sec-websocket-key"), Ok(Some("a")));
        assert_eq!(h.get_single("Origin"), Ok(None));
        h.push("SEC-WEBSOCKET-KEY", "b");
        assert_eq!(
            h.get_single("Sec-WebSocket-Key"),
            Err(HandshakeError::DuplicateHeader("Sec-WebSocket-Key"))
        );
    }

    #[test]
    fn write_header_refuses_injection() {
        let mut out = Vec::new();
        write_header(&mut out, "X-A", "caf\u{e9}").unwrap();
        assert_eq!(out, b"X-A: caf\xe9\r\n");
        assert!(write_header(&mut out, "X-B", "a\r\nEvil: 1").is_err());
        assert!(write_header(&mut out, "X B", "a").is_err());
        assert!(write_header(&mut out, "X-C", "\u{20ac}").is_err());
        assert_eq!(out, b"X-A: caf\xe9\r\n");
    }

    #[test]
    fn scanner_parses_on_line_ends_only() {
        let c = cfg(10, 10);
        let mut s = HeadScanner::default();
        assert!(s.should_parse(b"G", 1, &c).unwrap());
        assert!(!s.should_parse(b"E", 2, &c).unwrap());
        assert!(s.should_parse(b"\n", 3, &c).unwrap());
        assert_eq!(
            s.should_parse(b"x", 11, &c),
            Err(HandshakeError::HeadTooLarge(10))
        );
    }
}
