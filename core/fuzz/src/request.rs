//! `request`: arbitrary bytes as a client's opening request, read by a
//! [`ServerHandshake`] under a fuzzer-chosen configuration (the defaults,
//! or strict switches, a subset of drafts, small head limits, other
//! extension settings).
//!
//! Checked besides "never panics":
//! * segmentation does not matter: the bytes fed whole and in random reads
//!   reach the same outcome (same request, or both fail, the split one at
//!   the latest with the next line feed), and a failed handshake keeps
//!   returning its error;
//! * `from_parsed` (frameworks that parse HTTP themselves) detects what
//!   `feed` detects;
//! * every answer is a complete HTTP response: a 101 (plus hixie-76's
//!   16-byte body) for an accepted request, a 3xx..5xx with a body of its
//!   Content-Length for a refused one;
//! * the bytes after the request start a [`Connection`] that can be polled.

use std::sync::Arc;

use polysocket::config::PerMessageDeflateConfig;
use polysocket::draft::HandshakeFamily;
use polysocket::extensions::Agreed;
use polysocket::handshake::{
    reject_response, AcceptOptions, Completed, Hooks, Progress, Rejected, Request, ServerHandshake,
};
use polysocket::http::{parse_request, parse_response};
use polysocket::{Config, Connection, HandshakeError, Role};

use super::input::{Input, Splitter};

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let config = Arc::new(server_config(&mut input));
    let hooks = FuzzHooks::new(&mut input);
    let answer_with = input.byte();
    let mut splitter = Splitter::new(&mut input);
    let bytes = input.rest();

    let (whole, whole_result) = feed(&config, &[bytes]);
    let (mut split, mut split_result) = feed(&config, &splitter.split(bytes));
    if whole_result.is_err() && split_result == Ok(Progress::NeedMore) {
        // Heads are parsed on the first read and on reads holding a line
        // feed only, so a malformation that arrived later shows with the
        // next line feed.
        split_result = split.feed(b"\n");
    }
    assert_eq!(
        whole_result.is_ok(),
        split_result.is_ok(),
        "segmentation changed the outcome: {whole_result:?} vs {split_result:?}"
    );
    if let (Ok(a), Ok(b)) = (&whole_result, &split_result) {
        assert_eq!(a, b);
        assert_eq!(whole.request(), split.request());
    }
    check_from_parsed(&config, bytes, &whole_result, whole.request());

    if whole_result == Ok(Progress::Ready) {
        inspect(whole.request().expect("a Ready handshake has its request"));
    }
    // The default hooks on one handshake, fuzzer-driven answers on the other.
    answer(&config, whole.complete(&DefaultHooks, answer_with & 2 != 0));
    let secure = answer_with & 4 != 0;
    if answer_with & 1 == 0 {
        answer(&config, split.complete(&hooks, secure));
    } else {
        let req = split.request().cloned();
        let opts = hooks.accept_options(req.as_ref(), secure);
        let result = split.accept(&opts).map_err(|error| Rejected {
            response: reject_response(&error, &config),
            error,
        });
        answer(&config, result);
    }
}

/// Feeds `pieces` in order; the handshake and its last result. After an
/// error, feeding more must return the same error.
fn feed(
    config: &Arc<Config>,
    pieces: &[&[u8]],
) -> (ServerHandshake, Result<Progress, HandshakeError>) {
    let mut hs = ServerHandshake::new(Arc::clone(config));
    let mut last = Ok(Progress::NeedMore);
    for piece in pieces {
        last = hs.feed(piece);
        if let Err(e) = &last {
            assert_eq!(hs.feed(b"more").as_ref(), Err(e), "errors are final");
            break;
        }
    }
    (hs, last)
}

/// `from_parsed` must agree with `feed` on a head `parse_request` accepts
/// (it assumes HTTP/1.1, so only those heads are compared).
fn check_from_parsed(
    config: &Arc<Config>,
    bytes: &[u8],
    fed: &Result<Progress, HandshakeError>,
    fed_request: Option<&Request>,
) {
    let Ok(Some((head, n))) = parse_request(bytes, config) else {
        return;
    };
    let mut hs = ServerHandshake::from_parsed(
        Arc::clone(config),
        &head.method,
        &head.target,
        head.headers,
        &bytes[n..],
    );
    let result = hs.feed(&[]);
    if head.minor_version == 1 {
        assert_eq!(result.is_ok(), fed.is_ok(), "{result:?} vs {fed:?}");
        if result.is_ok() {
            assert_eq!(&result, fed);
            assert_eq!(hs.request(), fed_request);
        }
    }
}

/// Every accessor of a detected, complete request, for panics on odd
/// values; the challenge matches the draft's handshake family.
fn inspect(req: &Request) {
    let _ = (req.method(), req.target(), req.resource(), req.path());
    let _ = (req.query(), req.origin(), req.host(), req.headers().len());
    let _ = (req.version(), req.subprotocols(), req.extension_offers());
    let family = req.draft().handshake_family();
    assert_eq!(req.key3().is_some(), family == HandshakeFamily::Hixie76);
    assert_eq!(req.key().is_some(), family == HandshakeFamily::Hybi);
    assert!(req.draft().has_extensions() || req.extension_offers().is_empty());
}

/// Checks the HTTP answer of `complete`/`accept` and starts a connection
/// on the bytes that followed the request.
fn answer(config: &Arc<Config>, result: Result<Completed, Rejected>) {
    match result {
        Ok(done) => {
            let (head, n) = parse_response(&done.response, &Config::default())
                .expect("our 101 answer parses")
                .expect("our 101 answer is complete");
            assert_eq!(head.status, 101);
            let family = done.session.draft.handshake_family();
            let body = if family == HandshakeFamily::Hixie76 {
                16
            } else {
                0
            };
            assert_eq!(done.response.len(), n + body);
            assert_eq!(done.session.role, Role::Server);
            let agreed = done.session.extensions;
            assert!(agreed == Agreed::None || done.session.draft.has_extensions());
            let mut conn = Connection::from_completed(Arc::clone(config), done);
            for _ in 0..64 {
                match conn.poll() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
        Err(Rejected { error, response }) => {
            let (head, n) = parse_response(&response, &Config::default())
                .expect("our refusal parses")
                .expect("our refusal is complete");
            assert!(
                (300..=599).contains(&head.status),
                "{error:?}: {}",
                head.status
            );
            let length: usize = head
                .headers
                .get("Content-Length")
                .expect("a refusal has a Content-Length")
                .parse()
                .expect("a numeric Content-Length");
            assert_eq!(response.len(), n + length);
        }
    }
}

/// The configuration the server runs with: the defaults, or variations the
/// fuzzer chooses.
fn server_config(input: &mut Input<'_>) -> Config {
    let mut config = Config::default();
    let variant = input.byte();
    if variant & 1 != 0 {
        input.strictness(&mut config);
    }
    if variant & 2 != 0 {
        config.drafts = input.draft_set();
    }
    if variant & 4 != 0 {
        config.max_head_bytes = input.pick(&[0, 16, 64, 200, 512]);
        config.max_headers = input.pick(&[0, 1, 4, 8, 100]);
    }
    if variant & 8 != 0 {
        config.version_mismatch_status = input.pick(&[400, 426, 200, 999]);
    }
    if variant & 16 != 0 {
        pmd_config(input, &mut config);
    }
    config
}

/// Fuzzer-chosen extension settings (shared with the `response` target).
pub fn pmd_config(input: &mut Input<'_>, config: &mut Config) {
    let bits = input.byte();
    let ext = &mut config.extensions;
    ext.deflate_frame = bits & 1 != 0;
    ext.deflate_stream = bits & 2 != 0;
    ext.permessage_deflate = (bits & 4 == 0).then(|| PerMessageDeflateConfig {
        server_no_context_takeover: bits & 8 != 0,
        client_no_context_takeover: bits & 16 != 0,
        // Out-of-range values are documented to be clamped.
        server_max_window_bits: input.pick(&[15, 8, 9, 12, 0, 200]),
        client_max_window_bits: input.pick(&[15, 8, 10, 14, 7, 16]),
        accept_window_bits_8: bits & 32 == 0,
    });
}

/// The hooks' default methods.
struct DefaultHooks;

impl Hooks for DefaultHooks {}

/// Hooks whose decisions come from the fuzz input: refuse with any
/// status, pick any offered subprotocol (or one that was not offered),
/// add valid or invalid extra headers.
struct FuzzHooks {
    refuse: Option<u16>,
    pick: u8,
    extra: Vec<(String, String)>,
}

/// Extra response headers, some of which cannot be written.
const EXTRA_HEADERS: [(&str, &str); 6] = [
    ("Server", "polysocket"),
    ("Set-Cookie", "a=b; Path=/"),
    ("X-Latin1", "caf\u{e9}"),
    ("Bad Name", "x"),
    ("X-Split", "a\r\nInjected: yes"),
    ("X-Wide", "\u{20ac}"),
];

impl FuzzHooks {
    fn new(input: &mut Input<'_>) -> Self {
        let flags = input.byte();
        let refuse = (flags & 1 != 0).then(|| input.u16());
        let pick = input.byte();
        let extra = (0..flags >> 5)
            .map(|_| {
                let (n, v) = input.pick(&EXTRA_HEADERS);
                (n.to_string(), v.to_string())
            })
            .collect();
        FuzzHooks {
            refuse,
            pick,
            extra,
        }
    }

    fn choose(&self, offered: &[&str]) -> Option<String> {
        match self.pick {
            0 => None,
            1 => Some("never-offered".into()),
            i => offered
                .get(usize::from(i - 2) % offered.len().max(1))
                .map(|p| p.to_string()),
        }
    }

    fn accept_options(&self, req: Option<&Request>, secure: bool) -> AcceptOptions {
        AcceptOptions {
            subprotocol: req.and_then(|r| self.choose(&r.subprotocols())),
            extra_headers: self.extra.clone(),
            secure,
        }
    }
}

impl Hooks for FuzzHooks {
    fn check(&self, req: &Request) -> Result<(), HandshakeError> {
        match self.refuse {
            Some(status) if status % 2 == 0 => Err(HandshakeError::Refused(status, "no".into())),
            Some(_) => Err(HandshakeError::OriginRefused(
                req.origin().unwrap_or_default().into(),
            )),
            None => Ok(()),
        }
    }

    fn select_subprotocol(&self, _req: &Request, offered: &[&str]) -> Option<String> {
        self.choose(offered)
    }

    fn response_headers(&self, _req: &Request) -> Vec<(String, String)> {
        self.extra.clone()
    }
}
