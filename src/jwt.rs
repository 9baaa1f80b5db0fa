//! Access tokens: JWTs with `typ: at+jwt` (RFC 9068), signed with HS256 (`jwtSecret`, the
//! default) or with an asymmetric key (EdDSA or ES256, SPEC §14), and the verification API an
//! MCP server uses.
//!
//! Verification is explicit about everything RFC 8725 asks for: each key carries its own
//! algorithm and a token must name exactly that one (so `none`, HS512, and an HS256 token
//! "signed" with a public key are refused), `typ` must be `at+jwt` (so an ID token or another
//! JWT cannot be replayed as an access token), and `iss`, `aud` and `exp` must be present and
//! right.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::signing::{PrivateKey, PublicKey, SigningAlgorithm};

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
    Hs256Key::new(secret).mint(claims)
}

/// An HS256 signing secret prepared for minting: its `kid`, the token header that names it
/// (already JSON and base64url), and the HMAC key schedule, computed once instead of on every
/// token. Tokens are byte for byte what `jsonwebtoken::encode` makes of the same header and
/// claims (`typ`, `alg`, `kid`; the header serialised the same way).
#[derive(Clone)]
pub struct Hs256Key {
    kid: String,
    /// `base64url(header JSON) + "."`.
    header: String,
    mac: crate::secrets::HmacKey,
}

impl std::fmt::Debug for Hs256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hs256Key").field("kid", &self.kid).finish()
    }
}

impl Hs256Key {
    /// Prepares `secret`.
    pub fn new(secret: &[u8]) -> Self {
        let kid = key_id(secret);
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYP.to_string());
        header.kid = Some(kid.clone());
        // A header of strings always serialises.
        let json = serde_json::to_vec(&header).unwrap_or_default();
        let mut encoded = URL_SAFE_NO_PAD.encode(json);
        encoded.push('.');
        Self {
            kid,
            header: encoded,
            mac: crate::secrets::HmacKey::new(secret),
        }
    }

    /// The `kid` of the tokens it signs.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` (see [`mint_access_token`]).
    pub fn mint(&self, claims: &AccessTokenClaims) -> Result<String, MintError> {
        let json = serde_json::to_vec(claims).map_err(jsonwebtoken::errors::Error::from)?;
        // header.claims.signature, each part base64url: 4/3 of the JSON, 43 for the MAC.
        let mut token = String::with_capacity(self.header.len() + json.len() * 4 / 3 + 48);
        token.push_str(&self.header);
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        let signature = self.mac.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        if token.len() > MAX_TOKEN_LEN {
            return Err(MintError::TooLarge(token.len()));
        }
        Ok(token)
    }
}

/// Signs `claims` as an `at+jwt` with an EdDSA or ES256 key; the `kid` is the key's RFC 7638
/// thumbprint.
pub fn mint_access_token_with_key(
    claims: &AccessTokenClaims,
    key: &PrivateKey,
) -> Result<String, MintError> {
    mint(
        claims,
        key.algorithm().jose(),
        key.public_key().kid().to_string(),
        key.encoding_key(),
    )
}

fn mint(
    claims: &AccessTokenClaims,
    alg: Algorithm,
    kid: String,
    key: &EncodingKey,
) -> Result<String, MintError> {
    let mut header = Header::new(alg);
    header.typ = Some(ACCESS_TOKEN_TYP.to_string());
    header.kid = Some(kid);
    let token = jsonwebtoken::encode(&header, claims, key)?;
    if token.len() > MAX_TOKEN_LEN {
        return Err(MintError::TooLarge(token.len()));
    }
    Ok(token)
}

/// How this server signs access tokens: `jwtSecret` (HS256) or the key of
/// `oauthAs.signing.privateKeyFile`.
#[derive(Clone)]
pub enum TokenSigner {
    /// HS256 with this secret (see [`TokenSigner::hs256`]).
    Hs256(Arc<Hs256Key>),
    /// EdDSA or ES256 with this key.
    Key(Arc<PrivateKey>),
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.key_id())
            .finish()
    }
}

impl TokenSigner {
    /// HS256 with `secret` (`jwtSecret`).
    pub fn hs256(secret: &[u8]) -> Self {
        Self::Hs256(Arc::new(Hs256Key::new(secret)))
    }

    /// Signs `claims` as an access token.
    pub fn mint(&self, claims: &AccessTokenClaims) -> Result<String, MintError> {
        match self {
            Self::Hs256(key) => key.mint(claims),
            Self::Key(key) => mint_access_token_with_key(claims, key),
        }
    }

    /// The algorithm of the tokens it signs.
    pub fn algorithm(&self) -> SigningAlgorithm {
        match self {
            Self::Hs256(_) => SigningAlgorithm::HS256,
            Self::Key(key) => key.algorithm(),
        }
    }

    /// The `kid` its tokens carry.
    pub fn key_id(&self) -> String {
        match self {
            Self::Hs256(key) => key.key_id().to_string(),
            Self::Key(key) => key.public_key().kid().to_string(),
        }
    }
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
    /// The header's `alg` is not the algorithm of any key this verifier holds, or not the one
    /// of the key its `kid` names.
    #[error("algorithm not allowed")]
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
    /// The verifier's keys come from a JWKS URL that could not be fetched, and it holds no
    /// key for this token (the token may be fine: answer 503, not 401).
    #[error("signing keys unavailable")]
    KeysUnavailable,
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

/// One accepted key: the algorithm is part of the key, never taken from a token.
#[derive(Clone)]
struct VerificationKey {
    kid: String,
    alg: Algorithm,
    key: DecodingKey,
}

/// A reusable access-token verifier holding the current key and, during a rotation, the
/// previous ones (accepted for verification only): HS256 secrets, or EdDSA/ES256 public keys.
///
/// It accepts tokens of one issuer for one audience, and of more (issuer, audience) pairs
/// added with [`Self::with_additional_issuer`] (SPEC §11: an internal and a public host, each
/// an issuer with its own resource URL). A token is valid when its `iss` and `aud` are one of
/// the pairs together: the audience of one issuer with the `iss` of another is refused.
#[derive(Clone)]
pub struct Verifier {
    /// The accepted (issuer, audience) pairs, the first one given first.
    accepted: Vec<(String, String)>,
    /// The current key first.
    keys: Vec<VerificationKey>,
    leeway_seconds: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("accepted", &self.accepted)
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

impl Verifier {
    /// A verifier for `expect` (HS256 with `expect.secret`).
    pub fn new(expect: &TokenExpectations) -> Self {
        Self {
            accepted: vec![(expect.issuer.clone(), expect.audience.clone())],
            keys: Vec::new(),
            leeway_seconds: expect.leeway_seconds,
        }
        .with_previous_secrets([expect.secret.clone()])
    }

    /// A verifier for tokens of `issuer` meant for `audience`, signed with one of `keys`
    /// (EdDSA or ES256, each selected by its `kid`, the current key first). No leeway: see
    /// [`Self::with_leeway`].
    pub fn with_public_keys<'a>(
        issuer: &str,
        audience: &str,
        keys: impl IntoIterator<Item = &'a PublicKey>,
    ) -> Self {
        let mut verifier = Self {
            accepted: vec![(issuer.to_string(), audience.to_string())],
            keys: Vec::new(),
            leeway_seconds: 0,
        };
        for key in keys {
            verifier.add(
                key.kid().to_string(),
                key.algorithm().jose(),
                key.decoding_key().clone(),
            );
        }
        verifier
    }

    /// Tolerates this much clock skew on `exp` and `nbf`, in seconds.
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.leeway_seconds = seconds;
        self
    }

    /// Also accepts tokens of `issuer` meant for `audience`, with the same keys (an entry of
    /// `additionalIssuers`, SPEC §11).
    pub fn with_additional_issuer(mut self, issuer: &str, audience: &str) -> Self {
        let pair = (issuer.to_string(), audience.to_string());
        if !self.accepted.contains(&pair) {
            self.accepted.push(pair);
        }
        self
    }

    /// The accepted (issuer, audience) pairs, the first one given first.
    pub fn accepted_issuers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.accepted
            .iter()
            .map(|(issuer, audience)| (issuer.as_str(), audience.as_str()))
    }

    /// Also accepts tokens signed with these earlier secrets (selected by `kid`).
    pub fn with_previous_secrets(mut self, secrets: impl IntoIterator<Item = Vec<u8>>) -> Self {
        for secret in secrets {
            self.add(
                key_id(&secret),
                Algorithm::HS256,
                DecodingKey::from_secret(&secret),
            );
        }
        self
    }

    fn add(&mut self, kid: String, alg: Algorithm, key: DecodingKey) {
        if !self.keys.iter().any(|k| k.kid == kid) {
            self.keys.push(VerificationKey { kid, alg, key });
        }
    }

    /// The key ids this verifier accepts, the current one first.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.kid.clone()).collect()
    }

    /// Whether `kid` names one of this verifier's keys.
    pub fn has_key_id(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid == kid)
    }

    /// Verifies `token` against the system clock and returns its claims.
    pub fn verify(&self, token: &str) -> Result<AccessTokenClaims, VerifyError> {
        self.verify_at(token, crate::clock::Clock::now(&crate::clock::SystemClock))
    }

    /// Verifies `token` as of `now` (seconds since the epoch) and returns its claims.
    pub fn verify_at(&self, token: &str, now: u64) -> Result<AccessTokenClaims, VerifyError> {
        let header = parse_header(token)?;
        if !self.keys.iter().any(|k| k.alg == header.alg) {
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
        // key is the only candidate.
        let key = match header.kid.as_deref() {
            Some(kid) => self.keys.iter().find(|k| k.kid == kid),
            None => self.keys.first(),
        }
        .ok_or(VerifyError::UnknownKey)?;
        // The key decides the algorithm (RFC 8725 §3.1): an HS256 token naming a public key
        // would otherwise be checked as an HMAC keyed with the public key's bytes.
        if key.alg != header.alg {
            return Err(VerifyError::Algorithm);
        }
        let mut validation = Validation::new(key.alg);
        let issuers: Vec<&str> = self.accepted.iter().map(|(i, _)| i.as_str()).collect();
        let audiences: Vec<&str> = self.accepted.iter().map(|(_, a)| a.as_str()).collect();
        validation.set_issuer(&issuers);
        validation.set_audience(&audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway_seconds;
        // Expiry is checked below against `now`, so callers with an injected clock agree.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<AccessTokenClaims>(token, &key.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => VerifyError::Signature,
                    ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => {
                        VerifyError::Expired
                    }
                    ErrorKind::InvalidIssuer => VerifyError::Issuer,
                    ErrorKind::InvalidAudience => VerifyError::Audience,
                    ErrorKind::InvalidAlgorithm => VerifyError::Algorithm,
                    ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => VerifyError::Issuer,
                    ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => {
                        VerifyError::Audience
                    }
                    ErrorKind::Json(_) | ErrorKind::MissingRequiredClaim(_) => VerifyError::Claims,
                    _ => VerifyError::Malformed,
                }
            })?;
        if data.claims.exp.saturating_add(self.leeway_seconds) <= now {
            return Err(VerifyError::Expired);
        }
        // Each of `iss` and `aud` is one that is accepted; they must also belong together.
        let claims = data.claims;
        if !self
            .accepted
            .iter()
            .any(|(issuer, audience)| *issuer == claims.iss && *audience == claims.aud)
        {
            return Err(VerifyError::Audience);
        }
        Ok(claims)
    }
}

/// The header of a token no longer than [`MAX_TOKEN_LEN`]; nothing is trusted yet.
pub(crate) fn parse_header(token: &str) -> Result<Header, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(VerifyError::Malformed);
    }
    jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_set_of_issuers_accepts_each_with_its_own_audience_only() {
        let internal = ("https://internal.example", "https://internal.example/mcp");
        let verifier = Verifier::new(&expect()).with_additional_issuer(internal.0, internal.1);
        assert_eq!(
            verifier.accepted_issuers().collect::<Vec<_>>(),
            [("https://as.example", "https://as.example/mcp"), internal]
        );
        let token_of = |iss: &str, aud: &str| {
            let mut c = claims();
            c.iss = iss.into();
            c.aud = aud.into();
            mint_access_token(&c, SECRET).unwrap()
        };
        let primary = token_of("https://as.example", "https://as.example/mcp");
        assert!(verifier.verify(&primary).is_ok());
        let second = verifier.verify(&token_of(internal.0, internal.1)).unwrap();
        assert_eq!(second.iss, internal.0);
        // Each claim is one of the accepted ones, but not together.
        assert_eq!(
            verifier.verify(&token_of(internal.0, "https://as.example/mcp")),
            Err(VerifyError::Audience)
        );
        assert_eq!(
            verifier.verify(&token_of("https://as.example", internal.1)),
            Err(VerifyError::Audience)
        );
        assert_eq!(
            verifier.verify(&token_of("https://other.example", internal.1)),
            Err(VerifyError::Issuer)
        );
        // Without the pair, the second issuer's token is refused.
        assert_eq!(
            Verifier::new(&expect()).verify(&token_of(internal.0, internal.1)),
            Err(VerifyError::Issuer)
        );
    }

    #[test]
    fn the_prepared_hs256_key_mints_what_jsonwebtoken_would() {
        // The grace window hands out a rotation's token again byte for byte (SPEC §17), also
        // across an upgrade from a build that minted with `jsonwebtoken::encode`.
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYP.to_string());
        header.kid = Some(key_id(SECRET));
        let key = Hs256Key::new(SECRET);
        for mut c in [claims(), claims()] {
            let reference =
                jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(SECRET)).unwrap();
            assert_eq!(key.mint(&c).unwrap(), reference);
            c.sid = Some("a-sign-in".into());
            c.groups = vec!["\"quoted\" \u{e9}".into(); 3];
            let reference =
                jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(SECRET)).unwrap();
            assert_eq!(key.mint(&c).unwrap(), reference);
            assert_eq!(TokenSigner::hs256(SECRET).mint(&c).unwrap(), reference);
        }
        assert_eq!(key.key_id(), key_id(SECRET));
        assert!(!format!("{key:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn minted_tokens_verify_and_round_trip() {
        // One set of claims: two calls to `claims()` can straddle a second boundary.
        let claims = claims();
        let token = mint_access_token(&claims, SECRET).unwrap();
        assert_eq!(verify_access_token(&token, &expect()).unwrap(), claims);
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

    fn key_verifier(keys: &[&PrivateKey]) -> Verifier {
        let public: Vec<PublicKey> = keys.iter().map(|k| k.public_key().clone()).collect();
        Verifier::with_public_keys("https://as.example", "https://as.example/mcp", &public)
    }

    #[test]
    fn eddsa_and_es256_tokens_verify_with_their_public_keys_only() {
        for algorithm in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256] {
            let key = PrivateKey::generate(algorithm).unwrap();
            let minted = claims();
            let token = mint_access_token_with_key(&minted, &key).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, algorithm.jose());
            assert_eq!(
                header.kid.as_deref(),
                Some(key.public_key().thumbprint().as_str())
            );
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(key_verifier(&[&key]).verify(&token), Ok(minted.clone()));
            // Another key of the same kind under the same kid: the signature decides.
            let other = PrivateKey::generate(algorithm).unwrap();
            let forged = signed_as(key.public_key().kid(), &other);
            assert_eq!(
                key_verifier(&[&key]).verify(&forged),
                Err(VerifyError::Signature)
            );
            assert_eq!(
                key_verifier(&[&other]).verify(&token),
                Err(VerifyError::UnknownKey)
            );
            // An HS256 verifier knows nothing of key pairs.
            assert_eq!(
                verify_access_token(&token, &expect()),
                Err(VerifyError::Algorithm)
            );
        }
    }

    /// A well-signed token by `key` whose header names `kid` instead of the key's own.
    fn signed_as(kid: &str, key: &PrivateKey) -> String {
        mint(
            &claims(),
            key.algorithm().jose(),
            kid.to_string(),
            key.encoding_key(),
        )
        .unwrap()
    }

    #[test]
    fn an_hs256_token_keyed_with_the_public_key_is_refused() {
        // RFC 8725 §2.1: a verifier that took `alg` from the token would check this HMAC with
        // the public key's bytes as the secret, which anyone can compute.
        for algorithm in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256] {
            let key = PrivateKey::generate(algorithm).unwrap();
            let public = key.public_key();
            let body = serde_json::to_value(claims()).unwrap();
            let header = serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": public.kid()});
            let jwk = public.to_jwk().to_string();
            let pem = public.to_pem().unwrap();
            for secret in [pem.as_bytes(), jwk.as_bytes(), public.kid().as_bytes()] {
                let forged = forge(header.clone(), body.clone(), secret);
                assert_eq!(
                    key_verifier(&[&key]).verify(&forged),
                    Err(VerifyError::Algorithm)
                );
            }
            // Not even a verifier that also holds an HS256 secret lets the kid cross over.
            let mixed = key_verifier(&[&key]).with_previous_secrets([pem.as_bytes().to_vec()]);
            let forged = forge(header.clone(), body.clone(), pem.as_bytes());
            assert_eq!(mixed.verify(&forged), Err(VerifyError::Algorithm));
            // Nor does a token of the other asymmetric algorithm naming this key.
            let other = match algorithm {
                SigningAlgorithm::EdDSA => SigningAlgorithm::ES256,
                _ => SigningAlgorithm::EdDSA,
            };
            let other_key = PrivateKey::generate(other).unwrap();
            let cross = signed_as(public.kid(), &other_key);
            assert_eq!(
                key_verifier(&[&key, &other_key]).verify(&cross),
                Err(VerifyError::Algorithm)
            );
        }
    }

    #[test]
    fn a_previous_public_key_keeps_its_tokens_valid() {
        let old = PrivateKey::generate(SigningAlgorithm::ES256).unwrap();
        let new = PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap();
        let old_token = mint_access_token_with_key(&claims(), &old).unwrap();
        let new_token = mint_access_token_with_key(&claims(), &new).unwrap();
        let rotating = key_verifier(&[&new, &old]);
        assert_eq!(
            rotating.key_ids(),
            [new.public_key().kid(), old.public_key().kid()]
        );
        assert!(rotating.verify(&old_token).is_ok());
        assert!(rotating.verify(&new_token).is_ok());
        // Retired: the other algorithm is then not accepted at all; a retired key of the same
        // algorithm is an unknown kid.
        assert_eq!(
            key_verifier(&[&new]).verify(&old_token),
            Err(VerifyError::Algorithm)
        );
        let newer = PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap();
        assert_eq!(
            key_verifier(&[&newer]).verify(&new_token),
            Err(VerifyError::UnknownKey)
        );
        let signer = TokenSigner::Key(Arc::new(new.clone()));
        assert_eq!(signer.key_id(), new.public_key().kid());
        assert!(rotating.verify(&signer.mint(&claims()).unwrap()).is_ok());
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
