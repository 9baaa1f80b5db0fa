//! Authorization codes: in memory only (SPEC §9), single use, validated before they are
//! consumed.
//!
//! A redeemed code leaves a tombstone naming the refresh-token family it produced, so a replay
//! can revoke what the first redemption issued (OAuth 2.1 §4.1.3). The tombstone keeps what the
//! code was bound to, and only a replay that passes the same check as the first redemption
//! (its own client, redirect URI and PKCE verifier) counts as one: a spent code read from
//! browser history or a callback log and posted by anyone else is merely invalid (SPEC §17).
//!
//! Outstanding (unredeemed, unexpired) codes are bounded per user and in total (SPEC §16,
//! [`CodeLimits`]), and nothing is kept forever: an unredeemed code is dropped once it
//! expires, a tombstone [`TOMBSTONE_SECONDS`] later.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::Grant;
use crate::oauth::error::OAuthError;

/// How long a tombstone outlives its code, in seconds, so late replays are still recognised.
pub const TOMBSTONE_SECONDS: u64 = 600;

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

/// Single-use authorization codes, keyed by the SHA-256 of the code.
pub trait CodeStore: Send + Sync {
    /// Stores a new code, unless its user or the server already holds as many outstanding
    /// codes as the limits allow.
    fn insert(&self, code_hash: String, code: CodeGrant, now: u64) -> Result<(), CodeLimitReached>;

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

    /// Replaces the limits (a configuration reload); codes already issued are kept, and a
    /// store over a lowered limit issues no more until enough are redeemed or expire.
    fn set_limits(&self, limits: CodeLimits);
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
///
/// Expiry is found without scanning: codes are queued in the order they were issued, which
/// is the order they expire in (one code lifetime for all), and every insert first drops the
/// expired ones at the front of the queue. Each code is dequeued once, so the work is
/// constant per code on average; a redeemed code moves to a second queue, ordered the same
/// way, until its tombstone is forgotten. (A reload that shortens
/// `authorizationCodeTtlSeconds` breaks the ordering for one old lifetime: a newer code behind
/// a later-expiring one is dropped when that one is. Until then it still cannot be redeemed,
/// as redemption checks the expiry, but it counts toward the limits; at most 600 s.)
#[derive(Default)]
pub struct MemoryCodeStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    limits: CodeLimits,
    entries: HashMap<String, Entry>,
    /// `(expires_at, code hash)` of every code, in the order issued.
    by_expiry: VecDeque<(u64, String)>,
    /// `(forget_at, code hash)` of redeemed codes whose tombstone outlives their expiry.
    tombstones: VecDeque<(u64, String)>,
    /// Live codes per user (users with none are absent).
    pending_by_user: HashMap<String, usize>,
    /// Live codes in total.
    pending: usize,
}

impl MemoryCodeStore {
    /// An empty store without limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that refuses codes beyond `limits`.
    pub fn with_limits(limits: CodeLimits) -> Self {
        Self {
            inner: Mutex::new(Inner {
                limits,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change below keeps the counts and the map consistent before it can panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many entries (live codes and tombstones) are held; for tests of expiry.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// A live code of `sub` stopped being outstanding (redeemed or expired).
    fn release(&mut self, sub: &str) {
        self.pending = self.pending.saturating_sub(1);
        if let Some(count) = self.pending_by_user.get_mut(sub) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.pending_by_user.remove(sub);
            }
        }
    }

    /// Drops the codes expired by `now` and the tombstones due to be forgotten.
    fn prune(&mut self, now: u64) {
        while self.by_expiry.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, hash)) = self.by_expiry.pop_front() else {
                break;
            };
            match self.entries.get(&hash) {
                // Another entry under the same hash (which would take a SHA-256 collision)
                // has its own place in the queue; anything else here is due.
                Some(Entry::Live(code)) if code.expires_at <= now => {
                    if let Some(Entry::Live(code)) = self.entries.remove(&hash) {
                        self.release(&code.grant.sub);
                    }
                }
                Some(Entry::Redeemed { forget_at, .. }) if *forget_at <= now => {
                    self.entries.remove(&hash);
                }
                Some(Entry::Redeemed { forget_at, .. }) => {
                    let forget_at = *forget_at;
                    self.tombstones.push_back((forget_at, hash));
                }
                _ => {}
            }
        }
        while self.tombstones.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, hash)) = self.tombstones.pop_front() else {
                break;
            };
            if matches!(self.entries.get(&hash), Some(Entry::Redeemed { forget_at, .. }) if *forget_at <= now)
            {
                self.entries.remove(&hash);
            }
        }
    }
}

impl CodeStore for MemoryCodeStore {
    fn insert(&self, code_hash: String, code: CodeGrant, now: u64) -> Result<(), CodeLimitReached> {
        let mut inner = self.lock();
        inner.prune(now);
        if inner.limits.total != 0 && inner.pending >= inner.limits.total {
            return Err(CodeLimitReached::Total);
        }
        let of_user = inner
            .pending_by_user
            .get(&code.grant.sub)
            .copied()
            .unwrap_or(0);
        if inner.limits.per_user != 0 && of_user >= inner.limits.per_user {
            return Err(CodeLimitReached::PerUser);
        }
        inner.pending += 1;
        *inner
            .pending_by_user
            .entry(code.grant.sub.clone())
            .or_insert(0) += 1;
        inner
            .by_expiry
            .push_back((code.expires_at, code_hash.clone()));
        if let Some(Entry::Live(replaced)) = inner.entries.insert(code_hash, Entry::Live(code)) {
            inner.release(&replaced.grant.sub);
        }
        Ok(())
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
                inner.release(&code.grant.sub);
                RedeemOutcome::Redeemed(code)
            }
        }
    }

    fn set_limits(&self, limits: CodeLimits) {
        self.lock().limits = limits;
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
                issuer: String::new(),
            },
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "x".into(),
            expires_at: 100,
        }
    }

    #[test]
    fn a_code_works_once_and_a_replay_names_the_family() {
        let store = MemoryCodeStore::new();
        store.insert("h".into(), code(), 0).unwrap();
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
        store.insert("h".into(), code(), 0).unwrap();
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
        store.insert("h".into(), code(), 0).unwrap();
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

    fn code_of(sub: &str, expires_at: u64) -> CodeGrant {
        let mut code = code();
        code.grant.sub = sub.into();
        code.expires_at = expires_at;
        code
    }

    #[test]
    fn outstanding_codes_are_bounded_per_user_and_in_total() {
        let store = MemoryCodeStore::with_limits(CodeLimits {
            per_user: 2,
            total: 3,
        });
        store.insert("a1".into(), code_of("alice", 100), 0).unwrap();
        store.insert("a2".into(), code_of("alice", 100), 0).unwrap();
        assert_eq!(
            store.insert("a3".into(), code_of("alice", 100), 0),
            Err(CodeLimitReached::PerUser)
        );
        store.insert("b1".into(), code_of("bob", 100), 0).unwrap();
        assert_eq!(
            store.insert("c1".into(), code_of("carol", 100), 0),
            Err(CodeLimitReached::Total)
        );
        // A redemption frees its place; a failed check does not.
        let refuse = |_: &CodeGrant| Err(OAuthError::invalid_grant("no"));
        assert!(matches!(
            store.redeem("a1", 1, "f", &refuse),
            RedeemOutcome::Rejected(_)
        ));
        assert_eq!(
            store.insert("c1".into(), code_of("carol", 100), 1),
            Err(CodeLimitReached::Total)
        );
        assert!(matches!(
            store.redeem("a1", 1, "f", &|_| Ok(())),
            RedeemOutcome::Redeemed(_)
        ));
        store.insert("a3".into(), code_of("alice", 100), 1).unwrap();
        // Expiry frees every place.
        for (i, user) in ["carol", "dave", "erin"].iter().enumerate() {
            store
                .insert(format!("n{i}"), code_of(user, 200), 100)
                .unwrap();
        }
    }

    #[test]
    fn expired_codes_and_old_tombstones_are_dropped() {
        let store = MemoryCodeStore::new();
        for i in 0..1000u64 {
            store
                .insert(format!("c{i}"), code_of("alice", 100 + i), 0)
                .unwrap();
        }
        assert!(matches!(
            store.redeem("c999", 50, "f", &|_| Ok(())),
            RedeemOutcome::Redeemed(_)
        ));
        assert_eq!(store.len(), 1000);
        // At 1100 every code has expired; the one redeemed keeps its tombstone.
        store
            .insert("late".into(), code_of("bob", 2000), 1100)
            .unwrap();
        assert_eq!(store.len(), 2);
        match store.redeem("c999", 1100, "g", &|_| Ok(())) {
            RedeemOutcome::Replayed { family_key } => assert_eq!(family_key, "f"),
            other => panic!("{other:?}"),
        }
        store
            .insert(
                "later".into(),
                code_of("bob", 3000),
                1099 + TOMBSTONE_SECONDS + 1,
            )
            .unwrap();
        assert_eq!(
            store.len(),
            2,
            "the tombstone is forgotten, the live codes stay"
        );
        assert!(!store.is_empty());
    }

    #[test]
    fn expired_and_unknown_codes_are_invalid() {
        let store = MemoryCodeStore::new();
        store.insert("h".into(), code(), 0).unwrap();
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
