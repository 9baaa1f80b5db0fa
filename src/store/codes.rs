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

use super::traits::CodeState;
use crate::model::{CodeGrant, CodeLimitReached, CodeLimits};

/// How long a tombstone outlives its code, in seconds, so late replays are still recognised.
pub const TOMBSTONE_SECONDS: u64 = 600;

enum Entry {
    Live(CodeGrant),
    Redeemed {
        /// What the code was bound to, for checking who replays it.
        code: CodeGrant,
        family_key: String,
        forget_at: u64,
    },
}

/// The in-memory code table of a store that serves one process (SPEC §9: codes are never
/// written to disk). Not locked itself: its owner holds it under the lock that also guards
/// the families, so consuming a code and creating its family are one step.
///
/// Expiry is found without scanning: codes are queued in the order they were issued, which
/// is the order they expire in (one code lifetime for all), and every insert first drops the
/// expired ones at the front of the queue. Each code is dequeued once, so the work is
/// constant per code on average; a redeemed code moves to a second queue, ordered the same
/// way, until its tombstone is forgotten.
#[derive(Default)]
pub struct CodeTable {
    inner: Inner,
}

/// What [`CodeTable::consume`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// The code was live and is now spent, naming the family given.
    Now,
    /// The code had been spent before, by the redemption that created this family.
    Before(String),
    /// Unknown, expired or forgotten.
    Never,
}

#[derive(Default)]
struct Inner {
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

impl CodeTable {
    /// How many entries (live codes and tombstones) are held; for tests of expiry.
    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores a new code, unless its user or the server already holds as many outstanding
    /// codes as `limits` allow.
    pub fn insert(
        &mut self,
        code_hash: &str,
        code: CodeGrant,
        limits: CodeLimits,
        now: u64,
    ) -> Result<(), CodeLimitReached> {
        let inner = &mut self.inner;
        inner.prune(now);
        if limits.total != 0 && inner.pending >= limits.total {
            return Err(CodeLimitReached::Total);
        }
        let of_user = inner
            .pending_by_user
            .get(&code.grant.sub)
            .copied()
            .unwrap_or(0);
        if limits.per_user != 0 && of_user >= limits.per_user {
            return Err(CodeLimitReached::PerUser);
        }
        inner.pending += 1;
        *inner
            .pending_by_user
            .entry(code.grant.sub.clone())
            .or_insert(0) += 1;
        inner
            .by_expiry
            .push_back((code.expires_at, code_hash.to_string()));
        if let Some(Entry::Live(replaced)) = inner
            .entries
            .insert(code_hash.to_string(), Entry::Live(code))
        {
            inner.release(&replaced.grant.sub);
        }
        Ok(())
    }

    /// The code as it stands at `now`.
    pub fn get(&self, code_hash: &str, now: u64) -> Option<CodeState> {
        match self.inner.entries.get(code_hash)? {
            Entry::Live(code) if code.expires_at <= now => None,
            Entry::Live(code) => Some(CodeState::Live(code.clone())),
            Entry::Redeemed {
                code, family_key, ..
            } => Some(CodeState::Spent {
                code: code.clone(),
                family_key: family_key.clone(),
            }),
        }
    }

    /// Spends a live code, recording `family_key` as what it produced.
    pub fn consume(&mut self, code_hash: &str, now: u64, family_key: &str) -> Consumed {
        let inner = &mut self.inner;
        let Some(entry) = inner.entries.get_mut(code_hash) else {
            return Consumed::Never;
        };
        match entry {
            Entry::Redeemed { family_key, .. } => Consumed::Before(family_key.clone()),
            Entry::Live(code) if code.expires_at <= now => Consumed::Never,
            Entry::Live(code) => {
                let code = code.clone();
                let sub = code.grant.sub.clone();
                *entry = Entry::Redeemed {
                    forget_at: code.expires_at.saturating_add(TOMBSTONE_SECONDS),
                    code,
                    family_key: family_key.to_string(),
                };
                inner.release(&sub);
                Consumed::Now
            }
        }
    }

    /// Drops the codes expired by `now` and the tombstones due to be forgotten; how many
    /// entries went.
    pub fn prune(&mut self, now: u64) -> usize {
        let before = self.inner.entries.len();
        self.inner.prune(now);
        before - self.inner.entries.len()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Grant;

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

    const NONE: CodeLimits = CodeLimits {
        per_user: 0,
        total: 0,
    };

    #[test]
    fn a_code_is_spent_once_and_then_names_its_family() {
        let mut table = CodeTable::default();
        table.insert("h", code(), NONE, 0).unwrap();
        assert_eq!(table.get("h", 10), Some(CodeState::Live(code())));
        assert_eq!(table.consume("h", 10, "fam"), Consumed::Now);
        assert_eq!(
            table.consume("h", 11, "other"),
            Consumed::Before("fam".into())
        );
        assert_eq!(
            table.get("h", 11),
            Some(CodeState::Spent {
                code: code(),
                family_key: "fam".into()
            })
        );
    }

    fn code_of(sub: &str, expires_at: u64) -> CodeGrant {
        let mut code = code();
        code.grant.sub = sub.into();
        code.expires_at = expires_at;
        code
    }

    #[test]
    fn outstanding_codes_are_bounded_per_user_and_in_total() {
        let limits = CodeLimits {
            per_user: 2,
            total: 3,
        };
        let mut table = CodeTable::default();
        table
            .insert("a1", code_of("alice", 100), limits, 0)
            .unwrap();
        table
            .insert("a2", code_of("alice", 100), limits, 0)
            .unwrap();
        assert_eq!(
            table.insert("a3", code_of("alice", 100), limits, 0),
            Err(CodeLimitReached::PerUser)
        );
        table.insert("b1", code_of("bob", 100), limits, 0).unwrap();
        assert_eq!(
            table.insert("c1", code_of("carol", 100), limits, 0),
            Err(CodeLimitReached::Total)
        );
        // A redemption frees its place; looking at a code does not.
        assert!(table.get("a1", 1).is_some());
        assert_eq!(
            table.insert("c1", code_of("carol", 100), limits, 1),
            Err(CodeLimitReached::Total)
        );
        assert_eq!(table.consume("a1", 1, "f"), Consumed::Now);
        table
            .insert("a3", code_of("alice", 100), limits, 1)
            .unwrap();
        // Expiry frees every place.
        for (i, user) in ["carol", "dave", "erin"].iter().enumerate() {
            table
                .insert(&format!("n{i}"), code_of(user, 200), limits, 100)
                .unwrap();
        }
    }

    #[test]
    fn expired_codes_and_old_tombstones_are_dropped() {
        let mut table = CodeTable::default();
        for i in 0..1000u64 {
            table
                .insert(&format!("c{i}"), code_of("alice", 100 + i), NONE, 0)
                .unwrap();
        }
        assert_eq!(table.consume("c999", 50, "f"), Consumed::Now);
        assert_eq!(table.len(), 1000);
        // At 1100 every code has expired; the one redeemed keeps its tombstone.
        table
            .insert("late", code_of("bob", 2000), NONE, 1100)
            .unwrap();
        assert_eq!(table.len(), 2);
        assert_eq!(
            table.consume("c999", 1100, "g"),
            Consumed::Before("f".into())
        );
        assert_eq!(table.prune(1099 + TOMBSTONE_SECONDS + 1), 1);
        assert_eq!(
            table.len(),
            1,
            "the tombstone is forgotten, the live code stays"
        );
        assert!(!table.is_empty());
    }

    #[test]
    fn expired_and_unknown_codes_are_never_consumed() {
        let mut table = CodeTable::default();
        table.insert("h", code(), NONE, 0).unwrap();
        assert_eq!(table.get("h", 100), None);
        assert_eq!(table.consume("h", 100, "f"), Consumed::Never);
        assert_eq!(table.consume("nope", 1, "f"), Consumed::Never);
    }
}
