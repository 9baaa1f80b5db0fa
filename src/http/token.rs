//! `POST /oauth/token` and `POST /oauth/revoke`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::no_store;
use super::issuer::RequestIssuer;
use super::{Shared, paths};
use crate::config::Issuer;
use crate::oauth::params::Params;
use crate::oauth::{OAuthError, client_auth, token as grants};
use crate::store::Client;

/// Parses a form body and authenticates the client at the endpoint under `path` of
/// `issuer`.
async fn form_and_client(
    app: &Shared,
    issuer: &Issuer,
    headers: &HeaderMap,
    body: &[u8],
    path: &str,
) -> Result<(Params, Client), OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Params::parse(body).map_err(OAuthError::invalid_request)?;
    let authorization = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?,
        ),
    };
    let creds = client_auth::extract(authorization, &form)?;
    // A client assertion may name this server by its token endpoint, its issuer, or the
    // endpoint called (RFC 7523 §3): those of the issuer the request is addressed to.
    let token_endpoint = issuer.endpoint(paths::TOKEN);
    let called = issuer.endpoint(path);
    let audiences = [
        token_endpoint.as_str(),
        issuer.url.as_str(),
        called.as_str(),
    ];
    let client = client_auth::authenticate(app, &creds, &audiences).await?;
    Ok((form, client))
}

/// The token endpoint of the request's issuer: it redeems only that issuer's codes and
/// refresh tokens.
pub async fn token(
    State(app): State<Shared>,
    RequestIssuer(issuer): RequestIssuer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (form, client) = form_and_client(&app, &issuer, &headers, &body, paths::TOKEN).await?;
    let response = grants::exchange(&app, &issuer, &client, &form).await?;
    Ok((StatusCode::OK, no_store(), Json(response)).into_response())
}

/// The revocation endpoint (RFC 7009): 200 whether or not the token was known. Any issuer's
/// endpoint revokes the tokens of every issuer.
pub async fn revoke(
    State(app): State<Shared>,
    RequestIssuer(issuer): RequestIssuer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (form, client) = form_and_client(&app, &issuer, &headers, &body, paths::REVOKE).await?;
    grants::revoke(&app, &client, &form).await?;
    Ok((StatusCode::OK, no_store()).into_response())
}

/// The introspection endpoint (RFC 7662), for MCP servers holding confidential credentials.
/// Any issuer's endpoint answers for the tokens of every issuer, with each token's own `iss`.
pub async fn introspect(
    State(app): State<Shared>,
    RequestIssuer(issuer): RequestIssuer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (form, client) = form_and_client(&app, &issuer, &headers, &body, paths::INTROSPECT).await?;
    let answer = grants::introspect(&app, &client, &form).await?;
    Ok((StatusCode::OK, no_store(), Json(answer)).into_response())
}
