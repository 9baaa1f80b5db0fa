//! Clients: who they are, how they authenticate and how they came to exist.

use serde::{Deserialize, Serialize};

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

/// How long a dynamically registered client is safe from eviction at `maxDynamicClients`, in
/// seconds: time for its user to finish signing in (SPEC §17).
pub const EVICTABLE_AFTER_SECONDS: u64 = 600;

/// What [`ClientStore::put_dynamic_client`](crate::store::ClientStore::put_dynamic_client)
/// did.
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
