//! Query and form parameters, where a repeated parameter is an error (RFC 6749 §3.1, §3.2).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// Parameters that each appeared at most once.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text; `Err` names a repeated parameter or
    /// says the encoding is broken.
    pub fn parse(encoded: &[u8]) -> Result<Self, String> {
        // Decoded as `url::form_urlencoded` (and so serde_urlencoded) decodes, which never
        // fails: a bad percent escape stays as it is, invalid UTF-8 becomes U+FFFD. Only a
        // repeat is an error.
        let mut map = HashMap::new();
        let pairs = encoded.split(|b| *b == b'&').filter(|p| !p.is_empty());
        for pair in pairs {
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            match map.entry(decode(key)) {
                Entry::Occupied(repeated) => {
                    return Err(format!(
                        "parameter {} is repeated",
                        super::error::printable(repeated.key())
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(decode(value));
                }
            }
        }
        Ok(Self(map))
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of `name` if present and non-empty (OAuth treats empty as absent).
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }
}

/// One name or value: `+` is a space, `%XY` the byte XY (anything else after `%` is kept as
/// it is), then UTF-8 with U+FFFD for what is not. One pass over the bytes, and none at all to
/// copy for the usual case of a value without escapes.
fn decode(raw: &[u8]) -> String {
    if !raw.iter().any(|b| matches!(b, b'%' | b'+')) {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => match (raw.get(i + 1).and_then(hex), raw.get(i + 2).and_then(hex)) {
                (Some(high), Some(low)) => {
                    bytes.push(high << 4 | low);
                    i += 2;
                }
                _ => bytes.push(b'%'),
            },
            b => bytes.push(b),
        }
        i += 1;
    }
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex(digit: &u8) -> Option<u8> {
    (*digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        let p = Params::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.non_empty("b"), None);
        assert_eq!(p.get("c"), Some("x y"));
    }

    #[test]
    fn decoding_is_what_serde_urlencoded_does() {
        for input in [
            &b"a=1&b=2"[..],
            b"a=%zz&b=%4",
            b"a=\xff\xfe&%C3%A9=%C3",
            b"+a+=+b+&&=&c",
            b"",
            b"x=1%262&y=%3D",
        ] {
            same_as_serde_urlencoded(input);
        }
    }

    fn same_as_serde_urlencoded(input: &[u8]) {
        let reference: Vec<(String, String)> = serde_urlencoded::from_bytes(input).unwrap();
        let mut seen = std::collections::HashSet::new();
        if !reference.iter().all(|(k, _)| seen.insert(k.clone())) {
            assert!(Params::parse(input).is_err(), "{input:?}");
            return;
        }
        let parsed = Params::parse(input).unwrap();
        assert_eq!(parsed.0.len(), reference.len(), "{input:?}");
        for (k, v) in &reference {
            assert_eq!(parsed.get(k), Some(v.as_str()), "{input:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_as_serde_urlencoded_decodes_them(
            input in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"%+&=aF09\xc3\xa9\xff".to_vec()),
                    proptest::num::u8::ANY,
                ],
                0..40,
            )
        ) {
            same_as_serde_urlencoded(&input);
        }
    }
}
