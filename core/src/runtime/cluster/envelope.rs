//! The bus's wire format, sans-I/O: one versioned binary envelope per
//! Redis message (docs/CLUSTER.md is the contract). Decoding never trusts
//! its input: anything short, unknown or inconsistent is an error.

use bytes::Bytes;

use crate::protocol::Message;

/// The first two bytes of every envelope.
pub const MAGIC: [u8; 2] = *b"PS";
/// The version this code writes and reads.
pub const VERSION: u8 = 1;
/// Magic, version, kind, origin node id.
const HEADER: usize = 2 + 1 + 1 + 4;
/// The flags byte of a data message: binary (else UTF-8 text).
const BINARY: u8 = 1;

/// A node's announcement of what it serves (see docs/CLUSTER.md, presence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Random per start: tells a restarted node (or an id collision) apart.
    pub incarnation: u64,
    /// Drop this node when nothing is heard from it for this long.
    pub expiry_ms: u32,
    /// Open connections on the node.
    pub connections: u32,
    /// Groups with members on the node, and how many.
    pub groups: Vec<(String, u32)>,
}

/// What an envelope asks of the nodes that receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// To every connection of the namespace.
    Broadcast(Message),
    /// To every member of a group.
    Group(String, Message),
    /// To one connection.
    Send(u64, Message),
    /// A ping to one connection.
    Ping(u64, Bytes),
    /// An unsolicited pong to one connection.
    Pong(u64, Bytes),
    /// Close one connection: code (none: no code) and reason.
    Close(u64, Option<u16>, String),
    /// The sender's presence.
    Heartbeat(Heartbeat),
    /// The sender stops (its incarnation): forget it now.
    Leave(u64),
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Broadcast(_) => 1,
            Body::Group(..) => 2,
            Body::Send(..) => 3,
            Body::Ping(..) => 4,
            Body::Pong(..) => 5,
            Body::Close(..) => 6,
            Body::Heartbeat(_) => 7,
            Body::Leave(_) => 8,
        }
    }
}

/// An envelope: who sent it, what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sending node's id.
    pub origin: u32,
    /// What it asks.
    pub body: Body,
}

/// Why bytes from the bus are not an envelope this version reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No magic: another application's message.
    #[error("not a polysocket envelope")]
    Foreign,
    /// A version this code does not read.
    #[error("envelope version {0} is not supported")]
    Version(u8),
    /// A kind this version does not know.
    #[error("unknown envelope kind {0}")]
    Kind(u8),
    /// Shorter than its fields say.
    #[error("envelope truncated")]
    Truncated,
    /// A field with a value no sender writes (named).
    #[error("invalid envelope field: {0}")]
    Invalid(&'static str),
}

impl Envelope {
    /// The envelope's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 16 + payload_len(&self.body));
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.body.kind());
        out.extend_from_slice(&self.origin.to_be_bytes());
        match &self.body {
            Body::Broadcast(m) => put_message(&mut out, m),
            Body::Group(group, m) => {
                out.push(flags(m));
                put_str16(&mut out, group);
                out.extend_from_slice(m.data());
            }
            Body::Send(id, m) => {
                out.push(flags(m));
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(m.data());
            }
            Body::Ping(id, data) | Body::Pong(id, data) => {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(data);
            }
            Body::Close(id, code, reason) => {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&code.unwrap_or(0).to_be_bytes());
                out.extend_from_slice(reason.as_bytes());
            }
            Body::Heartbeat(h) => {
                out.extend_from_slice(&h.incarnation.to_be_bytes());
                out.extend_from_slice(&h.expiry_ms.to_be_bytes());
                out.extend_from_slice(&h.connections.to_be_bytes());
                out.extend_from_slice(&(h.groups.len() as u32).to_be_bytes());
                for (name, count) in &h.groups {
                    put_str16(&mut out, name);
                    out.extend_from_slice(&count.to_be_bytes());
                }
            }
            Body::Leave(incarnation) => out.extend_from_slice(&incarnation.to_be_bytes()),
        }
        out
    }

    /// Read an envelope; any other bytes are an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        if bytes.len() < 2 || bytes[..2] != MAGIC {
            return Err(DecodeError::Foreign);
        }
        let mut r = Reader(bytes);
        r.take(2)?;
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let kind = r.u8()?;
        let origin = r.u32()?;
        let body = match kind {
            1 => {
                let binary = r.flags()?;
                Body::Broadcast(message(binary, r.rest())?)
            }
            2 => {
                let binary = r.flags()?;
                let group = r.str16()?;
                Body::Group(group, message(binary, r.rest())?)
            }
            3 => {
                let binary = r.flags()?;
                let id = r.u64()?;
                Body::Send(id, message(binary, r.rest())?)
            }
            4 | 5 => {
                let id = r.u64()?;
                let data = Bytes::copy_from_slice(r.rest());
                if kind == 4 {
                    Body::Ping(id, data)
                } else {
                    Body::Pong(id, data)
                }
            }
            6 => {
                let id = r.u64()?;
                let code = Some(r.u16()?).filter(|c| *c != 0);
                let reason = utf8(r.rest())?;
                Body::Close(id, code, reason)
            }
            7 => {
                let incarnation = r.u64()?;
                let expiry_ms = r.u32()?;
                let connections = r.u32()?;
                let count = r.u32()? as usize;
                // Each entry takes at least 6 bytes: no allocation from a
                // forged count.
                if count > r.0.len() / 6 {
                    return Err(DecodeError::Truncated);
                }
                let mut groups = Vec::with_capacity(count);
                for _ in 0..count {
                    let name = r.str16()?;
                    groups.push((name, r.u32()?));
                }
                if !r.0.is_empty() {
                    return Err(DecodeError::Invalid("bytes after the heartbeat"));
                }
                Body::Heartbeat(Heartbeat {
                    incarnation,
                    expiry_ms,
                    connections,
                    groups,
                })
            }
            8 => {
                let incarnation = r.u64()?;
                if !r.0.is_empty() {
                    return Err(DecodeError::Invalid("bytes after the leave"));
                }
                Body::Leave(incarnation)
            }
            other => return Err(DecodeError::Kind(other)),
        };
        Ok(Envelope { origin, body })
    }
}

fn payload_len(body: &Body) -> usize {
    match body {
        Body::Broadcast(m) | Body::Group(_, m) | Body::Send(_, m) => m.data().len(),
        _ => 0,
    }
}

fn flags(m: &Message) -> u8 {
    if m.is_text() {
        0
    } else {
        BINARY
    }
}

fn put_message(out: &mut Vec<u8>, m: &Message) {
    out.push(flags(m));
    out.extend_from_slice(m.data());
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    // Group names are checked to fit when joined (see `MAX_GROUP`).
    let len = s.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len]);
}

fn message(binary: bool, payload: &[u8]) -> Result<Message, DecodeError> {
    let data = Bytes::copy_from_slice(payload);
    if binary {
        return Ok(Message::Binary(data));
    }
    simdutf8::basic::from_utf8(payload).map_err(|_| DecodeError::Invalid("text is not UTF-8"))?;
    Ok(Message::Text(data))
}

fn utf8(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid("string is not UTF-8"))
}

/// A cursor over untrusted bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }

    /// The flags byte of a data message: whether it is binary.
    fn flags(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            BINARY => Ok(true),
            _ => Err(DecodeError::Invalid("unknown message flags")),
        }
    }

    fn str16(&mut self) -> Result<String, DecodeError> {
        let len = self.u16()? as usize;
        utf8(self.take(len)?)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    fn samples() -> Vec<Envelope> {
        let bodies = vec![
            Body::Broadcast(Message::text("héllo")),
            Body::Broadcast(Message::binary(vec![0, 255, 1])),
            Body::Group("room:1".into(), Message::text("")),
            Body::Group("r".into(), Message::binary(vec![7; 300])),
            Body::Send(u64::MAX >> 1, Message::text("direct")),
            Body::Ping(3, Bytes::from_static(b"ping")),
            Body::Pong(4, Bytes::new()),
            Body::Close(5, Some(4000), "bye".into()),
            Body::Close(6, None, String::new()),
            Body::Heartbeat(Heartbeat {
                incarnation: 0x0123_4567_89ab_cdef,
                expiry_ms: 3000,
                connections: 42,
                groups: vec![("a".into(), 1), ("bé".into(), 41)],
            }),
            Body::Heartbeat(Heartbeat {
                incarnation: 1,
                expiry_ms: 1,
                connections: 0,
                groups: vec![],
            }),
            Body::Leave(9),
        ];
        bodies
            .into_iter()
            .map(|body| Envelope {
                origin: 0x00ab_cdef,
                body,
            })
            .collect()
    }

    #[test]
    fn every_kind_round_trips() {
        for envelope in samples() {
            assert_eq!(Envelope::decode(&envelope.encode()), Ok(envelope));
        }
    }

    #[test]
    fn the_documented_bytes() {
        let envelope = Envelope {
            origin: 0x0102_0304,
            body: Body::Group("g".into(), Message::text("hi")),
        };
        assert_eq!(
            envelope.encode(),
            b"PS\x01\x02\x01\x02\x03\x04\x00\x00\x01ghi".to_vec()
        );
    }

    #[test]
    fn every_truncation_is_an_error_or_a_shorter_payload() {
        for envelope in samples() {
            let bytes = envelope.encode();
            for len in 0..bytes.len() {
                // Data payloads and strings at the end may be cut anywhere
                // and still decode: what matters is no panic, and that the
                // fixed part is never read past the end.
                if let Ok(decoded) = Envelope::decode(&bytes[..len]) {
                    assert_eq!(decoded.origin, envelope.origin);
                }
            }
            assert!(Envelope::decode(&bytes[..HEADER - 1]).is_err());
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        for i in 0..200_000 {
            let len = rng.random_range(0..64);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Half of them get a valid header, to reach the bodies.
            if i % 2 == 0 && len >= HEADER {
                bytes[..3].copy_from_slice(b"PS\x01");
                bytes[3] = rng.random_range(0..10);
            }
            let _ = Envelope::decode(&bytes);
        }
    }

    #[test]
    fn foreign_versions_and_kinds_are_named() {
        assert_eq!(Envelope::decode(b"hello"), Err(DecodeError::Foreign));
        assert_eq!(
            Envelope::decode(b"PS\x02\x01\0\0\0\x01\0"),
            Err(DecodeError::Version(2))
        );
        assert_eq!(
            Envelope::decode(b"PS\x01\x63\0\0\0\x01"),
            Err(DecodeError::Kind(0x63))
        );
        assert_eq!(
            Envelope::decode(b"PS\x01\x01\0\0\0\x01\0\xff"),
            Err(DecodeError::Invalid("text is not UTF-8"))
        );
        // A heartbeat claiming four billion groups allocates nothing.
        assert_eq!(
            Envelope::decode(
                b"PS\x01\x07\0\0\0\x01\0\0\0\0\0\0\0\x01\0\0\0\x01\0\0\0\x01\xff\xff\xff\xff"
            ),
            Err(DecodeError::Truncated)
        );
    }
}
