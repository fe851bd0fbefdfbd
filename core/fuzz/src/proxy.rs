//! `proxy`: what a proxy (or anyone claiming to be one) sends ahead of the
//! client: the PROXY protocol header ([`parse_header`], v1 text and v2
//! binary, parsed by `ppp`) and the `Forwarded` / `X-Forwarded-For` chain
//! walked over trusted hops ([`forwarded_client`]). Needs polysocket's
//! `runtime` feature. Three modes:
//!
//! * **bytes**: arbitrary bytes as a PROXY header give an address or an
//!   error, never a panic.
//! * **header**: a v1 or v2 header the fuzzer describes (TCP over IPv4 or
//!   IPv6, PROXY or LOCAL, an unspecified family, TLVs after v2's
//!   addresses) names its source, canonical, or none for LOCAL and the
//!   unspecified family; every strict prefix of it is refused.
//! * **chain**: a forwarding chain the fuzzer describes (addresses each
//!   trusted or not, `unknown`, obfuscated names, ports, brackets, quotes,
//!   other parameters, spread over several header lines) gives the client
//!   that walking it from the right over trusted hops gives, computed here
//!   from the addresses rather than from the text.

use std::net::{IpAddr, SocketAddr};

use polysocket::http::Headers;
use polysocket::runtime::server::fuzzing::{forwarded_client, is_trusted, parse_header};
use polysocket::runtime::server::{parse_trusted_proxies, IpNet};

use super::input::{Input, Rng};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Addresses the modes draw from: trusted or not depending on the nets
/// picked, IPv4, IPv6 and an IPv4-mapped IPv6 address.
const POOL: [&str; 8] = [
    "127.0.0.1",
    "10.0.0.1",
    "10.1.2.3",
    "192.0.2.7",
    "::1",
    "2001:db8::5",
    "::ffff:10.0.0.9",
    "203.0.113.1",
];
const NETS: [&str; 4] = ["127.0.0.1/32", "10.0.0.0/8", "::1/128", "2001:db8::/64"];

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 3 {
        0 => bytes(input.rest()),
        1 => header(&mut input),
        _ => chain(&mut input),
    }
}

fn bytes(data: &[u8]) {
    // A v1 header is one line ending in CRLF, the reader's cut: anything
    // else is refused, whatever ppp would make of it.
    if let (Ok(_), false) = (parse_header(data), data.starts_with(V2_SIGNATURE)) {
        let first_lf = data.iter().position(|&b| b == b'\n');
        assert!(
            data.ends_with(b"\r\n") && first_lf == Some(data.len() - 1),
            "{data:?}"
        );
    }
}

fn header(input: &mut Input<'_>) {
    let v6 = input.bool();
    let local = input.bool();
    let unspecified = input.byte() % 8 == 0;
    let source = address(input, v6);
    let destination = address(input, v6);
    let (wire, expected) = if input.bool() {
        let len = usize::from(input.byte());
        let tlvs = input.bytes(len).to_vec();
        let wire = v2(source, destination, local, unspecified, &tlvs);
        let named = !local && !unspecified;
        (wire, named.then_some(source))
    } else {
        let wire = match unspecified {
            true => b"PROXY UNKNOWN ignored\r\n".to_vec(),
            false => v1(source, destination),
        };
        (wire, (!unspecified).then_some(source))
    };
    let canonical = expected.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()));
    assert_eq!(parse_header(&wire), Ok(canonical), "{wire:?}");
    for end in 0..wire.len() {
        assert!(parse_header(&wire[..end]).is_err(), "{:?}", &wire[..end]);
    }
}

fn address(input: &mut Input<'_>, v6: bool) -> SocketAddr {
    let ip = match v6 {
        true => IpAddr::from(input.array::<16>()),
        false => IpAddr::from(input.array::<4>()),
    };
    SocketAddr::new(ip, input.u16())
}

fn v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv6() { "TCP6" } else { "TCP4" };
    let (s, d) = (source, destination);
    let line = format!(
        "PROXY {family} {} {} {} {}\r\n",
        s.ip(),
        d.ip(),
        s.port(),
        d.port()
    );
    line.into_bytes()
}

/// Written here from the specification rather than with `ppp`'s builder,
/// so that the parser is checked against an independent encoding.
fn v2(
    source: SocketAddr,
    destination: SocketAddr,
    local: bool,
    unspecified: bool,
    tlvs: &[u8],
) -> Vec<u8> {
    let mut addresses = Vec::new();
    let family = match (unspecified, source.ip(), destination.ip()) {
        (true, _, _) => 0x00,
        (false, IpAddr::V4(s), IpAddr::V4(d)) => {
            addresses.extend(s.octets().iter().chain(&d.octets()));
            0x11
        }
        (false, IpAddr::V6(s), IpAddr::V6(d)) => {
            addresses.extend(s.octets().iter().chain(&d.octets()));
            0x21
        }
        _ => unreachable!("both addresses of one family"),
    };
    if !unspecified {
        addresses.extend(source.port().to_be_bytes());
        addresses.extend(destination.port().to_be_bytes());
    }
    addresses.extend(tlvs);
    let mut wire = V2_SIGNATURE.to_vec();
    wire.push(if local { 0x20 } else { 0x21 });
    wire.push(family);
    wire.extend((addresses.len() as u16).to_be_bytes());
    wire.extend(addresses);
    wire
}

/// One hop of a forwarding chain, as the fuzzer describes it.
enum Hop {
    /// A pool address, with a port or not.
    Address(IpAddr, Option<u16>),
    /// `unknown`, an obfuscated name (`_proxy1`) or no `for` at all: the
    /// walk stops here.
    Opaque(&'static str),
}

fn chain(input: &mut Input<'_>) {
    let pool: Vec<IpAddr> = POOL.iter().map(|a| a.parse().expect("pool")).collect();
    let mask = input.byte();
    let chosen: Vec<&str> = (0..NETS.len())
        .filter(|i| mask >> i & 1 == 1)
        .map(|i| NETS[i])
        .collect();
    let trusted: Vec<IpNet> = parse_trusted_proxies(&chosen).expect("nets");
    let peer = SocketAddr::new(input.pick(&pool), input.u16());
    let hops: Vec<Hop> = (0..input.byte() % 7)
        .map(|_| match input.byte() % 10 {
            0 => Hop::Opaque("unknown"),
            1 => Hop::Opaque("_hidden"),
            2 => Hop::Opaque(""),
            n => {
                let port = (n % 2 == 0).then(|| input.u16());
                Hop::Address(input.pick(&pool), port)
            }
        })
        .collect();
    let mut rng = Rng::new(input.u64());
    let forwarded = rng.chance(2);
    let elements: Vec<String> = hops
        .iter()
        .map(|hop| match forwarded {
            true => forwarded_element(hop, &mut rng),
            false => forwarded_for_entry(hop),
        })
        .collect();
    let mut headers = Headers::new();
    let name = if forwarded {
        "Forwarded"
    } else {
        "X-Forwarded-For"
    };
    let mut line: Vec<&str> = Vec::new();
    for (i, element) in elements.iter().enumerate() {
        line.push(element);
        if i + 1 == elements.len() || rng.chance(3) {
            let separator = [",", ", ", " ,  "][rng.below(3)];
            headers.push(name, line.join(separator));
            line.clear();
        }
    }
    if forwarded && !elements.is_empty() && rng.chance(2) {
        // Forwarded wins over X-Forwarded-For when both are sent.
        headers.push("X-Forwarded-For", "198.51.100.99");
    }
    let mut expected = peer;
    for hop in hops.iter().rev() {
        if !is_trusted(&trusted, expected.ip()) {
            break;
        }
        match hop {
            Hop::Address(ip, port) => {
                expected = SocketAddr::new(ip.to_canonical(), port.unwrap_or(0))
            }
            Hop::Opaque(_) => break,
        }
    }
    let found = forwarded_client(&trusted, peer, &headers);
    let lines: Vec<_> = headers.iter().collect();
    assert_eq!(found, expected, "{lines:?} trusted {chosen:?} peer {peer}");
}

/// `X-Forwarded-For` spelling: a bare address, `v4:port`, `[v6]:port`.
fn forwarded_for_entry(hop: &Hop) -> String {
    match hop {
        Hop::Address(ip, port) => node(ip, *port),
        Hop::Opaque(name) => (*name).into(),
    }
}

/// RFC 7239 spelling: `for=` (any case) among other parameters, quoted
/// where the value needs it (brackets, ports) and sometimes where not.
fn forwarded_element(hop: &Hop, rng: &mut Rng) -> String {
    let name = ["for", "For", "FOR"][rng.below(3)];
    let value = match hop {
        Hop::Address(ip, port) => {
            let value = node(ip, *port);
            let quoted = value.contains(':') || rng.chance(3);
            if quoted {
                format!("\"{value}\"")
            } else {
                value
            }
        }
        Hop::Opaque("") => return "proto=https".into(),
        Hop::Opaque(opaque) => (*opaque).into(),
    };
    match rng.below(3) {
        0 => format!("{name}={value}"),
        1 => format!("proto=https;{name}={value}"),
        _ => format!("by=_lb; {name}={value} ;host=example.com"),
    }
}

fn node(ip: &IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (IpAddr::V4(v4), Some(port)) => format!("{v4}:{port}"),
        (IpAddr::V6(v6), Some(port)) => format!("[{v6}]:{port}"),
        (ip, None) => ip.to_string(),
    }
}
