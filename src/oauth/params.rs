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
        // The decoder serde_urlencoded runs, without serde in between: it never fails (a bad
        // percent escape stays as it is, invalid UTF-8 becomes U+FFFD), so only a repeat can.
        let mut map = HashMap::new();
        for (key, value) in url::form_urlencoded::parse(encoded) {
            match map.entry(key.into_owned()) {
                Entry::Occupied(repeated) => {
                    return Err(format!(
                        "parameter {} is repeated",
                        super::error::printable(repeated.key())
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert(value.into_owned());
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
            let reference: Vec<(String, String)> = serde_urlencoded::from_bytes(input).unwrap();
            let parsed = Params::parse(input).unwrap();
            assert_eq!(parsed.0.len(), reference.len(), "{input:?}");
            for (k, v) in &reference {
                assert_eq!(parsed.get(k), Some(v.as_str()), "{input:?}");
            }
        }
    }
}
