//! Property tests: random messages through encoder → decoder for every
//! draft and role, with random fragmentation and random read splits.
#![allow(clippy::field_reassign_with_default)] // tests tweak one limit at a time

use std::sync::Arc;

use polysocket::protocol::MessageKind;
use polysocket::{Config, Connection, Draft, Event, Message, Role, Session};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Item {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        ".{0,300}".prop_map(Item::Text),
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Item::Binary),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Item::Ping),
    ]
}

fn draft() -> impl Strategy<Value = Draft> {
    proptest::sample::select(Draft::ALL.to_vec())
}

fn session(role: Role, draft: Draft) -> Session {
    let mut s = Session::plain(role, draft);
    s.hybi04_mask_key = (draft == Draft::Hybi04).then_some([3; 20]);
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn messages_survive_any_fragmentation_and_read_split(
        draft in draft(),
        client_sends in any::<bool>(),
        items in proptest::collection::vec(item(), 1..12),
        fragment_sizes in proptest::collection::vec(1usize..400, 1..8),
        read_sizes in proptest::collection::vec(1usize..700, 1..8),
        borrowed in any::<bool>(),
    ) {
        let config = Arc::new(Config::default());
        let (tx_role, rx_role) = if client_sends { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
        let mut tx = Connection::new(config.clone(), session(tx_role, draft));
        let mut rx = Connection::new(config, session(rx_role, draft));
        let mut expected = Vec::new();
        for (n, it) in items.iter().enumerate() {
            match it {
                Item::Text(s) if draft.has_binary() && s.len() > 1 => {
                    // Fragment at arbitrary byte positions (code points may split).
                    let bytes = s.as_bytes();
                    let size = fragment_sizes[n % fragment_sizes.len()];
                    let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
                    for (i, p) in pieces.iter().enumerate() {
                        tx.send_fragment(MessageKind::Text, p, i + 1 == pieces.len()).unwrap();
                    }
                    expected.push(Event::Message(Message::text(s.clone())));
                }
                Item::Text(s) => {
                    tx.send_text(s).unwrap();
                    expected.push(Event::Message(Message::text(s.clone())));
                }
                Item::Binary(b) if draft.has_binary() => {
                    let size = fragment_sizes[n % fragment_sizes.len()];
                    if b.len() > size {
                        let pieces: Vec<&[u8]> = b.chunks(size).collect();
                        for (i, p) in pieces.iter().enumerate() {
                            tx.send_fragment(MessageKind::Binary, p, i + 1 == pieces.len()).unwrap();
                        }
                    } else {
                        tx.send_binary(b).unwrap();
                    }
                    expected.push(Event::Message(Message::binary(b.clone())));
                }
                Item::Ping(p) if draft.has_ping() => {
                    tx.send_ping(p).unwrap();
                    expected.push(Event::Ping(p.clone().into()));
                }
                _ => {}
            }
        }
        let wire = tx.take_output();
        let mut got = Vec::new();
        let mut pos = 0;
        let mut k = 0;
        while pos < wire.len() {
            let n = read_sizes[k % read_sizes.len()].min(wire.len() - pos);
            k += 1;
            rx.receive(&wire[pos..pos + n]);
            pos += n;
            if borrowed {
                while let Some(e) = rx.poll_ref().unwrap() {
                    got.push(e.into_owned());
                }
            } else {
                while let Some(e) = rx.poll().unwrap() {
                    got.push(e);
                }
            }
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn random_bytes_never_panic_any_decoder(
        draft in draft(),
        as_server in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        split in 1usize..64,
    ) {
        let role = if as_server { Role::Server } else { Role::Client };
        let mut conn = Connection::new(Arc::new(Config::default()), session(role, draft));
        for piece in bytes.chunks(split) {
            conn.receive(piece);
            while let Ok(Some(_)) = conn.poll() {}
        }
    }
}
