//! `envelope`: the cluster bus's binary envelope ([`Envelope::decode`]),
//! which every node reads from Redis, where any client of the server may
//! publish. Needs polysocket's `cluster` feature. Two modes:
//!
//! * **decode**: arbitrary bytes. A decoded envelope encodes back to
//!   exactly those bytes (the format has one spelling per envelope, so a
//!   node never acts on something it would not itself have written);
//!   anything else is an error, never a panic or a forged allocation.
//! * **round trip**: an envelope the fuzzer describes (every kind, text and
//!   binary messages, close codes, heartbeat groups) is encoded and must
//!   decode to itself; cut inside its fixed fields (header, flags, ids,
//!   lengths; all of a heartbeat or leave) it is refused.

use bytes::Bytes;

use polysocket::runtime::cluster::envelope::{Body, DecodeError, Envelope, Heartbeat};
use polysocket::Message;

use super::input::{Input, Rng};

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    if input.bool() {
        round_trip(&mut input);
        return;
    }
    let bytes = input.rest();
    match Envelope::decode(bytes) {
        Ok(envelope) => assert_eq!(envelope.encode(), bytes, "{envelope:?}"),
        Err(DecodeError::Foreign) => assert!(!bytes.starts_with(b"PS")),
        Err(_) => {}
    }
}

fn round_trip(input: &mut Input<'_>) {
    let mut rng = Rng::new(input.u64());
    let origin = u32::from_le_bytes(input.array());
    let id = input.u64();
    let mut message = |input: &mut Input<'_>| {
        let len = usize::from(input.byte());
        if input.bool() {
            Message::Binary(Bytes::copy_from_slice(input.bytes(len)))
        } else {
            Message::Text(Bytes::from(rng.text(len)))
        }
    };
    let body = match input.byte() % 8 {
        0 => Body::Broadcast(message(input)),
        1 => {
            let len = usize::from(input.byte());
            let group = String::from_utf8_lossy(input.bytes(len)).into();
            Body::Group(group, message(input))
        }
        2 => Body::Send(id, message(input)),
        3 => Body::Ping(id, Bytes::copy_from_slice(input.bytes(125))),
        4 => Body::Pong(id, Bytes::copy_from_slice(input.bytes(125))),
        5 => {
            let code = Some(input.u16()).filter(|&c| c != 0);
            let reason = String::from_utf8_lossy(input.bytes(123)).into();
            Body::Close(id, code, reason)
        }
        6 => {
            let groups = (0..input.byte() % 8)
                .map(|_| {
                    let len = usize::from(input.byte() % 32);
                    let name = String::from_utf8_lossy(input.bytes(len)).into();
                    (name, u32::from_le_bytes(input.array()))
                })
                .collect();
            Body::Heartbeat(Heartbeat {
                incarnation: input.u64(),
                expiry_ms: u32::from_le_bytes(input.array()),
                connections: u32::from_le_bytes(input.array()),
                groups,
            })
        }
        _ => Body::Leave(id),
    };
    let envelope = Envelope { origin, body };
    let wire = envelope.encode();
    assert_eq!(Envelope::decode(&wire), Ok(envelope.clone()));
    // The fixed part of every kind (header, flags, ids, lengths) is needed.
    let header = match envelope.body {
        Body::Broadcast(_) => 9,
        Body::Group(ref g, _) => 11 + g.len(),
        Body::Send(..) => 17,
        Body::Ping(..) | Body::Pong(..) => 16,
        Body::Close(..) => 18,
        Body::Heartbeat(_) | Body::Leave(_) => wire.len(),
    };
    for cut in [0, 1, 2, 3, 7, header - 1, rng.below(header)] {
        assert!(Envelope::decode(&wire[..cut]).is_err(), "{cut} of {header}");
    }
}
