//! Real client addresses behind a proxy: the PROXY protocol (v1 and v2,
//! parsed by `ppp`) read before TLS and the handshake, and the
//! `X-Forwarded-For` / `Forwarded` (RFC 7239) headers of the opening
//! handshake. Each is believed only from an address in
//! [`ServerConfig::trusted_proxies`](super::ServerConfig::trusted_proxies):
//! anyone can write a header, only the proxy we put in front knows who
//! connected to it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::http::Headers;

/// Parse trusted proxy entries: CIDRs (`10.0.0.0/8`, `fd00::/8`) or single
/// addresses (`127.0.0.1`). The error names the first bad entry.
pub fn parse_trusted_proxies<S: AsRef<str>>(entries: &[S]) -> Result<Vec<IpNet>, String> {
    entries
        .iter()
        .map(|entry| {
            let entry = entry.as_ref().trim();
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("invalid trusted proxy {entry:?}: expected an IP address or CIDR")
                })
        })
        .collect()
}

/// `ip` belongs to a trusted proxy (IPv4-mapped IPv6 addresses compare as
/// IPv4, as a dual-stack socket reports IPv4 peers).
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// Longest v1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// The v2 signature its 16-byte fixed part starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Read the PROXY header a trusted proxy sends first, exactly (the bytes
/// after it are the client's: TLS or the opening handshake). Returns the
/// client's address, or `None` when the header names none (v1 `UNKNOWN`,
/// v2 `LOCAL` such as a health check, a non-IP family): the connection is
/// then the proxy's own. Errors say why the header is refused.
pub(super) async fn read_header(
    tcp: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, String> {
    match tokio::time::timeout(timeout, read_header_bytes(tcp)).await {
        Ok(Ok(header)) => parse_header(&header),
        Ok(Err(e)) => Err(format!("reading the PROXY header: {e}")),
        Err(_) => Err("no PROXY header in time".into()),
    }
}

async fn read_header_bytes(tcp: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let malformed = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    // Both versions are at least this long ("PROXY UNKNOWN\r\n" is 15).
    let mut header = vec![0u8; 8];
    tcp.read_exact(&mut header).await?;
    if V2_SIGNATURE.starts_with(&header) {
        header.resize(16, 0);
        tcp.read_exact(&mut header[8..]).await?;
        let len = u16::from_be_bytes([header[14], header[15]]) as usize;
        header.resize(16 + len, 0);
        tcp.read_exact(&mut header[16..]).await?;
        return Ok(header);
    }
    if !header.starts_with(b"PROXY ") {
        return Err(malformed("no PROXY header"));
    }
    // Up to the line end, without reading past it: peek, then take what
    // belongs to the header (everything peeked until the line ends).
    let mut peeked = [0u8; V1_MAX];
    while !header.ends_with(b"\n") {
        let room = V1_MAX - header.len();
        if room == 0 {
            return Err(malformed("PROXY v1 line too long"));
        }
        let n = tcp.peek(&mut peeked[..room]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let take = memchr::memchr(b'\n', &peeked[..n]).map_or(n, |i| i + 1);
        let start = header.len();
        header.resize(start + take, 0);
        tcp.read_exact(&mut header[start..]).await?;
    }
    Ok(header)
}

/// The client a whole PROXY header names (see [`read_header`]), its
/// address canonical (an IPv4-mapped IPv6 source is the IPv4 client, as
/// the forwarding headers and the per-IP limits see it).
pub fn parse_header(header: &[u8]) -> Result<Option<SocketAddr>, String> {
    Ok(parse_any(header)?.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port())))
}

fn parse_any(header: &[u8]) -> Result<Option<SocketAddr>, String> {
    if header.starts_with(V2_SIGNATURE) {
        use ppp::v2::{Addresses, Command, Header};
        let parsed = Header::try_from(header).map_err(|e| format!("PROXY v2: {e}"))?;
        return Ok(match (parsed.command, parsed.addresses) {
            (Command::Local, _) => None,
            (_, Addresses::IPv4(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (_, Addresses::IPv6(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (_, Addresses::Unspecified | Addresses::Unix(_)) => None,
        });
    }
    use ppp::v1::{Addresses, Header};
    // One line ending in CRLF, nothing after it (ppp would take a bare LF
    // and ignore what follows).
    if !header.ends_with(b"\r\n") || memchr::memchr(b'\n', header) != Some(header.len() - 1) {
        return Err("PROXY v1: the header must be one line ending in CRLF".into());
    }
    let parsed = Header::try_from(header).map_err(|e| format!("PROXY v1: {e}"))?;
    Ok(match parsed.addresses {
        Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Unknown => None,
    })
}

/// The client behind `peer`, a trusted proxy, per the forwarding headers
/// (`Forwarded` if sent, else `X-Forwarded-For`): walking the chain from
/// the right (the hop nearest us), the first address that is not a trusted
/// proxy. Whatever stands left of it was written by the client and is not
/// believed; an entry that is no address (`unknown`, an obfuscated name)
/// stops the walk at the last proxy. Port 0 when the entry names none.
pub fn forwarded_client(trusted: &[IpNet], peer: SocketAddr, headers: &Headers) -> SocketAddr {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .flat_map(|line| line.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .map_or("", |(_, value)| value)
        })
        .collect();
    let chain = if forwarded.is_empty() {
        headers
            .get_all("x-forwarded-for")
            .flat_map(|line| line.split(','))
            .collect()
    } else {
        forwarded
    };
    let mut client = peer;
    for node in chain.iter().rev() {
        if !is_trusted(trusted, client.ip()) {
            break;
        }
        match parse_node(node) {
            Some(addr) => client = addr,
            None => break,
        }
    }
    client
}

/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`, optionally quoted.
fn parse_node(node: &str) -> Option<SocketAddr> {
    let node = node.trim().trim_matches('"');
    let addr = if let Ok(ip) = node.parse::<IpAddr>() {
        SocketAddr::new(ip, 0)
    } else if let Ok(addr) = node.parse::<SocketAddr>() {
        addr
    } else {
        let ip = node.strip_prefix('[')?.strip_suffix(']')?;
        SocketAddr::new(ip.parse::<Ipv6Addr>().ok()?.into(), 0)
    };
    Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (name, value) in list {
            h.push(*name, *value);
        }
        h
    }

    #[test]
    fn trusted_entries_parse_or_name_the_bad_one() {
        let nets = parse_trusted_proxies(&["10.0.0.0/8", "127.0.0.1", "::1"]).unwrap();
        assert!(is_trusted(&nets, "10.1.2.3".parse().unwrap()));
        assert!(is_trusted(&nets, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_trusted(&nets, "127.0.0.2".parse().unwrap()));
        let err = parse_trusted_proxies(&["10.0.0.0/8", "10.0.0.0/33"]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        assert!(parse_trusted_proxies(&["proxy.example"]).is_err());
    }

    #[test]
    fn chain_walks_from_the_right_over_trusted_hops() {
        let nets = parse_trusted_proxies(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let client = |h| forwarded_client(&nets, peer, &headers(h)).to_string();
        // The client wrote 1.1.1.1; the proxies appended what they saw.
        let xff = [
            ("X-Forwarded-For", "1.1.1.1, 192.0.2.7"),
            ("X-Forwarded-For", "10.0.0.2"),
        ];
        assert_eq!(client(&xff), "192.0.2.7:0");
        let fwd = [(
            "Forwarded",
            r#"for=1.1.1.1, for="[2001:db8::1]:4711";proto=wss"#,
        )];
        assert_eq!(client(&fwd), "[2001:db8::1]:4711");
        assert_eq!(client(&[("Forwarded", "for=unknown")]), "127.0.0.1:5000");
        assert_eq!(client(&[]), "127.0.0.1:5000");
        // From an untrusted peer nothing is believed.
        let other: SocketAddr = "192.0.2.9:1".parse().unwrap();
        assert_eq!(forwarded_client(&nets, other, &headers(&xff)), other);
    }

    #[test]
    fn headers_of_both_versions_parse() {
        let v1 = b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\r\n";
        assert_eq!(
            parse_header(v1).unwrap(),
            Some("192.0.2.1:4000".parse().unwrap())
        );
        assert_eq!(parse_header(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert!(parse_header(b"PROXY TCP4 nonsense\r\n").is_err());
        // Found by the proxy fuzzer: ppp takes a bare LF and bytes after
        // the line; the header the reader cuts is one CRLF line.
        assert!(parse_header(b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\n").is_err());
        assert!(parse_header(b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\r\nGET").is_err());
        let mapped = b"PROXY TCP6 ::ffff:192.0.2.1 ::1 4000 80\r\n";
        assert_eq!(
            parse_header(mapped).unwrap(),
            Some("192.0.2.1:4000".parse().unwrap())
        );
        let v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "[2001:db8::5]:7".parse::<SocketAddr>().unwrap(),
                "[::1]:80".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        assert_eq!(
            parse_header(&v2).unwrap(),
            Some("[2001:db8::5]:7".parse().unwrap())
        );
    }
}
