//! Seed inputs: for every target, inputs that reach its success paths
//! (a valid request and answer per draft, real frames per framing, real
//! compressed traffic per extension), built with polysocket itself in the
//! layouts the harnesses read. A fuzzer starts from these instead of
//! having to discover, say, a hixie-76 request whose keys check out.
//!
//! `cargo test -p polysocket --test fuzz_regressions -- --ignored
//! write_seeds` writes them to `regressions/<target>/seed-*`; the
//! regression test replays them, and cargo-fuzz takes that directory as an
//! extra corpus. They contain random keys, so every run writes different
//! (equally valid) bytes.

use std::sync::Arc;

use bytes::BytesMut;

use polysocket::extensions::{Agreed, DeflateFrameParams, PerMessageDeflate, PmdParams};
use polysocket::framing::{Encoder, OpCode};
use polysocket::handshake::{ClientHandshake, ClientOptions, ServerHandshake};
use polysocket::protocol::MessageKind;
#[cfg(feature = "cluster")]
use polysocket::Message;
use polysocket::{Config, Connection, Draft, Role, Session};

/// One seed: the target it feeds, a file name, the input.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub data: Vec<u8>,
}

pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    request(&mut seeds);
    response(&mut seeds);
    frames(&mut seeds);
    connection(&mut seeds);
    extensions(&mut seeds);
    http(&mut seeds);
    #[cfg(feature = "cluster")]
    envelope(&mut seeds);
    #[cfg(feature = "runtime")]
    proxy(&mut seeds);
    seeds
}

fn index(draft: Draft) -> u8 {
    Draft::ALL.iter().position(|&d| d == draft).expect("listed") as u8
}

fn seed(seeds: &mut Vec<Seed>, target: &'static str, name: String, parts: &[&[u8]]) {
    seeds.push(Seed {
        target,
        name,
        data: parts.concat(),
    });
}

/// `Splitter` settings: whole reads, or one byte at a time.
const WHOLE: [u8; 3] = [0, 0, 0];
const BYTEWISE: [u8; 3] = [1, 0, 0];

fn client_request(draft: Draft) -> Vec<u8> {
    let mut opts = ClientOptions::new(draft, "example.com", "/chat?room=7");
    opts.subprotocols = vec!["chat".into(), "superchat".into()];
    let client = ClientHandshake::new(Arc::new(Config::default()), opts).expect("valid options");
    client.request_bytes().to_vec()
}

/// A text frame "hi" as `role` sends it on `draft`.
fn text_frame(draft: Draft, role: Role) -> Vec<u8> {
    let mut out = BytesMut::new();
    Encoder::new(draft, role, None).encode(OpCode::Text, true, 0, b"hi", &mut out);
    out.to_vec()
}

fn request(seeds: &mut Vec<Seed>) {
    for draft in Draft::ALL {
        let req = client_request(draft);
        let frame = text_frame(draft, Role::Client);
        // Default configuration; hooks: no refusal, the first offered
        // subprotocol, one extra header (`Server`); `complete`; whole reads.
        let hooks = [0x20, 2, 0];
        seed(
            seeds,
            "request",
            format!("seed-{draft}"),
            &[&[0], &hooks, &[0], &WHOLE, &req, &frame],
        );
        // Every strictness switch flipped; `accept`; bytewise reads.
        let strict = [1, 0xFF, 0x01];
        seed(
            seeds,
            "request",
            format!("seed-{draft}-strict"),
            &[&strict, &hooks, &[1], &BYTEWISE, &req],
        );
    }
}

fn response(seeds: &mut Vec<Seed>) {
    for draft in Draft::ALL {
        let frame = text_frame(draft, Role::Server);
        // Default client config; host and resource 0; no flags; offers
        // three subprotocols; answer mode; the server picks the second.
        let client = [index(draft), 0, 0, 0, 0, 2, 0];
        let server = [0, 2, 0];
        seed(
            seeds,
            "response",
            format!("seed-{draft}"),
            &[&client, &WHOLE, &server, &frame],
        );
        let secure = [index(draft), 0, 1, 1, 1, 1, 0];
        seed(
            seeds,
            "response",
            format!("seed-{draft}-secure"),
            &[&secure, &BYTEWISE, &server],
        );
    }
    // A raw hixie-75 answer can be valid: it has no challenge.
    let config = Arc::new(Config::default());
    let mut server = ServerHandshake::new(Arc::clone(&config));
    server
        .feed(&client_request(Draft::Hixie75))
        .expect("our request");
    let answer = server
        .accept(&Default::default())
        .expect("an answer")
        .response;
    let raw = [index(Draft::Hixie75), 0, 0, 0, 0, 0, 1];
    seed(
        seeds,
        "response",
        "seed-raw-hixie-75".into(),
        &[&raw, &WHOLE, &answer, b"\x00hi\xff"],
    );
}

/// What the peer of `role` sends: a text, a ping, a 300-byte binary in two
/// fragments, a 64 KiB + 1 binary (64-bit length) and a close.
fn peer_traffic(draft: Draft, role: Role, big: bool) -> Vec<u8> {
    let peer = match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut conn = Connection::new(Arc::new(Config::default()), Session::plain(peer, draft));
    conn.send_text("Hello").expect("open");
    if draft.has_binary() {
        conn.send_ping(b"ping").expect("open");
        conn.send_fragment(MessageKind::Binary, &[7; 150], false)
            .expect("open");
        conn.send_fragment(MessageKind::Binary, &[8; 150], true)
            .expect("open");
        if big {
            conn.send_binary(&vec![9; 65537]).expect("open");
        }
    }
    let _ = conn.close(Some(1000), "bye");
    conn.take_output().to_vec()
}

fn frames(seeds: &mut Vec<Seed>) {
    for draft in Draft::ALL {
        for role in [Role::Server, Role::Client] {
            let r = u8::from(role == Role::Client);
            // Default strictness; decode mode, max_frame_size 1 MiB, no key.
            let head = [index(draft), r, 0, 0, 0, 0, 0];
            let wire = peer_traffic(draft, role, false);
            let name = format!("seed-{draft}-{role:?}");
            seed(seeds, "frames", name, &[&head, &BYTEWISE, &wire]);
        }
        // Round trip: text, ping, 300-byte binary with RSV1, close.
        let head = [index(draft), 0, 0, 0, 1, 0];
        let frames: &[&[u8]] = &[
            &[0x00, 5],
            b"Hello",
            &[0x03, 2],
            b"hi",
            &[0x41, 254, 1, 2, 3],
            &[0x05, 0],
        ];
        let mut parts: Vec<&[u8]> = vec![&head, &[2, 1, 0]];
        parts.extend_from_slice(frames);
        seed(seeds, "frames", format!("seed-{draft}-round-trip"), &parts);
    }
}

/// The extensions the `connection` target can put in force, as its input
/// encodes them, with their `Agreed` values.
fn connection_extensions() -> Vec<(&'static str, Vec<u8>, Agreed)> {
    vec![
        ("none", vec![0], Agreed::None),
        (
            "pmd",
            vec![1, 0, 7, 7],
            Agreed::PerMessageDeflate(PmdParams {
                server_no_context_takeover: false,
                client_no_context_takeover: false,
                server_max_window_bits: 15,
                client_max_window_bits: 15,
            }),
        ),
        (
            "pmd-nct-8",
            vec![1, 3, 0, 1],
            Agreed::PerMessageDeflate(PmdParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 8,
                client_max_window_bits: 9,
            }),
        ),
        (
            "deflate-frame",
            vec![2, 4, 7, 7],
            Agreed::DeflateFrame(DeflateFrameParams {
                webkit_name: true,
                server_max_window_bits: 15,
                server_no_context_takeover: false,
                client_max_window_bits: 15,
                client_no_context_takeover: false,
            }),
        ),
        ("deflate-stream", vec![3], Agreed::DeflateStream),
    ]
}

fn connection(seeds: &mut Vec<Seed>) {
    let drafts = [
        Draft::Rfc6455,
        Draft::Hybi07,
        Draft::Hybi04,
        Draft::Hybi02,
        Draft::Hixie76,
    ];
    for (name, encoded, agreed) in connection_extensions() {
        for draft in drafts {
            if agreed != Agreed::None && !draft.has_extensions() {
                continue;
            }
            for role in [Role::Server, Role::Client] {
                let session = Session {
                    extensions: agreed,
                    ..Session::plain(role, draft)
                };
                let peer = Session {
                    role: match role {
                        Role::Server => Role::Client,
                        Role::Client => Role::Server,
                    },
                    ..session.clone()
                };
                let mut conn = Connection::new(Arc::new(Config::default()), peer);
                conn.send_text("Hello, Hello, Hello").expect("open");
                if draft.has_binary() {
                    conn.send_ping(b"are you there").expect("open");
                    conn.send_binary(&[0x55; 200]).expect("open");
                }
                let _ = conn.close(Some(1001), "going away");
                let wire = conn.take_output();
                let r = u8::from(role == Role::Client);
                // No hybi-04 key; limits 1 MiB; defaults otherwise; the
                // PRNG seed 1 sends a little in between.
                let config = [0, 7, 7, 7, 0, 0, 0, 0, 0];
                let rng = [1, 0, 0, 0, 0, 0, 0, 0];
                let head = [&[index(draft), r][..], &encoded, &config, &rng].concat();
                let name = format!("seed-{name}-{draft}-{role:?}");
                seed(seeds, "connection", name, &[&head, &[3, 5, 0], &wire]);
            }
        }
    }
}

fn extensions(seeds: &mut Vec<Seed>) {
    let offers = "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
                  x-webkit-deflate-frame; max_window_bits=9\ndeflate-stream";
    for draft in [Draft::Rfc6455, Draft::Hybi07, Draft::Hybi04] {
        seed(
            seeds,
            "extensions",
            format!("seed-offer-{draft}"),
            &[&[0, index(draft), 0], offers.as_bytes()],
        );
    }
    let answer = "permessage-deflate; server_no_context_takeover; client_max_window_bits=12";
    seed(
        seeds,
        "extensions",
        "seed-answer".into(),
        &[&[1, 9, 0], answer.as_bytes()],
    );
    let answer = "x-webkit-deflate-frame; max_window_bits=10; no_context_takeover";
    seed(
        seeds,
        "extensions",
        "seed-answer-frame".into(),
        &[&[1, 9, 0], answer.as_bytes()],
    );

    // A real permessage-deflate message after two others it refers back to.
    let params = PmdParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let mut server = PerMessageDeflate::new(&params, Role::Server, 6);
    let mut wire = BytesMut::new();
    for msg in [&b"Hello"[..], b"Hello"] {
        server.compress(msg, &mut BytesMut::new());
    }
    server.compress(b"Hello, Hello, Hello", &mut wire);
    // permessage-deflate 15/15, received by a client, limit 4096, whole.
    let head = [2, 0, 7, 7, 1, 3];
    seed(
        seeds,
        "extensions",
        "seed-inflate-pmd".into(),
        &[&head, &WHOLE, &wire],
    );

    let text: &[u8] = b"Hello\xffHello, Hello\xff*\x10a\xff\xffthe end";
    for (name, agreed) in [
        ("pmd", [0, 7, 7]),
        ("pmd-8", [12, 0, 0]),
        ("frame", [1, 1, 2]),
        ("stream", [2, 0, 0]),
    ] {
        let head = [&[3][..], &agreed, &[0, 6], &BYTEWISE].concat();
        seed(
            seeds,
            "extensions",
            format!("seed-round-trip-{name}"),
            &[&head, text],
        );
    }
}

/// Every draft's request and the server's answer to it, as heads for the
/// parsers, with the default limits and whatever follows the head.
fn http(seeds: &mut Vec<Seed>) {
    let config = Arc::new(Config::default());
    for draft in Draft::ALL {
        let request = client_request(draft);
        let mut server = ServerHandshake::new(Arc::clone(&config));
        server.feed(&request).expect("our request");
        let answer = server.accept(&Default::default()).expect("an answer");
        let head = [0, 0, 0, 0, 0];
        seed(
            seeds,
            "http",
            format!("seed-{draft}-request"),
            &[&head, &request],
        );
        let head = [1, 0, 0, 0, 0];
        let name = format!("seed-{draft}-response");
        seed(seeds, "http", name, &[&head, &answer.response]);
    }
    // Repeated, folded-case and listed headers, and a Latin-1 value.
    let head = [0, 0, 0, 7, 0];
    let request = b"GET /x HTTP/1.1\r\nHost: a\r\nconnection: keep-alive, Upgrade\r\n\
        CONNECTION: ,x ,\r\nX: \xe9t\xe9\r\nSec-WebSocket-Key: a\r\nsec-websocket-key: b\r\n\r\n";
    seed(seeds, "http", "seed-lists".into(), &[&head, request]);
}

/// One envelope of every kind, decoded from its bytes; and one round trip
/// of every kind.
#[cfg(feature = "cluster")]
fn envelope(seeds: &mut Vec<Seed>) {
    use polysocket::runtime::cluster::envelope::{Body, Envelope, Heartbeat};
    let text = Message::Text(bytes::Bytes::from_static("h\u{e9}llo".as_bytes()));
    let binary = Message::Binary(bytes::Bytes::from_static(b"\x00\xff"));
    let heartbeat = Heartbeat {
        incarnation: 7,
        expiry_ms: 15_000,
        connections: 3,
        groups: vec![("room".into(), 2), ("".into(), 1)],
    };
    let bodies = [
        ("broadcast", Body::Broadcast(text.clone())),
        ("group", Body::Group("room".into(), binary.clone())),
        ("send", Body::Send(1 << 40 | 5, text)),
        ("ping", Body::Ping(9, bytes::Bytes::from_static(b"p"))),
        ("pong", Body::Pong(9, bytes::Bytes::new())),
        ("close", Body::Close(9, Some(1000), "bye".into())),
        ("close-no-code", Body::Close(9, None, String::new())),
        ("heartbeat", Body::Heartbeat(heartbeat)),
        ("leave", Body::Leave(7)),
    ];
    for (name, body) in bodies {
        let wire = Envelope { origin: 42, body }.encode();
        seed(seeds, "envelope", format!("seed-{name}"), &[&[0], &wire]);
    }
    for kind in 0..8u8 {
        // Round trip, rng seed, origin, id, kind, then the kind's fields.
        let fields = [0x42u8; 40];
        let name = format!("seed-round-trip-{kind}");
        seed(
            seeds,
            "envelope",
            name,
            &[&[1], &[5; 8], &[1; 4], &[2; 8], &[kind, 8], &fields],
        );
    }
}

/// PROXY headers as a proxy sends them (v1, v2 with a TLV, a LOCAL health
/// check), each header mode, and chains of both header spellings.
#[cfg(feature = "runtime")]
fn proxy(seeds: &mut Vec<Seed>) {
    let v1 = b"PROXY TCP4 192.0.2.1 10.0.0.1 56324 443\r\n";
    seed(seeds, "proxy", "seed-v1".into(), &[&[0], v1]);
    let v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x27\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x05\
        \0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x1f\x90\x01\xbb\x04\x00\x00";
    seed(seeds, "proxy", "seed-v2-tlv".into(), &[&[0], v2]);
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    seed(seeds, "proxy", "seed-v2-local".into(), &[&[0], local]);
    for (name, mode) in [("v1", 0u8), ("v2", 1)] {
        // Header mode: IPv6?, LOCAL?, family, addresses, ports, version.
        let addresses = [0x20u8, 0x01, 0x0d, 0xb8, 7, 7, 7, 7, 1, 2, 3, 4, 5, 6, 7, 8];
        let parts: [&[u8]; 7] = [
            &[1, 1, 0, 1],
            &addresses,
            &[0x50, 0],
            &addresses,
            &[1, 2],
            &[mode],
            &[2, 0, 0],
        ];
        seed(seeds, "proxy", format!("seed-header-{name}"), &parts);
    }
    // Rng seeds (all bytes 0, all 4) whose first draw picks the spelling.
    for (name, spelling) in [("x-forwarded-for", 0u8), ("forwarded", 4)] {
        // Chain mode: every net, peer 127.0.0.1, four hops, rng seed.
        let hops = [5u8, 3, 7, 2, 1, 4, 6];
        seed(
            seeds,
            "proxy",
            format!("seed-chain-{name}"),
            &[&[2, 0x0f, 0, 0, 0, 4], &hops, &[spelling; 8]],
        );
    }
}
