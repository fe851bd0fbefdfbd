//! The message layer: one WebSocket connection's protocol state.
//!
//! [`Connection`] sits on the frame codecs and turns chunks into events:
//! it reassembles fragments (with control frames interleaved), validates
//! UTF-8 as bytes arrive, inflates compressed messages within limits,
//! answers pings, and runs the close handshake. Sending calls append
//! encoded frames to an output buffer the I/O layer drains.
//!
//! ```text
//! receive(bytes) ─► [deflate-stream inflate] ─► Decoder ─► chunks ─► poll() ─► Event
//! send_*()  ─► [permessage-deflate / deflate-frame] ─► Encoder ─► [deflate-stream] ─► pending_output()
//! ```

mod close;
mod message;
mod receive;
pub mod rules;

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use crate::config::Config;
use crate::draft::{CloseBody, Draft};
use crate::error::{ProtocolError, SendError};
use crate::extensions::{Agreed, DeflateFrame, DeflateStream, PerMessageDeflate};
use crate::framing::{Decoder, DecoderOptions, Encoder, OpCode};
use crate::handshake::Completed;
use crate::session::{Role, Session};
use receive::{InPlace, Received, Receiver};

pub use close::{CloseFrame, ABNORMAL, NO_STATUS};
pub use message::{Incoming, Message, PreparedMessage};

/// What the peer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete data message: reassembled from its fragments, inflated,
    /// and for text UTF-8 validated.
    Message(Message),
    /// Already answered with a pong when `Config::auto_pong` is on.
    Ping(Bytes),
    /// A pong: the answer to a ping of ours, or an unsolicited heartbeat.
    /// Nothing to do.
    Pong(Bytes),
    /// The peer's close frame (already answered), or the end of a
    /// connection that dropped (see [`Connection::receive_eof`]).
    Close(CloseFrame),
}

/// An event whose message may borrow the connection's receive buffer (see
/// [`Connection::poll_ref`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventRef<'a> {
    /// A text message that arrived in one frame, lent in place.
    Text(&'a str),
    /// A binary message that arrived in one frame, lent in place.
    Binary(&'a [u8]),
    /// Any other event, owned.
    Event(Event),
}

impl EventRef<'_> {
    /// The owned event (copies a lent message).
    pub fn into_owned(self) -> Event {
        match self {
            EventRef::Text(t) => Event::Message(Message::text(t)),
            EventRef::Binary(b) => Event::Message(Message::binary(Bytes::copy_from_slice(b))),
            EventRef::Event(e) => e,
        }
    }
}

/// What [`Connection::poll_lending`] produced: data messages go to its
/// callback, so only the callback's answer and control events come out.
#[derive(Debug)]
pub enum Polled<R> {
    /// A data message went to the callback, which returned this.
    Message(R),
    /// As [`Event::Ping`].
    Ping(Bytes),
    /// As [`Event::Pong`].
    Pong(Bytes),
    /// As [`Event::Close`].
    Close(CloseFrame),
}

/// What the receive path produced.
enum Step {
    /// A whole message at the front of the decode buffer.
    InPlace(InPlace),
    Event(Event),
}

/// Data messages and their payload bytes through a connection, each way
/// (control frames aside). Kept by the engine because every message of
/// every face passes through it; servers add them up for their metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Whole messages received.
    pub messages_in: u64,
    /// Their payload bytes (after decompression).
    pub bytes_in: u64,
    /// Whole messages sent (a fragmented one when its last fragment goes).
    pub messages_out: u64,
    /// Payload bytes sent (before compression).
    pub bytes_out: u64,
}

/// Where the close handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways; the initial state.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// Both closes exchanged, or the connection failed: once the pending
    /// output is written, close the TCP connection.
    Closed,
}

/// Kind of data message, for fragmented sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Text: the fragments together must be valid UTF-8.
    Text,
    /// Binary (hybi-01 and later).
    Binary,
}

impl MessageKind {
    /// A message of this kind with `data` as its payload.
    fn message(self, data: Bytes) -> Message {
        match self {
            MessageKind::Text => Message::Text(data),
            MessageKind::Binary => Message::Binary(data),
        }
    }

    fn opcode(self) -> OpCode {
        match self {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        }
    }
}

/// Per-message or per-frame compression in force.
pub(crate) enum Compression {
    None,
    PerMessage(Box<PerMessageDeflate>),
    PerFrame(Box<DeflateFrame>),
}

/// Messages from this size on are written from their own buffer (a
/// vectored write) rather than copied into the output buffer.
const SHARE_MIN: usize = 32 * 1024;

/// deflate-stream: both directions of the byte stream are deflated.
struct Stream {
    codec: DeflateStream,
    /// Received bytes not yet inflated.
    raw: BytesMut,
    /// Deflated bytes waiting to be written.
    deflated: BytesMut,
}

/// One WebSocket connection's protocol state, for either role and any
/// draft. Sans-I/O: [`receive`](Self::receive) bytes, [`poll`](Self::poll)
/// events, call `send_*`, write [`pending_output`](Self::pending_output).
///
/// Fields are laid out in the order written (`repr(C)`): what every message
/// reads or writes first, then the receiver (its hot fields first too),
/// then what only closing and the handshake's results need. A server with
/// many connections meets each one's state outside the CPU caches, so the
/// cache lines a message touches count.
#[repr(C)]
pub struct Connection {
    /// Encoded frames not yet written (before deflate-stream).
    output: BytesMut,
    /// Output written before `output`: large payloads sent from the
    /// caller's own buffer (and what was encoded before them), so that a
    /// big message is not copied into `output`. Empty under deflate-stream.
    shared: VecDeque<Bytes>,
    stream: Option<Box<Stream>>,
    compression: Compression,
    config: Arc<Config>,
    encoder: Encoder,
    state: State,
    /// The kind of the fragmented message being sent, if any.
    sending: Option<MessageKind>,
    /// The close handshake completed (both close frames, or hixie-75's TCP close).
    clean: bool,
    /// Compression output, reused between messages (only its capacity is
    /// read otherwise).
    scratch: BytesMut,
    rx: Receiver,
    tally: Tally,
    session: Session,
    /// The reason text of the close frame sent on a protocol violation.
    failure_reason: fn(&ProtocolError) -> String,
}

// Layout guards (64-bit targets): a field added or moved changes these
// numbers and fails the build instead of silently pushing what every
// message touches onto another cache line. Change them only together with
// a layout that still keeps the hot fields together.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Connection>() == 528);
    // Output, encoder and state: the first two cache lines.
    assert!(offset_of!(Connection, encoder) == 96);
    assert!(offset_of!(Connection, state) == 120);
    assert!(offset_of!(Connection, clean) == 122);
    assert!(offset_of!(Connection, scratch) == 128);
    // The receiver's hot fields follow (see `Receiver`); then the cold ones.
    assert!(offset_of!(Connection, rx) == 160);
    assert!(offset_of!(Connection, tally) == 432);
    assert!(offset_of!(Connection, session) == 464);
};

impl Connection {
    /// A connection speaking what `session` agreed on.
    ///
    /// A hybi-04 session must carry its connection mask key; sessions built
    /// by hand without one (tests) use the all-zero key on both sides. An
    /// extension on a draft older than hybi-04 is ignored: no handshake can
    /// agree on one there.
    pub fn new(config: Arc<Config>, session: Session) -> Self {
        let draft = session.draft;
        let role = session.role;
        let options = DecoderOptions::new(&config, role, draft);
        let key = session.hybi04_mask_key;
        let level = config.extensions.compression_level;
        // Drafts before hybi-04 cannot negotiate extensions (the sentinel
        // framing has no RSV1): a hand-built session that claims one gets none.
        let agreed = if draft.has_extensions() {
            session.extensions
        } else {
            Agreed::None
        };
        let (compression, stream) = match &agreed {
            Agreed::None => (Compression::None, None),
            Agreed::PerMessageDeflate(p) => (
                Compression::PerMessage(Box::new(PerMessageDeflate::new(p, role, level))),
                None,
            ),
            Agreed::DeflateFrame(p) => (
                Compression::PerFrame(Box::new(DeflateFrame::new(p, role, level))),
                None,
            ),
            Agreed::DeflateStream => (
                Compression::None,
                Some(Box::new(Stream {
                    codec: DeflateStream::new(level),
                    raw: BytesMut::new(),
                    deflated: BytesMut::new(),
                })),
            ),
        };
        let strict_utf8 = draft >= Draft::Hybi08 || config.strict.old_drafts_fail_invalid_utf8;
        Connection {
            rx: Receiver::new(
                Decoder::new(draft, role, options, key),
                &config,
                strict_utf8,
            ),
            encoder: Encoder::new(draft, role, key),
            config,
            session,
            compression,
            stream,
            shared: VecDeque::new(),
            output: BytesMut::new(),
            scratch: BytesMut::new(),
            sending: None,
            tally: Tally::default(),
            state: State::Open,
            clean: false,
            failure_reason: close::failure_reason,
        }
    }

    /// Choose the reason text of the close frame sent when the peer
    /// violates the protocol (default: the error's text, e.g. "message
    /// exceeds 1024 bytes"). For bindings that must reproduce another
    /// library's wording (Tornado says "message too big"). The text is cut
    /// to the 123 bytes a close frame can carry.
    pub fn set_failure_reason(&mut self, reason: fn(&ProtocolError) -> String) {
        self.failure_reason = reason;
    }

    /// The connection a completed handshake agreed on, with the bytes that
    /// followed the handshake already received.
    pub fn from_completed(config: Arc<Config>, completed: Completed) -> Self {
        let mut conn = Connection::new(config, completed.session);
        // An empty leftover would keep the handshake buffer's capacity.
        if !completed.leftover.is_empty() {
            *conn.receive_buffer() = completed.leftover;
        }
        conn
    }

    /// What the handshake agreed on: role, draft, subprotocol, extension.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Messages and payload bytes received and sent so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// The negotiated draft, which fixes framing, masking and close rules.
    pub fn draft(&self) -> Draft {
        self.session.draft
    }

    /// Whether this end is the server or the client (who masks).
    pub fn role(&self) -> Role {
        self.session.role
    }

    /// Where the close handshake stands. Once [`State::Closed`], write the
    /// pending output and close the TCP connection.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the close handshake completed cleanly.
    pub fn close_was_clean(&self) -> bool {
        self.clean
    }

    // ---------------------------------------------------------------- input

    /// Hand over bytes read from the peer. Call [`poll`](Self::poll) next.
    pub fn receive(&mut self, data: &[u8]) {
        if self.state != State::Closed {
            self.receive_buffer().extend_from_slice(data);
        }
    }

    /// Bytes known to be on their way: the rest of a whole binary frame
    /// being held in the receive buffer. An I/O layer may read that much
    /// straight into [`receive_buffer`](Self::receive_buffer) (0: read as
    /// usual).
    pub fn awaited_bytes(&self) -> usize {
        if self.stream.is_some() {
            return 0;
        }
        self.rx.awaited()
    }

    /// The receive buffer, for I/O layers that read straight into it
    /// (avoids a copy); equivalent to [`receive`](Self::receive).
    #[inline]
    pub fn receive_buffer(&mut self) -> &mut BytesMut {
        self.rx.consume_lent();
        match &mut self.stream {
            Some(s) => &mut s.raw,
            None => &mut self.rx.buf,
        }
    }

    /// The peer closed its end of the TCP connection. Returns the close to
    /// report if the close handshake had not completed: 1006 (abnormal),
    /// except on hixie-75 where closing TCP is the normal close (1005).
    pub fn receive_eof(&mut self) -> Option<Event> {
        if self.state == State::Closed {
            return None;
        }
        self.state = State::Closed;
        let code = if self.session.draft.has_close_frame() {
            ABNORMAL
        } else {
            self.clean = true;
            NO_STATUS
        };
        Some(Event::Close(CloseFrame {
            code,
            reason: String::new(),
        }))
    }

    /// The next event from the bytes received so far; `Ok(None)` when more
    /// bytes are needed. A protocol violation is returned once, after the
    /// close frame with the matching code was queued; the connection is
    /// then [`State::Closed`].
    ///
    /// A message that arrived in one frame is split off the receive buffer
    /// without copying.
    pub fn poll(&mut self) -> Result<Option<Event>, ProtocolError> {
        Ok(match self.next()? {
            None => None,
            Some(Step::InPlace(at)) => {
                let data = self.rx.buf.split_to(at.len).freeze();
                consume(&mut self.rx.buf, at.consumed - at.len);
                Some(Event::Message(at.kind.message(data)))
            }
            Some(Step::Event(e)) => Some(e),
        })
    }

    /// Like [`poll`](Self::poll), but every data message goes to
    /// `on_message` with the connection (to answer it), and one that arrived
    /// in one frame is lent from the receive buffer: no reference counting,
    /// and the buffer is reused in place for what comes next. Returns what
    /// `on_message` returned, or the other events.
    #[inline]
    pub fn poll_lending<R>(
        &mut self,
        on_message: impl FnOnce(&mut Connection, Incoming<'_>) -> R,
    ) -> Result<Option<Polled<R>>, ProtocolError> {
        Ok(match self.next()? {
            None => None,
            Some(Step::InPlace(at)) => {
                // Moved out for the call, so that the message borrows it
                // while `on_message` has the connection.
                let mut buf = std::mem::take(&mut self.rx.buf);
                let before = buf.len();
                let r = on_message(self, Incoming::lent(at.kind, &mut buf, at.len));
                // `into_message` may have split the payload off already.
                let split_off = before - buf.len();
                consume(&mut buf, at.consumed - split_off);
                let arrived = std::mem::replace(&mut self.rx.buf, buf);
                if !arrived.is_empty() {
                    self.rx.buf.extend_from_slice(&arrived);
                }
                Some(Polled::Message(r))
            }
            Some(Step::Event(event)) => Some(match event {
                Event::Message(m) => Polled::Message(on_message(self, Incoming::owned(m))),
                Event::Ping(data) => Polled::Ping(data),
                Event::Pong(data) => Polled::Pong(data),
                Event::Close(frame) => Polled::Close(frame),
            }),
        })
    }

    /// Like [`poll`](Self::poll), but a message that arrived in one frame
    /// is lent straight from the receive buffer (no copy, no reference
    /// counting) until the next call on the connection. For bindings that
    /// copy payloads into their own objects anyway.
    pub fn poll_ref(&mut self) -> Result<Option<EventRef<'_>>, ProtocolError> {
        Ok(match self.next()? {
            None => None,
            Some(Step::InPlace(at)) => {
                self.rx.lent = at.consumed;
                let data = &self.rx.buf[..at.len];
                Some(match at.kind {
                    // SAFETY: the receiver returns a text message in place
                    // only when `utf8::validate` accepted its whole payload
                    // (one with invalid sequences fails the connection, or
                    // on lenient drafts is replaced and returned owned).
                    MessageKind::Text => {
                        EventRef::Text(unsafe { std::str::from_utf8_unchecked(data) })
                    }
                    MessageKind::Binary => EventRef::Binary(data),
                })
            }
            Some(Step::Event(e)) => Some(EventRef::Event(e)),
        })
    }

    /// The next received item; control frames are acted on here.
    #[inline]
    fn next(&mut self) -> Result<Option<Step>, ProtocolError> {
        self.rx.consume_lent();
        if self.state == State::Closed {
            self.rx.clear();
            return Ok(None);
        }
        if let Err(e) = self.inflate_stream() {
            return Err(self.fail(e));
        }
        // Nothing left to decode: the usual end of a batch.
        if self.rx.buf.is_empty() {
            return Ok(None);
        }
        let step = match self.rx.next(&mut self.compression) {
            Ok(None) => return Ok(None),
            Ok(Some(Received::InPlace(at))) => {
                self.tally.messages_in += 1;
                self.tally.bytes_in += at.len as u64;
                Step::InPlace(at)
            }
            Ok(Some(Received::Message(m))) => {
                self.tally.messages_in += 1;
                self.tally.bytes_in += m.data().len() as u64;
                Step::Event(Event::Message(m))
            }
            Ok(Some(Received::Control(opcode, payload))) => {
                match self.on_control(opcode, payload) {
                    Ok(event) => Step::Event(event),
                    Err(e) => return Err(self.fail(e)),
                }
            }
            Err(e) => return Err(self.fail(e)),
        };
        Ok(Some(step))
    }

    /// deflate-stream: inflate what arrived into the decode buffer.
    #[inline]
    fn inflate_stream(&mut self) -> Result<(), ProtocolError> {
        match &self.stream {
            Some(s) if !s.raw.is_empty() => self.inflate_stream_now(),
            _ => Ok(()),
        }
    }

    #[cold]
    fn inflate_stream_now(&mut self) -> Result<(), ProtocolError> {
        if let Some(s) = &mut self.stream {
            let limit = self.config.max_decompressed_size;
            s.codec.decompress(&s.raw, &mut self.rx.buf, limit)?;
            s.raw.clear();
        }
        Ok(())
    }

    fn on_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<Event, ProtocolError> {
        match opcode {
            OpCode::Ping => {
                if self.config.auto_pong && self.state == State::Open {
                    self.encoder
                        .encode(OpCode::Pong, true, 0, &payload, &mut self.output);
                }
                Ok(Event::Ping(payload))
            }
            OpCode::Pong => Ok(Event::Pong(payload)),
            _ => self.on_close(payload),
        }
    }

    fn on_close(&mut self, payload: Bytes) -> Result<Event, ProtocolError> {
        let rules = self.session.draft.close_body();
        let (frame, reply) =
            close::parse(rules, &payload, self.config.strict.accept_iana_close_codes)?;
        if self.state == State::Open {
            self.encoder
                .encode(OpCode::Close, true, 0, &reply, &mut self.output);
        }
        self.state = State::Closed;
        self.clean = true;
        self.rx.abandon_message();
        Ok(Event::Close(frame))
    }

    /// Fail the connection: queue a close with the error's code (when the
    /// draft has close frames and we have not closed yet) and stop.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        if self.state == State::Open && self.session.draft.has_close_frame() {
            let rules = self.session.draft.close_body();
            let reason = close::fit_reason((self.failure_reason)(&error));
            let payload = close::build(rules, Some(error.close_code()), &reason)
                .unwrap_or_else(|_| BytesMut::new());
            self.encoder
                .encode(OpCode::Close, true, 0, &payload, &mut self.output);
        }
        self.state = State::Closed;
        self.rx.clear();
        if let Some(s) = &mut self.stream {
            s.raw.clear();
        }
        error
    }

    // --------------------------------------------------------------- output

    /// Every byte waiting to be written to the peer, as one slice
    /// (deflated first under deflate-stream, one sync flush per call).
    /// Large messages queued from their own buffer are copied behind the
    /// rest for this; [`output_slices`](Self::output_slices) hands them
    /// out without the copy.
    pub fn pending_output(&mut self) -> &[u8] {
        if !self.shared.is_empty() {
            self.gather_shared();
        }
        match &mut self.stream {
            None => &self.output,
            Some(s) => {
                if !self.output.is_empty() {
                    s.codec.compress(&self.output, &mut s.deflated);
                    self.output.clear();
                }
                &s.deflated
            }
        }
    }

    /// Move the shared pieces and `output` into one buffer, in order.
    #[cold]
    fn gather_shared(&mut self) {
        let len = self.shared.iter().map(Bytes::len).sum::<usize>() + self.output.len();
        let mut all = BytesMut::with_capacity(len);
        for piece in self.shared.drain(..) {
            all.extend_from_slice(&piece);
        }
        all.extend_from_slice(&self.output);
        self.output = all;
    }

    /// Fill `dst` with the pending output in order, for a vectored write;
    /// returns how many slices were filled, which may be fewer than there
    /// are pieces when `dst` is short (write, advance, ask again). A large
    /// message sent whole is written from its own buffer this way instead
    /// of being copied.
    pub fn output_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        if self.shared.is_empty() {
            let out = self.pending_output();
            if out.is_empty() || dst.is_empty() {
                return 0;
            }
            dst[0] = IoSlice::new(out);
            return 1;
        }
        let pieces = self.shared.iter().map(|b| &b[..]);
        let tail = std::iter::once(&self.output[..]).filter(|t| !t.is_empty());
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(pieces.chain(tail)) {
            *slot = IoSlice::new(piece);
            n += 1;
        }
        n
    }

    /// Mark `n` bytes of the pending output written (from
    /// [`pending_output`](Self::pending_output) or
    /// [`output_slices`](Self::output_slices)).
    pub fn advance_output(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.shared.front_mut() else {
                break;
            };
            let step = n.min(front.len());
            front.advance(step);
            n -= step;
            if front.is_empty() {
                self.shared.pop_front();
            }
        }
        match &mut self.stream {
            None => consume(&mut self.output, n),
            Some(s) => consume(&mut s.deflated, n),
        }
    }

    /// Take every pending output byte at once (the output buffer goes
    /// with them: for a caller that keeps the bytes, e.g. queued in a
    /// socket library; [`pending_output`](Self::pending_output) and
    /// [`advance_output`](Self::advance_output) keep it for reuse).
    pub fn take_output(&mut self) -> Bytes {
        self.pending_output();
        match &mut self.stream {
            None => self.output.split().freeze(),
            Some(s) => s.deflated.split().freeze(),
        }
    }

    /// Take up to `max` bytes from the front of the pending output as
    /// `Bytes`, without copying: for a transport that keeps what it sends
    /// (an HTTP/2 stream). Returns less when the front piece is shorter
    /// (a large message queued from its own buffer); call again for the
    /// rest. The output buffer's allocation goes with its bytes.
    pub fn split_output(&mut self, max: usize) -> Bytes {
        if let Some(front) = self.shared.front_mut() {
            let piece = front.split_to(max.min(front.len()));
            if front.is_empty() {
                self.shared.pop_front();
            }
            return piece;
        }
        self.pending_output();
        let out = match &mut self.stream {
            None => &mut self.output,
            Some(s) => &mut s.deflated,
        };
        out.split_to(max.min(out.len())).freeze()
    }

    /// Whether there are bytes to write, i.e. whether
    /// [`pending_output`](Self::pending_output) would return any.
    pub fn has_output(&self) -> bool {
        !self.shared.is_empty()
            || !self.output.is_empty()
            || self.stream.as_ref().is_some_and(|s| !s.deflated.is_empty())
    }

    /// How many bytes are waiting to be written (before deflate-stream's
    /// compression of the newest ones).
    pub fn output_len(&self) -> usize {
        self.shared.iter().map(Bytes::len).sum::<usize>()
            + self.output.len()
            + self.stream.as_ref().map_or(0, |s| s.deflated.len())
    }

    /// Bytes this connection holds on the peer's behalf: received and not
    /// yet handed out (a partial or held frame, a message being reassembled
    /// or inflated, under deflate-stream what is not inflated yet) and
    /// output not yet written. A large output piece shared with other
    /// connections (a prepared broadcast frame) counts only once it is
    /// this connection's alone. For server-wide memory budgets: after a
    /// message that arrived whole and was answered at once it is 0.
    #[inline]
    pub fn buffered_bytes(&self) -> usize {
        let received = self.rx.buffered();
        let output = self.output.len();
        if self.shared.is_empty() && self.stream.is_none() {
            return received + output;
        }
        received + output + self.buffered_rest()
    }

    #[cold]
    fn buffered_rest(&self) -> usize {
        let shared: usize = self
            .shared
            .iter()
            .filter(|piece| piece.is_unique())
            .map(Bytes::len)
            .sum();
        shared
            + self
                .stream
                .as_ref()
                .map_or(0, |s| s.raw.len() + s.deflated.len())
    }

    /// Give up on the peer for a reason of our own (a server's memory
    /// budget): drop everything received and not yet written, queue a close
    /// with `code` and `reason` when the draft has close frames and nothing
    /// was left half-written before it, and stop ([`State::Closed`]). An
    /// invalid code (for the draft) sends the close without a status.
    pub fn abort(&mut self, code: u16, reason: &str) {
        let half_written = self.has_output();
        self.rx.clear();
        self.rx.buf = BytesMut::new();
        self.shared.clear();
        self.output = BytesMut::new();
        if let Some(s) = &mut self.stream {
            s.raw = BytesMut::new();
            s.deflated = BytesMut::new();
        }
        if self.state == State::Open && !half_written && self.session.draft.has_close_frame() {
            let rules = self.session.draft.close_body();
            let payload = close::build(rules, Some(code), reason)
                .or_else(|_| close::build(rules, None, ""))
                .unwrap_or_else(|_| BytesMut::new());
            self.encoder
                .encode(OpCode::Close, true, 0, &payload, &mut self.output);
        }
        self.state = State::Closed;
    }

    /// Queue `payload` to be written from its own buffer, after everything
    /// encoded so far.
    fn push_shared(&mut self, payload: Bytes) {
        if !self.output.is_empty() {
            self.shared.push_back(self.output.split().freeze());
        }
        self.shared.push_back(payload);
    }

    /// Give back the memory of empty buffers larger than `keep` bytes (the
    /// receive, output and compression buffers), so that a connection that
    /// once carried a large message does not pin that memory while idle.
    /// Called after every read and write: the usual case is one comparison
    /// per buffer.
    #[inline]
    pub fn release_buffers(&mut self, keep: usize) {
        let large = self
            .rx
            .buf
            .capacity()
            .max(self.output.capacity())
            .max(self.scratch.capacity());
        if large > keep || self.stream.is_some() {
            self.release_large_buffers(keep);
        }
    }

    /// Drop our compressor if it keeps no context between messages (our
    /// side of permessage-deflate or deflate-frame agreed to
    /// no_context_takeover): it is most of a compressing connection's
    /// memory (a few hundred KiB), and a new one, made for the next
    /// message, compresses it the same. For an I/O loop to call once the
    /// connection has been quiet for a while, not per message.
    pub fn release_compressor(&mut self) {
        match &mut self.compression {
            Compression::None => {}
            Compression::PerMessage(c) => c.release_compressor(),
            Compression::PerFrame(c) => c.release_compressor(),
        }
    }

    #[cold]
    fn release_large_buffers(&mut self, keep: usize) {
        fn release(buf: &mut BytesMut, keep: usize) {
            if buf.is_empty() && buf.capacity() > keep {
                *buf = BytesMut::new();
            }
        }
        if self.rx.lent == 0 {
            release(&mut self.rx.buf, keep);
        }
        release(&mut self.output, keep);
        release(&mut self.scratch, keep);
        if let Some(s) = &mut self.stream {
            release(&mut s.raw, keep);
            release(&mut s.deflated, keep);
        }
    }

    fn ensure_open(&self) -> Result<(), SendError> {
        if self.state == State::Open {
            Ok(())
        } else {
            Err(SendError::Closed)
        }
    }

    /// Send a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_data(MessageKind::Text, text.as_bytes(), None)
    }

    /// Send a binary message (hybi-01 and later).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_data(MessageKind::Binary, data, None)
    }

    /// Send a text or binary message. A [`Message::Text`] is sent as it is,
    /// without UTF-8 validation.
    pub fn send(&mut self, message: &Message) -> Result<(), SendError> {
        self.send_data(message.kind(), message.data(), Some(message.data()))
    }

    /// Send a received message on (an echo, a relay): a large one is sent
    /// from the buffer it arrived in, a small one copied.
    pub fn forward(&mut self, message: Incoming<'_>) -> Result<(), SendError> {
        if message.data().len() >= SHARE_MIN {
            return self.send(&message.into_message());
        }
        self.send_data(message.kind(), message.data(), None)
    }

    /// Send one whole message. With `shared` (the payload as `Bytes`), a
    /// large unmasked, uncompressed frame is written from that buffer
    /// instead of being copied into the output.
    fn send_data(
        &mut self,
        kind: MessageKind,
        payload: &[u8],
        shared: Option<&Bytes>,
    ) -> Result<(), SendError> {
        self.ensure_open()?;
        rules::check_message(self.session.draft, kind)?;
        let opcode = kind.opcode();
        if self.sending.is_some() {
            return Err(SendError::FragmentInProgress);
        }
        self.count_out(payload.len(), true);
        if let Some(bytes) = shared.filter(|b| b.len() >= SHARE_MIN && self.stream.is_none()) {
            let compressed = !matches!(self.compression, Compression::None)
                && bytes.len() >= self.config.extensions.compression_threshold;
            if !compressed
                && self
                    .encoder
                    .encode_header(opcode, true, 0, bytes.len(), &mut self.output)
            {
                self.push_shared(bytes.clone());
                return Ok(());
            }
        }
        self.encode_data(opcode, true, payload, true);
        Ok(())
    }

    /// Encode one data frame, compressing it when an extension is in force
    /// and the payload reaches the threshold. `whole` marks a complete
    /// message (permessage-deflate compresses only those).
    fn encode_data(&mut self, opcode: OpCode, fin: bool, payload: &[u8], whole: bool) {
        let big = payload.len() >= self.config.extensions.compression_threshold;
        let compressed = match &mut self.compression {
            Compression::PerMessage(pmd) if big && whole => {
                pmd.compress(payload, &mut self.scratch);
                true
            }
            Compression::PerFrame(df) if big => {
                df.compress(payload, &mut self.scratch);
                true
            }
            _ => false,
        };
        if compressed {
            self.encoder
                .encode(opcode, fin, 0x40, &self.scratch, &mut self.output);
            self.scratch.clear();
        } else {
            self.encoder
                .encode(opcode, fin, 0, payload, &mut self.output);
        }
    }

    /// Send one fragment of a message of `kind`; the first call starts the
    /// message, `fin` ends it. Control frames may be sent in between.
    /// permessage-deflate sends fragmented messages uncompressed.
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        self.ensure_open()?;
        rules::check_message(self.session.draft, kind)?;
        let opcode = match self.sending {
            None => kind.opcode(),
            Some(k) if k == kind => OpCode::Continuation,
            Some(_) => return Err(SendError::FragmentInProgress),
        };
        // The hixie drafts have no fragments: only a whole message goes.
        let whole = fin && opcode != OpCode::Continuation;
        if !(whole || self.session.draft.has_binary()) {
            return Err(SendError::Unsupported(self.session.draft, "fragments"));
        }
        self.encode_data(opcode, fin, data, false);
        self.count_out(data.len(), fin);
        self.sending = if fin { None } else { Some(kind) };
        Ok(())
    }

    /// Send a message encoded once for many connections. Server frames are
    /// copied as they are; a client re-encodes (every client frame gets a
    /// fresh mask).
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), SendError> {
        if self.session.role == Role::Client {
            return self.send(prepared.message());
        }
        self.ensure_open()?;
        if self.sending.is_some() {
            return Err(SendError::FragmentInProgress);
        }
        rules::check_message(self.session.draft, prepared.message().kind())?;
        self.count_out(prepared.message().data().len(), true);
        let frame = prepared
            .server_frame(self.session.draft)
            .expect("checked: the draft carries the message");
        if frame.len() >= SHARE_MIN && self.stream.is_none() {
            self.push_shared(frame.clone());
        } else {
            self.output.extend_from_slice(frame);
        }
        Ok(())
    }

    #[inline]
    fn count_out(&mut self, payload: usize, whole: bool) {
        self.tally.messages_out += whole as u64;
        self.tally.bytes_out += payload as u64;
    }

    /// Send a ping (hybi-01 and later), payload up to 125 bytes.
    pub fn send_ping(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, data)
    }

    /// Send an unsolicited pong (a heartbeat), payload up to 125 bytes.
    pub fn send_pong(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, data)
    }

    fn send_control(&mut self, opcode: OpCode, data: &[u8]) -> Result<(), SendError> {
        self.ensure_open()?;
        rules::check_control(self.session.draft, data.len())?;
        self.encoder.encode(opcode, true, 0, data, &mut self.output);
        Ok(())
    }

    /// Start the close handshake. `code` is checked against the draft's
    /// code table (`None`: no status); drafts whose close body is opaque
    /// send an empty one. hixie-75 has no close frame: the connection is
    /// closed at once (close TCP after writing the pending output).
    pub fn close(&mut self, code: Option<u16>, reason: &str) -> Result<(), SendError> {
        self.ensure_open()?;
        if !self.session.draft.has_close_frame() {
            self.state = State::Closed;
            self.clean = true;
            return Ok(());
        }
        let rules = self.session.draft.close_body();
        let payload = close::build(rules, code, reason)?;
        self.encoder
            .encode(OpCode::Close, true, 0, &payload, &mut self.output);
        self.state = State::Closing;
        Ok(())
    }

    /// The close code table of this connection's draft.
    pub fn close_rules(&self) -> CloseBody {
        self.session.draft.close_body()
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("session", &self.session)
            .field("state", &self.state)
            .field("buffered_in", &self.rx.buf.len())
            .field("buffered_out", &self.output.len())
            .finish_non_exhaustive()
    }
}

/// Remove `n` bytes from the front of `buf`. A buffer emptied this way is
/// cleared instead, keeping its start: the next append then fits in place
/// without `BytesMut` reclaiming the consumed front first.
#[inline]
pub(crate) fn consume(buf: &mut BytesMut, n: usize) {
    if n == buf.len() {
        buf.clear();
    } else {
        buf.advance(n);
    }
}
