//! The protocol versions polysocket speaks and the families they share.
//!
//! Drafts that share wire behaviour share code: each [`Draft`] maps onto one
//! handshake family and one framing family, and the framing layer is
//! parameterised by [`BinaryFraming`] instead of having a parser per draft
//! (docs/PROTOCOL.md, "Drafts at a glance").

use std::fmt;
use std::str::FromStr;

/// A WebSocket protocol version as negotiated by the opening handshake.
///
/// Drafts whose wire format is identical are one variant: hixie-76 is also
/// hybi-00, `Hybi02` covers hybi-02 and hybi-03 (both send
/// `Sec-WebSocket-Draft: 2`), `Hybi08` covers hybi-08..12 (Version 8) and
/// `Rfc6455` covers hybi-13..17 (Version 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Draft {
    /// hixie-75: no challenge, `WebSocket-*` answer headers, sentinel framing
    /// (text only) and no close frame: closing TCP is the close. Chrome 4/5 and
    /// Safari 5.0.0 era clients.
    Hixie75 = 0,
    /// hixie-76, identical on the wire to hybi-00: the Key1/Key2 + 8-byte key3
    /// challenge answered with an MD5 body, sentinel framing plus the `FF 00`
    /// close frame. Chrome 6-13, Safari 5.0.1+ and iOS 4.2-5, Firefox 4
    /// (disabled by default) and Opera 11.
    Hixie76 = 1,
    /// hybi-01: the hixie-76 handshake, indistinguishable from it unless the
    /// client sends the unofficial `Sec-WebSocket-Draft: 1`, with the first
    /// binary framing (MORE bit, opcode table A, no masking, opaque close body).
    Hybi01 = 2,
    /// hybi-02 and hybi-03: hybi-01 announced by `Sec-WebSocket-Draft: 2` (both
    /// drafts send 2; websocket-ruby's client sends 3, which is accepted too).
    /// hybi-03 answers a close by echoing its body.
    Hybi02 = 3,
    /// hybi-04 (Version 4): `Sec-WebSocket-Key`/`Accept` plus the server's
    /// `Sec-WebSocket-Nonce`, the FIN bit, and client frames masked whole
    /// (header included) with a SHA-1 derived 20-byte key behind a 4-byte
    /// nonce. The first draft with `Sec-WebSocket-Extensions`.
    Hybi04 = 4,
    /// hybi-05 (Version 5): hybi-04 without the nonce; client frames are masked
    /// whole by the random 4-byte key in front of them. Opaque close body.
    Hybi05 = 5,
    /// hybi-06 (Version 6): hybi-05 framing, but a close body starts with a
    /// 2-byte status code followed by a UTF-8 reason.
    Hybi06 = 6,
    /// hybi-07 (Version 7): the RFC 6455 frame layout (MASK bit, key after the
    /// length, only the payload masked) and the final opcode table B.
    Hybi07 = 7,
    /// hybi-08..12 (Version 8): hybi-07 framing; drafts 08-10 send
    /// `Sec-WebSocket-Origin`, drafts 11-12 `Origin`. Close code 1004 ("frame
    /// too large") is still valid.
    Hybi08 = 8,
    /// RFC 6455 and hybi-13..17 (Version 13), the final protocol: masking is
    /// enforced in both directions and the full close code table applies.
    Rfc6455 = 9,
}

/// How the opening handshake is performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFamily {
    /// hixie-75: no challenge, `WebSocket-*` response headers.
    Hixie75,
    /// hixie-76 / hybi-00..03: Key1/Key2 + 8-byte key3, MD5 answer.
    Hixie76,
    /// hybi-04..17: `Sec-WebSocket-Key` → `Sec-WebSocket-Accept`
    /// (hybi-04 adds `Sec-WebSocket-Nonce`).
    Hybi,
}

/// The opcode numbering in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpcodeTable {
    /// hybi-01..06: 0 cont, 1 close, 2 ping, 3 pong, 4 text, 5 binary.
    A,
    /// hybi-07+: 0 cont, 1 text, 2 binary, 8 close, 9 ping, A pong.
    B,
}

/// Where and how client→server frames are masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskLayout {
    /// hybi-01..03: no masking in either direction.
    None,
    /// hybi-05/06: 4 random bytes in front of the frame mask the whole frame.
    Prefix,
    /// hybi-04: 4-byte nonce in front; key = SHA1(nonce ‖ connection key),
    /// 20-byte cycle over the whole frame.
    PrefixSha1,
    /// hybi-07+: MASK bit and a 4-byte key after the length; payload only.
    AfterLength,
}

/// The parameters of the length-prefixed binary framings (FB1, FB2, FB3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryFraming {
    /// hybi-01..03 use a MORE bit (inverse of FIN).
    pub more_bit: bool,
    /// The opcode numbering: table A before hybi-07, table B from it on.
    pub opcodes: OpcodeTable,
    /// How client→server frames are masked; server→client frames never are.
    pub mask: MaskLayout,
}

/// The framing family of a draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `0x00 text 0xFF` and length-prefixed frames; `closing` is hixie-76's
    /// `0xFF 0x00` close handshake.
    Sentinel {
        /// hixie-76: `FF 00` is the close frame. On hixie-75 it is an empty
        /// length-prefixed frame, discarded like any other.
        closing: bool,
    },
    /// hybi-01 and later: length-prefixed frames with a header, described by
    /// their parameters.
    Binary(BinaryFraming),
}

/// The close-frame body rules of a draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseBody {
    /// hixie: no close frame body at all.
    None,
    /// hybi-01..05: opaque body, echoed back in the reply.
    Opaque,
    /// hybi-06..12: u16 code + UTF-8 reason; 1004 is still "frame too large".
    Coded,
    /// RFC 6455: the full code table (1004 reserved, 1005/1006/1015 invalid).
    Rfc6455,
}

impl Draft {
    /// Every draft, oldest first.
    pub const ALL: [Draft; 10] = [
        Draft::Hixie75,
        Draft::Hixie76,
        Draft::Hybi01,
        Draft::Hybi02,
        Draft::Hybi04,
        Draft::Hybi05,
        Draft::Hybi06,
        Draft::Hybi07,
        Draft::Hybi08,
        Draft::Rfc6455,
    ];

    /// Stable lowercase name, as used in configuration and bindings.
    pub fn name(self) -> &'static str {
        match self {
            Draft::Hixie75 => "hixie-75",
            Draft::Hixie76 => "hixie-76",
            Draft::Hybi01 => "hybi-01",
            Draft::Hybi02 => "hybi-02",
            Draft::Hybi04 => "hybi-04",
            Draft::Hybi05 => "hybi-05",
            Draft::Hybi06 => "hybi-06",
            Draft::Hybi07 => "hybi-07",
            Draft::Hybi08 => "hybi-08",
            Draft::Rfc6455 => "rfc6455",
        }
    }

    /// The `Sec-WebSocket-Version` value, for the drafts that send one.
    pub fn version(self) -> Option<u8> {
        match self {
            Draft::Hybi04 => Some(4),
            Draft::Hybi05 => Some(5),
            Draft::Hybi06 => Some(6),
            Draft::Hybi07 => Some(7),
            Draft::Hybi08 => Some(8),
            Draft::Rfc6455 => Some(13),
            _ => None,
        }
    }

    /// The draft announced by a `Sec-WebSocket-Version` value.
    pub fn from_version(v: u32) -> Option<Draft> {
        Some(match v {
            4 => Draft::Hybi04,
            5 => Draft::Hybi05,
            6 => Draft::Hybi06,
            7 => Draft::Hybi07,
            8 => Draft::Hybi08,
            13 => Draft::Rfc6455,
            _ => return None,
        })
    }

    /// The opening handshake the draft uses: hixie-75's; the Key1/Key2 challenge
    /// for hixie-76 and hybi-01..03; Key/Accept from hybi-04 on.
    pub fn handshake_family(self) -> HandshakeFamily {
        match self {
            Draft::Hixie75 => HandshakeFamily::Hixie75,
            Draft::Hixie76 | Draft::Hybi01 | Draft::Hybi02 => HandshakeFamily::Hixie76,
            _ => HandshakeFamily::Hybi,
        }
    }

    /// The framing family and, for the binary framings, their parameters.
    /// The mask layout is that of client→server frames.
    pub fn framing(self) -> Framing {
        let binary = |more_bit, opcodes, mask| {
            Framing::Binary(BinaryFraming {
                more_bit,
                opcodes,
                mask,
            })
        };
        match self {
            Draft::Hixie75 => Framing::Sentinel { closing: false },
            Draft::Hixie76 => Framing::Sentinel { closing: true },
            Draft::Hybi01 | Draft::Hybi02 => binary(true, OpcodeTable::A, MaskLayout::None),
            Draft::Hybi04 => binary(false, OpcodeTable::A, MaskLayout::PrefixSha1),
            Draft::Hybi05 | Draft::Hybi06 => binary(false, OpcodeTable::A, MaskLayout::Prefix),
            Draft::Hybi07 | Draft::Hybi08 | Draft::Rfc6455 => {
                binary(false, OpcodeTable::B, MaskLayout::AfterLength)
            }
        }
    }

    /// What a close frame carries: nothing on hixie, an opaque echoed body on
    /// hybi-01..05, code and reason on hybi-06..08 (1004 still valid), the
    /// RFC 6455 code table on Version 13.
    pub fn close_body(self) -> CloseBody {
        match self {
            Draft::Hixie75 | Draft::Hixie76 => CloseBody::None,
            Draft::Hybi01 | Draft::Hybi02 | Draft::Hybi04 | Draft::Hybi05 => CloseBody::Opaque,
            Draft::Hybi06 | Draft::Hybi07 | Draft::Hybi08 => CloseBody::Coded,
            Draft::Rfc6455 => CloseBody::Rfc6455,
        }
    }

    /// Binary messages exist from hybi-01 on.
    pub fn has_binary(self) -> bool {
        !matches!(self.framing(), Framing::Sentinel { .. })
    }

    /// Ping and pong exist from hybi-01 on.
    pub fn has_ping(self) -> bool {
        self.has_binary()
    }

    /// `Sec-WebSocket-Extensions` exists from hybi-04 on.
    pub fn has_extensions(self) -> bool {
        self >= Draft::Hybi04
    }

    /// Whether the draft has a close frame (everything but hixie-75).
    pub fn has_close_frame(self) -> bool {
        self != Draft::Hixie75
    }
}

impl fmt::Display for Draft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an unknown draft name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown WebSocket draft name {0:?}")]
pub struct UnknownDraft(pub String);

impl FromStr for Draft {
    type Err = UnknownDraft;

    /// Accepts the canonical names plus the common aliases (`hybi-00`,
    /// `hybi-03`, `hybi-13`, `13`, `8`, ...).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.trim().to_ascii_lowercase();
        let d = match l.as_str() {
            "hixie-75" | "hixie75" | "75" => Draft::Hixie75,
            "hixie-76" | "hixie76" | "76" | "hybi-00" | "hybi00" => Draft::Hixie76,
            "hybi-01" | "hybi01" => Draft::Hybi01,
            "hybi-02" | "hybi02" | "hybi-03" | "hybi03" => Draft::Hybi02,
            "hybi-04" | "hybi04" | "4" => Draft::Hybi04,
            "hybi-05" | "hybi05" | "5" => Draft::Hybi05,
            "hybi-06" | "hybi06" | "6" => Draft::Hybi06,
            "hybi-07" | "hybi07" | "7" => Draft::Hybi07,
            "hybi-08" | "hybi08" | "hybi-09" | "hybi-10" | "hybi-11" | "hybi-12" | "8" => {
                Draft::Hybi08
            }
            "rfc6455" | "rfc-6455" | "hybi-13" | "hybi-17" | "13" => Draft::Rfc6455,
            _ => return Err(UnknownDraft(s.to_string())),
        };
        Ok(d)
    }
}

/// A set of drafts (the ones a server accepts).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DraftSet(u16);

impl DraftSet {
    /// Every draft polysocket speaks; the default of [`Config::drafts`](crate::Config::drafts).
    pub const ALL: DraftSet = DraftSet((1 << Draft::ALL.len()) - 1);
    /// No draft at all: a server with it refuses every request.
    pub const NONE: DraftSet = DraftSet(0);

    /// Exactly the drafts listed (duplicates are harmless).
    pub fn only(drafts: &[Draft]) -> DraftSet {
        drafts.iter().fold(DraftSet::NONE, |s, &d| s.with(d))
    }
    /// Whether `d` is enabled: a server refuses requests of other drafts with
    /// [`HandshakeError::DraftDisabled`](crate::HandshakeError::DraftDisabled).
    pub fn contains(self, d: Draft) -> bool {
        self.0 & (1 << d as u8) != 0
    }
    /// The set with `d` added (a new value: `DraftSet` is `Copy`).
    pub fn with(self, d: Draft) -> DraftSet {
        DraftSet(self.0 | (1 << d as u8))
    }
    /// The set with `d` removed, e.g. `DraftSet::ALL.without(Draft::Hixie75)` to
    /// refuse the draft that has no challenge at all.
    pub fn without(self, d: Draft) -> DraftSet {
        DraftSet(self.0 & !(1 << d as u8))
    }
    /// Whether no draft is enabled.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The enabled drafts, oldest first (in [`Draft::ALL`] order).
    pub fn iter(self) -> impl Iterator<Item = Draft> {
        Draft::ALL.into_iter().filter(move |d| self.contains(*d))
    }
    /// The `Sec-WebSocket-Version` values of the enabled drafts, highest
    /// first, as sent with a version-mismatch answer ("13, 8, 7").
    pub fn version_list(self) -> String {
        let mut v: Vec<u8> = self.iter().filter_map(Draft::version).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.iter().map(u8::to_string).collect::<Vec<_>>().join(", ")
    }
}

impl Default for DraftSet {
    fn default() -> Self {
        DraftSet::ALL
    }
}

impl fmt::Debug for DraftSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<Draft> for DraftSet {
    fn from_iter<I: IntoIterator<Item = Draft>>(iter: I) -> Self {
        iter.into_iter().fold(DraftSet::NONE, DraftSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_list_is_highest_first() {
        assert_eq!(DraftSet::ALL.version_list(), "13, 8, 7, 6, 5, 4");
        let s = DraftSet::only(&[Draft::Hybi07, Draft::Rfc6455, Draft::Hixie76]);
        assert_eq!(s.version_list(), "13, 7");
    }

    #[test]
    fn names_round_trip() {
        for d in Draft::ALL {
            assert_eq!(d.name().parse::<Draft>().unwrap(), d);
        }
        assert_eq!("hybi-00".parse::<Draft>().unwrap(), Draft::Hixie76);
        assert!("hybi-99".parse::<Draft>().is_err());
    }
}
