//! What the opening handshake agreed on: everything a [`Connection`] needs
//! to speak the negotiated protocol.
//!
//! [`Connection`]: crate::protocol::Connection

use crate::draft::Draft;
use crate::extensions::Agreed;

/// Which end of the connection this engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Accepts connections; never masks; requires masked frames (hybi-07+).
    Server,
    /// Opens connections; masks every frame (hybi-04+).
    Client,
}

/// The outcome of a successful opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Which end this engine is: decides who masks, and which of the
    /// agreed `server_*`/`client_*` extension parameters are ours.
    pub role: Role,
    /// The draft negotiated, which fixes framing, masking and close rules.
    pub draft: Draft,
    /// The subprotocol both sides agreed on, if any.
    pub subprotocol: Option<String>,
    /// The compression extension in force, if any.
    pub extensions: Agreed,
    /// hybi-04 only: SHA1(key ‖ nonce ‖ GUID), the connection mask key from
    /// which every client frame key is derived.
    pub hybi04_mask_key: Option<[u8; 20]>,
}

impl Session {
    /// A session without subprotocol or extensions (tests, raw framing).
    pub fn plain(role: Role, draft: Draft) -> Session {
        Session {
            role,
            draft,
            subprotocol: None,
            extensions: Agreed::None,
            hybi04_mask_key: None,
        }
    }
}
