//! Property tests (proptest): the protocol rules and the state format checked over generated
//! inputs rather than examples.
//!
//! - PKCE: S256 round-trips for every valid verifier and fails for every other one.
//! - Redirect URIs, differentially against the `url` crate: registration accepts only
//!   canonical URIs; a match names the same place; outside http loopback a match is byte
//!   equality, and on http loopback it is equality once the port is removed.
//! - State: save/load round-trips; every strict prefix of a snapshot is refused (and the files
//!   are left untouched); every prefix of a journal loads to the state after some prefix of its
//!   entries.
//! - `trustedSourceCidrs`: an IPv4 peer and its IPv4-mapped IPv6 form are the same peer.
//! - `servers.json`: the loader never panics; short secrets and wildcards are always refused.
//! - A model of the token lifecycle (authorize, redeem, replay, refresh, reuse, revoke, clock,
//!   restart) run against the real grant code and the journaled store.
//!
//! Case counts are kept small so `cargo test` stays fast; `PROPTEST_CASES=N` raises them all.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use mcp_authd::app::AppState;
use mcp_authd::clock::ManualClock;
use mcp_authd::config::Config;
use mcp_authd::oauth::params::Params;
use mcp_authd::oauth::redirect::{matches_registered, validate_for_registration};
use mcp_authd::oauth::{authorize, pkce, refresh, token as grants};
use mcp_authd::proxy_trust::TrustedSources;
use mcp_authd::store::file::{journal_path, parse_document, read_state, write_snapshot};
use mcp_authd::store::{
    Client, Grant, RefreshFamily, RotationAnswer, StateDocument, StateStore, Store,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Value, json};

use crate::helpers::challenge;

/// `cases` unless `PROPTEST_CASES` asks for more.
fn cases(cases: u32) -> ProptestConfig {
    let from_env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    ProptestConfig {
        cases: from_env.unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// PKCE

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn pkce_s256_round_trips_and_rejects_every_other_verifier(
        verifier in "[A-Za-z0-9._~-]{43,128}",
        other in "[A-Za-z0-9._~-]{43,128}",
    ) {
        let c = challenge(&verifier);
        prop_assert!(pkce::is_valid_verifier(&verifier));
        prop_assert!(pkce::validate_challenge(Some(&c), Some("S256")).is_ok());
        prop_assert!(pkce::verify_s256(&verifier, &c));
        prop_assert!(pkce::validate_challenge(Some(&c), Some("plain")).is_err());
        prop_assert!(pkce::validate_challenge(Some(&c), None).is_err());
        if other != verifier {
            prop_assert!(!pkce::verify_s256(&other, &c));
        }
    }

    #[test]
    fn pkce_refuses_malformed_verifiers_even_with_their_own_challenge(
        verifier in prop_oneof![
            "[A-Za-z0-9._~-]{0,42}",
            "[A-Za-z0-9._~-]{129,140}",
            "[A-Za-z0-9._~-]{20,60}[ +/=%\u{e9}][A-Za-z0-9._~-]{20,60}",
        ],
    ) {
        prop_assert!(!pkce::is_valid_verifier(&verifier));
        prop_assert!(!pkce::verify_s256(&verifier, &challenge(&verifier)));
    }
}

// ---------------------------------------------------------------------------------------------
// Redirect URIs, against the `url` crate

const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// The parts of a URI, each drawn from values that real clients send and values that parser
/// tricks use.
fn uri_parts() -> impl Strategy<Value = [&'static str; 7]> {
    let pick = |v: &[&'static str]| prop::sample::select(v.to_vec());
    (
        pick(&[
            "http",
            "https",
            "HTTP",
            "cursor",
            "vscode",
            "javascript",
            "data",
            "file",
            "ws",
        ]),
        pick(&["", "", "", "user@", "a:b@", "claude.ai@", "@"]),
        pick(&[
            "localhost",
            "127.0.0.1",
            "[::1]",
            "LOCALHOST",
            "127.1",
            "0x7f.0.0.1",
            "2130706433",
            "[::ffff:127.0.0.1]",
            "[0:0:0:0:0:0:0:1]",
            "example.com",
            "claude.ai",
            "localhost.evil.com",
            "127.0.0.1.example.com",
            "exa%6dple.com",
            "",
        ]),
        pick(&[
            "", "", ":", ":0", ":80", ":443", ":8080", ":65535", ":65536", ":08080", ":1a",
        ]),
        pick(&[
            "",
            "/",
            "/cb",
            "/callback",
            "/a/../cb",
            "/./cb",
            "/cb/",
            "//evil.com",
            "/cb%2F..",
            "/CB",
            "\\cb",
            "/c b",
            "/cb\t",
        ]),
        pick(&["", "", "?", "?x=1", "?x=1&y=2", "?next=https://evil.com"]),
        pick(&["", "", "#", "#frag"]),
    )
        .prop_map(|(a, b, c, d, e, f, g)| [a, b, c, d, e, f, g])
}

fn join(parts: &[&str; 7]) -> String {
    let [scheme, userinfo, host, port, path, query, fragment] = parts;
    format!("{scheme}://{userinfo}{host}{port}{path}{query}{fragment}")
}

/// A registered and a requested URI that share some parts, sometimes with one extra character
/// inserted into the requested one.
fn uri_pair() -> impl Strategy<Value = (String, String)> {
    (
        uri_parts(),
        uri_parts(),
        any::<u8>(),
        prop::option::weighted(0.2, (any::<prop::sample::Index>(), any::<char>())),
    )
        .prop_map(|(a, b, mask, insert)| {
            let mut mixed = a;
            for i in 0..7 {
                if mask & (1 << i) != 0 {
                    mixed[i] = b[i];
                }
            }
            let mut requested = join(&mixed);
            if let Some((at, c)) = insert {
                let mut at = at.index(requested.len() + 1);
                while !requested.is_char_boundary(at) {
                    at -= 1;
                }
                requested.insert(at, c);
            }
            (join(&a), requested)
        })
}

const PATHS: [&str; 5] = ["/", "/cb", "/callback", "/oauth/callback/", "/a%20b"];
const QUERIES: [&str; 4] = ["", "", "?x=1", "?a=b&c=d"];

/// An http loopback redirect URI, as native apps register them (RFC 8252 §7.3).
fn loopback_uri() -> impl Strategy<Value = String> {
    let pick = |v: &[&'static str]| prop::sample::select(v.to_vec());
    (
        pick(&LOOPBACK),
        pick(&["", ":1", ":8080", ":33418", ":65535"]),
        pick(&PATHS),
        pick(&QUERIES),
    )
        .prop_map(|(h, p, pa, q)| format!("http://{h}{p}{pa}{q}"))
}

/// A redirect URI that registration accepts: http loopback, https, or a private-use scheme.
fn registered_uri() -> impl Strategy<Value = String> {
    let pick = |v: &[&'static str]| prop::sample::select(v.to_vec());
    let path = pick(&PATHS);
    let query = pick(&QUERIES);
    prop_oneof![
        loopback_uri(),
        (
            pick(&[
                "claude.ai",
                "chatgpt.com",
                "example.com",
                "a.b.example.com",
                "127.0.0.1"
            ]),
            pick(&["", ":8443"]),
            path,
            query
        )
            .prop_map(|(h, p, pa, q)| format!("https://{h}{p}{pa}{q}")),
        pick(&[
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "vscode://publisher.ext/cb",
            "com.example.app:/oauth2redirect",
        ])
        .prop_map(str::to_string),
    ]
    .prop_filter("accepted at registration", |u| {
        validate_for_registration(u).is_ok()
    })
}

/// A requested URI made from a registered one by one edit an attacker or a confused client
/// might make: another port, host, userinfo, case, or an inserted character.
fn requested_from(registered: String) -> impl Strategy<Value = (String, String)> {
    let r = registered.clone();
    let authority_end = move |u: &str| {
        let start = u.find("://").map_or(0, |i| i + 3);
        start + u[start..].find(['/', '?', '#']).unwrap_or(u.len() - start)
    };
    let port_edit = prop::sample::select(vec![
        "",
        ":0",
        ":1",
        ":80",
        ":443",
        ":08080",
        ":65535",
        ":65536",
        ":99999",
        ":",
        ":+1",
        ":1a",
        "%3A80",
        ":80@evil.com",
        ".evil.com",
        "@evil.com",
    ]);
    let host_edit = prop::sample::select(vec![
        "127.1",
        "LOCALHOST",
        "[::ffff:127.0.0.1]",
        "127.0.0.1.evil.com",
        "evil.com",
        "localhost.",
        "0x7f000001",
    ]);
    prop_oneof![
        Just((r.clone(), r.clone())),
        port_edit.prop_map({
            let r = r.clone();
            move |port| {
                let base = without_port(&r);
                let end = authority_end(&base);
                (r.clone(), format!("{}{port}{}", &base[..end], &base[end..]))
            }
        }),
        host_edit.prop_map({
            let r = r.clone();
            move |host| {
                let start = r.find("://").map_or(0, |i| i + 3);
                let end = authority_end(&r);
                (r.clone(), format!("{}{host}{}", &r[..start], &r[end..]))
            }
        }),
        Just((r.clone(), r.replacen("://", "://user@", 1))),
        Just((r.clone(), r.to_uppercase())),
        Just((r.clone(), format!("{r}#x"))),
        (any::<prop::sample::Index>(), any::<char>()).prop_map(move |(at, c)| {
            let mut q = r.clone();
            let mut at = at.index(q.len() + 1);
            while !q.is_char_boundary(at) {
                at -= 1;
            }
            q.insert(at, c);
            (r.clone(), q)
        }),
    ]
}

fn is_http_loopback(url: &url::Url) -> bool {
    url.scheme() == "http" && url.host_str().is_some_and(|h| LOOPBACK.contains(&h))
}

/// `uri` without `:port` after its authority (for an `http://host[:port]…` URI).
fn without_port(uri: &str) -> String {
    let rest = uri.strip_prefix("http://").unwrap_or(uri);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    };
    format!("http://{host}{tail}")
}

proptest! {
    #![proptest_config(cases(2048))]

    #[test]
    fn registration_accepts_only_canonical_safe_uris((uri, _) in uri_pair()) {
        if validate_for_registration(&uri).is_ok() {
            let parsed = url::Url::parse(&uri).expect("accepted URIs parse");
            prop_assert_eq!(parsed.as_str(), uri.as_str(), "accepted a non-canonical URI");
            prop_assert!(parsed.username().is_empty() && parsed.password().is_none());
            prop_assert!(parsed.fragment().is_none());
            prop_assert!(!["javascript", "data", "file", "ws", "vbscript", "blob", "about"]
                .contains(&parsed.scheme()));
            if parsed.scheme() == "http" {
                prop_assert!(is_http_loopback(&parsed), "http off loopback: {}", uri);
            }
        }
    }

    #[test]
    fn a_match_names_the_same_place_and_only_a_loopback_port_may_differ(
        (registered, requested) in registered_uri().prop_flat_map(requested_from),
    ) {
        let r = url::Url::parse(&registered).unwrap();
        prop_assert!(matches_registered(&registered, &registered));
        if !matches_registered(&registered, &requested) {
            return Ok(());
        }
        if !is_http_loopback(&r) {
            // Non-loopback: a match is byte equality.
            prop_assert_eq!(&requested, &registered);
            return Ok(());
        }
        // Loopback: equal once the port is gone, and the same host, path and query for `url`.
        prop_assert_eq!(without_port(&requested), without_port(&registered));
        // (A requested port above 65535 matches too; `url` refuses to parse it, and the
        // browser cannot follow the redirect, so nothing reaches another host.)
        if let Ok(q) = url::Url::parse(&requested) {
            prop_assert_eq!(q.scheme(), "http");
            prop_assert_eq!(q.host_str(), r.host_str());
            prop_assert!(q.username().is_empty() && q.password().is_none());
            prop_assert_eq!(q.path(), r.path());
            prop_assert_eq!(q.query(), r.query());
            prop_assert_eq!(q.fragment(), r.fragment());
        }
    }

    #[test]
    fn an_http_loopback_uri_matches_on_any_port(
        registered in loopback_uri(),
        port in 1u16..,
    ) {
        prop_assert!(validate_for_registration(&registered).is_ok(), "{}", registered);
        let r = url::Url::parse(&registered).unwrap();
        let host = r.host_str().unwrap();
        let requested = without_port(&registered).replacen(host, &format!("{host}:{port}"), 1);
        prop_assert!(
            matches_registered(&registered, &requested),
            "{} does not match {}", requested, registered
        );
    }
}

// ---------------------------------------------------------------------------------------------
// State: save/load, snapshot prefixes, journal prefixes

const TTL: u64 = 2_592_000;
const T0: u64 = 1_800_000_000;

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

fn new_client(i: u8) -> Client {
    mcp_authd::oauth::register::provision(
        &format!("Client {}", awkward(i)),
        vec![format!("http://127.0.0.1:{}/cb", 1024 + u16::from(i))],
        T0,
    )
    .unwrap_or_else(|e| panic!("{}", e.description))
    .client
}

/// Runs `ops` against a store at `path`; returns the document after each mutation, by `seq`.
/// Runs `ops` on a store at `path`, then closes it cleanly (`fold`: the journal is folded into
/// the state file) or as a crash after the last write would (the journal is left).
async fn run_store_ops(path: &Path, ops: &[StoreOp], fold: bool) -> BTreeMap<u64, StateDocument> {
    let store = StateStore::open(path).unwrap();
    let mut docs = BTreeMap::new();
    docs.insert(0, store.snapshot());
    let mut clients: Vec<String> = Vec::new();
    let mut families: Vec<(String, String)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let now = T0 + step as u64;
        let pick = |v: &[String], i: u8| v.get(usize::from(i) % v.len().max(1)).cloned();
        match op {
            StoreOp::AddClient(i) => {
                let client = new_client(*i);
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
                    store.put_family(&family_id, family).await.unwrap();
                    families.push((family_id, token));
                }
            }
            StoreOp::Rotate(f) => {
                if !families.is_empty() {
                    let i = usize::from(*f) % families.len();
                    let (id, token) = families[i].clone();
                    let next = refresh::successor(&token, &id, b"key");
                    store
                        .use_refresh_token(
                            &id,
                            &refresh::hash(&token),
                            &refresh::hash(&next),
                            &RotationAnswer {
                                iat: now,
                                exp: now + 3600,
                                scope: awkward(*f),
                            },
                            now,
                            TTL,
                        )
                        .await
                        .unwrap();
                    families[i].1 = next;
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

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(cases(24))]

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

// ---------------------------------------------------------------------------------------------
// trustedSourceCidrs

fn cidr_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>(), 1u8..=32).prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a))),
        (any::<[u8; 4]>(), 96u8..=128)
            .prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a).to_ipv6_mapped())),
        any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_string()),
        any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_ipv6_mapped().to_string()),
        (any::<u128>(), 1u8..=128)
            .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv6Addr::from(a))),
        Just("0.0.0.0/0".to_string()),
        Just("::/0".to_string()),
        Just("::ffff:0.0.0.0/96".to_string()),
        "[0-9a-f:./]{0,20}",
    ]
}

/// Whether `peer` is in `entry`, computed by hand for IPv4 peers: IPv4 networks by mask, and
/// IPv4-mapped IPv6 networks by their IPv4 equivalent. Other IPv6 networks hold no IPv4 peer.
fn reference_contains(entry: &str, peer: Ipv4Addr) -> bool {
    let (addr, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, p.parse::<u32>().ok()),
        None => (entry, None),
    };
    let (base, prefix) = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => (v4, prefix.unwrap_or(32)),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) if prefix.unwrap_or(128) >= 96 => (v4, prefix.unwrap_or(128) - 96),
            _ => return false,
        },
        Err(_) => return false,
    };
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(base) & mask == u32::from(peer) & mask
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn an_ipv4_peer_and_its_mapped_form_are_the_same_peer(
        entries in prop::collection::vec(cidr_entry(), 1..4),
        peer in any::<[u8; 4]>(),
        inside in any::<prop::sample::Index>(),
    ) {
        let Ok((trusted, _)) = TrustedSources::parse(&entries) else {
            return Ok(());
        };
        // A peer inside one of the entries as often as a random one.
        let random = Ipv4Addr::from(peer);
        let near = entries[inside.index(entries.len())]
            .split('/')
            .next()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .map(|a| match a.to_canonical() {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => random,
            })
            .unwrap_or(random);
        for v4 in [random, near] {
            let direct = trusted.contains(IpAddr::V4(v4));
            prop_assert_eq!(direct, trusted.contains(IpAddr::V6(v4.to_ipv6_mapped())));
            let expected = entries.iter().any(|e| reference_contains(e, v4));
            prop_assert_eq!(direct, expected, "{} under {:?}", v4, entries);
        }
        // No accepted entry is a wildcard (the rule is per entry, see fuzz/proxy_trust.rs).
        let shown = trusted.to_string();
        prop_assert!(!shown.split(", ").any(|n| n.ends_with("/0")), "{}", shown);
    }
}

// ---------------------------------------------------------------------------------------------
// servers.json

fn valid_section() -> Value {
    json!({
        "issuerUrl": "https://mcp.example.com",
        "jwtSecret": "0123456789abcdef0123456789abcdef",
        "trustedSourceCidrs": ["10.0.0.0/8"],
        "redirectUriAllowlist": ["https://claude.ai/api/mcp/auth_callback", "http://127.0.0.1:*"]
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        "\\$\\{[A-Z_]{0,8}\\}".prop_map(Value::from),
        "(https?|ftp)://[a-z0-9.:\\[\\]*/]{0,30}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KEYS: [&str; 17] = [
    "issuerUrl",
    "jwtSecret",
    "previousJwtSecrets",
    "trustedUserHeader",
    "trustedGroupsHeader",
    "trustedSourceCidrs",
    "accessTokenTtlSeconds",
    "refreshTokenTtlSeconds",
    "authorizationCodeTtlSeconds",
    "scopesSupported",
    "redirectUriAllowlist",
    "injectedRoles",
    "resourceUrl",
    "consent",
    "rateLimits",
    "maxDynamicClients",
    "unusedClientTtlSeconds",
];

fn env(name: &str) -> Option<String> {
    match name {
        "LONG" => Some("0123456789abcdef0123456789abcdef".into()),
        "SHORT" => Some("short".into()),
        _ => None,
    }
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn the_config_loader_never_panics(
        changes in prop::collection::vec((prop::sample::select(KEYS.to_vec()), json_value()), 0..4),
        text in ".{0,200}",
    ) {
        let mut section = valid_section();
        for (key, value) in changes {
            section[key] = value;
        }
        let doc = json!({"serverAuth": {"oauthAs": section}}).to_string();
        if let Ok(config) = Config::parse(&doc, env) {
            prop_assert!(config.jwt_secret.expose().len() >= 32);
        }
        let _ = Config::parse(&text, env);
    }

    #[test]
    fn a_short_secret_or_a_wildcard_source_is_always_refused(
        short in "[ -~]{0,31}",
        wildcard in prop::sample::select(vec![
            "0.0.0.0/0", "::/0", "::ffff:0.0.0.0/96", "::ffff:0:0/96", "0.0.0.0/0 ",
        ]),
        others in prop::collection::vec(cidr_entry(), 0..3),
    ) {
        let mut section = valid_section();
        section["jwtSecret"] = Value::from(short.clone());
        let doc = json!({"serverAuth": {"oauthAs": section}}).to_string();
        prop_assert!(Config::parse(&doc, env).is_err(), "secret {:?} accepted", short);

        let mut section = valid_section();
        let mut sources = others;
        sources.push(wildcard.to_string());
        section["trustedSourceCidrs"] = json!(sources);
        let doc = json!({"serverAuth": {"oauthAs": section}}).to_string();
        prop_assert!(Config::parse(&doc, env).is_err(), "{:?} accepted", sources);
    }
}

// ---------------------------------------------------------------------------------------------
// The token lifecycle as a state machine

const ISSUER: &str = "http://127.0.0.1:8080";
const REDIRECT: &str = "http://127.0.0.1:33418/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const WRONG_VERIFIER: &str = "wrong-verifier-wrong-verifier-wrong-verifier";
/// Short enough that a case crosses it.
const REFRESH_TTL: u64 = 150;
const CODE_TTL: u64 = 60;
const GRACE: u64 = refresh::GRACE_SECONDS;

/// Which token of a family to present.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Latest,
    Previous,
    Older,
    /// The family id with a made-up secret.
    Forged,
}

#[derive(Debug, Clone)]
enum Op {
    Authorize {
        client: u8,
    },
    /// `code` counts back from the newest code.
    Redeem {
        code: u8,
        wrong_verifier: bool,
        other_client: bool,
    },
    /// `family` indexes the live families when there are any and `live` is set.
    Refresh {
        family: u8,
        live: bool,
        pick: Pick,
    },
    Revoke {
        family: u8,
        pick: Pick,
    },
    Advance {
        seconds: u64,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let pick = prop_oneof![
        6 => Just(Pick::Latest),
        3 => Just(Pick::Previous),
        1 => Just(Pick::Older),
        1 => Just(Pick::Forged),
    ];
    prop_oneof![
        6 => any::<u8>().prop_map(|client| Op::Authorize { client }),
        4 => (
            prop_oneof![3 => Just(0u8), 1 => any::<u8>()],
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(code, wrong_verifier, other_client)| Op::Redeem {
                code,
                wrong_verifier,
                other_client,
            }),
        8 => (any::<u8>(), prop::bool::weighted(0.85), pick.clone())
            .prop_map(|(family, live, pick)| Op::Refresh { family, live, pick }),
        1 => (any::<u8>(), pick).prop_map(|(family, pick)| Op::Revoke { family, pick }),
        3 => prop_oneof![0u64..5, 25u64..35, 50u64..70].prop_map(|seconds| Op::Advance { seconds }),
        1 => Just(Op::Restart),
    ]
}

/// A code the model knows of.
#[derive(Debug)]
struct CodeModel {
    code: String,
    client: usize,
    expires_at: u64,
    /// The family its redemption produced.
    redeemed: Option<usize>,
    /// Dropped by a restart (codes live in memory only).
    lost: bool,
}

/// A refresh-token family the model knows of.
#[derive(Debug)]
struct FamilyModel {
    id: String,
    client: usize,
    /// Every token issued with a 200, oldest first.
    tokens: Vec<String>,
    live: bool,
    rotated_at: Option<u64>,
    expires_at: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Rotate,
    Grace,
    Reuse,
    Expired,
}

impl FamilyModel {
    /// The documented rule (README "Security decisions"), written independently of the code.
    fn decide(&self, token: usize, now: u64) -> Decision {
        let latest = self.tokens.len() - 1;
        let expired = now >= self.expires_at;
        if token == latest {
            return if expired {
                Decision::Expired
            } else {
                Decision::Rotate
            };
        }
        let in_grace = self.rotated_at.is_some_and(|at| now <= at + GRACE);
        if token + 1 == latest && in_grace && !expired {
            Decision::Grace
        } else {
            Decision::Reuse
        }
    }

    /// The token `pick` names, as an index into `tokens` (`None`: a forged one).
    fn pick(&self, pick: Pick) -> Option<usize> {
        let latest = self.tokens.len() - 1;
        match pick {
            Pick::Latest => Some(latest),
            Pick::Previous => Some(latest.saturating_sub(1)),
            Pick::Older => Some(latest.saturating_sub(2)),
            Pick::Forged => None,
        }
    }
}

struct Machine {
    dir: tempfile::TempDir,
    app: Option<AppState>,
    /// The same store as `app.store`, typed, for its in-memory document.
    store: Option<Arc<StateStore>>,
    clock: Arc<ManualClock>,
    clients: Vec<Client>,
    codes: Vec<CodeModel>,
    families: Vec<FamilyModel>,
    successes: u64,
    /// How often each rule was exercised, by name.
    seen: BTreeMap<&'static str, u64>,
}

fn test_config() -> Config {
    let doc = json!({"serverAuth": {"oauthAs": {
        "issuerUrl": ISSUER,
        "jwtSecret": "state-machine-secret-state-machine-0123",
        "trustedSourceCidrs": ["127.0.0.1/32"],
        "redirectUriAllowlist": ["http://127.0.0.1:*"],
        "consent": "never",
        "refreshTokenTtlSeconds": REFRESH_TTL,
        "authorizationCodeTtlSeconds": CODE_TTL
    }}});
    Config::parse(&doc.to_string(), |_| None).expect("the test config is valid")
}

fn form(pairs: &[(&str, &str)]) -> Params {
    let encoded = serde_urlencoded::to_string(pairs).unwrap();
    Params::parse(encoded.as_bytes()).unwrap()
}

impl Machine {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let mut machine = Self {
            dir,
            app: None,
            store: None,
            clock,
            clients: Vec::new(),
            codes: Vec::new(),
            families: Vec::new(),
            successes: 0,
            seen: BTreeMap::new(),
        };
        machine.start();
        for i in 0..2 {
            let client = mcp_authd::oauth::register::provision(
                &format!("Client {i}"),
                vec![REDIRECT.to_string()],
                T0,
            )
            .unwrap_or_else(|e| panic!("{}", e.description))
            .client;
            machine
                .app()
                .store
                .put_client(client.clone())
                .await
                .unwrap();
            machine.clients.push(client);
        }
        machine
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("auth_server.json")
    }

    fn start(&mut self) {
        let store = Arc::new(StateStore::open(&self.path()).unwrap());
        let shared: Arc<dyn Store> = store.clone();
        self.app = Some(AppState::with_clock(
            test_config(),
            shared,
            self.clock.clone(),
        ));
        self.store = Some(store);
    }

    fn app(&self) -> &AppState {
        self.app.as_ref().unwrap()
    }

    fn now(&self) -> u64 {
        self.app().now()
    }

    /// The state on disk must hold `token` as the live token of `family`.
    fn assert_persisted(&self, family: &str, token: &str) {
        let (doc, _) = read_state(&self.path()).unwrap();
        let stored = doc
            .refresh_tokens
            .get(&refresh::family_key(family))
            .unwrap_or_else(|| panic!("family {family} answered 200 but is not on disk"));
        assert_eq!(
            stored.current_hash,
            refresh::hash(token),
            "a refresh token returned with 200 is not the live one on disk"
        );
    }

    fn saw(&mut self, what: &'static str) {
        *self.seen.entry(what).or_default() += 1;
    }

    async fn step(&mut self, op: &Op) {
        match *op {
            Op::Authorize { client } => {
                let client = usize::from(client) % self.clients.len();
                let params = form(&[
                    ("response_type", "code"),
                    ("client_id", &self.clients[client].client_id),
                    ("redirect_uri", REDIRECT),
                    ("code_challenge", &challenge(VERIFIER)),
                    ("code_challenge_method", "S256"),
                    ("state", "s"),
                ]);
                let (_, pending) =
                    authorize::validate(self.app(), self.app().config.primary_issuer(), &params)
                        .await
                        .unwrap_or_else(|e| panic!("authorize: {e:?}"));
                let url = authorize::issue_code(self.app(), &pending, "alice", vec![]);
                let code = crate::helpers::query_of(&url)["code"].clone();
                self.codes.push(CodeModel {
                    code,
                    client,
                    expires_at: self.now() + CODE_TTL,
                    redeemed: None,
                    lost: false,
                });
            }
            Op::Redeem {
                code,
                wrong_verifier,
                other_client,
            } => {
                if self.codes.is_empty() {
                    return;
                }
                let index = self.codes.len() - 1 - usize::from(code) % self.codes.len();
                let c = &self.codes[index];
                let client = if other_client {
                    (c.client + 1) % self.clients.len()
                } else {
                    c.client
                };
                let verifier = if wrong_verifier {
                    WRONG_VERIFIER
                } else {
                    VERIFIER
                };
                let request = form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &c.code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", verifier),
                ]);
                let result = grants::exchange(
                    self.app(),
                    self.app().config.primary_issuer(),
                    &self.clients[client],
                    &request,
                )
                .await;
                let now = self.now();
                let c = &self.codes[index];
                let code_client = c.client;
                if c.lost || (c.redeemed.is_none() && now >= c.expires_at) {
                    assert_invalid_grant(result, "a lost or expired code");
                    self.saw(if c.lost {
                        "code lost in a restart"
                    } else {
                        "code expired"
                    });
                } else if let Some(family) = c.redeemed {
                    // A replay: refused; what the first redemption issued is revoked only when
                    // the code's own client replays it with its verifier (SPEC §17).
                    assert_invalid_grant(result, "a replayed code");
                    if wrong_verifier || other_client {
                        self.saw("spent code presented by a stranger");
                    } else {
                        self.families[family].live = false;
                        self.saw("code replayed");
                    }
                } else if wrong_verifier || other_client {
                    // Refused without consuming the code.
                    assert_invalid_grant(result, "a wrong verifier or client");
                    self.saw("code check failed");
                } else {
                    self.saw("code redeemed");
                    let response = result.unwrap_or_else(|e| panic!("redeem: {e:?}"));
                    let token = response.refresh_token;
                    let id = refresh::family_of(&token)
                        .expect("a well-formed token")
                        .to_string();
                    assert!(self.families.iter().all(|f| f.id != id), "family id reused");
                    self.assert_persisted(&id, &token);
                    self.successes += 1;
                    self.codes[index].redeemed = Some(self.families.len());
                    self.families.push(FamilyModel {
                        id,
                        client: code_client,
                        tokens: vec![token],
                        live: true,
                        rotated_at: None,
                        expires_at: now + REFRESH_TTL,
                    });
                }
            }
            Op::Refresh { family, live, pick } => {
                let live_ones: Vec<usize> = (0..self.families.len())
                    .filter(|i| self.families[*i].live)
                    .collect();
                let index = if live && !live_ones.is_empty() {
                    live_ones[usize::from(family) % live_ones.len()]
                } else if self.families.is_empty() {
                    return;
                } else {
                    usize::from(family) % self.families.len()
                };
                let f = &self.families[index];
                let presented = match f.pick(pick) {
                    Some(i) => f.tokens[i].clone(),
                    None => format!("{}.{}", f.id, "A".repeat(43)),
                };
                let request = form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &presented),
                ]);
                let result = grants::exchange(
                    self.app(),
                    self.app().config.primary_issuer(),
                    &self.clients[f.client],
                    &request,
                )
                .await;
                let now = self.now();
                let f = &mut self.families[index];
                let decision = match f.pick(pick) {
                    Some(i) => f.decide(i, now),
                    None => Decision::Reuse,
                };
                if !f.live {
                    assert_invalid_grant(result, "a token of a revoked family");
                    self.saw("refresh of a revoked family");
                    return;
                }
                self.saw(match decision {
                    Decision::Rotate => "refresh rotated",
                    Decision::Grace => "refresh in grace",
                    Decision::Reuse => "refresh reuse revoked",
                    Decision::Expired => "refresh expired",
                });
                let f = &mut self.families[index];
                match decision {
                    Decision::Rotate => {
                        let token = result
                            .unwrap_or_else(|e| panic!("rotate: {e:?}"))
                            .refresh_token;
                        assert!(!f.tokens.contains(&token), "a successor repeated a token");
                        assert_eq!(refresh::family_of(&token), Some(f.id.as_str()));
                        f.tokens.push(token.clone());
                        f.rotated_at = Some(now);
                        f.expires_at = now + REFRESH_TTL;
                        let id = f.id.clone();
                        self.assert_persisted(&id, &token);
                        self.successes += 1;
                    }
                    Decision::Grace => {
                        let token = result
                            .unwrap_or_else(|e| panic!("grace: {e:?}"))
                            .refresh_token;
                        assert_eq!(&token, f.tokens.last().unwrap(), "grace gave another token");
                        let id = f.id.clone();
                        self.assert_persisted(&id, &token);
                        self.successes += 1;
                    }
                    Decision::Reuse => {
                        assert_invalid_grant(result, "reuse");
                        f.live = false;
                    }
                    Decision::Expired => assert_invalid_grant(result, "an expired token"),
                }
            }
            Op::Revoke { family, pick } => {
                if self.families.is_empty() {
                    return;
                }
                let index = usize::from(family) % self.families.len();
                let f = &self.families[index];
                let presented = match f.pick(pick) {
                    Some(i) => f.tokens[i].clone(),
                    None => format!("{}.{}", f.id, "A".repeat(43)),
                };
                let request = form(&[("token", &presented)]);
                grants::revoke(self.app(), &self.clients[f.client], &request)
                    .await
                    .unwrap_or_else(|e| panic!("revoke: {e:?}"));
                let now = self.now();
                let f = &mut self.families[index];
                let decision = match f.pick(pick) {
                    Some(i) => f.decide(i, now),
                    None => Decision::Reuse,
                };
                // Revocation by a token that is (or was just) valid ends the family; an old
                // or forged token changes nothing (README: revocation reveals nothing).
                if decision != Decision::Reuse && f.live {
                    f.live = false;
                    self.saw("revoked");
                }
            }
            Op::Advance { seconds } => self.clock.advance(seconds),
            Op::Restart => {
                self.restart();
                self.saw("restart");
            }
        }
    }

    fn restart(&mut self) {
        let (on_disk, _) = read_state(&self.path()).unwrap();
        let in_memory = self.store.as_ref().unwrap().snapshot();
        assert_eq!(
            on_disk, in_memory,
            "the disk lags what the store acknowledged"
        );
        // Dropping both handles drops the store: the writer finishes, the lock is released.
        self.app = None;
        self.store = None;
        self.start();
        let (reopened, _) = read_state(&self.path()).unwrap();
        assert_eq!(reopened, in_memory, "a restart changed the state");
        for code in &mut self.codes {
            code.lost = true;
        }
    }

    /// The invariants that hold between any two steps.
    async fn check(&self) {
        for f in &self.families {
            let stored = self.app().store.family(&refresh::family_key(&f.id)).await;
            if !f.live {
                // Revoked families yield nothing.
                assert!(
                    stored.is_none(),
                    "family {} is revoked but still stored",
                    f.id
                );
                continue;
            }
            let Some(stored) = stored else {
                panic!("live family {} is missing", f.id);
            };
            // At most one live refresh token per family: the latest one issued.
            let live: Vec<&String> = f
                .tokens
                .iter()
                .filter(|t| refresh::hash(t) == stored.current_hash)
                .collect();
            assert_eq!(live, vec![f.tokens.last().unwrap()], "family {}", f.id);
            let unique: HashSet<&String> = f.tokens.iter().collect();
            assert_eq!(unique.len(), f.tokens.len());
            if f.tokens.len() >= 2 {
                let previous = &f.tokens[f.tokens.len() - 2];
                assert_eq!(stored.previous_hash, Some(refresh::hash(previous)));
            }
        }
        // A code yields tokens at most once.
        let mut seen = HashSet::new();
        for c in &self.codes {
            if let Some(family) = c.redeemed {
                assert!(seen.insert(family), "two codes produced one family");
            }
        }
    }
}

fn assert_invalid_grant<T: std::fmt::Debug>(
    result: Result<T, mcp_authd::oauth::OAuthError>,
    what: &str,
) {
    match result {
        Err(e) => assert_eq!(e.code.as_str(), "invalid_grant", "{what}: {e:?}"),
        Ok(v) => panic!("{what} was accepted: {v:?}"),
    }
}

#[test]
fn the_token_lifecycle_keeps_its_invariants_across_restarts() {
    let mut runner = TestRunner::new(cases(48));
    let steps = std::cell::Cell::new(0u64);
    let successes = std::cell::Cell::new(0u64);
    let seen = std::cell::RefCell::new(BTreeMap::<&'static str, u64>::new());
    runner
        .run(&prop::collection::vec(op(), 1..50), |ops| {
            let (n, ok) = block_on(async {
                let mut machine = Machine::new().await;
                for op in &ops {
                    machine.step(op).await;
                    machine.check().await;
                }
                // Whatever happened, a final restart changes nothing that was acknowledged.
                machine.restart();
                machine.check().await;
                for (what, n) in &machine.seen {
                    *seen.borrow_mut().entry(what).or_default() += n;
                }
                (ops.len() as u64, machine.successes)
            });
            steps.set(steps.get() + n);
            successes.set(successes.get() + ok);
            Ok(())
        })
        .unwrap();
    println!(
        "state machine: {} steps, {} tokens issued and checked on disk; {:?}",
        steps.get(),
        successes.get(),
        seen.borrow()
    );
}
