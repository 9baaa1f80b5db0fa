//! Client metadata documents (SPEC §12): whatever a document host serves never panics the
//! validator, and an accepted document keeps every promise the authorization endpoint relies
//! on: its `client_id` is the URL, it lists 1–10 redirect URIs that each pass the
//! registration rules and the allowlist, it may use the code grant, and its keys are public
//! keys of an accepted kind. Refusals are one bounded line without control characters.
//!
//! Input: the first byte selects a mode. Mode 0: the rest is a document body fetched from
//! `https://client.example/oauth/metadata.json`. Mode 1: the rest is a JWKS body. Mode 2: the
//! rest is a `client_id` and a NUL-separated `Cache-Control` value (URL rules, lifetimes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_authd::oauth::cimd::{
    DocumentAuth, KeySource, check_client_id_url, is_document_url, key_algorithm, max_age,
    parse_document, parse_jwks,
};
use mcp_authd::oauth::redirect::{RedirectPattern, validate_for_registration};

const URL: &str = "https://client.example/oauth/metadata.json";

fn allowlist() -> Vec<RedirectPattern> {
    [
        "http://localhost:*",
        "http://127.0.0.1:*",
        "https://client.example/cb",
        "app.example://*",
    ]
    .iter()
    .map(|p| RedirectPattern::parse(p))
    .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let url = check_client_id_url(URL).expect("the fixed URL is valid");
            let allowlist = allowlist();
            match parse_document(&url, rest, &allowlist, &["mcp:tools".to_string()]) {
                Ok(doc) => {
                    assert_eq!(doc.client_id, URL);
                    assert_eq!(doc.host, "client.example");
                    assert!((1..=10).contains(&doc.redirect_uris.len()));
                    for uri in &doc.redirect_uris {
                        assert_eq!(validate_for_registration(uri), Ok(()), "{uri}");
                        assert!(allowlist.iter().any(|p| p.allows_listed(uri)), "{uri}");
                    }
                    assert!(doc.grant_types.iter().any(|g| g == "authorization_code"));
                    assert!(!doc.client_name.is_empty() && doc.client_name.chars().count() <= 100);
                    assert!(!doc.client_name.chars().any(char::is_control));
                    assert!(doc.scope.split(' ').all(|s| s.is_empty() || s == "mcp:tools"));
                    if let DocumentAuth::PrivateKeyJwt(KeySource::Inline(keys)) = &doc.auth {
                        assert!(!keys.keys.is_empty());
                        assert!(keys.keys.iter().all(|k| key_algorithm(k).is_some()));
                    }
                    if let DocumentAuth::PrivateKeyJwt(KeySource::Uri(uri)) = &doc.auth {
                        assert_eq!(uri.scheme(), "https");
                    }
                }
                Err(refusal) => check_reason(&refusal.0),
            }
        }
        1 => match parse_jwks(rest) {
            Ok(keys) => {
                assert!(!keys.keys.is_empty() && keys.keys.len() <= 16);
                assert!(keys.keys.iter().all(|k| key_algorithm(k).is_some()));
            }
            Err(refusal) => check_reason(&refusal.0),
        },
        _ => {
            let text = String::from_utf8_lossy(rest);
            let (client_id, cache_control) = text.split_once('\0').unwrap_or((&text, ""));
            if let Ok(url) = check_client_id_url(client_id) {
                // Accepted ⇒ one spelling: canonical, https, a path, no fragment or userinfo.
                assert_eq!(url.as_str(), client_id);
                assert!(is_document_url(client_id));
                assert_eq!(url.scheme(), "https");
                assert!(url.path() != "/" && url.fragment().is_none());
                assert!(url.username().is_empty() && url.password().is_none());
            }
            if let Some(age) = max_age(cache_control) {
                let lower = cache_control.to_ascii_lowercase();
                assert!(lower.contains("max-age") || lower.contains("no-"), "{age}");
            }
        }
    }
});

/// A refusal goes on an error page, into an error description and a log line.
fn check_reason(text: &str) {
    assert!(!text.is_empty());
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.chars().count() <= 700, "{} chars", text.chars().count());
}
