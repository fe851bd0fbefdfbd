//! Engine against engine: a client-role Connection talks to a server-role
//! Connection for every draft, with the wire split at every byte boundary.
#![allow(clippy::field_reassign_with_default)] // tests tweak one limit at a time

use std::sync::Arc;

use bytes::Bytes;
use polysocket::protocol::{CloseFrame, MessageKind, Polled, State};
use polysocket::{
    Config, Connection, Draft, Event, Message, PreparedMessage, ProtocolError, Role, Session,
};

const HYBI04_KEY: [u8; 20] = [0x5a; 20];

fn session(role: Role, draft: Draft) -> Session {
    let mut s = Session::plain(role, draft);
    if draft == Draft::Hybi04 {
        s.hybi04_mask_key = Some(HYBI04_KEY);
    }
    s
}

fn pair_with(draft: Draft, config: Config) -> (Connection, Connection) {
    let config = Arc::new(config);
    (
        Connection::new(config.clone(), session(Role::Client, draft)),
        Connection::new(config, session(Role::Server, draft)),
    )
}

fn pair(draft: Draft) -> (Connection, Connection) {
    pair_with(draft, Config::default())
}

/// Deliver `wire` to `to` in pieces of `split` bytes, collecting events.
fn deliver(to: &mut Connection, wire: &[u8], split: usize) -> Result<Vec<Event>, ProtocolError> {
    let mut events = Vec::new();
    for piece in wire.chunks(split.max(1)) {
        to.receive(piece);
        while let Some(e) = to.poll()? {
            events.push(e);
        }
    }
    Ok(events)
}

/// Deliver `wire` split in two at `at`.
fn deliver_split_at(to: &mut Connection, wire: &[u8], at: usize) -> Vec<Event> {
    let mut events = Vec::new();
    for piece in [&wire[..at], &wire[at..]] {
        to.receive(piece);
        while let Some(e) = to.poll().expect("no protocol error") {
            events.push(e);
        }
    }
    events
}

/// What every draft can exchange, plus what the richer ones add.
fn script(conn: &mut Connection) -> Vec<Event> {
    let draft = conn.draft();
    let mut expect = Vec::new();
    conn.send_text("Hello").unwrap();
    expect.push(Event::Message(Message::text("Hello")));
    conn.send_text("").unwrap();
    expect.push(Event::Message(Message::text("")));
    conn.send_text("κόσμε ✓ \u{10FFFF}").unwrap();
    expect.push(Event::Message(Message::text("κόσμε ✓ \u{10FFFF}")));
    if draft.has_binary() {
        conn.send_binary(&[0, 1, 2, 0xFF, 0x00]).unwrap();
        expect.push(Event::Message(Message::binary(vec![0, 1, 2, 0xFF, 0x00])));
        conn.send_ping(b"pi").unwrap();
        expect.push(Event::Ping(Bytes::from_static(b"pi")));
        conn.send_fragment(MessageKind::Text, "Hel".as_bytes(), false)
            .unwrap();
        conn.send_pong(b"beat").unwrap();
        expect.push(Event::Pong(Bytes::from_static(b"beat")));
        // A code point split across fragments.
        conn.send_fragment(MessageKind::Text, &"lo ✓".as_bytes()[..4], false)
            .unwrap();
        conn.send_fragment(MessageKind::Text, &"lo ✓".as_bytes()[4..], true)
            .unwrap();
        expect.push(Event::Message(Message::text("Hello ✓")));
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        conn.send_binary(&big).unwrap();
        expect.push(Event::Message(Message::binary(big)));
    }
    expect
}

#[test]
fn every_draft_both_directions_split_at_every_boundary() {
    for draft in Draft::ALL {
        for sender_role in [Role::Client, Role::Server] {
            let (mut client, mut server) = pair(draft);
            let (tx, rx) = match sender_role {
                Role::Client => (&mut client, &mut server),
                Role::Server => (&mut server, &mut client),
            };
            let expect = script(tx);
            let wire = tx.take_output();
            // Whole, byte by byte, and odd sizes.
            for split in [wire.len(), 1, 7, 997] {
                let (mut c2, mut s2) = pair(draft);
                let rx2 = if sender_role == Role::Client {
                    &mut s2
                } else {
                    &mut c2
                };
                assert_eq!(
                    deliver(rx2, &wire, split).unwrap(),
                    expect,
                    "{draft} {sender_role:?} split {split}"
                );
            }
            // Split in two at every boundary of the small-message prefix.
            let limit = wire.len().min(200);
            for at in 0..=limit {
                let (mut c2, mut s2) = pair(draft);
                let rx2 = if sender_role == Role::Client {
                    &mut s2
                } else {
                    &mut c2
                };
                assert_eq!(
                    deliver_split_at(rx2, &wire, at),
                    expect,
                    "{draft} {sender_role:?} at {at}"
                );
            }
            let _ = rx;
        }
    }
}

#[test]
fn auto_pong_answers_with_the_same_payload() {
    for draft in Draft::ALL.into_iter().filter(|d| d.has_ping()) {
        let (mut client, mut server) = pair(draft);
        client.send_ping(b"are you there").unwrap();
        let wire = client.take_output();
        let events = deliver(&mut server, &wire, wire.len()).unwrap();
        assert_eq!(
            events,
            vec![Event::Ping(Bytes::from_static(b"are you there"))]
        );
        let pong = server.take_output();
        let events = deliver(&mut client, &pong, 1).unwrap();
        assert_eq!(
            events,
            vec![Event::Pong(Bytes::from_static(b"are you there"))]
        );
    }
}

#[test]
fn close_handshake_every_draft() {
    for draft in Draft::ALL {
        for initiator in [Role::Client, Role::Server] {
            let (mut client, mut server) = pair(draft);
            let (a, b) = match initiator {
                Role::Client => (&mut client, &mut server),
                Role::Server => (&mut server, &mut client),
            };
            a.close(Some(1000), "bye").unwrap();
            if !draft.has_close_frame() {
                // hixie-75: closing TCP is the close; the peer sees EOF.
                assert_eq!(a.state(), State::Closed);
                assert!(a.close_was_clean());
                assert_eq!(
                    b.receive_eof(),
                    Some(Event::Close(CloseFrame {
                        code: 1005,
                        reason: String::new()
                    }))
                );
                continue;
            }
            assert_eq!(a.state(), State::Closing);
            assert!(a.send_text("late").is_err());
            let wire = a.take_output();
            let events = deliver(b, &wire, 1).unwrap();
            let expected = match draft.close_body() {
                polysocket::draft::CloseBody::Coded | polysocket::draft::CloseBody::Rfc6455 => {
                    CloseFrame {
                        code: 1000,
                        reason: "bye".into(),
                    }
                }
                _ => CloseFrame {
                    code: 1005,
                    reason: String::new(),
                },
            };
            assert_eq!(events, vec![Event::Close(expected.clone())], "{draft}");
            assert_eq!(b.state(), State::Closed);
            // b answered; a completes the handshake.
            let reply = b.take_output();
            assert!(!reply.is_empty(), "{draft}: close must be answered");
            let events = deliver(a, &reply, reply.len()).unwrap();
            assert!(
                matches!(events.as_slice(), [Event::Close(_)]),
                "{draft}: {events:?}"
            );
            assert_eq!(a.state(), State::Closed);
            assert!(a.close_was_clean() && b.close_was_clean());
            // Nothing more is accepted or produced.
            assert_eq!(a.receive_eof(), None);
        }
    }
}

#[test]
fn close_code_is_echoed_and_data_after_close_is_ignored() {
    let (mut client, mut server) = pair(Draft::Rfc6455);
    client.close(Some(4000), "private").unwrap();
    let mut wire = client.take_output().to_vec();
    // Data after the close frame must be ignored, not fail the connection.
    let (mut c2, _) = pair(Draft::Rfc6455);
    c2.send_text("after").unwrap();
    wire.extend_from_slice(&c2.take_output());
    let events = deliver(&mut server, &wire, wire.len()).unwrap();
    assert_eq!(
        events,
        vec![Event::Close(CloseFrame {
            code: 4000,
            reason: "private".into()
        })]
    );
    assert_eq!(&server.take_output()[..], b"\x88\x02\x0f\xa0");
}

/// Feed raw client bytes (masked by a client engine or written by hand)
/// to an RFC 6455 server; return the error and the close frame it queued.
fn violation(wire: &[u8], config: Config) -> (ProtocolError, Vec<u8>) {
    let (_, mut server) = pair_with(Draft::Rfc6455, config);
    let err = deliver(&mut server, wire, wire.len()).unwrap_err();
    assert_eq!(server.state(), State::Closed);
    (err, server.take_output().to_vec())
}

fn close_code(frame: &[u8]) -> u16 {
    assert_eq!(frame[0], 0x88, "a close frame: {frame:x?}");
    u16::from_be_bytes([frame[2], frame[3]])
}

/// A masked client frame built by hand (key 0: payload stays readable).
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![b0, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(payload);
    f
}

#[test]
fn violations_close_with_the_right_code() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (frame(0xC1, b"x"), 1002), // RSV1 without extension
        (frame(0x83, b""), 1002),  // reserved opcode
        (frame(0x80, b"x"), 1002), // continuation, nothing started
        ([frame(0x01, b"a"), frame(0x81, b"b")].concat(), 1002), // new text mid-message
        (frame(0x09, b""), 1002),  // fragmented ping
        (frame(0x81, &[0xCE, 0xBA, 0xED, 0xA0, 0x80]), 1007), // surrogate
        (frame(0x88, &[0x03]), 1002), // 1-byte close
        (frame(0x88, &[0x03, 0xEC]), 1002), // 1004 reserved in RFC 6455
        (frame(0x88, &[0x03, 0xE8, 0xFF]), 1007), // invalid reason
        (vec![0x81, 0x05, b'H', b'e', b'l', b'l', b'o'], 1002), // unmasked client frame
    ];
    for (wire, code) in cases {
        let (err, out) = violation(&wire, Config::default());
        assert_eq!(err.close_code(), code, "{err}");
        assert_eq!(close_code(&out), code, "{err}");
    }
}

#[test]
fn invalid_utf8_fails_fast_mid_frame_and_mid_message() {
    // First fragment invalid: fail before the rest of the message arrives.
    let (_, mut server) = pair(Draft::Rfc6455);
    server.receive(&frame(0x01, &[b'a', 0xF4, 0x90]));
    assert_eq!(server.poll(), Err(ProtocolError::InvalidUtf8));
    // Invalid bytes early in a long frame: fail with most of it unsent.
    let (mut client, mut server) = pair(Draft::Rfc6455);
    let mut payload = vec![b'a'; 65536];
    payload[10] = 0xFF;
    client.send_binary(&payload).unwrap(); // binary engine bypasses text checks
    let mut wire = client.take_output().to_vec();
    let header_len = 2 + 8 + 4;
    wire[0] = 0x81; // turn it into a text frame
    server.receive(&wire[..header_len + 100]);
    assert_eq!(server.poll(), Err(ProtocolError::InvalidUtf8));
    assert_eq!(close_code(&server.take_output()), 1007);
}

#[test]
fn message_and_frame_limits_close_with_1009() {
    let mut config = Config::default();
    config.max_message_size = 1000;
    let (mut client, _) = pair(Draft::Rfc6455);
    client
        .send_fragment(MessageKind::Binary, &[0; 600], false)
        .unwrap();
    client
        .send_fragment(MessageKind::Binary, &[0; 600], true)
        .unwrap();
    let (err, out) = violation(&client.take_output(), config.clone());
    assert_eq!(err, ProtocolError::MessageTooLarge(1000));
    assert_eq!(close_code(&out), 1009);
    // At the limit is fine.
    let (mut client, mut server) = pair_with(Draft::Rfc6455, config.clone());
    client.send_binary(&[7; 1000]).unwrap();
    assert_eq!(
        deliver(&mut server, &client.take_output(), 100)
            .unwrap()
            .len(),
        1
    );
    // A frame header announcing too much fails before the payload arrives.
    config.max_frame_size = 500;
    let (mut client, _) = pair(Draft::Rfc6455);
    client.send_binary(&[0; 501]).unwrap();
    let wire = client.take_output();
    let (err, out) = violation(&wire[..8], config);
    assert_eq!(err, ProtocolError::FrameTooLarge(500));
    assert_eq!(close_code(&out), 1009);
}

#[test]
fn failure_reason_can_be_chosen_and_is_cut_to_fit() {
    let mut config = Config::default();
    config.max_message_size = 10;
    let (mut client, mut server) = pair_with(Draft::Rfc6455, config);
    server.set_failure_reason(|e| match e {
        ProtocolError::MessageTooLarge(_) => "message too big".into(),
        _ => "x".repeat(200),
    });
    client.send_binary(&[0; 11]).unwrap();
    server.receive(&client.take_output());
    assert_eq!(server.poll(), Err(ProtocolError::MessageTooLarge(10)));
    let out = server.take_output();
    assert_eq!(close_code(&out), 1009);
    assert_eq!(&out[4..], b"message too big");
    // A reason longer than a close frame carries is cut to 123 bytes.
    let (_, mut server) = pair(Draft::Rfc6455);
    server.set_failure_reason(|_| "é".repeat(100));
    server.receive(&frame(0x83, b"")); // reserved opcode
    assert!(server.poll().is_err());
    let out = server.take_output();
    assert_eq!(out.len(), 2 + 2 + 122, "{out:x?}");
}

#[test]
fn hixie_limits_and_utf8_policy() {
    let mut config = Config::default();
    config.max_message_size = 10;
    let (_, mut server) = pair_with(Draft::Hixie76, config);
    server.receive(b"\x00hello world!\xff");
    assert_eq!(server.poll(), Err(ProtocolError::MessageTooLarge(10)));
    assert_eq!(&server.take_output()[..], b"\xff\x00");

    // Strict by default: invalid text fails.
    let (_, mut server) = pair(Draft::Hixie76);
    server.receive(b"\x00a\xc0\x80b\xff");
    assert_eq!(server.poll(), Err(ProtocolError::InvalidUtf8));
    // Lenient: replaced, as the drafts of that era did.
    let mut config = Config::default();
    config.strict.old_drafts_fail_invalid_utf8 = false;
    let (_, mut server) = pair_with(Draft::Hixie76, config);
    server.receive(b"\x00a\xc0\x80b\xff");
    assert_eq!(
        server.poll().unwrap(),
        Some(Event::Message(Message::text("a\u{FFFD}\u{FFFD}b")))
    );
}

#[test]
fn sending_rules() {
    let (mut client, _) = pair(Draft::Hixie76);
    assert!(client.send_binary(b"x").is_err());
    assert!(client.send_ping(b"x").is_err());
    let (mut client, _) = pair(Draft::Rfc6455);
    assert!(client.send_ping(&[0; 126]).is_err());
    assert!(client.close(Some(1005), "").is_err());
    client
        .send_fragment(MessageKind::Text, b"a", false)
        .unwrap();
    assert!(client.send_text("b").is_err());
    assert!(client
        .send_fragment(MessageKind::Binary, b"b", true)
        .is_err());
    client.send_ping(b"ok between fragments").unwrap();
    client.send_fragment(MessageKind::Text, b"b", true).unwrap();
    client.send_text("c").unwrap();
}

#[test]
fn prepared_message_reaches_every_draft() {
    let text = PreparedMessage::new(Message::text("broadcast"));
    let bin = PreparedMessage::new(Message::binary(vec![1, 2, 3]));
    for draft in Draft::ALL {
        let (mut client, mut server) = pair(draft);
        server.send_prepared(&text).unwrap();
        if draft.has_binary() {
            server.send_prepared(&bin).unwrap();
        } else {
            assert!(server.send_prepared(&bin).is_err());
        }
        let events = deliver(&mut client, &server.take_output(), 3).unwrap();
        assert_eq!(
            events[0],
            Event::Message(Message::text("broadcast")),
            "{draft}"
        );
        assert_eq!(events.len(), if draft.has_binary() { 2 } else { 1 });
        // The client side re-masks.
        client.send_prepared(&text).unwrap();
        let events = deliver(&mut server, &client.take_output(), 5).unwrap();
        assert_eq!(
            events,
            vec![Event::Message(Message::text("broadcast"))],
            "{draft}"
        );
    }
}

#[test]
fn eof_without_close_is_abnormal() {
    let (_, mut server) = pair(Draft::Rfc6455);
    assert_eq!(
        server.receive_eof(),
        Some(Event::Close(CloseFrame {
            code: 1006,
            reason: String::new()
        }))
    );
    assert!(!server.close_was_clean());
}

mod compression {
    use super::*;
    use polysocket::extensions::{Agreed, DeflateFrameParams, PmdParams};

    fn pmd(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> Agreed {
        Agreed::PerMessageDeflate(PmdParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        })
    }

    fn deflate_frame() -> Agreed {
        Agreed::DeflateFrame(DeflateFrameParams {
            webkit_name: true,
            server_max_window_bits: 15,
            server_no_context_takeover: false,
            client_max_window_bits: 15,
            client_no_context_takeover: false,
        })
    }

    fn pair_ext(draft: Draft, agreed: Agreed, config: Config) -> (Connection, Connection) {
        let config = Arc::new(config);
        let mut c = session(Role::Client, draft);
        let mut s = session(Role::Server, draft);
        c.extensions = agreed;
        s.extensions = agreed;
        (
            Connection::new(config.clone(), c),
            Connection::new(config, s),
        )
    }

    fn cases() -> Vec<(Draft, Agreed)> {
        let mut v = Vec::new();
        for draft in [Draft::Hybi07, Draft::Hybi08, Draft::Rfc6455] {
            v.push((draft, pmd(false, false, 15, 15)));
            v.push((draft, pmd(true, true, 8, 9)));
            v.push((draft, pmd(false, true, 10, 12)));
            v.push((draft, deflate_frame()));
        }
        for draft in [
            Draft::Hybi04,
            Draft::Hybi05,
            Draft::Hybi06,
            Draft::Hybi07,
            Draft::Hybi08,
        ] {
            v.push((draft, Agreed::DeflateStream));
            v.push((draft, deflate_frame()));
        }
        v
    }

    #[test]
    fn every_extension_both_directions_any_split() {
        for (draft, agreed) in cases() {
            for sender in [Role::Client, Role::Server] {
                let (mut c, mut s) = pair_ext(draft, agreed, Config::default());
                let tx = if sender == Role::Client {
                    &mut c
                } else {
                    &mut s
                };
                let mut expect = script(tx);
                // Repeat to exercise context takeover across messages.
                expect.extend(script(tx));
                let wire = tx.take_output();
                for split in [wire.len(), 1, 13, 997] {
                    let (mut c2, mut s2) = pair_ext(draft, agreed, Config::default());
                    let rx = if sender == Role::Client {
                        &mut s2
                    } else {
                        &mut c2
                    };
                    let got = deliver(rx, &wire, split).unwrap();
                    assert_eq!(got, expect, "{draft} {agreed:?} {sender:?} split {split}");
                }
            }
        }
    }

    #[test]
    fn compressed_frames_are_smaller_and_marked() {
        let (mut c, _) = pair_ext(Draft::Rfc6455, pmd(false, false, 15, 15), Config::default());
        let text = "compressible ".repeat(1000);
        c.send_text(&text).unwrap();
        let wire = c.take_output();
        assert_eq!(wire[0], 0xC1, "FIN + RSV1 + text");
        assert!(wire.len() < text.len() / 10, "{} bytes", wire.len());
    }

    #[test]
    fn threshold_leaves_small_messages_uncompressed() {
        let mut config = Config::default();
        config.extensions.compression_threshold = 100;
        let (mut c, mut s) = pair_ext(Draft::Rfc6455, pmd(false, false, 15, 15), config);
        c.send_text("short").unwrap();
        c.send_text(&"long ".repeat(100)).unwrap();
        let wire = c.take_output();
        assert_eq!(wire[0], 0x81, "below the threshold: no RSV1");
        let events = deliver(&mut s, &wire, 5).unwrap();
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn decompression_bomb_closes_with_1009() {
        let mut config = Config::default();
        config.max_decompressed_size = 1 << 20;
        let (mut c, _) = pair_ext(Draft::Rfc6455, pmd(false, false, 15, 15), Config::default());
        c.send_binary(&vec![0u8; 16 << 20]).unwrap();
        let wire = c.take_output();
        assert!(wire.len() < 100_000);
        let (_, mut s) = pair_ext(Draft::Rfc6455, pmd(false, false, 15, 15), config);
        let err = deliver(&mut s, &wire, wire.len()).unwrap_err();
        assert_eq!(err, ProtocolError::DecompressedTooLarge(1 << 20));
        assert_eq!(close_code(&s.take_output()), 1009);
    }

    #[test]
    fn rsv1_rules_under_permessage_deflate() {
        // RSV1 on a continuation frame, and on a control frame: 1002.
        for wire in [
            [frame(0x41, b"\xf2\x48"), frame(0xC0, b"\xcd")].concat(),
            frame(0xC9, b""),
        ] {
            let (_, mut s) = pair_ext(Draft::Rfc6455, pmd(false, false, 15, 15), Config::default());
            let err = deliver(&mut s, &wire, wire.len()).unwrap_err();
            assert_eq!(err, ProtocolError::ReservedBits);
            assert_eq!(close_code(&s.take_output()), 1002);
        }
        // RFC 7692 §7.2.3.1: "Hello" compressed in two fragments.
        let wire = [
            frame(0x41, b"\xf2\x48\xcd"),
            frame(0x80, b"\xc9\xc9\x07\x00"),
        ]
        .concat();
        let (_, mut s) = pair_ext(Draft::Rfc6455, pmd(false, false, 15, 15), Config::default());
        assert_eq!(
            deliver(&mut s, &wire, 1).unwrap(),
            vec![Event::Message(Message::text("Hello"))]
        );
        // Invalid UTF-8 after inflation: 1007.
        let (mut c, _) = pair_ext(Draft::Rfc6455, pmd(false, false, 15, 15), Config::default());
        c.send_binary(&[b'a', 0xFF, b'b']).unwrap();
        let mut wire = c.take_output().to_vec();
        wire[0] = 0xC1;
        let (_, mut s) = pair_ext(Draft::Rfc6455, pmd(false, false, 15, 15), Config::default());
        assert_eq!(
            deliver(&mut s, &wire, wire.len()).unwrap_err(),
            ProtocolError::InvalidUtf8
        );
    }
}

#[test]
fn auto_pong_can_be_turned_off() {
    let mut config = Config::default();
    config.auto_pong = false;
    let (mut client, mut server) = pair_with(Draft::Rfc6455, config);
    client.send_ping(b"manual").unwrap();
    let events = deliver(&mut server, &client.take_output(), 1).unwrap();
    assert_eq!(events, vec![Event::Ping(Bytes::from_static(b"manual"))]);
    assert!(!server.has_output(), "no automatic pong");
    server.send_pong(b"manual").unwrap();
    let events = deliver(&mut client, &server.take_output(), 1).unwrap();
    assert_eq!(events, vec![Event::Pong(Bytes::from_static(b"manual"))]);
}

#[test]
fn no_pong_after_our_close() {
    let (mut client, mut server) = pair(Draft::Rfc6455);
    server.close(Some(1001), "going away").unwrap();
    let _ = server.take_output();
    client.send_ping(b"late").unwrap();
    let events = deliver(&mut server, &client.take_output(), 3).unwrap();
    assert_eq!(events, vec![Event::Ping(Bytes::from_static(b"late"))]);
    assert!(!server.has_output(), "nothing may follow a close frame");
}

#[test]
fn extensions_are_ignored_on_drafts_that_cannot_have_them() {
    use polysocket::extensions::Agreed;
    for draft in [Draft::Hixie75, Draft::Hixie76, Draft::Hybi01, Draft::Hybi02] {
        let config = Arc::new(Config::default());
        let mut c = session(Role::Client, draft);
        c.extensions = Agreed::DeflateStream;
        let mut client = Connection::new(config.clone(), c);
        let mut server = Connection::new(config, session(Role::Server, draft));
        client.send_text("plain").unwrap();
        let events = deliver(&mut server, &client.take_output(), 1).unwrap();
        assert_eq!(
            events,
            vec![Event::Message(Message::text("plain"))],
            "{draft}"
        );
    }
}

/// Large messages travel without being copied into the output buffer
/// (sent whole from their own `Bytes`) and are held whole in the receive
/// buffer while they arrive; the bytes on the wire and the events must be
/// exactly those of the small-message paths, for every draft, however the
/// output is drained and the input split.
#[test]
fn large_messages_shared_on_send_and_held_on_receive() {
    let big: Bytes = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let big_text = Bytes::from("ü".repeat(50_000));
    for draft in Draft::ALL {
        for role in [Role::Server, Role::Client] {
            let config = Arc::new(Config::default());
            let peer_role = match role {
                Role::Server => Role::Client,
                Role::Client => Role::Server,
            };
            let mut tx = Connection::new(config.clone(), session(role, draft));
            tx.send_text("before").unwrap();
            let mut expected = vec![Message::text("before")];
            if draft.has_binary() {
                tx.send(&Message::Binary(big.clone())).unwrap();
                tx.send_ping(b"p").unwrap();
                expected.push(Message::Binary(big.clone()));
            }
            tx.send(&Message::Text(big_text.clone())).unwrap();
            expected.push(Message::Text(big_text.clone()));
            if draft.has_binary() {
                let prepared = PreparedMessage::new(Message::Binary(big.clone()));
                tx.send_prepared(&prepared).unwrap();
                expected.push(Message::Binary(big.clone()));
            }
            tx.send_text("after").unwrap();
            expected.push(Message::text("after"));
            if role == Role::Server && draft.has_binary() {
                // Server frames are unmasked: the big payloads are not copied.
                let mut slices = [std::io::IoSlice::new(&[]); 8];
                assert!(tx.output_slices(&mut slices) >= 4, "{draft}");
            }
            // Drain through vectored slices, a few bytes at a time.
            let mut wire = Vec::new();
            loop {
                let mut slices = [std::io::IoSlice::new(&[]); 4];
                let n = tx.output_slices(&mut slices);
                if n == 0 {
                    break;
                }
                let step: usize = (slices[..n].iter().map(|s| s.len()).sum::<usize>()).min(70_001);
                let mut taken = 0;
                for s in &slices[..n] {
                    let t = s.len().min(step - taken);
                    wire.extend_from_slice(&s[..t]);
                    taken += t;
                }
                tx.advance_output(step);
            }
            assert!(!tx.has_output());
            for split in [1_000, 65_536, 300_011] {
                let mut rx = Connection::new(config.clone(), session(peer_role, draft));
                let mut got = Vec::new();
                for piece in wire.chunks(split) {
                    // An I/O layer may read what is awaited straight in.
                    let awaited = rx.awaited_bytes();
                    assert!(awaited <= big.len() + 14, "{draft} awaited {awaited}");
                    rx.receive(piece);
                    while let Some(e) = rx.poll().expect("no protocol error") {
                        if let Event::Message(m) = e {
                            got.push(m);
                        }
                    }
                }
                assert_eq!(got, expected, "{draft} {role:?} split {split}");
            }
        }
    }
}

#[test]
fn lent_messages_are_answered_kept_or_forwarded_without_losing_what_follows() {
    let big: Bytes = (0..40_000u32).map(|i| (i % 253) as u8).collect();
    for draft in Draft::ALL {
        let (mut client, mut server) = pair(draft);
        let mut sent = vec![Message::text("a"), Message::text("héllo")];
        if draft.has_binary() {
            sent.push(Message::binary(vec![1u8, 2, 3]));
            sent.push(Message::Binary(big.clone()));
        }
        sent.push(Message::text("kept"));
        for m in &sent {
            client.send(m).unwrap();
        }
        client.send_text("split across reads").unwrap();
        let wire = client.take_output();
        // Everything but the last frame's final byte arrives at once.
        server.receive(&wire[..wire.len() - 1]);
        let mut lent = Vec::new();
        let mut kept = Vec::new();
        while let Some(polled) = server
            .poll_lending(|conn, m| {
                lent.push((
                    m.is_text(),
                    m.data().to_vec(),
                    m.as_text().map(str::to_owned),
                ));
                if m.as_text() == Some("kept") {
                    kept.push(m.into_message());
                } else {
                    conn.forward(m).unwrap();
                }
            })
            .unwrap()
        {
            assert!(matches!(polled, Polled::Message(())), "{draft}: {polled:?}");
        }
        assert_eq!(lent.len(), sent.len(), "{draft}");
        for ((text, data, as_text), m) in lent.iter().zip(&sent) {
            assert_eq!((*text, &data[..]), (m.is_text(), &m.data()[..]), "{draft}");
            assert_eq!(as_text.as_deref(), m.as_text(), "{draft}");
        }
        assert_eq!(kept, vec![Message::text("kept")], "{draft}");
        // The frame after the kept one completes with its last byte.
        server.receive(&wire[wire.len() - 1..]);
        let rest = server.poll_lending(|_, m| m.into_message()).unwrap();
        assert!(
            matches!(&rest, Some(Polled::Message(m)) if *m == Message::text("split across reads")),
            "{draft}: {rest:?}"
        );
        assert!(server.poll().unwrap().is_none(), "{draft}");
        // The forwarded ones came back in order, the kept one did not.
        client.receive(&server.take_output());
        let mut echoed = Vec::new();
        while let Some(Event::Message(m)) = client.poll().unwrap() {
            echoed.push(m);
        }
        let expected: Vec<_> = sent
            .iter()
            .filter(|m| m.as_text() != Some("kept"))
            .cloned()
            .collect();
        assert_eq!(echoed, expected, "{draft}");
    }
}

/// What a server's buffer budget counts: bytes received and not yet handed
/// out (a partial frame, a message being reassembled), and output not yet
/// written; and how a connection is given up on over it.
#[test]
fn buffered_bytes_and_abort() {
    let (mut client, mut server) = pair(Draft::Rfc6455);
    assert_eq!(server.buffered_bytes(), 0);
    // A fragment, then part of the next frame.
    client
        .send_fragment(MessageKind::Binary, &[1; 1000], false)
        .unwrap();
    client
        .send_fragment(MessageKind::Binary, &[2; 1000], true)
        .unwrap();
    let wire = client.take_output();
    server.receive(&wire[..1500]);
    assert_eq!(server.poll().unwrap(), None);
    // The first fragment reassembled, what arrived of the second held.
    let held = server.buffered_bytes();
    assert!((1400..=1500).contains(&held), "{held}");
    server.receive(&wire[1500..]);
    assert!(matches!(server.poll().unwrap(), Some(Event::Message(_))));
    assert_eq!(server.buffered_bytes(), 0, "handed out");
    // Output not yet written counts until it is.
    server.send_binary(&[3; 100]).unwrap();
    assert_eq!(server.buffered_bytes(), 102);
    let out = server.take_output();
    assert_eq!(server.buffered_bytes(), 0);
    client.receive(&out);
    assert!(matches!(client.poll().unwrap(), Some(Event::Message(_))));

    // Abort: what is held goes, a close with the code is queued.
    server.receive(&wire[..1500]);
    assert_eq!(server.poll().unwrap(), None);
    server.abort(1013, "try again later");
    assert_eq!(server.state(), State::Closed);
    let out = server.take_output();
    assert_eq!(server.buffered_bytes(), 0);
    client.receive(&out);
    match client.poll().unwrap() {
        Some(Event::Close(frame)) => assert_eq!(frame.code, 1013),
        other => panic!("expected the close, got {other:?}"),
    }
    // Half-written output cannot be followed by a close frame: none is sent.
    let (_, mut server) = pair(Draft::Rfc6455);
    server.send_binary(&[4; 100]).unwrap();
    server.advance_output(10);
    server.abort(1013, "try again later");
    assert!(!server.has_output());
}
