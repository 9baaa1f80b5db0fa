//! The OAuth protocol: plain functions and services that know nothing of HTTP.
//!
//! `http/` extracts requests and shapes responses; everything that decides something lives
//! here, with the RFC it follows.

pub mod assertion;
pub mod authorize;
pub mod cimd;
pub mod client_auth;
pub mod consent;
pub mod error;
pub mod issuer;
pub mod params;
pub mod pkce;
pub mod redirect;
pub mod refresh;
pub mod register;
pub mod resource;
pub mod scope;
pub mod token;
pub mod token_request;

pub use error::{ErrorCode, OAuthError};
