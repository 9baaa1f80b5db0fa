//! The persisted state document and the one function that changes it.
//!
//! The live store, the journal replay at boot and the tests all go through
//! [`StateDocument::apply`], so what is replayed is exactly what was done.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Client, Consent, RefreshFamily, Registration, unique_keys};
use crate::model::{Scope, family_key};

/// The state file format version this build writes.
///
/// Version 2 keys refresh-token families by [`family_key`] (a hash of
/// the family id) where version 1 used the family id itself, half of every refresh token in
/// clear. Version 1 files are still read: [`StateDocument::upgrade`] re-keys them.
pub const STATE_VERSION: u32 = 2;

/// The oldest version this build can upgrade.
pub const OLDEST_READABLE_VERSION: u32 = 1;

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
    #[serde(default, deserialize_with = "unique_keys::map")]
    pub clients: BTreeMap<String, Client>,
    /// Consents: client id → user → when approved and for which scopes. (Files from before
    /// consent was bound to scope hold the time alone; see [`Consent`].)
    #[serde(default, deserialize_with = "unique_keys::nested")]
    pub consents: BTreeMap<String, BTreeMap<String, Consent>>,
    /// Refresh-token families by family key (see [`family_key`]).
    /// Shared, so that the copy a compaction takes under the lock costs a reference count
    /// per family rather than a deep copy (about 150 ms at 100 000 families); a change to a
    /// family the copy still holds copies that family first ([`Arc::make_mut`]).
    #[serde(default, deserialize_with = "unique_keys::map")]
    pub refresh_tokens: HashMap<String, Arc<RefreshFamily>>,
    /// Revoked access tokens: `jti` → the token's `exp` (kept until then).
    #[serde(
        default,
        skip_serializing_if = "HashMap::is_empty",
        deserialize_with = "unique_keys::map"
    )]
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
    /// Records a user's approval of a client for a scope; the consent then covers the union
    /// of it and what was approved before.
    GrantConsent {
        /// The client id.
        client_id: String,
        /// The user.
        sub: String,
        /// When.
        at: u64,
        /// The scopes approved, space-separated (absent in entries from before consent was
        /// bound to scope, which approved none).
        #[serde(default)]
        scope: String,
    },
    /// Starts a refresh-token family.
    PutFamily {
        /// The family key (the field keeps its version 1 name, when it held the id).
        family_id: String,
        /// The family.
        family: RefreshFamily,
    },
    /// Rotates a family to a new live token.
    Rotate {
        /// The family key (the field keeps its version 1 name, when it held the id).
        family_id: String,
        /// Hash of the new live token.
        current_hash: String,
        /// Hash of the token it replaces.
        previous_hash: String,
        /// When.
        rotated_at: u64,
        /// When the new token expires.
        expires_at: u64,
        /// The access token the rotation answered with (absent in entries of builds that
        /// did not record it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<super::RotationAnswer>,
    },
    /// Revokes a family.
    RevokeFamily {
        /// The family key (the field keeps its version 1 name, when it held the id).
        family_id: String,
    },
    /// Revokes every family of a user (offboarding).
    RevokeUser {
        /// The user.
        sub: String,
    },
    /// Removes dynamically registered clients that were never used: no consent and no
    /// refresh-token family. Applying it checks that again, so replaying it can never remove
    /// a client that gained a grant in between.
    CollectUnusedClients {
        /// The client ids.
        client_ids: Vec<String>,
    },
    /// Revokes every family of a client, leaving the client and its consents (`mcp-authd
    /// tokens revoke --client`).
    RevokeClientFamilies {
        /// The client id.
        client_id: String,
    },
    /// Withdraws a user's consents, for one client or for all, together with the user's
    /// families for the same clients (`mcp-authd consents revoke`): access given with the
    /// approval ends with it.
    RevokeConsents {
        /// The user.
        sub: String,
        /// The client, or every client when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Fills an empty state with the records of an exported document (`mcp-authd state
    /// import`): one entry, so an import is all there or not at all. Only journaled after the
    /// store was found empty, so replaying it replaces nothing.
    ImportState {
        /// The imported document (its `version` is current; its `seq` is not used).
        state: Box<StateDocument>,
    },
    /// Puts an access token on the deny-list until it expires.
    DenyAccessToken {
        /// The token's `jti`.
        jti: String,
        /// The token's `exp`.
        exp: u64,
    },
    /// Drops the refresh families and deny-list entries expired by `now` (the background
    /// clean-up, by the server's clock; replayed with the same `now`, it drops the same).
    PruneExpired {
        /// The clean-up's time, seconds since the epoch.
        now: u64,
    },
}

impl StateDocument {
    /// Brings a document of an older readable version to [`STATE_VERSION`]; whether anything
    /// changed. Run after the journal is replayed, as an old journal holds old-style keys too.
    pub fn upgrade(&mut self) -> bool {
        if self.version >= STATE_VERSION {
            return false;
        }
        // 1 → 2: family ids become family keys.
        self.refresh_tokens = std::mem::take(&mut self.refresh_tokens)
            .into_iter()
            .map(|(id, family)| (family_key(&id), family))
            .collect();
        self.version = STATE_VERSION;
        true
    }

    /// Whether the document holds no record at all: no client, consent, refresh-token family
    /// or deny-list entry (what `state import` requires of its target).
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
            && self.consents.values().all(BTreeMap::is_empty)
            && self.refresh_tokens.is_empty()
            && self.revoked_access_tokens.is_empty()
    }

    /// How many consents (user, client pairs) the document holds.
    pub fn consent_count(&self) -> usize {
        self.consents.values().map(BTreeMap::len).sum()
    }

    /// The document as `mcp-authd state export` writes it: the state file format, indented,
    /// with every object's keys in sorted order, so that two exports of the same state are the
    /// same bytes (families are kept in a hash map, whose order changes from run to run).
    pub fn to_export_json(&self) -> serde_json::Result<String> {
        // serde_json's own map (without the `preserve_order` feature) is sorted by key.
        let value = serde_json::to_value(self)?;
        let mut text = serde_json::to_string_pretty(&value)?;
        text.push('\n');
        Ok(text)
    }

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
            Mutation::GrantConsent {
                client_id,
                sub,
                at,
                scope,
            } => {
                let consents = self.consents.entry(client_id.clone()).or_default();
                let approved = match consents.get(sub) {
                    Some(before) => Scope::parse(&before.scope).union(&Scope::parse(scope)),
                    None => Scope::parse(scope),
                };
                consents.insert(
                    sub.clone(),
                    Consent {
                        at: *at,
                        scope: approved.to_string(),
                    },
                );
            }
            Mutation::PutFamily { family_id, family } => {
                self.refresh_tokens
                    .insert(family_id.clone(), Arc::new(family.clone()));
            }
            Mutation::Rotate {
                family_id,
                current_hash,
                previous_hash,
                rotated_at,
                expires_at,
                answer,
            } => {
                if let Some(family) = self.refresh_tokens.get_mut(family_id) {
                    let family = Arc::make_mut(family);
                    family.previous_hash = Some(previous_hash.clone());
                    family.current_hash = current_hash.clone();
                    family.rotated_at = Some(*rotated_at);
                    family.expires_at = *expires_at;
                    family.rotation_answer = answer.clone();
                }
            }
            Mutation::RevokeFamily { family_id } => {
                self.refresh_tokens.remove(family_id);
            }
            Mutation::RevokeUser { sub } => {
                self.refresh_tokens.retain(|_, f| &f.grant.sub != sub);
            }
            Mutation::RevokeClientFamilies { client_id } => {
                self.refresh_tokens
                    .retain(|_, f| &f.grant.client_id != client_id);
            }
            Mutation::RevokeConsents { sub, client_id } => {
                let is_named = |id: &str| client_id.as_deref().is_none_or(|c| c == id);
                for (id, users) in &mut self.consents {
                    if is_named(id) {
                        users.remove(sub);
                    }
                }
                self.consents
                    .retain(|id, users| !(is_named(id) && users.is_empty()));
                self.refresh_tokens
                    .retain(|_, f| !(&f.grant.sub == sub && is_named(&f.grant.client_id)));
            }
            Mutation::ImportState { state } => {
                self.clients = state.clients.clone();
                self.consents = state.consents.clone();
                self.refresh_tokens = state.refresh_tokens.clone();
                self.revoked_access_tokens = state.revoked_access_tokens.clone();
            }
            Mutation::DenyAccessToken { jti, exp } => {
                self.revoked_access_tokens.insert(jti.clone(), *exp);
            }
            Mutation::PruneExpired { now } => {
                self.prune_expired(*now);
            }
            Mutation::CollectUnusedClients { client_ids } => {
                let in_use = self.clients_with_families();
                let unused: Vec<String> = client_ids
                    .iter()
                    .filter(|id| self.is_unused_dynamic(id, &in_use))
                    .cloned()
                    .collect();
                for client_id in &unused {
                    self.clients.remove(client_id);
                    self.consents.remove(client_id);
                }
            }
        }
    }

    /// Dynamically registered clients registered before `older_than` (seconds since the
    /// epoch) that no user has approved and that hold no refresh-token family.
    /// Pre-provisioned clients are never listed.
    pub fn unused_dynamic_clients(&self, older_than: u64) -> Vec<String> {
        let in_use = self.clients_with_families();
        self.clients
            .values()
            .filter(|c| c.client_id_issued_at < older_than)
            .filter(|c| self.is_unused_dynamic(&c.client_id, &in_use))
            .map(|c| c.client_id.clone())
            .collect()
    }

    /// The dynamically registered client registered longest before `older_than` (seconds
    /// since the epoch) that no user has approved and that holds no refresh-token family: the
    /// one evicted at `maxDynamicClients`. Ties go to the smaller id, so the choice is the
    /// same wherever it is made.
    pub fn oldest_unused_dynamic_client(&self, older_than: u64) -> Option<String> {
        let in_use = self.clients_with_families();
        self.clients
            .values()
            .filter(|c| c.client_id_issued_at < older_than)
            .filter(|c| self.is_unused_dynamic(&c.client_id, &in_use))
            .min_by(|a, b| {
                (a.client_id_issued_at, &a.client_id).cmp(&(b.client_id_issued_at, &b.client_id))
            })
            .map(|c| c.client_id.clone())
    }

    /// Whether `cap` or more clients were registered dynamically (`maxDynamicClients`; 0 is
    /// no cap). Counting scans every client, so it runs only once the table as a whole has
    /// reached the cap: below it, the dynamic clients are below it too. (Registration calls
    /// this under the state lock; counting each time cost about 26 instructions per client.)
    pub fn dynamic_clients_reach(&self, cap: usize) -> bool {
        cap != 0 && self.clients.len() >= cap && self.dynamic_client_count() >= cap
    }

    /// How many clients were registered dynamically.
    pub fn dynamic_client_count(&self) -> usize {
        self.clients
            .values()
            .filter(|c| c.registration == Registration::Dynamic)
            .count()
    }

    fn clients_with_families(&self) -> HashSet<&str> {
        self.refresh_tokens
            .values()
            .map(|f| f.grant.client_id.as_str())
            .collect()
    }

    fn is_unused_dynamic(&self, client_id: &str, with_families: &HashSet<&str>) -> bool {
        self.clients
            .get(client_id)
            .is_some_and(|c| c.registration == Registration::Dynamic)
            && self.consents.get(client_id).is_none_or(BTreeMap::is_empty)
            && !with_families.contains(client_id)
    }

    /// Drops families whose live token expired before `now`, and deny-list entries for
    /// access tokens that have expired anyway.
    pub fn prune_expired(&mut self, now: u64) {
        self.refresh_tokens.retain(|_, f| f.expires_at > now);
        self.revoked_access_tokens.retain(|_, exp| *exp > now);
    }

    /// How many records [`Self::prune_expired`] would drop at `now`.
    pub fn expired_count(&self, now: u64) -> usize {
        self.refresh_tokens
            .values()
            .filter(|f| f.expires_at <= now)
            .count()
            + self
                .revoked_access_tokens
                .values()
                .filter(|exp| **exp <= now)
                .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, registration: Registration, at: u64) -> Client {
        Client {
            client_id: id.into(),
            client_name: id.into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            token_endpoint_auth_method: super::super::AuthMethod::None,
            grant_types: vec!["authorization_code".into()],
            response_types: vec!["code".into()],
            scope: String::new(),
            secret_hash: None,
            client_id_issued_at: at,
            registration,
            application_type: None,
        }
    }

    #[test]
    fn only_old_unused_dynamic_clients_are_collected() {
        let mut doc = StateDocument::default();
        for c in [
            client("old-unused", Registration::Dynamic, 100),
            client("new-unused", Registration::Dynamic, 1000),
            client("old-consented", Registration::Dynamic, 100),
            client("old-with-family", Registration::Dynamic, 100),
            client("old-provisioned", Registration::Provisioned, 100),
        ] {
            doc.apply(&Mutation::PutClient { client: c });
        }
        doc.apply(&Mutation::GrantConsent {
            client_id: "old-consented".into(),
            sub: "alice".into(),
            at: 100,
            scope: String::new(),
        });
        doc.apply(&Mutation::PutFamily {
            family_id: "f".into(),
            family: RefreshFamily {
                grant: super::super::Grant {
                    client_id: "old-with-family".into(),
                    sub: "bob".into(),
                    groups: vec![],
                    scope: String::new(),
                    resource: "https://mcp.example.com/mcp".into(),
                    issuer: String::new(),
                },
                current_hash: "h".into(),
                previous_hash: None,
                rotated_at: None,
                created_at: 100,
                expires_at: 10_000,
                rotation_answer: None,
            },
        });
        assert_eq!(doc.dynamic_client_count(), 4);
        // Five clients, four of them dynamic: a cap of 4 is reached, 5 is not (the provisioned
        // client counts toward the table but not toward the cap), and 0 is no cap.
        assert!(doc.dynamic_clients_reach(4));
        assert!(doc.dynamic_clients_reach(1));
        assert!(!doc.dynamic_clients_reach(5));
        assert!(!doc.dynamic_clients_reach(6));
        assert!(!doc.dynamic_clients_reach(0));
        assert_eq!(doc.unused_dynamic_clients(500), vec!["old-unused"]);
        assert!(doc.unused_dynamic_clients(100).is_empty());

        // Replaying a collection re-checks: every listed client that is in use stays.
        doc.apply(&Mutation::CollectUnusedClients {
            client_ids: [
                "old-unused",
                "old-consented",
                "old-with-family",
                "old-provisioned",
                "missing",
            ]
            .map(String::from)
            .to_vec(),
        });
        let left: Vec<&str> = doc.clients.keys().map(String::as_str).collect();
        assert_eq!(
            left,
            vec![
                "new-unused",
                "old-consented",
                "old-provisioned",
                "old-with-family"
            ]
        );
    }

    #[test]
    fn a_copy_taken_for_a_snapshot_keeps_its_families_as_they_were() {
        let mut doc = StateDocument::default();
        let family = RefreshFamily {
            grant: super::super::Grant {
                client_id: "c".into(),
                sub: "alice".into(),
                groups: vec![],
                scope: String::new(),
                resource: "https://mcp.example.com/mcp".into(),
                issuer: String::new(),
            },
            current_hash: "h0".into(),
            previous_hash: None,
            rotated_at: None,
            created_at: 100,
            expires_at: 10_000,
            rotation_answer: None,
        };
        doc.apply(&Mutation::PutFamily {
            family_id: "k".into(),
            family,
        });
        let copy = doc.clone();
        doc.apply(&Mutation::Rotate {
            family_id: "k".into(),
            current_hash: "h1".into(),
            previous_hash: "h0".into(),
            rotated_at: 200,
            expires_at: 20_000,
            answer: None,
        });
        assert_eq!(doc.refresh_tokens["k"].current_hash, "h1");
        assert_eq!(copy.refresh_tokens["k"].current_hash, "h0");
        assert_eq!(copy.refresh_tokens["k"].previous_hash, None);
    }

    #[test]
    fn consents_grow_by_union_and_unscoped_ones_cover_no_scope() {
        let mut doc = StateDocument::default();
        let grant = |scope: &str, at| Mutation::GrantConsent {
            client_id: "c".into(),
            sub: "alice".into(),
            at,
            scope: scope.into(),
        };
        doc.apply(&grant("read", 1));
        doc.apply(&grant("write read", 2));
        assert_eq!(
            doc.consents["c"]["alice"],
            Consent {
                at: 2,
                scope: "read write".into()
            }
        );
        // A journal entry written before consent was bound to scope approves nothing more.
        let old_entry: Mutation =
            serde_json::from_str(r#"{"op":"grant_consent","client_id":"c","sub":"bob","at":3}"#)
                .unwrap();
        doc.apply(&old_entry);
        assert_eq!(doc.consents["c"]["bob"].scope, "");

        // A document from before: the bare time loads as a consent covering no scope; it is
        // written back as an object.
        let text = r#"{"version":2,"consents":{"c":{"alice":5}}}"#;
        let old: StateDocument = serde_json::from_str(text).unwrap();
        assert_eq!(
            old.consents["c"]["alice"],
            Consent {
                at: 5,
                scope: String::new()
            }
        );
        let written = serde_json::to_string(&old).unwrap();
        assert!(
            written.contains(r#""alice":{"at":5,"scope":""}"#),
            "{written}"
        );
        let back: StateDocument = serde_json::from_str(&written).unwrap();
        assert_eq!(back, old);
        for bad in [
            r#"{"consents":{"c":{"alice":{"at":5}}}}"#,
            r#"{"consents":{"c":{"alice":{"at":5,"scope":"","x":1}}}}"#,
            r#"{"consents":{"c":{"alice":"5"}}}"#,
        ] {
            assert!(serde_json::from_str::<StateDocument>(bad).is_err(), "{bad}");
        }
    }

    fn family(client_id: &str, sub: &str) -> RefreshFamily {
        RefreshFamily {
            grant: super::super::Grant {
                client_id: client_id.into(),
                sub: sub.into(),
                groups: vec![],
                scope: String::new(),
                resource: "https://mcp.example.com/mcp".into(),
                issuer: String::new(),
            },
            current_hash: format!("h-{client_id}-{sub}"),
            previous_hash: None,
            rotated_at: None,
            created_at: 100,
            expires_at: 10_000,
            rotation_answer: None,
        }
    }

    /// Clients `a` and `b`; alice and bob approved both and hold a family with each.
    fn two_users_two_clients() -> StateDocument {
        let mut doc = StateDocument::default();
        for id in ["a", "b"] {
            doc.apply(&Mutation::PutClient {
                client: client(id, Registration::Dynamic, 1),
            });
            for sub in ["alice", "bob"] {
                doc.apply(&Mutation::GrantConsent {
                    client_id: id.into(),
                    sub: sub.into(),
                    at: 5,
                    scope: "read".into(),
                });
                doc.apply(&Mutation::PutFamily {
                    family_id: format!("{id}-{sub}"),
                    family: family(id, sub),
                });
            }
        }
        doc
    }

    fn family_keys(doc: &StateDocument) -> Vec<&str> {
        let mut keys: Vec<&str> = doc.refresh_tokens.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn revoking_a_consent_ends_that_users_sign_ins_with_that_client_only() {
        let mut doc = two_users_two_clients();
        doc.apply(&Mutation::RevokeConsents {
            sub: "alice".into(),
            client_id: Some("a".into()),
        });
        assert!(!doc.consents["a"].contains_key("alice"));
        assert!(doc.consents["a"].contains_key("bob"));
        assert!(doc.consents["b"].contains_key("alice"));
        assert_eq!(family_keys(&doc), ["a-bob", "b-alice", "b-bob"]);
        assert_eq!(doc.consent_count(), 3);

        // Every client: alice is gone everywhere, bob untouched; clients stay.
        doc.apply(&Mutation::RevokeConsents {
            sub: "alice".into(),
            client_id: None,
        });
        assert_eq!(family_keys(&doc), ["a-bob", "b-bob"]);
        assert_eq!(doc.consent_count(), 2);
        assert_eq!(doc.clients.len(), 2);

        // Bob's last consent to `b` leaves no empty map behind.
        doc.apply(&Mutation::RevokeConsents {
            sub: "bob".into(),
            client_id: Some("b".into()),
        });
        assert!(!doc.consents.contains_key("b"));
        assert_eq!(family_keys(&doc), ["a-bob"]);
    }

    #[test]
    fn revoking_a_clients_families_keeps_the_client_and_its_consents() {
        let mut doc = two_users_two_clients();
        doc.apply(&Mutation::RevokeClientFamilies {
            client_id: "a".into(),
        });
        assert_eq!(family_keys(&doc), ["b-alice", "b-bob"]);
        assert_eq!(doc.clients.len(), 2);
        assert_eq!(doc.consent_count(), 4);
    }

    #[test]
    fn an_import_fills_an_empty_document_and_replays_the_same() {
        let exported = two_users_two_clients();
        let mut target = StateDocument::default();
        assert!(target.is_empty());
        let mutation = Mutation::ImportState {
            state: Box::new(exported.clone()),
        };
        target.apply(&mutation);
        target.seq = 1;
        assert!(!target.is_empty());
        assert_eq!(
            StateDocument {
                seq: exported.seq,
                ..target.clone()
            },
            exported
        );
        // As journaled and replayed.
        let line = serde_json::to_string(&mutation).unwrap();
        let mut replayed = StateDocument::default();
        replayed.apply(&serde_json::from_str(&line).unwrap());
        replayed.seq = 1;
        assert_eq!(replayed, target);
        // An empty consent map is no record.
        let mut doc = StateDocument::default();
        doc.consents.insert("a".into(), BTreeMap::new());
        assert!(doc.is_empty());
    }

    #[test]
    fn the_export_is_sorted_and_loads_back_as_the_same_document() {
        let doc = two_users_two_clients();
        let text = doc.to_export_json().unwrap();
        assert_eq!(text, doc.clone().to_export_json().unwrap());
        let (a, b) = (
            text.find("\"a-alice\"").unwrap(),
            text.find("\"b-bob\"").unwrap(),
        );
        assert!(a < b, "families in key order");
        let back: StateDocument = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn an_empty_document_round_trips_through_json() {
        let text = serde_json::to_string(&StateDocument::default()).unwrap();
        let back: StateDocument = serde_json::from_str(&text).unwrap();
        assert_eq!(back.version, STATE_VERSION);
        assert_eq!(back, StateDocument::default());
    }
}
