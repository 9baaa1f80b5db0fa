//! mcp-authd: an OAuth 2.1 authorization server for remote MCP servers that sit behind an SSO
//! reverse proxy.
//!
//! The proxy signs the user in and sets `X-Forwarded-User`; mcp-authd turns that session into
//! authorization codes for MCP clients and issues short-lived HS256 JWT access tokens plus
//! rotating refresh tokens. MCP servers verify the access tokens with
//! [`verify_access_token`].
//!
//! Modules, in reading order: [`config`] (boot-time validation), [`oauth`] (protocol rules),
//! [`store`] (state behind traits), [`http`] (routes and handlers), [`jwt`] (tokens).

pub mod admin;
pub mod app;
pub mod cimd;
pub mod cli;
pub mod clock;
pub mod config;
pub mod fetch;
pub mod http;
pub mod jwt;
pub mod oauth;
pub mod proxy_trust;
pub mod resource;
pub mod secrets;
pub mod store;

pub use jwt::{AccessTokenClaims, TokenExpectations, Verifier, VerifyError, verify_access_token};
