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

/// An RFC 6749 §5.2 JSON error with `status`: `{"error": code, "error_description": …}`,
/// `no-store`. The description is reduced to the characters §5.2 allows.
pub fn json_error(status: StatusCode, code: ErrorCode, description: &str) -> Response {
    let body = serde_json::json!({
        "error": code.as_str(),
        "error_description": description_charset(description),
    });
    (status, no_store(), Json(body)).into_response()
}

/// RFC 6749 §5.2: `error_description` MUST stay within %x20-21 / %x23-5B / %x5D-7E. A double
/// quote becomes an apostrophe; a backslash, control or non-ASCII character is
/// percent-encoded (as its UTF-8 bytes), which keeps quoted URIs recognisable.
fn description_charset(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push('\''),
            ' '..='~' if c != '\\' => out.push(c),
            _ => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
        }
    }
    out
}

/// Gives the plain-text answers axum produces before a handler runs the shape of every other
/// error on the JSON endpoints: 413 (body over [`super::MAX_BODY_BYTES`]) and 405.
pub async fn json_rejections(response: Response) -> Response {
    let description = match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large",
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed (see the Allow header)",
        _ => return response,
    };
    let mut shaped = json_error(response.status(), ErrorCode::InvalidRequest, description);
    if let Some(allow) = response.headers().get(header::ALLOW) {
        shaped.headers_mut().insert(header::ALLOW, allow.clone());
    }
    shaped
}

/// The same for the browser endpoints: an error page instead of axum's plain text.
pub async fn page_rejections(response: Response) -> Response {
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            pages::error_page(StatusCode::PAYLOAD_TOO_LARGE, "The request is too large.")
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            let mut page = pages::error_page(
                StatusCode::METHOD_NOT_ALLOWED,
                "This address does not accept that method.",
            );
            if let Some(allow) = response.headers().get(header::ALLOW) {
                page.headers_mut().insert(header::ALLOW, allow.clone());
            }
            page
        }
        _ => response,
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = status_of(self.code);
        let mut response = json_error(status, self.code, &self.description);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_keep_to_the_rfc_6749_character_set() {
        let text = "invalid type: string \"x\\y\", bücher\n\u{202E}";
        let out = description_charset(text);
        assert_eq!(out, "invalid type: string 'x%5Cy', b%C3%BCcher%0A%E2%80%AE");
        assert!(
            out.bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        );
        let plain = "redirect_uri rejected: https://claude.ai/cb (not in canonical form)";
        assert_eq!(description_charset(plain), plain);
    }
}
