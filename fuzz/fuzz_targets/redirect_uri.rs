//! Redirect URI validation and matching, checked against the `url` crate (a differential):
//!
//! - registration accepts only URIs that `url` parses to exactly the same string, with no
//!   userinfo, no fragment, and no forbidden scheme;
//! - a match between a registered URI and a requested one means the same parsed scheme and
//!   host; outside http loopback it means byte equality, and for http loopback equality once
//!   the port is removed.
//!
//! Input: two URIs separated by a newline (registered, then requested).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_authd::oauth::redirect::{
    RedirectPattern, display_host, matches_registered, validate_for_registration,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (registered, requested) = text.split_once('\n').unwrap_or((text, text));
    let _ = display_host(registered);
    let pattern = RedirectPattern::parse(registered);
    let _ = pattern.allows(requested);

    let accepted = validate_for_registration(registered).is_ok();
    if accepted {
        let parsed = url::Url::parse(registered).expect("accepted URIs parse");
        assert_eq!(parsed.as_str(), registered, "accepted a non-canonical URI");
        assert!(parsed.username().is_empty() && parsed.password().is_none());
        assert!(parsed.fragment().is_none());
        assert!(!matches!(
            parsed.scheme(),
            "javascript" | "data" | "file" | "vbscript" | "blob" | "about"
        ));
        if parsed.scheme() == "http" {
            assert!(matches!(
                parsed.host_str(),
                Some("localhost" | "127.0.0.1" | "[::1]")
            ));
        }
    }

    if accepted && matches_registered(registered, requested) && registered != requested {
        // Only the port of an http loopback URI may differ: same scheme, host, path, query.
        let a = url::Url::parse(registered).expect("accepted URIs parse");
        assert_eq!(
            a.scheme(),
            "http",
            "a non-loopback match that is not byte-equal"
        );
        assert!(requested.starts_with("http://"));
        // A requested port above 65535 still matches (the browser then fails to connect); any
        // requested URI that parses must name the same place.
        if let Ok(b) = url::Url::parse(requested) {
            assert_eq!(b.scheme(), "http");
            assert_eq!(a.host_str(), b.host_str());
            assert!(b.username().is_empty() && b.password().is_none());
            assert_eq!(a.path(), b.path());
            assert_eq!(a.query(), b.query());
            assert_eq!(a.fragment(), b.fragment());
        }
    }
});
