//! Dynamic client registration (RFC 7591) and the rules shared with `clients add`.
//!
//! Everything a registration stores is bounded, since anyone may register: at most
//! [`MAX_REDIRECT_URIS`] redirect URIs of at most [`redirect::MAX_REDIRECT_URI_LEN`] bytes,
//! a `scope` of at most [`MAX_SCOPE_BYTES`] bytes and [`MAX_SCOPE_TOKENS`] values, a
//! `client_name` of at most [`MAX_CLIENT_NAME`] characters, and grant and response types
//! from a fixed set, each kept once.

use serde::{Deserialize, Serialize};

use super::OAuthError;
use super::redirect::{self, MAX_REDIRECT_URIS, RedirectPattern};
use super::scope::Scope;
use crate::secrets::{random_token, sha256_b64};
use crate::store::{ApplicationType, AuthMethod, Client, Registration};

/// The longest `client_name` kept, in characters.
pub const MAX_CLIENT_NAME: usize = 100;

/// The longest registered `scope` kept, in bytes; the limit on a requested scope (SPEC §16).
pub const MAX_SCOPE_BYTES: usize = 1024;

/// The most tokens a registered `scope` may hold (SPEC §16).
pub const MAX_SCOPE_TOKENS: usize = 64;

/// Grant types a client may register.
const SUPPORTED_GRANTS: &[&str] = &["authorization_code", "refresh_token"];

/// The registration request members mcp-authd reads; all others are ignored (RFC 7591 §2).
#[derive(Debug, Default, Deserialize)]
pub struct RegistrationRequest {
    /// Where codes may be sent.
    pub redirect_uris: Option<Vec<String>>,
    /// `none`, `client_secret_post` or `client_secret_basic`; absent means `none` (SPEC §6).
    pub token_endpoint_auth_method: Option<String>,
    /// Requested grant types.
    pub grant_types: Option<Vec<String>>,
    /// Requested response types.
    pub response_types: Option<Vec<String>>,
    /// Display name.
    pub client_name: Option<String>,
    /// Default scope.
    pub scope: Option<String>,
    /// `native` or `web` (SEP-837); inferred from the redirect URIs when absent.
    pub application_type: Option<String>,
}

/// The registration response (RFC 7591 §3.2.1); no member is ever `null`.
#[derive(Debug, Serialize)]
pub struct RegistrationResponse {
    /// The new client's id.
    pub client_id: String,
    /// The secret, for confidential clients only; shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// 0 (never) when a secret was issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
    /// When the client was registered.
    pub client_id_issued_at: u64,
    /// The display name kept.
    pub client_name: String,
    /// The redirect URIs registered.
    pub redirect_uris: Vec<String>,
    /// The token endpoint authentication method.
    pub token_endpoint_auth_method: &'static str,
    /// The grant types registered.
    pub grant_types: Vec<String>,
    /// The response types registered.
    pub response_types: Vec<String>,
    /// The default scope, when one was registered.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// `native` or `web`, as registered or inferred.
    pub application_type: &'static str,
}

/// A client ready to store, with its plaintext secret (to show once).
pub struct NewClient {
    /// The client as stored (secret hashed).
    pub client: Client,
    /// The secret, for confidential clients.
    pub secret: Option<String>,
}

impl NewClient {
    /// The RFC 7591 response for this client.
    pub fn response(&self) -> RegistrationResponse {
        let c = &self.client;
        RegistrationResponse {
            client_id: c.client_id.clone(),
            client_secret: self.secret.clone(),
            client_secret_expires_at: self.secret.as_ref().map(|_| 0),
            client_id_issued_at: c.client_id_issued_at,
            client_name: c.client_name.clone(),
            redirect_uris: c.redirect_uris.clone(),
            token_endpoint_auth_method: c.token_endpoint_auth_method.as_str(),
            grant_types: c.grant_types.clone(),
            response_types: c.response_types.clone(),
            scope: c.scope.clone(),
            application_type: c
                .application_type
                .unwrap_or_else(|| infer_application_type(&c.redirect_uris))
                .as_str(),
        }
    }
}

/// The `application_type` of a client that names none (SEP-837): `native` when any redirect
/// URI is an http loopback or private-use-scheme URI (an app on the user's device), else
/// `web`.
pub fn infer_application_type(redirect_uris: &[String]) -> ApplicationType {
    let on_device = redirect_uris.iter().any(|uri| match url::Url::parse(uri) {
        Ok(url) => match url.scheme() {
            "https" => false,
            "http" => matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")),
            _ => true,
        },
        Err(_) => false,
    });
    if on_device {
        ApplicationType::Native
    } else {
        ApplicationType::Web
    }
}

/// Checks the redirect URIs of a registration: syntax (always) and, for dynamic clients, the
/// operator's allowlist.
pub fn check_redirect_uris(
    uris: &[String],
    allowlist: Option<&[RedirectPattern]>,
) -> Result<(), OAuthError> {
    if uris.is_empty() {
        return Err(OAuthError::new(
            super::ErrorCode::InvalidRedirectUri,
            "redirect_uris must list at least one URI",
        ));
    }
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::new(
            super::ErrorCode::InvalidRedirectUri,
            format!("at most {MAX_REDIRECT_URIS} redirect_uris may be registered"),
        ));
    }
    for uri in uris {
        redirect::validate_for_registration(uri)
            .map_err(|why| OAuthError::redirect_uri_rejected(uri, why))?;
        if let Some(allowlist) = allowlist
            && !allowlist.iter().any(|p| p.allows(uri))
        {
            return Err(OAuthError::redirect_uri_rejected(
                uri,
                "not in the server's redirectUriAllowlist",
            ));
        }
    }
    Ok(())
}

/// Makes a display name safe to show: control and invisible characters (bidi controls,
/// zero-width characters: the set refused in user names) removed, whitespace collapsed,
/// length capped.
pub fn sanitize_client_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control() && !crate::proxy_trust::is_invisible(*c))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    cleaned.chars().take(MAX_CLIENT_NAME).collect()
}

/// Validates a dynamic registration and builds the client (SPEC §6 "Registration").
pub fn register_dynamic(
    request: RegistrationRequest,
    allowlist: &[RedirectPattern],
    scopes_supported: &[String],
    now: u64,
) -> Result<NewClient, OAuthError> {
    let redirect_uris = request.redirect_uris.unwrap_or_default();
    check_redirect_uris(&redirect_uris, Some(allowlist))?;

    let method = match request.token_endpoint_auth_method.as_deref() {
        None | Some("none") => AuthMethod::None,
        Some("client_secret_post") => AuthMethod::ClientSecretPost,
        Some("client_secret_basic") => AuthMethod::ClientSecretBasic,
        Some(other) => {
            return Err(OAuthError::invalid_client_metadata(format!(
                "token_endpoint_auth_method {} is not supported (use none, client_secret_post or client_secret_basic)",
                super::error::printable(other)
            )));
        }
    };

    let mut grant_types = request
        .grant_types
        .unwrap_or_else(|| SUPPORTED_GRANTS.iter().map(|g| g.to_string()).collect());
    if grant_types.is_empty()
        || !grant_types
            .iter()
            .all(|g| SUPPORTED_GRANTS.contains(&g.as_str()))
    {
        return Err(OAuthError::invalid_client_metadata(
            "grant_types may only contain authorization_code and refresh_token",
        ));
    }
    // Stored as a set: a list repeating a supported grant thousands of times is accepted
    // (each entry is valid) but kept once.
    let mut seen = Vec::with_capacity(SUPPORTED_GRANTS.len());
    grant_types.retain(|g| {
        let is_new = !seen.contains(g);
        if is_new {
            seen.push(g.clone());
        }
        is_new
    });
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(OAuthError::invalid_client_metadata(
            "grant_types must include authorization_code",
        ));
    }
    let response_types = request
        .response_types
        .unwrap_or_else(|| vec!["code".to_string()]);
    if response_types != ["code"] {
        return Err(OAuthError::invalid_client_metadata(
            "response_types must be [\"code\"]",
        ));
    }

    // Unknown scopes are dropped rather than refused: several clients register whatever they
    // guess (e.g. `openid email profile`) and would otherwise fail to register at all.
    let raw_scope = request.scope.as_deref().unwrap_or_default();
    if raw_scope.len() > MAX_SCOPE_BYTES {
        return Err(OAuthError::invalid_client_metadata(format!(
            "scope is longer than {MAX_SCOPE_BYTES} bytes"
        )));
    }
    if raw_scope.split(' ').filter(|t| !t.is_empty()).count() > MAX_SCOPE_TOKENS {
        return Err(OAuthError::invalid_client_metadata(format!(
            "scope holds more than {MAX_SCOPE_TOKENS} values"
        )));
    }
    let scope = Scope::parse(raw_scope)
        .without_offline_access()
        .retain_supported(scopes_supported);
    if scope.has_invalid_characters() {
        return Err(OAuthError::invalid_client_metadata(
            "scope contains characters RFC 6749 §3.3 forbids",
        ));
    }

    // A type the client names is kept as given: MCP clients on loopback say `native`, and
    // refusing a mismatch would only break a client that described itself loosely.
    let application_type = match request.application_type.as_deref() {
        None => infer_application_type(&redirect_uris),
        Some("native") => ApplicationType::Native,
        Some("web") => ApplicationType::Web,
        Some(other) => {
            return Err(OAuthError::invalid_client_metadata(format!(
                "application_type {} is not supported (use native or web)",
                super::error::printable(other)
            )));
        }
    };

    let client_name = match request.client_name.as_deref().map(sanitize_client_name) {
        Some(name) if !name.is_empty() => name,
        _ => "Unnamed MCP client".to_string(),
    };
    let mut new = build_client(
        client_name,
        redirect_uris,
        method,
        grant_types,
        response_types,
        scope.to_string(),
        Registration::Dynamic,
        now,
    );
    new.client.application_type = Some(application_type);
    Ok(new)
}

/// Builds a pre-provisioned confidential client (`mcp-authd clients add`).
pub fn provision(
    name: &str,
    redirect_uris: Vec<String>,
    now: u64,
) -> Result<NewClient, OAuthError> {
    check_redirect_uris(&redirect_uris, None)?;
    let client_name = sanitize_client_name(name);
    if client_name.is_empty() {
        return Err(OAuthError::invalid_client_metadata(
            "--name must not be empty",
        ));
    }
    let application_type = infer_application_type(&redirect_uris);
    let mut new = build_client(
        client_name,
        redirect_uris,
        AuthMethod::ClientSecretBasic,
        SUPPORTED_GRANTS.iter().map(|g| g.to_string()).collect(),
        vec!["code".to_string()],
        String::new(),
        Registration::Provisioned,
        now,
    );
    new.client.application_type = Some(application_type);
    Ok(new)
}

/// Builds a pre-provisioned client that can only call introspection and revocation (an MCP
/// server's credentials, `mcp-authd clients add --introspection-only`): confidential, with no
/// redirect URI, grant or response type, so authorization and the token endpoint refuse it.
pub fn provision_introspection_client(name: &str, now: u64) -> Result<NewClient, OAuthError> {
    let client_name = sanitize_client_name(name);
    if client_name.is_empty() {
        return Err(OAuthError::invalid_client_metadata(
            "--name must not be empty",
        ));
    }
    Ok(build_client(
        client_name,
        Vec::new(),
        AuthMethod::ClientSecretBasic,
        Vec::new(),
        Vec::new(),
        String::new(),
        Registration::Provisioned,
        now,
    ))
}

#[allow(clippy::too_many_arguments)] // A private constructor; every argument is a distinct field.
fn build_client(
    client_name: String,
    redirect_uris: Vec<String>,
    method: AuthMethod,
    grant_types: Vec<String>,
    response_types: Vec<String>,
    scope: String,
    registration: Registration,
    now: u64,
) -> NewClient {
    let secret = method.is_confidential().then(|| random_token(32));
    NewClient {
        client: Client {
            client_id: random_token(16),
            client_name,
            redirect_uris,
            token_endpoint_auth_method: method,
            grant_types,
            response_types,
            scope,
            secret_hash: secret.as_deref().map(|s| sha256_b64(s.as_bytes())),
            client_id_issued_at: now,
            registration,
            application_type: None,
        },
        secret,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow_all_https() -> Vec<RedirectPattern> {
        vec![
            RedirectPattern::parse("https://*"),
            RedirectPattern::parse("http://localhost:*"),
            RedirectPattern::parse("cursor://*"),
        ]
    }

    #[test]
    fn omitted_method_is_public_and_post_gets_a_secret() {
        let req = RegistrationRequest {
            redirect_uris: Some(vec!["http://localhost:3000/cb".into()]),
            ..Default::default()
        };
        let c = register_dynamic(req, &allow_all_https(), &[], 0).unwrap();
        assert_eq!(c.client.token_endpoint_auth_method, AuthMethod::None);
        assert!(c.secret.is_none() && c.client.secret_hash.is_none());

        let req = RegistrationRequest {
            redirect_uris: Some(vec!["https://claude.ai/api/mcp/auth_callback".into()]),
            token_endpoint_auth_method: Some("client_secret_post".into()),
            ..Default::default()
        };
        let c = register_dynamic(req, &allow_all_https(), &[], 0).unwrap();
        let body = serde_json::to_value(c.response()).unwrap();
        assert_eq!(body["client_secret_expires_at"], 0);
        assert!(body["client_secret"].is_string());
        assert_eq!(
            c.client.secret_hash,
            Some(sha256_b64(c.secret.unwrap().as_bytes()))
        );
    }

    #[test]
    fn uris_outside_the_allowlist_are_rejected_by_name() {
        let req = RegistrationRequest {
            redirect_uris: Some(vec!["http://127.0.0.1:9/cb".into()]),
            ..Default::default()
        };
        let e = register_dynamic(req, &allow_all_https(), &[], 0)
            .err()
            .unwrap();
        assert_eq!(e.code, super::super::ErrorCode::InvalidRedirectUri);
        assert!(
            e.description
                .starts_with("redirect_uri rejected: http://127.0.0.1:9/cb")
        );
    }

    #[test]
    fn application_type_is_kept_or_inferred_and_echoed() {
        let register = |uris: &[&str], declared: Option<&str>| {
            let req = RegistrationRequest {
                redirect_uris: Some(uris.iter().map(|u| u.to_string()).collect()),
                application_type: declared.map(str::to_string),
                ..Default::default()
            };
            register_dynamic(req, &allow_all_https(), &[], 0)
                .map(|c| serde_json::to_value(c.response()).unwrap()["application_type"].clone())
        };
        assert_eq!(
            register(&["http://localhost:3000/cb"], None).unwrap(),
            "native"
        );
        assert_eq!(
            register(&["cursor://anysphere.cursor-mcp/oauth/callback"], None).unwrap(),
            "native"
        );
        assert_eq!(
            register(&["https://claude.ai/api/mcp/auth_callback"], None).unwrap(),
            "web"
        );
        assert_eq!(
            register(
                &[
                    "https://claude.ai/api/mcp/auth_callback",
                    "http://localhost:1/cb"
                ],
                None
            )
            .unwrap(),
            "native"
        );
        assert_eq!(
            register(&["http://localhost:3000/cb"], Some("web")).unwrap(),
            "web"
        );
        assert_eq!(
            register(&["https://claude.ai/api/mcp/auth_callback"], Some("native")).unwrap(),
            "native"
        );
        let e = register(&["http://localhost:3000/cb"], Some("desktop")).unwrap_err();
        assert_eq!(e.code, super::super::ErrorCode::InvalidClientMetadata);
    }

    #[test]
    fn names_are_sanitised() {
        assert_eq!(
            sanitize_client_name("Claude\u{202E}  Code\n"),
            "Claude Code"
        );
        assert_eq!(
            sanitize_client_name(&"x".repeat(500)).len(),
            MAX_CLIENT_NAME
        );
    }

    #[test]
    fn unsupported_grants_and_response_types_are_refused() {
        let base = || RegistrationRequest {
            redirect_uris: Some(vec!["http://localhost:1/cb".into()]),
            ..Default::default()
        };
        let mut req = base();
        req.grant_types = Some(vec!["client_credentials".into()]);
        assert!(register_dynamic(req, &allow_all_https(), &[], 0).is_err());
        let mut req = base();
        req.response_types = Some(vec!["token".into()]);
        assert!(register_dynamic(req, &allow_all_https(), &[], 0).is_err());
        let mut req = base();
        req.token_endpoint_auth_method = Some("private_key_jwt".into());
        assert!(register_dynamic(req, &allow_all_https(), &[], 0).is_err());
    }
}
