//! Verification with public keys fetched from a JWKS URL (SPEC §14), for an MCP server that
//! does not have mcp-authd's key files.
//!
//! The key set is fetched on first use and cached. It is fetched again when a token names a
//! `kid` the cache lacks (a rotation: the new key is published before the first token signed
//! with it reaches anyone) and when the cached set is older than the refresh interval (so a
//! retired key stops verifying); in both cases at most once per [`MIN_REFETCH_SECONDS`], so
//! tokens with made-up key ids cannot make the verifier hammer the authorization server. A
//! failed fetch keeps the previous set.
//!
//! The keys decide the algorithm: each JWK's type and curve fix EdDSA or ES256, a token must
//! name exactly that one, and HMAC is never an option (RFC 8725 §3.1). `iss`, `aud`, `exp` and
//! `typ` are checked as for every token (see [`crate::jwt::Verifier`]).
//!
//! Like introspection, the client speaks plain HTTP/1.1: point it at the authorization
//! server's internal address. Each fetch is bounded in time ([`DEFAULT_TIMEOUT`]) and size
//! ([`MAX_JWKS_BYTES`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::jwt::{AccessTokenClaims, Verifier, VerifyError, parse_header};
use crate::signing::PublicKey;

/// How long a fetched key set is used before it is fetched again, by default, in seconds.
pub const DEFAULT_REFRESH_SECONDS: u64 = 300;

/// The least time between two fetches, in seconds, whatever the tokens say.
pub const MIN_REFETCH_SECONDS: u64 = 60;

/// The largest key set accepted, in bytes (a few keys take well under 2 KiB).
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// How long one fetch may take, connection included, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The algorithms a JWKS-backed verifier accepts: public-key ones only.
const ALLOWED: [jsonwebtoken::Algorithm; 2] = [
    jsonwebtoken::Algorithm::EdDSA,
    jsonwebtoken::Algorithm::ES256,
];

/// What the cache holds.
#[derive(Default)]
struct Cache {
    /// The verifier built from the last key set fetched, if any.
    verifier: Option<Arc<Verifier>>,
    /// When that set was fetched (seconds since the epoch).
    fetched_at: u64,
    /// When a fetch was last tried, successful or not.
    last_attempt: Option<u64>,
    /// Whether that try failed.
    last_failed: bool,
}

/// A verifier of `keys` for every pair of `accepted` (never empty: [`JwksVerifier::new`]
/// puts one in).
fn public_key_verifier(accepted: &[(String, String)], keys: &[PublicKey]) -> Verifier {
    let (first, more) = match accepted.split_first() {
        Some((first, more)) => (first.clone(), more),
        None => ((String::new(), String::new()), accepted),
    };
    more.iter().fold(
        Verifier::with_public_keys(&first.0, &first.1, keys),
        |verifier, (issuer, audience)| verifier.with_additional_issuer(issuer, audience),
    )
}

/// Verifies access tokens with the keys published at a JWKS URL.
pub struct JwksVerifier {
    url: String,
    authority: String,
    path: String,
    /// The accepted (issuer, audience) pairs (see [`Verifier::with_additional_issuer`]).
    accepted: Vec<(String, String)>,
    leeway_seconds: u64,
    refresh_seconds: u64,
    timeout: Duration,
    cache: Mutex<Cache>,
    /// Held while fetching, so concurrent requests with a new `kid` wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("url", &self.url)
            .field("accepted", &self.accepted)
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

impl JwksVerifier {
    /// A verifier for tokens of `issuer` meant for `audience`, with the keys at `jwks_url` (an
    /// `http://host:port/path` URL, e.g. `http://127.0.0.1:8080/.well-known/jwks.json`). No
    /// leeway: see [`Self::with_leeway`]. Nothing is fetched until the first token.
    pub fn new(jwks_url: &str, issuer: &str, audience: &str) -> Result<Self, String> {
        crate::signing::check_jwks_url(jwks_url)?;
        let url = url::Url::parse(jwks_url).map_err(|e| format!("jwksUrl {jwks_url:?}: {e}"))?;
        let host = url.host_str().ok_or("the JWKS URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        Ok(Self {
            url: jwks_url.to_string(),
            authority: format!("{host}:{port}"),
            path,
            accepted: vec![(issuer.to_string(), audience.to_string())],
            leeway_seconds: 0,
            refresh_seconds: DEFAULT_REFRESH_SECONDS,
            timeout: DEFAULT_TIMEOUT,
            cache: Mutex::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// Tolerates this much clock skew on `exp` and `nbf`, in seconds.
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.leeway_seconds = seconds;
        self
    }

    /// Also accepts tokens of `issuer` meant for `audience` (an entry of `additionalIssuers`,
    /// SPEC §11), verified with the same keys.
    pub fn with_additional_issuer(mut self, issuer: &str, audience: &str) -> Self {
        let pair = (issuer.to_string(), audience.to_string());
        if !self.accepted.contains(&pair) {
            self.accepted.push(pair);
        }
        self
    }

    /// Uses a fetched key set for this long before fetching it again (at least
    /// [`MIN_REFETCH_SECONDS`] apart all the same).
    pub fn with_refresh_seconds(mut self, seconds: u64) -> Self {
        self.refresh_seconds = seconds;
        self
    }

    /// Gives up on a fetch after this long.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key ids of the cached key set (empty before the first fetch).
    pub fn key_ids(&self) -> Vec<String> {
        self.cached().map(|v| v.key_ids()).unwrap_or_default()
    }

    /// Verifies `token` against the system clock and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<AccessTokenClaims, VerifyError> {
        self.verify_at(token, crate::clock::Clock::now(&crate::clock::SystemClock))
            .await
    }

    /// Verifies `token` as of `now` (seconds since the epoch), fetching the key set first if
    /// the token's `kid` is not in the cache or the cache is due for a refresh (and the last
    /// fetch is at least [`MIN_REFETCH_SECONDS`] old).
    pub async fn verify_at(&self, token: &str, now: u64) -> Result<AccessTokenClaims, VerifyError> {
        let header = parse_header(token)?;
        // Refused before any fetch: no key set could make these acceptable.
        if !ALLOWED.contains(&header.alg) {
            return Err(VerifyError::Algorithm);
        }
        let kid = header.kid.as_deref();
        if let Some(verifier) = self.usable(kid, now, false) {
            return verifier.verify_at(token, now);
        }
        let known = self.usable(kid, now, true);
        // A due refresh for a key already held need not make this request wait: if another
        // request is fetching, the current set serves.
        let guard = match (&known, self.fetching.try_lock()) {
            (_, Ok(guard)) => guard,
            (Some(verifier), Err(_)) => return verifier.verify_at(token, now),
            (None, Err(_)) => self.fetching.lock().await,
        };
        // Another request may have fetched while this one waited.
        if let Some(verifier) = self.usable(kid, now, false) {
            return verifier.verify_at(token, now);
        }
        if self.may_fetch(now) {
            self.fetch_and_store(now).await;
        }
        drop(guard);
        match self.usable(kid, now, true) {
            Some(verifier) => verifier.verify_at(token, now),
            None if self.last_failed() => Err(VerifyError::KeysUnavailable),
            None => Err(VerifyError::UnknownKey),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self) -> Option<Arc<Verifier>> {
        self.lock().verifier.clone()
    }

    fn last_failed(&self) -> bool {
        self.lock().last_failed
    }

    /// The cached verifier if it holds the key `kid` names (any key when the token has no
    /// `kid`) and, unless `stale_ok`, is not due for a refresh.
    fn usable(&self, kid: Option<&str>, now: u64, stale_ok: bool) -> Option<Arc<Verifier>> {
        let cache = self.lock();
        let verifier = cache.verifier.as_ref()?;
        let fresh = now < cache.fetched_at.saturating_add(self.refresh_seconds);
        let holds = match kid {
            Some(kid) => verifier.has_key_id(kid),
            None => !verifier.key_ids().is_empty(),
        };
        (holds && (fresh || stale_ok)).then(|| verifier.clone())
    }

    fn may_fetch(&self, now: u64) -> bool {
        // A clock that went backwards does not block fetching until it catches up.
        self.lock()
            .last_attempt
            .is_none_or(|at| now < at || now - at >= MIN_REFETCH_SECONDS)
    }

    async fn fetch_and_store(&self, now: u64) {
        self.lock().last_attempt = Some(now);
        let fetched = match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        let mut cache = self.lock();
        match fetched {
            Ok(keys) => {
                let verifier =
                    public_key_verifier(&self.accepted, &keys).with_leeway(self.leeway_seconds);
                tracing::info!(url = %self.url, key_ids = ?verifier.key_ids(), "signing keys fetched");
                cache.verifier = Some(Arc::new(verifier));
                cache.fetched_at = now;
                cache.last_failed = false;
            }
            Err(e) => {
                tracing::warn!(url = %self.url, "cannot fetch the signing keys: {e}");
                cache.last_failed = true;
            }
        }
    }

    /// One GET of the key set, parsed into its usable keys.
    async fn fetch(&self) -> Result<Vec<PublicKey>, String> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.authority))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        // Aborted when this fetch ends or is dropped (a timeout), so no connection lingers.
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let request = hyper::Request::get(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        if status != hyper::StatusCode::OK {
            return Err(format!("the server answered {status}"));
        }
        let bytes = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("read (at most {MAX_JWKS_BYTES} bytes): {e}"))?
            .to_bytes();
        drop(connection);
        parse_key_set(&bytes)
    }
}

/// Aborts a spawned task when dropped (the connection task of a fetch or an introspection).
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The usable keys of a JWK Set: Ed25519 and P-256 signature keys. Other keys (RSA, other
/// curves, encryption keys) are skipped, so a set shared with other uses still works; a set
/// with none usable is an error.
pub fn parse_key_set(bytes: &[u8]) -> Result<Vec<PublicKey>, String> {
    let document: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON document: {e}"))?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWK Set (no \"keys\" array)")?;
    let usable: Vec<PublicKey> = keys
        .iter()
        .filter_map(|jwk| {
            PublicKey::from_jwk(jwk)
                .map_err(|e| tracing::debug!("skipping a JWK: {e}"))
                .ok()
        })
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "none of its {} keys is an EdDSA or ES256 signing key",
            keys.len()
        ));
    }
    Ok(usable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_https_free_absolute_urls_are_taken() {
        assert!(JwksVerifier::new("http://127.0.0.1:8080/.well-known/jwks.json", "i", "a").is_ok());
        for bad in [
            "https://as.example/jwks",
            "/jwks.json",
            "ftp://x/y",
            "http://",
        ] {
            assert!(JwksVerifier::new(bad, "i", "a").is_err(), "{bad}");
        }
    }

    #[test]
    fn key_sets_keep_the_usable_keys_only() {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let set = json!({"keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ed", "use": "sig"}
        ]});
        let keys = parse_key_set(set.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid(), "ed");
        for bad in [
            json!({"keys": []}),
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
            json!({"key": []}),
            json!([1]),
        ] {
            assert!(parse_key_set(bad.to_string().as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_key_set(b"not json").is_err());
    }
}
