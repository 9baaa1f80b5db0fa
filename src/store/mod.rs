//! State: the records (clients, consents, grants, refresh families) and the store's contract
//! ([`traits`]: one small trait per lifecycle, joined in [`Store`]), with its backends: the
//! journaled file store ([`StateStore`], also purely in memory for inline state and tests).
//!
//! Every operation is atomic and fallible, and every change is durable before the call
//! returns, so a handler never answers with something the store could lose. No protocol rule
//! lives here: `oauth/` decides, the store applies.

pub mod codes;
pub mod document;
pub mod file;
pub mod replay;
pub mod state_files;
mod tickets;
pub mod traits;
pub mod unique_keys;

use serde::{Deserialize, Serialize};

pub use codes::{CodeGrant, CodeLimitReached, CodeLimits};
pub use document::{Mutation, StateDocument};
pub use file::{StateError, StateStore};
pub use replay::{AssertionReplayCache, MemoryAssertionReplayCache};
/// The store traits, to call their methods on a concrete backend: `use store::prelude::*`.
pub mod prelude {
    pub use super::traits::{
        ClientStore as _, CodeStore as _, ConsentStore as _, DenyList as _, FamilyStore as _,
        StateTransfer as _, TicketStore as _,
    };
}

pub use traits::{
    ClientStore, CodeState, CodeStore, ConsentStore, DenyList, Exchange, FamilyStore, ImportError,
    Rotation, StateTransfer, Store, StoreError, StoreResult, TicketStore,
};

/// How a client authenticates at the token endpoint (RFC 7591 `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A public client: no secret, PKCE only.
    None,
    /// A confidential client sending `client_secret` in the form body.
    ClientSecretPost,
    /// A confidential client using HTTP Basic.
    ClientSecretBasic,
    /// A client metadata document client that signs an RFC 7523 assertion with a key from
    /// its published JWKS (never a registered client, so never stored).
    PrivateKeyJwt,
}

impl AuthMethod {
    /// The RFC 7591 string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    /// Whether clients of this kind hold a secret issued by this server.
    pub fn is_confidential(self) -> bool {
        matches!(self, Self::ClientSecretPost | Self::ClientSecretBasic)
    }
}

/// How a client came to exist, which decides whether users must approve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Registered by anyone through `/oauth/register`; its metadata is self-asserted.
    Dynamic,
    /// Added by an administrator with `mcp-authd clients add`.
    Provisioned,
    /// Identified by the URL of its client metadata document (SPEC §12): resolved from the
    /// document on each use and never stored; its name is as stated by the document's host.
    MetadataDocument,
}

/// RFC 7591 / OIDC Registration `application_type` (SEP-837).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationType {
    /// Runs on the user's device: loopback or private-use-scheme redirect URIs.
    Native,
    /// A web application with https redirect URIs.
    Web,
}

impl ApplicationType {
    /// The RFC 7591 string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Web => "web",
        }
    }
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// The server-generated identifier.
    pub client_id: String,
    /// The display name (self-asserted for dynamic clients).
    pub client_name: String,
    /// Registered redirect URIs, byte-exact.
    pub redirect_uris: Vec<String>,
    /// How it authenticates at the token endpoint.
    pub token_endpoint_auth_method: AuthMethod,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// Allowed response types.
    pub response_types: Vec<String>,
    /// The scope registered, used when an authorization request names none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// SHA-256 of the client secret, for confidential clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// When it was registered, seconds since the epoch.
    pub client_id_issued_at: u64,
    /// Dynamic or provisioned.
    pub registration: Registration,
    /// `application_type`, as registered or inferred (absent for clients registered before
    /// it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<ApplicationType>,
}

impl Client {
    /// Whether the client exists only to call introspection and revocation (an MCP server's
    /// credentials, `mcp-authd clients add --introspection-only`): added by the operator, with
    /// a secret, and allowed no grant, so the token endpoint never issues it anything.
    pub fn is_introspection_only(&self) -> bool {
        self.registration == Registration::Provisioned
            && self.secret_hash.is_some()
            && self.grant_types.is_empty()
    }
}

/// A user's remembered approval of a client: when, and which scopes it covers (SPEC §13). A
/// request for a scope outside them asks the user again; approving adds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ConsentRecord")]
pub struct Consent {
    /// When the user last approved, seconds since the epoch.
    pub at: u64,
    /// The approved scopes, space-separated (empty: only requests that name no scope).
    pub scope: String,
}

/// A consent as written: an object, or, in files from before consent was bound to scope,
/// the bare approval time.
#[derive(Deserialize)]
#[serde(untagged)]
enum ConsentRecord {
    Scoped(ScopedConsent),
    /// What the user saw on that page is unknown, so such a consent covers no scope: requests
    /// naming none go through as before, and the first request naming any asks again.
    Unscoped(u64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopedConsent {
    at: u64,
    scope: String,
}

impl From<ConsentRecord> for Consent {
    fn from(record: ConsentRecord) -> Self {
        match record {
            ConsentRecord::Scoped(ScopedConsent { at, scope }) => Self { at, scope },
            ConsentRecord::Unscoped(at) => Self {
                at,
                scope: String::new(),
            },
        }
    }
}

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

/// How long a dynamically registered client is safe from eviction at `maxDynamicClients`, in
/// seconds: time for its user to finish signing in (SPEC §17).
pub const EVICTABLE_AFTER_SECONDS: u64 = 600;

/// What [`ClientStore::put_dynamic_client`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DynamicAdmission {
    /// The client was added, in place of `evicted` if the cap was reached.
    Added {
        /// The never-used client removed to make room.
        evicted: Option<String>,
    },
    /// The cap is reached and no client may be evicted: nothing changed.
    Full,
}

/// One user's consent to one client, as [`ConsentStore::consents`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEntry {
    /// The client.
    pub client_id: String,
    /// The user.
    pub sub: String,
    /// When, and for which scopes.
    pub consent: Consent,
}

/// What [`ConsentStore::revoke_consents`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevokedAccess {
    /// Consents withdrawn.
    pub consents: usize,
    /// Refresh-token families (sign-ins) revoked with them.
    pub families: usize,
}
