//! `private_key_jwt` client authentication (RFC 7523 §2.2, §3; OIDC Core §9) for clients
//! whose metadata document publishes their keys.
//!
//! [`verify`] checks everything about one assertion except that its `jti` is new, which needs
//! state shared by every request: the caller records the returned `jti` in an
//! [`crate::store::AssertionReplayCache`] and refuses it when already seen.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::cimd::key_algorithm;

/// `client_assertion_type` for a JWT assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How far ahead `exp` may be: an assertion is a one-shot credential, not a long-lived one.
pub const MAX_LIFETIME_SECONDS: u64 = 300;

/// Clock skew tolerated between the client and this server on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: u64 = 30;

/// Assertions longer than this are refused before any parsing.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;

/// The longest `jti` remembered.
pub const MAX_JTI_LEN: usize = 256;

/// How many keys are tried for an assertion without a `kid`.
const MAX_KEYS_TRIED: usize = 8;

/// Why an assertion was refused. Safe to show and log: no variant carries the assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// Not a well-formed JWS, too long, or a header member this server does not accept.
    #[error("the client assertion is malformed")]
    Malformed,
    /// `alg` is not ES256, EdDSA or RS256.
    #[error("the client assertion must be signed with ES256, EdDSA or RS256")]
    Algorithm,
    /// No published key of the right kind (or with that `kid`).
    #[error("no key in the client's JWKS matches the client assertion")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the client assertion's signature does not verify")]
    Signature,
    /// `iss` or `sub` is not the client_id.
    #[error("the client assertion's iss and sub must both be the client_id")]
    Subject,
    /// `aud` names neither the token endpoint nor the issuer.
    #[error("the client assertion's aud must be the token endpoint URL or the issuer")]
    Audience,
    /// `exp` has passed.
    #[error("the client assertion has expired")]
    Expired,
    /// `exp` is more than five minutes ahead.
    #[error("the client assertion's exp is more than 5 minutes ahead")]
    TooLongLived,
    /// `nbf` or `iat` is in the future.
    #[error("the client assertion is not valid yet")]
    NotYetValid,
    /// `jti`, `exp`, `iss` or `sub` is missing or of the wrong type.
    #[error("the client assertion lacks iss, sub, aud, exp or jti")]
    Claims,
}

/// What the caller needs of a verified assertion: its single-use marker and how long to
/// remember it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The `jti`.
    pub jti: String,
    /// The `exp`.
    pub exp: u64,
}

/// What an assertion must say.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The client it authenticates: `iss` and `sub`.
    pub client_id: &'a str,
    /// Acceptable `aud` values: the token endpoint URL and the issuer.
    pub audiences: &'a [&'a str],
    /// Now, seconds since the epoch.
    pub now: u64,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: u64,
    jti: String,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains_any(&self, accepted: &[&str]) -> bool {
        match self {
            Self::One(aud) => accepted.contains(&aud.as_str()),
            Self::Many(auds) => auds.iter().any(|a| accepted.contains(&a.as_str())),
        }
    }
}

/// The `iss` of an assertion, read without verifying it: only to find which client's keys
/// to verify it with when the request names no `client_id` (RFC 7523 §3 makes it optional).
pub fn unverified_issuer(assertion: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Issuer {
        iss: String,
    }
    if assertion.len() > MAX_ASSERTION_LEN {
        return None;
    }
    let payload = assertion.split('.').nth(1)?;
    let json =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
    serde_json::from_slice::<Issuer>(&json).ok().map(|c| c.iss)
}

/// Verifies `assertion` with the client's published `keys`: an accepted algorithm, a key of
/// the matching kind (the one named by `kid`, or each in turn), the signature, `iss` = `sub`
/// = client_id, `aud`, `exp` in the future but at most five minutes ahead, `nbf`/`iat` not in
/// the future, and a `jti`.
pub fn verify(
    assertion: &str,
    keys: &JwkSet,
    expect: &Expectations<'_>,
) -> Result<VerifiedAssertion, AssertionError> {
    if assertion.len() > MAX_ASSERTION_LEN {
        return Err(AssertionError::Malformed);
    }
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| AssertionError::Malformed)?;
    if !matches!(
        header.alg,
        Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256
    ) {
        return Err(AssertionError::Algorithm);
    }
    // Keys come from the client's JWKS only: header members that point elsewhere or demand
    // extensions are refused (RFC 8725 §3.10, RFC 7515 §4.1.11).
    if header.crit.is_some()
        || header.jku.is_some()
        || header.jwk.is_some()
        || header.x5u.is_some()
        || header.x5c.is_some()
    {
        return Err(AssertionError::Malformed);
    }
    let candidates: Vec<&Jwk> = keys
        .keys
        .iter()
        .filter(|k| key_algorithm(k) == Some(header.alg))
        .filter(|k| match header.kid.as_deref() {
            Some(kid) => k.common.key_id.as_deref() == Some(kid),
            None => true,
        })
        .take(MAX_KEYS_TRIED)
        .collect();
    if candidates.is_empty() {
        return Err(AssertionError::UnknownKey);
    }

    let mut validation = Validation::new(header.alg);
    // Time and audience are checked below against the injected clock and the accepted list.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut outcome = Err(AssertionError::Signature);
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        match jsonwebtoken::decode::<Claims>(assertion, &key, &validation) {
            Ok(data) => {
                outcome = Ok(data.claims);
                break;
            }
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                if matches!(
                    e.kind(),
                    ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_)
                ) {
                    // The signature verified; the claims are wrong, whichever key is tried.
                    return Err(AssertionError::Claims);
                }
            }
        }
    }
    let claims = outcome?;

    if claims.iss != expect.client_id || claims.sub != expect.client_id {
        return Err(AssertionError::Subject);
    }
    if !claims.aud.contains_any(expect.audiences) {
        return Err(AssertionError::Audience);
    }
    let now = expect.now;
    if claims.exp.saturating_add(LEEWAY_SECONDS) <= now {
        return Err(AssertionError::Expired);
    }
    if claims.exp > now.saturating_add(MAX_LIFETIME_SECONDS) {
        return Err(AssertionError::TooLongLived);
    }
    let in_future = |t: Option<u64>| t.is_some_and(|t| t > now.saturating_add(LEEWAY_SECONDS));
    if in_future(claims.nbf) || in_future(claims.iat) {
        return Err(AssertionError::NotYetValid);
    }
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(AssertionError::Claims);
    }
    Ok(VerifiedAssertion {
        jti: claims.jti,
        exp: claims.exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const CLIENT: &str = "https://chatgpt.com/oauth/client.json";
    const TOKEN_ENDPOINT: &str = "https://as.example/oauth/token";
    const NOW: u64 = 1_800_000_000;

    fn expect() -> Expectations<'static> {
        Expectations {
            client_id: CLIENT,
            audiences: &[TOKEN_ENDPOINT, "https://as.example"],
            now: NOW,
        }
    }

    fn unsigned(header: serde_json::Value, claims: serde_json::Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    fn ec_keys() -> JwkSet {
        serde_json::from_value(serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}))
        .unwrap()
    }

    #[test]
    fn algorithms_and_header_tricks_are_refused_before_any_key_is_tried() {
        let claims = serde_json::json!({"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_ENDPOINT, "exp": NOW + 60, "jti": "j"});
        for header in [
            serde_json::json!({"alg": "HS256"}),
            serde_json::json!({"alg": "ES384"}),
            serde_json::json!({"alg": "PS256"}),
        ] {
            assert_eq!(
                verify(&unsigned(header, claims.clone()), &ec_keys(), &expect()),
                Err(AssertionError::Algorithm)
            );
        }
        assert_eq!(
            verify(
                &unsigned(serde_json::json!({"alg": "none"}), claims.clone()),
                &ec_keys(),
                &expect()
            ),
            Err(AssertionError::Malformed)
        );
        for header in [
            serde_json::json!({"alg": "ES256", "jku": "https://evil.example/jwks"}),
            serde_json::json!({"alg": "ES256", "crit": ["exp"]}),
            serde_json::json!({"alg": "ES256", "x5u": "https://evil.example/cert"}),
        ] {
            assert_eq!(
                verify(&unsigned(header, claims.clone()), &ec_keys(), &expect()),
                Err(AssertionError::Malformed)
            );
        }
        assert_eq!(
            verify(
                &unsigned(
                    serde_json::json!({"alg": "ES256", "kid": "other"}),
                    claims.clone()
                ),
                &ec_keys(),
                &expect()
            ),
            Err(AssertionError::UnknownKey)
        );
        assert_eq!(
            verify(
                &unsigned(serde_json::json!({"alg": "EdDSA"}), claims.clone()),
                &ec_keys(),
                &expect()
            ),
            Err(AssertionError::UnknownKey)
        );
        assert_eq!(
            verify(
                &unsigned(serde_json::json!({"alg": "ES256"}), claims),
                &ec_keys(),
                &expect()
            ),
            Err(AssertionError::Signature)
        );
        assert_eq!(
            verify("x.y", &ec_keys(), &expect()),
            Err(AssertionError::Malformed)
        );
        assert_eq!(
            verify(&"a".repeat(MAX_ASSERTION_LEN + 1), &ec_keys(), &expect()),
            Err(AssertionError::Malformed)
        );
    }

    #[test]
    fn the_issuer_is_read_unverified_only_to_pick_the_client() {
        let token = unsigned(
            serde_json::json!({"alg": "ES256"}),
            serde_json::json!({"iss": CLIENT}),
        );
        assert_eq!(unverified_issuer(&token).as_deref(), Some(CLIENT));
        assert_eq!(unverified_issuer("garbage"), None);
    }
}
