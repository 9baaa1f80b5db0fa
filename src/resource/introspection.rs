//! Revocation awareness for MCP servers: ask mcp-authd's introspection endpoint (RFC 7662)
//! whether a signature-valid access token is still active.
//!
//! JWTs are verified locally; introspection only adds "was it revoked?". Answers are cached
//! per token id: an active answer for `cache_seconds` (so a revocation takes effect within that
//! time), an inactive one until the token would have expired anyway. The client speaks plain
//! HTTP/1.1: point it at the authorization server's internal address (the same host or
//! cluster network), not through the public TLS endpoint. Each question is bounded in time
//! ([`DEFAULT_TIMEOUT`], connection included) and its answer in size ([`MAX_ANSWER_BYTES`]);
//! past either, there is no answer, and the token is refused with 503 (fail closed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::jwks::AbortOnDrop;

/// How long an "active" answer is trusted by default, in seconds.
pub const DEFAULT_CACHE_SECONDS: u64 = 30;

/// How long one introspection may take by default, connecting included: an authorization
/// server on the internal network answers in milliseconds, and every request waiting on it
/// is held meanwhile.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest answer read, in bytes. An answer describes one access token (at most
/// [`crate::jwt::MAX_TOKEN_LEN`] bytes encoded), so anything larger is not mcp-authd's.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why introspection could not give an answer.
#[derive(Debug, thiserror::Error)]
#[error("introspection failed: {0}")]
pub struct IntrospectionError(String);

/// A client for the introspection endpoint with a small answer cache.
pub struct IntrospectionCheck {
    authority: String,
    path: String,
    authorization: String,
    cache_seconds: u64,
    timeout: Duration,
    cache: Mutex<HashMap<String, (bool, u64)>>,
}

impl std::fmt::Debug for IntrospectionCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionCheck")
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl IntrospectionCheck {
    /// A client for `endpoint` (an `http://host:port/path` URL), authenticating as the
    /// confidential client `client_id` / `client_secret` (create one with
    /// `mcp-authd clients add`).
    pub fn new(endpoint: &str, client_id: &str, client_secret: &str) -> Result<Self, String> {
        let url = url::Url::parse(endpoint)
            .map_err(|e| format!("introspection endpoint {endpoint:?}: {e}"))?;
        if url.scheme() != "http" {
            return Err("the introspection endpoint must be the authorization server's internal http:// address".into());
        }
        let host = url
            .host_str()
            .ok_or("the introspection endpoint has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials =
            STANDARD.encode(format!("{}:{}", encode(client_id), encode(client_secret)));
        Ok(Self {
            authority: format!("{host}:{port}"),
            path: url.path().to_string(),
            authorization: format!("Basic {credentials}"),
            cache_seconds: DEFAULT_CACHE_SECONDS,
            timeout: DEFAULT_TIMEOUT,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Changes how long an active answer is cached (0 asks every time).
    pub fn with_cache_seconds(mut self, seconds: u64) -> Self {
        self.cache_seconds = seconds;
        self
    }

    /// Changes how long one introspection may take, connecting included ([`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether the token (identified by `jti`, expiring at `exp`) is still active at `now`.
    pub async fn is_active(
        &self,
        token: &str,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Result<bool, IntrospectionError> {
        if let Some((active, until)) = self.cached(jti)
            && until > now
        {
            return Ok(active);
        }
        let active = self.ask(token).await?;
        let until = if active {
            now.saturating_add(self.cache_seconds).min(exp)
        } else {
            exp
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            cache.retain(|_, (_, until)| *until > now);
        }
        cache.insert(jti.to_string(), (active, until));
        Ok(active)
    }

    fn cached(&self, jti: &str) -> Option<(bool, u64)> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(jti)
            .copied()
    }

    /// One question to the endpoint, given up after the timeout.
    async fn ask(&self, token: &str) -> Result<bool, IntrospectionError> {
        match tokio::time::timeout(self.timeout, self.ask_once(token)).await {
            Ok(answer) => answer,
            Err(_) => Err(IntrospectionError(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn ask_once(&self, token: &str) -> Result<bool, IntrospectionError> {
        let fail =
            |what: &str, e: &dyn std::fmt::Display| IntrospectionError(format!("{what}: {e}"));
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| fail("connect", &e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail("handshake", &e))?;
        // Aborted when this question ends or is given up (the timeout drops it), so no
        // connection to a server that stalls outlives it.
        let _connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let body = format!(
            "token={}&token_type_hint=access_token",
            url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        );
        let request = hyper::Request::post(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::AUTHORIZATION, &self.authorization)
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail("request", &e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail("send", &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(IntrospectionError(format!(
                "the authorization server answered {status}"
            )));
        }
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| fail(&format!("read (at most {MAX_ANSWER_BYTES} bytes)"), &e))?
            .to_bytes();
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| fail("parse", &e))?;
        Ok(answer.get("active") == Some(&serde_json::Value::Bool(true)))
    }
}
