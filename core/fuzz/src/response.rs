//! `response`: a [`ClientHandshake`] for a fuzzer-chosen draft and
//! options reading the server's answer. Two modes:
//!
//! * **answer**: a real [`ServerHandshake`] (with its own fuzzer-chosen
//!   configuration) answers the client's request, then fuzzer-chosen edits
//!   (overwrite, insert, delete) are applied to that answer and frame bytes
//!   appended. With no edits this is the success path of every draft, which
//!   a fuzzer could never reach on its own (the answer proves knowledge of
//!   the client's random key);
//! * **raw**: the fuzz bytes are the answer, fed whole to one client and in
//!   random reads to a twin; both must reach the same outcome (the twin at
//!   the latest with the next line feed).
//!
//! Checked besides "never panics": an unedited accepting answer completes
//! with the session the server agreed on (subprotocol, extension, hybi-04
//! mask key) and hands every byte after the answer on; an unedited refusal
//! fails; a completed handshake refuses more bytes, a failed one repeats
//! its error; what completed starts a [`Connection`] that can be polled.

use std::sync::Arc;

use polysocket::draft::HandshakeFamily;
use polysocket::extensions::{Agreed, PmdParams};
use polysocket::handshake::{
    ClientHandshake, ClientOptions, Completed, Hooks, Progress, Request, ServerHandshake,
};
use polysocket::http::parse_response;
use polysocket::session::Session;
use polysocket::{Config, Connection, Draft, HandshakeError, Role};

use super::input::{Input, Splitter};
use super::request::pmd_config;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let draft = input.draft();
    let config = Arc::new(client_config(&mut input));
    let opts = client_options(&mut input, draft);
    let raw = input.bool();
    let mut splitter = Splitter::new(&mut input);
    let Ok(mut client) = ClientHandshake::new(Arc::clone(&config), opts.clone()) else {
        return;
    };
    if raw {
        let bytes = input.rest();
        let Ok(mut twin) = ClientHandshake::new(Arc::clone(&config), opts) else {
            unreachable!("the same options built a request once");
        };
        let whole = feed(&mut client, &[bytes]);
        let mut split = feed(&mut twin, &splitter.split(bytes));
        if let (Outcome::Failed(_), Outcome::NeedMore) = (&whole, &split) {
            // Heads are parsed on the first read and on reads holding a
            // line feed only: a later malformation shows with the next one.
            split = feed(&mut twin, &[b"\n"]);
        }
        assert_eq!(
            whole.class(),
            split.class(),
            "segmentation changed the outcome: {whole:?} vs {split:?}"
        );
        whole.connect(&config);
        return;
    }

    let (answer, agreed) = server_answer(&mut input, &client, &opts);
    // The fuzzer may give the client head limits the answer exceeds.
    let fits = matches!(parse_response(&answer, &config), Ok(Some(_)));
    let edits = read_edits(&mut input);
    let trailing = input.rest();
    let mut wire = edit(answer, &edits);
    wire.extend_from_slice(trailing);
    let outcome = feed(&mut client, &splitter.split(&wire));
    let hixie = draft.handshake_family() != HandshakeFamily::Hybi;
    if edits.is_empty() {
        match (&agreed, &outcome) {
            // hybi-01 without its draft header is taken for hixie-76, whose
            // answer a hybi-01 client reads the same way: nothing to compare.
            (Some(server), _) if server.draft != draft => {}
            (_, Outcome::Failed(_)) if !fits => {}
            // hixie clients fail when the protocol they asked for is not
            // echoed: choosing none refuses them.
            (Some(server), Outcome::Failed(HandshakeError::MissingHeader(_)))
                if hixie && server.subprotocol.is_none() && !opts.subprotocols.is_empty() => {}
            (Some(server), Outcome::Done(done, rest)) => {
                let client_session = &done.session;
                assert_eq!(client_session.role, Role::Client);
                assert_eq!(client_session.draft, server.draft);
                assert_eq!(client_session.subprotocol, server.subprotocol);
                assert_eq!(
                    as_server_records(client_session.extensions, &server.extensions, &config),
                    server.extensions
                );
                assert_eq!(client_session.hybi04_mask_key, server.hybi04_mask_key);
                assert_eq!(rest, trailing, "bytes after the answer are handed on");
                assert_eq!(client.response_status(), Some(101));
            }
            (Some(_), other) => panic!("a valid answer was not accepted: {other:?}"),
            (None, Outcome::Failed(HandshakeError::UnexpectedStatus(status))) => {
                assert!((300..=599).contains(status));
            }
            (None, other) => panic!("a refusal was not refused: {other:?}"),
        }
    }
    outcome.connect(&config);
}

/// The client's agreement as the server records it: a client that
/// announced client_no_context_takeover records it, a server records only
/// whether it demanded it (the hint changes nothing for its inflater, see
/// `extensions::accept_pmd`).
fn as_server_records(agreed: Agreed, server: &Agreed, config: &Config) -> Agreed {
    let announced = config
        .extensions
        .permessage_deflate
        .as_ref()
        .is_some_and(|p| p.client_no_context_takeover);
    match (agreed, server) {
        (Agreed::PerMessageDeflate(p), Agreed::PerMessageDeflate(s)) if announced => {
            Agreed::PerMessageDeflate(PmdParams {
                client_no_context_takeover: s.client_no_context_takeover,
                ..p
            })
        }
        (other, _) => other,
    }
}

/// How feeding an answer ended.
#[derive(Debug)]
enum Outcome {
    /// Completed; the bytes after the answer (leftover plus later reads).
    Done(Box<Completed>, Vec<u8>),
    Failed(HandshakeError),
    NeedMore,
}

impl Outcome {
    fn class(&self) -> u8 {
        match self {
            Outcome::Done(..) => 0,
            Outcome::Failed(_) => 1,
            Outcome::NeedMore => 2,
        }
    }

    /// A connection on what completed, polled over the leftover bytes.
    fn connect(self, config: &Arc<Config>) {
        let Outcome::Done(done, _) = self else {
            return;
        };
        assert!(done.response.is_empty(), "a client writes nothing back");
        assert!(
            done.session.extensions == Default::default() || done.session.draft.has_extensions()
        );
        let mut conn = Connection::from_completed(Arc::clone(config), *done);
        for _ in 0..64 {
            match conn.poll() {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// Feeds `pieces` in order until the handshake completes or fails, then
/// checks that it stays so.
fn feed(client: &mut ClientHandshake, pieces: &[&[u8]]) -> Outcome {
    for (i, piece) in pieces.iter().enumerate() {
        match client.feed(piece) {
            Ok(None) => {}
            Ok(Some(done)) => {
                assert_eq!(client.feed(b"x"), Err(HandshakeError::Finished));
                let mut rest = done.leftover.to_vec();
                pieces[i + 1..]
                    .iter()
                    .for_each(|p| rest.extend_from_slice(p));
                return Outcome::Done(Box::new(done), rest);
            }
            Err(e) => {
                assert_eq!(client.feed(b"x"), Err(e.clone()), "errors are final");
                return Outcome::Failed(e);
            }
        }
    }
    Outcome::NeedMore
}

fn client_config(input: &mut Input<'_>) -> Config {
    let mut config = Config::default();
    let variant = input.byte();
    if variant & 1 != 0 {
        input.strictness(&mut config);
    }
    if variant & 2 != 0 {
        pmd_config(input, &mut config);
    }
    if variant & 4 != 0 {
        config.max_head_bytes = input.pick(&[0, 32, 128, 300]);
        config.max_headers = input.pick(&[0, 2, 5, 10]);
    }
    config
}

/// Subprotocol lists to offer; the last one is invalid in every draft.
const PROTOCOLS: [&[&str]; 4] = [
    &[],
    &["chat"],
    &["chat", "superchat", "v2.x"],
    &["bad name"],
];

fn client_options(input: &mut Input<'_>, draft: Draft) -> ClientOptions {
    let host = input.pick(&["example.com", "example.com:8080", "[::1]:9000", ""]);
    let resource = input.pick(&["/chat?room=7", "/", "", "/a b"]);
    let mut opts = ClientOptions::new(draft, host, resource);
    let flags = input.byte();
    opts.secure = flags & 1 != 0;
    opts.sec_origin_header = flags & 2 == 0;
    opts.draft_header = flags & 4 == 0;
    if flags & 8 != 0 {
        opts.origin = Some("https://app.example".into());
    }
    if flags & 16 != 0 {
        opts.extra_headers = vec![("Authorization".into(), "Bearer x".into())];
    }
    opts.subprotocols = input
        .pick(&PROTOCOLS)
        .iter()
        .map(|p| p.to_string())
        .collect();
    opts
}

/// The answer a real server gives to `client`'s request, and the session
/// it agreed on (`None`: it refused).
fn server_answer(
    input: &mut Input<'_>,
    client: &ClientHandshake,
    opts: &ClientOptions,
) -> (Vec<u8>, Option<Session>) {
    let mut config = Config::default();
    let variant = input.byte();
    if variant & 1 != 0 {
        pmd_config(input, &mut config);
    }
    if variant & 2 != 0 {
        config.drafts = input.draft_set();
    }
    let pick = PickProtocol(input.byte());
    let mut server = ServerHandshake::new(Arc::new(config));
    let progress = server.feed(client.request_bytes());
    assert!(
        matches!(
            progress,
            Ok(Progress::Ready) | Err(HandshakeError::DraftDisabled(_))
        ),
        "our own request: {progress:?}"
    );
    match server.complete(&pick, opts.secure) {
        Ok(done) => {
            assert!(done.leftover.is_empty());
            (done.response, Some(done.session))
        }
        Err(rejected) => (rejected.response, None),
    }
}

/// Picks the offered subprotocol at a fuzzer-chosen index, or none.
struct PickProtocol(u8);

impl Hooks for PickProtocol {
    fn select_subprotocol(&self, _req: &Request, offered: &[&str]) -> Option<String> {
        let i = usize::from(self.0.checked_sub(1)?);
        offered.get(i % offered.len().max(1)).map(|p| p.to_string())
    }
}

/// One change to the server's answer; positions wrap around its length.
#[derive(Debug)]
enum Edit<'a> {
    Overwrite(usize, &'a [u8]),
    Insert(usize, &'a [u8]),
    Delete(usize, usize),
    Truncate(usize),
}

fn read_edits<'a>(input: &mut Input<'a>) -> Vec<Edit<'a>> {
    let count = input.byte() % 4;
    (0..count)
        .map(|_| {
            let kind = input.byte();
            let at = usize::from(input.u16());
            let n = usize::from(kind >> 2);
            match kind & 3 {
                0 => Edit::Overwrite(at, input.bytes(n + 1)),
                1 => Edit::Insert(at, input.bytes(n + 1)),
                2 => Edit::Delete(at, n + 1),
                _ => Edit::Truncate(at),
            }
        })
        .collect()
}

fn edit(mut answer: Vec<u8>, edits: &[Edit<'_>]) -> Vec<u8> {
    for e in edits {
        let len = answer.len();
        let at = |i: usize| i % (len + 1);
        match *e {
            Edit::Overwrite(i, bytes) => {
                let start = at(i);
                let end = (start + bytes.len()).min(len);
                answer[start..end].copy_from_slice(&bytes[..end - start]);
            }
            Edit::Insert(i, bytes) => {
                let start = at(i);
                answer.splice(start..start, bytes.iter().copied());
            }
            Edit::Delete(i, n) => {
                let start = at(i);
                answer.drain(start..(start + n).min(len));
            }
            Edit::Truncate(i) => answer.truncate(at(i)),
        }
    }
    answer
}
