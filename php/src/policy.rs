//! Which handshakes the server takes: php-websocket's routing (the path
//! names a registered application) and its origin check, decided in the
//! connection's task before the connection opens (pure Rust, no PHP).

use std::collections::{HashMap, HashSet};

use polysocket::handshake::Request;
use polysocket::HandshakeError;

/// The key an application registered under `*` serves every path no other
/// application claims.
pub const FALLBACK: &str = "*";

/// php-websocket's `setAllowedOrigin` form: no `http://`, no `www.`, nothing
/// from the first `/` on. Hosts are compared case-insensitively.
pub fn allowed_origin(domain: &str) -> String {
    let d = domain.replace("http://", "").replace("www.", "");
    let d = d.split('/').next().unwrap_or_default();
    d.to_ascii_lowercase()
}

/// php-websocket's `checkOrigin` form of a received origin: no scheme, no
/// `www.`, no `/`.
pub fn origin_key(origin: &str) -> String {
    origin
        .replace("http://", "")
        .replace("https://", "")
        .replace("www.", "")
        .replace('/', "")
        .to_ascii_lowercase()
}

/// The application key a request path names: the path without its leading
/// `/` (`/demo` → `demo`).
pub fn path_key(path: &str) -> &str {
    path.strip_prefix('/').unwrap_or(path)
}

/// The settings a running server decides handshakes with.
pub struct Policy {
    pub apps: HashSet<String>,
    pub check_origin: bool,
    pub allowed_origins: HashSet<String>,
    /// `registerPage()`: the response to a plain HTTP GET of a path.
    pub pages: HashMap<String, Vec<u8>>,
}

impl Policy {
    /// The registered key serving `path`, if any.
    pub fn route<'a>(&'a self, path: &'a str) -> Option<&'a str> {
        let key = path_key(path);
        if self.apps.contains(key) {
            Some(key)
        } else if self.apps.contains(FALLBACK) {
            Some(FALLBACK)
        } else {
            None
        }
    }

    /// The registered page for a plain HTTP request target, if any.
    pub fn page(&self, target: &str) -> Option<Vec<u8>> {
        self.pages.get(target.split('?').next()?).cloned()
    }

    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.contains(&origin_key(origin))
    }

    /// Unknown application: 404; origin missing or not allowed while
    /// checking: 403. The application key is echoed as the subprotocol only
    /// when the client offered it (php-websocket always sent it, which
    /// browsers reject).
    pub fn accept(
        &self,
        request: &Request,
        offered: &[&str],
    ) -> Result<Option<String>, HandshakeError> {
        let Some(key) = self.route(request.path()) else {
            return Err(HandshakeError::Refused(
                404,
                format!("no application at {}", request.path()),
            ));
        };
        if self.check_origin {
            match request.origin() {
                Some(origin) if self.origin_allowed(origin) => {}
                Some(origin) => return Err(HandshakeError::OriginRefused(origin.to_string())),
                None => return Err(HandshakeError::Refused(403, "origin required".into())),
            }
        }
        Ok(offered.iter().find(|p| **p == key).map(|p| p.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_as_php_websocket_did() {
        assert_eq!(allowed_origin("http://www.Example.com/path"), "example.com");
        assert_eq!(allowed_origin("example.com:8080"), "example.com:8080");
        assert_eq!(origin_key("https://www.example.com"), "example.com");
        assert_eq!(origin_key("http://example.com/"), "example.com");
    }

    #[test]
    fn routes_by_path_with_a_fallback() {
        let mut policy = Policy {
            apps: ["demo".to_string()].into(),
            check_origin: false,
            allowed_origins: HashSet::new(),
            pages: HashMap::new(),
        };
        assert_eq!(policy.route("/demo"), Some("demo"));
        assert_eq!(policy.route("/other"), None);
        policy.apps.insert(FALLBACK.into());
        assert_eq!(policy.route("/other"), Some(FALLBACK));
    }
}
