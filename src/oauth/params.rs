//! Query and form parameters, where a repeated parameter is an error (RFC 6749 §3.1, §3.2).

use std::collections::HashMap;

/// Parameters that each appeared at most once.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text; `Err` names a repeated parameter or
    /// says the encoding is broken.
    pub fn parse(encoded: &[u8]) -> Result<Self, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(encoded)
            .map_err(|_| "the parameters are not valid form encoding".to_string())?;
        let mut map = HashMap::with_capacity(pairs.len());
        for (key, value) in pairs {
            if map.contains_key(&key) {
                return Err(format!(
                    "parameter {} is repeated",
                    super::error::printable(&key)
                ));
            }
            map.insert(key, value);
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
}
