//! Authorization codes: in memory only (SPEC §9), single use, validated before they are
//! consumed.
//!
//! A redeemed code leaves a tombstone naming the refresh-token family it produced, so a replay
//! can revoke what the first redemption issued (OAuth 2.1 §4.1.3). The tombstone keeps what the
//! code was bound to, and only a replay that passes the same check as the first redemption
//! (its own client, redirect URI and PKCE verifier) counts as one: a spent code read from
//! browser history or a callback log and posted by anyone else is merely invalid (SPEC §17).

use std::collections::HashMap;
use std::sync::Mutex;

use super::Grant;
use crate::oauth::error::OAuthError;

/// How long a tombstone outlives its code, in seconds, so late replays are still recognised.
const TOMBSTONE_SECONDS: u64 = 600;

/// Sweep expired entries every this many inserts.
const SWEEP_EVERY: u64 = 1024;

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

/// The result of presenting a code.
#[derive(Debug)]
pub enum RedeemOutcome {
    /// The code passed the check and is now consumed; the tokens it yields belong to
    /// `family_key`.
    Redeemed(CodeGrant),
    /// The check refused the request; the code is untouched and can still be used.
    Rejected(OAuthError),
    /// The code had already been redeemed and was presented again by a request that passes the
    /// check (its own client, with its verifier); the family it produced should be revoked.
    Replayed {
        /// The family issued by the first redemption.
        family_key: String,
    },
    /// Unknown, expired, or already redeemed and presented by a request that fails the check.
    Invalid,
}

/// Single-use authorization codes, keyed by the SHA-256 of the code.
pub trait CodeStore: Send + Sync {
    /// Stores a new code.
    fn insert(&self, code_hash: String, code: CodeGrant, now: u64);

    /// Atomically: finds the code, runs `check` on it, and if that passes consumes it,
    /// recording `family_key` as what it produced. A code already consumed is a replay only if
    /// `check` passes for it too; otherwise it is [`RedeemOutcome::Invalid`].
    fn redeem(
        &self,
        code_hash: &str,
        now: u64,
        family_key: &str,
        check: &dyn Fn(&CodeGrant) -> Result<(), OAuthError>,
    ) -> RedeemOutcome;

    /// Whether the code was replayed after `redeem` returned; called once the tokens are
    /// stored, so a replay racing the first redemption still revokes its family.
    fn was_replayed(&self, code_hash: &str) -> bool;
}

enum Entry {
    Live(CodeGrant),
    Redeemed {
        /// What the code was bound to, for checking who replays it.
        code: CodeGrant,
        family_key: String,
        is_replayed: bool,
        forget_at: u64,
    },
}

/// The in-process [`CodeStore`].
#[derive(Default)]
pub struct MemoryCodeStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    inserts: u64,
}

impl MemoryCodeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CodeStore for MemoryCodeStore {
    fn insert(&self, code_hash: String, code: CodeGrant, now: u64) {
        let mut inner = self.lock();
        inner.inserts += 1;
        if inner.inserts.is_multiple_of(SWEEP_EVERY) {
            inner.entries.retain(|_, e| match e {
                Entry::Live(c) => c.expires_at.saturating_add(TOMBSTONE_SECONDS) > now,
                Entry::Redeemed { forget_at, .. } => *forget_at > now,
            });
        }
        inner.entries.insert(code_hash, Entry::Live(code));
    }

    fn redeem(
        &self,
        code_hash: &str,
        now: u64,
        family_key: &str,
        check: &dyn Fn(&CodeGrant) -> Result<(), OAuthError>,
    ) -> RedeemOutcome {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(code_hash) else {
            return RedeemOutcome::Invalid;
        };
        match entry {
            Entry::Redeemed {
                code,
                family_key,
                is_replayed,
                ..
            } => {
                // Anyone may hold a spent code (browser history, callback logs); only its own
                // client, proving the same binding as the first redemption, may end what it
                // issued.
                if check(code).is_err() {
                    return RedeemOutcome::Invalid;
                }
                *is_replayed = true;
                RedeemOutcome::Replayed {
                    family_key: family_key.clone(),
                }
            }
            Entry::Live(code) if code.expires_at <= now => RedeemOutcome::Invalid,
            Entry::Live(code) => {
                if let Err(e) = check(code) {
                    return RedeemOutcome::Rejected(e);
                }
                let code = code.clone();
                *entry = Entry::Redeemed {
                    code: code.clone(),
                    family_key: family_key.to_string(),
                    is_replayed: false,
                    forget_at: code.expires_at.saturating_add(TOMBSTONE_SECONDS),
                };
                RedeemOutcome::Redeemed(code)
            }
        }
    }

    fn was_replayed(&self, code_hash: &str) -> bool {
        matches!(
            self.lock().entries.get(code_hash),
            Some(Entry::Redeemed {
                is_replayed: true,
                ..
            })
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> CodeGrant {
        CodeGrant {
            grant: Grant {
                client_id: "c".into(),
                sub: "alice".into(),
                groups: vec![],
                scope: String::new(),
                resource: "https://r".into(),
            },
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "x".into(),
            expires_at: 100,
        }
    }

    #[test]
    fn a_code_works_once_and_a_replay_names_the_family() {
        let store = MemoryCodeStore::new();
        store.insert("h".into(), code(), 0);
        assert!(matches!(
            store.redeem("h", 10, "fam", &|_| Ok(())),
            RedeemOutcome::Redeemed(_)
        ));
        assert!(!store.was_replayed("h"));
        match store.redeem("h", 11, "other", &|_| Ok(())) {
            RedeemOutcome::Replayed { family_key } => assert_eq!(family_key, "fam"),
            other => panic!("{other:?}"),
        }
        assert!(store.was_replayed("h"));
    }

    #[test]
    fn a_spent_code_failing_the_check_is_invalid_and_not_a_replay() {
        let store = MemoryCodeStore::new();
        store.insert("h".into(), code(), 0);
        assert!(matches!(
            store.redeem("h", 10, "fam", &|_| Ok(())),
            RedeemOutcome::Redeemed(_)
        ));
        let stranger = |c: &CodeGrant| {
            if c.grant.client_id == "other" {
                Ok(())
            } else {
                Err(OAuthError::invalid_grant("another client"))
            }
        };
        assert!(matches!(
            store.redeem("h", 11, "x", &stranger),
            RedeemOutcome::Invalid
        ));
        assert!(!store.was_replayed("h"));
    }

    #[test]
    fn a_failed_check_does_not_burn_the_code() {
        let store = MemoryCodeStore::new();
        store.insert("h".into(), code(), 0);
        let refuse = |_: &CodeGrant| Err(OAuthError::invalid_grant("no"));
        assert!(matches!(
            store.redeem("h", 10, "f", &refuse),
            RedeemOutcome::Rejected(_)
        ));
        assert!(matches!(
            store.redeem("h", 10, "f", &|_| Ok(())),
            RedeemOutcome::Redeemed(_)
        ));
    }

    #[test]
    fn expired_and_unknown_codes_are_invalid() {
        let store = MemoryCodeStore::new();
        store.insert("h".into(), code(), 0);
        assert!(matches!(
            store.redeem("h", 100, "f", &|_| Ok(())),
            RedeemOutcome::Invalid
        ));
        assert!(matches!(
            store.redeem("nope", 1, "f", &|_| Ok(())),
            RedeemOutcome::Invalid
        ));
    }
}
