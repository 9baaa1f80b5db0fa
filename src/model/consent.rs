//! Consents: a user's remembered approval of a client (SPEC §13).

use serde::{Deserialize, Serialize};

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

/// One user's consent to one client, as
/// [`ConsentStore::consents`](crate::store::ConsentStore::consents) lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEntry {
    /// The client.
    pub client_id: String,
    /// The user.
    pub sub: String,
    /// When, and for which scopes.
    pub consent: Consent,
}

/// What [`ConsentStore::revoke_consents`](crate::store::ConsentStore::revoke_consents)
/// removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RevokedAccess {
    /// Consents withdrawn.
    pub consents: usize,
    /// Refresh-token families (sign-ins) revoked with them.
    pub families: usize,
}
