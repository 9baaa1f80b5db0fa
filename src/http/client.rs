//! The client-credentials extractor of the endpoints where clients authenticate (token,
//! revocation, introspection).
//!
//! [`ClientForm`] reads the request once: the form body (only
//! `application/x-www-form-urlencoded`, no parameter repeated) and the credentials in it and
//! in the `Authorization` header ([`client_auth::extract`]: HTTP Basic, `client_id` /
//! `client_secret`, or an RFC 7523 client assertion). [`ClientForm::authenticate`] then
//! checks them for the endpoint called.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::body::{FORM, require_media_type};
use super::{Shared, paths};
use crate::app::AppState;
use crate::config::Issuer;
use crate::oauth::OAuthError;
use crate::oauth::client_auth::{self, Credentials};
use crate::oauth::params::Params;
use crate::store::Client;

/// A form posted by a client, with the credentials it presented (not yet checked). No
/// `Debug`: both hold the client's secret.
pub struct ClientForm {
    /// The form's parameters, the credentials' included.
    pub form: Params,
    /// The credentials presented.
    pub credentials: Credentials,
}

impl ClientForm {
    /// Reads the form and the credentials from the request's headers and body. The refusals
    /// come in this order: not a form → `invalid_request`; a repeated parameter or broken
    /// encoding → `invalid_request`; an `Authorization` header that is not text →
    /// `invalid_client`; then those of [`client_auth::extract`].
    pub fn read(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        require_media_type(headers, FORM, || {
            OAuthError::invalid_request("the body must be application/x-www-form-urlencoded")
        })?;
        let form = Params::parse(body).map_err(OAuthError::invalid_request)?;
        let authorization = match headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?,
            ),
        };
        let credentials = client_auth::extract(authorization, &form)?;
        Ok(Self { form, credentials })
    }

    /// Authenticates the client at the endpoint under `path` of `issuer`; the form and the
    /// client. A client assertion may name this server by its token endpoint, its issuer, or
    /// the endpoint called (RFC 7523 §3): those of the issuer the request is addressed to.
    pub async fn authenticate(
        self,
        app: &AppState,
        issuer: &Issuer,
        path: &str,
    ) -> Result<(Params, Client), OAuthError> {
        let token_endpoint = issuer.endpoint(paths::TOKEN);
        let called = issuer.endpoint(path);
        let audiences = [
            token_endpoint.as_str(),
            issuer.url.as_str(),
            called.as_str(),
        ];
        let client = client_auth::authenticate(app, &self.credentials, &audiences).await?;
        Ok((self.form, client))
    }
}

impl FromRequest<Shared> for ClientForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &Shared) -> Result<Self, Response> {
        let headers = request.headers().clone();
        // The body is read first, so a body over the limit is a 413 whatever its type.
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Self::read(&headers, &body).map_err(IntoResponse::into_response)
    }
}
