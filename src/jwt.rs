//! Access tokens: HS256 JWTs with `typ: at+jwt` (RFC 9068), and the verification API an MCP
//! server uses.
//!
//! Verification is explicit about everything RFC 8725 asks for: the algorithm is pinned to
//! HS256 (so `none`, HS512 and RS256 confusion are refused), `typ` must be `at+jwt` (so an ID
//! token or another JWT cannot be replayed as an access token), and `iss`, `aud` and `exp` must
//! be present and right.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `typ` header of every access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The claims of an access token (SPEC §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// The issuer URL.
    pub iss: String,
    /// The user, as asserted by the trusted reverse proxy.
    pub sub: String,
    /// The protected resource (the MCP server URL).
    pub aud: String,
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// The granted scope, space-separated (may be empty).
    pub scope: String,
    /// The user's groups, from the trusted groups header.
    pub groups: Vec<String>,
    /// Roles stamped in by configuration (`injectedRoles`).
    pub roles: Vec<String>,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// A unique token id.
    pub jti: String,
    /// The sign-in (refresh-token family) the token was issued from, as its
    /// [`crate::oauth::refresh::family_key`]; introspection reports the token inactive once
    /// that sign-in is revoked. Absent from tokens minted before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// The key id (`kid`) of an HS256 secret: 8 base64url characters of its SHA-256, enough to
/// pick among a handful of keys during rotation and useless for guessing the secret.
pub fn key_id(secret: &[u8]) -> String {
    let mut id = crate::secrets::sha256_b64(secret);
    id.truncate(8);
    id
}

/// Why no access token was minted. Neither variant carries the token.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The signing library failed.
    #[error("signing failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
    /// The encoded token would be longer than [`MAX_TOKEN_LEN`], so every verifier, this
    /// server's introspection and revocation included, would refuse it.
    #[error(
        "the access token would be {0} bytes, over the {MAX_TOKEN_LEN}-byte limit of the verifier"
    )]
    TooLarge(usize),
}

/// Signs `claims` as an HS256 `at+jwt` whose `kid` names `secret`. A token longer than the
/// verifier accepts ([`MAX_TOKEN_LEN`]) is refused here rather than handed out: nobody could
/// use it, and it could not even be revoked.
pub fn mint_access_token(claims: &AccessTokenClaims, secret: &[u8]) -> Result<String, MintError> {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(ACCESS_TOKEN_TYP.to_string());
    header.kid = Some(key_id(secret));
    let token = jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(MintError::TooLarge(token.len()));
    }
    Ok(token)
}

/// What a resource server requires of an access token.
#[derive(Clone)]
pub struct TokenExpectations {
    /// The issuer URL (`issuerUrl`), compared exactly.
    pub issuer: String,
    /// This resource server's URL (`resourceUrl`), which must be the token's `aud`.
    pub audience: String,
    /// The shared HS256 secret (`jwtSecret`).
    pub secret: Vec<u8>,
    /// Clock skew tolerated on `exp`, in seconds. Keep it small; 30 is a good default.
    pub leeway_seconds: u64,
}

impl std::fmt::Debug for TokenExpectations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExpectations")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("secret", &"<redacted>")
            .field("leeway_seconds", &self.leeway_seconds)
            .finish()
    }
}

/// Why an access token was refused. The variants are safe to log; none carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a well-formed JWS, or too long.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not HS256.
    #[error("algorithm not allowed (only HS256)")]
    Algorithm,
    /// The header's `typ` is missing or not `at+jwt`.
    #[error("token type is not at+jwt")]
    Type,
    /// The signature does not verify under the configured secret.
    #[error("bad signature")]
    Signature,
    /// The header's `kid` names no key this verifier holds (for example a retired secret).
    #[error("unknown key id")]
    UnknownKey,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `iss` is missing or not the expected issuer.
    #[error("wrong or missing issuer")]
    Issuer,
    /// `aud` is missing or not this resource.
    #[error("wrong or missing audience")]
    Audience,
    /// A required claim is missing or has the wrong type.
    #[error("missing or invalid claim")]
    Claims,
}

/// Verifies an access token against one secret and returns its claims. For key rotation,
/// build a [`Verifier`] with the previous secrets too.
pub fn verify_access_token(
    token: &str,
    expect: &TokenExpectations,
) -> Result<AccessTokenClaims, VerifyError> {
    Verifier::new(expect).verify(token)
}

/// A reusable access-token verifier holding the current secret and, during a rotation, the
/// previous ones (accepted for verification only).
#[derive(Clone)]
pub struct Verifier {
    issuer: String,
    audience: String,
    /// `(kid, secret)`, the current secret first.
    keys: Vec<(String, Vec<u8>)>,
    leeway_seconds: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl Verifier {
    /// A verifier for `expect`.
    pub fn new(expect: &TokenExpectations) -> Self {
        Self {
            issuer: expect.issuer.clone(),
            audience: expect.audience.clone(),
            keys: vec![(key_id(&expect.secret), expect.secret.clone())],
            leeway_seconds: expect.leeway_seconds,
        }
    }

    /// Also accepts tokens signed with these earlier secrets (selected by `kid`).
    pub fn with_previous_secrets(mut self, secrets: impl IntoIterator<Item = Vec<u8>>) -> Self {
        for secret in secrets {
            let id = key_id(&secret);
            if !self.keys.iter().any(|(k, _)| *k == id) {
                self.keys.push((id, secret));
            }
        }
        self
    }

    /// The key ids this verifier accepts, the current one first.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|(id, _)| id.clone()).collect()
    }

    /// Verifies `token` against the system clock and returns its claims.
    pub fn verify(&self, token: &str) -> Result<AccessTokenClaims, VerifyError> {
        self.verify_at(token, crate::clock::Clock::now(&crate::clock::SystemClock))
    }

    /// Verifies `token` as of `now` (seconds since the epoch) and returns its claims.
    pub fn verify_at(&self, token: &str, now: u64) -> Result<AccessTokenClaims, VerifyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(VerifyError::Algorithm);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(VerifyError::Type);
        }
        // This issuer never marks extensions critical, and none is understood here: a token
        // that lists any must be refused (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            return Err(VerifyError::Malformed);
        }
        // `kid` is only ever a key into this table (RFC 8725 §3.10); without one, the current
        // secret is the only candidate.
        let secret = match header.kid.as_deref() {
            Some(kid) => self.keys.iter().find(|(id, _)| id == kid).map(|(_, s)| s),
            None => self.keys.first().map(|(_, s)| s),
        }
        .ok_or(VerifyError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway_seconds;
        // Expiry is checked below against `now`, so callers with an injected clock agree.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<AccessTokenClaims>(
            token,
            &DecodingKey::from_secret(secret),
            &validation,
        )
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::Signature,
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => VerifyError::Expired,
                ErrorKind::InvalidIssuer => VerifyError::Issuer,
                ErrorKind::InvalidAudience => VerifyError::Audience,
                ErrorKind::InvalidAlgorithm => VerifyError::Algorithm,
                ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => VerifyError::Issuer,
                ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => VerifyError::Audience,
                ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_) => VerifyError::Claims,
                _ => VerifyError::Malformed,
            }
        })?;
        if data.claims.exp.saturating_add(self.leeway_seconds) <= now {
            return Err(VerifyError::Expired);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://as.example".into(),
            sub: "alice".into(),
            aud: "https://as.example/mcp".into(),
            client_id: "c1".into(),
            scope: "read".into(),
            groups: vec!["eng".into()],
            roles: vec!["mcp-user".into()],
            iat: now(),
            exp: now() + 600,
            jti: "j1".into(),
            sid: None,
        }
    }

    fn expect() -> TokenExpectations {
        TokenExpectations {
            issuer: "https://as.example".into(),
            audience: "https://as.example/mcp".into(),
            secret: SECRET.to_vec(),
            leeway_seconds: 0,
        }
    }

    fn forge(header: serde_json::Value, claims: serde_json::Value, key: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = crate::secrets::hmac_b64(key, format!("{h}.{c}").as_bytes());
        format!("{h}.{c}.{sig}")
    }

    #[test]
    fn minted_tokens_verify_and_round_trip() {
        let token = mint_access_token(&claims(), SECRET).unwrap();
        assert_eq!(verify_access_token(&token, &expect()).unwrap(), claims());
    }

    #[test]
    fn wrong_key_audience_issuer_and_expiry_are_refused() {
        let token = mint_access_token(&claims(), SECRET).unwrap();
        let mut e = expect();
        e.secret = b"another-secret-another-secret-xx".to_vec();
        assert_eq!(
            verify_access_token(&token, &e),
            Err(VerifyError::UnknownKey)
        );
        // A token that names the verifier's key but was signed with another one.
        let body = serde_json::to_value(claims()).unwrap();
        let header = serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": key_id(&e.secret)});
        let forged = forge(header, body, SECRET);
        assert_eq!(
            verify_access_token(&forged, &e),
            Err(VerifyError::Signature)
        );
        let mut e = expect();
        e.audience = "https://other.example/mcp".into();
        assert_eq!(verify_access_token(&token, &e), Err(VerifyError::Audience));
        let mut e = expect();
        e.issuer = "https://other.example".into();
        assert_eq!(verify_access_token(&token, &e), Err(VerifyError::Issuer));
        let mut c = claims();
        c.exp = now() - 10;
        let token = mint_access_token(&c, SECRET).unwrap();
        assert_eq!(
            verify_access_token(&token, &expect()),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn alg_none_other_algorithms_and_missing_typ_are_refused() {
        let body = serde_json::to_value(claims()).unwrap();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
            URL_SAFE_NO_PAD.encode(body.to_string())
        );
        assert!(verify_access_token(&none, &expect()).is_err());
        let hs512 = forge(
            serde_json::json!({"alg":"HS512","typ":"at+jwt"}),
            body.clone(),
            SECRET,
        );
        assert_eq!(
            verify_access_token(&hs512, &expect()),
            Err(VerifyError::Algorithm)
        );
        let no_typ = forge(serde_json::json!({"alg":"HS256"}), body.clone(), SECRET);
        assert_eq!(
            verify_access_token(&no_typ, &expect()),
            Err(VerifyError::Type)
        );
        let jwt_typ = forge(serde_json::json!({"alg":"HS256","typ":"JWT"}), body, SECRET);
        assert_eq!(
            verify_access_token(&jwt_typ, &expect()),
            Err(VerifyError::Type)
        );
    }

    #[test]
    fn missing_required_claims_are_refused() {
        for missing in ["iss", "aud", "exp"] {
            let mut body = serde_json::to_value(claims()).unwrap();
            body.as_object_mut().unwrap().remove(missing);
            let token = forge(
                serde_json::json!({"alg":"HS256","typ":"at+jwt"}),
                body,
                SECRET,
            );
            assert!(
                verify_access_token(&token, &expect()).is_err(),
                "token without {missing}"
            );
        }
    }

    #[test]
    fn rotation_accepts_previous_keys_by_kid_and_refuses_retired_ones() {
        let old_secret = b"old-secret-old-secret-old-secret".to_vec();
        let old_token = mint_access_token(&claims(), &old_secret).unwrap();
        let new_token = mint_access_token(&claims(), SECRET).unwrap();
        let rotating = Verifier::new(&expect()).with_previous_secrets([old_secret]);
        assert_eq!(rotating.key_ids().len(), 2);
        assert!(rotating.verify(&old_token).is_ok());
        assert!(rotating.verify(&new_token).is_ok());
        // Once the old secret is retired, its tokens name an unknown key.
        assert_eq!(
            Verifier::new(&expect()).verify(&old_token),
            Err(VerifyError::UnknownKey)
        );
    }

    #[test]
    fn minted_tokens_name_their_key() {
        let token = mint_access_token(&claims(), SECRET).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().kid,
            Some(key_id(SECRET))
        );
    }

    #[test]
    fn tokens_the_verifier_would_refuse_are_never_minted() {
        let mut c = claims();
        // Grow the roles until the token is just over the limit: every size up to it mints
        // and verifies, the first one past it is refused.
        let mut last_len = 0;
        loop {
            match mint_access_token(&c, SECRET) {
                Ok(token) => {
                    assert!(token.len() <= MAX_TOKEN_LEN);
                    assert_eq!(verify_access_token(&token, &expect()), Ok(c.clone()));
                    last_len = token.len();
                }
                Err(MintError::TooLarge(len)) => {
                    assert!(len > MAX_TOKEN_LEN && last_len > MAX_TOKEN_LEN - 64);
                    break;
                }
                Err(other) => panic!("{other}"),
            }
            c.roles.push("r".repeat(16));
        }
    }

    #[test]
    fn garbage_and_oversized_tokens_are_malformed() {
        assert_eq!(
            verify_access_token("", &expect()),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify_access_token("a.b.c", &expect()),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify_access_token(&"a".repeat(MAX_TOKEN_LEN + 1), &expect()),
            Err(VerifyError::Malformed)
        );
    }
}
