//! Scope strings (RFC 6749 §3.3): space-separated, order-insensitive sets.

/// The OpenID scope that asks for a refresh token (OIDC Core §11).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// A parsed scope: distinct tokens in the order first given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(Vec<String>);

impl Scope {
    /// Parses a space-separated scope string; empty and repeated tokens are dropped.
    pub fn parse(raw: &str) -> Self {
        let mut tokens: Vec<String> = Vec::new();
        for token in raw.split(' ').filter(|t| !t.is_empty()) {
            if !tokens.iter().any(|t| t == token) {
                tokens.push(token.to_string());
            }
        }
        Self(tokens)
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
}

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
