//! `POST /oauth/token`, `POST /oauth/revoke` and `POST /oauth/introspect`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::client::ClientForm;
use super::error::no_store;
use super::issuer::RequestIssuer;
use super::{Shared, paths};
use crate::oauth::token_request::TokenRequest;
use crate::oauth::{OAuthError, token as grants};

/// The token endpoint of the request's issuer: it redeems only that issuer's codes and
/// refresh tokens.
pub async fn token(
    State(app): State<Shared>,
    RequestIssuer(issuer): RequestIssuer,
    posted: ClientForm,
) -> Result<Response, OAuthError> {
    let (form, client) = posted.authenticate(&app, &issuer, paths::TOKEN).await?;
    let request = TokenRequest::parse(&form, &client)?;
    let response = grants::exchange(&app, &issuer, &client, request).await?;
    Ok((StatusCode::OK, no_store(), Json(response)).into_response())
}

/// The revocation endpoint (RFC 7009): 200 whether or not the token was known. Any issuer's
/// endpoint revokes the tokens of every issuer.
pub async fn revoke(
    State(app): State<Shared>,
    RequestIssuer(issuer): RequestIssuer,
    posted: ClientForm,
) -> Result<Response, OAuthError> {
    let (form, client) = posted.authenticate(&app, &issuer, paths::REVOKE).await?;
    grants::revoke(&app, &client, &form).await?;
    Ok((StatusCode::OK, no_store()).into_response())
}

/// The introspection endpoint (RFC 7662), for MCP servers holding confidential credentials.
/// Any issuer's endpoint answers for the tokens of every issuer, with each token's own `iss`.
pub async fn introspect(
    State(app): State<Shared>,
    RequestIssuer(issuer): RequestIssuer,
    posted: ClientForm,
) -> Result<Response, OAuthError> {
    let (form, client) = posted
        .authenticate(&app, &issuer, paths::INTROSPECT)
        .await?;
    let answer = grants::introspect(&app, &client, &form).await?;
    Ok((StatusCode::OK, no_store(), Json(answer)).into_response())
}
