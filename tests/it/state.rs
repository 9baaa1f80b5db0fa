//! Persistence (SPEC §9): what survives a restart and what does not, what reaches the disk, and
//! how the journal is replayed. Servers are started in-process on a temporary directory that
//! outlives them; the store is also driven directly through its public API. As properties over
//! generated operations: save/load round-trips; every strict prefix of a snapshot is refused
//! (and the files are left untouched); every prefix of a journal loads to the state after some
//! prefix of its entries. Crashes of the real binary are in `durability.rs`.

// Test code: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mcp_authd::oauth::refresh;
use mcp_authd::store::file::{journal_path, parse_document, read_state, write_snapshot};
use mcp_authd::store::prelude::*;
use mcp_authd::store::{Client, Grant, RefreshFamily, RotationAnswer, StateDocument, StateStore};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::*;

/// A server on `dir`, optionally on the address a previous one used (so the issuer is the same).
async fn start(dir: &Path, addr: Option<std::net::SocketAddr>) -> TestApp {
    TestApp::spawn_with(Options {
        dir: Some(dir),
        addr,
        ..Default::default()
    })
    .await
}

/// Stops `app` and starts a new server on the same directory and address.
async fn restart(app: TestApp, dir: &Path) -> TestApp {
    let addr = app.addr;
    app.stop().await;
    let app = start(dir, Some(addr)).await;
    assert_eq!(app.addr, addr);
    app
}

/// A provisioned client built through the public API (the store does not care how).
fn new_client(i: usize) -> Client {
    provisioned_client(
        &format!("Client {i}"),
        vec![format!("https://client{i}.example.com/callback")],
    )
}

#[tokio::test]
async fn restart_keeps_clients_and_refresh_tokens_but_drops_codes() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), None).await;
    let (client_id, tokens) = app.signed_in_client().await;
    let refresh = string(&tokens, "refresh_token");
    let unredeemed = app.code_for(&client_id, REDIRECT).await;

    let app = restart(app, dir.path()).await;

    // The client is known, and the user's approval is remembered: straight to the redirect.
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    let response = app.authorize_as(Some(USER), &params).await;
    assert_eq!(response.status(), 302, "consent must survive a restart");
    let query = query_of(&location(&response));
    assert_eq!(query["iss"], app.base);
    assert!(query.contains_key("code"));

    // The code issued before the restart is gone.
    let description = assert_oauth_error(
        app.exchange(&client_id, &unredeemed, REDIRECT).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(!description.is_empty());

    // The refresh token still rotates, and its successor works too.
    let response = app.refresh(&client_id, &refresh).await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let successor = string(&rotated, "refresh_token");
    assert_ne!(successor, refresh);
    mcp_authd::verify_access_token(&string(&rotated, "access_token"), &app.expectations())
        .expect("the new access token verifies");
    app.clock.advance(60);
    assert_eq!(app.refresh(&client_id, &successor).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_family_revoked_by_reuse_stays_revoked_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), None).await;
    let (client_id, tokens) = app.signed_in_client().await;
    let first = string(&tokens, "refresh_token");
    let response = app.refresh(&client_id, &first).await;
    assert_eq!(response.status(), 200);
    let second = string(&response.json().await.unwrap(), "refresh_token");

    // Reuse outside the grace window revokes the family.
    app.clock.advance(60);
    assert_oauth_error(app.refresh(&client_id, &first).await, 400, "invalid_grant").await;

    let app = restart(app, dir.path()).await;
    assert_oauth_error(app.refresh(&client_id, &second).await, 400, "invalid_grant").await;
    assert_oauth_error(app.refresh(&client_id, &first).await, 400, "invalid_grant").await;

    // The client itself is still registered and can sign in again.
    let code = app.code_for(&client_id, REDIRECT).await;
    assert_eq!(
        app.exchange(&client_id, &code, REDIRECT).await.status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn the_state_holds_only_hashes_and_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), None).await;

    // A confidential client, through a whole flow and one rotation.
    let response = app
        .register_raw(json!({
            "client_name": "Post client",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "client_secret_post"
        }))
        .await;
    assert_eq!(response.status(), 201);
    let registered: Value = response.json().await.unwrap();
    let client_id = string(&registered, "client_id");
    let secret = string(&registered, "client_secret");
    let code = app.code_for(&client_id, REDIRECT).await;
    let response = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let refresh = string(&tokens, "refresh_token");
    let response = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("refresh_token", &refresh),
        ])
        .await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let live_refresh = string(&rotated, "refresh_token");

    let issued = [
        secret.clone(),
        code,
        string(&tokens, "access_token"),
        refresh.clone(),
        string(&rotated, "access_token"),
        live_refresh.clone(),
    ];
    let state = app.state_path.clone();
    let journal = journal_path(&state);
    let check_files = |when: &str| {
        let mut on_disk = std::fs::read_to_string(&state).unwrap();
        on_disk.push_str(&std::fs::read_to_string(&journal).unwrap_or_default());
        for value in &issued {
            assert!(
                !on_disk.contains(value.as_str()),
                "{when}: {value} is on disk"
            );
            // The secret part of a structured token (after its last '.') must not be either.
            if let Some((_, tail)) = value.rsplit_once('.') {
                assert!(
                    !on_disk.contains(tail),
                    "{when}: part of {value} is on disk"
                );
            }
        }
        assert_owner_only(&state);
        if journal.exists() {
            assert_owner_only(&journal);
        }
    };
    check_files("while serving");
    app.stop().await;
    check_files("after stopping");

    // What is stored are SHA-256 hashes of the secret and of the live refresh token.
    let (doc, _) = read_state(&state).unwrap();
    let stored = doc.clients[&client_id].secret_hash.clone().unwrap();
    assert!(sha256_forms(&secret).contains(&stored), "{stored}");
    let family = doc.refresh_tokens.values().next().unwrap();
    assert!(
        sha256_forms(&live_refresh).contains(&family.current_hash),
        "{}",
        family.current_hash
    );

    // Opening again (which folds the journal into a new snapshot) keeps it that way.
    let app = start(dir.path(), None).await;
    check_files("after reopening");
    app.stop().await;
}

#[tokio::test]
async fn every_mutation_is_on_disk_when_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), None).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(app.register_public(REDIRECT).await);
    }
    let (signed_in, tokens) = app.signed_in_client().await;
    let refresh = string(&tokens, "refresh_token");
    let state = app.state_path.clone();
    app.stop().await;

    // Read without opening (as `check` does): everything is there.
    let (doc, _) = read_state(&state).unwrap();
    for id in clients.iter().chain([&signed_in]) {
        assert!(doc.clients.contains_key(id), "{id} missing");
    }
    assert_eq!(doc.refresh_tokens.len(), 1);
    assert!(doc.consents[&signed_in].contains_key(USER));

    // And a server started on it uses it.
    let app = start(dir.path(), None).await;
    for id in &clients {
        // Known client, no approval yet: the consent page, not an error.
        let response = app
            .authorize_as(Some(USER), &TestApp::authorize_params(id, REDIRECT))
            .await;
        assert_eq!(response.status(), 200, "{id}");
    }
    assert_eq!(app.refresh(&signed_in, &refresh).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_torn_last_journal_line_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path(), None).await;
    let (client_id, tokens) = app.signed_in_client().await;
    let refresh = string(&tokens, "refresh_token");
    let state = app.state_path.clone();
    let addr = app.addr;
    app.stop().await;

    // A crash in the middle of an append: half a line, no newline.
    let journal = journal_path(&state);
    let mut bytes = std::fs::read(&journal).unwrap_or_default();
    bytes.extend_from_slice(br#"{"seq":999,"m":{"op":"put_client","client":{"client_id":"ha"#);
    std::fs::write(&journal, &bytes).unwrap();

    let app = start(dir.path(), Some(addr)).await;
    let response = app
        .authorize_as(Some(USER), &TestApp::authorize_params(&client_id, REDIRECT))
        .await;
    assert_eq!(response.status(), 302);
    let response = app.refresh(&client_id, &refresh).await;
    assert_eq!(response.status(), 200);
    let successor = string(&response.json().await.unwrap(), "refresh_token");

    // Later writes are not glued onto the torn line: they survive the next restart.
    let later = app.register_public(REDIRECT).await;
    let app = restart(app, dir.path()).await;
    let response = app
        .authorize_as(Some(USER), &TestApp::authorize_params(&later, REDIRECT))
        .await;
    assert_eq!(
        response.status(),
        200,
        "the client registered after the tear"
    );
    app.clock.advance(60);
    assert_eq!(app.refresh(&client_id, &successor).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn damage_followed_by_valid_journal_entries_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("auth_server.json");
    {
        let store = StateStore::open(&state).unwrap();
        for i in 0..3 {
            store.put_client(new_client(i)).await.unwrap();
        }
        // As a crash leaves it: a clean close would fold the journal into the state file.
        store.close_without_folding();
    }
    let journal = journal_path(&state);
    let original = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<&str> = original.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        lines.len() >= 2,
        "expected the mutations in the journal:\n{original}"
    );
    // A garbage line between two valid ones: not a torn tail, so not safe to skip.
    let damaged = format!(
        "{}\nthis is not a journal entry\n{}\n",
        lines[0],
        lines[1..].join("\n")
    );
    std::fs::write(&journal, &damaged).unwrap();
    let snapshot = std::fs::read(&state).unwrap();

    let error = match StateStore::open(&state) {
        Ok(_) => panic!("a journal with damage before valid entries was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(error.to_lowercase().contains("corrupt"), "{error}");
    assert!(read_state(&state).is_err(), "read_state must agree");
    assert_eq!(std::fs::read(&state).unwrap(), snapshot, "snapshot changed");
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap(),
        damaged,
        "journal changed"
    );
}

#[test]
fn a_state_file_created_by_the_store_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("auth_server.json");
    drop(StateStore::open(&state).unwrap());
    let (doc, _) = read_state(&state).expect("the file the store wrote is readable");
    assert_eq!(doc.version, mcp_authd::store::document::STATE_VERSION);
    assert!(
        StateStore::open(&state).is_ok(),
        "the store refuses its own file"
    );
}

// Save/load, snapshot prefixes and journal prefixes as properties over generated sequences
// of store operations.

const TTL: u64 = 2_592_000;

/// An operation on the store, as the endpoints would perform it.
#[derive(Debug, Clone)]
enum StoreOp {
    AddClient(u8),
    Consent(u8, u8),
    NewFamily(u8, u8),
    Rotate(u8),
    Revoke(u8),
    RemoveClient(u8),
}

fn store_op() -> impl Strategy<Value = StoreOp> {
    prop_oneof![
        3 => any::<u8>().prop_map(StoreOp::AddClient),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(c, u)| StoreOp::Consent(c, u)),
        3 => (any::<u8>(), any::<u8>()).prop_map(|(c, u)| StoreOp::NewFamily(c, u)),
        4 => any::<u8>().prop_map(StoreOp::Rotate),
        1 => any::<u8>().prop_map(StoreOp::Revoke),
        1 => any::<u8>().prop_map(StoreOp::RemoveClient),
    ]
}

/// Awkward strings for names and users: quotes, backslashes, control and non-ASCII.
fn awkward(i: u8) -> String {
    const PARTS: [&str; 8] = [
        "alice",
        "b\"o\\b",
        "\u{e9}t\u{e9}",
        "tab\there",
        "\u{202e}rtl",
        "a,b",
        "\u{1f600}",
        "",
    ];
    format!("{}{}", PARTS[usize::from(i) % PARTS.len()], i / 8)
}

/// A client with an awkward name, on its own loopback port.
fn awkward_client(i: u8) -> Client {
    provisioned_client(
        &format!("Client {}", awkward(i)),
        vec![format!("http://127.0.0.1:{}/cb", 1024 + u16::from(i))],
    )
}

/// Runs `ops` against a store at `path`; returns the document after each mutation, by `seq`.
/// Then closes it cleanly (`fold`: the journal is folded into the state file) or as a crash
/// after the last write would (the journal is left).
async fn run_store_ops(path: &Path, ops: &[StoreOp], fold: bool) -> BTreeMap<u64, StateDocument> {
    let store = StateStore::open(path).unwrap();
    let mut docs = BTreeMap::new();
    docs.insert(0, store.snapshot());
    let mut clients: Vec<String> = Vec::new();
    let mut families: Vec<(String, String)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let now = CLOCK_START + step as u64;
        let pick = |v: &[String], i: u8| v.get(usize::from(i) % v.len().max(1)).cloned();
        match op {
            StoreOp::AddClient(i) => {
                let client = awkward_client(*i);
                clients.push(client.client_id.clone());
                store.put_client(client).await.unwrap();
            }
            StoreOp::Consent(c, u) => {
                if let Some(id) = pick(&clients, *c) {
                    store
                        .record_consent(&awkward(*u), &id, &awkward(c.wrapping_add(*u)), now)
                        .await
                        .unwrap();
                }
            }
            StoreOp::NewFamily(c, u) => {
                if let Some(client_id) = pick(&clients, *c) {
                    let (family_id, token) = refresh::new_family_token();
                    let family = RefreshFamily {
                        grant: Grant {
                            client_id,
                            sub: awkward(*u),
                            groups: vec![awkward(u.wrapping_add(1))],
                            scope: String::new(),
                            resource: "http://127.0.0.1:8080/mcp".into(),
                            issuer: String::new(),
                        },
                        current_hash: refresh::hash(&token),
                        previous_hash: None,
                        rotated_at: None,
                        created_at: now,
                        expires_at: now + TTL,
                        rotation_answer: None,
                    };
                    crate::helpers::store_family(&store, &family_id, family).await;
                    families.push((family_id, token));
                }
            }
            StoreOp::Rotate(f) => {
                if !families.is_empty() {
                    let i = usize::from(*f) % families.len();
                    let (id, token) = families[i].clone();
                    let next = refresh::successor(&token, &id, b"key");
                    let answer = RotationAnswer {
                        iat: now,
                        exp: now + 3600,
                        scope: awkward(*f),
                    };
                    let rotated =
                        crate::helpers::rotate_family(&store, &id, &token, &next, now, TTL, answer)
                            .await;
                    // A family removed with its client no longer rotates.
                    if rotated {
                        families[i].1 = next;
                    }
                }
            }
            StoreOp::Revoke(f) => {
                if !families.is_empty() {
                    let (id, _) = families.remove(usize::from(*f) % families.len());
                    store.revoke_family(&id).await.unwrap();
                }
            }
            StoreOp::RemoveClient(c) => {
                if let Some(id) = pick(&clients, *c) {
                    clients.retain(|x| *x != id);
                    store.remove_client(&id).await.unwrap();
                }
            }
        }
        let doc = store.snapshot();
        docs.insert(doc.seq, doc);
    }
    if fold {
        drop(store);
    } else {
        store.close_without_folding();
    }
    docs
}

proptest! {
    #![proptest_config(proptest_cases(24))]

    #[test]
    fn state_round_trips_and_every_strict_prefix_of_a_snapshot_is_refused(
        ops in prop::collection::vec(store_op(), 0..40),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.json");
        let docs = block_on(run_store_ops(&live, &ops, true));
        let (&last_seq, doc) = docs.iter().next_back().unwrap();

        // The live store's files load to exactly its last state, from the state file alone
        // (closed cleanly, the journal was folded into it).
        prop_assert!(!journal_path(&live).exists());
        let (loaded, _) = read_state(&live).unwrap();
        prop_assert_eq!(&loaded, doc);
        prop_assert_eq!(loaded.seq, last_seq);

        // save → load is the identity, through the file and through the text.
        let saved = dir.path().join("auth_server.json");
        write_snapshot(&saved, doc).unwrap();
        let (loaded, has_journal) = read_state(&saved).unwrap();
        prop_assert!(!has_journal);
        prop_assert_eq!(&loaded, doc);
        let bytes = std::fs::read(&saved).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        prop_assert_eq!(&parse_document(text, &saved).unwrap(), doc);

        // Every strict prefix is refused by the parser...
        for end in 0..text.len() {
            if text.is_char_boundary(end) {
                prop_assert!(
                    parse_document(&text[..end], &saved).is_err(),
                    "a {}-byte prefix of a {}-byte snapshot parsed", end, text.len()
                );
            }
        }
        // ...and, as a file, stops the open without anything on disk changing.
        for pick in &picks {
            let end = pick.index(bytes.len());
            std::fs::write(&saved, &bytes[..end]).unwrap();
            let before = dir_listing(dir.path());
            prop_assert!(read_state(&saved).is_err());
            prop_assert!(StateStore::open(&saved).is_err(), "a {}-byte prefix opened", end);
            prop_assert_eq!(std::fs::read(&saved).unwrap(), &bytes[..end]);
            let mut after = dir_listing(dir.path());
            after.retain(|(name, _)| !name.ends_with(".lock"));
            let mut before = before;
            before.retain(|(name, _)| !name.ends_with(".lock"));
            prop_assert_eq!(after, before);
        }
    }

    #[test]
    fn every_prefix_of_a_journal_loads_to_the_state_after_a_prefix_of_its_entries(
        ops in prop::collection::vec(store_op(), 1..30),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth_server.json");
        let docs = block_on(run_store_ops(&path, &ops, false));
        let journal = journal_path(&path);
        let bytes = std::fs::read(&journal).unwrap();
        // Cut at every line boundary, one byte either side, and at random places: a crash can
        // stop an append anywhere.
        let mut ends: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                ends.extend([i, i + 1, (i + 2).min(bytes.len())]);
            }
        }
        ends.push(0);
        ends.push(bytes.len());
        for end in ends {
            std::fs::write(&journal, &bytes[..end]).unwrap();
            let (loaded, _) = read_state(&path).unwrap_or_else(|e| {
                panic!("a {end}-byte journal prefix does not load: {e}")
            });
            let complete = bytes[..end].iter().filter(|b| **b == b'\n').count() as u64;
            prop_assert_eq!(loaded.seq, complete, "prefix of {} bytes", end);
            if let Some(expected) = docs.get(&complete) {
                prop_assert_eq!(&loaded, expected);
            }
        }
    }
}

fn dir_listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let content = std::fs::read(e.path()).unwrap_or_default();
            (name, content)
        })
        .collect();
    entries.sort();
    entries
}

/// A version 1 file (families keyed by their id, half of every refresh token, in clear) with a
/// journal of the same age is read, replayed, re-keyed and written back as the current
/// version at once, so the old journal is never mixed with new entries; its refresh tokens
/// keep working.
#[tokio::test]
async fn a_version_1_state_is_upgraded_and_its_refresh_tokens_keep_working() {
    use mcp_authd::oauth::refresh::{family_key, hash};

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("auth_server.json");
    let family_id = "AAAAAAAAAAAAAAAAAAAAAA";
    let token = |n: u32| format!("{family_id}.{}", format!("{n}").repeat(43));
    let answer = |iat: u64| mcp_authd::store::RotationAnswer {
        iat,
        exp: iat + 3600,
        scope: String::new(),
    };
    let snapshot = json!({
        "version": 1, "seq": 1, "clients": {},
        "refresh_tokens": {family_id: {
            "grant": {"client_id": "c1", "sub": USER, "groups": [], "scope": "",
                      "resource": "http://127.0.0.1:8080/mcp"},
            "current_hash": hash(&token(0)), "created_at": 1_000, "expires_at": 4_000_000_000u64,
        }},
    });
    std::fs::write(&state, snapshot.to_string()).unwrap();
    // The journal rotated the family once more, under the old key.
    let entry = json!({"seq": 2, "m": {"op": "rotate", "family_id": family_id,
        "current_hash": hash(&token(1)), "previous_hash": hash(&token(0)),
        "rotated_at": 2_000, "expires_at": 4_000_000_000u64}});
    std::fs::write(journal_path(&state), format!("{entry}\n")).unwrap();

    let store = StateStore::open(&state).unwrap();
    let key = family_key(family_id);
    assert!(store.family(family_id).await.unwrap().is_none());
    assert_eq!(
        store.family(&key).await.unwrap().unwrap().current_hash,
        hash(&token(1))
    );
    // On disk at once: the current version, no family id, an empty journal.
    let on_disk = std::fs::read_to_string(&state).unwrap();
    assert!(!on_disk.contains(family_id), "{on_disk}");
    let (doc, _) = read_state(&state).unwrap();
    assert_eq!(doc.version, mcp_authd::store::document::STATE_VERSION);
    assert!(std::fs::read(journal_path(&state)).unwrap().is_empty());

    // The live token rotates; after a reopen (no second re-keying) its successor does too.
    let rotated = crate::helpers::rotate_family(
        &store,
        &key,
        &token(1),
        &token(2),
        3_000,
        1_000_000,
        answer(3_000),
    )
    .await;
    assert!(rotated);
    drop(store);
    let store = StateStore::open(&state).unwrap();
    let rotated = crate::helpers::rotate_family(
        &store,
        &key,
        &token(2),
        &token(3),
        3_100,
        1_000_000,
        answer(3_100),
    )
    .await;
    assert!(rotated);
}

/// SPEC §13 (issue 8, item 6): a consent recorded before consents were bound to scope (the
/// bare approval time, journal entries without a scope) still loads. What its page showed is
/// unknown, so it covers no scope: requests naming none go through as before, the first
/// request naming any asks again, and the approval is then written in the new form.
#[tokio::test]
async fn a_consent_recorded_before_scopes_covers_no_scope_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("auth_server.json");
    let client = |id: &str| {
        json!({"client_id": id, "client_name": "Cursor", "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"], "client_id_issued_at": 1_700_000_000u64,
            "registration": "dynamic"})
    };
    let snapshot = json!({
        "version": 2, "seq": 2,
        "clients": {"c1": client("c1"), "c2": client("c2")},
        "consents": {"c1": {USER: 1_700_000_100u64}},
        "refresh_tokens": {},
    });
    std::fs::write(&state, snapshot.to_string()).unwrap();
    // A journal entry of the old form approves c2.
    let entry = json!({"seq": 3, "m": {"op": "grant_consent", "client_id": "c2", "sub": USER,
        "at": 1_700_000_200u64}});
    std::fs::write(journal_path(&state), format!("{entry}\n")).unwrap();

    let app = start(dir.path(), None).await;
    for id in ["c1", "c2"] {
        assert!(app.state.store.has_consent(USER, id).await.unwrap());
        let none = TestApp::authorize_params(id, REDIRECT);
        assert_eq!(
            app.authorize_as(Some(USER), &none).await.status(),
            302,
            "{id}"
        );
        let scoped = params_with(id, REDIRECT, &[("scope", Some("read"))]);
        let response = app.authorize_as(Some(USER), &scoped).await;
        assert_eq!(response.status(), 200, "{id}: a scope was never approved");
        let page = response.text().await.unwrap();
        assert_eq!(
            app.answer_consent(&page, USER, "approve").await.status(),
            303
        );
        assert_eq!(app.authorize_as(Some(USER), &scoped).await.status(), 302);
    }
    let app = restart(app, dir.path()).await;
    let scoped = params_with("c1", REDIRECT, &[("scope", Some("read"))]);
    assert_eq!(app.authorize_as(Some(USER), &scoped).await.status(), 302);
    app.stop().await;
    let on_disk: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        on_disk["consents"]["c1"][USER]["scope"], "read",
        "{on_disk}"
    );
    assert_eq!(
        on_disk["consents"]["c2"][USER]["scope"], "read",
        "{on_disk}"
    );
}

#[tokio::test]
async fn a_second_open_of_the_same_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("auth_server.json");
    let store = StateStore::open(&state).unwrap();
    store.put_client(new_client(0)).await.unwrap();
    let error = match StateStore::open(&state) {
        Ok(_) => panic!("two stores opened the same state"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("in use"), "{error}");
    drop(store);
    // Released on drop.
    let store = StateStore::open(&state).unwrap();
    assert_eq!(store.clients().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_put_client_calls_are_all_durable() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("auth_server.json");
    let store = Arc::new(StateStore::open(&state).unwrap());
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let client = new_client(i);
                let id = client.client_id.clone();
                store.put_client(client).await.map(|()| id)
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(N);
    for task in tasks {
        ids.push(task.await.unwrap().expect("put_client is durable"));
    }
    assert_eq!(store.clients().await.unwrap().len(), N);
    drop(store);

    let (doc, _) = read_state(&state).unwrap();
    assert_eq!(doc.clients.len(), N);
    for id in &ids {
        assert!(doc.clients.contains_key(id), "{id} lost");
    }
    assert_owner_only(&state);

    // And a store opened on it sees the same.
    let store = StateStore::open(&state).unwrap();
    assert_eq!(store.clients().await.unwrap().len(), N);
}
