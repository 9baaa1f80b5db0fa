//! `GET /oauth/authorize` and `POST /oauth/authorize/consent`.
//!
//! Both trust the user header only when the TCP peer is one of `trustedSourceCidrs`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{AuthorizeFailure, redirect as redirect_to};
use super::issuer::RequestIssuer;
use super::rate_limit::RateLimiter;
use super::{Shared, pages, paths};
use crate::oauth::authorize::{self, AuthorizeError, PendingAuthorization};
use crate::oauth::consent::{ConsentTicket, TICKET_SECONDS};
use crate::oauth::params::Params;
use crate::oauth::scope::Scope;
use crate::oauth::{ErrorCode, OAuthError, redirect};
use crate::proxy_trust::{
    IdentityError, MAX_GROUPS, MAX_GROUPS_BYTES, MAX_USER_LEN, read_groups, read_user,
};

/// The message users search for when the proxy is bypassed or misconfigured.
pub const UNTRUSTED_PEER: &str = "/authorize must originate from a trusted reverse proxy";

/// The signed-in user and groups, or the status and message of the page that explains why
/// there are none.
fn identity(
    app: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(String, Vec<String>), (StatusCode, String)> {
    if !app.config.trusted_sources.contains(peer.ip()) {
        tracing::warn!(target: "audit", peer = %peer.ip(), "authorization request from an untrusted peer");
        return Err((StatusCode::FORBIDDEN, UNTRUSTED_PEER.to_string()));
    }
    let user_header = &app.config.user_header;
    let user = read_user(headers, user_header).map_err(|why| match why {
        IdentityError::Missing => (
            StatusCode::UNAUTHORIZED,
            format!("You are not signed in: the reverse proxy sent no {user_header} header."),
        ),
        IdentityError::Ambiguous => (
            StatusCode::BAD_REQUEST,
            format!("The {user_header} header must hold exactly one user."),
        ),
        IdentityError::TooLarge => (
            StatusCode::BAD_REQUEST,
            format!("The {user_header} header is longer than {MAX_USER_LEN} bytes."),
        ),
        IdentityError::Unclean => (
            StatusCode::BAD_REQUEST,
            format!(
                "The {user_header} header must hold exactly one user name, in UTF-8, without whitespace, control or invisible characters."
            ),
        ),
        IdentityError::Placeholder => placeholder(user_header),
    })?;
    let groups_header = &app.config.groups_header;
    let groups = read_groups(headers, groups_header).map_err(|why| match why {
        IdentityError::Missing | IdentityError::Ambiguous => (
            StatusCode::BAD_REQUEST,
            format!(
                "The {groups_header} header was sent more than once; the reverse proxy must send one comma-separated line."
            ),
        ),
        IdentityError::TooLarge => (
            StatusCode::BAD_REQUEST,
            format!(
                "The {groups_header} header holds more than {MAX_GROUPS} groups or {MAX_GROUPS_BYTES} bytes."
            ),
        ),
        IdentityError::Unclean => (
            StatusCode::BAD_REQUEST,
            format!(
                "The {groups_header} header must be UTF-8, and its groups must not hold control or invisible characters or whitespace other than inner spaces."
            ),
        ),
        IdentityError::Placeholder => placeholder(groups_header),
    })?;
    Ok((user, groups))
}

/// The page for a header that holds an unsubstituted proxy placeholder: a proxy
/// misconfiguration the operator must hear of (the value is not logged: it may be a name).
fn placeholder(header: &HeaderName) -> (StatusCode, String) {
    tracing::warn!(target: "audit", header = %header, "the reverse proxy sent an unsubstituted placeholder instead of a value; check its configuration");
    (
        StatusCode::BAD_REQUEST,
        format!(
            "The {header} header holds a reverse-proxy placeholder that was never filled in, not a value; the proxy's configuration must be fixed."
        ),
    )
}

/// The authorization endpoint, answering as the request's issuer (its `iss`, its resource).
pub async fn authorize(
    State(app): State<Shared>,
    RequestIssuer(issuer): RequestIssuer,
    Extension(limiter): Extension<Arc<RateLimiter>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let (user, groups) = match identity(&app, peer, &headers) {
        Ok(id) => id,
        Err((status, message)) => return pages::error_page(status, &message),
    };
    // Counted before anything else is looked at: every request may end in a stored code.
    if let Err(retry_after) = limiter.check_user(&user) {
        app.metrics.rate_limited("authorize");
        return too_many_requests(retry_after);
    }
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(why) => return pages::error_page(StatusCode::BAD_REQUEST, &why),
    };
    let (client, pending) = match authorize::validate(&app, &issuer, &params).await {
        Ok(ok) => ok,
        Err(error) => {
            app.metrics.authorize_result("error");
            return AuthorizeFailure {
                error,
                issuer: &issuer.url,
            }
            .into_response();
        }
    };
    let approved = match app.store.consent(&user, &client.client_id).await {
        Ok(consent) => consent.map(|c| Scope::parse(&c.scope)),
        Err(e) => {
            return AuthorizeFailure {
                error: AuthorizeError::from(e),
                issuer: &issuer.url,
            }
            .into_response();
        }
    };
    let requested = Scope::parse(&pending.scope);
    if !authorize::needs_consent(app.config.consent, &client, approved.as_ref(), &requested) {
        return redirect_to(
            StatusCode::FOUND,
            &authorize::issue_code(&app, &pending, &user, groups).await,
        );
    }
    // Asked again because the request goes beyond what was approved (§13 step-up): the page
    // says which scopes are new.
    let new_scopes = approved
        .as_ref()
        .map(|approved| requested.difference(approved))
        .unwrap_or_default();
    let ticket = ConsentTicket {
        sub: user.clone(),
        request: pending.clone(),
        exp: app.now().saturating_add(TICKET_SECONDS),
        nonce: ConsentTicket::new_nonce(),
    }
    .seal(&app.keys.consent);
    let verified_origin = (client.registration == crate::store::Registration::MetadataDocument)
        .then(|| redirect::display_host(&client.client_id));
    app.metrics.authorize_result("consent_page");
    pages::consent_page(&pages::ConsentView {
        client_name: &client.client_name,
        is_unverified: client.registration == crate::store::Registration::Dynamic,
        verified_origin: verified_origin.as_deref(),
        redirect_host: &redirect::display_host(&pending.redirect_uri),
        scope: &pending.scope,
        new_scopes: &new_scopes,
        user: &user,
        // The form goes back to the issuer it was served by: the ticket is bound to it.
        action: &issuer.endpoint(paths::CONSENT),
        ticket: &ticket,
    })
}

/// The 429 page for a user over `rateLimits.authorizePerMinute` (SPEC §16: an error page,
/// not a redirect, since the request has not been validated yet).
fn too_many_requests(retry_after: u64) -> Response {
    let mut page = pages::error_page(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "Too many sign-in requests for this user (temporarily_unavailable); try again in {retry_after} seconds."
        ),
    );
    page.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    page
}

/// The consent form's target: approve or deny, answered with 303 (RFC 9700 §4.12). Only the
/// issuer that served the page takes its answer.
pub async fn consent(
    State(app): State<Shared>,
    RequestIssuer(issuer): RequestIssuer,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user, groups) = match identity(&app, peer, &headers) {
        Ok(id) => id,
        Err((status, message)) => return pages::error_page(status, &message),
    };
    let form = match Params::parse(&body) {
        Ok(f) => f,
        Err(why) => return pages::error_page(StatusCode::BAD_REQUEST, &why),
    };
    let now = app.now();
    // Pages served before a `jwtSecret` rotation were signed with a previous key.
    let ticket = match ConsentTicket::open_with_any(
        form.get("ticket").unwrap_or_default(),
        app.all_keys().map(|k| k.consent.as_slice()),
        now,
    ) {
        Ok(t) => t,
        Err(why) => return pages::error_page(StatusCode::FORBIDDEN, why),
    };
    if ticket.sub != user {
        tracing::warn!(target: "audit", sub = %user, "consent ticket presented by another user");
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "This consent page was issued to another user.",
        );
    }
    // Checked before the ticket is spent, so that the page can still be answered where it
    // was served.
    if ticket.request.issuer_or(&app.config.issuer) != issuer.url {
        tracing::warn!(target: "audit", sub = %user, issuer = %issuer.url, "consent ticket presented to another issuer");
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "This consent page was issued by the sign-in server of another host; answer it on the host that showed it.",
        );
    }
    let first_use = match app
        .store
        .use_consent_ticket(&ticket.nonce, ticket.exp, now)
        .await
    {
        Ok(first_use) => first_use,
        Err(e) => {
            return AuthorizeFailure {
                error: AuthorizeError::from(e),
                issuer: &issuer.url,
            }
            .into_response();
        }
    };
    if !first_use {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "This consent page was already answered.",
        );
    }
    let mut pending: PendingAuthorization = ticket.request;
    pending.issuer = issuer.url.clone();
    let see_other = |url: String| redirect_to(StatusCode::SEE_OTHER, &url);
    match form.get("decision") {
        Some("approve") => {
            if app.config.consent == crate::config::ConsentMode::Dynamic
                && app
                    .store
                    .record_consent(&user, &pending.client_id, &pending.scope, now)
                    .await
                    .is_err()
            {
                let error = OAuthError::storage_unavailable();
                return see_other(authorize::error_url(
                    &pending.redirect_uri,
                    &error,
                    pending.state.as_deref(),
                    &issuer.url,
                ));
            }
            tracing::info!(target: "audit", event = "consent_approved", sub = %user, client_id = %pending.client_id, issuer = %issuer.url, peer = %peer.ip(), scope = %pending.scope, "user approved client");
            see_other(authorize::issue_code(&app, &pending, &user, groups).await)
        }
        Some("deny") => {
            tracing::info!(target: "audit", event = "consent_denied", sub = %user, client_id = %pending.client_id, issuer = %issuer.url, peer = %peer.ip(), "user denied client");
            app.metrics.authorize_result("denied");
            let error = OAuthError::new(ErrorCode::AccessDenied, "the user denied the request");
            see_other(authorize::error_url(
                &pending.redirect_uri,
                &error,
                pending.state.as_deref(),
                &issuer.url,
            ))
        }
        _ => AuthorizeFailure {
            error: AuthorizeError::page(400, "The consent form must say approve or deny."),
            issuer: &issuer.url,
        }
        .into_response(),
    }
}
