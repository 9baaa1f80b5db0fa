//! The OAuth protocol: plain functions and services that know nothing of HTTP.
//!
//! `http/` extracts requests and shapes responses; everything that decides something lives
//! here, with the RFC it follows. The [`Server`] holds what the rules need (configuration,
//! stores, keys, clock); nothing here imports `http/` or axum.

pub mod assertion;
pub mod authorize;
pub mod cimd;
pub mod client_auth;
pub mod consent;
pub mod documents;
pub mod error;
pub mod params;
pub mod pkce;
pub mod refresh;
pub mod register;
pub mod resource;
mod server;
pub mod token;
pub mod token_request;

/// The redirect URI and scope grammars, under their protocol names. They live in
/// [`crate::model`] because configuration validation checks allowlist entries and the state
/// document unions consented scopes with them.
pub use crate::model::{redirect, scope};
pub use error::{ErrorCode, OAuthError};
pub use server::Server;
