//! The store contract: one set of tests written against the store traits only, run against
//! every backend (today the journaled file store and the in-memory store; a new backend adds
//! one `contract!` line). Each test states one promise of `mcp_authd::store::traits`:
//! single use under concurrency, compare-and-swap races with one winner, replay, expiry,
//! atomic caps, and changes that are whole or absent.

use std::sync::Arc;

use mcp_authd::oauth::refresh::hash;
use mcp_authd::store::{
    AuthMethod, Client, CodeGrant, CodeLimitReached, CodeLimits, CodeState, DynamicAdmission,
    Exchange, Grant, ImportError, RefreshFamily, Registration, Rotation, RotationAnswer,
    StateDocument, StateStore, Store,
};

use crate::helpers::{REDIRECT, VERIFIER, challenge};

/// How many requests race in the concurrency tests.
const RACERS: usize = 16;
const NOW: u64 = 1_800_000_000;
const NO_LIMITS: CodeLimits = CodeLimits {
    per_user: 0,
    total: 0,
};

fn grant(client_id: &str, sub: &str) -> Grant {
    Grant {
        client_id: client_id.into(),
        sub: sub.into(),
        groups: vec!["eng".into()],
        scope: "mcp".into(),
        resource: "https://mcp.example.com/mcp".into(),
        issuer: String::new(),
    }
}

fn code(client_id: &str, sub: &str) -> CodeGrant {
    CodeGrant {
        grant: grant(client_id, sub),
        redirect_uri: REDIRECT.into(),
        code_challenge: challenge(VERIFIER),
        expires_at: NOW + 60,
    }
}

fn family(client_id: &str, sub: &str, token: &str) -> RefreshFamily {
    RefreshFamily {
        grant: grant(client_id, sub),
        current_hash: hash(token),
        previous_hash: None,
        rotated_at: None,
        created_at: NOW,
        expires_at: NOW + 3600,
        rotation_answer: None,
    }
}

fn client(id: &str, registration: Registration, issued_at: u64) -> Client {
    Client {
        client_id: id.into(),
        client_name: id.into(),
        redirect_uris: vec![REDIRECT.into()],
        token_endpoint_auth_method: AuthMethod::None,
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        response_types: vec!["code".into()],
        scope: String::new(),
        secret_hash: None,
        client_id_issued_at: issued_at,
        registration,
        application_type: None,
    }
}

fn rotation(from: &str, to: &str) -> Rotation {
    Rotation {
        current_hash: hash(to),
        previous_hash: hash(from),
        rotated_at: NOW + 1,
        expires_at: NOW + 7200,
        answer: RotationAnswer {
            iat: NOW + 1,
            exp: NOW + 3601,
            scope: "mcp".into(),
        },
    }
}

/// A family created the only way the store allows: a code exchanged into it.
async fn start_family<S: Store + ?Sized>(store: &S, key: &str, token: &str) {
    let code_hash = format!("code-{key}");
    store
        .insert_code(&code_hash, code("c", "alice"), NO_LIMITS, NOW)
        .await
        .unwrap()
        .unwrap();
    let exchanged = store
        .exchange_code(&code_hash, NOW, key, family("c", "alice", token))
        .await
        .unwrap();
    assert_eq!(exchanged, Exchange::Exchanged);
}

async fn a_code_is_exchanged_once_when_many_race<S: Store + 'static>(store: Arc<S>) {
    store
        .insert_code("h", code("c", "alice"), NO_LIMITS, NOW)
        .await
        .unwrap()
        .unwrap();
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..RACERS {
        let store = store.clone();
        racers.spawn(async move {
            let key = format!("family-{i}");
            let outcome = store
                .exchange_code("h", NOW + 1, &key, family("c", "alice", &format!("t{i}")))
                .await
                .unwrap();
            (key, outcome)
        });
    }
    let outcomes: Vec<(String, Exchange)> = racers.join_all().await;
    let winners: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| *o == Exchange::Exchanged)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = winners[0].clone();
    // Every loser is a replay by the code's own client: it names, and revokes, the winner's
    // family; none of them created one.
    for (key, outcome) in &outcomes {
        if *key != winner {
            assert_eq!(
                *outcome,
                Exchange::Replayed {
                    family_key: winner.clone()
                }
            );
        }
    }
    assert_eq!(store.family_count().await.unwrap(), 0);
    assert!(store.family(&winner).await.unwrap().is_none());
}

async fn a_spent_code_replayed_revokes_its_family_and_an_unknown_one_nothing<S: Store>(store: S) {
    start_family(&store, "k", "t0").await;
    assert!(matches!(
        store.code("code-k", NOW + 1).await.unwrap(),
        Some(CodeState::Spent { family_key, .. }) if family_key == "k"
    ));
    assert_eq!(
        store
            .replay_code("code-k", NOW + 1)
            .await
            .unwrap()
            .as_deref(),
        Some("k")
    );
    assert!(store.family("k").await.unwrap().is_none());
    assert_eq!(store.replay_code("nope", NOW + 1).await.unwrap(), None);
}

async fn an_expired_code_is_invalid_and_creates_nothing<S: Store>(store: S) {
    store
        .insert_code("h", code("c", "alice"), NO_LIMITS, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.code("h", NOW + 60).await.unwrap(), None);
    let outcome = store
        .exchange_code("h", NOW + 60, "k", family("c", "alice", "t"))
        .await
        .unwrap();
    assert_eq!(outcome, Exchange::Invalid);
    assert_eq!(store.family_count().await.unwrap(), 0);
    let unknown = store
        .exchange_code("never-issued", NOW, "k", family("c", "alice", "t"))
        .await
        .unwrap();
    assert_eq!(unknown, Exchange::Invalid);
    assert_eq!(store.family_count().await.unwrap(), 0);
}

async fn outstanding_codes_are_bounded_per_user_and_in_total<S: Store>(store: S) {
    let limits = CodeLimits {
        per_user: 2,
        total: 3,
    };
    let insert = |hash: &'static str, sub: &'static str| {
        let store = &store;
        async move {
            store
                .insert_code(hash, code("c", sub), limits, NOW)
                .await
                .unwrap()
        }
    };
    assert_eq!(insert("a1", "alice").await, Ok(()));
    assert_eq!(insert("a2", "alice").await, Ok(()));
    assert_eq!(insert("a3", "alice").await, Err(CodeLimitReached::PerUser));
    assert_eq!(insert("b1", "bob").await, Ok(()));
    assert_eq!(insert("c1", "carol").await, Err(CodeLimitReached::Total));
    // A redemption frees its place.
    let exchanged = store
        .exchange_code("a1", NOW, "k", family("c", "alice", "t"))
        .await
        .unwrap();
    assert_eq!(exchanged, Exchange::Exchanged);
    assert_eq!(insert("c1", "carol").await, Ok(()));
}

async fn one_rotation_wins_a_compare_and_swap_race<S: Store + 'static>(store: Arc<S>) {
    start_family(&*store, "k", "t0").await;
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..RACERS {
        let store = store.clone();
        racers.spawn(async move {
            let next = format!("t1-{i}");
            let won = store
                .rotate_family("k", &hash("t0"), rotation("t0", &next))
                .await
                .unwrap();
            (next, won)
        });
    }
    let outcomes: Vec<(String, bool)> = racers.join_all().await;
    let winners: Vec<&String> = outcomes
        .iter()
        .filter(|(_, w)| *w)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let stored = store.family("k").await.unwrap().unwrap();
    assert_eq!(stored.current_hash, hash(winners[0]));
    assert_eq!(stored.previous_hash, Some(hash("t0")));
    assert_eq!(stored.rotated_at, Some(NOW + 1));
    assert!(stored.rotation_answer.is_some());
    // A rotation decided on a stale read changes nothing.
    assert!(
        !store
            .rotate_family("k", &hash("t0"), rotation("t0", "late"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.family("k").await.unwrap().unwrap().current_hash,
        hash(winners[0])
    );
    // Neither does one of a family that is gone.
    assert!(store.revoke_family("k").await.unwrap());
    assert!(
        !store
            .rotate_family("k", &hash(winners[0]), rotation(winners[0], "t2"))
            .await
            .unwrap()
    );
    assert!(store.family("k").await.unwrap().is_none());
}

async fn a_consent_ticket_is_used_once_when_many_race<S: Store + 'static>(store: Arc<S>) {
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..RACERS {
        let store = store.clone();
        racers.spawn(async move {
            store
                .use_consent_ticket("nonce", NOW + 600, NOW)
                .await
                .unwrap()
        });
    }
    let firsts = racers.join_all().await.into_iter().filter(|f| *f).count();
    assert_eq!(firsts, 1);
    assert!(
        store
            .use_consent_ticket("another", NOW + 600, NOW)
            .await
            .unwrap()
    );
}

async fn a_consent_covers_the_union_of_what_was_approved<S: Store>(store: S) {
    store
        .put_client(client("c", Registration::Dynamic, NOW))
        .await
        .unwrap();
    assert!(!store.has_consent("alice", "c").await.unwrap());
    store
        .record_consent("alice", "c", "read", NOW)
        .await
        .unwrap();
    store
        .record_consent("alice", "c", "write", NOW + 1)
        .await
        .unwrap();
    let consent = store.consent("alice", "c").await.unwrap().unwrap();
    let mut scopes: Vec<&str> = consent.scope.split(' ').collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["read", "write"]);
    assert_eq!(consent.at, NOW + 1);
    assert!(store.consent("bob", "c").await.unwrap().is_none());
    let listed = store.consents().await.unwrap();
    assert_eq!(listed.len(), 1);
    let revoked = store.revoke_consents("alice", Some("c")).await.unwrap();
    assert_eq!(revoked.consents, 1);
    assert!(!store.has_consent("alice", "c").await.unwrap());
}

async fn the_dynamic_client_cap_holds_when_many_register_at_once<S: Store + 'static>(
    store: Arc<S>,
) {
    store
        .put_client(client("provisioned", Registration::Provisioned, NOW))
        .await
        .unwrap();
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..RACERS {
        let store = store.clone();
        racers.spawn(async move {
            store
                .put_dynamic_client(client(&format!("d{i}"), Registration::Dynamic, NOW), 5)
                .await
                .unwrap()
        });
    }
    let outcomes = racers.join_all().await;
    let added = outcomes
        .iter()
        .filter(|o| matches!(o, DynamicAdmission::Added { evicted: None }))
        .count();
    assert_eq!(added, 5, "{outcomes:?}");
    assert_eq!(outcomes.len() - added, RACERS - 5);
    // Pre-provisioned clients do not count against the cap.
    assert_eq!(store.clients().await.unwrap().len(), 6);
}

async fn revocations_cascade_and_report_what_they_removed<S: Store>(store: S) {
    store
        .put_client(client("c", Registration::Dynamic, NOW))
        .await
        .unwrap();
    start_family(&store, "k1", "t1").await;
    start_family(&store, "k2", "t2").await;
    assert_eq!(store.family_count().await.unwrap(), 2);
    assert_eq!(store.revoke_client_families("other").await.unwrap(), 0);
    assert_eq!(store.revoke_user("alice").await.unwrap(), 2);
    assert_eq!(store.family_count().await.unwrap(), 0);
    start_family(&store, "k3", "t3").await;
    store.record_consent("alice", "c", "", NOW).await.unwrap();
    assert!(store.remove_client("c").await.unwrap());
    assert!(!store.remove_client("c").await.unwrap());
    assert!(store.family("k3").await.unwrap().is_none());
    assert!(!store.has_consent("alice", "c").await.unwrap());
}

async fn the_deny_list_and_expired_records_are_pruned_by_the_given_clock<S: Store>(store: S) {
    store.deny_access_token("jti", NOW + 10).await.unwrap();
    assert!(store.is_access_token_denied("jti").await.unwrap());
    assert!(!store.is_access_token_denied("other").await.unwrap());
    start_family(&store, "k", "t").await;
    store
        .insert_code("live", code("c", "bob"), NO_LIMITS, NOW)
        .await
        .unwrap()
        .unwrap();
    // Nothing has expired yet by this clock.
    store.prune_expired(NOW + 5).await.unwrap();
    assert!(store.is_access_token_denied("jti").await.unwrap());
    assert!(store.code("live", NOW + 5).await.unwrap().is_some());
    // The family lives an hour; the code a minute, the denial ten seconds.
    let pruned = store.prune_expired(NOW + 3600).await.unwrap();
    assert!(pruned >= 3, "{pruned}");
    assert!(!store.is_access_token_denied("jti").await.unwrap());
    assert!(store.family("k").await.unwrap().is_none());
    assert_eq!(store.code("live", NOW).await.unwrap(), None);
}

async fn an_export_imports_into_an_empty_store_only<S: Store>(store: S, empty: S) {
    store
        .put_client(client("c", Registration::Dynamic, NOW))
        .await
        .unwrap();
    store
        .record_consent("alice", "c", "mcp", NOW)
        .await
        .unwrap();
    start_family(&store, "k", "t").await;
    let exported = store.export_state().await.unwrap();
    assert_eq!(exported.clients.len(), 1);
    assert_eq!(exported.refresh_tokens.len(), 1);
    empty.import_state(exported.clone()).await.unwrap();
    assert_eq!(
        empty.family("k").await.unwrap(),
        store.family("k").await.unwrap()
    );
    assert!(empty.has_consent("alice", "c").await.unwrap());
    // A second import would merge: refused, and nothing changes.
    let mut other = StateDocument::default();
    other
        .clients
        .insert("x".into(), client("x", Registration::Dynamic, NOW));
    assert!(matches!(
        empty.import_state(other).await,
        Err(ImportError::NotEmpty { clients: 1, .. })
    ));
    assert!(empty.client("x").await.unwrap().is_none());
}

/// A store backend under test and whatever must live as long as it (its directory).
type Backend<S> = (S, Option<tempfile::TempDir>);

fn file_store() -> Backend<StateStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(&dir.path().join("auth_server.json")).unwrap();
    (store, Some(dir))
}

fn memory_store() -> Backend<StateStore> {
    (StateStore::in_memory(StateDocument::default()), None)
}

/// Every contract test, for one backend made by `$make`.
macro_rules! contract {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_code_is_exchanged_once_when_many_race() {
                let (store, _dir) = $make;
                super::a_code_is_exchanged_once_when_many_race(Arc::new(store)).await;
            }

            #[tokio::test]
            async fn a_spent_code_replayed_revokes_its_family_and_an_unknown_one_nothing() {
                let (store, _dir) = $make;
                super::a_spent_code_replayed_revokes_its_family_and_an_unknown_one_nothing(store)
                    .await;
            }

            #[tokio::test]
            async fn an_expired_code_is_invalid_and_creates_nothing() {
                let (store, _dir) = $make;
                super::an_expired_code_is_invalid_and_creates_nothing(store).await;
            }

            #[tokio::test]
            async fn outstanding_codes_are_bounded_per_user_and_in_total() {
                let (store, _dir) = $make;
                super::outstanding_codes_are_bounded_per_user_and_in_total(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn one_rotation_wins_a_compare_and_swap_race() {
                let (store, _dir) = $make;
                super::one_rotation_wins_a_compare_and_swap_race(Arc::new(store)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_consent_ticket_is_used_once_when_many_race() {
                let (store, _dir) = $make;
                super::a_consent_ticket_is_used_once_when_many_race(Arc::new(store)).await;
            }

            #[tokio::test]
            async fn a_consent_covers_the_union_of_what_was_approved() {
                let (store, _dir) = $make;
                super::a_consent_covers_the_union_of_what_was_approved(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn the_dynamic_client_cap_holds_when_many_register_at_once() {
                let (store, _dir) = $make;
                super::the_dynamic_client_cap_holds_when_many_register_at_once(Arc::new(store))
                    .await;
            }

            #[tokio::test]
            async fn revocations_cascade_and_report_what_they_removed() {
                let (store, _dir) = $make;
                super::revocations_cascade_and_report_what_they_removed(store).await;
            }

            #[tokio::test]
            async fn the_deny_list_and_expired_records_are_pruned_by_the_given_clock() {
                let (store, _dir) = $make;
                super::the_deny_list_and_expired_records_are_pruned_by_the_given_clock(store).await;
            }

            #[tokio::test]
            async fn an_export_imports_into_an_empty_store_only() {
                let (store, _dir) = $make;
                let (empty, _empty_dir) = $make;
                super::an_export_imports_into_an_empty_store_only(store, empty).await;
            }
        }
    };
}

contract!(file, file_store());
contract!(memory, memory_store());
