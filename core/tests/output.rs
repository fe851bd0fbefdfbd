//! The output functions agree: `pending_output` is every pending byte (also
//! when large messages wait in their own buffers), `output_slices` hands
//! the same bytes out piece by piece, `take_output` takes them all.

use std::io::IoSlice;
use std::sync::Arc;

use bytes::Bytes;
use polysocket::{Config, Connection, Draft, Event, Message, Role, Session};

fn server() -> Connection {
    Connection::new(
        Arc::new(Config::default()),
        Session::plain(Role::Server, Draft::Rfc6455),
    )
}

/// Two large messages (each sent from its own buffer) with small frames
/// around them.
fn queue(conn: &mut Connection) -> Vec<Message> {
    let messages = vec![
        Message::text("a"),
        Message::Binary(Bytes::from(vec![1u8; 40_000])),
        Message::text("b"),
        Message::Binary(Bytes::from(vec![2u8; 70_000])),
        Message::text("c"),
    ];
    for m in &messages {
        conn.send(m).unwrap();
    }
    conn.send_ping(b"p").unwrap();
    messages
}

/// What a client decodes from `wire`.
fn decode(wire: &[u8]) -> Vec<Event> {
    let mut client = Connection::new(
        Arc::new(Config::default()),
        Session::plain(Role::Client, Draft::Rfc6455),
    );
    client.receive(wire);
    let mut events = Vec::new();
    while let Some(e) = client.poll().unwrap() {
        events.push(e);
    }
    events
}

fn expected(messages: Vec<Message>) -> Vec<Event> {
    let mut events: Vec<Event> = messages.into_iter().map(Event::Message).collect();
    events.push(Event::Ping(Bytes::from_static(b"p")));
    events
}

#[test]
fn pending_output_is_every_byte() {
    let mut conn = server();
    let messages = queue(&mut conn);
    let total = conn.output_len();
    let wire = conn.pending_output().to_vec();
    assert_eq!(wire.len(), total);
    conn.advance_output(wire.len());
    assert!(!conn.has_output());
    assert_eq!(decode(&wire), expected(messages));
}

#[test]
fn output_slices_through_a_short_array_then_take_output() {
    let mut conn = server();
    let messages = queue(&mut conn);
    let mut wire = Vec::new();
    // Two slots at a time, and only part of what they hold written.
    for _ in 0..3 {
        let mut slices = [IoSlice::new(&[]); 2];
        let n = conn.output_slices(&mut slices);
        assert!(n > 0);
        let step = slices[0].len() + slices[1].len() / 2;
        wire.extend_from_slice(&slices[0]);
        wire.extend_from_slice(&slices[1][..slices[1].len() / 2]);
        conn.advance_output(step);
    }
    wire.extend_from_slice(&conn.take_output());
    assert!(!conn.has_output());
    assert_eq!(decode(&wire), expected(messages));
}
