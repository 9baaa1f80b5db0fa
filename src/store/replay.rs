//! Single use of client assertions (RFC 7523 §3 item 7: a `jti` is accepted once).
//!
//! Behind a trait so that a store shared by several replicas can implement it; the in-memory
//! implementation serves one process, which is what the file store runs as.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::StoreResult;

/// Remembers which client assertions were used, until they expire.
#[async_trait]
pub trait AssertionReplayCache: Send + Sync {
    /// Records the assertion `jti` of `client_id`, which stays valid until `exp` (seconds
    /// since the epoch); whether this was its first use. Checking and recording are one
    /// atomic step, so of two concurrent requests with one assertion only one succeeds. A
    /// backend refuses the `jti` for as long as the assertion could still pass verification:
    /// until `exp` plus the verifier's leeway, which it is given when built.
    async fn first_use(&self, client_id: &str, jti: &str, exp: u64, now: u64) -> StoreResult<bool>;
}

/// Entries beyond this many trigger a sweep of the expired ones.
const SWEEP_ABOVE: usize = 10_000;

/// The per-process [`AssertionReplayCache`].
#[derive(Debug)]
pub struct MemoryAssertionReplayCache {
    /// `(client_id, jti)` → until when it must be refused.
    used: Mutex<HashMap<(String, String), u64>>,
    /// How long past its `exp` an assertion still passes verification, in seconds.
    leeway_seconds: u64,
}

impl MemoryAssertionReplayCache {
    /// An empty cache for assertions verified with `leeway_seconds` of clock skew allowed
    /// past their `exp` (the verifier's rule, passed in so the store need not know it).
    pub fn new(leeway_seconds: u64) -> Self {
        Self {
            used: Mutex::default(),
            leeway_seconds,
        }
    }
}

#[async_trait]
impl AssertionReplayCache for MemoryAssertionReplayCache {
    async fn first_use(&self, client_id: &str, jti: &str, exp: u64, now: u64) -> StoreResult<bool> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if used.len() > SWEEP_ABOVE {
            used.retain(|_, until| *until > now);
        }
        // Kept past `exp` by the verifier's leeway, while the assertion could still pass.
        let until = exp.saturating_add(self.leeway_seconds);
        let key = (client_id.to_string(), jti.to_string());
        match used.get(&key) {
            Some(previous) if *previous > now => Ok(false),
            _ => {
                used.insert(key, until);
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_jti_is_accepted_once_per_client() {
        let cache = MemoryAssertionReplayCache::new(30);
        assert!(cache.first_use("c", "j", 100, 50).await.unwrap());
        assert!(!cache.first_use("c", "j", 100, 60).await.unwrap());
        assert!(cache.first_use("other", "j", 100, 60).await.unwrap());
        // Past `exp` but inside the leeway the assertion could still pass: still refused.
        assert!(cache.first_use("d", "j", 100, 50).await.unwrap());
        assert!(!cache.first_use("d", "j", 100, 120).await.unwrap());
        // After it could no longer pass verification, the entry may go.
        assert!(cache.first_use("c", "j", 200, 200).await.unwrap());
    }
}
