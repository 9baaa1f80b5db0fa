//! Several issuers on one server (SPEC §11): which one a request is addressed to.
//!
//! An internal host for VPN clients and a public one for cloud clients are two issuers with
//! their own metadata, `iss` and audience, served by one process from one state. A request
//! belongs to the issuer whose host (and port) is its authority; anything else, including an
//! authority that is missing or cannot be parsed, belongs to the primary issuer. The rule
//! only ever picks one of the configured issuers, so a forged authority can at worst pick
//! another configured one, which the client could address directly anyway.

/// One issuer the server answers as: the primary `issuerUrl`, or an entry of
/// `additionalIssuers`. Built from URLs that configuration validation has already accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// The issuer URL, without a trailing slash: RFC 8414 `issuer` and the tokens' `iss`.
    pub url: String,
    /// The path part of the issuer (`""` or `/something`), where its endpoints live.
    pub path: String,
    /// The protected resource (`resourceUrl`): the tokens' `aud` and the PRM `resource`.
    pub resource: String,
    /// The host as the URL prints it: lowercase, an IPv6 address in brackets.
    host: String,
    /// The port, the scheme's default when the URL names none.
    port: u16,
    /// The scheme's default port, for an authority that names none.
    default_port: u16,
}

impl Issuer {
    /// The issuer at `url` for `resource`; `None` when `url` is not an absolute URL with a
    /// host and a known port (which validation refuses before this is called).
    pub fn new(url: &str, resource: &str) -> Option<Self> {
        let parsed = url::Url::parse(url).ok()?;
        let host = parsed.host_str()?.to_ascii_lowercase();
        let default_port = url::Url::parse(&format!("{}://h", parsed.scheme()))
            .ok()?
            .port_or_known_default()?;
        Some(Self {
            url: url.to_string(),
            path: parsed.path().trim_end_matches('/').to_string(),
            resource: resource.to_string(),
            port: parsed.port().unwrap_or(default_port),
            host,
            default_port,
        })
    }

    /// An endpoint URL under the issuer, e.g. `endpoint("/oauth/token")`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The path of the resource URL without a trailing slash (`/mcp`), where its RFC 9728
    /// metadata is found after `/.well-known/oauth-protected-resource`.
    pub fn resource_path(&self) -> String {
        url::Url::parse(&self.resource)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default()
    }

    /// `host:port`, the port always written: what requests are matched against.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether a request whose authority is `authority` (a `Host` or `X-Forwarded-Host`
    /// value) is addressed to this issuer: the same host, compared without regard to case,
    /// and the same port, an absent one being the scheme's default on both sides.
    pub fn serves(&self, authority: &str) -> bool {
        match parse_authority(authority) {
            Some((host, port)) => {
                host.eq_ignore_ascii_case(&self.host)
                    && port.unwrap_or(self.default_port) == self.port
            }
            None => false,
        }
    }
}

/// Whether `url`'s host and port are `authority` (the rule of [`Issuer::serves`], for a URL
/// that is not an issuer: the resource side matches requests against resource URLs).
pub fn url_serves(url: &str, authority: &str) -> bool {
    Issuer::new(url, "").is_some_and(|site| site.serves(authority))
}

/// The issuer a request with `authority` is addressed to: the first of `primary` and then
/// `additional` that [serves](Issuer::serves) it, else `primary`.
pub fn select<'a>(
    primary: &'a Issuer,
    additional: &'a [Issuer],
    authority: Option<&str>,
) -> &'a Issuer {
    authority
        .and_then(|authority| {
            std::iter::once(primary)
                .chain(additional)
                .find(|issuer| issuer.serves(authority))
        })
        .unwrap_or(primary)
}

/// Splits `host[:port]` (RFC 9110 §7.2; an IPv6 address in brackets). `None` for anything
/// else: an empty host, userinfo, a path, a port that is not a number.
fn parse_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let authority = authority.trim_matches([' ', '\t']);
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let is_host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let is_clean = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|ip| {
            !ip.is_empty()
                && ip
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        })
    } else {
        !host.is_empty() && host.chars().all(is_host_char)
    };
    if !is_clean {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuers() -> Vec<Issuer> {
        [
            ("https://mcp.example.com", "https://mcp.example.com/mcp"),
            (
                "https://MCP.internal.example/auth",
                "https://mcp.internal.example/mcp",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/mcp"),
            ("http://[::1]:9000", "http://[::1]:9000/mcp"),
        ]
        .iter()
        .map(|(url, resource)| Issuer::new(url, resource).unwrap())
        .collect()
    }

    fn chosen(authority: Option<&str>) -> String {
        let issuers = issuers();
        select(&issuers[0], &issuers[1..], authority).url.clone()
    }

    #[test]
    fn the_authority_picks_the_issuer_without_regard_to_case() {
        assert_eq!(chosen(Some("mcp.example.com")), "https://mcp.example.com");
        assert_eq!(
            chosen(Some("Mcp.Internal.EXAMPLE")),
            "https://MCP.internal.example/auth"
        );
        assert_eq!(chosen(Some("127.0.0.1:8080")), "http://127.0.0.1:8080");
        assert_eq!(chosen(Some("[::1]:9000")), "http://[::1]:9000");
        assert_eq!(chosen(Some("[::1]:9001")), "https://mcp.example.com");
    }

    #[test]
    fn an_absent_port_is_the_default_port_on_both_sides() {
        assert_eq!(
            chosen(Some("mcp.internal.example:443")),
            "https://MCP.internal.example/auth"
        );
        // http on 443, or https on 80, is another port.
        assert_eq!(
            chosen(Some("mcp.internal.example:80")),
            "https://mcp.example.com"
        );
        assert_eq!(chosen(Some("127.0.0.1")), "https://mcp.example.com");
        let http = Issuer::new("http://localhost", "http://localhost/mcp").unwrap();
        assert!(http.serves("localhost:80"));
        assert!(http.serves("LOCALHOST"));
        assert!(!http.serves("localhost:443"));
        assert_eq!(http.authority(), "localhost:80");
        assert_eq!(issuers()[1].path, "/auth");
        assert_eq!(issuers()[1].resource_path(), "/mcp");
    }

    #[test]
    fn unknown_missing_or_malformed_authorities_get_the_primary() {
        for authority in [
            None,
            Some(""),
            Some("elsewhere.example"),
            Some("mcp.internal.example.evil.example"),
            Some("evil.example#mcp.internal.example"),
            Some("user@mcp.internal.example"),
            Some("mcp.internal.example:"),
            Some("mcp.internal.example:44x3"),
            Some("mcp.internal.example:99999"),
            Some("mcp.internal.example/path"),
            Some("mcp.internal.example, other.example"),
            Some("[::1"),
            Some("[::1]x"),
        ] {
            assert_eq!(
                chosen(authority),
                "https://mcp.example.com",
                "{authority:?}"
            );
        }
        let issuers = issuers();
        assert_eq!(
            select(&issuers[1], &[], Some("mcp.example.com")),
            &issuers[1]
        );
    }
}
