//! The issuer a request is addressed to (SPEC §11), as an extractor.
//!
//! The choice itself is [`crate::config::Config::issuer_for`]: the request's authority
//! against each issuer's host. Routes mounted under one issuer's path (or one resource's
//! PRM path) carry a [`Mount`]; a request that reaches such a route on the host of an issuer
//! living elsewhere gets the 404 of a path that does not exist, since that issuer has no
//! endpoint there.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::config::Issuer;

/// The issuer of the request being handled.
#[derive(Debug, Clone)]
pub struct RequestIssuer(pub Issuer);

/// Which issuers a route belongs to, for routes that are not shared by all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// The endpoints under an issuer path (`""` or `/something`): issuers with that path.
    IssuerPath(String),
    /// `/.well-known/oauth-protected-resource<path>`: issuers whose resource has that path.
    ResourcePath(String),
}

impl Mount {
    /// Whether `issuer` has this route.
    fn admits(&self, issuer: &Issuer) -> bool {
        match self {
            Self::IssuerPath(path) => issuer.path == *path,
            Self::ResourcePath(path) => issuer.resource_path() == *path,
        }
    }
}

impl FromRequestParts<Shared> for RequestIssuer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, Response> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        let issuer = app.config.issuer_for(
            peer,
            &parts.headers,
            parts.uri.authority().map(|a| a.as_str()),
        );
        if let Some(mount) = parts.extensions.get::<Mount>()
            && !mount.admits(issuer)
        {
            return Err(StatusCode::NOT_FOUND.into_response());
        }
        Ok(Self(issuer.clone()))
    }
}
