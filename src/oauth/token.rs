//! The token endpoint's grants (OAuth 2.1 §4.1.3, §4.3) and the revocation rule (RFC 7009).

use serde::Serialize;

use super::params::Params;
use super::scope::Scope;
use super::{ErrorCode, OAuthError, pkce, refresh, resource};
use crate::app::AppState;
use crate::jwt::{AccessTokenClaims, MintError};
use crate::secrets::{random_token, sha256_b64};
use crate::store::{
    Client, Grant, RedeemOutcome, RefreshFamily, RefreshOutcome, Registration, RotationAnswer,
};

/// A successful token response (OAuth 2.1 §3.2.3).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// The JWT access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    /// The refresh token; always present.
    pub refresh_token: String,
    /// The granted scope, when there is one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// Runs the grant named by `grant_type` for an authenticated client.
pub async fn exchange(
    app: &AppState,
    client: &Client,
    form: &Params,
) -> Result<TokenResponse, OAuthError> {
    let grant_type = form
        .non_empty("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    if !client.grant_types.iter().any(|g| g == grant_type)
        && matches!(grant_type, "authorization_code" | "refresh_token")
    {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client did not register that grant type",
        ));
    }
    match grant_type {
        "authorization_code" => authorization_code(app, client, form).await,
        "refresh_token" => refresh_token(app, client, form).await,
        _ => Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "grant_type must be authorization_code or refresh_token",
        )),
    }
}

async fn authorization_code(
    app: &AppState,
    client: &Client,
    form: &Params,
) -> Result<TokenResponse, OAuthError> {
    let code = form
        .non_empty("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = form
        .non_empty("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let verifier = form
        .non_empty("code_verifier")
        .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
    let requested_resource = form.get("resource");

    let code_hash = sha256_b64(code.as_bytes());
    let (family_id, refresh_token) = refresh::new_family_token();
    let family_key = refresh::family_key(&family_id);
    let now = app.now();
    // Every check runs before the code is consumed, so a client that got one parameter wrong
    // can retry with the same code (RFC 9700 decision recorded in ARCHITECTURE.md).
    let check = |issued: &crate::store::CodeGrant| {
        if issued.grant.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if issued.redirect_uri != redirect_uri {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        if !pkce::verify_s256(verifier, &issued.code_challenge) {
            return Err(OAuthError::invalid_grant("PKCE verifier mismatch"));
        }
        if requested_resource.is_some_and(|r| !resource::matches(r, &issued.grant.resource)) {
            return Err(OAuthError::invalid_target(
                "resource differs from the authorization request",
            ));
        }
        Ok(())
    };
    let issued = match app.codes.redeem(&code_hash, now, &family_key, &check) {
        RedeemOutcome::Redeemed(issued) => issued,
        RedeemOutcome::Rejected(e) => return Err(e),
        RedeemOutcome::Invalid => {
            return Err(OAuthError::invalid_grant(
                "authorization code is invalid or expired",
            ));
        }
        RedeemOutcome::Replayed { family_key } => {
            app.store
                .revoke_family(&family_key)
                .await
                .map_err(|_| OAuthError::storage_unavailable())?;
            tracing::warn!(target: "audit", event = "code_replay_detected", client_id = %client.client_id, issuer = %app.config.issuer, sid = %family_key, "authorization code replayed; revoked the tokens it issued");
            app.metrics.code_replay_detected();
            return Err(OAuthError::invalid_grant(
                "authorization code already used; the tokens issued from it have been revoked",
            ));
        }
    };

    let family = RefreshFamily {
        grant: issued.grant.clone(),
        current_hash: refresh::hash(&refresh_token),
        previous_hash: None,
        rotated_at: None,
        created_at: now,
        expires_at: now.saturating_add(app.config.refresh_token_ttl),
        rotation_answer: None,
    };
    // Minted before the family is stored: a token that cannot be issued (too large) must not
    // leave a sign-in behind whose refresh token nobody holds.
    let access = RotationAnswer {
        iat: now,
        exp: now.saturating_add(app.config.access_token_ttl),
        scope: issued.grant.scope.clone(),
    };
    let response = respond(
        app,
        &issued.grant,
        &family_key,
        &access,
        random_token(16),
        refresh_token,
    )?;
    app.store
        .put_family(&family_key, family)
        .await
        .map_err(|_| OAuthError::storage_unavailable())?;
    if app.codes.was_replayed(&code_hash) {
        // A replay arrived while the family was being stored and could not revoke what did
        // not exist yet; revoke it now. This request was the legitimate first redemption, so it
        // still gets its answer: the refresh token in it is already dead.
        app.store
            .revoke_family(&family_key)
            .await
            .map_err(|_| OAuthError::storage_unavailable())?;
    }
    tracing::info!(target: "audit", event = "token_issued", sub = %issued.grant.sub, client_id = %client.client_id, issuer = %app.config.issuer, sid = %family_key, "tokens issued for an authorization code");
    app.metrics.token_issued("authorization_code");
    Ok(response)
}

async fn refresh_token(
    app: &AppState,
    client: &Client,
    form: &Params,
) -> Result<TokenResponse, OAuthError> {
    let presented = form
        .non_empty("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let invalid = || OAuthError::invalid_grant("refresh token is invalid, expired or revoked");
    let family_id = refresh::family_of(presented).ok_or_else(invalid)?;
    let family_key = refresh::family_key(family_id);
    let family = app.store.family(&family_key).await.ok_or_else(invalid)?;

    // Checks that must not consume the token.
    if family.grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let granted = Scope::parse(&family.grant.scope);
    let scope = match form.get("scope") {
        Some(raw) => {
            let requested = Scope::parse_bounded(raw)
                .map_err(OAuthError::invalid_scope)?
                .without_offline_access();
            if !requested.is_subset_of(&granted) {
                return Err(OAuthError::invalid_scope(
                    "a refresh may narrow the scope but never widen it",
                ));
            }
            if requested.is_empty() {
                granted
            } else {
                requested
            }
        }
        None => granted,
    };
    if form
        .get("resource")
        .is_some_and(|r| !resource::matches(r, &family.grant.resource))
    {
        return Err(OAuthError::invalid_target(
            "resource differs from the original authorization",
        ));
    }

    // Both halves of the answer are functions of the presented token, so a retry inside the
    // grace window gets the rotation's answer byte for byte (SPEC §17): the successor by its
    // keyed derivation, the access token by a `jti` derived the same way and the times and
    // scope the rotation recorded.
    let successor = refresh::successor_with(presented, family_id, &app.keys.refresh_successor_mac);
    let jti = refresh::access_token_id_with(presented, &app.keys.access_token_id_mac);
    let now = app.now();
    let rotation = RotationAnswer {
        iat: now,
        exp: now.saturating_add(app.config.access_token_ttl),
        scope: scope.to_string(),
    };
    let outcome = app
        .store
        .use_refresh_token(
            &family_key,
            &refresh::hash(presented),
            &refresh::hash(&successor),
            &rotation,
            now,
            app.config.refresh_token_ttl,
        )
        .await
        .map_err(|_| OAuthError::storage_unavailable())?;
    match outcome {
        RefreshOutcome::Rotated(grant) => {
            let response = respond(app, &grant, &family_key, &rotation, jti, successor)?;
            tracing::info!(target: "audit", event = "token_refreshed", sub = %grant.sub, client_id = %client.client_id, issuer = %app.config.issuer, sid = %family_key, "refresh token rotated");
            app.metrics.token_issued("refresh_token");
            Ok(response)
        }
        // A retry inside the grace window gets the rotation's own answer: nothing is issued.
        RefreshOutcome::Grace(grant, answered) => {
            respond(app, &grant, &family_key, &answered, jti, successor)
        }
        RefreshOutcome::Reused => {
            tracing::warn!(target: "audit", event = "refresh_reuse_detected", sub = %family.grant.sub, client_id = %client.client_id, issuer = %app.config.issuer, sid = %family_key, "refresh token reused; family revoked");
            app.metrics.refresh_reuse_detected();
            Err(OAuthError::invalid_grant(
                "refresh token was already used; all tokens of this sign-in have been revoked",
            ))
        }
        RefreshOutcome::Expired => Err(OAuthError::invalid_grant(
            "refresh token expired; sign in again",
        )),
        RefreshOutcome::Unknown => Err(invalid()),
    }
}

/// The token response for `grant`: an access token described by `access` with id `jti`, and
/// `refresh_token`. Everything else in the token comes from the grant and the configuration,
/// so the same inputs sign the same bytes.
fn respond(
    app: &AppState,
    grant: &Grant,
    family_key: &str,
    access: &RotationAnswer,
    jti: String,
    refresh_token: String,
) -> Result<TokenResponse, OAuthError> {
    let claims = AccessTokenClaims {
        iss: app.config.issuer.clone(),
        sub: grant.sub.clone(),
        aud: grant.resource.clone(),
        client_id: grant.client_id.clone(),
        scope: access.scope.clone(),
        groups: grant.groups.clone(),
        roles: app.config.injected_roles.clone(),
        iat: access.iat,
        exp: access.exp,
        jti,
        sid: Some(family_key.to_string()),
    };
    let access_token = app.signer.mint(&claims).map_err(|e| {
        // The error names sizes only, never the token or its claims.
        tracing::error!(client_id = %grant.client_id, "no access token issued: {e}");
        match e {
            MintError::TooLarge(_) => OAuthError::new(
                ErrorCode::ServerError,
                "the access token would be larger than resource servers accept; the administrator must reduce injectedRoles or the user's groups",
            ),
            MintError::Signing(_) => {
                OAuthError::new(ErrorCode::ServerError, "could not sign the access token")
            }
        }
    })?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: access.exp.saturating_sub(access.iat),
        refresh_token,
        scope: access.scope.clone(),
    })
}

/// Revokes a token presented by its own client (RFC 7009 §2.1): a refresh token's whole
/// family, or an access token, which goes on the deny-list until it expires. Unknown tokens and
/// other clients' tokens are ignored: the answer is the same, so revocation reveals nothing.
pub async fn revoke(app: &AppState, client: &Client, form: &Params) -> Result<(), OAuthError> {
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let now = app.now();
    if let Some(family_id) = refresh::family_of(token) {
        let family_key = refresh::family_key(family_id);
        if let Some(family) = app.store.family(&family_key).await
            && family.grant.client_id == client.client_id
            && refresh::decide(&family, &refresh::hash(token), now)
                != refresh::RefreshDecision::Reuse
        {
            app.store
                .revoke_family(&family_key)
                .await
                .map_err(|_| OAuthError::storage_unavailable())?;
            tracing::info!(target: "audit", event = "token_revoked", token_type = "refresh_token", client_id = %client.client_id, issuer = %app.config.issuer, "refresh token revoked by its client");
        }
        return Ok(());
    }
    if let Ok(claims) = app.verifier.verify_at(token, now)
        && claims.client_id == client.client_id
    {
        app.store
            .deny_access_token(&claims.jti, claims.exp)
            .await
            .map_err(|_| OAuthError::storage_unavailable())?;
        tracing::info!(target: "audit", event = "token_revoked", token_type = "access_token", client_id = %client.client_id, issuer = %app.config.issuer, "access token revoked by its client");
    }
    Ok(())
}

/// Token introspection (RFC 7662 §2.2): what an MCP server may learn about a token. Callers
/// must be confidential clients the operator added (`mcp-authd clients add`, SPEC §17): a
/// self-registered client, secret or not, is anyone on the internet and would learn every
/// user's `sub`, scope and sign-in liveness. An inactive token yields only `{"active": false}`.
pub async fn introspect(
    app: &AppState,
    client: &Client,
    form: &Params,
) -> Result<serde_json::Value, OAuthError> {
    if client.secret_hash.is_none() || client.registration != Registration::Provisioned {
        return Err(OAuthError::invalid_client(
            "introspection is answered only for confidential clients added by the operator (mcp-authd clients add)",
        ));
    }
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let now = app.now();
    let inactive = serde_json::json!({"active": false});
    if let Some(family_id) = refresh::family_of(token) {
        let Some(family) = app.store.family(&refresh::family_key(family_id)).await else {
            return Ok(inactive);
        };
        let is_live = matches!(
            refresh::decide(&family, &refresh::hash(token), now),
            refresh::RefreshDecision::Rotate | refresh::RefreshDecision::Grace
        );
        if !is_live {
            return Ok(inactive);
        }
        return Ok(serde_json::json!({
            "active": true,
            "token_type": "refresh_token",
            "client_id": family.grant.client_id,
            "sub": family.grant.sub,
            "scope": family.grant.scope,
            "aud": family.grant.resource,
            "iss": app.config.issuer,
            "iat": family.created_at,
            "exp": family.expires_at,
        }));
    }
    let Ok(claims) = app.verifier.verify_at(token, now) else {
        return Ok(inactive);
    };
    // Revoked by itself, or its sign-in is over: the refresh family it came from was revoked
    // (RFC 7009 §2.1: revoking a refresh token should end the access tokens of the same
    // grant), found reused, offboarded or removed with its client.
    let is_revoked = app.store.is_access_token_denied(&claims.jti).await
        || match &claims.sid {
            Some(key) => app.store.family(key).await.is_none(),
            None => false,
        };
    if is_revoked {
        return Ok(inactive);
    }
    Ok(serde_json::json!({
        "active": true,
        "token_type": "Bearer",
        "client_id": claims.client_id,
        "sub": claims.sub,
        "scope": claims.scope,
        "aud": claims.aud,
        "iss": claims.iss,
        "iat": claims.iat,
        "exp": claims.exp,
        "jti": claims.jti,
        "groups": claims.groups,
        "roles": claims.roles,
    }))
}
