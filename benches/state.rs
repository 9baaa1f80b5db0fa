//! The per-mutation cost of the state store, with 1 000 and with 100 000 live refresh-token
//! families: the claim that a rotation costs the same however many tokens are live.
//!
//! ```sh
//! cargo bench --bench state
//! ```
//!
//! For each size it seeds a state file, opens the journaled store on it and makes 250 000
//! rotations from 64 concurrent tasks on a single-threaded runtime (one core, as the server is
//! benchmarked), each task cycling through its own share of the families and each rotation
//! durable (group commit) before the task's next one starts. The same runs against the in-memory store give the CPU cost without the disk.
//! Each figure is the median of five runs; the last line is the ratio between the sizes.

// A benchmark that cannot set up or sees a wrong answer has nothing to report: panic.
#![allow(clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mcp_authd::oauth::refresh::hash;
use mcp_authd::store::file::{StateStore, write_snapshot};
use mcp_authd::store::{Grant, RefreshFamily, Rotation, RotationAnswer, StateDocument, Store};

/// Concurrent rotations in flight, as in the load test.
const CONCURRENCY: usize = 64;
/// Rotations per run.
const ROTATIONS: usize = 50_000;
/// Runs per figure: 250 000 rotations in all, more than the 200 000-entry journal that
/// triggers a compaction at 100 000 families, so compaction is part of the figure.
const RUNS: usize = 5;
const NOW: u64 = 1_800_000_000;
const TTL: u64 = 30 * 24 * 3600;

fn family_id(i: usize) -> String {
    format!("family-{i:08}")
}

fn token(i: usize, generation: usize) -> String {
    format!("{}.secret-{generation}", family_id(i))
}

/// A document with `live` families, each holding generation 0 of its token.
fn seeded(live: usize) -> StateDocument {
    let mut doc = StateDocument::default();
    for i in 0..live {
        let family = RefreshFamily {
            grant: Grant {
                client_id: "bench-client".into(),
                sub: format!("user-{i}@example.com"),
                groups: vec!["engineering".into()],
                scope: "mcp".into(),
                resource: "https://mcp.example.com/mcp".into(),
                issuer: String::new(),
            },
            current_hash: hash(&token(i, 0)),
            previous_hash: None,
            rotated_at: None,
            created_at: NOW,
            expires_at: NOW + TTL,
            rotation_answer: None,
        };
        doc.refresh_tokens.insert(family_id(i), Arc::new(family));
    }
    doc
}

/// The families one task rotates, each with its current token generation and a cursor.
struct Share {
    families: Vec<(usize, usize)>,
    next: usize,
}

/// Splits `live` families over the tasks; a family always stays with one task, so its
/// rotations happen in order.
fn shares(live: usize) -> Vec<Share> {
    (0..CONCURRENCY)
        .map(|worker| Share {
            families: (worker..live)
                .step_by(CONCURRENCY)
                .map(|i| (i, 0))
                .collect(),
            next: 0,
        })
        .collect()
}

/// Makes [`ROTATIONS`] rotations, each task cycling through its own families; returns the
/// shares (with advanced generations) and rotations per second.
async fn rotate_all(store: Arc<dyn Store>, shares: Vec<Share>, clock: u64) -> (Vec<Share>, f64) {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut share in shares {
        let store = store.clone();
        tasks.spawn(async move {
            for _ in 0..ROTATIONS / CONCURRENCY {
                let slot = share.next;
                share.next = (slot + 1) % share.families.len();
                let (i, generation) = &mut share.families[slot];
                // What a refresh request does: read the family, then compare-and-swap.
                let key = family_id(*i);
                let current = hash(&token(*i, *generation));
                let family = store.family(&key).await;
                assert!(
                    matches!(&family, Ok(Some(f)) if f.current_hash == current),
                    "family {i} generation {generation}: {family:?}"
                );
                let outcome = store
                    .rotate_family(
                        &key,
                        &current,
                        Rotation {
                            current_hash: hash(&token(*i, *generation + 1)),
                            previous_hash: current.clone(),
                            rotated_at: clock,
                            expires_at: clock + TTL,
                            answer: RotationAnswer {
                                iat: clock,
                                exp: clock + 3600,
                                scope: "mcp".into(),
                            },
                        },
                    )
                    .await;
                assert!(
                    matches!(outcome, Ok(true)),
                    "family {i} generation {generation}: {outcome:?}"
                );
                *generation += 1;
            }
            share
        });
    }
    let mut shares = Vec::with_capacity(CONCURRENCY);
    while let Some(done) = tasks.join_next().await {
        shares.push(done.expect("a rotation task panicked"));
    }
    let rate = (ROTATIONS / CONCURRENCY * CONCURRENCY) as f64 / started.elapsed().as_secs_f64();
    (shares, rate)
}

/// One store under test: its size, the store, and what its runs measured.
struct Subject {
    live: usize,
    store: Arc<dyn Store>,
    shares: Vec<Share>,
    rates: Vec<f64>,
    seconds: f64,
}

impl Subject {
    /// Seeds `live` families, durable on disk under `dir` or in memory.
    fn new(live: usize, dir: Option<&Path>) -> Self {
        let doc = seeded(live);
        let store: Arc<dyn Store> = match dir {
            Some(dir) => {
                let path = dir.join(format!("auth_server-{live}.json"));
                write_snapshot(&path, &doc).expect("seeding the state file");
                Arc::new(StateStore::open(&path).expect("opening the seeded state"))
            }
            None => Arc::new(StateStore::in_memory(doc)),
        };
        Self {
            live,
            store,
            shares: shares(live),
            rates: Vec::new(),
            seconds: 0.0,
        }
    }

    fn run(&mut self, runtime: &tokio::runtime::Runtime, clock: u64) {
        let started = Instant::now();
        let shares = std::mem::take(&mut self.shares);
        let (shares, rate) = runtime.block_on(rotate_all(self.store.clone(), shares, clock));
        self.seconds += started.elapsed().as_secs_f64();
        self.shares = shares;
        self.rates.push(rate);
    }

    /// Rotations per second over all runs.
    fn rate(&self) -> f64 {
        (self.rates.len() * (ROTATIONS / CONCURRENCY * CONCURRENCY)) as f64 / self.seconds
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (what, dir) in [("durable", Some(dir.path())), ("in memory", None)] {
        let mut subjects = [Subject::new(1_000, dir), Subject::new(100_000, dir)];
        // The sizes take turns, so a slow spell of a shared machine hits both alike.
        for run in 0..RUNS {
            for subject in &mut subjects {
                subject.run(&runtime, NOW + run as u64);
            }
        }
        for s in &subjects {
            let slowest = s.rates.iter().copied().fold(f64::INFINITY, f64::min);
            let fastest = s.rates.iter().copied().fold(0.0, f64::max);
            println!(
                "{what}: {:>7} live families: {:>9.0} rotations/s (runs {slowest:.0} to {fastest:.0})",
                s.live,
                s.rate()
            );
        }
        println!(
            "{what}: the rate with 100 000 live families is {:.2} of the rate with 1 000",
            subjects[1].rate() / subjects[0].rate()
        );
    }
}
