//! The one Content-Type guard for POST bodies.
//!
//! The form endpoints (token, revocation, introspection) and registration (JSON) each refuse a
//! body of another type with their own OAuth error; the media type is compared here only, the
//! same way for all: the part before any parameter (`; charset=…`), trimmed, ASCII
//! case-insensitive (RFC 9110 §8.3.1).

use axum::http::{HeaderMap, header};

use crate::oauth::OAuthError;

/// `application/x-www-form-urlencoded`.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// `application/json`.
pub const JSON: &str = "application/json";

/// Whether the request's `Content-Type` names `media_type`. A missing or non-ASCII header
/// names none.
pub fn is_media_type(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(media_type))
}

/// `Ok` when the body is `media_type`; otherwise the endpoint's own refusal.
pub fn require_media_type(
    headers: &HeaderMap,
    media_type: &str,
    refusal: impl FnOnce() -> OAuthError,
) -> Result<(), OAuthError> {
    if is_media_type(headers, media_type) {
        Ok(())
    } else {
        Err(refusal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_type(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_bytes(value).unwrap(),
        );
        headers
    }

    #[test]
    fn media_types_ignore_parameters_case_and_spaces() {
        for value in [
            &b"application/x-www-form-urlencoded"[..],
            b"Application/X-WWW-Form-URLencoded; charset=UTF-8",
            b" application/x-www-form-urlencoded ;charset=utf-8",
        ] {
            assert!(is_media_type(&with_type(value), FORM), "{value:?}");
        }
        for value in [
            &b"application/json"[..],
            b"application/x-www-form-urlencoded2",
            b"multipart/form-data; boundary=x",
            b"",
            b"application/x-www-form-urlencoded\xff",
        ] {
            assert!(!is_media_type(&with_type(value), FORM), "{value:?}");
        }
        assert!(!is_media_type(&HeaderMap::new(), FORM));
        assert!(is_media_type(
            &with_type(b"application/json; charset=utf-8"),
            JSON
        ));
        let refused = require_media_type(&HeaderMap::new(), JSON, || {
            OAuthError::invalid_client_metadata("json only")
        })
        .unwrap_err();
        assert_eq!(refused.code.as_str(), "invalid_client_metadata");
    }
}
