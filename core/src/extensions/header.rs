//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1, RFC 7230
//! tokens and quoted-strings), and reading extension parameters against a
//! table of known ones.

use std::borrow::Cow;
use std::fmt;

/// How an extension parameter takes a value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arity {
    /// Never has a value.
    Flag,
    /// Always has window bits.
    Bits,
    /// Window bits or nothing (client_max_window_bits in an offer).
    OptionalBits,
}

/// A known parameter as read: `None` when absent, `Some(None)` when present
/// without a value.
pub(super) type ParamValue = Option<Option<u8>>;

/// Reads `element`'s parameters against the known ones (`specs`): an
/// unknown or repeated parameter, or a value that does not fit, is an error
/// naming it.
pub(super) fn read_params<const N: usize>(
    element: &Element<'_>,
    specs: [(&str, Arity); N],
) -> Result<[ParamValue; N], String> {
    let mut values = [None; N];
    for (name, value) in &element.params {
        let i = specs
            .iter()
            .position(|(known, _)| known.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("unknown parameter {name}"))?;
        if values[i].is_some() {
            return Err(format!("duplicate parameter {name}"));
        }
        values[i] = Some(match (specs[i].1, value) {
            (Arity::Flag | Arity::OptionalBits, None) => None,
            (Arity::Flag, Some(v)) => return Err(format!("{name} takes no value, got {v:?}")),
            (Arity::Bits, None) => return Err(format!("{name} needs a value")),
            (Arity::Bits | Arity::OptionalBits, Some(v)) => Some(
                parse_bits(v).ok_or_else(|| format!("{name}={v:?} is not a window size 8..15"))?,
            ),
        });
    }
    Ok(values)
}

/// Window bits as written on the wire: 8..=15 in plain digits, no leading
/// zero (RFC 7692 §7.1.2).
pub(super) fn parse_bits(v: &str) -> Option<u8> {
    match v.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// Writes one extension element: `name; flag; key=bits`.
pub(super) struct ElementWriter(pub(super) String);

impl ElementWriter {
    pub(super) fn new(name: &str) -> Self {
        ElementWriter(name.to_string())
    }

    pub(super) fn param(&mut self, name: &str, bits: Option<u8>) {
        self.0.push_str("; ");
        self.0.push_str(name);
        if let Some(bits) = bits {
            self.0.push('=');
            self.0.push_str(&bits.to_string());
        }
    }
}

/// One element of a `Sec-WebSocket-Extensions` list (RFC 6455 §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Element<'a> {
    pub(super) name: &'a str,
    /// In order; quoted values are unescaped (and then are tokens).
    pub(super) params: Vec<(&'a str, Option<Cow<'a, str>>)>,
}

impl fmt::Display for Element<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        for (name, value) in &self.params {
            write!(f, "; {name}")?;
            if let Some(value) = value {
                write!(f, "={value}")?;
            }
        }
        Ok(())
    }
}

/// Parses one header value into its elements, in order. Empty list
/// elements are skipped (RFC 7230 §7); a malformed element is an `Err`
/// saying why, and parsing resumes after the next comma outside a quoted
/// string, so one bad offer does not hide the ones after it.
pub(super) fn parse_list(value: &str) -> Vec<Result<Element<'_>, String>> {
    let mut p = Parser { s: value, pos: 0 };
    let mut elements = Vec::new();
    loop {
        p.skip_ows();
        match p.peek() {
            None => return elements,
            Some(b',') => p.pos += 1,
            Some(_) => {
                let start = p.pos;
                let element = p.element().map_err(|why| {
                    p.skip_element();
                    format!("{why} in {:?}", value[start..p.pos].trim_end())
                });
                elements.push(element);
            }
        }
    }
}

/// A cursor over a header value. It only ever stops on ASCII bytes, so
/// every position it slices at is a char boundary.
struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// `token [ ";" param ]*`, stopping before `,` or at the end.
    fn element(&mut self) -> Result<Element<'a>, &'static str> {
        let name = self.token().ok_or("expected an extension name")?;
        let mut params = Vec::new();
        loop {
            self.skip_ows();
            match self.peek() {
                None | Some(b',') => return Ok(Element { name, params }),
                Some(b';') => self.pos += 1,
                Some(_) => return Err("expected ';' or ','"),
            }
            self.skip_ows();
            let param = self.token().ok_or("expected a parameter name")?;
            self.skip_ows();
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.skip_ows();
                Some(self.value()?)
            } else {
                None
            };
            params.push((param, value));
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.s[start..self.pos])
    }

    /// A token, or a quoted-string that unescapes to a token (RFC 6455
    /// §9.1 allows only those).
    fn value(&mut self) -> Result<Cow<'a, str>, &'static str> {
        if self.peek() != Some(b'"') {
            return self.token().map(Cow::Borrowed).ok_or("expected a value");
        }
        let bytes = self.s.as_bytes();
        let start = self.pos + 1;
        let mut end = start;
        let mut escaped = false;
        while end < bytes.len() && bytes[end] != b'"' {
            escaped |= bytes[end] == b'\\';
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        if end >= bytes.len() {
            return Err("unterminated quoted string");
        }
        self.pos = end + 1;
        let raw = &self.s[start..end];
        let value = if escaped {
            let mut unescaped = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                unescaped.extend(if c == '\\' { chars.next() } else { Some(c) });
            }
            Cow::Owned(unescaped)
        } else {
            Cow::Borrowed(raw)
        };
        if !value.is_empty() && value.bytes().all(is_tchar) {
            Ok(value)
        } else {
            Err("quoted value is not a token")
        }
    }

    /// Skips the rest of a malformed element, up to the next `,` outside a
    /// quoted string.
    fn skip_element(&mut self) {
        let bytes = self.s.as_bytes();
        let mut quoted = false;
        while self.pos < bytes.len() {
            match bytes[self.pos] {
                b',' if !quoted => return,
                b'"' => quoted = !quoted,
                b'\\' if quoted => self.pos += 1,
                _ => {}
            }
            self.pos += 1;
        }
        self.pos = bytes.len();
    }
}

/// RFC 7230 `tchar`.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(value: &str) -> Vec<Result<String, ()>> {
        parse_list(value)
            .into_iter()
            .map(|e| e.map(|e| e.to_string()).map_err(|_| ()))
            .collect()
    }

    #[test]
    fn grammar_elements_params_and_ows() {
        assert_eq!(
            names("permessage-deflate"),
            [Ok("permessage-deflate".into())]
        );
        assert_eq!(
            names(" permessage-deflate ;client_max_window_bits\t, foo;a = 1 ; b=\"2\""),
            [
                Ok("permessage-deflate; client_max_window_bits".into()),
                Ok("foo; a=1; b=2".into())
            ]
        );
        // Empty list elements are ignored (RFC 7230 §7).
        assert_eq!(names(" , ,a,, b ,"), [Ok("a".into()), Ok("b".into())]);
        assert_eq!(names(""), []);
    }

    #[test]
    fn grammar_quoted_values_unescape_to_tokens() {
        let list = parse_list(r#"a; x="1\0"; y="ab""#);
        let el = list[0].as_ref().unwrap();
        assert_eq!(el.params[0], ("x", Some(Cow::Owned("10".into()))));
        assert_eq!(el.params[1], ("y", Some(Cow::Borrowed("ab"))));
        // Not a token once unescaped.
        assert_eq!(names(r#"a; x="1 0""#), [Err(())]);
        assert_eq!(names(r#"a; x="""#), [Err(())]);
        assert_eq!(names(r#"a; x="\"""#), [Err(())]);
    }

    #[test]
    fn grammar_skips_malformed_elements() {
        // A comma inside quotes does not end the bad element.
        assert_eq!(
            names(r#"a; x="1,2", permessage-deflate"#),
            [Err(()), Ok("permessage-deflate".into())]
        );
        for bad in [
            ";a", "a b", "a;", "a; =1", "a; x=", "a; x=1 2", "a;; x", "é",
        ] {
            assert_eq!(names(&format!("{bad}, ok")).len(), 2, "{bad:?}");
            assert_eq!(names(&format!("{bad}, ok"))[0], Err(()), "{bad:?}");
        }
        // An unterminated quote swallows the rest of the value.
        assert_eq!(names("a; x=\"1, b"), [Err(())]);
        assert_eq!(names("a; x=\"1\\"), [Err(())]);
        let err = parse_list("ok, a b").remove(1).unwrap_err();
        assert_eq!(err, "expected ';' or ',' in \"a b\"");
    }

    #[test]
    fn window_bits_syntax() {
        for (v, bits) in [("8", 8), ("9", 9), ("10", 10), ("15", 15)] {
            assert_eq!(parse_bits(v), Some(bits));
        }
        for v in ["7", "08", "16", "010", "", "1", "+9", "9 ", "٩"] {
            assert_eq!(parse_bits(v), None, "{v:?}");
        }
    }
}
