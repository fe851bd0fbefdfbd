//! SKELETON: the message layer.
use std::sync::Arc;

use bytes::Bytes;

use crate::config::Config;
use crate::session::Session;

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Bytes),
    Binary(Bytes),
}

/// What the peer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(Message),
}

/// A message encoded once for many connections.
pub struct PreparedMessage {}

/// One WebSocket connection's protocol state.
pub struct Connection {}

impl Connection {
    pub fn new(config: Arc<Config>, session: Session) -> Self {
        let _ = (config, session);
        Connection {}
    }
}
