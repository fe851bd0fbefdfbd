//! The whole engine, as a runtime drives it: a client handshake against a
//! server handshake for every draft (with every extension the draft can
//! negotiate), then an echo exchange over the resulting connections. The
//! client pipelines its first frames behind the request, and the server's
//! input is split at every byte boundary.
#![allow(clippy::field_reassign_with_default)] // tests tweak one limit at a time

use std::sync::Arc;

use polysocket::extensions::Agreed;
use polysocket::handshake::{ClientHandshake, ClientOptions, Completed, Hooks, ServerHandshake};
use polysocket::protocol::State;
use polysocket::{Config, Connection, Draft, Event, Message};

struct DefaultHooks;
impl Hooks for DefaultHooks {}

/// Configurations to run every draft under: the default (all extensions
/// enabled), one with only deflate-frame, and none.
fn configs() -> Vec<(&'static str, Arc<Config>)> {
    let all = Config::default();
    let mut frame_only = Config::default();
    frame_only.extensions.permessage_deflate = None;
    frame_only.extensions.deflate_stream = false;
    let mut none = Config::default();
    none.extensions.permessage_deflate = None;
    none.extensions.deflate_stream = false;
    none.extensions.deflate_frame = false;
    vec![
        ("all", Arc::new(all)),
        ("deflate-frame", Arc::new(frame_only)),
        ("none", Arc::new(none)),
    ]
}

/// Run the server side over `input` delivered in the given pieces; echo
/// every message; return what it wrote after its handshake answer and the
/// messages it saw.
fn serve(
    config: &Arc<Config>,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<u8>, Vec<u8>, Vec<Message>, Agreed) {
    let mut hs = ServerHandshake::new(config.clone());
    let mut conn: Option<Connection> = None;
    let mut answer = Vec::new();
    let mut written = Vec::new();
    let mut seen = Vec::new();
    let mut agreed = Agreed::None;
    let mut prev = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let piece = &input[prev..cut];
        prev = cut;
        match conn.as_mut() {
            None => {
                if hs.feed(piece).unwrap() == polysocket::handshake::Progress::Ready {
                    let done = std::mem::replace(&mut hs, ServerHandshake::new(config.clone()))
                        .complete(&DefaultHooks, false)
                        .unwrap();
                    answer = done.response.clone();
                    agreed = done.session.extensions;
                    conn = Some(Connection::from_completed(config.clone(), done));
                }
            }
            Some(c) => c.receive(piece),
        }
        if let Some(c) = conn.as_mut() {
            while let Some(event) = c.poll().unwrap_or_else(|e| {
                panic!(
                    "{e} with cuts {cuts:?} agreed {agreed:?} draft {:?}",
                    c.draft()
                )
            }) {
                match event {
                    Event::Message(m) => {
                        c.send(&m).unwrap();
                        seen.push(m);
                    }
                    Event::Close(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            written.extend_from_slice(&c.take_output());
        }
    }
    (answer, written, seen, agreed)
}

fn messages(draft: Draft) -> Vec<Message> {
    let mut v = vec![
        Message::text("Hello"),
        Message::text(""),
        Message::text("κόσμε ".repeat(50)),
    ];
    if draft.has_binary() {
        v.push(Message::binary(
            (0..3000u32).map(|i| (i % 256) as u8).collect::<Vec<_>>(),
        ));
    }
    v
}

#[test]
fn handshake_and_echo_every_draft_split_at_every_byte() {
    for (name, config) in configs() {
        for draft in Draft::ALL {
            let mut opts = ClientOptions::new(draft, "localhost:9001", "/echo");
            opts.origin = Some("http://localhost:9001".into());
            let mut client = ClientHandshake::new(config.clone(), opts).unwrap();
            let request = client.request_bytes().to_vec();
            // The server decides the extension; a throwaway run tells us which
            // the client must agree to, so the client can pipeline frames.
            let (answer, _, _, agreed) = serve(&config, &request, &[]);
            let Completed { session, .. } = client.feed(&answer).unwrap().expect("client accepts");
            assert_eq!(session.extensions, agreed, "{name} {draft}");
            assert_eq!(session.draft, draft);
            let expect_ext = match (name, draft) {
                ("none", _) => false,
                (_, d) if d < Draft::Hybi04 => false,
                _ => true,
            };
            assert_eq!(
                agreed != Agreed::None,
                expect_ext,
                "{name} {draft}: {agreed:?}"
            );
            let mut conn = Connection::new(config.clone(), session);
            let sent = messages(draft);
            for m in &sent {
                conn.send(m).unwrap();
            }
            // hixie-75 has no close frame: closing it ends the connection at
            // once, so it closes after reading the echo below.
            if draft.has_close_frame() {
                conn.close(Some(1000), "done").unwrap();
            }
            let frames = conn.take_output();
            let stream = [&request[..], &frames[..]].concat();

            if draft == Draft::Hybi04 {
                hybi04_sequential(&config, name);
                continue;
            }
            // Every cut point in the handshake and the first frames, then a
            // few across the rest.
            let dense = (request.len() + 64).min(stream.len());
            let cuts = (1..dense).chain((dense..stream.len()).step_by(97));
            for cut in cuts {
                // The server's answer is random (hybi-04 nonce), so the
                // client cannot check this run's frames; compare messages.
                let (_, _, seen, _) = serve(&config, &stream, &[cut]);
                assert_eq!(seen, sent, "{name} {draft} cut at {cut}");
            }
            // One byte at a time, then read the echo with the client.
            let cuts: Vec<usize> = (1..stream.len()).collect();
            let (answer2, written, seen, _) = serve(&config, &stream, &cuts);
            assert_eq!(seen, sent, "{name} {draft} byte by byte");
            assert_eq!(answer2.len(), answer.len());
            conn.receive(&written);
            let mut echoed = Vec::new();
            while let Some(e) = conn.poll().unwrap() {
                match e {
                    Event::Message(m) => echoed.push(m),
                    Event::Close(f) => {
                        assert!(draft.has_close_frame() && (f.code == 1000 || f.code == 1005))
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(echoed, sent, "{name} {draft} echo");
            if !draft.has_close_frame() {
                conn.close(Some(1000), "done").unwrap();
            }
            assert_eq!(conn.state(), State::Closed, "{name} {draft}");
            assert!(conn.close_was_clean());
        }
    }
}

/// hybi-04: the server's random nonce sets the client's mask key, so a
/// client cannot pipeline frames behind its request. Handshake split at
/// every byte, then the frames split at every byte of their start.
fn hybi04_sequential(config: &Arc<Config>, name: &str) {
    let draft = Draft::Hybi04;
    let opts = || {
        let mut o = ClientOptions::new(draft, "localhost:9001", "/echo");
        o.origin = Some("http://localhost:9001".into());
        o
    };
    let request_len = ClientHandshake::new(config.clone(), opts())
        .unwrap()
        .request_bytes()
        .len();
    for cut in 1..request_len + 64 {
        let mut client = ClientHandshake::new(config.clone(), opts()).unwrap();
        let request = client.request_bytes().to_vec();
        let mut hs = ServerHandshake::new(config.clone());
        let at = cut.min(request.len());
        hs.feed(&request[..at]).unwrap();
        hs.feed(&request[at..]).unwrap();
        let done = hs.complete(&DefaultHooks, false).unwrap();
        let answer = done.response.clone();
        let server_key = done.session.hybi04_mask_key;
        let mut server = Connection::from_completed(config.clone(), done);
        let session = client.feed(&answer).unwrap().unwrap().session;
        assert_eq!(session.hybi04_mask_key, server_key);
        let mut conn = Connection::new(config.clone(), session);
        let sent = messages(draft);
        for m in &sent {
            conn.send(m).unwrap();
        }
        let frames = conn.take_output();
        let at = (cut - at).min(frames.len());
        let mut seen = Vec::new();
        for piece in [&frames[..at], &frames[at..]] {
            server.receive(piece);
            while let Some(Event::Message(m)) = server.poll().unwrap() {
                server.send(&m).unwrap();
                seen.push(m);
            }
        }
        assert_eq!(seen, sent, "{name} hybi-04 cut {cut}");
        conn.receive(&server.take_output());
        let mut echoed = Vec::new();
        while let Some(Event::Message(m)) = conn.poll().unwrap() {
            echoed.push(m);
        }
        assert_eq!(echoed, sent, "{name} hybi-04 echo");
    }
}
