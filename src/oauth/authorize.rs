//! The authorization endpoint's rules (OAuth 2.1 §4.1.1, RFC 8252, RFC 8707, RFC 9207).
//!
//! Errors come in two kinds. Until the client and redirect URI are known to be good, nothing
//! may be sent to the redirect URI (an attacker chose it): those errors are pages. After that,
//! errors go back to the client by redirect, with `state` and `iss`.

use serde::{Deserialize, Serialize};

use super::params::Params;
use super::scope::Scope;
use super::{ErrorCode, OAuthError, Server, pkce, redirect, resource};
use crate::config::{ConsentMode, Issuer};
use crate::secrets::{random_token, sha256_b64};
use crate::store::{Client, CodeGrant, CodeLimitReached, Grant, Registration, StoreError};

/// A validated authorization request, before the user's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    /// The client.
    pub client_id: String,
    /// The redirect URI exactly as requested.
    pub redirect_uri: String,
    /// The client's `state`, echoed back exactly.
    pub state: Option<String>,
    /// The scope to grant, space-separated.
    pub scope: String,
    /// The resource (token audience).
    pub resource: String,
    /// The S256 PKCE challenge.
    pub code_challenge: String,
    /// The issuer the request was made to (SPEC §11): its code, and the consent form that
    /// leads to it, belong to that issuer. Empty in tickets sealed before issuers were
    /// recorded, which belong to the primary.
    #[serde(default)]
    pub issuer: String,
}

impl PendingAuthorization {
    /// The issuer the request was made to, or `primary` for a ticket that names none.
    pub fn issuer_or<'a>(&'a self, primary: &'a str) -> &'a str {
        if self.issuer.is_empty() {
            primary
        } else {
            &self.issuer
        }
    }
}

/// Why an authorization request failed, and where the answer goes.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown to the user as a page; never redirected.
    Page {
        /// HTTP status.
        status: u16,
        /// What went wrong, in words the user can act on.
        message: String,
    },
    /// Sent back to the client's (validated) redirect URI.
    Redirect {
        /// The validated redirect URI.
        redirect_uri: String,
        /// The client's `state`.
        state: Option<String>,
        /// The error.
        error: OAuthError,
    },
}

impl AuthorizeError {
    /// An error page.
    pub fn page(status: u16, message: impl Into<String>) -> Self {
        Self::Page {
            status,
            message: message.into(),
        }
    }
}

/// Before the client and redirect URI are known good nothing may be redirected, so a store
/// failure is a 503 page (SPEC §10: browser endpoints answer an error page).
impl From<StoreError> for AuthorizeError {
    fn from(error: StoreError) -> Self {
        tracing::error!("authorization request not served: {error}");
        Self::page(
            503,
            "The sign-in server cannot reach its state storage right now. Nothing was changed; try again in a moment.",
        )
    }
}

/// Validates an authorization request made to `issuer` and returns the client with the
/// pending authorization.
pub async fn validate(
    app: &Server,
    issuer: &Issuer,
    params: &Params,
) -> Result<(Client, PendingAuthorization), AuthorizeError> {
    let client_id = params
        .non_empty("client_id")
        .ok_or_else(|| AuthorizeError::page(400, "The request has no client_id."))?;
    let client = find_client(app, client_id).await?;
    let redirect_uri = params
        .non_empty("redirect_uri")
        .ok_or_else(|| AuthorizeError::page(400, "The request has no redirect_uri."))?;
    if !client
        .redirect_uris
        .iter()
        .any(|r| redirect::matches_registered(r, redirect_uri))
    {
        return Err(AuthorizeError::page(
            400,
            format!(
                "redirect_uri rejected: {} is not registered for this application.",
                super::error::printable(redirect_uri)
            ),
        ));
    }
    // A document may list a loopback URI without a port, which the allowlist accepted for
    // some port; the one requested must be allowed itself.
    if client.registration == Registration::MetadataDocument
        && !app
            .config
            .redirect_allowlist
            .iter()
            .any(|p| p.allows(redirect_uri))
    {
        return Err(AuthorizeError::page(
            400,
            format!(
                "redirect_uri rejected: {} is not in the server's redirectUriAllowlist.",
                super::error::printable(redirect_uri)
            ),
        ));
    }
    let state = params.get("state").map(str::to_string);
    let fail = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.to_string(),
        state: state.clone(),
        error,
    };

    match params.get("response_type") {
        Some("code") => {}
        None => {
            return Err(fail(OAuthError::invalid_request(
                "response_type is required and must be code",
            )));
        }
        Some(_) => {
            return Err(fail(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            )));
        }
    }
    pkce::validate_challenge(
        params.non_empty("code_challenge"),
        params.non_empty("code_challenge_method"),
    )
    .map_err(|why| fail(OAuthError::invalid_request(why)))?;

    // Bounded whether the client sent it or registered it: the scope is stored with the code
    // and the refresh family (SPEC §16). `offline_access` is accepted and ignored (SPEC §13):
    // a refresh token is issued anyway, so it is neither checked against scopesSupported, nor
    // granted, nor asked about.
    let scope = Scope::parse_bounded(params.get("scope").unwrap_or(&client.scope))
        .map_err(|why| fail(OAuthError::invalid_scope(why)))?
        .without_offline_access();
    if scope.has_invalid_characters() {
        return Err(fail(OAuthError::invalid_scope(
            "scope contains characters RFC 6749 §3.3 forbids",
        )));
    }
    if !scope.is_allowed_by(&app.config.scopes_supported) {
        return Err(fail(OAuthError::invalid_scope(format!(
            "scope must be a subset of: {}",
            app.config.scopes_supported.join(" ")
        ))));
    }

    if let Some(requested) = params.get("resource")
        && !resource::matches(requested, &issuer.resource)
    {
        return Err(fail(OAuthError::invalid_target(format!(
            "this server issues tokens only for {}",
            issuer.resource
        ))));
    }

    let pending = PendingAuthorization {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        state,
        scope: scope.to_string(),
        resource: issuer.resource.clone(),
        code_challenge: params.get("code_challenge").unwrap_or_default().to_string(),
        issuer: issuer.url.clone(),
    };
    Ok((client, pending))
}

/// The client named by an authorization request: a registered one, or the client a metadata
/// document describes (SPEC §12). Unknown, invalid or unreachable → an error page naming why.
async fn find_client(app: &Server, client_id: &str) -> Result<Client, AuthorizeError> {
    if super::documents::is_document_client(&app.config, client_id) {
        return match app
            .documents
            .document(&app.config, client_id, app.now())
            .await
        {
            Ok(document) => Ok(document.to_client()),
            Err(e) => Err(AuthorizeError::page(
                if e.is_unreachable() { 502 } else { 400 },
                format!(
                    "This application identifies itself with the client metadata document {}, which cannot be used: {e}.",
                    super::error::printable(client_id)
                ),
            )),
        };
    }
    app.store.client(client_id).await?.ok_or_else(|| {
        AuthorizeError::page(
            400,
            "This application is not registered with the sign-in server (unknown client_id). Reconnect it from the application so it can register again.",
        )
    })
}

/// Whether the user must approve this request first (SPEC §6 "Consent", §13 step-up): under
/// `dynamic`, every client that was not pre-provisioned (registered itself, or a metadata
/// document) needs a remembered consent (`approved`, the scopes the
/// user approved for it) that covers every scope `requested`.
pub fn needs_consent(
    mode: ConsentMode,
    client: &Client,
    approved: Option<&Scope>,
    requested: &Scope,
) -> bool {
    match mode {
        ConsentMode::Always => true,
        ConsentMode::Never => false,
        ConsentMode::Dynamic => {
            client.registration != Registration::Provisioned
                && !approved.is_some_and(|approved| requested.is_subset_of(approved))
        }
    }
}

/// Issues a code for an approved request, bound to the issuer the request was made to, and
/// returns the redirect URL carrying it (with that issuer's `iss`). When the
/// user or the server already holds as many outstanding codes as `maxPendingCodesPerUser` /
/// `maxPendingCodes` allow, no code is issued and the URL carries `temporarily_unavailable`
/// instead: the client and redirect URI are valid by then, so the answer goes to the client
/// (SPEC §16).
pub async fn issue_code(
    app: &Server,
    pending: &PendingAuthorization,
    sub: &str,
    groups: Vec<String>,
) -> String {
    let code = random_token(32);
    let now = app.now();
    let issuer = pending.issuer_or(&app.config.issuer);
    let code_hash = sha256_b64(code.as_bytes());
    let stored = app.store.insert_code(
        &code_hash,
        CodeGrant {
            grant: Grant {
                client_id: pending.client_id.clone(),
                sub: sub.to_string(),
                groups,
                scope: pending.scope.clone(),
                resource: pending.resource.clone(),
                // The primary's grants name no issuer: they stay the primary's when
                // `issuerUrl` changes, as sign-ins always have.
                issuer: if issuer == app.config.issuer {
                    String::new()
                } else {
                    issuer.to_string()
                },
            },
            redirect_uri: pending.redirect_uri.clone(),
            code_challenge: pending.code_challenge.clone(),
            expires_at: now.saturating_add(app.config.code_ttl),
        },
        app.code_limits(),
        now,
    );
    let stored = match stored.await {
        Ok(stored) => stored,
        // The client and its redirect URI are valid by now: the client is told.
        Err(e) => {
            return error_url(
                &pending.redirect_uri,
                &OAuthError::from(e),
                pending.state.as_deref(),
                issuer,
            );
        }
    };
    let description = match stored {
        Ok(()) => {
            tracing::info!(target: "audit", event = "code_issued", sub = %sub, client_id = %pending.client_id, issuer = %issuer, "authorization code issued");
            app.metrics.authorize_result("code");
            return response_url(
                &pending.redirect_uri,
                &[("code", &code)],
                pending.state.as_deref(),
                issuer,
            );
        }
        Err(CodeLimitReached::PerUser) => {
            tracing::warn!(target: "audit", sub = %sub, client_id = %pending.client_id, limit = app.config.max_pending_codes_per_user, "user holds the most unredeemed authorization codes allowed; no code issued");
            "this user has too many unfinished sign-ins; finish them or try again in a minute"
        }
        Err(CodeLimitReached::Total) => {
            tracing::warn!(target: "audit", limit = app.config.max_pending_codes, "the server holds the most unredeemed authorization codes allowed (maxPendingCodes); no code issued");
            "the server has too many unfinished sign-ins; try again in a minute"
        }
    };
    error_url(
        &pending.redirect_uri,
        &OAuthError::new(ErrorCode::TemporarilyUnavailable, description),
        pending.state.as_deref(),
        issuer,
    )
}

/// The redirect URL for an error.
pub fn error_url(
    redirect_uri: &str,
    error: &OAuthError,
    state: Option<&str>,
    issuer: &str,
) -> String {
    response_url(
        redirect_uri,
        &[
            ("error", error.code.as_str()),
            ("error_description", &error.description),
        ],
        state,
        issuer,
    )
}

/// Appends response parameters, `state` and `iss` (RFC 9207) to a redirect URI.
fn response_url(
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    state: Option<&str>,
    issuer: &str,
) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    if let Some(state) = state {
        query.append_pair("state", state);
    }
    query.append_pair("iss", issuer);
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{separator}{}", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_consent_covers_only_the_scopes_approved() {
        let client = |registration| Client {
            client_id: "c".into(),
            client_name: "c".into(),
            redirect_uris: vec![],
            token_endpoint_auth_method: crate::store::AuthMethod::None,
            grant_types: vec![],
            response_types: vec![],
            scope: String::new(),
            secret_hash: None,
            client_id_issued_at: 0,
            registration,
            application_type: None,
        };
        let dynamic = client(Registration::Dynamic);
        let approved = Scope::parse("read write");
        let ask = |approved: Option<&Scope>, requested: &str| {
            needs_consent(
                ConsentMode::Dynamic,
                &dynamic,
                approved,
                &Scope::parse(requested),
            )
        };
        assert!(ask(None, ""));
        assert!(!ask(Some(&approved), "write read"));
        assert!(!ask(Some(&approved), ""));
        assert!(ask(Some(&approved), "read admin"));
        assert!(ask(Some(&Scope::default()), "read"));
        assert!(!needs_consent(
            ConsentMode::Dynamic,
            &client(Registration::Provisioned),
            None,
            &Scope::parse("admin"),
        ));
    }

    #[test]
    fn response_parameters_are_appended_with_iss() {
        let url = response_url(
            "http://127.0.0.1:1/cb?x=1",
            &[("code", "c")],
            Some("a b&"),
            "https://as",
        );
        assert_eq!(
            url,
            "http://127.0.0.1:1/cb?x=1&code=c&state=a+b%26&iss=https%3A%2F%2Fas"
        );
        let url = error_url(
            "cursor://a/cb",
            &OAuthError::new(ErrorCode::AccessDenied, "no"),
            None,
            "https://as",
        );
        assert_eq!(
            url,
            "cursor://a/cb?error=access_denied&error_description=no&iss=https%3A%2F%2Fas"
        );
    }
}
