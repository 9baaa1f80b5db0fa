//! The `private_key_jwt` assertion verifier (RFC 7523): arbitrary input never panics and
//! never verifies; an assertion signed with the client's key verifies exactly when its
//! claims keep every rule (iss = sub = client_id, an accepted aud, exp in the future but at
//! most five minutes ahead, nbf/iat not in the future, a jti); and a single changed byte of a
//! verified assertion makes it fail.
//!
//! Input: the first byte selects a mode. Mode 0: the rest is an assertion to verify. Mode 1
//! (ES256) and 2 (EdDSA): the rest is a JSON claims object, signed with the fixed key, then
//! verified, then changed in one byte.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use mcp_authd::oauth::assertion::{
    Expectations, LEEWAY_SECONDS, MAX_LIFETIME_SECONDS, unverified_issuer, verify,
};

const CLIENT: &str = "https://client.example/oauth/metadata.json";
const TOKEN_ENDPOINT: &str = "https://as.example/oauth/token";
const ISSUER: &str = "https://as.example";
const NOW: u64 = 1_800_000_000;

/// A P-256 key made for this target (PKCS#8 DER), and its public half below.
const EC_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgphIzLC39T+DIQDRk0qOAlkDvvbPqmQaPrnqdyOlosRuhRANCAATHIt89UoArqqRsDMm94t2A/pb9EBSlMTZQNldzyBVkU5nU0srGxSVEa162pmM5CT0w4ixXochWPrKy7wEKFET8";
/// An Ed25519 key made for this target (PKCS#8 DER).
const ED_PKCS8: &str = "MC4CAQAwBQYDK2VwBCIEIBfvnyLvQcCW/9L1G4wLwtQc2GWXltXjyN1Spj3EDyNi";

fn keys() -> JwkSet {
    serde_json::from_value(serde_json::json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "xyLfPVKAK6qkbAzJveLdgP6W_RAUpTE2UDZXc8gVZFM", "y": "mdTSysbFJURrXramYzkJPTDiLFehyFY-srLvAQoURPw"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "cGKv65xNgO59D7PihHeV6gnvpV29P5eHWrkyULhpZCM"}
    ]}))
    .expect("fixed keys parse")
}

/// Whether `claims` keep every rule, computed independently of the verifier.
fn keeps_the_rules(claims: &serde_json::Value) -> bool {
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str());
    let number = |k: &str| claims.get(k).and_then(|v| v.as_u64());
    let optional_time_ok = |k: &str| match claims.get(k) {
        None | Some(serde_json::Value::Null) => true,
        Some(v) => v.as_u64().is_some_and(|t| t <= NOW + LEEWAY_SECONDS),
    };
    let accepted = [TOKEN_ENDPOINT, ISSUER];
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => accepted.contains(&a.as_str()),
        Some(serde_json::Value::Array(items)) => {
            items.iter().all(|i| i.is_string())
                && items.iter().any(|i| i.as_str().is_some_and(|a| accepted.contains(&a)))
        }
        _ => false,
    };
    text("iss") == Some(CLIENT)
        && text("sub") == Some(CLIENT)
        && aud_ok
        && number("exp").is_some_and(|e| e.saturating_add(LEEWAY_SECONDS) > NOW && e <= NOW + MAX_LIFETIME_SECONDS)
        && text("jti").is_some_and(|j| !j.is_empty() && j.len() <= 256)
        && optional_time_ok("nbf")
        && optional_time_ok("iat")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = keys();
    let audiences = [TOKEN_ENDPOINT, ISSUER];
    let expect = Expectations {
        client_id: CLIENT,
        audiences: &audiences,
        now: NOW,
    };
    if mode % 3 == 0 {
        let assertion = String::from_utf8_lossy(rest);
        let _ = unverified_issuer(&assertion);
        // Without the private keys nothing verifies (a forgery would be a real finding).
        assert!(verify(&assertion, &keys, &expect).is_err(), "{assertion}");
        return;
    }
    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(rest) else {
        return;
    };
    if !claims.is_object() {
        return;
    }
    let (algorithm, kid, der) = if mode % 3 == 1 {
        (Algorithm::ES256, "ec", EC_PKCS8)
    } else {
        (Algorithm::EdDSA, "ed", ED_PKCS8)
    };
    let der = STANDARD.decode(der).expect("fixed key");
    let key = if algorithm == Algorithm::ES256 {
        EncodingKey::from_ec_der(&der)
    } else {
        EncodingKey::from_ed_der(&der)
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_string());
    let Ok(assertion) = jsonwebtoken::encode(&header, &claims, &key) else {
        return;
    };
    let outcome = verify(&assertion, &keys, &expect);
    let fits = assertion.len() <= mcp_authd::oauth::assertion::MAX_ASSERTION_LEN;
    // Claims the verifier reads with stricter types (e.g. a float exp) may fail where the
    // independent rule says yes; never the other way round.
    if outcome.is_ok() {
        assert!(fits && keeps_the_rules(&claims), "accepted {claims}");
        let verified = outcome.expect("checked");
        assert_eq!(Some(verified.jti.as_str()), claims["jti"].as_str());
        let mut bytes = assertion.into_bytes();
        let at = (rest.len() * 7919) % bytes.len();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8_lossy(&bytes);
        assert!(verify(&changed, &keys, &expect).is_err(), "a changed byte verified");
    } else if fits
        && keeps_the_rules(&claims)
        && claims.as_object().is_some_and(|o| {
            o.keys().all(|k| ["iss", "sub", "aud", "exp", "jti", "nbf", "iat"].contains(&k.as_str()))
        })
    {
        panic!("refused valid claims {claims}: {outcome:?}");
    }
});
