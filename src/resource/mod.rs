//! The MCP server's side: accept exactly the right bearer tokens, and say who the caller is.
//!
//! An MCP server reads the same `servers.json` as mcp-authd and builds an [`Authenticator`]
//! from its `serverAuth` section. That section can name two kinds of credentials, tried in
//! order (first match wins):
//!
//! 1. `serverAuth.bearer`: static tokens for services and administrators, as
//!    `"subject": "${ENV_TOKEN}"` or `"subject": {"token": "${ENV_TOKEN}", "roles": [...],
//!    "groups": [...]}`; compared in constant time.
//! 2. `serverAuth.oauthAs`: access tokens issued by mcp-authd, verified locally (`typ: at+jwt`,
//!    `iss`, `aud`, `exp`/`nbf` with a 30 s leeway), optionally checked for revocation by
//!    introspection. The keys follow `oauthAs.signing`: under HS256 (the default) `jwtSecret`
//!    and `previousJwtSecrets`; under EdDSA or ES256 the public keys, fetched from
//!    `signing.jwksUrl` when it is set ([`JwksVerifier`]), else read from the key files
//!    (the public half of `privateKeyFile`, and `previousPublicKeyFiles`). Each key fixes its
//!    algorithm.
//!
//! `oauthAs` goes through the same typed parse as mcp-authd's own configuration
//! (`config::parse_resource_section`), so a wrongly typed or misspelt field is an error on both
//! sides; only the fields listed above are required here.
//!
//! Both yield an [`Identity`] with roles and groups, which `serverAuth.toolAccess` rules
//! ([`acl::ToolAccess`]) then filter `tools/list` and guard `tools/call` with.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::post, middleware::from_fn_with_state};
//! use mcp_authd::resource::{Authenticator, Identity, require_bearer};
//!
//! async fn mcp(identity: Identity) -> String {
//!     format!("hello {}", identity.subject)
//! }
//!
//! let auth = Arc::new(Authenticator::load("servers.json".as_ref()).unwrap());
//! let app: Router = Router::new()
//!     .route("/mcp", post(mcp))
//!     .layer(from_fn_with_state(auth, require_bearer));
//! ```

pub mod acl;
pub mod introspection;
pub mod jwks;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigErrors, MIN_SECRET_BYTES, Secret, resolve_secret};
use crate::jwt::{TokenExpectations, Verifier};
use crate::secrets::{constant_time_eq, sha256_b64};
use crate::signing::ResourceKeys;

pub use acl::{Policy, ToolAccess, ToolRule};
pub use introspection::IntrospectionCheck;
pub use jwks::JwksVerifier;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// Which provider recognised the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// An access token issued by mcp-authd.
    OAuth,
    /// A static token from `serverAuth.bearer`.
    StaticToken,
}

/// A verified caller, as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user (JWT `sub`) or the static token's subject.
    pub subject: String,
    /// The OAuth client, for access tokens.
    pub client_id: Option<String>,
    /// Granted scopes, for access tokens.
    pub scopes: Vec<String>,
    /// Groups (from the SSO proxy, or configured for a static token).
    pub groups: Vec<String>,
    /// Roles (`injectedRoles`, or configured for a static token).
    pub roles: Vec<String>,
    /// Which provider matched.
    pub source: IdentitySource,
}

impl Identity {
    /// Whether the caller holds `scope`. Static tokens are service credentials without OAuth
    /// scopes: they hold every scope and are restricted with `toolAccess` roles instead.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.source == IdentitySource::StaticToken || self.scopes.iter().any(|s| s == scope)
    }
}

/// A configured static token (only its hash is kept).
#[derive(Clone)]
struct StaticToken {
    subject: String,
    hash: String,
    roles: Vec<String>,
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawBearer {
    Token(String),
    Detailed {
        token: String,
        #[serde(default)]
        roles: Vec<String>,
        #[serde(default)]
        groups: Vec<String>,
    },
}

/// A refusal, with the challenge RFC 6750 §3 asks for.
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    challenge: String,
    description: &'static str,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(serde_json::json!({"error": self.error_code(), "error_description": self.description})),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&self.challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl Rejection {
    fn error_code(&self) -> &'static str {
        match self.status {
            StatusCode::FORBIDDEN => "insufficient_scope",
            StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
            _ => "invalid_token",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// Where the access-token keys come from.
#[derive(Debug)]
enum TokenCheck {
    /// Keys held locally: secrets or public keys from files.
    Local(Verifier),
    /// Public keys fetched from a JWKS URL.
    Remote(JwksVerifier),
}

/// The MCP server as one issuer's tokens name it (SPEC §11): that issuer, the resource URL
/// (the tokens' `aud`) and the URL of its RFC 9728 metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// The issuer (`issuerUrl`, or one of `additionalIssuers`).
    pub issuer: String,
    /// The resource URL (`resourceUrl`): the tokens' `aud`.
    pub resource: String,
    /// Where its protected resource metadata is, for the `resource_metadata` challenge.
    pub metadata_url: String,
}

/// Verifies bearer tokens for one MCP resource.
pub struct Authenticator {
    jwt: Option<TokenCheck>,
    statics: Vec<StaticToken>,
    /// The `toolAccess` rules.
    pub tool_access: ToolAccess,
    /// Every (issuer, resource) accepted, the primary first; empty without `oauthAs`.
    resources: Vec<ProtectedResource>,
    /// The primary's metadata URL (empty without `oauthAs`).
    resource_metadata: String,
    challenge_scope: String,
    introspection: Option<IntrospectionCheck>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("jwt", &self.jwt)
            .field("static_tokens", &self.statics.len())
            .field("resource_metadata", &self.resource_metadata)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Reads `serverAuth` from a `servers.json` file; relative key file paths are taken from
    /// its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::from_servers_json_in(&text, dir, |name| std::env::var(name).ok())
    }

    /// Parses `serverAuth` from the text of a `servers.json`; `env` resolves `${NAME}`.
    /// Relative key file paths are taken from the current directory.
    pub fn from_servers_json(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        Self::from_servers_json_in(text, Path::new("."), env)
    }

    /// Like [`Self::from_servers_json`], with relative key file paths taken from `base_dir`.
    pub fn from_servers_json_in(
        text: &str,
        base_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        let doc: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ConfigErrors(vec![format!("servers.json is not valid JSON: {e}")]))?;
        let section = doc
            .get("serverAuth")
            .ok_or_else(|| ConfigErrors(vec!["servers.json has no serverAuth section".into()]))?;
        let mut errors = Vec::new();

        let mut resources: Vec<ProtectedResource> = Vec::new();
        let mut scopes = Vec::new();
        let jwt = match section.get("oauthAs") {
            None => None,
            Some(oauth) => match crate::config::parse_resource_section(oauth, base_dir, &env) {
                Ok(read) => {
                    resources = read
                        .issuers
                        .iter()
                        .map(|(issuer, resource)| ProtectedResource {
                            metadata_url: protected_resource_metadata_url(resource),
                            issuer: issuer.clone(),
                            resource: resource.clone(),
                        })
                        .collect();
                    scopes = read.scopes_supported;
                    token_check(&read.issuers, read.keys, read.secrets, &mut errors)
                }
                Err(ConfigErrors(found)) => {
                    errors.extend(found);
                    None
                }
            },
        };

        let mut statics = Vec::new();
        if let Some(bearer) = section.get("bearer") {
            match serde_json::from_value::<BTreeMap<String, RawBearer>>(bearer.clone()) {
                Ok(entries) => {
                    for (subject, raw) in entries {
                        let (token, roles, groups) = match raw {
                            RawBearer::Token(token) => (token, Vec::new(), Vec::new()),
                            RawBearer::Detailed {
                                token,
                                roles,
                                groups,
                            } => (token, roles, groups),
                        };
                        let field = format!("serverAuth.bearer.{subject}");
                        match resolve_secret(&field, &token, &env) {
                            Ok(t) if t.len() >= MIN_SECRET_BYTES => statics.push(StaticToken {
                                subject,
                                hash: sha256_b64(t.as_bytes()),
                                roles,
                                groups,
                            }),
                            Ok(_) => errors.push(format!("{field} must be at least 32 bytes")),
                            Err(e) => errors.push(e),
                        }
                    }
                }
                Err(e) => errors.push(format!("serverAuth.bearer: {e}")),
            }
        }

        let tool_access = match section.get("toolAccess") {
            Some(rules) => serde_json::from_value(rules.clone()).unwrap_or_else(|e| {
                errors.push(format!("serverAuth.toolAccess: {e}"));
                ToolAccess::default()
            }),
            None => ToolAccess::default(),
        };
        if jwt.is_none() && statics.is_empty() && errors.is_empty() {
            errors
                .push("serverAuth needs oauthAs or bearer: no token could ever be accepted".into());
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let resource_metadata = resources
            .first()
            .map(|r| r.metadata_url.clone())
            .unwrap_or_default();
        // `offline_access` concerns the authorization server, never the resource challenge.
        let challenge_scope = scopes
            .iter()
            .filter(|s| *s != "offline_access")
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self {
            jwt,
            statics,
            tool_access,
            resources,
            resource_metadata,
            challenge_scope,
            introspection: None,
            clock: Arc::new(SystemClock),
        })
    }

    /// Also asks the authorization server whether each access token was revoked.
    pub fn with_introspection(mut self, check: IntrospectionCheck) -> Self {
        self.introspection = Some(check);
        self
    }

    /// Uses another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The access-token key ids accepted, the current one first (for a JWKS URL: those of
    /// the key set fetched last).
    pub fn key_ids(&self) -> Vec<String> {
        match &self.jwt {
            Some(TokenCheck::Local(verifier)) => verifier.key_ids(),
            Some(TokenCheck::Remote(jwks)) => jwks.key_ids(),
            None => Vec::new(),
        }
    }

    /// The URL of this resource's RFC 9728 metadata (for `resource_metadata`), as the
    /// primary issuer names it.
    pub fn resource_metadata_url(&self) -> &str {
        &self.resource_metadata
    }

    /// Every (issuer, resource) whose tokens are accepted, the primary first (SPEC §11:
    /// `issuerUrl` and `additionalIssuers`); empty without `oauthAs`.
    pub fn resources(&self) -> &[ProtectedResource] {
        &self.resources
    }

    /// The resource a request was addressed to: the one whose host (and port) is the
    /// request's `X-Forwarded-Host`, or else `Host`; the primary when none is. Only a
    /// configured resource can be chosen, so whoever sends the headers can at most pick
    /// another challenge or metadata document they could ask for directly; that is why the
    /// forwarded header is read here whatever the peer (the server does not know its
    /// proxies). `None` without `oauthAs`.
    pub fn resource_for(&self, headers: &HeaderMap) -> Option<&ProtectedResource> {
        let authority = crate::proxy_trust::request_authority(headers, true, None);
        authority
            .and_then(|authority| {
                self.resources
                    .iter()
                    .find(|r| crate::config::issuer::url_serves(&r.resource, authority))
            })
            .or_else(|| self.resources.first())
    }

    /// Identifies the caller from the `Authorization` header. A refusal's challenge names
    /// the metadata of the resource the request was addressed to ([`Self::resource_for`]).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Rejection> {
        let metadata = self
            .resource_for(headers)
            .map_or("", |r| r.metadata_url.as_str());
        let invalid_token = |description| self.invalid_token_at(metadata, description);
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(match headers.get(header::AUTHORIZATION) {
                None => self.challenge(
                    metadata,
                    StatusCode::UNAUTHORIZED,
                    None,
                    "a bearer token is required",
                ),
                Some(_) => invalid_token("send one Authorization header"),
            });
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid_token("use the Bearer scheme"))?;

        // Compare against every static token so the time taken does not say which matched.
        let presented = sha256_b64(token.as_bytes());
        let mut matched = None;
        for entry in &self.statics {
            if constant_time_eq(entry.hash.as_bytes(), presented.as_bytes()) {
                matched = Some(entry);
            }
        }
        if let Some(entry) = matched {
            return Ok(Identity {
                subject: entry.subject.clone(),
                client_id: None,
                scopes: Vec::new(),
                groups: entry.groups.clone(),
                roles: entry.roles.clone(),
                source: IdentitySource::StaticToken,
            });
        }

        let check = self
            .jwt
            .as_ref()
            .ok_or_else(|| invalid_token("unknown token"))?;
        let now = self.clock.now();
        let verified = match check {
            TokenCheck::Local(verifier) => verifier.verify_at(token, now),
            TokenCheck::Remote(jwks) => jwks.verify_at(token, now).await,
        };
        let claims = verified.map_err(|e| {
            tracing::info!(target: "audit", reason = %e, "bearer token refused");
            match e {
                // The token may be fine; the keys to tell are out of reach (fail closed).
                crate::jwt::VerifyError::KeysUnavailable => self.challenge(
                    metadata,
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the authorization server's signing keys cannot be fetched",
                ),
                crate::jwt::VerifyError::Expired => invalid_token("the access token expired"),
                _ => invalid_token("the access token is invalid"),
            }
        })?;
        if let Some(check) = &self.introspection {
            match check.is_active(token, &claims.jti, claims.exp, now).await {
                Ok(true) => {}
                Ok(false) => return Err(invalid_token("the access token was revoked")),
                Err(e) => {
                    tracing::error!("cannot check revocation: {e}");
                    return Err(self.challenge(
                        metadata,
                        StatusCode::SERVICE_UNAVAILABLE,
                        None,
                        "the authorization server cannot be reached to check the token",
                    ));
                }
            }
        }
        Ok(Identity {
            subject: claims.sub,
            client_id: Some(claims.client_id),
            scopes: claims
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            groups: claims.groups,
            roles: claims.roles,
            source: IdentitySource::OAuth,
        })
    }

    /// 403 `insufficient_scope` asking for `scope` (step-up, MCP 2025-11-25): one scope, or
    /// several separated by spaces. See [`Self::insufficient_scopes`].
    pub fn insufficient_scope(&self, scope: &str) -> Rejection {
        self.insufficient_scopes(&scope.split(' ').collect::<Vec<_>>())
    }

    /// 403 `insufficient_scope` listing every scope in `needed` in one challenge
    /// (`scope="a b"`, RFC 6750 §3.1), each once: the whole set the operation needs, not only
    /// what the token lacks, so that a client asking for what the challenge says gets all of
    /// it at once (MCP 2026-07-28; a client that unions it with its scopes, SEP-2350, does
    /// too).
    pub fn insufficient_scopes(&self, needed: &[&str]) -> Rejection {
        let mut scopes: Vec<String> = Vec::new();
        for scope in needed.iter().map(|s| quoted(s)) {
            if !scope.is_empty() && !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Rejection {
            status: StatusCode::FORBIDDEN,
            challenge: format!(
                r#"Bearer error="insufficient_scope", scope="{}", resource_metadata="{}""#,
                scopes.join(" "),
                self.resource_metadata
            ),
            description: "the access token lacks a scope this operation needs",
        }
    }

    /// `Ok` when `identity` holds every scope in `needed`; otherwise the 403 challenge that
    /// lists all of them ([`Self::insufficient_scopes`]).
    pub fn require_scopes(&self, identity: &Identity, needed: &[&str]) -> Result<(), Rejection> {
        if needed.iter().all(|scope| identity.has_scope(scope)) {
            Ok(())
        } else {
            Err(self.insufficient_scopes(needed))
        }
    }

    fn invalid_token_at(&self, metadata: &str, description: &'static str) -> Rejection {
        self.challenge(
            metadata,
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
            description,
        )
    }

    fn challenge(
        &self,
        metadata: &str,
        status: StatusCode,
        error: Option<&str>,
        description: &'static str,
    ) -> Rejection {
        let mut challenge = format!(r#"Bearer resource_metadata="{metadata}""#);
        if !self.challenge_scope.is_empty() {
            challenge.push_str(&format!(r#", scope="{}""#, quoted(&self.challenge_scope)));
        }
        if let Some(error) = error {
            challenge.push_str(&format!(r#", error="{error}""#));
        }
        Rejection {
            status,
            challenge,
            description,
        }
    }
}

/// The verifier for the `issuers` (issuer, resource) pairs, the primary first: tokens of
/// every issuer are accepted, each for its own resource only. Under HS256 `secrets` holds the
/// current and previous secrets.
fn token_check(
    issuers: &[(String, String)],
    keys: ResourceKeys,
    secrets: Option<(Secret, Vec<Secret>)>,
    errors: &mut Vec<String>,
) -> Option<TokenCheck> {
    let ((issuer, audience), more) = issuers.split_first()?;
    match keys {
        ResourceKeys::Files(keys) => {
            let verifier = more.iter().fold(
                Verifier::with_public_keys(issuer, audience, &keys),
                |v, (issuer, resource)| v.with_additional_issuer(issuer, resource),
            );
            Some(TokenCheck::Local(verifier.with_leeway(LEEWAY_SECONDS)))
        }
        ResourceKeys::Jwks(url) => match JwksVerifier::new(&url, issuer, audience) {
            Ok(v) => {
                let v = more.iter().fold(v, |v, (issuer, resource)| {
                    v.with_additional_issuer(issuer, resource)
                });
                Some(TokenCheck::Remote(v.with_leeway(LEEWAY_SECONDS)))
            }
            Err(e) => {
                errors.push(e);
                None
            }
        },
        ResourceKeys::Secret => {
            let (secret, previous) = secrets?;
            let expect = TokenExpectations {
                issuer: issuer.clone(),
                audience: audience.clone(),
                secret: secret.expose().to_vec(),
                leeway_seconds: LEEWAY_SECONDS,
            };
            let previous = previous.iter().map(|s| s.expose().to_vec());
            let verifier = more.iter().fold(
                Verifier::new(&expect).with_previous_secrets(previous),
                |v, (issuer, resource)| v.with_additional_issuer(issuer, resource),
            );
            Some(TokenCheck::Local(verifier))
        }
    }
}

/// Strips characters that cannot appear in a quoted-string challenge parameter.
fn quoted(value: &str) -> String {
    value
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// `https://host/.well-known/oauth-protected-resource/mcp` for `https://host/mcp` (RFC 9728
/// §3.1): same origin as the resource, so clients that refuse cross-origin metadata accept it.
pub fn protected_resource_metadata_url(resource: &str) -> String {
    match url::Url::parse(resource) {
        Ok(url) => {
            let path = url.path().trim_end_matches('/');
            let origin = url.origin().ascii_serialization();
            format!("{origin}/.well-known/oauth-protected-resource{path}")
        }
        Err(_) => String::new(),
    }
}

/// axum middleware: lets requests with an accepted bearer token through, with the [`Identity`]
/// in the request extensions; answers everything else with 401 and the challenge.
pub async fn require_bearer(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    match auth.authenticate(request.headers()).await {
        Ok(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(rejection) => rejection.into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Identity>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "the route is not behind require_bearer",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const ADMIN: &str = "admin-token-admin-token-admin-token-00";

    fn auth() -> Authenticator {
        let doc = serde_json::json!({"serverAuth": {
            "oauthAs": {"issuerUrl": "https://as.example", "jwtSecret": SECRET, "scopesSupported": ["mcp:tools", "offline_access"]},
            "bearer": {"ops-bot": "${OPS}", "admin": {"token": ADMIN, "roles": ["admin"]}},
            "toolAccess": [{"roles": ["admin"], "tools": ["*"], "policy": "allow"}]
        }});
        Authenticator::from_servers_json(&doc.to_string(), |n| (n == "OPS").then(|| "o".repeat(40)))
            .unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn static_tokens_yield_their_roles() {
        let identity = auth().authenticate(&bearer(ADMIN)).await.unwrap();
        assert_eq!(identity.subject, "admin");
        assert_eq!(identity.roles, vec!["admin"]);
        assert_eq!(identity.source, IdentitySource::StaticToken);
        let ops = auth().authenticate(&bearer(&"o".repeat(40))).await.unwrap();
        assert_eq!(ops.subject, "ops-bot");
    }

    #[tokio::test]
    async fn missing_and_unknown_tokens_get_the_challenge() {
        let auth = auth();
        let missing = auth.authenticate(&HeaderMap::new()).await.unwrap_err();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.challenge,
            r#"Bearer resource_metadata="https://as.example/.well-known/oauth-protected-resource/mcp", scope="mcp:tools""#
        );
        let unknown = auth.authenticate(&bearer("nope")).await.unwrap_err();
        assert!(unknown.challenge.ends_with(r#"error="invalid_token""#));
    }

    #[test]
    fn insufficient_scope_lists_every_needed_scope_in_one_challenge() {
        let auth = auth();
        let user = Identity {
            subject: "alice".into(),
            client_id: Some("c".into()),
            scopes: vec!["mcp:tools".into(), "mcp:admin".into()],
            groups: vec![],
            roles: vec![],
            source: IdentitySource::OAuth,
        };
        assert!(
            auth.require_scopes(&user, &["mcp:tools", "mcp:admin"])
                .is_ok()
        );
        let refused = auth
            .require_scopes(&user, &["mcp:admin", "mcp:audit", "mcp:admin"])
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            refused.challenge,
            r#"Bearer error="insufficient_scope", scope="mcp:admin mcp:audit", resource_metadata="https://as.example/.well-known/oauth-protected-resource/mcp""#
        );
        assert_eq!(
            auth.insufficient_scope("mcp:admin  mcp:audit").challenge,
            refused.challenge
        );
    }

    #[test]
    fn short_static_tokens_and_empty_sections_are_refused() {
        let doc = serde_json::json!({"serverAuth": {"bearer": {"x": "short"}}});
        let errors = Authenticator::from_servers_json(&doc.to_string(), |_| None)
            .unwrap_err()
            .0;
        assert_eq!(
            errors,
            vec!["serverAuth.bearer.x must be at least 32 bytes".to_string()]
        );
        let doc = serde_json::json!({"serverAuth": {}});
        assert!(Authenticator::from_servers_json(&doc.to_string(), |_| None).is_err());
    }

    #[test]
    fn oauth_as_is_typed_as_for_the_authorization_server() {
        const PREVIOUS: &str = "fedcba9876543210fedcba9876543210";
        let parse = |oauth_as: serde_json::Value| {
            let doc = serde_json::json!({"serverAuth": {"oauthAs": oauth_as}});
            Authenticator::from_servers_json(&doc.to_string(), |_| None)
        };
        // Written as a list, the previous secret still verifies (its key id is accepted).
        let rotated = parse(serde_json::json!({
            "issuerUrl": "https://as.example", "jwtSecret": SECRET, "previousJwtSecrets": [PREVIOUS]
        }))
        .unwrap();
        assert_eq!(
            rotated.key_ids(),
            [
                crate::jwt::key_id(SECRET.as_bytes()),
                crate::jwt::key_id(PREVIOUS.as_bytes())
            ]
        );
        // Written as a string, it used to be dropped without a word, so tokens signed with
        // it were refused after the rotation; it is named now, as mcp-authd names it.
        for (oauth_as, error) in [
            (
                serde_json::json!({"issuerUrl": "https://as.example", "jwtSecret": SECRET, "previousJwtSecrets": PREVIOUS}),
                "oauthAs.previousJwtSecrets: expected a list",
            ),
            (
                serde_json::json!({"issuerUrl": "https://as.example", "jwtSecret": SECRET, "scopesSupported": "mcp:tools"}),
                "oauthAs.scopesSupported: expected a list",
            ),
            (
                serde_json::json!({"issuerUrl": 7, "jwtSecret": SECRET}),
                "oauthAs.issuerUrl: expected a string",
            ),
        ] {
            let errors = parse(oauth_as.clone()).unwrap_err().0;
            assert_eq!(errors, [error.to_string()], "{oauth_as}");
        }
        // A misspelt field is not ignored either.
        let errors = parse(serde_json::json!({
            "issuerUrl": "https://as.example", "jwtSecret": SECRET, "previousJwtSecret": [PREVIOUS]
        }))
        .unwrap_err()
        .0;
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("oauthAs: unknown field `previousJwtSecret`"),
            "{errors:?}"
        );
        // The fields only mcp-authd needs are not required here.
        assert!(
            parse(serde_json::json!({"issuerUrl": "https://as.example", "jwtSecret": SECRET}))
                .is_ok()
        );
        let errors = parse(serde_json::json!({"issuerUrl": "https://as.example"}))
            .unwrap_err()
            .0;
        assert_eq!(errors, ["serverAuth.oauthAs.jwtSecret is required"]);
    }

    #[test]
    fn metadata_url_is_same_origin_and_path_suffixed() {
        assert_eq!(
            protected_resource_metadata_url("https://mcp.example.com/mcp"),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            protected_resource_metadata_url("http://127.0.0.1:9000/"),
            "http://127.0.0.1:9000/.well-known/oauth-protected-resource"
        );
    }
}
