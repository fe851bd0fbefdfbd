//! Typed errors: before the upgrade they map to an HTTP status, after it to
//! a close code.

use crate::draft::Draft;

/// A failed opening handshake.
///
/// On the server side [`HandshakeError::status`] is the HTTP answer to send;
/// on the client side the error says why the server's answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("malformed HTTP head: {0}")]
    MalformedHead(String),
    #[error("request head exceeds {0} bytes")]
    HeadTooLarge(usize),
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    #[error("method {0} is not GET")]
    MethodNotGet(String),
    #[error("HTTP version must be 1.1 or later")]
    HttpVersion,
    #[error("not a WebSocket upgrade request: {0}")]
    NotWebSocket(&'static str),
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} occurs more than once")]
    DuplicateHeader(&'static str),
    #[error("invalid {0} header: {1}")]
    InvalidHeader(&'static str, String),
    #[error("unsupported Sec-WebSocket-Version {0:?}")]
    UnsupportedVersion(String),
    #[error("unknown Sec-WebSocket-Draft {0:?}")]
    UnknownDraft(String),
    #[error("draft {0} is disabled")]
    DraftDisabled(Draft),
    #[error("data received before the handshake response")]
    EarlyData,
    #[error("origin {0:?} refused")]
    OriginRefused(String),
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
    #[error("server answered with status {0}")]
    UnexpectedStatus(u16),
    #[error("server answer is invalid: {0}")]
    InvalidResponse(String),
    #[error("handshake challenge answer does not match")]
    ChallengeMismatch,
    #[error("server selected subprotocol {0:?} that was not offered")]
    UnofferedSubprotocol(String),
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
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("control frame is fragmented")]
    FragmentedControl,
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    #[error("frame masking does not match the role")]
    BadMask,
    #[error("64-bit length with the most significant bit set")]
    LengthOverflow,
    #[error("non-minimal length encoding")]
    NonMinimalLength,
    #[error("length varint is too long")]
    BadLengthPrefix,
    #[error("frame type {0:#04x} is not allowed")]
    BadFrameType(u8),
    #[error("frame payload exceeds {0} bytes")]
    FrameTooLarge(usize),
    #[error("message exceeds {0} bytes")]
    MessageTooLarge(usize),
    #[error("decompressed message exceeds {0} bytes")]
    DecompressedTooLarge(usize),
    #[error("invalid UTF-8 in text")]
    InvalidUtf8,
    #[error("invalid UTF-8 in close reason")]
    InvalidCloseReason,
    #[error("close payload of 1 byte")]
    CloseTooShort,
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    #[error("compressed data is invalid: {0}")]
    Compression(String),
    #[error("binary messages, pings and fragments do not exist in {0}")]
    Unsupported(Draft),
}

impl ProtocolError {
    /// The close code a conforming endpoint sends for this violation.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::FrameTooLarge(_)
            | ProtocolError::MessageTooLarge(_)
            | ProtocolError::DecompressedTooLarge(_) => 1009,
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => 1007,
            ProtocolError::Unsupported(_) => 1003,
            _ => 1002,
        }
    }
}

/// A misuse of the sending API (not a peer's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the connection is closing; no more data may be sent")]
    Closed,
    #[error("{0} cannot carry this: {1}")]
    Unsupported(Draft, &'static str),
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    #[error("a fragmented message is already being sent")]
    FragmentInProgress,
    #[error("no fragmented message is being sent")]
    NoFragmentInProgress,
}

/// Any error of the engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Send(#[from] SendError),
}
