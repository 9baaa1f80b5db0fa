//! Scope strings (RFC 6749 §3.3): space-separated, order-insensitive sets.

use std::collections::HashSet;

/// The longest scope string a request may carry, in bytes (SPEC §16).
pub const MAX_SCOPE_BYTES: usize = 1024;

/// The most distinct tokens a requested scope may hold (SPEC §16).
pub const MAX_SCOPE_TOKENS: usize = 64;

/// A parsed scope: distinct tokens in the order first given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Vec<String>);

impl Scope {
    /// Parses a space-separated scope string; empty and repeated tokens are dropped. Linear in
    /// the length of `raw` (a set remembers the tokens seen), whatever it holds.
    pub fn parse(raw: &str) -> Self {
        let mut seen = HashSet::new();
        let tokens = raw
            .split(' ')
            .filter(|t| !t.is_empty() && seen.insert(*t))
            .map(str::to_string)
            .collect();
        Self(tokens)
    }

    /// Parses a scope a client asks for, refusing one longer than [`MAX_SCOPE_BYTES`] or with
    /// more than [`MAX_SCOPE_TOKENS`] distinct tokens; `Err` is the `error_description`.
    pub fn parse_bounded(raw: &str) -> Result<Self, String> {
        if raw.len() > MAX_SCOPE_BYTES {
            return Err(format!("scope is longer than {MAX_SCOPE_BYTES} bytes"));
        }
        let scope = Self::parse(raw);
        if scope.0.len() > MAX_SCOPE_TOKENS {
            return Err(format!("scope holds more than {MAX_SCOPE_TOKENS} tokens"));
        }
        Ok(scope)
    }

    /// Whether every token is allowed by `supported`; an empty `supported` allows anything
    /// (SPEC §4 `scopesSupported`).
    pub fn is_allowed_by(&self, supported: &[String]) -> bool {
        supported.is_empty() || self.0.iter().all(|t| supported.contains(t))
    }

    /// Whether every token of `self` is in `granted`.
    pub fn is_subset_of(&self, granted: &Scope) -> bool {
        self.0.iter().all(|t| granted.0.contains(t))
    }

    /// Keeps only the tokens `supported` allows.
    pub fn retain_supported(mut self, supported: &[String]) -> Self {
        if !supported.is_empty() {
            self.0.retain(|t| supported.contains(t));
        }
        self
    }

    /// Drops `offline_access`: it is accepted and ignored, since a refresh token is always
    /// issued (SPEC §13, SEP-2207), so it never reaches a grant, a consent or a token.
    pub fn without_offline_access(mut self) -> Self {
        self.0.retain(|t| t != OFFLINE_ACCESS);
        self
    }

    /// Whether the scope has no tokens.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any token contains characters RFC 6749 §3.3 forbids.
    pub fn has_invalid_characters(&self) -> bool {
        self.0.iter().any(|t| {
            !t.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
        })
    }

    /// The tokens.
    pub fn tokens(&self) -> &[String] {
        &self.0
    }

    /// The tokens of `self` that `other` lacks, in `self`'s order.
    pub fn difference(&self, other: &Scope) -> Vec<String> {
        let known: std::collections::HashSet<&str> = other.0.iter().map(String::as_str).collect();
        self.0
            .iter()
            .filter(|t| !known.contains(t.as_str()))
            .cloned()
            .collect()
    }

    /// `self` followed by the tokens of `other` it lacks.
    pub fn union(mut self, other: &Scope) -> Self {
        let added = other.difference(&self);
        self.0.extend(added);
        self
    }
}

/// The scope value that asks for a refresh token (OpenID Connect §11). mcp-authd always issues
/// one, so the value is accepted and ignored (SPEC §13): it is never refused, never granted and
/// never asked about on the consent page.
pub const OFFLINE_ACCESS: &str = "offline_access";

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_drops_blanks_and_repeats() {
        assert_eq!(Scope::parse("  a b  a ").to_string(), "a b");
        assert!(Scope::parse("").is_empty());
    }

    #[test]
    fn parse_keeps_the_first_seen_order_of_many_tokens() {
        let raw: Vec<String> = (0..5000).map(|i| format!("t{}", i % 2500)).collect();
        let scope = Scope::parse(&raw.join(" "));
        assert_eq!(scope.tokens().len(), 2500);
        assert_eq!(scope.tokens()[0], "t0");
        assert_eq!(scope.tokens()[2499], "t2499");
    }

    #[test]
    fn bounded_parse_refuses_long_or_wide_scopes() {
        let exactly = "a".repeat(MAX_SCOPE_BYTES);
        assert!(Scope::parse_bounded(&exactly).is_ok());
        assert!(Scope::parse_bounded(&format!("{exactly}b")).is_err());
        let tokens = |n: usize| {
            (0..n)
                .map(|i| format!("s{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            Scope::parse_bounded(&tokens(MAX_SCOPE_TOKENS))
                .unwrap()
                .tokens()
                .len(),
            MAX_SCOPE_TOKENS
        );
        assert!(Scope::parse_bounded(&tokens(MAX_SCOPE_TOKENS + 1)).is_err());
        // Repeats count once.
        let repeated = format!("{} s0 s1", tokens(MAX_SCOPE_TOKENS));
        assert!(Scope::parse_bounded(&repeated).is_ok());
    }

    #[test]
    fn subset_and_allowlist() {
        let granted = Scope::parse("read write");
        assert!(Scope::parse("write").is_subset_of(&granted));
        assert!(!Scope::parse("write admin").is_subset_of(&granted));
        assert!(Scope::parse("anything").is_allowed_by(&[]));
        assert!(!Scope::parse("admin").is_allowed_by(&["read".into()]));
        assert_eq!(
            Scope::parse("read admin")
                .retain_supported(&["read".into()])
                .to_string(),
            "read"
        );
    }

    #[test]
    fn difference_union_and_without() {
        let approved = Scope::parse("read write");
        let requested = Scope::parse("write admin tools:delete");
        assert_eq!(
            requested.difference(&approved),
            vec!["admin", "tools:delete"]
        );
        assert!(Scope::parse("write").difference(&approved).is_empty());
        assert_eq!(
            approved.clone().union(&requested).to_string(),
            "read write admin tools:delete"
        );
        assert_eq!(
            Scope::parse("offline_access read")
                .without_offline_access()
                .to_string(),
            "read"
        );
    }

    #[test]
    fn offline_access_is_dropped() {
        assert_eq!(
            Scope::parse("offline_access mcp:tools offline_access")
                .without_offline_access()
                .to_string(),
            "mcp:tools"
        );
    }

    #[test]
    fn forbidden_characters_are_detected() {
        assert!(Scope::parse("a\"b").has_invalid_characters());
        assert!(Scope::parse("a\\b").has_invalid_characters());
        assert!(!Scope::parse("mcp:tools read").has_invalid_characters());
    }
}
