//! The hixie answer layout shared by hixie-75 and hixie-76 (and hybi-00..03):
//! a fixed status prefix, the origin echoed back and the full URL in a
//! Location header. The two drafts differ only in names and the prefix.

/// The per-draft names of the hixie answer.
#[derive(Debug)]
pub(crate) struct HixieNames {
    /// Status line, `Upgrade` and `Connection`, exactly as sent.
    pub prefix: &'static [u8],
    pub origin: &'static str,
    pub location: &'static str,
    /// Names the single subprotocol, in the request and in the answer.
    pub protocol: &'static str,
}

/// hixie-75. Its clients compare the first 85 bytes of the answer byte for
/// byte, so the prefix (note "Web Socket" with a space) is fixed.
pub(crate) const HIXIE75: HixieNames = HixieNames {
    prefix: b"HTTP/1.1 101 Web Socket Protocol Handshake\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n",
    origin: "WebSocket-Origin",
    location: "WebSocket-Location",
    protocol: "WebSocket-Protocol",
};

/// hixie-76 / hybi-00..03 ("WebSocket" without the space).
pub(crate) const HIXIE76: HixieNames = HixieNames {
    prefix: b"HTTP/1.1 101 WebSocket Protocol Handshake\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n",
    origin: "Sec-WebSocket-Origin",
    location: "Sec-WebSocket-Location",
    protocol: "Sec-WebSocket-Protocol",
};

/// The URL a hixie answer names: `ws[s]://` + Host + resource. The Host
/// value already carries the port when it is not the default one.
pub(crate) fn location(secure: bool, host: &str, resource: &str) -> String {
    let scheme = if secure { "wss://" } else { "ws://" };
    let slash = if resource.starts_with('/') { "" } else { "/" };
    let mut url = String::with_capacity(scheme.len() + host.len() + slash.len() + resource.len());
    url.push_str(scheme);
    url.push_str(host);
    url.push_str(slash);
    url.push_str(resource);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hixie75_prefix_is_the_85_bytes_clients_compare() {
        assert_eq!(HIXIE75.prefix.len(), 85);
        assert!(HIXIE76
            .prefix
            .starts_with(b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n"));
    }

    #[test]
    fn locations() {
        assert_eq!(
            location(false, "example.com", "/demo"),
            "ws://example.com/demo"
        );
        assert_eq!(location(true, "h:8443", "/a?b=c"), "wss://h:8443/a?b=c");
        assert_eq!(location(false, "h", "?q"), "ws://h/?q");
    }
}
