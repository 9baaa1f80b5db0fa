//! `POST /oauth/token` and `POST /oauth/revoke`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::no_store;
use super::{Shared, paths};
use crate::oauth::params::Params;
use crate::oauth::{ErrorCode, OAuthError, client_auth, token as grants};
use crate::store::Client;

/// Parses a form body and authenticates the client at the endpoint under `path`.
async fn form_and_client(
    app: &Shared,
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
    // endpoint called (RFC 7523 §3).
    let token_endpoint = app.config.endpoint(paths::TOKEN);
    let called = app.config.endpoint(path);
    let audiences = [
        token_endpoint.as_str(),
        app.config.issuer.as_str(),
        called.as_str(),
    ];
    let client = client_auth::authenticate(app, &creds, &audiences).await?;
    Ok((form, client))
}

/// The token endpoint.
pub async fn token(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (form, client) = form_and_client(&app, &headers, &body, paths::TOKEN).await?;
    let response = grants::exchange(&app, &client, &form).await?;
    // Sized for the whole answer at once: axum's `Json` starts at 128 bytes and grows by
    // copying, and a token answer is about a kilobyte.
    let size = response.access_token.len() + response.refresh_token.len() + response.scope.len();
    let mut json = Vec::with_capacity(size + 128);
    serde_json::to_writer(&mut json, &response)
        .map_err(|_| OAuthError::new(ErrorCode::ServerError, "could not encode the answer"))?;
    let content_type = [(header::CONTENT_TYPE, "application/json")];
    Ok((StatusCode::OK, no_store(), content_type, json).into_response())
}

/// The revocation endpoint (RFC 7009): 200 whether or not the token was known.
pub async fn revoke(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (form, client) = form_and_client(&app, &headers, &body, paths::REVOKE).await?;
    grants::revoke(&app, &client, &form).await?;
    Ok((StatusCode::OK, no_store()).into_response())
}

/// The introspection endpoint (RFC 7662), for MCP servers holding confidential credentials.
pub async fn introspect(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let (form, client) = form_and_client(&app, &headers, &body, paths::INTROSPECT).await?;
    let answer = grants::introspect(&app, &client, &form).await?;
    Ok((StatusCode::OK, no_store(), Json(answer)).into_response())
}
