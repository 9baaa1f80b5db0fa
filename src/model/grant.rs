//! Grants: what a user authorized, and the codes and refresh-token families that carry it.

use serde::{Deserialize, Serialize};

use crate::secrets::sha256_b64;

/// What a user authorized: who, for which client, with what scope, for which resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The client.
    pub client_id: String,
    /// The user.
    pub sub: String,
    /// The user's groups at authorization time.
    pub groups: Vec<String>,
    /// The granted scope, space-separated.
    pub scope: String,
    /// The resource (token audience).
    pub resource: String,
    /// The issuer it was authorized under (SPEC §11): a code or refresh token works only at
    /// that issuer's token endpoint. Empty for the primary issuer, whatever its URL (so a
    /// changed `issuerUrl` keeps its sign-ins, and state from before `additionalIssuers` is
    /// the primary's): see [`crate::config::Config::issuer_of`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
}

/// A chain of refresh tokens descending from one authorization code (RFC 9700 §4.14.2).
///
/// Only the current token and the one it replaced are remembered, as SHA-256 hashes; the
/// family id travels inside every token of the chain, so reuse of any older token is still
/// recognised as reuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshFamily {
    /// What the tokens of this family grant.
    pub grant: Grant,
    /// SHA-256 of the live refresh token.
    pub current_hash: String,
    /// SHA-256 of the token the live one replaced, kept for the grace window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_hash: Option<String>,
    /// When the live token replaced the previous one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<u64>,
    /// When the family was created (the user's authorization).
    pub created_at: u64,
    /// When the live token expires.
    pub expires_at: u64,
    /// The access token the last rotation answered with, less what can be derived again
    /// (SPEC §17): a presentation of the previous token inside the grace window is answered
    /// with the same access token, re-signed from this (HS256 is deterministic), and nothing
    /// new is minted. The token itself, a bearer secret, is never stored. Absent before the
    /// first rotation and in families rotated by builds that did not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_answer: Option<RotationAnswer>,
}

/// What a rotation's access token was minted from, besides the grant and the configuration:
/// its times and scope. Its `jti` is a keyed hash of the refresh token the rotation consumed
/// ([`crate::oauth::refresh::access_token_id`]), so it needs no storing either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationAnswer {
    /// The access token's `iat`.
    pub iat: u64,
    /// The access token's `exp`.
    pub exp: u64,
    /// The access token's scope (the grant's, or the narrower one the rotation asked for).
    pub scope: String,
}

/// The key a refresh-token family is stored under, and the `sid` claim of the access tokens
/// issued from it: the SHA-256 of the family id. The family id is half of every refresh token
/// of the family, so it is never stored or put in an access token in clear; the key names the
/// sign-in without giving anyone the means to present (or, by a wrong secret, revoke) its
/// tokens. Here rather than in `oauth::refresh` because the state document re-keys version 1
/// files with it.
pub fn family_key(family_id: &str) -> String {
    sha256_b64(family_id.as_bytes())
}

/// What an authorization code stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    /// The authorization.
    pub grant: Grant,
    /// The redirect URI exactly as sent to `/authorize`.
    pub redirect_uri: String,
    /// The S256 PKCE challenge.
    pub code_challenge: String,
    /// When the code stops working.
    pub expires_at: u64,
}

/// Which bound on outstanding codes refused a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeLimitReached {
    /// The user already holds [`CodeLimits::per_user`] outstanding codes.
    PerUser,
    /// The server already holds [`CodeLimits::total`] outstanding codes.
    Total,
}

/// Bounds on outstanding (unredeemed, unexpired) codes; 0 means no bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeLimits {
    /// `maxPendingCodesPerUser`.
    pub per_user: usize,
    /// `maxPendingCodes`.
    pub total: usize,
}
