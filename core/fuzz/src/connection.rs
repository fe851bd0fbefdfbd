//! `connection`: a whole [`Connection`] for a fuzzer-chosen draft, role,
//! extension in force (none, permessage-deflate, deflate-frame or
//! deflate-stream, with fuzzer-chosen parameters, on the drafts that have
//! extensions) and small limits,
//! receiving the fuzz bytes in random reads. Between reads it is polled
//! with `poll` and `poll_ref` alternately and, driven by a seeded PRNG,
//! sends messages, fragments, pings, pongs, prepared messages and closes.
//!
//! Everything it writes goes to a second, conforming connection (the
//! peer, with the mirrored session), which must decode it without error
//! and see exactly what was sent: our messages, the automatic pongs, the
//! reply to a close, the close that reports a failure.
//!
//! Checked besides "never panics": after an error the connection is
//! `Closed` and polls nothing more; a lent text message is valid UTF-8;
//! messages respect the configured limits; sending succeeds only while
//! open.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use polysocket::draft::CloseBody;
use polysocket::extensions::{Agreed, DeflateFrameParams, PmdParams};
use polysocket::protocol::{CloseFrame, EventRef, MessageKind, Polled, State};
use polysocket::{Config, Connection, Event, Incoming, Message, PreparedMessage, Role, Session};

use super::input::{Input, Rng, Splitter};

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let draft = input.draft();
    let role = input.role();
    // Only sessions a handshake can agree on: no extension before hybi-04
    // (sentinel frames have no RSV1 to mark compressed payloads).
    let extensions = Some(agreed(&mut input))
        .filter(|_| draft.has_extensions())
        .unwrap_or_default();
    let key = input.bool().then(|| input.array::<20>());
    let config = Arc::new(small_config(&mut input));
    let mut rng = Rng::new(input.u64());
    let mut splitter = Splitter::new(&mut input);
    let bytes = input.rest();

    let session = Session {
        role,
        draft,
        subprotocol: None,
        extensions,
        hybi04_mask_key: key,
    };
    let mut peer = Peer::new(&session);
    let mut conn = Connection::new(Arc::clone(&config), session);
    let mut sender = Sender::default();
    for piece in splitter.split(bytes) {
        if rng.chance(2) {
            conn.receive(piece);
        } else {
            conn.receive_buffer().extend_from_slice(piece);
        }
        drain(&mut conn, &config, &mut rng, &mut peer);
        for _ in 0..rng.below(3) {
            sender.send(&mut conn, &mut rng, &mut peer);
        }
        write(&mut conn, &mut rng, &mut peer);
    }
    if rng.chance(2) {
        let open = conn.state() != State::Closed;
        assert_eq!(conn.receive_eof().is_some(), open);
        assert_eq!(conn.state(), State::Closed);
    }
    drain(&mut conn, &config, &mut rng, &mut peer);
    while conn.has_output() {
        write(&mut conn, &mut rng, &mut peer);
    }
    peer.finish();
}

/// The extension in force, any kind, with parameters in their valid ranges.
fn agreed(input: &mut Input<'_>) -> Agreed {
    let bits = |input: &mut Input<'_>| 8 + input.byte() % 8;
    match input.byte() % 4 {
        0 => Agreed::None,
        1 => {
            let flags = input.byte();
            Agreed::PerMessageDeflate(PmdParams {
                server_no_context_takeover: flags & 1 != 0,
                client_no_context_takeover: flags & 2 != 0,
                server_max_window_bits: bits(input),
                client_max_window_bits: bits(input),
            })
        }
        2 => {
            let flags = input.byte();
            Agreed::DeflateFrame(DeflateFrameParams {
                webkit_name: flags & 4 != 0,
                server_max_window_bits: bits(input),
                server_no_context_takeover: flags & 1 != 0,
                client_max_window_bits: bits(input),
                client_no_context_takeover: flags & 2 != 0,
            })
        }
        _ => Agreed::DeflateStream,
    }
}

/// Small limits, so that the fuzzer reaches them with short inputs.
fn small_config(input: &mut Input<'_>) -> Config {
    const LIMITS: [usize; 8] = [0, 1, 2, 125, 126, 1000, 65536, 1 << 20];
    let mut config = Config {
        max_frame_size: input.pick(&LIMITS),
        max_message_size: input.pick(&LIMITS),
        max_decompressed_size: input.pick(&LIMITS),
        ..Config::default()
    };
    let flags = input.byte();
    config.auto_pong = flags & 1 == 0;
    config.extensions.compression_threshold = input.pick(&[0, 0, 1, 16, 1000]);
    config.extensions.compression_level = input.pick(&[6, 0, 1, 9, 42]);
    input.strictness(&mut config);
    config
}

/// Polls until nothing is left, alternating `poll`, `poll_ref` and
/// `poll_lending` at random, and tells the peer what the connection
/// answered on its own.
fn drain(conn: &mut Connection, config: &Config, rng: &mut Rng, peer: &mut Peer) {
    let has_close_frame = conn.draft().has_close_frame();
    let rules = conn.close_rules();
    loop {
        let before = conn.state();
        let result = match rng.below(3) {
            0 => conn.poll(),
            1 => conn.poll_ref().map(|e| e.map(lent)),
            _ => {
                let keep = rng.chance(2);
                conn.poll_lending(|_, m| lent_message(m, keep)).map(|p| {
                    p.map(|p| match p {
                        Polled::Message(m) => Event::Message(m),
                        Polled::Ping(d) => Event::Ping(d),
                        Polled::Pong(d) => Event::Pong(d),
                        Polled::Close(f) => Event::Close(f),
                    })
                })
            }
        };
        match result {
            Ok(None) => return,
            Ok(Some(event)) => {
                check_event(&event, config, conn.draft().has_binary());
                match event {
                    Event::Ping(payload) if config.auto_pong && before == State::Open => {
                        peer.expect(Expected::Pong(payload));
                    }
                    Event::Close(frame) => {
                        assert_eq!(conn.state(), State::Closed, "closed by {frame:?}");
                        if before == State::Open {
                            peer.expect(Expected::Close(echoed(rules, &frame)));
                        }
                    }
                    _ => {}
                }
            }
            Err(error) => {
                assert_eq!(conn.state(), State::Closed, "after {error:?}");
                assert!(matches!(conn.poll(), Ok(None)), "errors are reported once");
                if before == State::Open && has_close_frame {
                    let code = coded(rules).then(|| error.close_code());
                    peer.expect(Expected::Close(code));
                }
                return;
            }
        }
    }
}

/// The owned form of a `poll_ref` event; a lent text must be UTF-8 (it
/// was built without a check).
fn lent(event: EventRef<'_>) -> Event {
    if let EventRef::Text(text) = &event {
        assert!(std::str::from_utf8(text.as_bytes()).is_ok());
    }
    event.into_owned()
}

/// The owned form of a `poll_lending` message: kept (split off the
/// receive buffer) or copied; a lent text must be UTF-8.
fn lent_message(message: Incoming<'_>, keep: bool) -> Message {
    if keep {
        return message.into_message();
    }
    match message.as_text() {
        Some(text) => {
            assert!(std::str::from_utf8(text.as_bytes()).is_ok());
            Message::text(text)
        }
        None => Message::binary(Bytes::copy_from_slice(message.data())),
    }
}

fn check_event(event: &Event, config: &Config, has_binary: bool) {
    match event {
        Event::Message(m @ Message::Text(_)) => {
            assert!(m.as_text().is_some(), "received text is valid UTF-8");
        }
        Event::Message(Message::Binary(data)) => {
            assert!(has_binary);
            let limit = config.max_message_size.max(config.max_decompressed_size);
            assert!(data.len() <= limit, "{} > {limit}", data.len());
        }
        Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
        Event::Close(_) => {}
    }
}

/// Whether close frames of these rules carry a code the peer reports.
fn coded(rules: CloseBody) -> bool {
    matches!(rules, CloseBody::Coded | CloseBody::Rfc6455)
}

/// The code the peer sees in our reply to `frame`: the echoed code.
fn echoed(rules: CloseBody, frame: &CloseFrame) -> Option<u16> {
    coded(rules).then_some(frame.code)
}

/// Hands (some of) the pending output to the peer, as a socket write would.
fn write(conn: &mut Connection, rng: &mut Rng, peer: &mut Peer) {
    if rng.chance(2) {
        peer.receive(&conn.take_output());
    } else {
        let pending = conn.pending_output();
        let n = rng.below(pending.len() + 1);
        peer.receive(&pending[..n]);
        conn.advance_output(n);
    }
}

/// What the peer must see next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Message(Message),
    Ping(Bytes),
    Pong(Bytes),
    /// A close, with the code when the draft's close frames carry one we
    /// know.
    Close(Option<u16>),
}

/// The conforming receiver of everything the fuzzed connection writes.
struct Peer {
    conn: Connection,
    expected: VecDeque<Expected>,
}

impl Peer {
    fn new(session: &Session) -> Self {
        let mirrored = Session {
            role: match session.role {
                Role::Server => Role::Client,
                Role::Client => Role::Server,
            },
            ..session.clone()
        };
        let config = Config {
            auto_pong: false,
            ..Config::default()
        };
        Peer {
            conn: Connection::new(Arc::new(config), mirrored),
            expected: VecDeque::new(),
        }
    }

    fn expect(&mut self, e: Expected) {
        self.expected.push_back(e);
    }

    fn receive(&mut self, bytes: &[u8]) {
        self.conn.receive(bytes);
        loop {
            let event = match self.conn.poll() {
                Ok(Some(event)) => event,
                Ok(None) => return,
                Err(e) => panic!("the peer rejects what we wrote: {e:?}"),
            };
            let seen = match event {
                Event::Message(m) => Expected::Message(m),
                Event::Ping(p) => Expected::Ping(p),
                Event::Pong(p) => Expected::Pong(p),
                Event::Close(f) => {
                    let rules = self.conn.close_rules();
                    Expected::Close(coded(rules).then_some(f.code))
                }
            };
            let Some(want) = self.expected.pop_front() else {
                panic!("the peer got {seen:?}, nothing was sent");
            };
            match (&want, &seen) {
                (Expected::Close(None), Expected::Close(_)) => {}
                _ => assert_eq!(seen, want),
            }
        }
    }

    /// Everything sent arrived.
    fn finish(&mut self) {
        assert!(
            self.expected.is_empty(),
            "sent but never seen: {:?}",
            self.expected
        );
    }
}

/// The sending side: random calls of the sending API, and what the peer
/// must then see.
#[derive(Default)]
struct Sender {
    /// The fragmented message being sent: its kind and data so far.
    fragmented: Option<(MessageKind, Vec<u8>)>,
}

impl Sender {
    fn send(&mut self, conn: &mut Connection, rng: &mut Rng, peer: &mut Peer) {
        let open = conn.state() == State::Open;
        let len = match rng.below(8) {
            0 => 0,
            7 => rng.below(3000),
            _ => rng.below(130),
        };
        let (result, expected) = match rng.below(8) {
            0 => {
                let text = rng.text(len);
                let r = conn.send_text(&text);
                (r, Some(Expected::Message(Message::text(text))))
            }
            1 => {
                let data = rng.bytes(len);
                let r = conn.send_binary(&data);
                (r, Some(Expected::Message(Message::binary(data))))
            }
            2 | 3 => return self.fragment(conn, rng, peer, len),
            4 => {
                let data = rng.bytes(len);
                let r = conn.send_ping(&data);
                (r, Some(Expected::Ping(data.into())))
            }
            5 => {
                let data = rng.bytes(len);
                let r = conn.send_pong(&data);
                (r, Some(Expected::Pong(data.into())))
            }
            6 => {
                let message = if rng.chance(2) {
                    Message::text(rng.text(len))
                } else {
                    Message::binary(rng.bytes(len))
                };
                let prepared = PreparedMessage::new(message.clone());
                let r = conn.send_prepared(&prepared);
                (r, Some(Expected::Message(message)))
            }
            _ => {
                if !rng.chance(4) {
                    return;
                }
                const CODES: [u16; 8] = [1000, 1001, 1004, 1005, 1012, 3000, 4999, 999];
                let code = (!rng.chance(4)).then(|| CODES[rng.below(CODES.len())]);
                let reason_len = rng.below(130);
                let reason = rng.text(reason_len);
                let rules = conn.close_rules();
                let r = conn.close(code, &reason);
                let has_frame = conn.draft().has_close_frame();
                let seen = code.filter(|_| coded(rules)).unwrap_or(1005);
                (
                    r,
                    has_frame.then(|| Expected::Close(coded(rules).then_some(seen))),
                )
            }
        };
        if result.is_ok() {
            assert!(open, "sent while not open");
            if let Some(e) = expected {
                peer.expect(e);
            }
        }
    }

    /// Sends one fragment of a message (starting one if none is under way).
    fn fragment(&mut self, conn: &mut Connection, rng: &mut Rng, peer: &mut Peer, len: usize) {
        let open = conn.state() == State::Open;
        let kind = match &self.fragmented {
            Some((kind, _)) if !rng.chance(8) => *kind,
            _ if rng.chance(2) => MessageKind::Text,
            _ => MessageKind::Binary,
        };
        let data = match kind {
            MessageKind::Text => rng.text(len).into_bytes(),
            MessageKind::Binary => rng.bytes(len),
        };
        let fin = rng.chance(3);
        if conn.send_fragment(kind, &data, fin).is_err() {
            return;
        }
        assert!(open, "sent while not open");
        let (_, so_far) = self.fragmented.get_or_insert_with(|| (kind, Vec::new()));
        so_far.extend_from_slice(&data);
        if fin {
            let (kind, data) = self.fragmented.take().expect("inserted above");
            let message = match kind {
                MessageKind::Text => Message::text(String::from_utf8(data).expect("text")),
                MessageKind::Binary => Message::binary(data),
            };
            peer.expect(Expected::Message(message));
        }
    }
}
