//! The persisted state document and the one function that changes it.
//!
//! The live store, the journal replay at boot and the tests all go through
//! [`StateDocument::apply`], so what is replayed is exactly what was done.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{Client, RefreshFamily};

/// The state file format version this build reads and writes.
pub const STATE_VERSION: u32 = 1;

fn current_version() -> u32 {
    STATE_VERSION
}

/// The content of `auth_server.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDocument {
    /// The format version.
    #[serde(default = "current_version")]
    pub version: u32,
    /// The sequence number of the last mutation included.
    #[serde(default)]
    pub seq: u64,
    /// Registered clients by id.
    #[serde(default)]
    pub clients: BTreeMap<String, Client>,
    /// Consents: client id → user → when approved.
    #[serde(default)]
    pub consents: BTreeMap<String, BTreeMap<String, u64>>,
    /// Refresh-token families by family id.
    #[serde(default)]
    pub refresh_tokens: HashMap<String, RefreshFamily>,
    /// Revoked access tokens: `jti` → the token's `exp` (kept until then).
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub revoked_access_tokens: HashMap<String, u64>,
}

impl Default for StateDocument {
    /// An empty document of the current version (a derived `Default` would say version 0,
    /// which no build can read back).
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            seq: 0,
            clients: BTreeMap::new(),
            consents: BTreeMap::new(),
            refresh_tokens: HashMap::new(),
            revoked_access_tokens: HashMap::new(),
        }
    }
}

/// One change to the state, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mutation {
    /// Adds or replaces a client.
    PutClient {
        /// The client.
        client: Client,
    },
    /// Removes a client with its consents and families.
    RemoveClient {
        /// The client id.
        client_id: String,
    },
    /// Records a user's approval of a client.
    GrantConsent {
        /// The client id.
        client_id: String,
        /// The user.
        sub: String,
        /// When.
        at: u64,
    },
    /// Starts a refresh-token family.
    PutFamily {
        /// The family id.
        family_id: String,
        /// The family.
        family: RefreshFamily,
    },
    /// Rotates a family to a new live token.
    Rotate {
        /// The family id.
        family_id: String,
        /// Hash of the new live token.
        current_hash: String,
        /// Hash of the token it replaces.
        previous_hash: String,
        /// When.
        rotated_at: u64,
        /// When the new token expires.
        expires_at: u64,
    },
    /// Revokes a family.
    RevokeFamily {
        /// The family id.
        family_id: String,
    },
    /// Revokes every family of a user (offboarding).
    RevokeUser {
        /// The user.
        sub: String,
    },
    /// Puts an access token on the deny-list until it expires.
    DenyAccessToken {
        /// The token's `jti`.
        jti: String,
        /// The token's `exp`.
        exp: u64,
    },
}

impl StateDocument {
    /// Applies one mutation.
    pub fn apply(&mut self, mutation: &Mutation) {
        match mutation {
            Mutation::PutClient { client } => {
                self.clients
                    .insert(client.client_id.clone(), client.clone());
            }
            Mutation::RemoveClient { client_id } => {
                self.clients.remove(client_id);
                self.consents.remove(client_id);
                self.refresh_tokens
                    .retain(|_, f| &f.grant.client_id != client_id);
            }
            Mutation::GrantConsent { client_id, sub, at } => {
                self.consents
                    .entry(client_id.clone())
                    .or_default()
                    .insert(sub.clone(), *at);
            }
            Mutation::PutFamily { family_id, family } => {
                self.refresh_tokens
                    .insert(family_id.clone(), family.clone());
            }
            Mutation::Rotate {
                family_id,
                current_hash,
                previous_hash,
                rotated_at,
                expires_at,
            } => {
                if let Some(family) = self.refresh_tokens.get_mut(family_id) {
                    family.previous_hash = Some(previous_hash.clone());
                    family.current_hash = current_hash.clone();
                    family.rotated_at = Some(*rotated_at);
                    family.expires_at = *expires_at;
                }
            }
            Mutation::RevokeFamily { family_id } => {
                self.refresh_tokens.remove(family_id);
            }
            Mutation::RevokeUser { sub } => {
                self.refresh_tokens.retain(|_, f| &f.grant.sub != sub);
            }
            Mutation::DenyAccessToken { jti, exp } => {
                self.revoked_access_tokens.insert(jti.clone(), *exp);
            }
        }
    }

    /// Drops families whose live token expired before `now`, and deny-list entries for
    /// access tokens that have expired anyway.
    pub fn prune_expired(&mut self, now: u64) {
        self.refresh_tokens.retain(|_, f| f.expires_at > now);
        self.revoked_access_tokens.retain(|_, exp| *exp > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_document_round_trips_through_json() {
        let text = serde_json::to_string(&StateDocument::default()).unwrap();
        let back: StateDocument = serde_json::from_str(&text).unwrap();
        assert_eq!(back.version, STATE_VERSION);
        assert_eq!(back, StateDocument::default());
    }
}
