//! `\WebSocket\Connection`: the `$client` object handed to the
//! application. One object per connection (the event loop caches it), so
//! the same client is the same object in every callback; its `clientId`
//! property makes `==` tell two clients apart (PHP compares objects without
//! properties as equal).

use std::sync::Arc;

use ext_php_rs::boxed::ZBox;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendHashTable, Zval};
use md5::{Digest, Md5};
use polysocket::runtime::{ConnId, OpenInfo, ServerHandle};
use polysocket::{Message, SendError};

use crate::payload::{self, Kind};

/// The reason text php-websocket sent with each close code.
fn close_reason(code: u16) -> &'static str {
    match code {
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unknown data (opcode)",
        1004 => "frame too large",
        1007 => "utf8 expected",
        1008 => "message violates server policy",
        1011 => "internal server error",
        _ => "",
    }
}

#[php_class]
#[php(name = "WebSocket\\Connection")]
pub struct Connection {
    /// `md5(ip . port . connection number)`: 32 hex digits, as php-websocket's.
    #[php(prop, name = "clientId", flags = ext_php_rs::flags::PropertyFlags::Private)]
    client_id: String,
    pub(crate) id: ConnId,
    pub(crate) info: Arc<OpenInfo>,
    pub(crate) handle: ServerHandle,
    /// The application object serving this client.
    app: Zval,
}

impl Connection {
    pub(crate) fn new(info: Arc<OpenInfo>, handle: ServerHandle, app: &Zval) -> Connection {
        let ip = info.peer.ip().to_string();
        let digest = Md5::digest(format!("{ip}{}{}", info.peer.port(), info.id));
        Connection {
            client_id: digest.iter().map(|b| format!("{b:02x}")).collect(),
            id: info.id,
            info,
            handle,
            app: app.shallow_clone(),
        }
    }

    /// Let go of the application when `run()` ends with this client still
    /// connected: an application that keeps its clients (as php-websocket's
    /// do) and a client that keeps its application are a cycle PHP's
    /// collector cannot see into, so neither would ever be freed.
    pub(crate) fn forget_app(&mut self) {
        self.app = Zval::new();
    }
}

/// `$client->send()` and `Server::sendTo()`: queue `$payload` as `$type`
/// for connection `id`, here or on another node of the cluster. Never
/// blocks: from this client's own `onConnect`/`onData` the runtime puts it
/// straight into its engine (written when the callback returns), else into
/// its mailbox, or onto the bus for another node's connection.
pub(crate) fn send(
    handle: &ServerHandle,
    id: ConnId,
    payload: &Zval,
    r#type: &str,
) -> PhpResult<bool> {
    let Some(kind) = Kind::parse(r#type) else {
        return Err(payload::invalid_argument(format!(
            "unknown message type '{type}' (text, binary, ping, pong, close)",
            type = r#type
        )));
    };
    let Some(data) = payload::bytes(payload, kind) else {
        return Ok(false);
    };
    reported(match kind {
        Kind::Text => handle.send(id, Message::Text(data)),
        Kind::Binary => handle.send(id, Message::Binary(data)),
        Kind::Ping => handle.ping(id, data),
        Kind::Pong => handle.pong(id, data),
        Kind::Close => handle.close(id, Some(1000), &String::from_utf8_lossy(&data)),
    })
}

/// `$client->close()` and `Server::closeTo()`: close `id` with `code` and
/// `reason` (php-websocket's text for the code when empty).
pub(crate) fn close(handle: &ServerHandle, id: ConnId, code: i64, reason: &str) -> PhpResult<bool> {
    let Ok(code) = u16::try_from(code) else {
        return Err(payload::invalid_argument(format!(
            "invalid close code {code}"
        )));
    };
    let reason = if reason.is_empty() {
        close_reason(code)
    } else {
        reason
    };
    reported(handle.close(id, Some(code), reason))
}

/// A group name the bus can carry (its envelope has a 16-bit length).
pub(crate) fn group_name(group: &str) -> PhpResult<&str> {
    if group.len() > usize::from(u16::MAX) {
        return Err(payload::invalid_argument(
            "group name longer than 65535 bytes".into(),
        ));
    }
    Ok(group)
}

/// What core answered, as php-websocket's callers expect it: true when
/// queued; `\InvalidArgumentException` with core's message for what can
/// never be sent on this connection (a control payload over 125 bytes, a
/// close code that may not be sent, binary or ping on a draft without
/// them); false when the connection is closing or gone, or its send buffer
/// overflowed. Core holds the rules.
fn reported(result: Result<(), SendError>) -> PhpResult<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.is_invalid_argument() => Err(payload::invalid_argument(e.to_string())),
        Err(_) => Ok(false),
    }
}

#[php_impl]
impl Connection {
    /// Send `$payload` as `text` (the default), `binary`, `ping`, `pong` or
    /// `close` (a close 1000 with the payload as its reason). Never blocks:
    /// the message is queued for the runtime. False when the client is
    /// closing or gone, its send buffer overflowed, or a text payload is not
    /// UTF-8 (with a warning). `\InvalidArgumentException` for an unknown
    /// `$type` and for what the client's protocol version can never carry.
    #[php(defaults(r#type = "text".to_string()))]
    pub fn send(&self, payload: &Zval, r#type: String) -> PhpResult<bool> {
        send(&self.handle, self.id, payload, &r#type)
    }

    /// Start the closing handshake with `$statusCode` and php-websocket's
    /// reason text; `onDisconnect` follows when the connection is gone.
    /// False when it is already closing or gone; `\InvalidArgumentException`
    /// for a code that may not be sent (e.g. 1005, 5000).
    #[php(defaults(status_code = 1000))]
    pub fn close(&self, status_code: i64) -> PhpResult<bool> {
        close(&self.handle, self.id, status_code, "")
    }

    /// The connection id: an int unique in the cluster (its node in the
    /// high bits), what `Server::sendTo()` and `closeTo()` take.
    pub fn get_id(&self) -> i64 {
        // Ids stay below 2^63 (docs/CLUSTER.md).
        self.id as i64
    }

    /// Join `$group` (local; `Server::broadcastGroup()` reaches its members
    /// on every node). False when the client is gone.
    pub fn join(&self, group: String) -> PhpResult<bool> {
        let group = group_name(&group)?;
        if self.handle.draft(self.id).is_none() {
            return Ok(false);
        }
        self.handle.join(self.id, group);
        Ok(true)
    }

    /// Leave `$group` (a client leaves every group when it closes).
    pub fn leave(&self, group: String) -> PhpResult<bool> {
        self.handle.leave(self.id, group_name(&group)?);
        Ok(true)
    }

    pub fn get_client_ip(&self) -> String {
        self.info.peer.ip().to_string()
    }

    /// A string, as php-websocket's (it split `ip:port`).
    pub fn get_client_port(&self) -> String {
        self.info.peer.port().to_string()
    }

    pub fn get_client_id(&self) -> String {
        self.client_id.clone()
    }

    /// The application serving this client.
    pub fn get_client_application(&self) -> Zval {
        self.app.shallow_clone()
    }

    /// The protocol version the client speaks: `rfc6455`, `hybi-08`, ...,
    /// `hixie-76`, `hixie-75`.
    pub fn get_draft(&self) -> String {
        self.info.draft.name().to_string()
    }

    /// The request path, e.g. `/demo`.
    pub fn get_path(&self) -> String {
        self.info.path.clone()
    }

    /// The query string without `?` (empty when there is none).
    pub fn get_query(&self) -> String {
        self.info.query.clone()
    }

    /// The request headers: name (as sent) => value; repeated headers are
    /// joined with `, `.
    pub fn get_headers(&self) -> PhpResult<ZBox<ZendHashTable>> {
        let mut headers = ZendHashTable::new();
        for (name, value) in self.info.headers.iter() {
            let joined = match headers.get(name).and_then(|v| v.string()) {
                Some(previous) => format!("{previous}, {value}"),
                None => value.to_string(),
            };
            headers.insert(name, joined)?;
        }
        Ok(headers)
    }

    /// One request header (case-insensitive name), or null.
    pub fn get_header(&self, name: String) -> Option<String> {
        self.info.headers.get(&name).map(str::to_string)
    }

    /// `Origin` (or `Sec-WebSocket-Origin`), or null.
    pub fn get_origin(&self) -> Option<String> {
        self.info.origin.clone()
    }

    /// The agreed subprotocol, or null.
    pub fn get_subprotocol(&self) -> Option<String> {
        self.info.subprotocol.clone()
    }

    /// The agreed compression extension (`permessage-deflate`, ...), or null.
    pub fn get_extension(&self) -> Option<String> {
        self.info.extensions.name().map(str::to_string)
    }

    /// Served over TLS (`wss://`).
    pub fn is_secure(&self) -> bool {
        self.info.secure
    }

    /// `2.0` for a WebSocket opened as a stream of an HTTP/2 connection
    /// (RFC 8441, `wss://` with `setHttp2()` on), else `1.1` (hixie drafts
    /// included: their handshake is HTTP/1.1 too).
    pub fn get_http_version(&self) -> &'static str {
        if self.info.http2 {
            "2.0"
        } else {
            "1.1"
        }
    }

    /// The connection is a stream of an HTTP/2 connection (RFC 8441): it
    /// shares its TCP connection with the client's other streams.
    pub fn is_http2(&self) -> bool {
        self.info.http2
    }

    /// Write a line to the server log, prefixed with the client's address.
    #[php(defaults(r#type = "info".to_string()))]
    pub fn log(&self, message: String, r#type: String) {
        crate::log::write(&format!("[client {}] {message}", self.info.peer), &r#type);
    }
}
