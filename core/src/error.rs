//! Typed errors: before the upgrade they map to an HTTP status, after it to
//! a close code.

use crate::draft::Draft;

/// A failed opening handshake.
///
/// On the server side [`HandshakeError::status`] is the HTTP answer to send;
/// on the client side the error says why the server's answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The request or response head is not valid HTTP/1.x (the parser's
    /// complaint, an incomplete start line, or more than 4 empty lines before
    /// it). 400.
    #[error("malformed HTTP head: {0}")]
    MalformedHead(String),
    /// The head is longer than [`Config::max_head_bytes`](crate::Config::max_head_bytes)
    /// (the limit, in bytes); known as soon as that many bytes arrived without
    /// completing it. 431.
    #[error("request head exceeds {0} bytes")]
    HeadTooLarge(usize),
    /// The head has more header lines than
    /// [`Config::max_headers`](crate::Config::max_headers) (the limit). 431.
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    /// The request method (as sent) is not `GET`. 405, with `Allow: GET`.
    #[error("method {0} is not GET")]
    MethodNotGet(String),
    /// The start line is not HTTP/1.1: an HTTP/1.0 request (every draft
    /// requires 1.1) or a version the parser does not know. 400.
    #[error("HTTP version must be 1.1 or later")]
    HttpVersion,
    /// `Upgrade` lacks the `websocket` token or `Connection` lacks `upgrade`
    /// (both compared case-insensitively): a plain HTTP request, perhaps for
    /// another handler. The text says which header. 400.
    #[error("not a WebSocket upgrade request: {0}")]
    NotWebSocket(&'static str),
    /// A required header (named) is absent: `Host`, `Sec-WebSocket-Key`, one of
    /// Key1/Key2, or `Sec-WebSocket-Version` for a request that is neither hybi
    /// nor hixie-75 (a Key without a Version, or no `Origin`); on the client, an
    /// answer header such as `Sec-WebSocket-Accept` or a hixie echo. 400, with
    /// the enabled versions listed when the Version is missing.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header (named) that must occur once occurs several times, e.g.
    /// `Sec-WebSocket-Version`, `Sec-WebSocket-Key` or `Host`. 400.
    #[error("header {0} occurs more than once")]
    DuplicateHeader(&'static str),
    /// A header value (named; the text says what is wrong) is malformed: a key
    /// or nonce that is not the base64 of 16 bytes, a Key1/Key2 that fails the
    /// hixie-76 arithmetic (see
    /// [`KeyError`](crate::handshake::hixie76::KeyError)), a non-numeric
    /// version, a hixie echo that differs; or [`ClientOptions`] that cannot be
    /// written into a request. 400.
    ///
    /// [`ClientOptions`]: crate::handshake::ClientOptions
    #[error("invalid {0} header: {1}")]
    InvalidHeader(&'static str, String),
    /// `Sec-WebSocket-Version` (as sent) is well-formed but none of 4-8 or 13.
    /// The refusal uses [`Config::version_mismatch_status`](crate::Config::version_mismatch_status)
    /// (426 by default) and lists the enabled versions so the client can retry.
    #[error("unsupported Sec-WebSocket-Version {0:?}")]
    UnsupportedVersion(String),
    /// A Key1/Key2 request's `Sec-WebSocket-Draft` (as sent) is not 0-3. 400.
    #[error("unknown Sec-WebSocket-Draft {0:?}")]
    UnknownDraft(String),
    /// The request speaks a draft missing from [`Config::drafts`](crate::Config::drafts).
    /// Versioned drafts (hybi-04 on) are refused like an unsupported version;
    /// hixie and hybi-00..03, which have no version number, get a 400. Both
    /// answers list the enabled versions.
    #[error("draft {0} is disabled")]
    DraftDisabled(Draft),
    /// With [`Strictness::reject_early_data`](crate::Strictness::reject_early_data),
    /// the client sent bytes before our answer (after the head, or after
    /// hixie-76's key3). Otherwise such bytes start the frame stream. 400.
    #[error("data received before the handshake response")]
    EarlyData,
    /// The application refused the origin (as sent), typically from
    /// [`Hooks::check`](crate::handshake::Hooks::check). 403.
    #[error("origin {0:?} refused")]
    OriginRefused(String),
    /// The application refused the request with this HTTP status and reason
    /// text. A status outside 300..=599 is sent as 500.
    #[error("refused: {1}")]
    Refused(u16, String),
    /// The request was not complete when an answer was asked for (for
    /// instance hixie-76's key3 never arrived, which some proxies cause).
    #[error("the request is incomplete")]
    Incomplete,
    // Client side.
    /// Bytes were fed to a handshake that had already completed.
    #[error("the handshake has already completed")]
    Finished,
    /// Client: the answer's status is not 101, e.g. a redirect or a 401
    /// challenge; its headers stay readable through
    /// [`ClientHandshake::response_headers`](crate::handshake::ClientHandshake::response_headers).
    #[error("server answered with status {0}")]
    UnexpectedStatus(u16),
    /// Client: the 101 answer breaks the draft's rules (not HTTP/1.1, `Upgrade`
    /// or `Connection` wrong, hixie-75's 85-byte prefix not exact); the text
    /// says which.
    #[error("server answer is invalid: {0}")]
    InvalidResponse(String),
    /// Client: the server's proof is wrong: `Sec-WebSocket-Accept` is not the
    /// hash of our key (hybi), or hixie-76's 16-byte MD5 body differs.
    #[error("handshake challenge answer does not match")]
    ChallengeMismatch,
    /// The subprotocol chosen (as named) is not one the client offered: on a
    /// client, the server's `Sec-WebSocket-Protocol`; on a server,
    /// [`AcceptOptions::subprotocol`](crate::handshake::AcceptOptions::subprotocol)
    /// (400).
    #[error("server selected subprotocol {0:?} that was not offered")]
    UnofferedSubprotocol(String),
    /// Client: the server's `Sec-WebSocket-Extensions` answer is unacceptable:
    /// an extension not offered or unknown, a second extension, or parameters
    /// that contradict the offer (RFC 7692 §7.1). The text says why.
    #[error("server accepted extension {0:?} that was not offered or is invalid")]
    UnofferedExtension(String),
}

impl HandshakeError {
    /// The HTTP status a server answers with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge(_) | HandshakeError::TooManyHeaders(_) => 431,
            HandshakeError::MethodNotGet(_) => 405,
            HandshakeError::UnsupportedVersion(_) | HandshakeError::DraftDisabled(_) => 426,
            HandshakeError::OriginRefused(_) => 403,
            HandshakeError::Refused(status, _) => *status,
            _ => 400,
        }
    }
}

/// A violation of the protocol after the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An RSV bit that no negotiated extension defines: RSV2/RSV3 always;
    /// RSV1 unless permessage-deflate or deflate-frame is in force, and even
    /// then on a control frame or (permessage-deflate) a continuation; the
    /// RSV4 bit of hybi-01..06. Close 1002.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// An opcode (as received) that the draft's table leaves undefined: 6-F
    /// before hybi-07, 3-7 and B-F from it on. Close 1002.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A close, ping or pong frame that is not final (FIN clear, or MORE set on
    /// hybi-01..03). Close 1002.
    #[error("control frame is fragmented")]
    FragmentedControl,
    /// A control frame announces more than 125 payload bytes. Close 1002.
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    /// A continuation frame while no fragmented message is in progress.
    /// Close 1002.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message still awaits its
    /// continuations. Close 1002.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// hybi-07 on: the MASK bit breaks the receiver's
    /// [`MaskRule`](crate::framing::MaskRule): an unmasked frame at a server
    /// (always on Version 13; on 7/8 with
    /// [`Strictness::require_mask_v7_v8`](crate::Strictness::require_mask_v7_v8)),
    /// or a masked one at a client (Version 13; on 7/8 with
    /// [`Strictness::reject_server_mask_v7_v8`](crate::Strictness::reject_server_mask_v7_v8)).
    /// Close 1002.
    #[error("frame masking does not match the role")]
    BadMask,
    /// A 64-bit payload length of 2^63 or more (its top bit must be 0), refused
    /// before any arithmetic on it. Close 1002.
    #[error("64-bit length with the most significant bit set")]
    LengthOverflow,
    /// With [`Strictness::minimal_length`](crate::Strictness::minimal_length), a
    /// length sent in a longer form than needed: the 16-bit form below 126 or
    /// the 64-bit form below 65536 (e.g. `7E 00 05`). Close 1002.
    #[error("non-minimal length encoding")]
    NonMinimalLength,
    /// hixie: the base-128 length of a length-prefixed frame runs past 9 bytes
    /// and so can never end honestly. Close 1002.
    #[error("length varint is too long")]
    BadLengthPrefix,
    /// hixie, with
    /// [`Strictness::hixie_strict_frame_type`](crate::Strictness::hixie_strict_frame_type):
    /// a sentinel frame whose type byte (given) is not 0x00. By default such
    /// frames are discarded. Close 1002.
    #[error("frame type {0:#04x} is not allowed")]
    BadFrameType(u8),
    /// A frame is longer than [`Config::max_frame_size`](crate::Config::max_frame_size)
    /// (the limit, in bytes): its announced length, or for a hixie sentinel
    /// frame the bytes scanned without finding `0xFF`. Close 1009.
    #[error("frame payload exceeds {0} bytes")]
    FrameTooLarge(usize),
    /// The message, counted on the wire before inflation, is longer than
    /// [`Config::max_message_size`](crate::Config::max_message_size) (the
    /// limit). Checked from each frame's announced length, without waiting
    /// for its payload. Close 1009.
    #[error("message exceeds {0} bytes")]
    MessageTooLarge(usize),
    /// Inflating a message (or the deflate-stream) would produce more than
    /// [`Config::max_decompressed_size`](crate::Config::max_decompressed_size)
    /// (the limit); inflation stops at once, so a decompression bomb never
    /// allocates beyond it. Close 1009.
    #[error("decompressed message exceeds {0} bytes")]
    DecompressedTooLarge(usize),
    /// A text message is not valid UTF-8, detected as soon as the offending
    /// byte arrives. Always on Version 8 and 13; on older drafts only with
    /// [`Strictness::old_drafts_fail_invalid_utf8`](crate::Strictness::old_drafts_fail_invalid_utf8)
    /// (otherwise invalid sequences become U+FFFD). Close 1007.
    #[error("invalid UTF-8 in text")]
    InvalidUtf8,
    /// The reason after a close code is not valid UTF-8. Close 1007.
    #[error("invalid UTF-8 in close reason")]
    InvalidCloseReason,
    /// hybi-06 on: a close payload of exactly one byte, too short for a code.
    /// Close 1002.
    #[error("close payload of 1 byte")]
    CloseTooShort,
    /// hybi-06 on: a received close code (given) that may not appear on the
    /// wire: below 1000, 1005, 1006, 1015, 1016-2999, 5000 and up, 1004 on
    /// Version 13 (valid on hybi-06..08), and 1012-1014 unless
    /// [`Strictness::accept_iana_close_codes`](crate::Strictness::accept_iana_close_codes).
    /// Close 1002.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// Compressed data cannot be inflated (corrupt DEFLATE, or deflate-stream
    /// data after a final block); the text is the inflater's. Close 1002.
    #[error("compressed data is invalid: {0}")]
    Compression(String),
}

impl ProtocolError {
    /// The close code a conforming endpoint sends for this violation.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::FrameTooLarge(_)
            | ProtocolError::MessageTooLarge(_)
            | ProtocolError::DecompressedTooLarge(_) => 1009,
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => 1007,
            _ => 1002,
        }
    }
}

/// A misuse of the sending API (not a peer's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection is no longer [`State::Open`](crate::protocol::State::Open):
    /// we sent a close, the peer's close arrived, or the connection failed.
    #[error("the connection is closing; no more data may be sent")]
    Closed,
    /// The draft (given) cannot carry what was asked (the text says what:
    /// binary messages, ping and pong, fragments); hixie has only whole text
    /// messages.
    #[error("{0} cannot carry this: {1}")]
    Unsupported(Draft, &'static str),
    /// A ping or pong payload over 125 bytes, or a close reason over 123
    /// bytes (2 go to the code): a control frame carries at most 125.
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    /// A close code (given) the draft's table does not allow to be sent, e.g.
    /// 1005, 1006, 1015, or 1004 on RFC 6455.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A whole message, or a fragment of the other kind, while a message
    /// started with [`send_fragment`](crate::Connection::send_fragment) is
    /// unfinished: its frames may not be interleaved with another message's.
    #[error("a fragmented message is already being sent")]
    FragmentInProgress,
    /// A server handle was given the id of no open connection: it never
    /// existed, it ended, or it was aborted.
    #[error("no open connection with this id")]
    Gone,
    /// The bytes queued for the peer would exceed
    /// `ServerConfig::max_send_buffer` (the limit, given): the peer is not
    /// reading. The connection is aborted and reported closed with 1008.
    #[error("send buffer over {0} bytes: the peer is not reading")]
    Overflow(usize),
}

impl SendError {
    /// Whether the caller's argument can never be sent on this connection
    /// ([`ControlTooLong`](Self::ControlTooLong),
    /// [`InvalidCloseCode`](Self::InvalidCloseCode),
    /// [`Unsupported`](Self::Unsupported)), as opposed to a connection
    /// that cannot take it now or any more. Bindings raise their
    /// invalid-argument error for these and their closed-connection answer
    /// for the rest.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            SendError::ControlTooLong | SendError::InvalidCloseCode(_) | SendError::Unsupported(..)
        )
    }
}

/// Any error of the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The opening handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The peer broke the protocol after the upgrade.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The application misused the sending API.
    #[error(transparent)]
    Send(#[from] SendError),
}
