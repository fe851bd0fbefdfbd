//! The receive side of a connection: the frame decoder's buffer and the
//! reassembly of data messages from chunks (fragments, inflation, UTF-8
//! validation, size limits).
//!
//! It is apart from [`Connection`](super::Connection) so that the decode
//! loop can borrow the buffer and the reassembly state at the same time.

use bytes::{Bytes, BytesMut};

use super::{Compression, Message, MessageKind};
use crate::config::Config;
use crate::error::ProtocolError;
use crate::framing::{Chunk, Decoder, OpCode};
use crate::utf8::{self, Utf8Validator};

/// The largest single-frame binary message kept whole in the receive
/// buffer while it arrives ([`Decoder::set_hold`]); larger ones are
/// reassembled as they arrive, so that a peer's announced length never
/// reserves memory ahead of the bytes it sent.
const HOLD_MAX: usize = 16 * 1024 * 1024;

/// What the decode loop produced.
pub(super) enum Received {
    /// A whole message at the front of the buffer.
    InPlace(InPlace),
    /// A reassembled (or replaced) message.
    Message(Message),
    /// A complete control frame, for the connection to act on.
    Control(OpCode, Bytes),
}

/// A whole message at the front of the receive buffer: `len` payload
/// bytes, `consumed` bytes to remove once it has been handed out.
#[derive(Debug, Clone, Copy)]
pub(super) struct InPlace {
    pub(super) kind: MessageKind,
    pub(super) len: usize,
    pub(super) consumed: usize,
}

/// The frame decoder with its input buffer. Laid out as written, hot
/// fields first (see [`Connection`](super::Connection)).
#[repr(C)]
pub(super) struct Receiver {
    /// Bytes for the frame decoder (already inflated under deflate-stream).
    pub(super) buf: BytesMut,
    /// Bytes of a message lent by `poll_ref`, removed on the next call.
    pub(super) lent: usize,
    pub(super) decoder: Decoder,
    asm: Assembler,
}

// Layout guards (64-bit targets): a field added or moved changes these
// numbers and fails the build instead of silently pushing what every
// message touches onto another cache line. Change them only together with
// a layout that still keeps the hot fields together.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Receiver>() == 272);
    assert!(offset_of!(Receiver, buf) == 0);
    assert!(offset_of!(Receiver, lent) == 32);
    assert!(offset_of!(Receiver, decoder) == 40);
    assert!(offset_of!(Receiver, asm) == 168);
    // A message in one frame checks `incoming` first.
    assert!(offset_of!(Assembler, incoming) == 0);
    assert!(size_of::<Assembler>() == 104);
};

/// A data message being reassembled. `kind` first: it also tells
/// `Some(Reassembly)` from `None`, which is all a message in one frame checks.
#[repr(C)]
struct Reassembly {
    kind: MessageKind,
    /// permessage-deflate: the message's first frame had RSV1.
    compressed: bool,
    data: BytesMut,
    /// Bytes received on the wire for this message (before inflation).
    wire_len: usize,
}

/// Reassembly state and limits, laid out as written (what a message in one
/// frame reads first).
#[repr(C)]
struct Assembler {
    incoming: Option<Reassembly>,
    max_message: usize,
    utf8: Utf8Validator,
    /// Invalid UTF-8 fails the connection (else it is replaced: old drafts).
    strict_utf8: bool,
    /// deflate-frame: the frame being received has RSV1.
    frame_compressed: bool,
    max_decompressed: usize,
    /// A control frame, or a deflate-frame compressed frame, split across reads.
    frame_buf: BytesMut,
}

impl Receiver {
    pub(super) fn new(decoder: Decoder, config: &Config, strict_utf8: bool) -> Self {
        Receiver {
            decoder,
            buf: BytesMut::new(),
            lent: 0,
            asm: Assembler {
                incoming: None,
                utf8: Utf8Validator::new(),
                strict_utf8,
                frame_buf: BytesMut::new(),
                frame_compressed: false,
                max_message: config.max_message_size,
                max_decompressed: config.max_decompressed_size,
            },
        }
    }

    /// Bytes still to arrive for the frame the decoder holds (0: none).
    pub(super) fn awaited(&self) -> usize {
        self.decoder.held().saturating_sub(self.buf.len())
    }

    /// Bytes received and not yet handed out: the decode buffer (less a
    /// message lent and not yet consumed) and a message being reassembled.
    #[inline]
    pub(super) fn buffered(&self) -> usize {
        let pending = self.buf.len() - self.lent;
        match &self.asm.incoming {
            None => pending + self.asm.frame_buf.len(),
            Some(inc) => pending + self.asm.frame_buf.len() + inc.data.len(),
        }
    }

    /// Drop the message `poll_ref` lent, so that appending new bytes can
    /// reuse the buffer's space instead of growing it.
    #[inline]
    pub(super) fn consume_lent(&mut self) {
        let lent = std::mem::take(&mut self.lent);
        super::consume(&mut self.buf, lent);
    }

    /// Forget everything received (the connection failed or closed).
    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.lent = 0;
        self.asm.incoming = None;
        self.asm.frame_buf = BytesMut::new();
    }

    /// The peer's close ends any message in progress.
    pub(super) fn abandon_message(&mut self) {
        self.asm.incoming = None;
    }

    /// Decode until something is ready; `Ok(None)` when more bytes are
    /// needed.
    #[inline]
    pub(super) fn next(
        &mut self,
        compression: &mut Compression,
    ) -> Result<Option<Received>, ProtocolError> {
        loop {
            // Hold whole binary frames only between messages: inside a
            // fragmented one, an unexpected new frame must fail at once.
            let hold = if self.asm.incoming.is_none() {
                HOLD_MAX.min(self.asm.max_message) as u64
            } else {
                0
            };
            self.decoder.set_hold(hold);
            let Some(chunk) = self.decoder.decode(&mut self.buf)? else {
                return Ok(None);
            };
            let data = &self.buf[..chunk.len];
            if chunk.opcode.is_control() {
                let payload = self.asm.control_payload(data, &chunk)?;
                super::consume(&mut self.buf, chunk.consumed);
                match payload {
                    Some(p) => return Ok(Some(Received::Control(chunk.opcode, p))),
                    None => continue,
                }
            }
            if chunk.first
                && chunk.last
                && chunk.fin
                && chunk.rsv == 0
                && self.asm.incoming.is_none()
            {
                return self.whole_message(&chunk).map(Some);
            }
            let message = self.asm.data_chunk(data, &chunk, compression)?;
            super::consume(&mut self.buf, chunk.consumed);
            if let Some(m) = message {
                return Ok(Some(Received::Message(m)));
            }
        }
    }

    /// Fast path: an unfragmented, uncompressed message that arrived whole
    /// stays in the buffer for `poll`/`poll_ref` to hand out.
    fn whole_message(&mut self, chunk: &Chunk) -> Result<Received, ProtocolError> {
        let kind = match chunk.opcode {
            OpCode::Text => MessageKind::Text,
            OpCode::Binary => MessageKind::Binary,
            _ => return Err(ProtocolError::UnexpectedContinuation),
        };
        if chunk.len > self.asm.max_message {
            return Err(ProtocolError::MessageTooLarge(self.asm.max_message));
        }
        let data = &self.buf[..chunk.len];
        if kind == MessageKind::Text && utf8::validate(data).is_err() {
            if self.asm.strict_utf8 {
                return Err(ProtocolError::InvalidUtf8);
            }
            let text = String::from_utf8_lossy(data).into_owned();
            super::consume(&mut self.buf, chunk.consumed);
            return Ok(Received::Message(Message::text(text)));
        }
        Ok(Received::InPlace(InPlace {
            kind,
            len: chunk.len,
            consumed: chunk.consumed,
        }))
    }
}

impl Assembler {
    /// Collect a control frame's payload (it may arrive across reads).
    fn control_payload(
        &mut self,
        data: &[u8],
        chunk: &Chunk,
    ) -> Result<Option<Bytes>, ProtocolError> {
        if chunk.first && chunk.rsv != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        if chunk.first && chunk.last {
            return Ok(Some(Bytes::copy_from_slice(data)));
        }
        self.frame_buf.extend_from_slice(data);
        Ok(chunk.last.then(|| self.frame_buf.split().freeze()))
    }

    /// A piece of a fragmented or compressed message (or of a frame that
    /// arrives across reads): check, inflate, validate and accumulate it.
    fn data_chunk(
        &mut self,
        data: &[u8],
        chunk: &Chunk,
        compression: &mut Compression,
    ) -> Result<Option<Message>, ProtocolError> {
        if chunk.first {
            self.start_frame(chunk, compression)?;
        }
        let Some(inc) = self.incoming.as_mut() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        inc.wire_len += data.len();
        if inc.wire_len > self.max_message {
            return Err(ProtocolError::MessageTooLarge(self.max_message));
        }
        let before = inc.data.len();
        let limit = self.max_decompressed;
        match compression {
            Compression::PerMessage(pmd) if inc.compressed => {
                pmd.decompress(data, chunk.last && chunk.fin, &mut inc.data, limit)?;
            }
            Compression::PerFrame(df) if self.frame_compressed => {
                if chunk.first && chunk.last {
                    df.decompress(data, &mut inc.data, limit)?;
                } else {
                    self.frame_buf.extend_from_slice(data);
                    if chunk.last {
                        df.decompress(&self.frame_buf, &mut inc.data, limit)?;
                        self.frame_buf.clear();
                    }
                }
            }
            _ => inc.data.extend_from_slice(data),
        }
        if inc.kind == MessageKind::Text && self.strict_utf8 {
            self.utf8
                .feed(&inc.data[before..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if !(chunk.last && chunk.fin) {
            return Ok(None);
        }
        let inc = self.incoming.take().expect("checked above");
        let data = inc.data.freeze();
        Ok(Some(match inc.kind {
            MessageKind::Binary => Message::Binary(data),
            MessageKind::Text if self.strict_utf8 => {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                Message::Text(data)
            }
            // Old drafts replaced invalid sequences instead of failing.
            MessageKind::Text => match utf8::validate(&data) {
                Ok(()) => Message::Text(data),
                Err(_) => Message::text(String::from_utf8_lossy(&data).into_owned()),
            },
        }))
    }

    /// Checks at the start of a data frame: fragment sequencing, reserved
    /// bits against the negotiated extension, and the message size limit.
    fn start_frame(
        &mut self,
        chunk: &Chunk,
        compression: &Compression,
    ) -> Result<(), ProtocolError> {
        let rsv1 = chunk.rsv & 0x40 != 0;
        if chunk.rsv & 0x30 != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let continuation = chunk.opcode == OpCode::Continuation;
        match (compression, rsv1) {
            (_, false) => {}
            (Compression::PerMessage(_), true) if !continuation => {}
            (Compression::PerFrame(_), true) => {}
            _ => return Err(ProtocolError::ReservedBits),
        }
        self.frame_compressed = rsv1 && matches!(compression, Compression::PerFrame(_));
        if continuation {
            if self.incoming.is_none() {
                return Err(ProtocolError::UnexpectedContinuation);
            }
        } else {
            if self.incoming.is_some() {
                return Err(ProtocolError::ExpectedContinuation);
            }
            let kind = if chunk.opcode == OpCode::Text {
                MessageKind::Text
            } else {
                MessageKind::Binary
            };
            self.incoming = Some(Reassembly {
                kind,
                compressed: rsv1 && matches!(compression, Compression::PerMessage(_)),
                data: BytesMut::new(),
                wire_len: 0,
            });
        }
        let so_far = self.incoming.as_ref().map_or(0, |i| i.wire_len) as u64;
        // Sentinel frames announce no length: their first chunk counts.
        let len = chunk.frame_len.unwrap_or(chunk.len as u64);
        if so_far + len > self.max_message as u64 {
            return Err(ProtocolError::MessageTooLarge(self.max_message));
        }
        Ok(())
    }
}
