//! Abuse limits (catalogue rows 36, 73–75, 84): rate limits on registration and the token
//! endpoint keyed by the client address behind the proxy, the cap on dynamic clients, the
//! collection of clients that were never used, body caps answered in the endpoint's own
//! format, redirect URI caps and `client_name` sanitising.

// Test code: a failed unwrap is a failed test.

use std::time::{Duration, Instant};

use mcp_authd::store::file::read_state;
use mcp_authd::store::prelude::*;
use mcp_authd::store::{Registration, StateStore};
use serde_json::{Value, json};

use crate::helpers::*;

/// A server whose `rateLimits` are `limits` (`None`: the built-in defaults), with `extra`
/// applied to the rest of the section.
async fn spawn_limited(
    limits: Option<Value>,
    extra: &dyn Fn(&mut Value),
) -> (TestApp, tempfile::TempDir) {
    let configure = |c: &mut Value| {
        match &limits {
            Some(limits) => c["rateLimits"] = limits.clone(),
            None => {
                c.as_object_mut().unwrap().remove("rateLimits");
            }
        }
        extra(c);
    };
    TestApp::spawn_configured(&configure).await
}

/// POST /oauth/register (or `path`) from `http`, with optional `X-Forwarded-For` lines.
async fn register_via(
    app: &TestApp,
    http: &reqwest::Client,
    path: &str,
    forwarded_for: &[&str],
) -> reqwest::Response {
    let mut request = http
        .post(app.url(path))
        .json(&json!({"client_name": "Flood", "redirect_uris": [REDIRECT]}));
    for line in forwarded_for {
        request = request.header("X-Forwarded-For", *line);
    }
    request.send().await.unwrap()
}

/// POST /oauth/token (or `path`) for a client behind the proxy at `forwarded_for`.
async fn token_via(
    app: &TestApp,
    path: &str,
    forwarded_for: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .header("X-Forwarded-For", forwarded_for)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Asserts a 429 with `Retry-After` and an RFC 6749 JSON body; returns the seconds.
async fn assert_limited(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let description = assert_oauth_error(response, 429, "temporarily_unavailable").await;
    assert!(description.contains("too many requests"), "{description}");
    retry_after
}

async fn dynamic_clients(app: &TestApp) -> usize {
    app.state
        .store
        .clients()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.registration == Registration::Dynamic)
        .count()
}

// ---------------------------------------------------------------------------------------------
// Rate limits

#[tokio::test]
async fn registration_is_limited_per_address_by_default_with_retry_after() {
    let (app, _dir) = spawn_limited(None, &|_| {}).await;
    // A client connecting directly from an address that is not a trusted source.
    let direct = client(Some("127.0.0.2".parse().unwrap()));
    // Default: 20 per minute per address, as a burst.
    for _ in 0..20 {
        assert_eq!(
            register_via(&app, &direct, "/oauth/register", &[])
                .await
                .status(),
            201
        );
    }
    let retry_after =
        assert_limited(register_via(&app, &direct, "/oauth/register", &[]).await).await;
    // One registration comes back every 3 s (20 per minute).
    assert_eq!(retry_after, 3);
    // The root alias shares the allowance.
    assert_limited(register_via(&app, &direct, "/register", &[]).await).await;
    assert_eq!(
        dynamic_clients(&app).await,
        20,
        "a refused request stores nothing"
    );

    // Another address is not affected, whether direct or behind the trusted proxy.
    let other = client(Some("127.0.0.3".parse().unwrap()));
    assert_eq!(
        register_via(&app, &other, "/register", &[]).await.status(),
        201
    );
    assert_eq!(
        register_via(&app, &app.http, "/register", &["203.0.113.5"])
            .await
            .status(),
        201
    );
    // Preflights are never counted, and a 429 is readable cross-origin.
    let response = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/oauth/register"))
        .header("Origin", "https://claude.ai")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let response = direct
        .post(app.url("/oauth/register"))
        .header("Origin", "https://claude.ai")
        .json(&json!({"redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert_limited(response).await;

    // Time refills the bucket.
    app.clock.advance(retry_after);
    assert_eq!(
        register_via(&app, &direct, "/oauth/register", &[])
            .await
            .status(),
        201
    );
    assert_limited(register_via(&app, &direct, "/oauth/register", &[]).await).await;
    app.stop().await;
}

#[tokio::test]
async fn the_token_endpoint_is_limited_per_address_and_a_refused_request_burns_nothing() {
    let (app, _dir) = spawn_limited(
        Some(json!({"tokenPerMinute": 5, "registerPerMinute": 0})),
        &|_| {},
    )
    .await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    // A client behind the proxy.
    let me = "203.0.113.7";
    for _ in 0..5 {
        let bad = [("grant_type", "refresh_token"), ("client_id", &client_id)];
        let response = token_via(&app, "/oauth/token", me, &bad).await;
        assert_eq!(response.status(), 400);
    }
    // The sixth request, valid or not, on either path, is refused before it is read.
    assert_limited(token_via(&app, "/oauth/token", me, &exchange).await).await;
    let junk = [("grant_type", "authorization_code")];
    assert_eq!(
        assert_limited(token_via(&app, "/token", me, &junk).await).await,
        12
    );
    // The proxy's own requests (a trusted source) are not limited per address, nor is
    // another client behind it.
    let bad = [("grant_type", "refresh_token"), ("client_id", &client_id)];
    for _ in 0..20 {
        assert_eq!(app.token(&bad).await.status(), 400);
    }
    let other = token_via(&app, "/oauth/token", "203.0.113.8", &bad).await;
    assert_eq!(other.status(), 400);
    // The code was not consumed by the refused attempt.
    app.clock.advance(12);
    let response = token_via(&app, "/oauth/token", me, &exchange).await;
    assert_eq!(response.status(), 200);
    // Revocation counts in a bucket of its own (and the proxy's own requests in none);
    // discovery is not limited.
    let response = app
        .http
        .post(app.url("/oauth/revoke"))
        .form(&[("client_id", client_id.as_str()), ("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.http
            .get(app.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

/// SPEC §17 (issue 8, item 8): introspection and revocation authenticate clients too, so they
/// are held to `tokenPerMinute` per client address like token requests, each endpoint in its
/// own bucket (an MCP server introspecting does not use up the refreshes of clients behind
/// the same address).
#[tokio::test]
async fn introspection_and_revocation_are_limited_per_address_like_token_requests() {
    let (app, _dir) = spawn_limited(
        Some(json!({"tokenPerMinute": 2, "registerPerMinute": 0})),
        &|_| {},
    )
    .await;
    let (client_id, tokens) = app.signed_in_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    let server = mcp_authd::oauth::register::provision(
        "MCP server",
        vec!["https://rs.example/unused".into()],
        app.state.now(),
    )
    .unwrap();
    let (rs_id, rs_secret) = (
        server.client.client_id.clone(),
        server.secret.clone().unwrap(),
    );
    app.state.store.put_client(server.client).await.unwrap();
    let introspect = |from: &'static str| {
        app.http
            .post(app.url("/oauth/introspect"))
            .header("X-Forwarded-For", from)
            .basic_auth(&rs_id, Some(&rs_secret))
            .form(&[("token", access)])
            .send()
    };
    let me = "203.0.113.7";
    for _ in 0..2 {
        let response = introspect(me).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_limited(introspect(me).await.unwrap()).await;
    // Another address has its own allowance.
    assert_eq!(introspect("203.0.113.8").await.unwrap().status(), 200);

    let revoke = [("client_id", client_id.as_str()), ("token", "unknown")];
    for _ in 0..2 {
        let response = token_via(&app, "/oauth/revoke", me, &revoke).await;
        assert_eq!(response.status(), 200);
    }
    assert_limited(token_via(&app, "/oauth/revoke", me, &revoke).await).await;

    // Token requests from the same address still have their own two.
    let bad = [("grant_type", "refresh_token"), ("client_id", &client_id)];
    for _ in 0..2 {
        assert_eq!(
            token_via(&app, "/oauth/token", me, &bad).await.status(),
            400
        );
    }
    assert_limited(token_via(&app, "/oauth/token", me, &bad).await).await;
    app.stop().await;
}

#[tokio::test]
async fn behind_the_proxy_the_right_most_untrusted_forwarded_address_is_the_key() {
    let (app, _dir) = spawn_limited(
        Some(json!({"registerPerMinute": 2, "registerGlobalPerMinute": 0})),
        &|c| c["trustedSourceCidrs"] = json!(["127.0.0.1/32", "10.0.0.0/8"]),
    )
    .await;
    // The test client connects from 127.0.0.1: the trusted proxy. The client behind it wrote
    // the left-most entry; the proxies appended the others.
    for spoofed in ["6.6.6.6", "7.7.7.7"] {
        let line = format!("{spoofed}, 203.0.113.1, 10.0.0.9");
        assert_eq!(
            register_via(&app, &app.http, "/oauth/register", &[&line])
                .await
                .status(),
            201
        );
    }
    // A fresh left-most entry does not buy a fresh allowance.
    for spoofed in ["8.8.8.8", "203.0.113.2", "10.0.0.1"] {
        let line = format!("{spoofed}, 203.0.113.1, 10.0.0.9");
        assert_limited(register_via(&app, &app.http, "/oauth/register", &[&line]).await).await;
    }
    // Split over two header lines it is the same list.
    assert_limited(
        register_via(
            &app,
            &app.http,
            "/oauth/register",
            &["9.9.9.9", "203.0.113.1"],
        )
        .await,
    )
    .await;
    // Another client behind the proxy has its own allowance.
    assert_eq!(
        register_via(&app, &app.http, "/oauth/register", &["203.0.113.2"])
            .await
            .status(),
        201
    );
    // Requests from a trusted source itself (no forwarded address, or only trusted ones) have
    // no per-address limit: such a host can already assert any user's identity.
    for forwarded in [&[][..], &["10.0.0.7"], &["127.0.0.1, 10.0.0.9"]] {
        for _ in 0..3 {
            assert_eq!(
                register_via(&app, &app.http, "/oauth/register", forwarded)
                    .await
                    .status(),
                201,
                "{forwarded:?}"
            );
        }
    }
    // Unreadable entries count against the proxy's own address: they neither choose an
    // address of their own nor escape the limit.
    for _ in 0..2 {
        assert_eq!(
            register_via(&app, &app.http, "/oauth/register", &["unknown"])
                .await
                .status(),
            201
        );
    }
    assert_limited(register_via(&app, &app.http, "/oauth/register", &["unknown, 10.0.0.9"]).await)
        .await;

    // From a peer that is not a trusted proxy, X-Forwarded-For is never read.
    let direct = client(Some("127.0.0.3".parse().unwrap()));
    for forwarded in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(
            register_via(&app, &direct, "/oauth/register", &[forwarded])
                .await
                .status(),
            201
        );
    }
    assert_limited(register_via(&app, &direct, "/oauth/register", &["198.51.100.3"]).await).await;
    app.stop().await;
}

#[tokio::test]
async fn the_global_registration_limit_spans_every_address() {
    let (app, _dir) = spawn_limited(
        Some(json!({"registerPerMinute": 0, "registerGlobalPerMinute": 3})),
        &|_| {},
    )
    .await;
    for forwarded in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        assert_eq!(
            register_via(&app, &app.http, "/oauth/register", &[forwarded])
                .await
                .status(),
            201
        );
    }
    let retry_after =
        assert_limited(register_via(&app, &app.http, "/register", &["203.0.113.4"]).await).await;
    assert_eq!(retry_after, 20);
    assert_eq!(dynamic_clients(&app).await, 3);
    app.stop().await;
}

#[tokio::test]
async fn zero_disables_a_limit() {
    let (app, _dir) = spawn_limited(
        Some(json!({"registerPerMinute": 0, "registerGlobalPerMinute": 0, "tokenPerMinute": 0})),
        &|_| {},
    )
    .await;
    for _ in 0..40 {
        assert_eq!(
            register_via(&app, &app.http, "/oauth/register", &[])
                .await
                .status(),
            201
        );
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The client cap

#[tokio::test]
async fn registration_beyond_max_dynamic_clients_is_503_and_provisioned_clients_do_not_count() {
    let (app, _dir) = spawn_with_cap(3).await;
    // A pre-provisioned client is not part of the quota.
    let provisioned = mcp_authd::oauth::register::provision(
        "Gemini Enterprise",
        vec!["https://vertexaisearch.cloud.google.com/oauth-redirect".to_string()],
        app.state.now(),
    )
    .unwrap()
    .client;
    app.state.store.put_client(provisioned).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.register_public(REDIRECT).await);
    }
    let description = assert_oauth_error(
        app.register_raw(json!({"redirect_uris": [REDIRECT]})).await,
        503,
        "temporarily_unavailable",
    )
    .await;
    assert!(description.contains("maximum of 3"), "{description}");
    assert_eq!(dynamic_clients(&app).await, 3);
    assert_eq!(app.state.store.clients().await.unwrap().len(), 4);

    // Room made by removing one is available again.
    assert!(app.state.store.remove_client(&ids[0]).await.unwrap());
    app.register_public(REDIRECT).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_never_exceed_the_cap() {
    let (app, _dir) = spawn_with_cap(10).await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (http, url, start) = (app.http.clone(), app.url("/oauth/register"), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            http.post(url)
                .json(&json!({"redirect_uris": [REDIRECT]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            201 => created += 1,
            503 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 10);
    assert_eq!(dynamic_clients(&app).await, 10);
    app.stop().await;
}

/// SPEC §17 (issue 8, item 7): one address registering at its allowed rate would keep a full
/// table full for everyone. At the cap, a registration evicts the oldest self-registered client
/// that was never used (no consent, no refresh token) and is older than 10 minutes; clients
/// that were used, pre-provisioned ones and fresh ones stay, and only when nothing can go is
/// the answer 503. The eviction is journaled: the state on disk matches.
#[tokio::test]
async fn at_the_cap_the_oldest_never_used_client_older_than_ten_minutes_makes_room() {
    let (app, _dir) = spawn_with_cap(4).await;
    let provisioned = mcp_authd::oauth::register::provision(
        "Gemini Enterprise",
        vec!["https://vertexaisearch.cloud.google.com/oauth-redirect".to_string()],
        app.state.now(),
    )
    .unwrap()
    .client;
    let provisioned = {
        let id = provisioned.client_id.clone();
        app.state.store.put_client(provisioned).await.unwrap();
        id
    };
    // Signed in: a consent and a refresh-token family.
    let (signed_in, _) = app.signed_in_client().await;
    // Approved, code never redeemed: a consent only.
    let approved = app.register_public(REDIRECT).await;
    app.code_for(&approved, REDIRECT).await;
    let oldest = app.register_public(REDIRECT).await;
    app.clock.advance(1);
    let second_oldest = app.register_public(REDIRECT).await;
    assert_eq!(dynamic_clients(&app).await, 4);

    // All of them are younger than 10 minutes: nothing may go.
    app.clock.advance(599);
    assert_oauth_error(
        app.register_raw(json!({"redirect_uris": [REDIRECT]})).await,
        503,
        "temporarily_unavailable",
    )
    .await;

    app.clock.advance(10);
    let first_new = app.register_public(REDIRECT).await;
    app.clock.advance(1);
    let second_new = app.register_public(REDIRECT).await;
    // Only used and fresh clients are left.
    assert_oauth_error(
        app.register_raw(json!({"redirect_uris": [REDIRECT]})).await,
        503,
        "temporarily_unavailable",
    )
    .await;
    let mut expected = vec![
        provisioned,
        signed_in,
        approved,
        first_new.clone(),
        second_new,
    ];
    expected.sort();
    let ids = |clients: Vec<mcp_authd::store::Client>| {
        let mut ids: Vec<String> = clients.into_iter().map(|c| c.client_id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(app.state.store.clients().await.unwrap()), expected);
    assert!(!expected.contains(&oldest) && !expected.contains(&second_oldest));

    // Ten minutes on, the older of the two new ones makes room.
    app.clock.advance(600);
    let third_new = app.register_public(REDIRECT).await;
    expected.retain(|id| *id != first_new);
    expected.push(third_new);
    expected.sort();
    assert_eq!(ids(app.state.store.clients().await.unwrap()), expected);

    // The journal replays to the same clients.
    let state_path = app.state_path.clone();
    app.stop().await;
    let (doc, _) = read_state(&state_path).unwrap();
    let mut on_disk: Vec<String> = doc.clients.into_keys().collect();
    on_disk.sort();
    assert_eq!(on_disk, expected);
}

/// SPEC §17 (issue 8, item 7): what one registration stores is bounded. `scope` as requests
/// are (1024 bytes, 64 values); a grant type listed many times is kept once; redirect URIs
/// and names have their own caps (see the tests above and below).
#[tokio::test]
async fn registered_scope_is_capped_and_repeated_grant_types_are_kept_once() {
    let (app, _dir) = TestApp::spawn().await;
    let register =
        |scope: String| app.register_raw(json!({"redirect_uris": [REDIRECT], "scope": scope}));
    // 64 values in 1024 bytes: the most a client may register.
    let largest = (0..64)
        .map(|i| format!("s{i:02}{}", "x".repeat(11)))
        .collect::<Vec<_>>()
        .join(" ");
    let largest = format!("{largest}{}", "y".repeat(1024 - largest.len()));
    assert_eq!(largest.len(), 1024);
    let body: Value = register(largest.clone()).await.json().await.unwrap();
    assert_eq!(body["scope"], largest);
    let too_long = format!("{largest}z");
    let description =
        assert_oauth_error(register(too_long).await, 400, "invalid_client_metadata").await;
    assert!(description.contains("1024"), "{description}");
    let too_many = (0..65)
        .map(|i| format!("s{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let description =
        assert_oauth_error(register(too_many).await, 400, "invalid_client_metadata").await;
    assert!(description.contains("64"), "{description}");

    let mut grants = vec!["authorization_code"; 300];
    grants.extend(["refresh_token"; 300]);
    let response = app
        .register_raw(json!({"redirect_uris": [REDIRECT], "grant_types": grants}))
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    let stored = app
        .state
        .store
        .client(body["client_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.grant_types, ["authorization_code", "refresh_token"]);
    assert_eq!(app.state.store.clients().await.unwrap().len(), 2);
    app.stop().await;
}

/// A server with `maxDynamicClients` = `cap` and no rate limits.
async fn spawn_with_cap(cap: usize) -> (TestApp, tempfile::TempDir) {
    TestApp::spawn_configured(&|c| c["maxDynamicClients"] = json!(cap)).await
}

// ---------------------------------------------------------------------------------------------
// Collection of clients that were never used

/// Registers a public client whose user got a code, without redeeming it (no consent is
/// recorded under `consent: never`, and no family exists).
async fn client_with_unredeemed_code(app: &TestApp) -> String {
    let client_id = app.register_public(REDIRECT).await;
    app.code_for(&client_id, REDIRECT).await;
    client_id
}

#[tokio::test]
async fn dynamic_clients_never_used_are_collected_and_the_removal_is_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Options {
        configure: &|c| c["consent"] = json!("never"),
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let unused = app.register_public(REDIRECT).await;
    let only_a_code = client_with_unredeemed_code(&app).await;
    // Signed in: a refresh-token family (and, under `never`, no consent record).
    let (with_family, tokens) = app.signed_in_client().await;
    let provisioned = mcp_authd::oauth::register::provision(
        "Provisioned",
        vec!["https://vertexaisearch.cloud.google.com/oauth-redirect".to_string()],
        app.state.now(),
    )
    .unwrap()
    .client;
    let provisioned_id = provisioned.client_id.clone();
    app.state.store.put_client(provisioned).await.unwrap();

    // Not old enough yet: nothing happens.
    app.clock.advance(86_400);
    assert_eq!(mcp_authd::http::collect_unused_clients(&app.state).await, 0);
    app.clock.advance(1);
    let recent = app.register_public(REDIRECT).await;
    assert_eq!(mcp_authd::http::collect_unused_clients(&app.state).await, 2);

    let left = client_ids(app.state.store.as_ref()).await;
    for kept in [&with_family, &provisioned_id, &recent] {
        assert!(left.contains(kept), "{kept} was collected");
    }
    for gone in [&unused, &only_a_code] {
        assert!(!left.contains(gone), "{gone} was kept");
    }
    // A collected client is told to register again; the live one keeps refreshing.
    let response = app.exchange(&unused, "any-code", REDIRECT).await;
    let description = assert_oauth_error(response, 401, "invalid_client").await;
    assert!(description.contains("register"), "{description}");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(app.refresh(&with_family, refresh).await.status(), 200);

    // The removal is durable: on disk before the call returned.
    let (doc, _) = read_state(&app.state_path).unwrap();
    assert!(!doc.clients.contains_key(&unused));
    assert!(doc.clients.contains_key(&with_family));
    app.stop().await;
    let store = StateStore::open(&dir.path().join("auth_server.json")).unwrap();
    let ids: Vec<String> = store.snapshot().clients.into_keys().collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(!ids.contains(&unused) && !ids.contains(&only_a_code));
}

#[tokio::test]
async fn a_consented_client_is_kept_even_without_refresh_tokens() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    // Alice approves, but the client never redeems the code.
    app.code_for(&client_id, REDIRECT).await;
    assert!(app.state.store.has_consent(USER, &client_id).await.unwrap());
    app.clock.advance(90 * 86_400);
    assert_eq!(mcp_authd::http::collect_unused_clients(&app.state).await, 0);
    assert!(app.state.store.client(&client_id).await.unwrap().is_some());
    app.stop().await;
}

#[tokio::test]
async fn a_zero_ttl_never_collects() {
    let (app, _dir) = TestApp::spawn_configured(&|c| c["unusedClientTtlSeconds"] = json!(0)).await;
    let client_id = app.register_public(REDIRECT).await;
    app.clock.advance(365 * 86_400);
    assert_eq!(mcp_authd::http::collect_unused_clients(&app.state).await, 0);
    assert!(app.state.store.client(&client_id).await.unwrap().is_some());
    app.stop().await;
}

#[tokio::test]
async fn collection_runs_when_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("auth_server.json");
    // A state written long ago (the test server's clock starts at 1 800 000 000).
    let old = 1_700_000_000;
    let (stale, provisioned) = {
        let store = StateStore::open(&state_path).unwrap();
        let request: mcp_authd::oauth::register::RegistrationRequest =
            serde_json::from_value(json!({"redirect_uris": [REDIRECT]})).unwrap();
        let allowlist = [mcp_authd::oauth::redirect::RedirectPattern::parse(
            "http://127.0.0.1:*",
        )];
        let stale = mcp_authd::oauth::register::register_dynamic(request, &allowlist, &[], old)
            .unwrap()
            .client;
        let provisioned = mcp_authd::oauth::register::provision(
            "Provisioned",
            vec!["https://vertexaisearch.cloud.google.com/oauth-redirect".to_string()],
            old,
        )
        .unwrap()
        .client;
        let ids = (stale.client_id.clone(), provisioned.client_id.clone());
        store.put_client(stale).await.unwrap();
        store.put_client(provisioned).await.unwrap();
        ids
    };
    let app = TestApp::spawn_with(Options {
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.store.client(&stale).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the start-up pass did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        app.state
            .store
            .client(&provisioned)
            .await
            .unwrap()
            .is_some()
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Body caps, redirect URI caps, client_name

#[tokio::test]
async fn bodies_over_16_kib_are_413_in_the_endpoint_format_and_change_nothing() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let big_form = format!(
        "grant_type=refresh_token&client_id={client_id}&pad={}",
        "a".repeat(17 * 1024)
    );
    for path in [
        "/oauth/token",
        "/token",
        "/oauth/revoke",
        "/oauth/introspect",
    ] {
        let response = app
            .http
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big_form.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        let description = assert_oauth_error(response, 413, "invalid_request").await;
        assert_eq!(description, "request body too large");
    }
    let big_json = json!({"client_name": "x".repeat(17 * 1024), "redirect_uris": [REDIRECT]});
    for path in ["/oauth/register", "/register"] {
        let response = app
            .http
            .post(app.url(path))
            .json(&big_json)
            .send()
            .await
            .unwrap();
        let description = assert_oauth_error(response, 413, "invalid_request").await;
        assert_eq!(description, "request body too large");
    }
    // A body announced as huge is refused from its Content-Length alone.
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 1024 * 1024])
        .send()
        .await;
    if let Ok(response) = response {
        // The server may also close the connection before the client finishes sending.
        assert_oauth_error(response, 413, "invalid_request").await;
    }
    // The consent form (a browser endpoint) answers with a page.
    let response = app
        .http
        .post(app.url("/oauth/authorize/consent"))
        .header("X-Forwarded-User", USER)
        .form(&[("ticket", "t".repeat(17 * 1024))])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(app.state.store.clients().await.unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn other_methods_on_json_endpoints_get_a_json_405() {
    let (app, _dir) = TestApp::spawn().await;
    for path in ["/oauth/token", "/token", "/oauth/register", "/oauth/revoke"] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let response = app
                .http
                .request(method.clone(), app.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            assert!(
                response.headers()["allow"]
                    .to_str()
                    .unwrap()
                    .contains("POST"),
                "{method} {path}"
            );
            assert_oauth_error(response, 405, "invalid_request").await;
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn redirect_uris_are_capped_in_length() {
    let (app, _dir) = TestApp::spawn().await;
    let prefix = "http://127.0.0.1:3000/";
    let longest = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    let too_long = format!("{longest}a");
    let response = app.register_raw(json!({"redirect_uris": [longest]})).await;
    assert_eq!(response.status(), 201);
    let description = assert_oauth_error(
        app.register_raw(json!({"redirect_uris": [too_long]})).await,
        400,
        "invalid_redirect_uri",
    )
    .await;
    assert!(description.contains("2048"), "{description}");
    assert!(
        description.len() < 600,
        "the description quotes a bounded prefix"
    );
    assert_eq!(app.state.store.clients().await.unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn client_names_are_sanitised_capped_and_escaped_on_the_consent_page() {
    let (app, _dir) = TestApp::spawn().await;
    for (name, expected) in [
        ("Claude\u{202E}edoC", "ClaudeedoC"),
        ("  Many \t\n  spaces\u{0}  ", "Many spaces"),
        ("\u{2066}Cursor\u{2069}\u{200F}", "Cursor"),
        ("\u{0007}\u{001B}[31m", "[31m"),
        ("", "Unnamed MCP client"),
        ("\u{202E}", "Unnamed MCP client"),
    ] {
        let body: Value = app
            .register_raw(json!({"client_name": name, "redirect_uris": [REDIRECT]}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["client_name"], expected, "{name:?}");
    }
    let long: Value = app
        .register_raw(json!({"client_name": "é".repeat(5_000), "redirect_uris": [REDIRECT]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(long["client_name"].as_str().unwrap().chars().count(), 100);

    // Markup in a name is shown as text, marked unverified.
    let body: Value = app
        .register_raw(json!({
            "client_name": "<script>alert(1)</script><img src=x onerror=alert(2)>\"Claude\"",
            "redirect_uris": [REDIRECT]
        }))
        .await
        .json()
        .await
        .unwrap();
    let client_id = body["client_id"].as_str().unwrap();
    let response = app
        .authorize_as(Some(USER), &TestApp::authorize_params(client_id, REDIRECT))
        .await;
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let page = response.text().await.unwrap();
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(page.contains("&lt;script&gt;"), "{page}");
    assert!(page.contains("unverified"));
    app.stop().await;
}
