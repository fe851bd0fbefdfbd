//! `extensions`: the `Sec-WebSocket-Extensions` parser and negotiation on
//! arbitrary strings, and the compression codecs on arbitrary bytes. Four
//! modes:
//!
//! * **offer**: [`negotiate_server`] on header values (split at `\n`);
//!   whatever it agrees is enabled, exists on the draft, stays within the
//!   configured windows, and its answer, read back by a client that offered
//!   everything ([`accept_response`]), agrees on the same parameters;
//! * **answer**: [`accept_response`] on header values; what it accepts was
//!   offered, within our bounds;
//! * **inflate**: the three decompressors on arbitrary bytes in random
//!   pieces under a small limit, which is never exceeded;
//! * **round trip**: messages compressed by one side (any window, context
//!   takeover or not, any level) inflate on the other side to the same
//!   bytes, and decode the same in an independent decoder ([`super::puff`])
//!   that rejects any back-reference beyond the agreed window, or before
//!   the start of the message when the sender has no_context_takeover.

use bytes::BytesMut;

use polysocket::config::PerMessageDeflateConfig;
use polysocket::extensions::{
    accept_response, negotiate_server, Agreed, DeflateFrame, DeflateFrameParams, DeflateStream,
    PerMessageDeflate, PmdParams,
};
use polysocket::{Config, Draft, ExtensionsConfig, HandshakeError, ProtocolError, Role};

use super::input::{Input, Splitter};
use super::puff::WindowChecker;
use super::request::pmd_config;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 4 {
        0 => offer(input),
        1 => answer(input),
        2 => inflate(input),
        _ => round_trip(input),
    }
}

fn extensions_config(input: &mut Input<'_>) -> ExtensionsConfig {
    let mut config = Config::default();
    if input.bool() {
        pmd_config(input, &mut config);
    }
    config.extensions
}

/// The configured window bound, as negotiation clamps it.
fn cap(bits: u8) -> u8 {
    bits.clamp(8, 15)
}

/// Header values: the rest of the input, one value per line.
fn values(input: Input<'_>) -> String {
    String::from_utf8_lossy(input.rest()).into_owned()
}

fn offer(mut input: Input<'_>) {
    let draft = input.draft();
    let cfg = extensions_config(&mut input);
    let text = values(input);
    let offers: Vec<&str> = text.split('\n').collect();
    let (answer, agreed) = negotiate_server(&cfg, draft, &offers);
    assert_eq!(
        answer.is_some(),
        agreed != Agreed::None,
        "{answer:?} {agreed:?}"
    );
    let Some(answer) = answer else {
        return;
    };
    assert!(draft.has_extensions());
    // A client that offered everything, without bounds of its own.
    let everything = ExtensionsConfig {
        permessage_deflate: Some(PerMessageDeflateConfig::default()),
        deflate_frame: true,
        deflate_stream: true,
        ..ExtensionsConfig::default()
    };
    let back = accept_response(&everything, draft, &[&answer]);
    match agreed {
        Agreed::PerMessageDeflate(p) => {
            let pmd = cfg.permessage_deflate.as_ref().expect("enabled");
            assert!((8..=cap(pmd.server_max_window_bits)).contains(&p.server_max_window_bits));
            assert!((8..=cap(pmd.client_max_window_bits)).contains(&p.client_max_window_bits));
            assert!(
                p.server_max_window_bits > 8 || pmd.accept_window_bits_8,
                "{p:?}"
            );
            assert!(p.server_no_context_takeover || !pmd.server_no_context_takeover);
            assert!(p.client_no_context_takeover || !pmd.client_no_context_takeover);
            // Clients offer permessage-deflate from hybi-07 on only.
            if draft >= Draft::Hybi07 {
                assert_eq!(back, Ok(agreed), "{answer}");
            }
        }
        Agreed::DeflateFrame(p) => {
            assert!(cfg.deflate_frame);
            assert!((8..=15).contains(&p.server_max_window_bits), "{p:?}");
            assert_eq!(
                (p.client_max_window_bits, p.client_no_context_takeover),
                (15, false)
            );
            // Clients offer (and accept) the vendor name only.
            if p.webkit_name {
                let Ok(Agreed::DeflateFrame(c)) = back else {
                    panic!("{answer}: {back:?}");
                };
                assert_eq!(
                    (c.client_max_window_bits, c.client_no_context_takeover),
                    (15, false)
                );
            }
        }
        Agreed::DeflateStream => {
            assert!(cfg.deflate_stream);
            assert!((Draft::Hybi04..=Draft::Hybi08).contains(&draft));
            assert_eq!(back, Ok(agreed));
        }
        Agreed::None => unreachable!("an answer agrees on something"),
    }
}

fn answer(mut input: Input<'_>) {
    let draft = input.draft();
    let cfg = extensions_config(&mut input);
    let text = values(input);
    let answers: Vec<&str> = text.split('\n').collect();
    match accept_response(&cfg, draft, &answers) {
        Ok(Agreed::None) => {}
        Ok(agreed) => {
            assert!(draft.has_extensions());
            match agreed {
                Agreed::PerMessageDeflate(p) => {
                    let pmd = cfg.permessage_deflate.as_ref().expect("offered");
                    assert!(draft >= Draft::Hybi07);
                    let (s, c) = (p.server_max_window_bits, p.client_max_window_bits);
                    assert!((8..=cap(pmd.server_max_window_bits)).contains(&s), "{p:?}");
                    assert!((8..=cap(pmd.client_max_window_bits)).contains(&c), "{p:?}");
                    assert!(p.server_no_context_takeover || !pmd.server_no_context_takeover);
                }
                Agreed::DeflateFrame(p) => {
                    assert!(cfg.deflate_frame);
                    assert!((8..=15).contains(&p.client_max_window_bits), "{p:?}");
                }
                Agreed::DeflateStream => assert!(cfg.deflate_stream),
                Agreed::None => unreachable!(),
            }
        }
        Err(HandshakeError::InvalidHeader(..) | HandshakeError::UnofferedExtension(_)) => {}
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

/// One extension's codec for one side.
enum Codec {
    Pmd(Box<PerMessageDeflate>),
    Frame(Box<DeflateFrame>),
    Stream(Box<DeflateStream>),
}

impl Codec {
    fn new(agreed: &Agreed, role: Role, level: u32) -> Codec {
        match agreed {
            Agreed::PerMessageDeflate(p) => {
                Codec::Pmd(Box::new(PerMessageDeflate::new(p, role, level)))
            }
            Agreed::DeflateFrame(p) => Codec::Frame(Box::new(DeflateFrame::new(p, role, level))),
            _ => Codec::Stream(Box::new(DeflateStream::new(level))),
        }
    }

    fn compress(&mut self, payload: &[u8], out: &mut BytesMut) {
        match self {
            Codec::Pmd(c) => c.compress(payload, out),
            Codec::Frame(c) => c.compress(payload, out),
            Codec::Stream(c) => c.compress(payload, out),
        }
    }

    /// One piece of a unit; `last` ends the unit (message or frame).
    fn decompress(
        &mut self,
        piece: &[u8],
        last: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), ProtocolError> {
        match self {
            Codec::Pmd(c) => c.decompress(piece, last, out, limit),
            // deflate-frame units are whole frames: the connection gathers
            // a frame's pieces before inflating.
            Codec::Frame(c) => c.decompress(piece, out, limit),
            Codec::Stream(c) => c.decompress(piece, out, limit),
        }
    }
}

/// Any extension with parameters in their valid ranges.
fn any_agreed(input: &mut Input<'_>) -> Agreed {
    let flags = input.byte();
    let bits = |b: u8| 8 + b % 8;
    let (s, c) = (bits(input.byte()), bits(input.byte()));
    match flags % 3 {
        0 => Agreed::PerMessageDeflate(PmdParams {
            server_no_context_takeover: flags & 4 != 0,
            client_no_context_takeover: flags & 8 != 0,
            server_max_window_bits: s,
            client_max_window_bits: c,
        }),
        1 => Agreed::DeflateFrame(DeflateFrameParams {
            webkit_name: true,
            server_max_window_bits: s,
            server_no_context_takeover: flags & 4 != 0,
            client_max_window_bits: c,
            client_no_context_takeover: flags & 8 != 0,
        }),
        _ => Agreed::DeflateStream,
    }
}

fn inflate(mut input: Input<'_>) {
    let agreed = any_agreed(&mut input);
    let role = input.role();
    let limit = input.pick(&[0, 1, 100, 4096, 1 << 20]);
    let mut splitter = Splitter::new(&mut input);
    let mut codec = Codec::new(&agreed, role, 6);
    let mut out = BytesMut::new();
    let pieces = splitter.split(input.rest());
    for (i, piece) in pieces.iter().enumerate() {
        // Units end at pieces whose first byte is odd, and at the end.
        let last = i + 1 == pieces.len() || piece.first().is_some_and(|b| b & 1 == 1);
        let before = out.len();
        let result = codec.decompress(piece, last, &mut out, limit);
        let is_stream = matches!(codec, Codec::Stream(_));
        match result {
            Ok(()) if is_stream => assert!(out.len() - before <= limit),
            Ok(()) => assert!(out.len() <= limit, "{} > {limit}", out.len()),
            Err(ProtocolError::DecompressedTooLarge(l)) => {
                assert_eq!(l, limit);
                return;
            }
            Err(ProtocolError::Compression(_)) => return,
            Err(e) => panic!("unexpected error {e:?}"),
        }
        if last && !is_stream {
            out.clear();
        }
    }
}

fn round_trip(mut input: Input<'_>) {
    let agreed = any_agreed(&mut input);
    let sender_role = input.role();
    let level = u32::from(input.byte() % 10);
    let mut splitter = Splitter::new(&mut input);
    let receiver_role = match sender_role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut sender = Codec::new(&agreed, sender_role, level);
    let mut receiver = Codec::new(&agreed, receiver_role, 6);
    let (window, reset) = sender_window(&agreed, sender_role);
    let mut checker = WindowChecker::new(window, reset);
    let text = input.rest();
    // Messages are separated by 0xFF; `*`, n, byte is a run of n * 64 of
    // that byte (up to 16 KiB), a cheap way to reach long back-references,
    // beyond every window but the largest within one message and beyond
    // that one across messages.
    for message in text.split(|&b| b == 0xFF) {
        let message: Vec<u8> = match message {
            [b'*', n, fill, ..] => vec![*fill; usize::from(*n) * 64],
            m => m.to_vec(),
        };
        let mut wire = BytesMut::new();
        sender.compress(&message, &mut wire);

        let mut got = BytesMut::new();
        let pieces = match receiver {
            // deflate-frame inflates whole frames only.
            Codec::Frame(_) => vec![&wire[..]],
            _ => splitter.split(&wire),
        };
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            receiver
                .decompress(piece, last, &mut got, usize::MAX)
                .expect("our own compressed data inflates");
        }
        if pieces.is_empty() {
            receiver
                .decompress(&[], true, &mut got, usize::MAX)
                .expect("our own compressed data inflates");
        }
        assert_eq!(
            &got[..],
            &message[..],
            "{agreed:?} {sender_role:?} level {level}"
        );

        // Units are sent without their sync-flush tail, except under
        // deflate-stream.
        let unit = match agreed {
            Agreed::DeflateStream => wire.to_vec(),
            _ => [&wire[..], &[0, 0, 0xFF, 0xFF]].concat(),
        };
        match checker.unit(&unit) {
            Ok(decoded) => assert_eq!(decoded, message, "{agreed:?} {sender_role:?} level {level}"),
            Err(why) => panic!("{agreed:?} {sender_role:?} level {level}: {why}"),
        }
    }
}

/// The window the sender agreed to compress within, and whether it drops
/// its context after every unit.
fn sender_window(agreed: &Agreed, role: Role) -> (u8, bool) {
    let pick = |server: (u8, bool), client: (u8, bool)| match role {
        Role::Server => server,
        Role::Client => client,
    };
    match agreed {
        Agreed::PerMessageDeflate(p) => pick(
            (p.server_max_window_bits, p.server_no_context_takeover),
            (p.client_max_window_bits, p.client_no_context_takeover),
        ),
        Agreed::DeflateFrame(p) => pick(
            (p.server_max_window_bits, p.server_no_context_takeover),
            (p.client_max_window_bits, p.client_no_context_takeover),
        ),
        _ => (15, false),
    }
}
