//! Connecting: the URL, TCP (and TLS), the opening handshake.

use std::io;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig};
use tokio_rustls::TlsConnector;

use crate::config::Config;
use crate::draft::Draft;
use crate::handshake::{ClientHandshake, ClientOptions, Completed};
use crate::http::Headers;
use crate::protocol::Connection;

use super::{read_or_eof, WebSocket, READ_CHUNK};
use crate::runtime::{tls, RuntimeError, Stream};

/// How to open a connection. `ConnectOptions::default()` speaks RFC 6455
/// with the engine's default [`Config`] (all compression extensions
/// offered), trusts the Mozilla roots for `wss://`, and bounds every
/// phase by a timeout.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The draft to speak; the server's answer must be that draft's (there
    /// is no fallback). Default: RFC 6455.
    pub draft: Draft,
    /// Limits and extensions offered, shared with the connection.
    pub config: Arc<Config>,
    /// The Origin to send. The hixie drafts, hybi-01..03 and hybi-04
    /// require one and send `http[s]://<host>` when it is unset.
    pub origin: Option<String>,
    /// Subprotocols to offer, preferred first.
    pub subprotocols: Vec<String>,
    /// Extra request headers (cookies, `Authorization`, ...).
    pub extra_headers: Vec<(String, String)>,
    /// TLS settings for `wss://`; `None` trusts the Mozilla root set
    /// ([`tls::client_config`]). Its ALPN list should be empty or
    /// `http/1.1`: the upgrade is an HTTP/1.1 request. Ignored for `ws://`.
    pub tls: Option<Arc<ClientConfig>>,
    /// Bounds DNS resolution, the TCP connection (all resolved addresses,
    /// tried in turn) and, for `wss://`, the TLS handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// Bounds the WebSocket opening handshake: the request written and the
    /// answer read and validated. Default 10 s.
    pub handshake_timeout: Duration,
    /// Bounds [`WebSocket::close`] (and the teardown after the server's
    /// close): our close frame written, the server's read, its TCP close
    /// awaited. Default 5 s.
    pub close_timeout: Duration,
    /// Disable Nagle's algorithm: small frames (pings, chat messages) go out
    /// at once instead of waiting for an ACK. Default on.
    pub nodelay: bool,
    /// Open the WebSocket as a stream of an HTTP/2 connection (RFC 8441;
    /// `wss://` only, RFC 6455 only), as browsers do with a server that
    /// allows it. One connection per call; [`Http2Connection`] opens
    /// several WebSockets on one. Default off.
    ///
    /// [`Http2Connection`]: super::Http2Connection
    pub http2: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            draft: Draft::Rfc6455,
            config: Arc::new(Config::default()),
            origin: None,
            subprotocols: Vec::new(),
            extra_headers: Vec::new(),
            tls: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            nodelay: true,
            http2: false,
        }
    }
}

/// Open a WebSocket connection to `url` (`ws://` or `wss://`, host name or
/// IPv4/IPv6 literal such as `ws://[::1]:9001/`, optional port, path and
/// query), and run the opening handshake of `options.draft`.
///
/// The Host header carries `:port` only when it is not the scheme's
/// default (80, 443); TLS verifies the certificate against the URL's host
/// (SNI is sent for names, not for IP literals).
///
/// Errors: [`RuntimeError::Url`] for a URL that cannot be used,
/// [`RuntimeError::Io`] when no address accepts the connection,
/// [`RuntimeError::Tls`] when the certificate is refused,
/// [`RuntimeError::Timeout`] when a phase exceeds its limit, and
/// [`RuntimeError::Handshake`] when the server's answer is refused (e.g.
/// `UnexpectedStatus(403)`).
pub async fn connect(url: &str, options: ConnectOptions) -> Result<WebSocket, RuntimeError> {
    let target = Target::parse(url)?;
    if options.http2 {
        let connection = super::Http2Connection::connect(url, &options).await?;
        return connection.open(&target.resource, &options).await;
    }
    let ConnectOptions {
        draft,
        config,
        origin,
        subprotocols,
        extra_headers,
        tls,
        connect_timeout,
        handshake_timeout,
        close_timeout,
        nodelay,
        http2: _,
    } = options;

    // Build the request first: options that cannot be sent fail before
    // any connection is made.
    let mut request =
        ClientOptions::new(draft, target.host_header.clone(), target.resource.clone());
    request.secure = target.secure;
    request.origin = origin;
    request.subprotocols = subprotocols;
    request.extra_headers = extra_headers;
    let handshake = ClientHandshake::new(Arc::clone(&config), request)?;
    let tls = match (target.secure, tls) {
        (false, _) => None,
        (true, tls) => {
            // The name the certificate must carry; an IP literal sends no SNI.
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| RuntimeError::Url(url.to_owned(), "host is not a valid TLS name"))?;
            let tls = match tls {
                Some(tls) => tls,
                None => tls::client_config(&[])?,
            };
            Some((tls, name))
        }
    };

    let deadline = deadline_after(connect_timeout);
    let tcp = timeout_at(deadline, connect_tcp(&target.host, target.port))
        .await
        .map_err(|_| RuntimeError::Timeout("connect"))??;
    tcp.set_nodelay(nodelay)?;
    let addrs = (tcp.local_addr()?, tcp.peer_addr()?);
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some((tls, name)) => {
            let tls_stream = timeout_at(deadline, TlsConnector::from(tls).connect(name, tcp))
                .await
                .map_err(|_| RuntimeError::Timeout("TLS handshake"))?
                .map_err(tls_error)?;
            Stream::ClientTls(Box::new(tls_stream))
        }
    };

    let deadline = deadline_after(handshake_timeout);
    let (stream, completed, response_headers) = timeout_at(deadline, open(stream, handshake))
        .await
        .map_err(|_| RuntimeError::Timeout("opening handshake"))??;
    Ok(WebSocket::opened(
        stream,
        config,
        completed,
        response_headers,
        addrs,
        close_timeout,
    ))
}

impl WebSocket {
    /// A connection whose opening handshake `completed` on `stream`;
    /// `addrs` are the TCP connection's local and peer addresses.
    pub(super) fn opened(
        stream: Stream,
        config: Arc<Config>,
        completed: Completed,
        response_headers: Headers,
        (local_addr, peer_addr): (std::net::SocketAddr, std::net::SocketAddr),
        close_timeout: Duration,
    ) -> Self {
        WebSocket {
            stream: Some(stream),
            read_ahead_limit: config.max_message_size.saturating_add(READ_CHUNK),
            conn: Connection::from_completed(config, completed),
            response_headers,
            local_addr,
            peer_addr,
            close_timeout,
            ready: None,
            deferred: None,
            peer_close: None,
            eof: false,
            read_error: None,
            finished: false,
        }
    }
}

/// Resolve `host` and connect to the first address that accepts; the
/// error is the last address's.
pub(super) async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, RuntimeError> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(RuntimeError::Io(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
    })))
}

/// A TLS handshake failure: rustls' verdict (certificate, protocol) as
/// [`RuntimeError::Tls`], anything else (a reset) as I/O.
pub(super) fn tls_error(e: io::Error) -> RuntimeError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => RuntimeError::Tls(tls.to_string()),
        None => RuntimeError::Io(e),
    }
}

/// Write the request and feed the answer to the handshake until it
/// completes. Nothing is sent after the request before the answer is
/// validated (hybi-04 derives the mask key from the server's nonce).
async fn open(
    mut stream: Stream,
    mut handshake: ClientHandshake,
) -> Result<(Stream, Completed, Headers), RuntimeError> {
    stream.write_all(handshake.request_bytes()).await?;
    stream.flush().await?;
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = read_or_eof(stream.read(&mut buf).await)?;
        if n == 0 {
            return Err(RuntimeError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the opening handshake",
            )));
        }
        if let Some(completed) = handshake.feed(&buf[..n])? {
            let headers = handshake.response_headers().cloned().unwrap_or_default();
            return Ok((stream, completed, headers));
        }
    }
}

/// `now + d`, or far in the future when `d` is huge (`Duration::MAX`
/// disables a limit).
pub(super) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// What a `ws://` / `wss://` URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) secure: bool,
    /// Host to resolve and to verify the certificate against: a lowercase
    /// name, an IPv4 literal, or an IPv6 literal without brackets.
    pub(super) host: String,
    pub(super) port: u16,
    /// The Host header: brackets around IPv6, `:port` unless default.
    pub(super) host_header: String,
    /// Path and query, percent-encoded where HTTP needs it.
    pub(super) resource: String,
}

impl Target {
    pub(super) fn parse(url: &str) -> Result<Target, RuntimeError> {
        let bad = |why: &'static str| RuntimeError::Url(url.to_owned(), why);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or(bad("expected ws://host/path or wss://host/path"))?;
        let (secure, default_port) = if scheme.eq_ignore_ascii_case("ws") {
            (false, 80)
        } else if scheme.eq_ignore_ascii_case("wss") {
            (true, 443)
        } else {
            return Err(bad("the scheme must be ws or wss"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(end);
        if resource.contains('#') {
            return Err(bad("WebSocket URLs cannot have a fragment"));
        }
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; send an Authorization header",
            ));
        }
        let (host, port, bracketed) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or(bad("unclosed [ in the host"))?;
            let addr: Ipv6Addr = addr.parse().map_err(|_| bad("invalid IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or(bad("junk after the IPv6 address"))?,
                ),
            };
            (addr.to_string(), port, true)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            if host.is_empty() {
                return Err(bad("missing host"));
            }
            if !host.is_ascii() {
                return Err(bad("non-ASCII host names must be given in punycode (xn--)"));
            }
            if !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err(bad("invalid character in the host"));
            }
            (host.to_ascii_lowercase(), port, false)
        };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(bad("invalid port"))?,
        };
        let mut host_header = if bracketed {
            format!("[{host}]")
        } else {
            host.clone()
        };
        if port != default_port {
            host_header.push_str(&format!(":{port}"));
        }
        Ok(Target {
            secure,
            host,
            port,
            host_header,
            resource: encode_resource(resource),
        })
    }
}

/// Path and query as a request target: `/` when empty, a `/` before a bare
/// query, and bytes HTTP cannot carry (spaces, controls, non-ASCII)
/// percent-encoded.
fn encode_resource(resource: &str) -> String {
    let mut out = String::with_capacity(resource.len() + 1);
    if !resource.starts_with('/') {
        out.push('/');
    }
    for b in resource.bytes() {
        if (0x21..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn refused(url: &str) -> &'static str {
        match Target::parse(url) {
            Err(RuntimeError::Url(u, why)) => {
                assert_eq!(u, url);
                why
            }
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn hosts_ports_and_resources() {
        let t = target("ws://Example.COM/chat?room=1&x=%20");
        assert_eq!(
            t,
            Target {
                secure: false,
                host: "example.com".into(),
                port: 80,
                host_header: "example.com".into(),
                resource: "/chat?room=1&x=%20".into(),
            }
        );
        let t = target("wss://example.com");
        assert_eq!((t.secure, t.port, t.resource.as_str()), (true, 443, "/"));
        assert_eq!(target("WSS://h:443/").host_header, "h");
        assert_eq!(target("ws://h:443/").host_header, "h:443");
        assert_eq!(target("wss://h:80/").host_header, "h:80");
        assert_eq!(target("ws://h:/").port, 80);
        let t = target("ws://127.0.0.1:9001?q=1");
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.resource.as_str()
            ),
            ("127.0.0.1", 9001, "127.0.0.1:9001", "/?q=1")
        );
    }

    #[test]
    fn ipv6_literals() {
        let t = target("ws://[::1]:9001/a");
        assert_eq!(
            (t.host.as_str(), t.port, t.host_header.as_str()),
            ("::1", 9001, "[::1]:9001")
        );
        let t = target("wss://[2001:DB8::1]/");
        assert_eq!(
            (t.host.as_str(), t.host_header.as_str()),
            ("2001:db8::1", "[2001:db8::1]")
        );
    }

    #[test]
    fn resources_are_made_sendable() {
        assert_eq!(target("ws://h/a b/é").resource, "/a%20b/%C3%A9");
        assert_eq!(target("ws://h?x").resource, "/?x");
    }

    #[test]
    fn unusable_urls() {
        assert!(refused("http://h/").contains("scheme"));
        assert!(refused("h/path").contains("ws://"));
        assert!(refused("ws:///path").contains("missing host"));
        assert!(refused("ws://:80/").contains("missing host"));
        assert!(refused("ws://h/#frag").contains("fragment"));
        assert!(refused("ws://user:pw@h/").contains("credentials"));
        assert!(refused("ws://[::1/").contains("unclosed"));
        assert!(refused("ws://[::g]/").contains("IPv6"));
        assert!(refused("ws://[::1]x/").contains("junk"));
        for port in ["0", "65536", "-1", "+80", "8o", "1:2"] {
            assert!(
                refused(&format!("ws://h:{port}/")).contains("port"),
                "{port}"
            );
        }
        assert!(refused("ws://bücher.de/").contains("punycode"));
        assert!(refused("ws://a b/").contains("character"));
        assert!(refused("ws://a%20b/").contains("character"));
    }

    #[test]
    fn deadlines_saturate() {
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(3600));
    }
}
