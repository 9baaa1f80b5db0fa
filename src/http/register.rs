//! `POST /oauth/register` (RFC 7591).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::body::{JSON, require_media_type};
use super::error::no_store;
use super::issuer::RequestIssuer;
use crate::oauth::register::{RegistrationRequest, register_dynamic};
use crate::oauth::{ErrorCode, OAuthError};
use crate::store::DynamicAdmission;

/// Registers a client; clients are shared by every issuer (SPEC §11).
pub async fn register(
    State(app): State<Shared>,
    RequestIssuer(issuer): RequestIssuer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_media_type(&headers, JSON, || {
        OAuthError::invalid_client_metadata("the registration request must be application/json")
    })?;
    let request: RegistrationRequest = serde_json::from_slice(&body).map_err(|e| {
        OAuthError::invalid_client_metadata(format!("the registration request is not valid: {e}"))
    })?;
    let new = register_dynamic(
        request,
        &app.config.redirect_allowlist,
        &app.config.scopes_supported,
        app.now(),
    )?;
    let response = new.response();
    let max = app.config.max_dynamic_clients;
    let admission = app
        .store
        .put_dynamic_client(new.client, max)
        .await
        .map_err(|_| OAuthError::storage_unavailable())?;
    match admission {
        DynamicAdmission::Full => {
            app.metrics.registration_result("full");
            tracing::warn!(target: "audit", max_dynamic_clients = max, "registration refused: the client limit is reached and every client was used or registered in the last 10 minutes");
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                format!(
                    "this server already holds its maximum of {max} registered clients; try again later"
                ),
            ));
        }
        DynamicAdmission::Added {
            evicted: Some(evicted),
        } => {
            tracing::info!(target: "audit", evicted_client_id = %evicted, max_dynamic_clients = max, "the client limit is reached; removed the oldest client that was never used");
        }
        DynamicAdmission::Added { evicted: None } => {}
    }
    tracing::info!(target: "audit", event = "client_registered", client_id = %response.client_id, client_name = %response.client_name, issuer = %issuer.url, "client registered");
    app.metrics.registration_result("created");
    Ok((StatusCode::CREATED, no_store(), Json(response)).into_response())
}
