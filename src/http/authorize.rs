//! `GET /oauth/authorize` and `POST /oauth/authorize/consent`.
//!
//! Both trust the user header only when the TCP peer is one of `trustedSourceCidrs`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{AuthorizeFailure, redirect as redirect_to};
use super::{Shared, pages, paths};
use crate::oauth::authorize::{self, AuthorizeError, PendingAuthorization};
use crate::oauth::consent::{ConsentTicket, TICKET_SECONDS};
use crate::oauth::params::Params;
use crate::oauth::{ErrorCode, OAuthError, redirect};
use crate::proxy_trust::{IdentityError, read_groups, read_user};

/// The message users search for when the proxy is bypassed or misconfigured.
pub const UNTRUSTED_PEER: &str = "/authorize must originate from a trusted reverse proxy";

/// The signed-in user, or the status and message of the page that explains why there is none.
fn identity(
    app: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(String, Vec<String>), (StatusCode, String)> {
    if !app.config.trusted_sources.contains(peer.ip()) {
        tracing::warn!(target: "audit", peer = %peer.ip(), "authorization request from an untrusted peer");
        return Err((StatusCode::FORBIDDEN, UNTRUSTED_PEER.to_string()));
    }
    match read_user(headers, &app.config.user_header) {
        Ok(user) => Ok((user, read_groups(headers, &app.config.groups_header))),
        Err(IdentityError::Missing) => Err((
            StatusCode::UNAUTHORIZED,
            format!(
                "You are not signed in: the reverse proxy sent no {} header.",
                app.config.user_header
            ),
        )),
        Err(IdentityError::Ambiguous) => Err((
            StatusCode::BAD_REQUEST,
            format!(
                "The {} header must hold exactly one user.",
                app.config.user_header
            ),
        )),
    }
}

/// The authorization endpoint.
pub async fn authorize(
    State(app): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let (user, groups) = match identity(&app, peer, &headers) {
        Ok(id) => id,
        Err((status, message)) => return pages::error_page(status, &message),
    };
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(why) => return pages::error_page(StatusCode::BAD_REQUEST, &why),
    };
    let (client, pending) = match authorize::validate(&app, &params).await {
        Ok(ok) => ok,
        Err(error) => {
            return AuthorizeFailure {
                error,
                issuer: &app.config.issuer,
            }
            .into_response();
        }
    };
    let has_consented = app.store.has_consent(&user, &client.client_id).await;
    if !authorize::needs_consent(app.config.consent, &client, has_consented) {
        return redirect_to(
            StatusCode::FOUND,
            &authorize::issue_code(&app, &pending, &user, groups),
        );
    }
    let ticket = ConsentTicket {
        sub: user.clone(),
        request: pending.clone(),
        exp: app.now().saturating_add(TICKET_SECONDS),
        nonce: ConsentTicket::new_nonce(),
    }
    .seal(&app.keys.consent);
    let verified_origin = (client.registration == crate::store::Registration::MetadataDocument)
        .then(|| redirect::display_host(&client.client_id));
    pages::consent_page(&pages::ConsentView {
        client_name: &client.client_name,
        is_unverified: client.registration == crate::store::Registration::Dynamic,
        verified_origin: verified_origin.as_deref(),
        redirect_host: &redirect::display_host(&pending.redirect_uri),
        scope: &pending.scope,
        user: &user,
        action: &app.config.endpoint(paths::CONSENT),
        ticket: &ticket,
    })
}

/// The consent form's target: approve or deny, answered with 303 (RFC 9700 §4.12).
pub async fn consent(
    State(app): State<Shared>,
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
    let ticket = match ConsentTicket::open(
        form.get("ticket").unwrap_or_default(),
        &app.keys.consent,
        now,
    ) {
        Ok(t) => t,
        Err(why) => return pages::error_page(StatusCode::FORBIDDEN, why),
    };
    if ticket.sub != user {
        tracing::warn!(target: "audit", user = %user, "consent ticket presented by another user");
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "This consent page was issued to another user.",
        );
    }
    if !app.consent_nonces.use_once(&ticket.nonce, ticket.exp, now) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "This consent page was already answered.",
        );
    }
    let pending: PendingAuthorization = ticket.request;
    let see_other = |url: String| redirect_to(StatusCode::SEE_OTHER, &url);
    match form.get("decision") {
        Some("approve") => {
            if app.config.consent == crate::config::ConsentMode::Dynamic
                && app
                    .store
                    .record_consent(&user, &pending.client_id, now)
                    .await
                    .is_err()
            {
                let error = OAuthError::storage_unavailable();
                return see_other(authorize::error_url(
                    &pending.redirect_uri,
                    &error,
                    pending.state.as_deref(),
                    &app.config.issuer,
                ));
            }
            tracing::info!(target: "audit", user = %user, client_id = %pending.client_id, "user approved client");
            see_other(authorize::issue_code(&app, &pending, &user, groups))
        }
        Some("deny") => {
            let error = OAuthError::new(ErrorCode::AccessDenied, "the user denied the request");
            see_other(authorize::error_url(
                &pending.redirect_uri,
                &error,
                pending.state.as_deref(),
                &app.config.issuer,
            ))
        }
        _ => AuthorizeFailure {
            error: AuthorizeError::page(400, "The consent form must say approve or deny."),
            issuer: &app.config.issuer,
        }
        .into_response(),
    }
}
