//! `POST /oauth/token`, `POST /oauth/revoke` and `POST /oauth/introspect`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::client::ClientForm;
use super::error::no_store;
use super::issuer::RequestIssuer;
use super::{Shared, paths};
use crate::oauth::token_request::TokenRequest;
use crate::oauth::{ErrorCode, OAuthError, token as grants};

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
    // Sized for the whole answer at once: axum's `Json` starts at 128 bytes and grows by
    // copying, and a token answer is about a kilobyte.
    let size = response.access_token.len() + response.refresh_token.len() + response.scope.len();
    let mut json = Vec::with_capacity(size + 128);
    serde_json::to_writer(&mut json, &response)
        .map_err(|_| OAuthError::new(ErrorCode::ServerError, "could not encode the answer"))?;
    let content_type = [(header::CONTENT_TYPE, "application/json")];
    Ok((StatusCode::OK, no_store(), content_type, json).into_response())
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
