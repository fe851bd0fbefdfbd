//! Compression extensions: negotiation (the `Sec-WebSocket-Extensions`
//! header) and the per-connection codecs.
//!
//! SKELETON: the types below are the contract with `handshake` and
//! `protocol`; the bodies are filled in by the extensions work.

pub mod deflate;
pub mod deflate_frame;
pub mod deflate_stream;
pub mod permessage_deflate;

use crate::config::ExtensionsConfig;
use crate::draft::Draft;
use crate::error::HandshakeError;

pub use deflate_frame::DeflateFrame;
pub use deflate_stream::DeflateStream;
pub use permessage_deflate::PerMessageDeflate;

/// Parameters agreed for permessage-deflate (RFC 7692).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmdParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// 8..=15
    pub server_max_window_bits: u8,
    /// 8..=15
    pub client_max_window_bits: u8,
}

/// Parameters agreed for deflate-frame / x-webkit-deflate-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateFrameParams {
    /// The name the client used (`deflate-frame` or `x-webkit-deflate-frame`),
    /// echoed in the answer.
    pub webkit_name: bool,
    /// Constrains the server's compressor (from the client's offer).
    pub server_max_window_bits: u8,
    pub server_no_context_takeover: bool,
    /// Constrains the client's compressor (from the server's answer).
    pub client_max_window_bits: u8,
    pub client_no_context_takeover: bool,
}

/// The compression extension in force on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Agreed {
    #[default]
    None,
    PerMessageDeflate(PmdParams),
    DeflateFrame(DeflateFrameParams),
    DeflateStream,
}

/// Server side: choose at most one extension among the client's offers
/// (all `Sec-WebSocket-Extensions` header values of the request, in order).
/// Returns the answer header value (None: no extension) and what was agreed.
/// Invalid or unknown offers are declined, never fatal.
pub fn negotiate_server(
    cfg: &ExtensionsConfig,
    draft: Draft,
    offers: &[&str],
) -> (Option<String>, Agreed) {
    let _ = (cfg, draft, offers);
    (None, Agreed::None)
}

/// Client side: the `Sec-WebSocket-Extensions` value to offer, if any.
pub fn client_offer(cfg: &ExtensionsConfig, draft: Draft) -> Option<String> {
    let _ = (cfg, draft);
    None
}

/// Client side: validate the server's answer (all its
/// `Sec-WebSocket-Extensions` values) against what `client_offer` offered.
pub fn accept_response(
    cfg: &ExtensionsConfig,
    draft: Draft,
    answers: &[&str],
) -> Result<Agreed, HandshakeError> {
    let _ = (cfg, draft, answers);
    Ok(Agreed::None)
}
