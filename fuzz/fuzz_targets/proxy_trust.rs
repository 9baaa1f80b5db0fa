//! `trustedSourceCidrs` parsing and matching, and the user / groups header readers.
//!
//! Input: 4 bytes of an IPv4 peer address, then text whose first line is a comma-separated
//! list of `trustedSourceCidrs` entries and whose further lines are header values, each sent
//! both as the user header and as the groups header.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mcp_authd::proxy_trust::{MAX_USER_LEN, TrustedSources, read_groups, read_user};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let v4 = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
    let text = String::from_utf8_lossy(&data[4..]);
    let mut lines = text.split('\n');
    let entries: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();

    if let Ok((trusted, _warnings)) = TrustedSources::parse(&entries) {
        // The canonicalisation: an IPv4 peer and the same peer as a dual-stack listener
        // reports it are the same peer.
        assert_eq!(
            trusted.contains(IpAddr::V4(v4)),
            trusted.contains(IpAddr::V6(v4.to_ipv6_mapped())),
            "{v4} vs its IPv4-mapped form under {trusted}"
        );
        // No accepted entry is a wildcard. (The rule is per entry: a list whose union covers
        // everything, such as 0.0.0.0/1 with 128.0.0.0/1, is accepted.)
        let shown = trusted.to_string();
        assert!(!shown.split(", ").any(|n| n.ends_with("/0")), "{shown}");
    }

    let user = HeaderName::from_static("x-forwarded-user");
    let groups = HeaderName::from_static("x-forwarded-groups");
    let mut headers = HeaderMap::new();
    let mut user_values = 0;
    for line in lines {
        let Ok(value) = HeaderValue::from_bytes(line.as_bytes()) else {
            continue;
        };
        headers.append(&user, value.clone());
        headers.append(&groups, value);
        user_values += 1;
    }
    if let Ok(name) = read_user(&headers, &user) {
        assert_eq!(user_values, 1, "a user read from a repeated header");
        assert!(!name.is_empty() && name.len() <= MAX_USER_LEN);
        assert!(!name.contains(','));
        assert!(!name.chars().any(|c| c.is_control() || c.is_whitespace()));
    }
    // `identity_headers` checks the readers in depth; here they only meet CIDR-shaped input.
    let read = read_groups(&headers, &groups).unwrap_or_default();
    for (i, group) in read.iter().enumerate() {
        assert!(!group.is_empty());
        assert_eq!(group.trim(), group);
        assert!(!group.contains(','));
        assert!(!group.chars().any(char::is_control));
        assert!(!read[..i].contains(group), "duplicate group {group:?}");
    }
});
