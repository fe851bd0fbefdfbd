//! Compression extensions: negotiation (the `Sec-WebSocket-Extensions`
//! header) and the per-connection codecs.
//!
//! At most one extension is in force on a connection: permessage-deflate,
//! deflate-frame and deflate-stream all claim RSV1 (or the whole stream).
//! The server picks the first acceptable offer in the client's order and
//! declines everything it cannot honour; the client checks the answer
//! strictly against what it offered.

pub(crate) mod deflate;
pub mod deflate_frame;
pub mod deflate_stream;
mod header;
pub mod permessage_deflate;

use crate::config::{ExtensionsConfig, PerMessageDeflateConfig};
use crate::draft::Draft;
use crate::error::HandshakeError;
use crate::session::Role;
use header::{parse_list, read_params, Arity, Element, ElementWriter};

pub use deflate_frame::DeflateFrame;
pub use deflate_stream::DeflateStream;
pub use permessage_deflate::PerMessageDeflate;

/// Parameters agreed for permessage-deflate (RFC 7692).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmdParams {
    /// The server resets its compressor after every message: its messages
    /// never refer back to earlier ones, and can be inflated on their own.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
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
    /// The server resets its compressor after every frame (from the
    /// client's offer).
    pub server_no_context_takeover: bool,
    /// Constrains the client's compressor (from the server's answer).
    pub client_max_window_bits: u8,
    /// The client resets its compressor after every frame (from the
    /// server's answer).
    pub client_no_context_takeover: bool,
}

/// The compression extension in force on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Agreed {
    /// No compression: every RSV bit must stay clear.
    #[default]
    None,
    /// permessage-deflate (RFC 7692): RSV1 on a message's first frame marks
    /// the whole message compressed.
    PerMessageDeflate(PmdParams),
    /// deflate-frame / x-webkit-deflate-frame: RSV1 marks each compressed
    /// frame, continuations included.
    DeflateFrame(DeflateFrameParams),
    /// deflate-stream (Versions 4-8): the whole byte stream in each
    /// direction, frame headers included, is one raw DEFLATE stream. No
    /// parameters.
    DeflateStream,
}

impl Agreed {
    /// The extension's registered name (`deflate-frame` also when it was
    /// agreed as `x-webkit-deflate-frame`); `None` without compression.
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Agreed::None => None,
            Agreed::PerMessageDeflate(_) => Some(PERMESSAGE_DEFLATE),
            Agreed::DeflateFrame(_) => Some(DEFLATE_FRAME),
            Agreed::DeflateStream => Some(DEFLATE_STREAM),
        }
    }
}

const PERMESSAGE_DEFLATE: &str = "permessage-deflate";
const DEFLATE_FRAME: &str = "deflate-frame";
const WEBKIT_DEFLATE_FRAME: &str = "x-webkit-deflate-frame";
const DEFLATE_STREAM: &str = "deflate-stream";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The permessage-deflate parameters, in the order they are written.
const PMD_PARAMS: [(&str, Arity); 4] = [
    (SERVER_NO_CONTEXT_TAKEOVER, Arity::Flag),
    (CLIENT_NO_CONTEXT_TAKEOVER, Arity::Flag),
    (SERVER_MAX_WINDOW_BITS, Arity::Bits),
    (CLIENT_MAX_WINDOW_BITS, Arity::OptionalBits),
];

/// The deflate-frame parameters: in an offer they bind the server's
/// compressor, in an answer the client's.
const DEFLATE_FRAME_PARAMS: [(&str, Arity); 2] = [
    ("max_window_bits", Arity::Bits),
    ("no_context_takeover", Arity::Flag),
];

/// The compression extensions polysocket knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extension {
    PerMessageDeflate,
    DeflateFrame { webkit: bool },
    DeflateStream,
}

impl Extension {
    fn from_name(name: &str) -> Option<Extension> {
        [
            Extension::PerMessageDeflate,
            Extension::DeflateFrame { webkit: false },
            Extension::DeflateFrame { webkit: true },
            Extension::DeflateStream,
        ]
        .into_iter()
        .find(|e| e.name().eq_ignore_ascii_case(name))
    }

    fn name(self) -> &'static str {
        match self {
            Extension::PerMessageDeflate => PERMESSAGE_DEFLATE,
            Extension::DeflateFrame { webkit: false } => DEFLATE_FRAME,
            Extension::DeflateFrame { webkit: true } => WEBKIT_DEFLATE_FRAME,
            Extension::DeflateStream => DEFLATE_STREAM,
        }
    }

    fn enabled(self, cfg: &ExtensionsConfig) -> bool {
        match self {
            Extension::PerMessageDeflate => cfg.permessage_deflate.is_some(),
            Extension::DeflateFrame { .. } => cfg.deflate_frame,
            Extension::DeflateStream => cfg.deflate_stream,
        }
    }

    /// Whether the extension exists on `draft` (none before hybi-04, which
    /// introduced the header). Clients offer permessage-deflate from
    /// hybi-07 on, where browsers sent it; a server also accepts it on
    /// hybi-04..06 when offered, their framing has RSV1 too. deflate-stream
    /// died before RFC 6455.
    fn available(self, draft: Draft, role: Role) -> bool {
        match self {
            Extension::PerMessageDeflate if role == Role::Client => draft >= Draft::Hybi07,
            Extension::PerMessageDeflate | Extension::DeflateFrame { .. } => draft >= Draft::Hybi04,
            Extension::DeflateStream => (Draft::Hybi04..=Draft::Hybi08).contains(&draft),
        }
    }
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
    for offer in offers.iter().flat_map(|v| parse_list(v)).flatten() {
        let Some(ext) = Extension::from_name(offer.name) else {
            continue;
        };
        if !ext.enabled(cfg) || !ext.available(draft, Role::Server) {
            continue;
        }
        let accepted = match ext {
            Extension::PerMessageDeflate => cfg
                .permessage_deflate
                .as_ref()
                .and_then(|pmd| accept_pmd(pmd, &offer))
                .map(|(a, p)| (a, Agreed::PerMessageDeflate(p))),
            Extension::DeflateFrame { webkit } => {
                accept_deflate_frame(webkit, &offer).map(|(a, p)| (a, Agreed::DeflateFrame(p)))
            }
            Extension::DeflateStream => read_params(&offer, [])
                .ok()
                .map(|[]| (DEFLATE_STREAM.to_string(), Agreed::DeflateStream)),
        };
        if let Some((answer, agreed)) = accepted {
            return (Some(answer), agreed);
        }
    }
    (None, Agreed::None)
}

/// Client side: the `Sec-WebSocket-Extensions` value to offer, if any.
/// Preference order: permessage-deflate, deflate-frame, deflate-stream.
pub fn client_offer(cfg: &ExtensionsConfig, draft: Draft) -> Option<String> {
    let offered = |e: Extension| e.enabled(cfg) && e.available(draft, Role::Client);
    let mut elements = Vec::new();
    if let Some(pmd) = cfg
        .permessage_deflate
        .as_ref()
        .filter(|_| offered(Extension::PerMessageDeflate))
    {
        elements.push(offer_pmd(pmd));
    }
    // The vendor name is what deployed deflate-frame servers saw from
    // browsers, and every one of them understands it.
    if offered(Extension::DeflateFrame { webkit: true }) {
        elements.push(WEBKIT_DEFLATE_FRAME.to_string());
    }
    if offered(Extension::DeflateStream) {
        elements.push(DEFLATE_STREAM.to_string());
    }
    (!elements.is_empty()).then(|| elements.join(", "))
}

/// Client side: validate the server's answer (all its
/// `Sec-WebSocket-Extensions` values) against what `client_offer` offered.
pub fn accept_response(
    cfg: &ExtensionsConfig,
    draft: Draft,
    answers: &[&str],
) -> Result<Agreed, HandshakeError> {
    let mut chosen: Option<Element<'_>> = None;
    for element in answers.iter().flat_map(|v| parse_list(v)) {
        let element = element
            .map_err(|why| HandshakeError::InvalidHeader("Sec-WebSocket-Extensions", why))?;
        if let Some(first) = &chosen {
            return Err(HandshakeError::UnofferedExtension(format!(
                "{element} (a second extension after {first}; only one can be in force)"
            )));
        }
        chosen = Some(element);
    }
    let Some(element) = chosen else {
        return Ok(Agreed::None);
    };
    let refuse = |why: String| HandshakeError::UnofferedExtension(format!("{element} ({why})"));
    let ext =
        Extension::from_name(element.name).ok_or_else(|| refuse("unknown extension".into()))?;
    let not_offered = || format!("not offered for {draft}");
    let agreed = match ext {
        _ if !ext.enabled(cfg) || !ext.available(draft, Role::Client) => Err(not_offered()),
        Extension::PerMessageDeflate => cfg
            .permessage_deflate
            .as_ref()
            .ok_or_else(not_offered)
            .and_then(|pmd| check_pmd_answer(pmd, &element))
            .map(Agreed::PerMessageDeflate),
        Extension::DeflateFrame { webkit: false } => {
            Err(format!("offered as {WEBKIT_DEFLATE_FRAME}"))
        }
        Extension::DeflateFrame { webkit: true } => {
            check_deflate_frame_answer(&element).map(Agreed::DeflateFrame)
        }
        Extension::DeflateStream => read_params(&element, []).map(|[]| Agreed::DeflateStream),
    };
    agreed.map_err(refuse)
}

/// Server side: the answer to one permessage-deflate offer and what it
/// agrees, or None to decline the offer (RFC 7692 §7.1).
fn accept_pmd(cfg: &PerMessageDeflateConfig, offer: &Element<'_>) -> Option<(String, PmdParams)> {
    // client_no_context_takeover in an offer is only a hint: whether the
    // client drops its context changes nothing for our inflater.
    let [server_nct, _, server_bits, client_bits] = read_params(offer, PMD_PARAMS).ok()?;
    let server_cap = clamp_bits(cfg.server_max_window_bits);
    let client_cap = clamp_bits(cfg.client_max_window_bits);
    let server_window = server_bits
        .flatten()
        .map_or(server_cap, |b| b.min(server_cap));
    if server_window == 8 && !cfg.accept_window_bits_8 {
        return None;
    }
    let client_window = match client_bits {
        Some(hint) => hint.unwrap_or(15).min(client_cap),
        // The client cannot be bound by a parameter it did not offer, so
        // our configured bound cannot hold.
        None if client_cap < 15 => return None,
        None => 15,
    };
    let params = PmdParams {
        server_no_context_takeover: server_nct.is_some() || cfg.server_no_context_takeover,
        client_no_context_takeover: cfg.client_no_context_takeover,
        server_max_window_bits: server_window,
        client_max_window_bits: client_window,
    };
    let mut answer = ElementWriter::new(PERMESSAGE_DEFLATE);
    if params.server_no_context_takeover {
        answer.param(SERVER_NO_CONTEXT_TAKEOVER, None);
    }
    if params.client_no_context_takeover {
        answer.param(CLIENT_NO_CONTEXT_TAKEOVER, None);
    }
    // An offered server_max_window_bits must be confirmed, even at 15.
    if server_bits.is_some() || server_window < 15 {
        answer.param(SERVER_MAX_WINDOW_BITS, Some(server_window));
    }
    if client_bits.is_some() && client_window < 15 {
        answer.param(CLIENT_MAX_WINDOW_BITS, Some(client_window));
    }
    Some((answer.0, params))
}

/// Client side: our permessage-deflate offer. client_max_window_bits is
/// always offered, so that the server may bound our window.
fn offer_pmd(cfg: &PerMessageDeflateConfig) -> String {
    let mut offer = ElementWriter::new(PERMESSAGE_DEFLATE);
    if cfg.server_no_context_takeover {
        offer.param(SERVER_NO_CONTEXT_TAKEOVER, None);
    }
    if cfg.client_no_context_takeover {
        offer.param(CLIENT_NO_CONTEXT_TAKEOVER, None);
    }
    let server_cap = clamp_bits(cfg.server_max_window_bits);
    if server_cap < 15 {
        offer.param(SERVER_MAX_WINDOW_BITS, Some(server_cap));
    }
    let client_cap = clamp_bits(cfg.client_max_window_bits);
    offer.param(
        CLIENT_MAX_WINDOW_BITS,
        (client_cap < 15).then_some(client_cap),
    );
    offer.0
}

/// Client side: what a permessage-deflate answer to `offer_pmd(cfg)`
/// agrees, or why it is invalid (RFC 7692 §7.1).
fn check_pmd_answer(
    cfg: &PerMessageDeflateConfig,
    answer: &Element<'_>,
) -> Result<PmdParams, String> {
    let [server_nct, client_nct, server_bits, client_bits] = read_params(answer, PMD_PARAMS)?;
    if cfg.server_no_context_takeover && server_nct.is_none() {
        return Err(format!(
            "{SERVER_NO_CONTEXT_TAKEOVER} was offered but not confirmed"
        ));
    }
    let server_cap = clamp_bits(cfg.server_max_window_bits);
    let server_window = match server_bits.flatten() {
        Some(bits) if bits > server_cap => {
            return Err(format!(
                "{SERVER_MAX_WINDOW_BITS}={bits} exceeds the offered {server_cap}"
            ))
        }
        Some(bits) => bits,
        None if server_cap < 15 => {
            return Err(format!(
                "{SERVER_MAX_WINDOW_BITS} was offered but not confirmed"
            ))
        }
        None => 15,
    };
    let client_cap = clamp_bits(cfg.client_max_window_bits);
    let client_window = match client_bits {
        Some(None) => return Err(format!("{CLIENT_MAX_WINDOW_BITS} has no value")),
        Some(Some(bits)) if bits > client_cap => {
            return Err(format!(
                "{CLIENT_MAX_WINDOW_BITS}={bits} exceeds the offered {client_cap}"
            ))
        }
        Some(Some(bits)) => bits,
        // We hinted our bound in the offer and keep to it.
        None => client_cap,
    };
    Ok(PmdParams {
        server_no_context_takeover: server_nct.is_some(),
        client_no_context_takeover: client_nct.is_some() || cfg.client_no_context_takeover,
        server_max_window_bits: server_window,
        client_max_window_bits: client_window,
    })
}

/// Server side: accept a deflate-frame offer (its parameters bind our
/// compressor; window 8 is served at window 9, see `Deflater::new`) and answer with the name
/// the client used, asking nothing of the client's compressor.
fn accept_deflate_frame(webkit: bool, offer: &Element<'_>) -> Option<(String, DeflateFrameParams)> {
    let [bits, nct] = read_params(offer, DEFLATE_FRAME_PARAMS).ok()?;
    let params = DeflateFrameParams {
        webkit_name: webkit,
        server_max_window_bits: bits.flatten().unwrap_or(15),
        server_no_context_takeover: nct.is_some(),
        client_max_window_bits: 15,
        client_no_context_takeover: false,
    };
    Some((
        Extension::DeflateFrame { webkit }.name().to_string(),
        params,
    ))
}

/// Client side: what a deflate-frame answer binds our compressor to.
fn check_deflate_frame_answer(answer: &Element<'_>) -> Result<DeflateFrameParams, String> {
    let [bits, nct] = read_params(answer, DEFLATE_FRAME_PARAMS)?;
    Ok(DeflateFrameParams {
        webkit_name: true,
        server_max_window_bits: 15,
        server_no_context_takeover: false,
        client_max_window_bits: bits.flatten().unwrap_or(15),
        client_no_context_takeover: nct.is_some(),
    })
}

/// Window bits from the configuration, forced into the valid range.
fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(8, 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc() -> ExtensionsConfig {
        ExtensionsConfig::default()
    }

    fn with_pmd(f: impl FnOnce(&mut PerMessageDeflateConfig)) -> ExtensionsConfig {
        let mut cfg = rfc();
        f(cfg.permessage_deflate.as_mut().unwrap());
        cfg
    }

    fn pmd(snct: bool, cnct: bool, server_bits: u8, client_bits: u8) -> Agreed {
        Agreed::PerMessageDeflate(PmdParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        })
    }

    /// The server's answer to `offers` on RFC 6455.
    fn answer(cfg: &ExtensionsConfig, offers: &[&str]) -> Option<String> {
        negotiate_server(cfg, Draft::Rfc6455, offers).0
    }

    // The offers of Autobahn 13.1..13.6 (autobahn's client always adds
    // client_no_context_takeover and client_max_window_bits).
    const AB: &str = "permessage-deflate; client_no_context_takeover; client_max_window_bits";

    #[test]
    fn server_answers_autobahn_offers() {
        let cfg = rfc();
        let cases = [
            ("", "permessage-deflate", pmd(false, false, 15, 15)),
            (
                "; server_no_context_takeover",
                "permessage-deflate; server_no_context_takeover",
                pmd(true, false, 15, 15),
            ),
            (
                "; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=8",
                pmd(false, false, 8, 15),
            ),
            (
                "; server_max_window_bits=15",
                "permessage-deflate; server_max_window_bits=15",
                pmd(false, false, 15, 15),
            ),
            (
                "; server_no_context_takeover; server_max_window_bits=8",
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=8",
                pmd(true, false, 8, 15),
            ),
            (
                "; server_no_context_takeover; server_max_window_bits=15",
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=15",
                pmd(true, false, 15, 15),
            ),
        ];
        for (extra, expected, agreed) in cases {
            let offer = format!("{AB}{extra}");
            let got = negotiate_server(&cfg, Draft::Rfc6455, &[&offer]);
            assert_eq!(got, (Some(expected.to_string()), agreed), "{offer}");
        }
    }

    #[test]
    fn server_takes_the_first_acceptable_offer() {
        // Autobahn 13.7: three offers in preference order.
        let offers = format!(
            "{AB}; server_no_context_takeover; server_max_window_bits=8, \
             {AB}; server_no_context_takeover, {AB}"
        );
        let expected = "permessage-deflate; server_no_context_takeover; server_max_window_bits=8";
        assert_eq!(answer(&rfc(), &[&offers]).as_deref(), Some(expected));
        // Without window 8 the first offer is declined, the second wins.
        let no8 = with_pmd(|p| p.accept_window_bits_8 = false);
        assert_eq!(
            negotiate_server(&no8, Draft::Rfc6455, &[&offers]),
            (
                Some("permessage-deflate; server_no_context_takeover".into()),
                pmd(true, false, 15, 15)
            )
        );
        // An invalid first offer, over several header lines.
        let lines = [
            "x-unknown, permessage-deflate; server_max_window_bits=08",
            AB,
        ];
        assert_eq!(
            answer(&rfc(), &lines).as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn server_window_bits_8_to_15() {
        for bits in 8..=15u8 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}");
            let got = negotiate_server(&rfc(), Draft::Rfc6455, &[&offer]);
            let expected = format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(got, (Some(expected), pmd(false, false, bits, 15)));
        }
    }

    #[test]
    fn server_client_max_window_bits() {
        let cfg = rfc();
        let hint = "permessage-deflate; client_max_window_bits=10";
        assert_eq!(
            negotiate_server(&cfg, Draft::Rfc6455, &[hint]),
            (Some(hint.to_string()), pmd(false, false, 15, 10))
        );
        assert_eq!(
            answer(&cfg, &["permessage-deflate; client_max_window_bits=15"]).as_deref(),
            Some("permessage-deflate")
        );
        // A configured bound is sent when the client offered the parameter,
        // and the offer is declined when it did not.
        let capped = with_pmd(|p| p.client_max_window_bits = 12);
        let bare = "permessage-deflate; client_max_window_bits";
        assert_eq!(
            negotiate_server(&capped, Draft::Rfc6455, &[bare]),
            (
                Some("permessage-deflate; client_max_window_bits=12".into()),
                pmd(false, false, 15, 12)
            )
        );
        assert_eq!(
            answer(&capped, &["permessage-deflate; client_max_window_bits=9"]).as_deref(),
            Some("permessage-deflate; client_max_window_bits=9")
        );
        assert_eq!(answer(&capped, &["permessage-deflate"]), None);
    }

    #[test]
    fn server_configured_wishes() {
        let cfg = with_pmd(|p| {
            p.server_no_context_takeover = true;
            p.client_no_context_takeover = true;
            p.server_max_window_bits = 10;
        });
        let expected = "permessage-deflate; server_no_context_takeover; \
                        client_no_context_takeover; server_max_window_bits=10";
        for (offer, bits) in [
            ("permessage-deflate", 10),
            ("permessage-deflate; server_max_window_bits=12", 10),
        ] {
            assert_eq!(
                negotiate_server(&cfg, Draft::Rfc6455, &[offer]),
                (Some(expected.into()), pmd(true, true, bits, 15))
            );
        }
        assert_eq!(
            answer(&cfg, &["permessage-deflate; server_max_window_bits=9"]).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; \
                 client_no_context_takeover; server_max_window_bits=9"
            )
        );
        // Our own bound of 8 needs the window-8 compressor too.
        let own8 = with_pmd(|p| {
            p.server_max_window_bits = 8;
            p.accept_window_bits_8 = false;
        });
        assert_eq!(answer(&own8, &["permessage-deflate"]), None);
    }

    #[test]
    fn server_declines_invalid_offers() {
        for params in [
            "server_max_window_bits=08",
            "server_max_window_bits=16",
            "server_max_window_bits=7",
            "server_max_window_bits",
            "server_max_window_bits=\"8 \"",
            "client_max_window_bits=0",
            "client_max_window_bits=abc",
            "server_no_context_takeover=1",
            "client_no_context_takeover; client_no_context_takeover",
            "server_max_window_bits=10; server_max_window_bits=10",
            "client_max_window_bits; client_max_window_bits=9",
            "mystery",
            "mystery=1",
        ] {
            let offer = format!("permessage-deflate; {params}");
            assert_eq!(
                negotiate_server(&rfc(), Draft::Rfc6455, &[&offer]),
                (None, Agreed::None),
                "{offer}"
            );
            let with_fallback = format!("{offer}, permessage-deflate");
            assert_eq!(
                answer(&rfc(), &[&with_fallback]).as_deref(),
                Some("permessage-deflate")
            );
        }
        // Quoted values are fine when they unescape to a valid value.
        assert_eq!(
            answer(
                &rfc(),
                &["permessage-deflate; server_max_window_bits=\"10\""]
            )
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
    }

    #[test]
    fn server_deflate_frame_echoes_the_name() {
        let got = negotiate_server(&rfc(), Draft::Rfc6455, &["x-webkit-deflate-frame"]);
        let params = DeflateFrameParams {
            webkit_name: true,
            server_max_window_bits: 15,
            server_no_context_takeover: false,
            client_max_window_bits: 15,
            client_no_context_takeover: false,
        };
        assert_eq!(
            got,
            (
                Some("x-webkit-deflate-frame".into()),
                Agreed::DeflateFrame(params)
            )
        );
        let got = negotiate_server(
            &rfc(),
            Draft::Hybi04,
            &["deflate-frame; max_window_bits=8; no_context_takeover"],
        );
        let params = DeflateFrameParams {
            webkit_name: false,
            server_max_window_bits: 8,
            server_no_context_takeover: true,
            ..params
        };
        assert_eq!(
            got,
            (Some("deflate-frame".into()), Agreed::DeflateFrame(params))
        );
        assert_eq!(answer(&rfc(), &["deflate-frame; max_window_bits=16"]), None);
        assert_eq!(answer(&rfc(), &["deflate-frame; max_window_bits"]), None);
        assert_eq!(answer(&rfc(), &["deflate-frame; x=1"]), None);
    }

    #[test]
    fn server_per_draft_availability() {
        let all = [
            "deflate-stream",
            "x-webkit-deflate-frame",
            "permessage-deflate",
        ];
        let first = |draft, offers: &[&str]| negotiate_server(&rfc(), draft, offers).0;
        for draft in [Draft::Hixie75, Draft::Hixie76, Draft::Hybi01, Draft::Hybi02] {
            assert_eq!(first(draft, &all), None, "{draft}");
        }
        for draft in [
            Draft::Hybi04,
            Draft::Hybi05,
            Draft::Hybi06,
            Draft::Hybi07,
            Draft::Hybi08,
        ] {
            assert_eq!(
                first(draft, &all).as_deref(),
                Some("deflate-stream"),
                "{draft}"
            );
            assert_eq!(
                negotiate_server(&rfc(), draft, &["deflate-stream"]).1,
                Agreed::DeflateStream
            );
            // permessage-deflate is accepted whenever a client offers it.
            assert_eq!(
                first(draft, &["permessage-deflate"]).as_deref(),
                Some("permessage-deflate")
            );
        }
        // deflate-stream never existed in RFC 6455.
        assert_eq!(
            first(Draft::Rfc6455, &all).as_deref(),
            Some("x-webkit-deflate-frame")
        );
        assert_eq!(first(Draft::Hybi08, &["deflate-stream; x"]), None);
    }

    #[test]
    fn server_respects_disabled_extensions() {
        let mut cfg = rfc();
        cfg.permessage_deflate = None;
        cfg.deflate_frame = false;
        let offers = ["permessage-deflate, deflate-frame, deflate-stream"];
        assert_eq!(
            negotiate_server(&cfg, Draft::Rfc6455, &offers),
            (None, Agreed::None)
        );
        assert_eq!(
            negotiate_server(&cfg, Draft::Hybi07, &offers).0.as_deref(),
            Some("deflate-stream")
        );
        // Names are matched without regard to case.
        assert_eq!(
            answer(&rfc(), &["PerMessage-Deflate; Server_No_Context_Takeover"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
    }

    #[test]
    fn client_offers_per_draft() {
        let cfg = rfc();
        let offer = |draft| client_offer(&cfg, draft);
        assert_eq!(
            offer(Draft::Rfc6455).as_deref(),
            Some("permessage-deflate; client_max_window_bits, x-webkit-deflate-frame")
        );
        assert_eq!(
            offer(Draft::Hybi07).as_deref(),
            Some("permessage-deflate; client_max_window_bits, x-webkit-deflate-frame, deflate-stream")
        );
        assert_eq!(
            offer(Draft::Hybi04).as_deref(),
            Some("x-webkit-deflate-frame, deflate-stream")
        );
        for draft in [Draft::Hixie75, Draft::Hixie76, Draft::Hybi01, Draft::Hybi02] {
            assert_eq!(offer(draft), None);
        }
        let custom = ExtensionsConfig {
            deflate_frame: false,
            deflate_stream: false,
            ..with_pmd(|p| {
                p.server_no_context_takeover = true;
                p.client_no_context_takeover = true;
                p.server_max_window_bits = 10;
                p.client_max_window_bits = 12;
            })
        };
        assert_eq!(
            client_offer(&custom, Draft::Rfc6455).as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=12"
            )
        );
        assert_eq!(client_offer(&custom, Draft::Hybi06), None);
    }

    #[test]
    fn client_accepts_valid_answers() {
        let cfg = rfc();
        let accept = |answers: &[&str]| accept_response(&cfg, Draft::Rfc6455, answers);
        assert_eq!(accept(&[]), Ok(Agreed::None));
        assert_eq!(
            accept(&["permessage-deflate"]),
            Ok(pmd(false, false, 15, 15))
        );
        assert_eq!(
            accept(&[
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=9; client_max_window_bits=8"
            ]),
            Ok(pmd(true, true, 9, 8))
        );
        assert_eq!(
            accept(&["x-webkit-deflate-frame; max_window_bits=10; no_context_takeover"]),
            Ok(Agreed::DeflateFrame(DeflateFrameParams {
                webkit_name: true,
                server_max_window_bits: 15,
                server_no_context_takeover: false,
                client_max_window_bits: 10,
                client_no_context_takeover: true,
            }))
        );
        assert_eq!(
            accept_response(&cfg, Draft::Hybi05, &["deflate-stream"]),
            Ok(Agreed::DeflateStream)
        );
        // Our own bound holds when the server leaves it unanswered.
        let capped = with_pmd(|p| p.client_max_window_bits = 11);
        assert_eq!(
            accept_response(&capped, Draft::Rfc6455, &["permessage-deflate"]),
            Ok(pmd(false, false, 15, 11))
        );
    }

    #[test]
    fn client_rejects_invalid_answers() {
        let cfg = with_pmd(|p| {
            p.server_no_context_takeover = true;
            p.server_max_window_bits = 10;
            p.client_max_window_bits = 12;
        });
        let ok = "permessage-deflate; server_no_context_takeover; server_max_window_bits=10";
        assert_eq!(
            accept_response(&cfg, Draft::Rfc6455, &[ok]),
            Ok(pmd(true, false, 10, 12))
        );
        let refused = |answers: &[&str], why: &str| {
            let err = accept_response(&cfg, Draft::Rfc6455, answers).unwrap_err();
            let HandshakeError::UnofferedExtension(msg) = &err else {
                panic!("{answers:?}: {err:?}");
            };
            assert!(msg.contains(why), "{answers:?}: {msg}");
        };
        refused(&[&format!("{ok}; mystery")], "unknown parameter mystery");
        refused(
            &[&format!("{ok}; server_no_context_takeover")],
            "duplicate parameter server_no_context_takeover",
        );
        refused(
            &["permessage-deflate; server_no_context_takeover; server_max_window_bits=08"],
            "server_max_window_bits=\"08\" is not a window size",
        );
        refused(
            &[&format!("{ok}; client_no_context_takeover=1")],
            "client_no_context_takeover takes no value",
        );
        refused(
            &[&format!("{ok}; client_max_window_bits")],
            "client_max_window_bits has no value",
        );
        refused(
            &[&format!("{ok}; client_max_window_bits=13")],
            "client_max_window_bits=13 exceeds the offered 12",
        );
        refused(
            &["permessage-deflate; server_no_context_takeover; server_max_window_bits=11"],
            "server_max_window_bits=11 exceeds the offered 10",
        );
        refused(
            &["permessage-deflate; server_no_context_takeover"],
            "server_max_window_bits was offered but not confirmed",
        );
        refused(
            &["permessage-deflate; server_max_window_bits=10"],
            "server_no_context_takeover was offered but not confirmed",
        );
        refused(&[ok, ok], "a second extension");
        refused(&[&format!("{ok}, x-webkit-deflate-frame")], "only one");
        refused(&["x-mystery"], "unknown extension");
        refused(&["deflate-stream"], "not offered for rfc6455");
        refused(&["deflate-frame"], "offered as x-webkit-deflate-frame");
        refused(
            &["x-webkit-deflate-frame; max_window_bits=7"],
            "not a window size",
        );
        refused(
            &["x-webkit-deflate-frame; bogus"],
            "unknown parameter bogus",
        );
        // The message names the element as the server wrote it.
        assert_eq!(
            accept_response(&cfg, Draft::Rfc6455, &["deflate-stream; a=1"]),
            Err(HandshakeError::UnofferedExtension(
                "deflate-stream; a=1 (not offered for rfc6455)".into()
            ))
        );
        // Not offered on this draft or with this configuration.
        assert!(accept_response(&cfg, Draft::Hybi06, &["permessage-deflate"]).is_err());
        let mut off = cfg.clone();
        off.permessage_deflate = None;
        off.deflate_frame = false;
        assert!(accept_response(&off, Draft::Rfc6455, &["permessage-deflate"]).is_err());
        assert!(accept_response(&off, Draft::Rfc6455, &["x-webkit-deflate-frame"]).is_err());
        assert!(accept_response(&off, Draft::Hybi08, &["deflate-stream; x=1"]).is_err());
        // Syntax errors are reported as an invalid header.
        assert!(matches!(
            accept_response(&cfg, Draft::Rfc6455, &["permessage-deflate;"]),
            Err(HandshakeError::InvalidHeader("Sec-WebSocket-Extensions", _))
        ));
    }

    #[test]
    fn offer_and_answer_agree_on_both_sides() {
        for draft in Draft::ALL {
            for snct in [false, true] {
                for cnct in [false, true] {
                    for server_bits in [8, 9, 12, 15] {
                        for client_bits in [8, 10, 15] {
                            let cfg = with_pmd(|p| {
                                p.server_no_context_takeover = snct;
                                p.client_no_context_takeover = cnct;
                                p.server_max_window_bits = server_bits;
                                p.client_max_window_bits = client_bits;
                            });
                            let offer = client_offer(&cfg, draft);
                            let offers: Vec<&str> = offer.iter().map(String::as_str).collect();
                            let (answer, agreed) = negotiate_server(&cfg, draft, &offers);
                            let answers: Vec<&str> = answer.iter().map(String::as_str).collect();
                            assert_eq!(
                                accept_response(&cfg, draft, &answers),
                                Ok(agreed),
                                "{draft} {offer:?} -> {answer:?}"
                            );
                            assert_eq!(offer.is_some(), draft >= Draft::Hybi04);
                            if draft >= Draft::Hybi07 {
                                assert_eq!(
                                    agreed,
                                    pmd(snct, cnct, server_bits, client_bits),
                                    "{draft}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
