//! The token endpoint's input: the form body (`Params::parse`, duplicates refused) and the
//! client credentials (`client_auth::extract`, HTTP Basic decoding). Parsing is checked
//! against `serde_urlencoded` itself: the same pairs, and refused exactly when a name repeats.
//!
//! Input: an optional `Authorization` header value, a NUL byte, then the form body. Without a
//! NUL the whole input is the body and no header is sent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_authd::oauth::client_auth::extract;
use mcp_authd::oauth::params::Params;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (Some(&data[..i]), &data[i + 1..]),
        None => (None, data),
    };
    // Differential: the same decoder, without the duplicate rule.
    let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).ok();
    let repeated = pairs.as_ref().map(|pairs| {
        let mut keys = std::collections::HashSet::new();
        !pairs.iter().all(|(k, _)| keys.insert(k.as_str()))
    });
    let form = match Params::parse(body) {
        Ok(form) => {
            assert_eq!(
                repeated,
                Some(false),
                "accepted a body with a repeated parameter"
            );
            for (key, value) in pairs.iter().flatten() {
                assert_eq!(form.get(key), Some(value.as_str()));
            }
            form
        }
        Err(message) => {
            assert_ne!(repeated, Some(false), "refused a valid body: {message}");
            check_description(&message);
            return;
        }
    };
    // The handler passes the header on only when it is visible ASCII (`to_str`).
    let header = match header.map(std::str::from_utf8) {
        Some(Ok(h)) if h.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') => Some(h),
        Some(_) => return,
        None => None,
    };
    match extract(header, &form) {
        Ok(creds) => {
            if let Some(assertion) = &creds.assertion {
                // A client assertion (RFC 7523) is the only credential: no Basic, no secret;
                // the client_id, when sent, is the body's.
                assert!(!assertion.is_empty() && header.is_none() && creds.secret.is_none());
                assert_eq!(
                    form.get("client_assertion_type"),
                    Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                );
                assert_eq!(form.non_empty("client_id").unwrap_or(""), creds.client_id);
                return;
            }
            assert!(!creds.client_id.is_empty() || creds.used_basic);
            if !creds.used_basic {
                assert_eq!(form.non_empty("client_id"), Some(creds.client_id.as_str()));
            }
            assert!(creds.secret.as_deref() != Some(""));
        }
        Err(e) => {
            assert!(matches!(
                e.code.as_str(),
                "invalid_request" | "invalid_client"
            ));
            if header.is_some() && e.code.as_str() == "invalid_client" {
                assert!(e.used_basic_auth, "a Basic failure must ask for Basic");
            }
            check_description(&e.description);
        }
    }
});

/// An error description that quotes client input must stay bounded and free of control
/// characters (it goes into JSON bodies and log lines).
fn check_description(text: &str) {
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(
        text.chars().count() <= 512,
        "{} chars",
        text.chars().count()
    );
}
