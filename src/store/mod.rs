//! State behind small traits: clients, consents and refresh-token families ([`Store`]), and
//! authorization codes ([`CodeStore`]).
//!
//! The single-use operations are atomic inside the store: [`Store::use_refresh_token`] decides
//! and rotates under one lock, and [`CodeStore::redeem`] validates and consumes a code under
//! one lock. Every mutation is durable before the call returns, so a handler never answers
//! with something the store could lose.

pub mod codes;
pub mod document;
pub mod file;
pub mod replay;
pub mod state_files;
pub mod unique_keys;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use codes::{
    CodeGrant, CodeLimitReached, CodeLimits, CodeStore, MemoryCodeStore, RedeemOutcome,
};
pub use document::{Mutation, StateDocument};
pub use file::{StateError, StateStore};
pub use replay::{AssertionReplayCache, MemoryAssertionReplayCache};

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

/// The result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The live token was used; the family now holds the successor, and the access token
    /// to answer with is the one described by the `answer` passed in.
    Rotated(Grant),
    /// The previous token was presented again inside the grace window, while its successor
    /// is unused; the successor stays live, and the answer is the rotation's own access
    /// token, described by the [`RotationAnswer`] returned here.
    Grace(Grant, RotationAnswer),
    /// An older token was presented: the family has been revoked.
    Reused,
    /// The token has expired.
    Expired,
    /// No such family.
    Unknown,
}

/// How long a dynamically registered client is safe from eviction at `maxDynamicClients`, in
/// seconds: time for its user to finish signing in (SPEC §17).
pub const EVICTABLE_AFTER_SECONDS: u64 = 600;

/// What [`Store::put_dynamic_client`] did.
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

/// One user's consent to one client, as [`Store::consents`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEntry {
    /// The client.
    pub client_id: String,
    /// The user.
    pub sub: String,
    /// When, and for which scopes.
    pub consent: Consent,
}

/// What [`Store::revoke_consents`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevokedAccess {
    /// Consents withdrawn.
    pub consents: usize,
    /// Refresh-token families (sign-ins) revoked with them.
    pub families: usize,
}

/// Why [`Store::import_state`] changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImportError {
    /// The store already holds records; an import never merges into or replaces them.
    #[error(
        "the state is not empty ({clients} client(s), {consents} consent(s), {families} sign-in(s))"
    )]
    NotEmpty {
        /// Clients already there.
        clients: usize,
        /// Consents already there.
        consents: usize,
        /// Refresh-token families already there.
        families: usize,
    },
    /// The store could not make the import durable.
    #[error(transparent)]
    Unavailable(#[from] StoreUnavailable),
}

/// The state store failed to make a change durable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state storage is unavailable")]
pub struct StoreUnavailable;

/// Clients, consents and refresh-token families.
#[async_trait]
pub trait Store: Send + Sync {
    /// The client with this id.
    async fn client(&self, client_id: &str) -> Option<Client>;
    /// Every client, in id order.
    async fn clients(&self) -> Vec<Client>;
    /// Adds or replaces a client.
    async fn put_client(&self, client: Client) -> Result<(), StoreUnavailable>;
    /// Adds a dynamically registered client unless `max_dynamic` of them already exist
    /// (0: no cap). At the cap, the oldest dynamic client that was never used (no consent, no
    /// refresh-token family) and was registered more than [`EVICTABLE_AFTER_SECONDS`] before
    /// `client.client_id_issued_at` makes room (SPEC §17); with none such, nothing changes.
    /// Counting, evicting and adding happen atomically.
    async fn put_dynamic_client(
        &self,
        client: Client,
        max_dynamic: usize,
    ) -> Result<DynamicAdmission, StoreUnavailable>;
    /// Removes a client with its consents and refresh-token families; whether it existed.
    async fn remove_client(&self, client_id: &str) -> Result<bool, StoreUnavailable>;
    /// Removes the dynamically registered clients registered before `older_than` (seconds
    /// since the epoch) that have neither a user's consent nor a refresh-token family; how
    /// many were removed. Pre-provisioned clients are never removed.
    async fn remove_unused_dynamic_clients(
        &self,
        older_than: u64,
    ) -> Result<usize, StoreUnavailable>;
    /// Whether `sub` has approved `client_id` (for any scope).
    async fn has_consent(&self, sub: &str, client_id: &str) -> bool;
    /// What `sub` has approved for `client_id`, if anything.
    async fn consent(&self, sub: &str, client_id: &str) -> Option<Consent>;
    /// Remembers that `sub` approved `client_id` for `scope` (space-separated); the consent
    /// then covers the union of `scope` and whatever was approved before (SPEC §13).
    async fn record_consent(
        &self,
        sub: &str,
        client_id: &str,
        scope: &str,
        at: u64,
    ) -> Result<(), StoreUnavailable>;
    /// Starts a refresh-token family. Families are named by their key
    /// ([`crate::oauth::refresh::family_key`]), never by the id inside their tokens.
    async fn put_family(
        &self,
        family_key: &str,
        family: RefreshFamily,
    ) -> Result<(), StoreUnavailable>;
    /// The family with this key.
    async fn family(&self, family_key: &str) -> Option<RefreshFamily>;
    /// Presents a refresh token: decides by [`crate::oauth::refresh::decide`] and applies the
    /// decision atomically. On rotation the family's live token becomes `successor_hash`,
    /// valid until `now + ttl`, and `answer` (the access token this rotation answers with,
    /// `iat` = `now`) is recorded for the grace window.
    async fn use_refresh_token(
        &self,
        family_key: &str,
        presented_hash: &str,
        successor_hash: &str,
        answer: &RotationAnswer,
        now: u64,
        ttl: u64,
    ) -> Result<RefreshOutcome, StoreUnavailable>;
    /// Revokes a family; whether it existed.
    async fn revoke_family(&self, family_key: &str) -> Result<bool, StoreUnavailable>;
    /// Revokes every family of `sub`; how many there were.
    async fn revoke_user(&self, sub: &str) -> Result<usize, StoreUnavailable>;
    /// Every live family with its id.
    async fn families(&self) -> Vec<(String, RefreshFamily)>;
    /// Revokes every family of `client_id`, keeping the client and its consents; how many
    /// there were.
    async fn revoke_client_families(&self, client_id: &str) -> Result<usize, StoreUnavailable>;
    /// Every consent, ordered by user, then client.
    async fn consents(&self) -> Vec<ConsentEntry>;
    /// Withdraws `sub`'s consent to `client_id` (to every client when `None`) and revokes
    /// `sub`'s families of the same clients, atomically: the next authorization asks the user
    /// again, and sign-ins made under the withdrawn approval end.
    async fn revoke_consents(
        &self,
        sub: &str,
        client_id: Option<&str>,
    ) -> Result<RevokedAccess, StoreUnavailable>;
    /// Replaces the secret hash of a client that has one; `false` (and nothing changes) when
    /// there is no such client or it has no secret (a public client). The old secret stops
    /// working as soon as this returns.
    async fn set_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
    ) -> Result<bool, StoreUnavailable>;
    /// The whole state as one document in the state file format (SPEC §9), consistent at one
    /// instant and holding nothing that is not yet durable (`mcp-authd state export`).
    async fn export_state(&self) -> Result<StateDocument, StoreUnavailable>;
    /// Loads an exported document into an empty store, atomically (`mcp-authd state
    /// import`); a store holding any record is refused with [`ImportError::NotEmpty`] and left
    /// as it was. `state` must be of the current version ([`StateDocument::upgrade`]).
    async fn import_state(&self, state: StateDocument) -> Result<(), ImportError>;
    /// Puts an access token (by `jti`) on the deny-list until `exp`.
    async fn deny_access_token(&self, jti: &str, exp: u64) -> Result<(), StoreUnavailable>;
    /// Whether the access token with this `jti` was revoked.
    async fn is_access_token_denied(&self, jti: &str) -> bool;
    /// Whether the store can still make changes durable.
    fn is_healthy(&self) -> bool;
}
