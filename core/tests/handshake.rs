//! Client against server for every draft, through the public API only, and
//! robustness of both parsers against arbitrary input.

use std::sync::Arc;

use polysocket::handshake::{
    AcceptOptions, ClientHandshake, ClientOptions, Completed, Hooks, Progress, Request,
    ServerHandshake,
};
use polysocket::{Config, Draft, HandshakeError, Role};
use proptest::prelude::*;

fn config() -> Arc<Config> {
    Arc::new(Config::default())
}

/// Feeds the server in chunks of `chunk` bytes; the last progress.
fn feed_server(server: &mut ServerHandshake, bytes: &[u8], chunk: usize) -> Progress {
    let mut last = Progress::NeedMore;
    for part in bytes.chunks(chunk) {
        last = server.feed(part).unwrap();
    }
    last
}

/// Feeds the client `answer` followed by `frames`, in chunks of `chunk`
/// bytes. The handshake must complete with the chunk holding the answer's
/// last byte; returns it and every byte after the answer (its leftover and
/// the chunks a runtime would pass to the connection instead).
fn feed_client(
    client: &mut ClientHandshake,
    answer: &[u8],
    frames: &[u8],
    chunk: usize,
) -> (Completed, Vec<u8>) {
    let bytes = [answer, frames].concat();
    let mut fed = 0;
    for part in bytes.chunks(chunk) {
        fed += part.len();
        if let Some(done) = client.feed(part).unwrap() {
            assert!(fed >= answer.len() && fed - part.len() < answer.len());
            let mut rest = done.leftover.to_vec();
            rest.extend_from_slice(&bytes[fed..]);
            return (done, rest);
        }
    }
    panic!("the answer did not complete the handshake");
}

struct PickSecond;

impl Hooks for PickSecond {
    fn select_subprotocol(&self, _req: &Request, offered: &[&str]) -> Option<String> {
        offered.last().map(|p| p.to_string())
    }
}

fn options(draft: Draft, subprotocols: &[&str], secure: bool) -> ClientOptions {
    let mut opts = ClientOptions::new(draft, "example.com:8080", "/chat?room=7");
    opts.subprotocols = subprotocols.iter().map(|s| s.to_string()).collect();
    opts.secure = secure;
    opts.origin = Some("https://app.example".into());
    opts
}

#[test]
fn client_and_server_agree_on_every_draft() {
    for draft in Draft::ALL {
        // hixie drafts carry one opaque protocol value.
        let protocols: &[&str] = if draft.version().is_some() {
            &["chat", "superchat"]
        } else {
            &["chat"]
        };
        for chunk in [usize::MAX, 1, 7] {
            for secure in [false, true] {
                let mut client =
                    ClientHandshake::new(config(), options(draft, protocols, secure)).unwrap();
                let mut server = ServerHandshake::new(config());
                let request = client.request_bytes().to_vec();
                assert_eq!(
                    feed_server(&mut server, &request, chunk),
                    Progress::Ready,
                    "{draft}"
                );
                let req = server.request().unwrap();
                assert_eq!(req.draft(), draft);
                assert_eq!(req.path(), "/chat");
                assert_eq!(req.query(), Some("room=7"));
                assert_eq!(req.origin(), Some("https://app.example"));
                assert_eq!(req.subprotocols(), protocols);

                let accepted = server.complete(&PickSecond, secure).unwrap();
                // Frame bytes sent right behind the answer are not lost.
                let frames = b"\x00frame\xff";
                let (done, rest) = feed_client(&mut client, &accepted.response, frames, chunk);

                assert_eq!(accepted.session.role, Role::Server);
                assert_eq!(done.session.role, Role::Client);
                assert_eq!(done.session.draft, draft);
                assert_eq!(accepted.session.draft, draft);
                let expected = protocols.last().map(|p| p.to_string());
                assert_eq!(done.session.subprotocol, expected);
                assert_eq!(accepted.session.subprotocol, expected);
                assert_eq!(
                    done.session.hybi04_mask_key,
                    accepted.session.hybi04_mask_key
                );
                assert_eq!(
                    done.session.hybi04_mask_key.is_some(),
                    draft == Draft::Hybi04
                );
                assert_eq!(done.session.extensions, accepted.session.extensions);
                assert_eq!(rest, frames);
                assert!(accepted.leftover.is_empty());
                assert!(done.response.is_empty());
                assert_eq!(client.response_status(), Some(101));
            }
        }
    }
}

#[test]
fn client_and_server_without_subprotocols_or_origin() {
    for draft in Draft::ALL {
        let mut client =
            ClientHandshake::new(config(), ClientOptions::new(draft, "h", "/")).unwrap();
        let mut server = ServerHandshake::new(config());
        assert_eq!(server.feed(client.request_bytes()), Ok(Progress::Ready));
        let accepted = server.accept(&AcceptOptions::default()).unwrap();
        let done = client.feed(&accepted.response).unwrap().unwrap();
        assert_eq!(done.session.draft, draft);
        assert_eq!(done.session.subprotocol, None);
    }
}

#[test]
fn hybi01_without_its_marker_is_taken_for_hixie76() {
    let mut opts = ClientOptions::new(Draft::Hybi01, "h", "/");
    opts.draft_header = false;
    let client = ClientHandshake::new(config(), opts).unwrap();
    let mut server = ServerHandshake::new(config());
    assert_eq!(server.feed(client.request_bytes()), Ok(Progress::Ready));
    assert_eq!(server.request().unwrap().draft(), Draft::Hixie76);

    let mut lab = Config::default();
    lab.strict.draftless_key12_as_hybi01 = true;
    let mut server = ServerHandshake::new(Arc::new(lab));
    assert_eq!(server.feed(client.request_bytes()), Ok(Progress::Ready));
    assert_eq!(server.request().unwrap().draft(), Draft::Hybi01);
}

#[test]
fn hixie_clients_check_the_location_scheme() {
    for draft in [Draft::Hixie75, Draft::Hixie76] {
        let mut client = ClientHandshake::new(config(), options(draft, &[], true)).unwrap();
        let mut server = ServerHandshake::new(config());
        server.feed(client.request_bytes()).unwrap();
        // The server believes it runs without TLS: Location says ws://.
        let accepted = server.accept(&AcceptOptions::default()).unwrap();
        assert!(matches!(
            client.feed(&accepted.response),
            Err(HandshakeError::InvalidHeader(..))
        ));
    }
}

fn any_draft() -> impl Strategy<Value = Draft> {
    proptest::sample::select(Draft::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn server_never_panics_on_random_bytes(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        tight in any::<bool>(),
    ) {
        let mut cfg = Config::default();
        if tight {
            cfg.max_head_bytes = 100;
            cfg.max_headers = 3;
        }
        let cfg = Arc::new(cfg);
        let mut server = ServerHandshake::new(cfg.clone());
        for chunk in &chunks {
            if server.feed(chunk).is_err() {
                break;
            }
        }
        let _ = server.complete(&PickSecond, false);
    }

    #[test]
    fn server_never_panics_on_mangled_requests(
        draft in any_draft(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let client = ClientHandshake::new(config(), options(draft, &["a"], false)).unwrap();
        let mut bytes = client.request_bytes().to_vec();
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        let mut server = ServerHandshake::new(config());
        let split = cut.index(bytes.len() + 1);
        let _ = server.feed(&bytes[..split]).and_then(|_| server.feed(&bytes[split..]));
        if let Some(req) = server.request() {
            let _ = (req.path(), req.query(), req.subprotocols(), req.extension_offers());
        }
        let _ = server.complete(&PickSecond, true);
    }

    #[test]
    fn client_never_panics_on_random_answers(
        draft in any_draft(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
    ) {
        let mut client = ClientHandshake::new(config(), options(draft, &["a"], false)).unwrap();
        for chunk in &chunks {
            if client.feed(chunk).is_err() {
                break;
            }
        }
    }

    #[test]
    fn client_never_panics_on_mangled_answers(
        draft in any_draft(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut client = ClientHandshake::new(config(), options(draft, &["a"], false)).unwrap();
        let mut server = ServerHandshake::new(config());
        server.feed(client.request_bytes()).unwrap();
        let mut bytes = server.complete(&PickSecond, false).unwrap().response;
        for (at, byte) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        let split = cut.index(bytes.len() + 1);
        let _ = client.feed(&bytes[..split]).and_then(|_| client.feed(&bytes[split..]));
    }

    #[test]
    fn any_segmentation_gives_the_same_request(
        draft in any_draft(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let client = ClientHandshake::new(config(), options(draft, &["a"], false)).unwrap();
        let bytes = client.request_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let mut server = ServerHandshake::new(config());
        let mut progress = Progress::NeedMore;
        for pair in points.windows(2) {
            progress = server.feed(&bytes[pair[0]..pair[1]]).unwrap();
        }
        prop_assert_eq!(progress, Progress::Ready);
        let mut whole = ServerHandshake::new(config());
        whole.feed(bytes).unwrap();
        prop_assert_eq!(server.request(), whole.request());
    }
}
