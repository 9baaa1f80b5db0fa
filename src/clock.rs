//! Time as an injected dependency.
//!
//! Every protocol decision that depends on time (code expiry, the refresh grace window, token
//! lifetimes) reads the clock through [`Clock`], so tests can move time forward instead of
//! sleeping.

#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in whole seconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        // A clock before 1970 is a broken host; treating it as the epoch makes every token
        // look expired, which fails closed.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; for this crate's unit tests (integration tests bring
/// their own: any [`Clock`] will do, so none is part of the public API).
#[cfg(test)]
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

#[cfg(test)]
impl ManualClock {
    /// A clock standing at `now` seconds since the epoch.
    pub fn new(now: u64) -> Self {
        Self(AtomicU64::new(now))
    }

    /// Moves the clock forward by `seconds`.
    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
