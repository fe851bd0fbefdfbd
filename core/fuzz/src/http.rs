//! `http`: the HTTP head parsers ([`parse_request`], [`parse_response`])
//! and the header list ([`Headers`]) they build, on arbitrary bytes under
//! fuzzer-chosen `max_head_bytes` and `max_headers`.
//!
//! The `request` and `response` targets reach these parsers only through
//! the handshakes, which stop at the first header they dislike; here every
//! head the parser accepts is inspected. Checked: a complete head occupies
//! `n <= min(buf.len(), max_head_bytes)` bytes and at most `max_headers`
//! lines; parsing just those `n` bytes gives the same head; every strict
//! prefix is incomplete (`Ok(None)`), so a head split across reads parses
//! as it does whole; a failure on the whole buffer is a failure on every
//! longer one. On the headers: names are tokens, values ISO-8859-1
//! (one `char` per byte, no CR, LF or NUL); `get`, `get_all`, `get_single`,
//! `has_token` agree with `iter`; pushing the lines into a new list
//! rebuilds an equal list.

use polysocket::http::{parse_request, parse_response, split_list, Headers};
use polysocket::{Config, HandshakeError};

use super::input::{Input, Rng};

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let response = input.bool();
    let config = Config {
        max_head_bytes: input.pick(&[16 * 1024, 0, 1, 16, 64, 256, 1024]),
        max_headers: input.pick(&[64, 0, 1, 2, 8, 65, 1000]),
        ..Config::default()
    };
    let mut rng = Rng::new(u64::from(input.u16()));
    let buf = input.rest();

    let parse = |b: &[u8]| -> Result<Option<(Headers, usize)>, HandshakeError> {
        if response {
            Ok(parse_response(b, &config)?.map(|(h, n)| {
                // Three digits, not necessarily 1xx..5xx: "011" is 11.
                assert!(h.status < 1000, "status {}", h.status);
                assert!(h.minor_version <= 1);
                assert!(!h.reason.contains(['\r', '\n']));
                (h.headers, n)
            }))
        } else {
            Ok(parse_request(b, &config)?.map(|(h, n)| {
                assert!(!h.method.is_empty() && !h.target.is_empty());
                assert!(h.minor_version <= 1);
                (h.headers, n)
            }))
        }
    };

    let whole = parse(buf);
    match &whole {
        Ok(Some((headers, n))) => {
            let n = *n;
            assert!(n <= buf.len() && n <= config.max_head_bytes, "n {n}");
            assert!(headers.len() <= config.max_headers);
            check_headers(headers);
            assert_eq!(parse(&buf[..n]), whole, "the head alone");
            // A few strict prefixes, always including the longest (a
            // complete head takes at least one byte).
            for cut in [n - 1, rng.below(n), rng.below(n)] {
                assert_eq!(parse(&buf[..cut]), Ok(None), "prefix of {cut} bytes of {n}");
            }
        }
        Ok(None) => assert!(buf.len() <= config.max_head_bytes),
        Err(e) => {
            // More bytes never repair a bad head.
            let mut longer = buf.to_vec();
            longer.extend_from_slice(b"\r\n\r\nHost: x\r\n\r\n");
            assert!(parse(&longer).is_err(), "{e} then fine with more bytes");
        }
    }
}

fn check_headers(headers: &Headers) {
    let lines: Vec<(&str, &str)> = headers.iter().collect();
    assert_eq!(lines.len(), headers.len());
    assert_eq!(headers.is_empty(), lines.is_empty());
    let mut rebuilt = Headers::new();
    for &(name, value) in &lines {
        assert!(
            !name.is_empty() && name.bytes().all(is_token_byte),
            "{name:?}"
        );
        assert!(value
            .chars()
            .all(|c| u32::from(c) < 256 && !"\r\n\0".contains(c)));
        rebuilt.push(name, value);

        let same: Vec<&str> = lines
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
            .collect();
        let upper = name.to_ascii_uppercase();
        assert_eq!(headers.get_all(&upper).collect::<Vec<_>>(), same);
        assert_eq!(headers.get(name), same.first().copied());
        match headers.get_single("Sec-WebSocket-Key") {
            Ok(v) => assert!(v.is_none() || headers.get_all("sec-websocket-key").count() == 1),
            Err(e) => assert_eq!(e, HandshakeError::DuplicateHeader("Sec-WebSocket-Key")),
        }
        for token in split_list(value) {
            assert!(!token.is_empty() && token.trim() == token);
            assert!(headers.has_token(&upper, &token.to_ascii_lowercase()));
        }
    }
    assert_eq!(&rebuilt, headers);
}

/// RFC 9110 `tchar`, as `httparse` accepts it in names.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
