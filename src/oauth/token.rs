//! The token endpoint's grants (OAuth 2.1 §4.1.3, §4.3) and the revocation rule (RFC 7009).

use serde::Serialize;

use super::params::Params;
use super::scope::Scope;
use super::token_request::TokenRequest;
use super::{ErrorCode, OAuthError, Server, pkce, refresh, resource};
use crate::config::Issuer;
use crate::jwt::{AccessTokenClaims, MintError};
use crate::secrets::{constant_time_eq, random_token, sha256_b64};
use crate::store::{
    Client, CodeGrant, CodeState, Exchange, Grant, RefreshFamily, Registration, Rotation,
    RotationAnswer,
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

/// Runs `request` for an authenticated client at the token endpoint of `issuer`, which takes
/// only the codes and refresh tokens issued under it (SPEC §11). `request` was read for this
/// client by [`TokenRequest::parse`], which refuses a grant the client may not use.
pub async fn exchange(
    app: &Server,
    issuer: &Issuer,
    client: &Client,
    request: TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    match request {
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
            resource,
        } => {
            authorization_code(
                app,
                issuer,
                client,
                &code,
                &redirect_uri,
                &code_verifier,
                resource.as_deref(),
            )
            .await
        }
        TokenRequest::RefreshToken {
            refresh_token: presented,
            scope,
            resource,
        } => {
            refresh_token(
                app,
                issuer,
                client,
                &presented,
                scope.as_deref(),
                resource.as_deref(),
            )
            .await
        }
    }
}

async fn authorization_code(
    app: &Server,
    issuer: &Issuer,
    client: &Client,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
    requested_resource: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let code_hash = sha256_b64(code.as_bytes());
    let now = app.now();
    let invalid = || OAuthError::invalid_grant("authorization code is invalid or expired");
    // Every check runs before the code is consumed, so a client that got one parameter wrong
    // can retry with the same code (RFC 9700 decision recorded in ARCHITECTURE.md).
    let check = |issued: &CodeGrant| {
        // Another issuer's code is refused like another client's: untouched if live, and
        // never a replay if spent (nothing is revoked on its account).
        if app.config.issuer_of(&issued.grant) != issuer.url {
            return Err(OAuthError::invalid_grant(
                "the code was issued by the sign-in server of another host",
            ));
        }
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
    let replayed = |family_key: &str| {
        tracing::warn!(target: "audit", event = "code_replay_detected", client_id = %client.client_id, issuer = %issuer.url, sid = %family_key, "authorization code replayed; revoked the tokens it issued");
        app.metrics.code_replay_detected();
        OAuthError::invalid_grant(
            "authorization code already used; the tokens issued from it have been revoked",
        )
    };
    let issued = match app.store.code(&code_hash, now).await?.ok_or_else(invalid)? {
        CodeState::Live(issued) => {
            check(&issued)?;
            issued
        }
        // Anyone may hold a spent code (browser history, callback logs); only its own client,
        // proving the same binding as the first redemption, may end what it issued.
        CodeState::Spent { code, .. } => {
            if check(&code).is_err() {
                return Err(invalid());
            }
            return match app.store.replay_code(&code_hash, now).await? {
                Some(family_key) => Err(replayed(&family_key)),
                None => Err(invalid()),
            };
        }
    };

    let (family_id, refresh_token) = refresh::new_family_token();
    let family_key = refresh::family_key(&family_id);
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
        issuer,
        &issued.grant,
        &family_key,
        &access,
        random_token(16),
        refresh_token,
    )?;
    // Consuming the code and storing the family are one step; a redemption that raced this
    // one and won makes this a replay by the code's own client.
    match app
        .store
        .exchange_code(&code_hash, now, &family_key, family)
        .await?
    {
        Exchange::Exchanged => {}
        Exchange::Replayed { family_key } => return Err(replayed(&family_key)),
        Exchange::Invalid => return Err(invalid()),
    }
    tracing::info!(target: "audit", event = "token_issued", sub = %issued.grant.sub, client_id = %client.client_id, issuer = %issuer.url, sid = %family_key, "tokens issued for an authorization code");
    app.metrics.token_issued("authorization_code");
    Ok(response)
}

/// How many times a refresh reads its family again after another request rotated it first.
/// One retry always settles it (the token is then the previous one, or reused); more means
/// the family changes under every read, and the request gives up.
const ROTATION_ATTEMPTS: usize = 4;

async fn refresh_token(
    app: &Server,
    issuer: &Issuer,
    client: &Client,
    presented: &str,
    requested_scope: Option<&str>,
    requested_resource: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let invalid = || OAuthError::invalid_grant("refresh token is invalid, expired or revoked");
    let family_id = refresh::family_of(presented).ok_or_else(invalid)?;
    let family_key = refresh::family_key(family_id);
    let presented_hash = refresh::hash(presented);
    let mut family = app.store.family(&family_key).await?.ok_or_else(invalid)?;

    // Checks that must not consume the token. Another issuer's token is not a reuse: it
    // stays live for the issuer it belongs to. The grant never changes, so they hold for
    // every read below.
    if app.config.issuer_of(&family.grant) != issuer.url {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued by the sign-in server of another host",
        ));
    }
    if family.grant.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let granted = Scope::parse(&family.grant.scope);
    let scope = match requested_scope {
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
    if requested_resource.is_some_and(|r| !resource::matches(r, &family.grant.resource)) {
        return Err(OAuthError::invalid_target(
            "resource differs from the original authorization",
        ));
    }

    // Both halves of the answer are functions of the presented token, so a retry inside the
    // grace window gets the rotation's answer byte for byte (SPEC §17): the successor by its
    // keyed derivation, the access token by a `jti` derived the same way and the times and
    // scope the rotation recorded.
    let now = app.now();
    let rotation = RotationAnswer {
        iat: now,
        exp: now.saturating_add(app.config.access_token_ttl),
        scope: scope.to_string(),
    };
    for _ in 0..ROTATION_ATTEMPTS {
        // The decision is taken here, once per read; the store only applies a rotation if
        // the family is still as read (compare-and-swap on the live hash).
        match refresh::decide(&family, &presented_hash, now) {
            refresh::RefreshDecision::Rotate => {
                let successor =
                    refresh::successor_with(presented, family_id, &app.keys.refresh_successor_mac);
                let rotated = app
                    .store
                    .rotate_family(
                        &family_key,
                        &presented_hash,
                        Rotation {
                            current_hash: refresh::hash(&successor),
                            previous_hash: presented_hash.clone(),
                            rotated_at: now,
                            expires_at: now.saturating_add(app.config.refresh_token_ttl),
                            answer: rotation.clone(),
                        },
                    )
                    .await?;
                if rotated {
                    let jti =
                        refresh::access_token_id_with(presented, &app.keys.access_token_id_mac);
                    let grant = &family.grant;
                    let response =
                        respond(app, issuer, grant, &family_key, &rotation, jti, successor)?;
                    tracing::info!(target: "audit", event = "token_refreshed", sub = %grant.sub, client_id = %client.client_id, issuer = %issuer.url, sid = %family_key, "refresh token rotated");
                    app.metrics.token_issued("refresh_token");
                    return Ok(response);
                }
                // Another request rotated (or revoked) it first: read it again and decide
                // again; this token is now the previous one, or gone.
                family = app.store.family(&family_key).await?.ok_or_else(invalid)?;
            }
            // A retry inside the grace window gets the rotation's own answer: nothing is
            // issued. The successor handed out again must be the live one: derived with the
            // current key, or, for a rotation made before a `jwtSecret` change, with a
            // previous one (the retry then gets the rotation's own successor and `jti`; its
            // access token is signed with the current key).
            refresh::RefreshDecision::Grace => {
                let Some((successor, key)) = app.all_keys().find_map(|key| {
                    let successor =
                        refresh::successor(presented, family_id, &key.refresh_successor);
                    constant_time_eq(
                        refresh::hash(&successor).as_bytes(),
                        family.current_hash.as_bytes(),
                    )
                    .then_some((successor, key))
                }) else {
                    return Err(invalid());
                };
                let jti = refresh::access_token_id(presented, &key.access_token_id);
                let answered = family
                    .rotation_answer
                    .clone()
                    .unwrap_or_else(|| refresh::answer_before_recording(&family, &rotation));
                return respond(
                    app,
                    issuer,
                    &family.grant,
                    &family_key,
                    &answered,
                    jti,
                    successor,
                );
            }
            refresh::RefreshDecision::Reuse => {
                app.store.revoke_family(&family_key).await?;
                tracing::warn!(target: "audit", event = "refresh_reuse_detected", sub = %family.grant.sub, client_id = %client.client_id, issuer = %issuer.url, sid = %family_key, "refresh token reused; family revoked");
                app.metrics.refresh_reuse_detected();
                return Err(OAuthError::invalid_grant(
                    "refresh token was already used; all tokens of this sign-in have been revoked",
                ));
            }
            refresh::RefreshDecision::Expired => {
                return Err(OAuthError::invalid_grant(
                    "refresh token expired; sign in again",
                ));
            }
        }
    }
    Err(OAuthError::storage_unavailable())
}

/// The token response for `grant`: an access token of `issuer` described by `access` with id
/// `jti`, and `refresh_token`. Everything else in the token comes from the grant and the
/// configuration, so the same inputs sign the same bytes.
fn respond(
    app: &Server,
    issuer: &Issuer,
    grant: &Grant,
    family_key: &str,
    access: &RotationAnswer,
    jti: String,
    refresh_token: String,
) -> Result<TokenResponse, OAuthError> {
    let claims = AccessTokenClaims {
        iss: issuer.url.clone(),
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
pub async fn revoke(app: &Server, client: &Client, form: &Params) -> Result<(), OAuthError> {
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let now = app.now();
    if let Some(family_id) = refresh::family_of(token) {
        let family_key = refresh::family_key(family_id);
        if let Some(family) = app.store.family(&family_key).await?
            && family.grant.client_id == client.client_id
            && refresh::decide(&family, &refresh::hash(token), now)
                != refresh::RefreshDecision::Reuse
        {
            app.store.revoke_family(&family_key).await?;
            tracing::info!(target: "audit", event = "token_revoked", token_type = "refresh_token", client_id = %client.client_id, issuer = %app.config.issuer_of(&family.grant), "refresh token revoked by its client");
        }
        return Ok(());
    }
    if let Ok(claims) = app.verifier.verify_at(token, now)
        && claims.client_id == client.client_id
    {
        app.store.deny_access_token(&claims.jti, claims.exp).await?;
        tracing::info!(target: "audit", event = "token_revoked", token_type = "access_token", client_id = %client.client_id, issuer = %claims.iss, "access token revoked by its client");
    }
    Ok(())
}

/// Token introspection (RFC 7662 §2.2): what an MCP server may learn about a token. Callers
/// must be confidential clients the operator added (`mcp-authd clients add`, SPEC §17): a
/// self-registered client, secret or not, is anyone on the internet and would learn every
/// user's `sub`, scope and sign-in liveness. An inactive token yields only `{"active": false}`.
pub async fn introspect(
    app: &Server,
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
        let Some(family) = app.store.family(&refresh::family_key(family_id)).await? else {
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
            "iss": app.config.issuer_of(&family.grant),
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
    let is_revoked = app.store.is_access_token_denied(&claims.jti).await?
        || match &claims.sid {
            Some(key) => app.store.family(key).await?.is_none(),
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
