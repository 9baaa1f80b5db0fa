//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP
//! 2025-11-25; SPEC §12): which `client_id`s are document URLs, and what makes a document
//! valid.
//!
//! Pure functions: fetching is [`crate::fetch`], caching and auditing [`super::documents`].
//! Every refusal is a sentence naming the rule, safe to show on the error page and to log
//! (values quoted from the document are made printable and capped).

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use serde::Deserialize;
use url::Url;

use super::error::printable;
use super::redirect::{self, MAX_REDIRECT_URIS, RedirectPattern};
use super::register::sanitize_client_name;
use super::scope::Scope;
use crate::config::HostPattern;

/// The longest `client_id` URL accepted, in bytes.
pub const MAX_CLIENT_ID_URL_LEN: usize = 2048;

/// The most keys read from one JWKS.
pub const MAX_JWKS_KEYS: usize = 16;

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// The grant types a document client may use here; others it lists are ignored.
const SUPPORTED_GRANTS: &[&str] = &["authorization_code", "refresh_token"];

/// The signature algorithms accepted for `private_key_jwt` assertions, as advertised in
/// `token_endpoint_auth_signing_alg_values_supported`.
pub const SIGNING_ALGORITHMS: &[&str] = &["ES256", "EdDSA", "RS256"];

/// Why a document or its URL was refused: one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Refusal {
    fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// Whether `client_id` names a metadata document (an `https` URL) rather than a registered
/// client. Registered ids are random base64url strings, which never contain `:`. The scheme
/// is compared without case so that `HTTPS://…` is refused with a reason, not as unknown.
pub fn is_document_url(client_id: &str) -> bool {
    client_id
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// Checks a `client_id` URL (CIMD §3): https, a host, a path other than `/`, no fragment,
/// no userinfo, no dot segments, and written in canonical form, so that one client has one
/// spelling (consents and tokens are bound to it byte for byte).
pub fn check_client_id_url(raw: &str) -> Result<Url, Refusal> {
    let url = check_https_url(raw, "client_id")?;
    if url.path() == "/" || url.path().is_empty() {
        return Err(Refusal::new(
            "the client_id URL must have a path (https://host/path)",
        ));
    }
    Ok(url)
}

/// Checks a `jwks_uri`: https, a host, no fragment or userinfo, canonical form.
pub fn check_jwks_url(raw: &str) -> Result<Url, Refusal> {
    check_https_url(raw, "jwks_uri")
}

fn check_https_url(raw: &str, what: &str) -> Result<Url, Refusal> {
    if raw.len() > MAX_CLIENT_ID_URL_LEN {
        return Err(Refusal::new(format!(
            "the {what} URL is longer than {MAX_CLIENT_ID_URL_LEN} bytes"
        )));
    }
    let url =
        Url::parse(raw).map_err(|_| Refusal::new(format!("the {what} is not an absolute URL")))?;
    if url.scheme() != "https" {
        return Err(Refusal::new(format!("the {what} URL must use https")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::new(format!(
            "the {what} URL must not contain userinfo"
        )));
    }
    if url.fragment().is_some() {
        return Err(Refusal::new(format!(
            "the {what} URL must not contain a fragment"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Refusal::new(format!("the {what} URL has no host")));
    }
    if url.as_str() != raw {
        return Err(Refusal::new(format!(
            "the {what} URL is not in canonical form (expected {})",
            printable(url.as_str())
        )));
    }
    Ok(url)
}

/// Whether `url`'s host may serve documents under `allowed` (empty: any public host).
pub fn host_is_allowed(url: &Url, allowed: &[HostPattern]) -> Result<(), Refusal> {
    let host = url.host_str().unwrap_or_default();
    if allowed.is_empty() || allowed.iter().any(|p| p.matches(host)) {
        return Ok(());
    }
    Err(Refusal::new(format!(
        "{} is not among the hosts this server accepts client metadata documents from (allowedHosts)",
        printable(host)
    )))
}

/// Where a `private_key_jwt` client's public keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `jwks` in the document itself.
    Inline(JwkSet),
    /// `jwks_uri`, fetched under the same rules as the document.
    Uri(Url),
}

/// How a document client authenticates at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentAuth {
    /// `none`: a public client; PKCE alone.
    None,
    /// `private_key_jwt` (RFC 7523): an assertion signed with one of these keys.
    PrivateKeyJwt(KeySource),
}

/// A valid client metadata document, as used for authorization and token requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDocument {
    /// The URL, which is the `client_id`.
    pub client_id: String,
    /// The URL's host: the client's verified origin.
    pub host: String,
    /// `client_name` as the document states it (sanitised), or the host.
    pub client_name: String,
    /// Redirect URIs, byte-exact as listed.
    pub redirect_uris: Vec<String>,
    /// The grant types it may use here.
    pub grant_types: Vec<String>,
    /// The default scope.
    pub scope: String,
    /// How it authenticates at the token endpoint.
    pub auth: DocumentAuth,
}

/// The members this server reads; all others are ignored (CIMD §4.1, RFC 7591 §2). A
/// member repeated in the document is refused (serde reports it), so no reader can see
/// another value than this one.
#[derive(Deserialize)]
struct RawDocument {
    client_id: Option<String>,
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    scope: Option<String>,
    jwks: Option<serde_json::Value>,
    jwks_uri: Option<String>,
}

/// The JSON object in `body`, whatever the content type it was served with (several hosts
/// serve documents as `text/plain`).
fn json_object<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Refusal> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let is_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if !is_object {
        return Err(Refusal::new(format!("the {what} is not a JSON object")));
    }
    serde_json::from_slice(body).map_err(|e| {
        Refusal::new(format!(
            "the {what} is not valid: {}",
            printable(&e.to_string())
        ))
    })
}

/// Validates the document fetched from `url` (already checked by [`check_client_id_url`]):
/// `client_id` equals the URL byte for byte; `redirect_uris` is non-empty and every entry
/// passes the registration rules and `allowlist`; the authentication method is `none` or
/// `private_key_jwt` with keys. Unknown members and grant types are ignored.
pub fn parse_document(
    url: &Url,
    body: &[u8],
    allowlist: &[RedirectPattern],
    scopes_supported: &[String],
) -> Result<ClientDocument, Refusal> {
    let raw: RawDocument = json_object(body, "client metadata document")?;

    match raw.client_id.as_deref() {
        None => return Err(Refusal::new("the document has no client_id")),
        Some(id) if id != url.as_str() => {
            return Err(Refusal::new(format!(
                "the document's client_id {} is not its URL",
                printable(id)
            )));
        }
        Some(_) => {}
    }

    let redirect_uris = raw.redirect_uris.unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(Refusal::new("the document lists no redirect_uris"));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(Refusal::new(format!(
            "the document lists more than {MAX_REDIRECT_URIS} redirect_uris"
        )));
    }
    for uri in &redirect_uris {
        redirect::validate_for_registration(uri).map_err(|why| {
            Refusal::new(format!("redirect_uri rejected: {} ({why})", printable(uri)))
        })?;
        if !allowlist.iter().any(|p| p.allows_listed(uri)) {
            return Err(Refusal::new(format!(
                "redirect_uri rejected: {} (not in the server's redirectUriAllowlist)",
                printable(uri)
            )));
        }
    }

    if let Some(types) = &raw.response_types
        && !types.iter().any(|t| t == "code")
    {
        return Err(Refusal::new(
            "the document's response_types do not include code",
        ));
    }
    let grant_types: Vec<String> = match &raw.grant_types {
        None => SUPPORTED_GRANTS.iter().map(|g| g.to_string()).collect(),
        Some(listed) => SUPPORTED_GRANTS
            .iter()
            .filter(|g| listed.iter().any(|l| l == *g))
            .map(|g| g.to_string())
            .collect(),
    };
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(Refusal::new(
            "the document's grant_types do not include authorization_code",
        ));
    }

    let auth = match raw.token_endpoint_auth_method.as_deref() {
        None | Some("none") => DocumentAuth::None,
        Some("private_key_jwt") => match (&raw.jwks, &raw.jwks_uri) {
            (Some(_), Some(_)) => {
                return Err(Refusal::new(
                    "the document has both jwks and jwks_uri (RFC 7591 §2 allows one)",
                ));
            }
            (Some(jwks), None) => DocumentAuth::PrivateKeyJwt(KeySource::Inline(usable_keys(
                jwks.clone(),
                "document's jwks",
            )?)),
            (None, Some(uri)) => DocumentAuth::PrivateKeyJwt(KeySource::Uri(check_jwks_url(uri)?)),
            (None, None) => {
                return Err(Refusal::new(
                    "token_endpoint_auth_method private_key_jwt needs jwks or jwks_uri",
                ));
            }
        },
        Some(other) => {
            return Err(Refusal::new(format!(
                "token_endpoint_auth_method {} is not accepted for metadata documents (use none or private_key_jwt)",
                printable(other)
            )));
        }
    };

    let scope = Scope::parse(raw.scope.as_deref().unwrap_or_default())
        .without_offline_access()
        .retain_supported(scopes_supported);
    if scope.has_invalid_characters() {
        return Err(Refusal::new(
            "the document's scope contains characters RFC 6749 §3.3 forbids",
        ));
    }

    let host = url.host_str().unwrap_or_default().to_string();
    let client_name = match raw.client_name.as_deref().map(sanitize_client_name) {
        Some(name) if !name.is_empty() => name,
        _ => host.clone(),
    };
    Ok(ClientDocument {
        client_id: url.as_str().to_string(),
        host,
        client_name,
        redirect_uris,
        grant_types,
        scope: scope.to_string(),
        auth,
    })
}

/// Parses a JWKS fetched from a `jwks_uri`: the usable public keys in it.
pub fn parse_jwks(body: &[u8]) -> Result<JwkSet, Refusal> {
    let value: serde_json::Value = json_object(body, "JWKS")?;
    usable_keys(value, "JWKS")
}

/// The keys of a JWKS that can verify an accepted assertion. Keys of other types or
/// algorithms are skipped (a JWKS may also hold encryption keys); private key material
/// anywhere refuses the whole set, since a published private key cannot authenticate anyone.
fn usable_keys(value: serde_json::Value, what: &str) -> Result<JwkSet, Refusal> {
    let Some(keys) = value.get("keys").and_then(|k| k.as_array()) else {
        return Err(Refusal::new(format!("the {what} has no keys array")));
    };
    let mut usable = Vec::new();
    for key in keys.iter().take(MAX_JWKS_KEYS) {
        if ["d", "p", "q", "k"].iter().any(|m| key.get(m).is_some()) {
            return Err(Refusal::new(format!(
                "the {what} contains private or symmetric key material"
            )));
        }
        if let Ok(jwk) = serde_json::from_value::<Jwk>(key.clone())
            && key_algorithm(&jwk).is_some()
        {
            usable.push(jwk);
        }
    }
    if usable.is_empty() {
        return Err(Refusal::new(format!(
            "the {what} has no usable ES256, EdDSA or RS256 public key"
        )));
    }
    Ok(JwkSet { keys: usable })
}

/// The one algorithm a key verifies, if it is acceptable: P-256 → ES256, Ed25519 → EdDSA,
/// RSA of at least 2048 bits → RS256; a key whose `alg` or `use` says otherwise, none.
pub fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::RSA(rsa) => {
            let modulus = base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                rsa.n.trim_end_matches('='),
            )
            .ok()?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return None;
            }
            Algorithm::RS256
        }
        _ => return None,
    };
    if let Some(declared) = jwk.common.key_algorithm
        && declared.to_string() != format!("{algorithm:?}")
    {
        return None;
    }
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    Some(algorithm)
}

/// The freshness lifetime a `Cache-Control` value gives, in seconds: `max-age`, or 0 for
/// `no-store`/`no-cache`; `None` when it says neither (the caller then uses its default).
pub fn max_age(cache_control: &str) -> Option<u64> {
    let mut age = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(0);
        }
        if name.eq_ignore_ascii_case("max-age")
            && age.is_none()
            && let Some(seconds) = value.and_then(|v| v.parse::<u64>().ok())
        {
            age = Some(seconds);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_urls_are_https_urls() {
        assert!(is_document_url(
            "https://claude.ai/oauth/claude-code-client-metadata"
        ));
        assert!(is_document_url("HTTPS://claude.ai/x"));
        assert!(!is_document_url("Zm9vYmFyYmF6cXV4"));
        assert!(!is_document_url("http://claude.ai/x"));
        assert!(!is_document_url("https:"));
    }

    #[test]
    fn client_id_urls_follow_the_cimd_rules() {
        for good in [
            "https://claude.ai/oauth/mcp-oauth-client-metadata",
            "https://vscode.dev/oauth/client-metadata.json",
            "https://app.example:8443/client?v=2",
        ] {
            assert!(check_client_id_url(good).is_ok(), "{good}");
        }
        for bad in [
            "https://claude.ai",
            "https://claude.ai/",
            "http://claude.ai/client",
            "https://user@claude.ai/client",
            "https://claude.ai/client#x",
            "https://claude.ai/a/../client",
            "https://claude.ai/./client",
            "https://Claude.AI/client",
            "https://claude.ai:443/client",
            "https:///client",
            "not a url",
        ] {
            assert!(check_client_id_url(bad).is_err(), "{bad}");
        }
        assert!(check_client_id_url(&format!("https://a.example/{}", "x".repeat(3000))).is_err());
    }

    #[test]
    fn cache_control_lifetimes() {
        assert_eq!(max_age("public, max-age=3600"), Some(3600));
        assert_eq!(max_age("max-age=\"60\""), Some(60));
        assert_eq!(max_age("MAX-AGE=5, max-age=9"), Some(5));
        assert_eq!(max_age("no-cache"), Some(0));
        assert_eq!(max_age("max-age=600, no-store"), Some(0));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    fn allowlist() -> Vec<RedirectPattern> {
        [
            "http://localhost:*",
            "http://127.0.0.1:*",
            "https://claude.ai/api/mcp/auth_callback",
        ]
        .iter()
        .map(|p| RedirectPattern::parse(p))
        .collect()
    }

    const URL: &str = "https://claude.ai/oauth/claude-code-client-metadata";

    fn parse(doc: serde_json::Value) -> Result<ClientDocument, Refusal> {
        let url = check_client_id_url(URL).unwrap();
        parse_document(&url, doc.to_string().as_bytes(), &allowlist(), &[])
    }

    #[test]
    fn a_public_client_document_with_unknown_members_is_accepted() {
        let doc = parse(serde_json::json!({
            "client_id": URL,
            "client_name": "Claude Code",
            "redirect_uris": ["http://localhost/callback", "http://127.0.0.1:33418/"],
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "logo_uri": "https://claude.ai/logo.png",
            "software_statement": {"nested": true}
        }))
        .unwrap();
        assert_eq!(doc.client_id, URL);
        assert_eq!(doc.host, "claude.ai");
        assert_eq!(doc.client_name, "Claude Code");
        assert_eq!(doc.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(doc.auth, DocumentAuth::None);
    }

    #[test]
    fn every_document_rule_refuses_with_a_reason() {
        let base =
            serde_json::json!({"client_id": URL, "redirect_uris": ["http://localhost/callback"]});
        let with = |key: &str, value: serde_json::Value| {
            let mut doc = base.clone();
            doc[key] = value;
            doc
        };
        let cases = [
            (
                with("client_id", "https://claude.ai/other".into()),
                "is not its URL",
            ),
            (
                serde_json::json!({"redirect_uris": ["http://localhost/callback"]}),
                "no client_id",
            ),
            (
                with("redirect_uris", serde_json::json!([])),
                "no redirect_uris",
            ),
            (
                with("redirect_uris", serde_json::json!(["javascript:alert(1)"])),
                "redirect_uri rejected",
            ),
            (
                with(
                    "redirect_uris",
                    serde_json::json!(["https://evil.example/cb"]),
                ),
                "redirectUriAllowlist",
            ),
            (
                with(
                    "redirect_uris",
                    serde_json::json!("http://localhost/callback"),
                ),
                "not valid",
            ),
            (
                with("token_endpoint_auth_method", "client_secret_basic".into()),
                "is not accepted",
            ),
            (
                with("token_endpoint_auth_method", "private_key_jwt".into()),
                "needs jwks or jwks_uri",
            ),
            (
                with(
                    "grant_types",
                    serde_json::json!(["urn:ietf:params:oauth:grant-type:device_code"]),
                ),
                "authorization_code",
            ),
            (
                with("response_types", serde_json::json!(["token"])),
                "response_types",
            ),
        ];
        for (doc, expected) in cases {
            let why = parse(doc.clone()).unwrap_err().0;
            assert!(why.contains(expected), "{doc}: {why}");
        }
        let url = check_client_id_url(URL).unwrap();
        for (body, expected) in [
            (&b"[1,2]"[..], "not a JSON object"),
            (b"not json", "not a JSON object"),
            (b"{\"client_id\": 1", "not valid"),
        ] {
            let why = parse_document(&url, body, &allowlist(), &[]).unwrap_err().0;
            assert!(why.contains(expected), "{why}");
        }
        let repeated = format!(
            r#"{{"client_id": "{URL}", "client_id": "{URL}", "redirect_uris": ["http://localhost/callback"]}}"#
        );
        assert!(parse_document(&url, repeated.as_bytes(), &allowlist(), &[]).is_err());
    }

    #[test]
    fn private_key_jwt_needs_usable_public_keys() {
        let ec = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"});
        let doc = |jwks: serde_json::Value| {
            serde_json::json!({"client_id": URL, "redirect_uris": ["http://localhost/callback"],
                "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks})
        };
        let ok = parse(doc(serde_json::json!({"keys": [ec, {"kty": "unknown"}]}))).unwrap();
        let DocumentAuth::PrivateKeyJwt(KeySource::Inline(set)) = ok.auth else {
            panic!("inline keys")
        };
        assert_eq!(set.keys.len(), 1);

        let mut private = ec.clone();
        private["d"] = "secret".into();
        for (jwks, expected) in [
            (
                serde_json::json!({"keys": [private]}),
                "private or symmetric",
            ),
            (
                serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
                "private or symmetric",
            ),
            (serde_json::json!({"keys": []}), "no usable"),
            (
                serde_json::json!({"keys": [{"kty": "EC", "crv": "P-384", "x": "a", "y": "b"}]}),
                "no usable",
            ),
            (serde_json::json!([]), "no keys array"),
        ] {
            let why = parse(doc(jwks)).unwrap_err().0;
            assert!(why.contains(expected), "{why}");
        }
        let mut both = doc(serde_json::json!({"keys": [ec]}));
        both["jwks_uri"] = "https://claude.ai/jwks.json".into();
        assert!(
            parse(both)
                .unwrap_err()
                .0
                .contains("both jwks and jwks_uri")
        );
    }
}
