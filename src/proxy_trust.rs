//! Which TCP peers may assert the user's identity, and how that identity is read.
//!
//! The peer is the socket address, never `X-Forwarded-For` (RFC 9700 §4.13): anyone can send
//! that header, only the proxy can open a connection from its own address.

use std::net::IpAddr;

use ::http::{HeaderMap, HeaderName};
use ipnet::{IpNet, Ipv4Net};

/// The widest IPv4 network `trustedSourceCidrs` accepts (10.0.0.0/8 is the largest private one).
pub const MIN_IPV4_PREFIX: u8 = 8;

/// The widest IPv6 network `trustedSourceCidrs` accepts.
pub const MIN_IPV6_PREFIX: u8 = 16;

/// The networks of `trustedSourceCidrs`.
#[derive(Debug, Clone)]
pub struct TrustedSources(Vec<IpNet>);

/// A `trustedSourceCidrs` entry that was accepted after a change the operator should know of.
pub type CidrWarning = String;

impl TrustedSources {
    /// Parses the configured entries: CIDRs or bare addresses. Wildcards (`/0`) are refused,
    /// because trusting every peer lets anyone claim to be anyone.
    pub fn parse(entries: &[String]) -> Result<(Self, Vec<CidrWarning>), String> {
        if entries.is_empty() {
            return Err("oauthAs.trustedSourceCidrs must list at least one CIDR".into());
        }
        let mut nets = Vec::with_capacity(entries.len());
        let mut warnings = Vec::new();
        for entry in entries {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(addr) => IpNet::from(addr),
                    Err(_) => {
                        return Err(format!(
                            "oauthAs.trustedSourceCidrs: {entry:?} is not a CIDR (e.g. 10.0.0.0/8) or an IP address"
                        ));
                    }
                },
            };
            // Peers are compared in canonical form (IPv4-mapped IPv6 as IPv4), so a network
            // written in the mapped form is turned into its IPv4 equivalent; otherwise it would
            // never match, and `::ffff:0:0/96` would hide a wildcard.
            let written = net;
            let net = ipv4_equivalent(net);
            if net != written {
                warnings.push(format!(
                    "oauthAs.trustedSourceCidrs: {entry:?} is an IPv4-mapped IPv6 network; using {net}"
                ));
            }
            // Several short prefixes together can cover everything (0.0.0.0/1 + 128.0.0.0/1),
            // so each entry must be at least as narrow as a private network.
            let min_prefix = match net {
                IpNet::V4(_) => MIN_IPV4_PREFIX,
                IpNet::V6(_) => MIN_IPV6_PREFIX,
            };
            if net.prefix_len() < min_prefix {
                return Err(format!(
                    "oauthAs.trustedSourceCidrs: {entry:?} trusts too many addresses (use /{MIN_IPV4_PREFIX} or narrower for IPv4, /{MIN_IPV6_PREFIX} for IPv6); list only your reverse proxy's addresses"
                ));
            }
            let trunc = net.trunc();
            if trunc != net {
                warnings.push(format!(
                    "oauthAs.trustedSourceCidrs: {entry:?} has host bits set; using {trunc}"
                ));
            }
            nets.push(trunc);
        }
        Ok((Self(nets), warnings))
    }

    /// Whether `peer` is inside one of the networks. IPv4-mapped IPv6 peers (`::ffff:a.b.c.d`,
    /// as a dual-stack listener reports them) are compared as IPv4.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.iter().any(|net| net.contains(&peer))
    }
}

/// `::ffff:a.b.c.d/n` (n ≥ 96) as `a.b.c.d/(n - 96)`; any other network unchanged.
fn ipv4_equivalent(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && let Ok(v4net) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(v4net);
    }
    net
}

impl std::fmt::Display for TrustedSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nets: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&nets.join(", "))
    }
}

/// The header a reverse proxy names the host the client asked for in.
pub const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The authority (`host[:port]`) a request was addressed to, which picks its issuer (SPEC
/// §11): `X-Forwarded-Host` when the peer is a trusted proxy and sent one, else `Host`, else
/// `uri_authority` (HTTP/2 carries it in `:authority`, not in a `Host` header).
///
/// From a proxy, the last value counts: a proxy that appends rather than overwrites puts
/// what it saw last, after whatever the client sent. From any other peer the header is
/// ignored, like every identity header.
pub fn request_authority<'a>(
    headers: &'a HeaderMap,
    peer_is_trusted: bool,
    uri_authority: Option<&'a str>,
) -> Option<&'a str> {
    let forwarded = peer_is_trusted
        .then(|| headers.get_all(FORWARDED_HOST).iter().next_back())
        .flatten()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .map(|value| value.trim_matches(OWS))
        .filter(|value| !value.is_empty());
    forwarded
        .or_else(|| {
            headers
                .get(::http::header::HOST)
                .and_then(|value| value.to_str().ok())
        })
        .or(uri_authority)
}

/// Why no user, or no groups, could be read from the trusted headers. Each maps to a 400 page
/// (401 for [`IdentityError::Missing`] user header) whose text tells the operator what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    /// The header is absent: the request did not come through the SSO login.
    Missing,
    /// The header is repeated, or the user header holds a list.
    Ambiguous,
    /// Over a size limit: [`MAX_USER_LEN`], [`MAX_GROUPS`] or [`MAX_GROUPS_BYTES`].
    TooLarge,
    /// Empty, not UTF-8, or holding a character that could make two names look the same:
    /// controls, whitespace other than the groups' inner spaces, zero-width, bidi and other
    /// invisible characters.
    Unclean,
    /// Shaped like a proxy placeholder that was never substituted (see [`is_placeholder`]).
    Placeholder,
}

/// The longest accepted user identifier, in bytes.
pub const MAX_USER_LEN: usize = 256;

/// The most distinct groups accepted in the groups header.
pub const MAX_GROUPS: usize = 64;

/// The longest accepted groups header value, in bytes.
pub const MAX_GROUPS_BYTES: usize = 4096;

/// The only characters stripped from a value: the optional whitespace of HTTP (RFC 9110 §5.6.3),
/// which the HTTP layer already removes around a field value.
const OWS: [char; 2] = [' ', '\t'];

/// Reads the user from `header`, refusing anything that is not exactly one clean value. The
/// value is taken exactly as sent: nothing but spaces and tabs is trimmed, so `alice` followed
/// by a no-break space is refused instead of becoming `alice`.
pub fn read_user(headers: &HeaderMap, header: &HeaderName) -> Result<String, IdentityError> {
    let mut values = headers.get_all(header).iter();
    let value = values.next().ok_or(IdentityError::Missing)?;
    if values.next().is_some() {
        return Err(IdentityError::Ambiguous);
    }
    let user = exact_text(value.as_bytes())?;
    if user.len() > MAX_USER_LEN {
        return Err(IdentityError::TooLarge);
    }
    if user.is_empty() {
        return Err(IdentityError::Unclean);
    }
    if is_placeholder(user) {
        return Err(IdentityError::Placeholder);
    }
    if user.contains(',') {
        return Err(IdentityError::Ambiguous);
    }
    if user
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || is_invisible(c))
    {
        return Err(IdentityError::Unclean);
    }
    Ok(user.to_string())
}

/// Reads the groups from `header`: one header line, a comma-separated list. Each item is
/// stripped of spaces and tabs (the list syntax of RFC 9110 §5.6.1); empty items (`a,,b`, a
/// trailing comma, an empty header) are ignored, as that section requires; repeated groups
/// are kept once, in the order first given. Inner spaces are kept (`Domain Users`). An
/// absent header means no groups.
///
/// Refused: a repeated header line, more than [`MAX_GROUPS`] distinct groups or
/// [`MAX_GROUPS_BYTES`] bytes, a value that is not UTF-8, and any item that is a proxy
/// placeholder or holds a control, zero-width, bidi or other invisible character, or
/// whitespace other than an inner space.
pub fn read_groups(headers: &HeaderMap, header: &HeaderName) -> Result<Vec<String>, IdentityError> {
    let mut values = headers.get_all(header).iter();
    let Some(value) = values.next() else {
        return Ok(Vec::new());
    };
    if values.next().is_some() {
        return Err(IdentityError::Ambiguous);
    }
    if value.len() > MAX_GROUPS_BYTES {
        return Err(IdentityError::TooLarge);
    }
    let text = exact_text(value.as_bytes())?;
    // Placeholders are looked for per item only: `{…}` around the whole list would depend on
    // empty items (`{a,b},`), and every real placeholder is one item.
    let mut seen = std::collections::HashSet::new();
    let mut groups = Vec::new();
    for group in text.split(',').map(|item| item.trim_matches(OWS)) {
        if group.is_empty() {
            continue;
        }
        if is_placeholder(group) {
            return Err(IdentityError::Placeholder);
        }
        if group
            .chars()
            .any(|c| c.is_control() || (c.is_whitespace() && c != ' ') || is_invisible(c))
        {
            return Err(IdentityError::Unclean);
        }
        if seen.insert(group) {
            if groups.len() == MAX_GROUPS {
                return Err(IdentityError::TooLarge);
            }
            groups.push(group.to_string());
        }
    }
    Ok(groups)
}

/// The value as UTF-8 without the HTTP layer's optional whitespace (spaces and tabs only).
fn exact_text(bytes: &[u8]) -> Result<&str, IdentityError> {
    let text = std::str::from_utf8(bytes).map_err(|_| IdentityError::Unclean)?;
    Ok(text.trim_matches(OWS))
}

/// Whether `value` looks like a proxy's placeholder that reached the server unsubstituted:
/// Caddy's `{http.reverse_proxy.header.X-Forwarded-User}` (and v1's `{>X-Forwarded-User}`),
/// nginx's `$remote_user` or a shell's `${USER}`, Apache's `%{REMOTE_USER}e`, HAProxy's
/// `%[var(txn.user)]`, and `(null)`, which Apache's mod_headers sends for an unset variable.
/// Every unauthenticated request would otherwise share one identity.
pub fn is_placeholder(value: &str) -> bool {
    (value.starts_with('{') && value.ends_with('}'))
        || value.starts_with('$')
        || value.starts_with("%{")
        || value.starts_with("%[")
        || value == "(null)"
}

/// Characters that display as nothing (or change how the text around them displays), so a
/// name holding one looks like another: format characters (zero-width spaces and joiners,
/// the word joiner, the byte order mark, bidi marks, embeddings, overrides and isolates, the
/// soft hyphen, tags) and the Hangul fillers. Refused anywhere in a user or group name.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E007F}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::HeaderValue;

    fn sources(entries: &[&str]) -> TrustedSources {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        TrustedSources::parse(&entries).map(|(s, _)| s).unwrap()
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_match_ipv4_networks() {
        let trusted = sources(&["10.0.0.0/8"]);
        assert!(trusted.contains("10.1.2.3".parse().unwrap()));
        assert!(trusted.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!trusted.contains("11.0.0.1".parse().unwrap()));
        assert!(!trusted.contains("::1".parse().unwrap()));
    }

    #[test]
    fn bare_addresses_and_ipv6_networks() {
        let trusted = sources(&["127.0.0.1", "fd12::/16"]);
        assert!(trusted.contains("127.0.0.1".parse().unwrap()));
        assert!(!trusted.contains("127.0.0.2".parse().unwrap()));
        assert!(trusted.contains("fd12::1".parse().unwrap()));
    }

    #[test]
    fn wildcards_empty_lists_and_garbage_are_refused() {
        for bad in [
            vec!["0.0.0.0/0"],
            vec!["::/0"],
            vec!["0.0.0.0/1", "128.0.0.0/1"],
            vec!["10.0.0.0/7"],
            vec!["fc00::/7"],
            vec!["not-an-ip"],
            vec![],
        ] {
            let entries: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(TrustedSources::parse(&entries).is_err(), "{bad:?}");
        }
        let empty: Vec<String> = vec![];
        assert_eq!(
            TrustedSources::parse(&empty).unwrap_err(),
            "oauthAs.trustedSourceCidrs must list at least one CIDR"
        );
    }

    #[test]
    fn ipv4_mapped_networks_are_read_as_ipv4_and_cannot_hide_a_wildcard() {
        let (trusted, warnings) =
            TrustedSources::parse(&["::ffff:10.0.0.0/104".to_string()]).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(trusted.to_string(), "10.0.0.0/8");
        assert!(trusted.contains("10.1.2.3".parse().unwrap()));
        assert!(trusted.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!trusted.contains("11.0.0.1".parse().unwrap()));
        let (trusted, _) = TrustedSources::parse(&["::ffff:127.0.0.1".to_string()]).unwrap();
        assert!(trusted.contains("127.0.0.1".parse().unwrap()));
        for wildcard in ["::ffff:0.0.0.0/96", "::ffff:0:0/96"] {
            let error = TrustedSources::parse(&[wildcard.to_string()]).unwrap_err();
            assert!(error.contains("trusts too many addresses"), "{error}");
        }
    }

    #[test]
    fn host_bits_are_truncated_with_a_warning() {
        let (trusted, warnings) = TrustedSources::parse(&["10.0.0.1/8".to_string()]).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(trusted.contains("10.200.0.1".parse().unwrap()));
    }

    #[test]
    fn the_request_authority_is_the_proxys_forwarded_host_else_host() {
        let host = HeaderName::from_static("host");
        let mut headers = with(
            &FORWARDED_HOST,
            &[b"client.example", b"a.example, b.example "],
        );
        headers.append(&host, HeaderValue::from_static("upstream:8080"));
        assert_eq!(request_authority(&headers, true, None), Some("b.example"));
        assert_eq!(
            request_authority(&headers, false, None),
            Some("upstream:8080")
        );
        let empty = with(&FORWARDED_HOST, &[b""]);
        assert_eq!(
            request_authority(&empty, true, Some("h2.example")),
            Some("h2.example")
        );
        let not_text = with(&FORWARDED_HOST, &[b"caf\xc3\xa9.example"]);
        assert_eq!(request_authority(&not_text, true, None), None);
        assert_eq!(request_authority(&HeaderMap::new(), true, None), None);
    }

    fn with(name: &HeaderName, values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn user_header_must_be_exactly_one_clean_value() {
        let name = HeaderName::from_static("x-forwarded-user");
        let mut headers = HeaderMap::new();
        assert_eq!(read_user(&headers, &name), Err(IdentityError::Missing));
        headers.insert(&name, HeaderValue::from_static("alice@example.com"));
        assert_eq!(read_user(&headers, &name).unwrap(), "alice@example.com");
        headers.append(&name, HeaderValue::from_static("bob"));
        assert_eq!(read_user(&headers, &name), Err(IdentityError::Ambiguous));
        // Non-ASCII names are accepted when they are valid UTF-8 (IdPs have them).
        let headers = with(&name, &["josé".as_bytes()]);
        assert_eq!(read_user(&headers, &name).unwrap(), "josé");
        // Spaces and tabs around the value are the HTTP layer's own optional whitespace.
        let headers = with(&name, &[b" alice\t"]);
        assert_eq!(read_user(&headers, &name).unwrap(), "alice");
        let cases: &[(&[u8], IdentityError)] = &[
            (b"\xff\xfe", IdentityError::Unclean),
            (b"", IdentityError::Unclean),
            (b"   ", IdentityError::Unclean),
            (b"al ice", IdentityError::Unclean),
            (b"al\tice", IdentityError::Unclean),
            (b"alice,bob", IdentityError::Ambiguous),
            (&[b'a'; MAX_USER_LEN + 1], IdentityError::TooLarge),
        ];
        for (bad, why) in cases {
            let headers = with(&name, &[bad]);
            assert_eq!(read_user(&headers, &name), Err(*why), "{bad:?}");
        }
        let headers = with(&name, &[&[b'a'; MAX_USER_LEN]]);
        assert!(read_user(&headers, &name).is_ok());
    }

    #[test]
    fn unicode_whitespace_and_invisible_characters_are_never_trimmed_away() {
        let name = HeaderName::from_static("x-forwarded-user");
        for c in [
            '\u{a0}',
            '\u{85}',
            '\u{2028}',
            '\u{2029}',
            '\u{3000}',
            '\u{1680}',
            '\u{2007}',
            '\u{202f}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{2060}',
            '\u{feff}',
            '\u{200e}',
            '\u{202e}',
            '\u{2066}',
            '\u{61c}',
            '\u{ad}',
            '\u{3164}',
            '\u{e0041}',
        ] {
            for value in [
                format!("alice{c}"),
                format!("{c}alice"),
                format!("al{c}ice"),
            ] {
                let headers = with(&name, &[value.as_bytes()]);
                assert_eq!(
                    read_user(&headers, &name),
                    Err(IdentityError::Unclean),
                    "{value:?}"
                );
            }
        }
    }

    #[test]
    fn proxy_placeholders_are_refused() {
        let user = HeaderName::from_static("x-forwarded-user");
        let groups = HeaderName::from_static("x-forwarded-groups");
        for placeholder in [
            "{http.reverse_proxy.header.X-Forwarded-User}",
            "{http.request.header.X-Forwarded-User}",
            "{>X-Forwarded-User}",
            "$remote_user",
            "$upstream_http_x_auth_request_user",
            "${REMOTE_USER}",
            "%{REMOTE_USER}e",
            "%{REMOTE_USER}s",
            "%[var(txn.user)]",
            "(null)",
        ] {
            let headers = with(&user, &[placeholder.as_bytes()]);
            assert_eq!(
                read_user(&headers, &user),
                Err(IdentityError::Placeholder),
                "{placeholder}"
            );
            for value in [placeholder.to_string(), format!("eng, {placeholder}")] {
                let headers = with(&groups, &[value.as_bytes()]);
                assert_eq!(
                    read_groups(&headers, &groups),
                    Err(IdentityError::Placeholder),
                    "{value}"
                );
            }
        }
        // Braces or dollars inside a name are not placeholders.
        let headers = with(&user, &[b"a{b}c$"]);
        assert_eq!(read_user(&headers, &user).unwrap(), "a{b}c$");
    }

    #[test]
    fn groups_are_one_line_split_trimmed_and_deduplicated() {
        let name = HeaderName::from_static("x-forwarded-groups");
        assert_eq!(read_groups(&HeaderMap::new(), &name), Ok(vec![]));
        let headers = with(&name, &[b" eng , ops,,eng,Domain Users, "]);
        assert_eq!(
            read_groups(&headers, &name).unwrap(),
            vec!["eng", "ops", "Domain Users"]
        );
        assert_eq!(read_groups(&with(&name, &[b""]), &name), Ok(vec![]));
        assert_eq!(read_groups(&with(&name, &[b" , ,"]), &name), Ok(vec![]));
        let headers = with(&name, &[b"eng", b"admins"]);
        assert_eq!(read_groups(&headers, &name), Err(IdentityError::Ambiguous));
        for bad in [
            "eng\u{a0}".as_bytes(),
            "\u{3000}eng".as_bytes(),
            "Domain\u{a0}Users".as_bytes(),
            "e\u{200b}ng".as_bytes(),
            "eng\u{202e}".as_bytes(),
            b"e\tng",
            b"\xffeng",
        ] {
            assert_eq!(
                read_groups(&with(&name, &[bad]), &name),
                Err(IdentityError::Unclean),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn groups_are_capped_in_number_and_bytes() {
        let name = HeaderName::from_static("x-forwarded-groups");
        let list = |n: usize| {
            (0..n)
                .map(|i| format!("g{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let headers = with(&name, &[list(MAX_GROUPS).as_bytes()]);
        assert_eq!(read_groups(&headers, &name).unwrap().len(), MAX_GROUPS);
        // Repeats do not count: the limit is on distinct groups.
        let repeated = format!("{},g0,g1", list(MAX_GROUPS));
        let headers = with(&name, &[repeated.as_bytes()]);
        assert_eq!(read_groups(&headers, &name).unwrap().len(), MAX_GROUPS);
        let headers = with(&name, &[list(MAX_GROUPS + 1).as_bytes()]);
        assert_eq!(read_groups(&headers, &name), Err(IdentityError::TooLarge));
        let long = "a".repeat(MAX_GROUPS_BYTES);
        assert_eq!(
            read_groups(&with(&name, &[long.as_bytes()]), &name).unwrap(),
            vec![long.clone()]
        );
        let longer = format!("{long}b");
        assert_eq!(
            read_groups(&with(&name, &[longer.as_bytes()]), &name),
            Err(IdentityError::TooLarge)
        );
    }
}
