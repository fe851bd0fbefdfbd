//! One configuration struct holding every limit and switch of the engine.
//!
//! Behaviours the old drafts left open are switches here rather than
//! hard-coded choices (docs/PROTOCOL.md, "Strictness switches").

use crate::draft::DraftSet;

/// Every limit and policy switch of the protocol engine.
///
/// A `Config` is shared (behind an `Arc`) by the handshake and by every
/// connection it produces; the defaults pass the Autobahn testsuite and
/// accept every draft.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Largest request (or response) head, request line + headers, in bytes.
    /// Exceeding it is a `431`.
    pub max_head_bytes: usize,
    /// Largest number of header lines in a request or response head.
    pub max_headers: usize,
    /// Largest payload of a single frame (and of a hixie sentinel frame).
    /// Exceeding it closes with 1009.
    pub max_frame_size: usize,
    /// Largest reassembled message, before decompression. 1009 beyond it.
    pub max_message_size: usize,
    /// Largest decompressed message. Inflation stops as soon as it is
    /// crossed (decompression bombs), 1009.
    pub max_decompressed_size: usize,
    /// The drafts a server accepts (all by default).
    pub drafts: DraftSet,
    /// Answer pings with pongs automatically.
    pub auto_pong: bool,
    /// HTTP status for a request whose `Sec-WebSocket-Version` is not
    /// enabled: 426 (default) or 400, both listing the enabled versions.
    pub version_mismatch_status: u16,
    /// Compression extensions offered (client) and accepted (server).
    pub extensions: ExtensionsConfig,
    /// Strictness switches for behaviours the drafts leave open.
    pub strict: Strictness,
}

/// The default largest frame, message and decompressed message: 16 MiB,
/// the largest message the Autobahn testsuite sends (cases 9.x), plus
/// 1 MiB because a client that deflates 16 MiB of incompressible bytes
/// sends a little more. A quarter of what the limits were, so that a client
/// holding a message half-sent costs the server far less (Tornado allows
/// 10 MiB, Python websockets 1 MiB).
const DEFAULT_MAX_MESSAGE: usize = 17 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_frame_size: DEFAULT_MAX_MESSAGE,
            max_message_size: DEFAULT_MAX_MESSAGE,
            max_decompressed_size: DEFAULT_MAX_MESSAGE,
            drafts: DraftSet::ALL,
            auto_pong: true,
            version_mismatch_status: 426,
            extensions: ExtensionsConfig::default(),
            strict: Strictness::default(),
        }
    }
}

/// Which compression extensions are offered (client role) or accepted
/// (server role), and how they compress.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionsConfig {
    /// permessage-deflate (RFC 7692), for Version 7+ (and 4..6 if offered).
    pub permessage_deflate: Option<PerMessageDeflateConfig>,
    /// deflate-frame and x-webkit-deflate-frame (per-frame compression).
    pub deflate_frame: bool,
    /// deflate-stream (whole byte stream deflated, hybi-04..10 era).
    pub deflate_stream: bool,
    /// Messages (or frames, for deflate-frame) shorter than this are sent
    /// uncompressed; compression costs more than it saves on tiny payloads.
    pub compression_threshold: usize,
    /// zlib compression level, 0..=9.
    pub compression_level: u32,
}

impl Default for ExtensionsConfig {
    fn default() -> Self {
        ExtensionsConfig {
            permessage_deflate: Some(PerMessageDeflateConfig::default()),
            deflate_frame: true,
            deflate_stream: true,
            compression_threshold: 0,
            compression_level: 6,
        }
    }
}

/// Our side of permessage-deflate negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerMessageDeflateConfig {
    /// Server: always answer `server_no_context_takeover` (saves memory per
    /// connection). Client: ask for it in the offer.
    pub server_no_context_takeover: bool,
    /// Server: demand `client_no_context_takeover`. Client: announce it.
    pub client_no_context_takeover: bool,
    /// Upper bound for the server's compression window (8..=15).
    pub server_max_window_bits: u8,
    /// Upper bound for the client's compression window (8..=15).
    pub client_max_window_bits: u8,
    /// Server: accept offers that require `server_max_window_bits=8`, using
    /// a compressor that emits no back-references (zlib cannot compress raw
    /// deflate with a 256-byte window). If false, such offers are declined.
    pub accept_window_bits_8: bool,
}

impl Default for PerMessageDeflateConfig {
    fn default() -> Self {
        PerMessageDeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            accept_window_bits_8: true,
        }
    }
}

/// Switches for behaviours that differ between implementations of the old
/// drafts (docs/PROTOCOL.md, "Strictness switches"). The defaults are
/// what real clients need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strictness {
    /// Reject non-minimal length encodings (e.g. `7E 00 05`) with 1002.
    pub minimal_length: bool,
    /// Servers require masked client frames on hybi-07/08 too (Version 13
    /// always requires them).
    pub require_mask_v7_v8: bool,
    /// Clients reject masked server frames on hybi-07/08 (always on 13).
    pub reject_server_mask_v7_v8: bool,
    /// hixie: fail on a sentinel frame whose type byte is not 0x00
    /// (em-websocket) instead of discarding it (pywebsocket).
    pub hixie_strict_frame_type: bool,
    /// Drafts before hybi-10 replaced invalid UTF-8 with U+FFFD instead of
    /// failing. When true those drafts fail with 1007 like the later ones;
    /// when false invalid sequences are replaced.
    pub old_drafts_fail_invalid_utf8: bool,
    /// Accept close codes 1012..=1014 (IANA registry, not in RFC 6455).
    pub accept_iana_close_codes: bool,
    /// Treat a Key1/Key2 request without `Sec-WebSocket-Draft` as hybi-01
    /// instead of hixie-76 (test rigs only).
    pub draftless_key12_as_hybi01: bool,
    /// Abort a handshake when the client sends bytes before our response
    /// (hixie-75, bytes past hixie-76's key3, or any hybi request). When
    /// false those bytes are the start of the frame stream.
    pub reject_early_data: bool,
    /// Require the exact hixie header values (`Upgrade: WebSocket`) rather
    /// than case-insensitive tokens.
    pub hixie_exact_headers: bool,
}

impl Default for Strictness {
    fn default() -> Self {
        Strictness {
            minimal_length: true,
            require_mask_v7_v8: true,
            reject_server_mask_v7_v8: false,
            hixie_strict_frame_type: false,
            old_drafts_fail_invalid_utf8: true,
            accept_iana_close_codes: true,
            draftless_key12_as_hybi01: false,
            reject_early_data: false,
            hixie_exact_headers: false,
        }
    }
}
