//! The store's contract: one small trait per lifecycle (clients, consents, codes, refresh
//! families, the access-token deny-list, consent tickets, the whole state), joined in
//! [`Store`].
//!
//! Every method is async and fallible: a backend that cannot answer says so with a
//! [`StoreError`], which the HTTP layer maps to 503 in one place, so nothing ever fails open
//! (an unreadable deny-list is not "not revoked"). Each method is one atomic use-case step —
//! one lock in the file store, one transaction in SQL — and a change is durable before the
//! call returns. A read never reveals a change that is not durable yet. No protocol rule
//! lives here: `oauth/` decides, the store applies the decision atomically (refresh
//! rotation is a compare-and-swap on the live hash, so two replicas cannot both rotate).

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    Client, CodeGrant, CodeLimitReached, CodeLimits, Consent, ConsentEntry, DynamicAdmission,
    RefreshFamily, RevokedAccess, RotationAnswer, StateDocument,
};

/// The store could not do what was asked: storage is unreachable, failed, or refused the
/// change. Nothing was changed (or, for a change whose durability could not be confirmed,
/// nothing that was acknowledged). The message names what failed, never a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state storage is unavailable: {what}")]
pub struct StoreError {
    what: String,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error described by `what` alone.
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            source: None,
        }
    }

    /// An error described by `what`, caused by `source`.
    pub fn with_source(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            what: what.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// The file store stopped accepting changes after a failed write.
    pub(crate) fn failed_writer() -> Self {
        Self::new("a state write failed earlier; restart mcp-authd once the disk is fixed")
    }
}

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why [`StateTransfer::import_state`] changed nothing.
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
    Unavailable(#[from] StoreError),
}

/// Registered clients.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// The client with this id.
    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>>;
    /// Every client, in id order.
    async fn clients(&self) -> StoreResult<Vec<Client>>;
    /// Adds or replaces a client.
    async fn put_client(&self, client: Client) -> StoreResult<()>;
    /// Adds a dynamically registered client unless `max_dynamic` of them already exist
    /// (0: no cap). At the cap, the oldest dynamic client that was never used (no consent, no
    /// refresh-token family) and was registered more than
    /// [`super::EVICTABLE_AFTER_SECONDS`] before `client.client_id_issued_at` makes room
    /// (SPEC §17); with none such, nothing changes. Counting, evicting and adding are atomic.
    async fn put_dynamic_client(
        &self,
        client: Client,
        max_dynamic: usize,
    ) -> StoreResult<DynamicAdmission>;
    /// Removes a client with its consents and refresh-token families; whether it existed.
    async fn remove_client(&self, client_id: &str) -> StoreResult<bool>;
    /// Removes the dynamically registered clients registered before `older_than` (seconds
    /// since the epoch) that have neither a user's consent nor a refresh-token family; how
    /// many were removed. Pre-provisioned clients are never removed.
    async fn remove_unused_dynamic_clients(&self, older_than: u64) -> StoreResult<usize>;
    /// Replaces the secret hash of a client that has one; `false` (and nothing changes) when
    /// there is no such client or it has no secret (a public client). The old secret stops
    /// working as soon as this returns.
    async fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> StoreResult<bool>;
}

/// Users' remembered approvals of clients (SPEC §13).
#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// What `sub` has approved for `client_id`, if anything.
    async fn consent(&self, sub: &str, client_id: &str) -> StoreResult<Option<Consent>>;
    /// Whether `sub` has approved `client_id` (for any scope).
    async fn has_consent(&self, sub: &str, client_id: &str) -> StoreResult<bool> {
        Ok(self.consent(sub, client_id).await?.is_some())
    }
    /// Remembers that `sub` approved `client_id` for `scope` (space-separated); the consent
    /// then covers the union of `scope` and whatever was approved before.
    async fn record_consent(
        &self,
        sub: &str,
        client_id: &str,
        scope: &str,
        at: u64,
    ) -> StoreResult<()>;
    /// Every consent, ordered by user, then client.
    async fn consents(&self) -> StoreResult<Vec<ConsentEntry>>;
    /// Withdraws `sub`'s consent to `client_id` (to every client when `None`) and revokes
    /// `sub`'s families of the same clients, atomically.
    async fn revoke_consents(
        &self,
        sub: &str,
        client_id: Option<&str>,
    ) -> StoreResult<RevokedAccess>;
}

/// What a stored authorization code is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeState {
    /// Issued, unexpired and never redeemed.
    Live(CodeGrant),
    /// Redeemed once already: what it was bound to, and the family its redemption created.
    Spent {
        /// What the code was bound to, so a replay can be judged by the same check.
        code: CodeGrant,
        /// The family the first redemption created.
        family_key: String,
    },
}

/// What [`CodeStore::exchange_code`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// The code was live: it is consumed and the family exists, in one step.
    Exchanged,
    /// The code had been redeemed meanwhile (a concurrent redemption won): the family that
    /// redemption created is revoked, in the same step. Nothing was created.
    Replayed {
        /// The revoked family.
        family_key: String,
    },
    /// The code is unknown, expired or forgotten. Nothing changed.
    Invalid,
}

/// Single-use authorization codes, keyed by the SHA-256 of the code. The caller judges a code
/// ([`CodeStore::code`]) before it redeems it; the store only keeps redemption single and
/// atomic with the family it creates.
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Stores a new code, unless its user or the server already holds as many outstanding
    /// (unredeemed, unexpired) codes as `limits` allow.
    async fn insert_code(
        &self,
        code_hash: &str,
        code: CodeGrant,
        limits: CodeLimits,
        now: u64,
    ) -> StoreResult<Result<(), CodeLimitReached>>;
    /// The code with this hash as it stands at `now` (an expired live code is `None`).
    async fn code(&self, code_hash: &str, now: u64) -> StoreResult<Option<CodeState>>;
    /// Redeems a code the caller has judged: if it is still live, consumes it and creates
    /// `family` under `family_key`; if it was redeemed meanwhile, revokes what that
    /// redemption created instead. One atomic step either way.
    async fn exchange_code(
        &self,
        code_hash: &str,
        now: u64,
        family_key: &str,
        family: RefreshFamily,
    ) -> StoreResult<Exchange>;
    /// A spent code was presented again by its own client (the caller checked): revokes the
    /// family its redemption created; that family's key, or `None` if the code is not spent.
    async fn replay_code(&self, code_hash: &str, now: u64) -> StoreResult<Option<String>>;
}

/// A rotation of a refresh family's live token, as decided by `oauth::refresh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// SHA-256 of the new live token.
    pub current_hash: String,
    /// SHA-256 of the token it replaces (kept for the grace window).
    pub previous_hash: String,
    /// When it was rotated.
    pub rotated_at: u64,
    /// When the new live token expires.
    pub expires_at: u64,
    /// The access token the rotation answers with, for grace retries.
    pub answer: RotationAnswer,
}

/// Chains of refresh tokens (families), named by their key
/// ([`crate::model::family_key`]), never by the id inside their tokens.
#[async_trait]
pub trait FamilyStore: Send + Sync {
    /// The family with this key.
    async fn family(&self, family_key: &str) -> StoreResult<Option<RefreshFamily>>;
    /// Every live family with its key, by user then creation time.
    async fn families(&self) -> StoreResult<Vec<(String, RefreshFamily)>>;
    /// How many families are stored (for the live sign-ins gauge).
    async fn family_count(&self) -> StoreResult<usize>;
    /// Compare-and-swap: applies `rotation` only if the family's live hash is still
    /// `expected_current`; whether it did. `false` means another request rotated or revoked
    /// it first: read it again and decide again.
    async fn rotate_family(
        &self,
        family_key: &str,
        expected_current: &str,
        rotation: Rotation,
    ) -> StoreResult<bool>;
    /// Revokes a family; whether it existed.
    async fn revoke_family(&self, family_key: &str) -> StoreResult<bool>;
    /// Revokes every family of `sub`; how many there were.
    async fn revoke_user(&self, sub: &str) -> StoreResult<usize>;
    /// Revokes every family of `client_id`, keeping the client and its consents; how many
    /// there were.
    async fn revoke_client_families(&self, client_id: &str) -> StoreResult<usize>;
}

/// Access tokens revoked before they expire (RFC 7009), by `jti`.
#[async_trait]
pub trait DenyList: Send + Sync {
    /// Puts an access token on the deny-list until `exp`.
    async fn deny_access_token(&self, jti: &str, exp: u64) -> StoreResult<()>;
    /// Whether the access token with this `jti` was revoked.
    async fn is_access_token_denied(&self, jti: &str) -> StoreResult<bool>;
}

/// Consent tickets already used (the consent form's single-use marker).
#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Marks the ticket `nonce`, valid until `exp`, used; whether this was its first use.
    /// Checking and marking are one atomic step.
    async fn use_consent_ticket(&self, nonce: &str, exp: u64, now: u64) -> StoreResult<bool>;
}

/// The state as a whole: portability, clean-up and health.
#[async_trait]
pub trait StateTransfer: Send + Sync {
    /// The whole state as one document in the state file format (SPEC §9), consistent at one
    /// instant and holding nothing that is not yet durable (`mcp-authd state export`).
    async fn export_state(&self) -> StoreResult<StateDocument>;
    /// Loads an exported document into an empty store, atomically (`mcp-authd state
    /// import`); a store holding any record is refused with [`ImportError::NotEmpty`] and left
    /// as it was. `state` must be of the current version ([`StateDocument::upgrade`]).
    async fn import_state(&self, state: StateDocument) -> Result<(), ImportError>;
    /// Deletes what expired by `now`: codes, consent tickets, refresh families and deny-list
    /// entries; how many records went. Safe to run at any time and on every replica.
    async fn prune_expired(&self, now: u64) -> StoreResult<usize>;
    /// Whether the store can still make changes durable; the reason when it cannot.
    async fn health(&self) -> Result<(), String>;
}

/// Everything the server keeps, behind one handle.
pub trait Store:
    ClientStore + ConsentStore + CodeStore + FamilyStore + DenyList + TicketStore + StateTransfer
{
}

impl<T> Store for T where
    T: ClientStore
        + ConsentStore
        + CodeStore
        + FamilyStore
        + DenyList
        + TicketStore
        + StateTransfer
{
}
