//! Messages as the application sees them, and messages encoded once for
//! many connections.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};

use crate::draft::{Draft, Framing, OpcodeTable};
use crate::framing::{Encoder, OpCode};
use crate::session::Role;

use super::MessageKind;

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Always valid UTF-8 (checked on receipt).
    Text(Bytes),
    /// Arbitrary bytes (hybi-01 and later; hixie has no binary messages).
    Binary(Bytes),
}

impl Message {
    /// A text message; a `String` is taken over without copying.
    pub fn text(s: impl Into<String>) -> Message {
        Message::Text(Bytes::from(s.into()))
    }

    /// A binary message; `Bytes`, `Vec<u8>` and `&'static [u8]` are taken over
    /// without copying.
    pub fn binary(b: impl Into<Bytes>) -> Message {
        Message::Binary(b.into())
    }

    /// The payload bytes.
    pub fn data(&self) -> &Bytes {
        match self {
            Message::Text(b) | Message::Binary(b) => b,
        }
    }

    /// The payload bytes, without copying.
    pub fn into_data(self) -> Bytes {
        match self {
            Message::Text(b) | Message::Binary(b) => b,
        }
    }

    /// Whether this is [`Message::Text`]; hixie drafts can carry only those.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }

    /// The text of a text message. Received text messages are validated, so
    /// this only fails for messages built from invalid bytes by the caller.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(b) => std::str::from_utf8(b).ok(),
            Message::Binary(_) => None,
        }
    }

    pub(crate) fn opcode(&self) -> OpCode {
        self.kind().opcode()
    }
}

/// A received data message, as [`Connection::poll_lending`](super::Connection::poll_lending)
/// hands it over: lent from the connection's receive buffer when it arrived
/// in one frame (no copy, no reference count), owned when it was
/// reassembled. [`into_message`](Self::into_message) keeps it without
/// copying the payload.
#[derive(Debug)]
pub struct Incoming<'a> {
    kind: MessageKind,
    payload: Payload<'a>,
}

#[derive(Debug)]
enum Payload<'a> {
    /// The first `len` bytes of the (moved-out) receive buffer.
    Lent(&'a mut BytesMut, usize),
    Owned(Bytes),
}

impl<'a> Incoming<'a> {
    pub(super) fn lent(kind: MessageKind, buf: &'a mut BytesMut, len: usize) -> Self {
        Incoming {
            kind,
            payload: Payload::Lent(buf, len),
        }
    }

    pub(super) fn owned(message: Message) -> Self {
        Incoming {
            kind: message.kind(),
            payload: Payload::Owned(message.into_data()),
        }
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Whether it is a text message.
    pub fn is_text(&self) -> bool {
        self.kind == MessageKind::Text
    }

    /// The payload bytes.
    pub fn data(&self) -> &[u8] {
        match &self.payload {
            Payload::Lent(buf, len) => &buf[..*len],
            Payload::Owned(b) => b,
        }
    }

    /// The text of a text message (validated on receipt).
    pub fn as_text(&self) -> Option<&str> {
        // SAFETY: only the connection builds an `Incoming`, from a message
        // whose text it validated (or replaced, on drafts that do that).
        self.is_text()
            .then(|| unsafe { std::str::from_utf8_unchecked(self.data()) })
    }

    /// The message, owned: the payload is split off the receive buffer, not
    /// copied.
    pub fn into_message(self) -> Message {
        self.kind.message(match self.payload {
            Payload::Lent(buf, len) => buf.split_to(len).freeze(),
            Payload::Owned(b) => b,
        })
    }
}

/// The four wire shapes of an unmasked server frame.
const FAMILIES: usize = 4;

fn family(draft: Draft) -> usize {
    match draft.framing() {
        Framing::Sentinel { .. } => 0,
        Framing::Binary(b) if b.more_bit => 1,
        Framing::Binary(b) if b.opcodes == OpcodeTable::A => 2,
        Framing::Binary(_) => 3,
    }
}

/// A representative draft of each family, for encoding.
const REPRESENTATIVE: [Draft; FAMILIES] =
    [Draft::Hixie76, Draft::Hybi01, Draft::Hybi06, Draft::Rfc6455];

/// A message encoded at most once per framing family, to be sent to many
/// connections (broadcast). Server frames are never masked, so one encoding
/// serves every server connection of a family; the frames are sent
/// uncompressed, which every compression extension allows.
#[derive(Debug)]
pub struct PreparedMessage {
    message: Message,
    frames: [OnceLock<Bytes>; FAMILIES],
}

impl PreparedMessage {
    /// Wraps `message`; each framing family's frame is encoded on first use.
    pub fn new(message: Message) -> Self {
        PreparedMessage {
            message,
            frames: Default::default(),
        }
    }

    /// The message itself, which clients send instead of a shared frame (each
    /// client frame needs its own mask).
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The server frame for `draft`, encoded on first use. `None` when the
    /// draft cannot carry the message (binary on hixie).
    pub fn server_frame(&self, draft: Draft) -> Option<&Bytes> {
        super::rules::check_message(draft, self.message.kind()).ok()?;
        let f = family(draft);
        Some(self.frames[f].get_or_init(|| {
            let encoder = Encoder::new(REPRESENTATIVE[f], Role::Server, None);
            let payload = self.message.data();
            let mut out = BytesMut::with_capacity(payload.len() + 10);
            encoder.encode(self.message.opcode(), true, 0, payload, &mut out);
            out.freeze()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_encoding_per_family() {
        let p = PreparedMessage::new(Message::text("Hello"));
        assert_eq!(
            &p.server_frame(Draft::Hixie75).unwrap()[..],
            b"\x00Hello\xff"
        );
        assert_eq!(
            &p.server_frame(Draft::Hybi02).unwrap()[..],
            b"\x04\x05Hello"
        );
        assert_eq!(
            &p.server_frame(Draft::Hybi05).unwrap()[..],
            b"\x84\x05Hello"
        );
        assert_eq!(
            &p.server_frame(Draft::Rfc6455).unwrap()[..],
            b"\x81\x05Hello"
        );
        let a = p.server_frame(Draft::Hybi07).unwrap().as_ptr();
        assert_eq!(a, p.server_frame(Draft::Hybi08).unwrap().as_ptr());
        let b = PreparedMessage::new(Message::binary(&b"\x01"[..]));
        assert!(b.server_frame(Draft::Hixie76).is_none());
    }
}
