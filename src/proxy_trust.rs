//! Which TCP peers may assert the user's identity, and how that identity is read.
//!
//! The peer is the socket address, never `X-Forwarded-For` (RFC 9700 §4.13): anyone can send
//! that header, only the proxy can open a connection from its own address.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName};
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

/// Why no user could be read from the trusted header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    /// The header is absent: the request did not come through the SSO login.
    Missing,
    /// The header is repeated, empty, too long, or holds a list or control characters.
    Ambiguous,
}

/// The longest accepted user identifier, in bytes.
pub const MAX_USER_LEN: usize = 256;

/// Reads the user from `header`, refusing anything that is not exactly one clean value.
pub fn read_user(headers: &HeaderMap, header: &HeaderName) -> Result<String, IdentityError> {
    let mut values = headers.get_all(header).iter();
    let value = values.next().ok_or(IdentityError::Missing)?;
    if values.next().is_some() {
        return Err(IdentityError::Ambiguous);
    }
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| IdentityError::Ambiguous)?;
    let user = text.trim();
    if user.is_empty()
        || user.len() > MAX_USER_LEN
        || user.contains(',')
        || user
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || is_bidi_control(c))
    {
        return Err(IdentityError::Ambiguous);
    }
    Ok(user.to_string())
}

/// Bidirectional overrides and isolates, which would let a name display as another.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}')
}

/// Reads the groups from `header`: every occurrence, comma-separated, trimmed, de-duplicated.
pub fn read_groups(headers: &HeaderMap, header: &HeaderName) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for value in headers.get_all(header) {
        let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
            continue;
        };
        for group in text.split(',').map(str::trim) {
            if !group.is_empty()
                && !group.chars().any(char::is_control)
                && !groups.iter().any(|g| g == group)
            {
                groups.push(group.to_string());
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
    fn user_header_must_be_exactly_one_clean_value() {
        let name = HeaderName::from_static("x-forwarded-user");
        let mut headers = HeaderMap::new();
        assert_eq!(read_user(&headers, &name), Err(IdentityError::Missing));
        headers.insert(&name, HeaderValue::from_static("alice@example.com"));
        assert_eq!(read_user(&headers, &name).unwrap(), "alice@example.com");
        headers.append(&name, HeaderValue::from_static("bob"));
        assert_eq!(read_user(&headers, &name), Err(IdentityError::Ambiguous));
        // Non-ASCII names are accepted when they are valid UTF-8 (IdPs have them).
        let mut headers = HeaderMap::new();
        headers.insert(&name, HeaderValue::from_bytes("josé".as_bytes()).unwrap());
        assert_eq!(read_user(&headers, &name).unwrap(), "josé");
        for bad in [
            &b"\xff\xfe"[..],
            "ecila\u{202E}".as_bytes(),
            "al\u{2066}ice".as_bytes(),
            "al\u{a0}ice".as_bytes(),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(&name, HeaderValue::from_bytes(bad).unwrap());
            assert_eq!(
                read_user(&headers, &name),
                Err(IdentityError::Ambiguous),
                "{bad:?}"
            );
        }
        for bad in ["alice,bob", "", "   ", "al ice", "al\tice"] {
            let mut headers = HeaderMap::new();
            headers.insert(&name, HeaderValue::from_str(bad).unwrap());
            assert_eq!(
                read_user(&headers, &name),
                Err(IdentityError::Ambiguous),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn groups_are_split_trimmed_and_deduplicated() {
        let name = HeaderName::from_static("x-forwarded-groups");
        let mut headers = HeaderMap::new();
        headers.insert(&name, HeaderValue::from_static("eng, ops,,eng"));
        headers.append(&name, HeaderValue::from_static("admins"));
        assert_eq!(read_groups(&headers, &name), vec!["eng", "ops", "admins"]);
    }
}
