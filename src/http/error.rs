//! The one place where errors become HTTP responses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::pages;
use crate::oauth::authorize::{AuthorizeError, error_url};
use crate::oauth::{ErrorCode, OAuthError};

/// Status for an OAuth error code (RFC 6749 §5.2, RFC 7591 §3.2.2).
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = status_of(self.code);
        let body =
            serde_json::json!({"error": self.code.as_str(), "error_description": self.description});
        let mut response = (status, no_store(), Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED && self.used_basic_auth {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="mcp-authd""#),
            );
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, for every token and error response.
pub fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// An authorization error answered in context: a page, or a redirect carrying `iss`.
pub struct AuthorizeFailure<'a> {
    /// The error.
    pub error: AuthorizeError,
    /// The issuer, for `iss`.
    pub issuer: &'a str,
}

impl IntoResponse for AuthorizeFailure<'_> {
    fn into_response(self) -> Response {
        match self.error {
            AuthorizeError::Page { status, message } => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                pages::error_page(status, &message)
            }
            AuthorizeError::Redirect {
                redirect_uri,
                state,
                error,
            } => redirect(
                StatusCode::FOUND,
                &error_url(&redirect_uri, &error, state.as_deref(), self.issuer),
            ),
        }
    }
}

/// A redirect with `status` (302 from the authorization endpoint, 303 after the consent POST).
pub fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::try_from(location) {
        Ok(value) => (
            status,
            [(header::LOCATION, value)],
            [(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            )],
        )
            .into_response(),
        // Redirect URIs are validated ASCII and parameters are percent-encoded, so this only
        // happens if that invariant is broken; fail closed with a page.
        Err(_) => pages::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The redirect could not be built.",
        ),
    }
}
