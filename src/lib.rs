//! mcp-authd: an OAuth 2.1 authorization server for remote MCP servers that sit behind an SSO
//! reverse proxy.
//!
//! The proxy signs the user in and sets `X-Forwarded-User`; mcp-authd turns that session into
//! authorization codes for MCP clients and issues short-lived JWT access tokens (HS256, or
//! EdDSA/ES256 with a key pair, see [`signing`]) plus rotating refresh tokens. MCP servers
//! verify the access tokens with [`verify_access_token`], a [`Verifier`], or
//! [`resource::JwksVerifier`].
//!
//! Modules, in reading order from the bottom layer up (ARCHITECTURE.md): [`model`] (records
//! and shared grammars), [`config`] (boot-time validation), [`store`] (state behind traits),
//! [`oauth`] (protocol rules), [`http`] (routes and handlers); [`jwt`] (tokens) below them all.

pub mod admin;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod fetch;
pub mod health_check;
pub mod http;
pub mod jwt;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod oauth;
pub mod proxy_trust;
pub mod reload;
pub mod resource;
pub mod secrets;
pub mod signing;
pub mod store;

/// The version with the commit it was built from: `0.1.0 (1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MCP_AUTHD_COMMIT"),
    ")"
);

pub use jwt::{AccessTokenClaims, TokenExpectations, Verifier, VerifyError, verify_access_token};
