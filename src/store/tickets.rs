//! Consent tickets already used, in memory: the file store serves one process, and a ticket
//! lives for minutes (SPEC §9 keeps short-lived records out of the state file).

use std::collections::HashMap;

/// Entries beyond this many trigger a sweep of the expired ones on the next use.
const SWEEP_ABOVE: usize = 10_000;

/// Nonces of used consent tickets, each kept until its ticket expires.
#[derive(Debug, Default)]
pub(crate) struct UsedTickets(HashMap<String, u64>);

impl UsedTickets {
    /// Marks `nonce` used until `exp`; `false` if it already was.
    pub(crate) fn use_once(&mut self, nonce: &str, exp: u64, now: u64) -> bool {
        if self.0.len() > SWEEP_ABOVE {
            self.prune(now);
        }
        match self.0.get(nonce) {
            Some(until) if *until > now => false,
            _ => {
                self.0.insert(nonce.to_string(), exp);
                true
            }
        }
    }

    /// Forgets the tickets expired by `now` (they would be refused as expired anyway); how
    /// many.
    pub(crate) fn prune(&mut self, now: u64) -> usize {
        let before = self.0.len();
        self.0.retain(|_, until| *until > now);
        before - self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_used_once_until_it_expires() {
        let mut used = UsedTickets::default();
        assert!(used.use_once("n", 10, 0));
        assert!(!used.use_once("n", 10, 5));
        assert_eq!(used.prune(10), 1);
        assert!(used.use_once("m", 20, 10));
    }
}
