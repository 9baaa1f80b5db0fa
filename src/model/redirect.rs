//! Redirect URIs: what may be registered, and how a requested URI matches a registered one.
//!
//! Matching is on raw strings, never on parsed forms: the `url` crate rewrites `127.1`,
//! `0x7f.1` and `2130706433` to `127.0.0.1`, so comparing parsed URLs would let look-alikes
//! through (RFC 9700 §4.1.3). The one exception to byte equality is the port of an http
//! loopback URI (RFC 8252 §7.3).

/// Schemes that must never receive an authorization code.
const FORBIDDEN_SCHEMES: &[&str] = &[
    "javascript",
    "data",
    "file",
    "vbscript",
    "blob",
    "about",
    "ftp",
    "ws",
    "wss",
];

/// Hosts accepted for http redirect URIs, exactly as written.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

/// The most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;

/// The longest redirect URI accepted, in bytes.
pub const MAX_REDIRECT_URI_LEN: usize = 2048;

/// A `redirectUriAllowlist` entry: an exact URI, or a prefix when it ends in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectPattern {
    /// Matches this URI only.
    Exact(String),
    /// Matches any URI starting with this prefix.
    Prefix(String),
}

impl RedirectPattern {
    /// Parses an allowlist entry.
    pub fn parse(raw: &str) -> Self {
        match raw.strip_suffix('*') {
            Some(prefix) => Self::Prefix(prefix.to_string()),
            None => Self::Exact(raw.to_string()),
        }
    }

    /// Checks an allowlist entry at boot: `Err` for a pattern that would let any host of a
    /// scheme receive codes (refused), `Ok(Some(warning))` for one that can never match a
    /// URI that registration accepts, or that lets look-alike hosts match.
    pub fn audit(&self) -> Result<Option<&'static str>, &'static str> {
        match self {
            Self::Exact(uri) if uri.is_empty() => Err("would allow no redirect URI (empty)"),
            Self::Exact(uri) => Ok(if uri.contains('*') {
                Some("can never match: only a trailing * is a wildcard")
            } else {
                validate_for_registration(uri)
                    .err()
                    .map(|_| Self::NEVER_MATCHES)
            }),
            Self::Prefix(prefix) => {
                // A prefix of "https://" or "http://" (including the empty pattern and "*"
                // alone) ends before the host: every host of the scheme matches.
                let lower = prefix.to_ascii_lowercase();
                if "https://".starts_with(lower.as_str()) || "http://".starts_with(lower.as_str()) {
                    return Err(
                        "would allow any host (name the host, e.g. https://app.example.com/*)",
                    );
                }
                let Some((scheme, rest)) = prefix.split_once("://") else {
                    let scheme = prefix.split(':').next().unwrap_or_default();
                    return Ok(FORBIDDEN_SCHEMES
                        .contains(&scheme.to_ascii_lowercase().as_str())
                        .then_some(Self::NEVER_MATCHES));
                };
                if rest.is_empty() {
                    // A private-use scheme (`cursor://*`): the operating system hands every
                    // such URI to the one app that claimed the scheme.
                    return Ok(None);
                }
                match rest.find(['/', '?', '#']) {
                    // The host is complete: some URI under it must pass registration.
                    Some(_) => Ok(validate_for_registration(&format!("{prefix}x"))
                        .err()
                        .map(|_| Self::NEVER_MATCHES)),
                    // The pattern ends inside the authority. After a `:` only a port can
                    // follow; before it, any host that starts the same way matches.
                    None if rest.contains(':') || scheme.eq_ignore_ascii_case("http") => Ok(None),
                    None => Ok(Some(
                        "ends inside the host name, so look-alike hosts match too (e.g. the same name followed by .evil.example); end the host with /",
                    )),
                }
            }
        }
    }

    const NEVER_MATCHES: &'static str = "can never match: registration only accepts canonical https, http loopback or private-use URIs (e.g. http://localhost/ needs its slash)";

    /// Whether `uri` is allowed by this pattern.
    pub fn allows(&self, uri: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == uri,
            Self::Prefix(prefix) => uri.starts_with(prefix.as_str()),
        }
    }

    /// Whether a redirect URI listed in a client metadata document is allowed: as written,
    /// or, for an http loopback URI listed without a port (which matches any port at
    /// authorize, RFC 8252 §7.3), with some port. Claude Code's document lists
    /// `http://localhost/callback` and an operator's allowlist says `http://localhost:*`.
    /// The URI actually requested is checked against the allowlist again at authorize.
    pub fn allows_listed(&self, uri: &str) -> bool {
        if self.allows(uri) {
            return true;
        }
        let Some((origin, tail)) = loopback_without_port(uri) else {
            return false;
        };
        match self {
            Self::Exact(exact) => matches_registered(uri, exact),
            Self::Prefix(prefix) => {
                // Is `prefix` a prefix of `<origin>:<port><tail>` for some port?
                let Some(rest) = prefix.strip_prefix(origin) else {
                    return origin.starts_with(prefix.as_str());
                };
                let Some(rest) = rest.strip_prefix(':') else {
                    return rest.is_empty();
                };
                let digits_end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                let (digits, after) = rest.split_at(digits_end);
                if after.is_empty() {
                    // Some port starts with these digits: the number they spell is one.
                    digits.is_empty() || is_port_suffix(&format!(":{digits}"))
                } else {
                    is_port_suffix(&format!(":{digits}")) && tail.starts_with(after)
                }
            }
        }
    }
}

/// `(origin, rest)` of an http loopback URI written without a port, e.g.
/// `("http://localhost", "/callback")`; `None` for anything else.
fn loopback_without_port(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let host = LOOPBACK_HOSTS.iter().find(|h| {
        rest.strip_prefix(**h)
            .is_some_and(|after| after.is_empty() || after.starts_with(['/', '?']))
    })?;
    Some(uri.split_at("http://".len() + host.len()))
}

/// Checks one redirect URI offered at registration (SPEC §6). Returns why it is refused.
pub fn validate_for_registration(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err("longer than 2048 bytes");
    }
    if uri.contains('*') {
        return Err("wildcards are not allowed");
    }
    let parsed = url::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    // A URI that parses to something else (tabs stripped, case folded, dot segments removed,
    // IP forms rewritten, a root path added) would be compared against a different string at
    // authorize time; insist on the canonical form.
    if parsed.as_str() != uri {
        return Err("not in canonical form");
    }
    let scheme = parsed.scheme();
    if FORBIDDEN_SCHEMES.contains(&scheme) {
        return Err("scheme not allowed");
    }
    if parsed.fragment().is_some() {
        return Err("fragments are not allowed");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("userinfo is not allowed");
    }
    match scheme {
        "https" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err("https URI without a host");
            }
        }
        "http" => {
            if !parsed
                .host_str()
                .is_some_and(|h| LOOPBACK_HOSTS.contains(&h))
            {
                return Err("http is only allowed for localhost, 127.0.0.1 or [::1]");
            }
        }
        // Private-use schemes (RFC 8252 §7.1), e.g. cursor://, vscode://.
        _ => {
            if parsed.cannot_be_a_base() && !uri.contains(":/") {
                return Err("private-use URIs need a path, e.g. app://callback");
            }
        }
    }
    Ok(())
}

/// Whether `requested` selects `registered`: byte-equal, or both http loopback URIs that are
/// byte-equal once their ports are removed (RFC 8252 §7.3).
pub fn matches_registered(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (
        strip_loopback_port(registered),
        strip_loopback_port(requested),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Removes `:port` from an http loopback URI written exactly as `http://<loopback>[:port]...`;
/// `None` for anything else.
fn strip_loopback_port(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("http://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = LOOPBACK_HOSTS.iter().find(|h| {
        authority
            .strip_prefix(**h)
            .is_some_and(|after| after.is_empty() || is_port_suffix(after))
    })?;
    Some(format!("http://{host}{tail}"))
}

/// `:<port>` with a port in 1..=65535.
fn is_port_suffix(s: &str) -> bool {
    s.strip_prefix(':').is_some_and(|digits| {
        (1..=5).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.parse::<u16>().is_ok_and(|port| port != 0)
    })
}

/// The host a redirect URI sends the user to, for the consent page.
pub fn display_host(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(url) => match url.host_str() {
            Some(host) => host.to_string(),
            None => format!("{}:", url.scheme()),
        },
        Err(_) => String::from("(unparseable)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_client_redirect_uris_are_accepted() {
        for uri in [
            "https://claude.ai/api/mcp/auth_callback",
            "https://chatgpt.com/connector_platform_oauth_redirect",
            "https://chatgpt.com/connector/oauth/abc123",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "http://localhost:8787/callback",
            "http://127.0.0.1:33418/",
            "http://[::1]:9000/cb",
            "https://vscode.dev/redirect",
            "https://vertexaisearch.cloud.google.com/oauth-redirect",
            "vscode://saoudrizwan.claude-dev/mcp-auth/callback/abc",
        ] {
            assert_eq!(validate_for_registration(uri), Ok(()), "{uri}");
        }
    }

    #[test]
    fn dangerous_or_ambiguous_uris_are_refused() {
        for uri in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "vbscript:x",
            "blob:https://a.example/x",
            "about:blank",
            "https://app.example/cb#frag",
            "https://user@app.example/cb",
            "https://claude.ai@evil.com/cb",
            "https://*.example.com/cb",
            "https://example.com/*",
            "http://app.example/cb",
            "https://example.com",
            "HTTPS://example.com/cb",
            "https://example.com/a/../cb",
            "http://127.1/cb",
            "http://2130706433/cb",
            "http://localhost.evil.com/cb",
            "https://exa\tmple.com/cb",
            "/relative/cb",
            "//evil.com/cb",
        ] {
            assert!(
                validate_for_registration(uri).is_err(),
                "{uri} should be refused"
            );
        }
    }

    #[test]
    fn loopback_matches_any_port_but_nothing_else() {
        assert!(matches_registered(
            "http://127.0.0.1:33418/",
            "http://127.0.0.1:59656/"
        ));
        assert!(matches_registered(
            "http://127.0.0.1/",
            "http://127.0.0.1:59656/"
        ));
        assert!(matches_registered(
            "http://localhost:3000/callback",
            "http://localhost:1234/callback"
        ));
        assert!(!matches_registered(
            "http://127.0.0.1:33418/",
            "http://127.0.0.1:59656/x"
        ));
        assert!(!matches_registered(
            "http://127.0.0.1/cb",
            "http://localhost/cb"
        ));
        assert!(!matches_registered(
            "http://127.0.0.1/cb",
            "http://127.0.0.1.evil.com/cb"
        ));
        assert!(!matches_registered(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:80x/cb"
        ));
        assert!(!matches_registered(
            "http://localhost/cb",
            "http://LOCALHOST/cb"
        ));
        assert!(!matches_registered(
            "https://127.0.0.1/cb",
            "https://127.0.0.1:8443/cb"
        ));
    }

    #[test]
    fn non_loopback_uris_match_byte_for_byte() {
        let registered = "https://app.example/cb?x=1";
        assert!(matches_registered(registered, registered));
        for requested in [
            "https://app.example/cb?x=1&y=2",
            "https://app.example/cb",
            "https://app.example/cb/",
            "https://App.Example/cb?x=1",
            "https://app.example:443/cb?x=1",
            "http://app.example/cb?x=1",
        ] {
            assert!(!matches_registered(registered, requested), "{requested}");
        }
    }

    #[test]
    fn a_loopback_uri_listed_without_a_port_is_allowed_if_some_port_would_be() {
        let claude_code = "http://localhost/callback";
        for pattern in [
            "http://localhost:*",
            "http://localhost*",
            "http://local*",
            "http://localhost:3*",
            "http://localhost:3000/*",
            "http://localhost:3000/call*",
            "http://localhost:3000/callback",
            "http://localhost/callback",
        ] {
            assert!(
                RedirectPattern::parse(pattern).allows_listed(claude_code),
                "{pattern}"
            );
        }
        for pattern in [
            "http://127.0.0.1:*",
            "http://localhost:0*",
            "http://localhost:70000/*",
            "http://localhost:3000/other",
            "http://localhost:3000/x*",
            "http://localhost:3000x/*",
            "http://localhost.evil.com*",
            "https://localhost:*",
        ] {
            assert!(
                !RedirectPattern::parse(pattern).allows_listed(claude_code),
                "{pattern}"
            );
        }
        // URIs with a port, and other URIs, are checked as written.
        assert!(
            !RedirectPattern::parse("http://127.0.0.1:1*").allows_listed("http://127.0.0.1:33418/")
        );
        assert!(
            RedirectPattern::parse("http://127.0.0.1:*").allows_listed("http://127.0.0.1:33418/")
        );
        assert!(!RedirectPattern::parse("https://a.example/*").allows_listed("https://b.example/"));
    }

    #[test]
    fn allowlist_patterns() {
        assert!(
            RedirectPattern::parse("http://localhost:*").allows("http://localhost:8787/callback")
        );
        assert!(
            !RedirectPattern::parse("http://localhost:*").allows("http://localhost.evil.com/cb")
        );
        assert!(
            RedirectPattern::parse("https://claude.ai/api/mcp/auth_callback")
                .allows("https://claude.ai/api/mcp/auth_callback")
        );
        assert!(
            !RedirectPattern::parse("https://claude.ai/api/mcp/auth_callback")
                .allows("https://claude.ai/api/mcp/auth_callback2")
        );
    }

    #[test]
    fn allowlist_patterns_that_match_every_host_are_refused_and_dead_ones_warned() {
        let audit = |p: &str| RedirectPattern::parse(p).audit();
        for every_host in [
            "*",
            "https://*",
            "http://*",
            "HTTPS://*",
            "https:*",
            "http*",
            "",
        ] {
            assert!(audit(every_host).is_err(), "{every_host:?}");
        }
        for fine in [
            "http://localhost:*",
            "http://127.0.0.1:*",
            "http://127.0.0.1/",
            "http://[::1]:*",
            "http://localhost*",
            "https://claude.ai/api/mcp/auth_callback",
            "https://chatgpt.com/connector/oauth/*",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "cursor://*",
            "https://app.example.com:8443*",
        ] {
            assert_eq!(audit(fine), Ok(None), "{fine:?}");
        }
        for never in [
            "http://localhost",
            "https://mcp.example.com",
            "http://example.com/callback",
            "http://example.com/*",
            "https://*.example.com/callback",
            "javascript:*",
            "HTTPS://claude.ai/cb",
        ] {
            let warning = audit(never).expect("a warning, not a refusal");
            assert!(
                warning.is_some_and(|w| w.starts_with("can never match")),
                "{never:?}"
            );
        }
        let lookalike = audit("https://app.example.com*").unwrap();
        assert!(lookalike.is_some_and(|w| w.contains("look-alike")));
    }
}
