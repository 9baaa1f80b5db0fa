//! OAuth error codes and the one error type every JSON endpoint returns.
//!
//! The wire strings come from RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8707 §2 and RFC 7009. The
//! HTTP mapping (status, headers, body) lives in one place: `http::error`.

use std::borrow::Cow;

/// An OAuth error code, as sent in the `error` member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is missing a parameter, repeats one, or is otherwise malformed.
    InvalidRequest,
    /// Client authentication failed (unknown client, wrong or missing secret).
    InvalidClient,
    /// The code or refresh token is invalid, expired, revoked, or bound to something else.
    InvalidGrant,
    /// The client may not use this grant type.
    UnauthorizedClient,
    /// The grant type is not supported.
    UnsupportedGrantType,
    /// The requested scope is invalid, unknown, or wider than granted.
    InvalidScope,
    /// The requested resource is not one this server issues tokens for (RFC 8707).
    InvalidTarget,
    /// The user or the server denied the request.
    AccessDenied,
    /// The response type is not supported.
    UnsupportedResponseType,
    /// A registration redirect URI is not acceptable (RFC 7591).
    InvalidRedirectUri,
    /// A registration metadata field is not acceptable (RFC 7591).
    InvalidClientMetadata,
    /// The token type cannot be revoked (RFC 7009).
    UnsupportedTokenType,
    /// An unexpected condition; details are logged, never sent.
    ServerError,
    /// The server cannot handle the request now (for example, state storage failed).
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// An OAuth error: a code, a human-readable description, and how the client authenticated.
///
/// Descriptions are fixed sentences or name a value the client itself sent; they never carry a
/// secret, a code, or a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    /// The error code.
    pub code: ErrorCode,
    /// The `error_description`.
    pub description: Cow<'static, str>,
    /// Whether the client used HTTP Basic, so a 401 must carry `WWW-Authenticate: Basic`.
    pub used_basic_auth: bool,
}

impl OAuthError {
    /// An error with `code` and `description`.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            used_basic_auth: false,
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client`.
    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    /// `invalid_grant`.
    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, description)
    }

    /// `invalid_scope`.
    pub fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, description)
    }

    /// `invalid_target`.
    pub fn invalid_target(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidTarget, description)
    }

    /// `invalid_client_metadata`.
    pub fn invalid_client_metadata(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClientMetadata, description)
    }

    /// `invalid_redirect_uri` with the message users search for: `redirect_uri rejected: <uri>`.
    pub fn redirect_uri_rejected(uri: &str, why: &str) -> Self {
        Self::new(
            ErrorCode::InvalidRedirectUri,
            format!("redirect_uri rejected: {} ({why})", printable(uri)),
        )
    }

    /// `temporarily_unavailable`: state storage could not make a change durable.
    pub fn storage_unavailable() -> Self {
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "state storage is unavailable; nothing was issued, try again later",
        )
    }

    /// Marks that the client authenticated with HTTP Basic.
    pub fn with_basic_auth(mut self, used: bool) -> Self {
        self.used_basic_auth = used;
        self
    }
}

/// A client-supplied value made safe to quote in an error description or a log line: control
/// characters are replaced and the length is capped.
pub fn printable(value: &str) -> String {
    const MAX: usize = 256;
    let mut out: String = value
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if value.chars().count() > MAX {
        out.push('…');
    }
    out
}

/// A store failure is 503 `temporarily_unavailable` wherever it happens (the one mapping);
/// the cause is logged here, once, and never reaches the client.
impl From<crate::store::StoreError> for OAuthError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::error!("request not served: {error}");
        Self::storage_unavailable()
    }
}
