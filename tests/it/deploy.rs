//! The reverse-proxy recipes in `deploy/`, run as written: Debian's nginx with
//! `deploy/nginx/` and Caddy with `deploy/caddy/Caddyfile`, in front of the real `mcp-authd`
//! binary, everything on loopback ports.
//!
//! oauth2-proxy is not packaged here, so a stand-in speaks its contract: `/oauth2/auth`
//! answers 202 with `X-Auth-Request-User`, `-Email` and `-Groups` for a session cookie and 401
//! otherwise, and `/oauth2/sign_in` redirects to the identity provider, carrying where to
//! return. The stand-in also plays the MCP server behind `/mcp`. Between the proxy and
//! mcp-authd a recorder passes every request on unchanged and keeps its headers, so the tests
//! see exactly what the proxy told mcp-authd: the identity, `Host`, `X-Forwarded-*`.
//!
//! The nginx recipe gets its placeholders filled the way its header comment documents for
//! `envsubst` (listen addresses, host names, certificate directory, upstreams); the Caddyfile
//! is used as it is, with its settings in the environment. Clients are `curl` (nginx serves
//! TLS with certificates made by `openssl` for each host name).
//!
//! A missing nginx, Caddy, curl or openssl skips these tests with a message on stderr, unless
//! `MCP_AUTHD_REQUIRE_DEPLOY_TESTS=1` (set by `.ci/run`) makes it a failure.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use mcp_authd::{AccessTokenClaims, TokenExpectations, verify_access_token};
use serde_json::{Value, json};

use crate::cli::{JWT_SECRET, Server, serve_cmd, servers_json_with, write_config};
use crate::helpers::{REDIRECT, TestApp, VERIFIER, consent_ticket, query_of};
use crate::process::{free_port, http};

/// Set to `1` to fail, not skip, when a tool is missing.
const REQUIRE_ENV: &str = "MCP_AUTHD_REQUIRE_DEPLOY_TESTS";
/// The public host (cloud clients) and the primary issuer.
const PUBLIC_HOST: &str = "mcp.example.com";
/// The internal host (VPN clients).
const INTERNAL_HOST: &str = "mcp.internal.example";
/// The primary issuer mcp-authd is configured with: the public host's.
const PUBLIC_ISSUER: &str = "https://mcp.example.com";
/// The internal host's issuer (`additionalIssuers`).
const INTERNAL_ISSUER: &str = "https://mcp.internal.example";
/// oauth2-proxy's session cookie.
const SESSION_COOKIE: &str = "_oauth2_proxy";
/// Where the stand-in's sign-in sends the browser (the identity provider).
const IDP_LOGIN: &str = "https://sso.example.test/login";
/// The identity a client forges.
const FORGED_USER: &str = "mallory";
/// How long a proxy may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A user with an SSO session at the stand-in.
struct SsoUser {
    /// The session cookie's value.
    session: &'static str,
    /// `X-Auth-Request-User` (the ID token's `sub`): the recipes make it the user.
    sub: &'static str,
    /// `X-Auth-Request-Email`: not the user, so a recipe that read it would fail.
    email: &'static str,
    /// `X-Auth-Request-Groups`, absent for a user with no groups.
    groups: Option<&'static str>,
}

const ALICE: SsoUser = SsoUser {
    session: "alice-session-7f3a9c",
    sub: "alice-sub-1234",
    email: "alice@example.com",
    groups: Some("eng,mcp-users"),
};

/// No groups: the answer has no `X-Auth-Request-Groups` (Caddy's placeholder pitfall).
const BOB: SsoUser = SsoUser {
    session: "bob-session-91c2d4",
    sub: "bob-sub-5678",
    email: "bob@example.com",
    groups: None,
};

const USERS: [&SsoUser; 2] = [&ALICE, &BOB];

/// Identity headers a client sends to impersonate someone, and an address it claims.
const FORGED: [(&str, &str); 5] = [
    ("X-Forwarded-User", FORGED_USER),
    ("X-Forwarded-Groups", "admins"),
    ("X_Forwarded_User", FORGED_USER),
    ("X_Forwarded_Groups", "admins"),
    ("X-Forwarded-For", "203.0.113.9"),
];

/// The two recipes.
#[derive(Clone, Copy, Debug)]
enum Proxy {
    Nginx,
    Caddy,
}

// ---------------------------------------------------------------------------------------
// The tests: each scenario runs through nginx and through Caddy.

#[tokio::test]
async fn nginx_recipe_signs_in_through_sso_and_refreshes() {
    if let Some(stack) = Stack::start(Proxy::Nginx).await {
        signs_in_through_sso_and_refreshes(&stack).await;
    }
}

#[tokio::test]
async fn caddy_recipe_signs_in_through_sso_and_refreshes() {
    if let Some(stack) = Stack::start(Proxy::Caddy).await {
        signs_in_through_sso_and_refreshes(&stack).await;
    }
}

#[tokio::test]
async fn nginx_recipe_refuses_a_forged_user_without_a_session() {
    if let Some(stack) = Stack::start(Proxy::Nginx).await {
        refuses_a_forged_user_without_a_session(&stack).await;
    }
}

#[tokio::test]
async fn caddy_recipe_refuses_a_forged_user_without_a_session() {
    if let Some(stack) = Stack::start(Proxy::Caddy).await {
        refuses_a_forged_user_without_a_session(&stack).await;
    }
}

#[tokio::test]
async fn nginx_recipe_overwrites_a_forged_user_with_the_signed_in_one() {
    if let Some(stack) = Stack::start(Proxy::Nginx).await {
        overwrites_a_forged_user_with_the_signed_in_one(&stack).await;
    }
}

#[tokio::test]
async fn caddy_recipe_overwrites_a_forged_user_with_the_signed_in_one() {
    if let Some(stack) = Stack::start(Proxy::Caddy).await {
        overwrites_a_forged_user_with_the_signed_in_one(&stack).await;
    }
}

#[tokio::test]
async fn nginx_recipe_signs_in_a_user_without_groups() {
    if let Some(stack) = Stack::start(Proxy::Nginx).await {
        signs_in_a_user_without_groups(&stack).await;
    }
}

#[tokio::test]
async fn caddy_recipe_signs_in_a_user_without_groups_despite_the_placeholder_pitfall() {
    if let Some(stack) = Stack::start(Proxy::Caddy).await {
        signs_in_a_user_without_groups(&stack).await;
    }
}

#[tokio::test]
async fn nginx_recipe_serves_both_hosts() {
    if let Some(stack) = Stack::start(Proxy::Nginx).await {
        serves_both_hosts(&stack).await;
    }
}

#[tokio::test]
async fn caddy_recipe_serves_both_hosts() {
    if let Some(stack) = Stack::start(Proxy::Caddy).await {
        serves_both_hosts(&stack).await;
    }
}

// ---------------------------------------------------------------------------------------
// Scenarios.

/// register → authorize with the session → consent page → approve → code → token →
/// refresh, on the public host; then what else the recipe routes: CORS preflights without
/// SSO, `/mcp` to the MCP server, nothing else.
async fn signs_in_through_sso_and_refreshes(stack: &Stack) {
    let signed = sign_in(stack, PUBLIC_HOST, &ALICE, &[]).await;
    assert_eq!(
        signed.claims.sub, ALICE.sub,
        "the user is X-Auth-Request-User"
    );
    assert_eq!(signed.claims.groups, ["eng", "mcp-users"]);
    assert_eq!(signed.claims.client_id, signed.client_id);

    let seen = stack.tap.take();
    for route in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource/mcp",
        "/oauth/register",
        "/oauth/authorize",
        "/oauth/authorize/consent",
        "/oauth/token",
    ] {
        assert!(
            seen.iter().any(|s| s.route() == route),
            "{route} never reached mcp-authd"
        );
    }
    assert_forwarded(stack, &seen, PUBLIC_HOST, &ALICE);

    // Cloud clients' CORS preflights reach mcp-authd without SSO.
    for path in ["/oauth/token", "/oauth/register", "/token", "/register"] {
        let preflight = stack
            .front
            .send(
                "OPTIONS",
                PUBLIC_HOST,
                path,
                &[
                    ("Origin", "https://claude.ai"),
                    ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", "content-type"),
                ],
                None,
            )
            .await;
        assert_eq!(preflight.status, 200, "preflight {path}: {preflight:?}");
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            Some("*"),
            "preflight {path}"
        );
    }

    // /mcp goes to the MCP server with the bearer token, without SSO and without any
    // identity header.
    let bearer = format!("Bearer {}", signed.access_token);
    let mut headers = vec![("Authorization", bearer.as_str())];
    headers.extend(FORGED);
    let mcp = stack
        .front
        .send(
            "POST",
            PUBLIC_HOST,
            "/mcp",
            &headers,
            Some(json_body(&json!({}))),
        )
        .await;
    assert_eq!(mcp.status, 200, "{mcp:?}");
    let echoed = mcp.json();
    assert_eq!(echoed["server"], "mcp");
    assert_eq!(echoed["authorization"], bearer.as_str());
    assert_eq!(echoed["identity_headers"], json!([]), "{echoed}");

    // Nothing else is served (the health endpoints are for probes on mcp-authd itself).
    for path in [
        "/livez",
        "/readyz",
        "/healthz",
        "/oauth/authorize/",
        "/elsewhere",
    ] {
        let reply = stack.front.send("GET", PUBLIC_HOST, path, &[], None).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
    }
    assert!(
        stack.tap.take().iter().all(|s| s.route() != "/livez"),
        "the proxy passed an unrouted path on"
    );
}

/// A forged `X-Forwarded-User` without a session: the sign-in redirect, never a code or the
/// consent page; the request never reaches mcp-authd.
async fn refuses_a_forged_user_without_a_session(stack: &Stack) {
    let client_id = register(stack, PUBLIC_HOST, &[]).await;
    let query = authorize_query(&client_id);
    // The forged identity is a real user's; no cookie, or a session the SSO does not know.
    let impersonation = [
        ("X-Forwarded-User", ALICE.sub),
        ("X-Forwarded-Groups", "eng,mcp-users"),
        ("X_Forwarded_User", ALICE.sub),
    ];
    let unknown_session = format!("{SESSION_COOKIE}=stolen-or-expired");
    let mut with_unknown_session = impersonation.to_vec();
    with_unknown_session.push(("Cookie", unknown_session.as_str()));

    for (path, headers) in [
        (format!("/oauth/authorize?{query}"), impersonation.to_vec()),
        (format!("/authorize?{query}"), impersonation.to_vec()),
        (format!("/oauth/authorize?{query}"), with_unknown_session),
    ] {
        let reply = stack
            .front
            .send("GET", PUBLIC_HOST, &path, &headers, None)
            .await;
        assert_sent_to_sign_in(&reply, &path);
    }

    let form = form_body(&[("ticket", "forged"), ("decision", "approve")]);
    let reply = stack
        .front
        .send(
            "POST",
            PUBLIC_HOST,
            "/oauth/authorize/consent",
            &impersonation,
            Some(form),
        )
        .await;
    assert_sent_to_sign_in(&reply, "/oauth/authorize/consent");

    let reached: Vec<String> = stack
        .tap
        .take()
        .iter()
        .map(|s| s.route().to_string())
        .filter(|r| r.contains("authorize"))
        .collect();
    assert!(
        reached.is_empty(),
        "requests without a session reached mcp-authd: {reached:?}"
    );
}

/// A client that is signed in and also sends forged identity headers (and underscore
/// variants, and a forged X-Forwarded-For) on every request: the proxy's identity wins on the
/// SSO routes, and nothing of the forgery passes anywhere else.
async fn overwrites_a_forged_user_with_the_signed_in_one(stack: &Stack) {
    let signed = sign_in(stack, PUBLIC_HOST, &ALICE, &FORGED).await;
    assert!(
        !signed.consent_page.contains(FORGED_USER),
        "the consent page names the forged user"
    );
    assert_eq!(signed.claims.sub, ALICE.sub);
    assert_eq!(signed.claims.groups, ["eng", "mcp-users"]);
    assert_forwarded(stack, &stack.tap.take(), PUBLIC_HOST, &ALICE);
}

/// A user whose SSO answer has no groups header signs in with no groups. Caddy before 2.9
/// would pass the literal `{http.reverse_proxy.header.X-Auth-Request-Groups}` as the groups
/// (refused by mcp-authd as a placeholder); the recipe's guard removes it.
async fn signs_in_a_user_without_groups(stack: &Stack) {
    let signed = sign_in(stack, PUBLIC_HOST, &BOB, &[]).await;
    assert_eq!(signed.claims.sub, BOB.sub);
    assert!(
        signed.claims.groups.is_empty(),
        "groups {:?}",
        signed.claims.groups
    );
    assert_forwarded(stack, &stack.tap.take(), PUBLIC_HOST, &BOB);
}

/// Both hosts reach mcp-authd with their own host name in `Host` and `X-Forwarded-Host`, and
/// a whole sign-in works through each, answered by that host's own issuer (SPEC §11).
async fn serves_both_hosts(stack: &Stack) {
    for host in [PUBLIC_HOST, INTERNAL_HOST] {
        let signed = sign_in(stack, host, &ALICE, &[]).await;
        assert_eq!(signed.claims.sub, ALICE.sub, "through {host}");
        assert_forwarded(stack, &stack.tap.take(), host, &ALICE);
        // §11: each host is an issuer of its own (`additionalIssuers`): its metadata, the
        // code's `iss` and the tokens' `iss` and `aud` name that host.
        assert_eq!(signed.issuer, format!("https://{host}"), "through {host}");
        assert_eq!(signed.claims.iss, signed.issuer, "through {host}");
        assert_eq!(
            signed.claims.aud,
            format!("https://{host}/mcp"),
            "through {host}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The sign-in, as a client and a browser would do it through the proxy.

/// What a sign-in produced.
struct SignedIn {
    /// The metadata's `issuer` on that host (the code's `iss`, the token's `iss`).
    issuer: String,
    client_id: String,
    consent_page: String,
    /// The access token of the refresh (checked like the first one).
    access_token: String,
    /// The first access token's claims.
    claims: AccessTokenClaims,
}

/// The whole sign-in through `host` as `user`, with `extra` headers on every request.
async fn sign_in(stack: &Stack, host: &str, user: &SsoUser, extra: &[(&str, &str)]) -> SignedIn {
    let front = &stack.front;
    let metadata = front
        .send(
            "GET",
            host,
            "/.well-known/oauth-authorization-server",
            extra,
            None,
        )
        .await;
    assert_eq!(
        metadata.status, 200,
        "AS metadata through {host}: {metadata:?}"
    );
    let issuer = metadata.json()["issuer"].as_str().unwrap().to_string();
    let prm = front
        .send(
            "GET",
            host,
            "/.well-known/oauth-protected-resource/mcp",
            extra,
            None,
        )
        .await;
    assert_eq!(prm.status, 200, "PRM through {host}: {prm:?}");
    let resource = prm.json()["resource"].as_str().unwrap().to_string();

    let client_id = register(stack, host, extra).await;
    let cookie = format!("{SESSION_COOKIE}={}", user.session);
    let mut browser = extra.to_vec();
    browser.push(("Cookie", cookie.as_str()));

    let path = format!("/oauth/authorize?{}", authorize_query(&client_id));
    let page = front.send("GET", host, &path, &browser, None).await;
    assert_eq!(
        page.status, 200,
        "the consent page through {host}: {page:?}"
    );
    assert!(
        page.body.contains(user.sub),
        "the consent page does not name {}",
        user.sub
    );
    let approve = form_body(&[
        ("ticket", consent_ticket(&page.body).as_str()),
        ("decision", "approve"),
    ]);
    let approved = front
        .send(
            "POST",
            host,
            "/oauth/authorize/consent",
            &browser,
            Some(approve),
        )
        .await;
    assert_eq!(approved.status, 303, "approve through {host}: {approved:?}");
    let redirect = query_of(&approved.location());
    assert_eq!(redirect.get("state").map(String::as_str), Some("xyz"));
    assert_eq!(redirect.get("iss"), Some(&issuer), "the code's iss");
    let code = redirect.get("code").expect("a code").clone();

    let exchange = form_body(&[
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]);
    let tokens = front
        .send("POST", host, "/oauth/token", extra, Some(exchange))
        .await;
    assert_eq!(tokens.status, 200, "token through {host}: {tokens:?}");
    let tokens = tokens.json();
    let expect = TokenExpectations {
        issuer: issuer.clone(),
        audience: resource,
        secret: JWT_SECRET.as_bytes().to_vec(),
        leeway_seconds: 0,
    };
    let claims = verify_access_token(tokens["access_token"].as_str().unwrap(), &expect).unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();

    let refresh = form_body(&[
        ("grant_type", "refresh_token"),
        ("client_id", client_id.as_str()),
        ("refresh_token", refresh_token),
    ]);
    let refreshed = front
        .send("POST", host, "/oauth/token", extra, Some(refresh))
        .await;
    assert_eq!(
        refreshed.status, 200,
        "refresh through {host}: {refreshed:?}"
    );
    let refreshed = refreshed.json();
    assert_ne!(refreshed["refresh_token"].as_str(), Some(refresh_token));
    let access_token = refreshed["access_token"].as_str().unwrap().to_string();
    let renewed = verify_access_token(&access_token, &expect).unwrap();
    assert_eq!(renewed.sub, claims.sub);

    SignedIn {
        issuer,
        client_id,
        consent_page: page.body,
        access_token,
        claims,
    }
}

/// Registers a public client through `host`; its `client_id`.
async fn register(stack: &Stack, host: &str, extra: &[(&str, &str)]) -> String {
    let body = json!({
        "client_name": "Deploy test client",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none"
    });
    let reply = stack
        .front
        .send(
            "POST",
            host,
            "/oauth/register",
            extra,
            Some(json_body(&body)),
        )
        .await;
    assert_eq!(reply.status, 201, "register through {host}: {reply:?}");
    reply.json()["client_id"].as_str().unwrap().to_string()
}

/// The query string of a standard authorization request.
fn authorize_query(client_id: &str) -> String {
    serde_urlencoded::to_string(TestApp::authorize_params(client_id, REDIRECT)).unwrap()
}

/// Asserts a redirect to the identity provider that returns to `request_uri`, carrying no
/// code and no consent form.
fn assert_sent_to_sign_in(reply: &Reply, request_uri: &str) {
    assert_eq!(reply.status, 302, "{request_uri}: {reply:?}");
    let location = reply.location();
    assert!(
        location.starts_with(IDP_LOGIN),
        "{request_uri}: redirected to {location}"
    );
    assert_eq!(
        query_of(&location).get("rd").map(String::as_str),
        Some(request_uri),
        "where the sign-in returns to"
    );
    assert!(!location.contains("code="), "{location}");
    assert!(
        !reply.body.contains("ticket"),
        "a consent form: {}",
        reply.body
    );
}

/// Asserts what the proxy told mcp-authd on each of `seen` (requests through `host` by a
/// browser signed in as `user`): `Host` and `X-Forwarded-Host` are the host name, the
/// scheme and the client's address are forwarded, the identity is the SSO's on the SSO
/// routes (exactly one value, whatever the client sent) and absent everywhere else, and no
/// underscore variant passes.
fn assert_forwarded(stack: &Stack, seen: &[Seen], host: &str, user: &SsoUser) {
    assert!(!seen.is_empty(), "nothing reached mcp-authd");
    for s in seen {
        let what = format!("{} {}", s.method, s.route());
        assert_eq!(s.values("host"), [host], "{what}: Host");
        assert_eq!(s.values("x-forwarded-host"), [host], "{what}");
        assert_eq!(
            s.values("x-forwarded-proto"),
            [stack.front.scheme],
            "{what}"
        );
        let forwarded_for = s.values("x-forwarded-for");
        assert_eq!(forwarded_for.len(), 1, "{what}: {forwarded_for:?}");
        assert_eq!(
            forwarded_for[0].rsplit(',').next().map(str::trim),
            Some("127.0.0.1"),
            "{what}: the right-most X-Forwarded-For is the client as the proxy saw it"
        );
        for variant in ["x_forwarded_user", "x_forwarded_groups"] {
            assert!(s.values(variant).is_empty(), "{what}: {variant} passed");
        }
        if is_sso_route(s.route()) {
            assert_eq!(s.values("x-forwarded-user"), [user.sub], "{what}");
            let groups: Vec<&str> = user.groups.into_iter().collect();
            assert_eq!(s.values("x-forwarded-groups"), groups, "{what}");
        } else {
            assert!(s.values("x-forwarded-user").is_empty(), "{what}: a user");
            assert!(s.values("x-forwarded-groups").is_empty(), "{what}: groups");
        }
    }
}

/// The routes the recipes send through SSO.
fn is_sso_route(route: &str) -> bool {
    matches!(
        route,
        "/oauth/authorize" | "/authorize" | "/oauth/authorize/consent"
    )
}

/// A form-encoded body.
fn form_body(pairs: &[(&str, &str)]) -> (&'static str, Vec<u8>) {
    (
        "application/x-www-form-urlencoded",
        serde_urlencoded::to_string(pairs).unwrap().into_bytes(),
    )
}

/// A JSON body.
fn json_body(value: &Value) -> (&'static str, Vec<u8>) {
    ("application/json", serde_json::to_vec(value).unwrap())
}

// ---------------------------------------------------------------------------------------
// The stack: mcp-authd, the recorder in front of it, the stand-in, and the proxy.

/// Everything one test runs, stopped on drop.
struct Stack {
    front: Front,
    tap: Tap,
    _proxy: Daemon,
    _stand_in: Background,
    _server: Server,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Starts the whole stack behind `proxy`, or `None` (after saying why) when a tool it
    /// needs is missing and the environment does not require these tests.
    async fn start(proxy: Proxy) -> Option<Self> {
        let needed: &[&str] = match proxy {
            Proxy::Nginx => &["nginx", "curl", "openssl"],
            Proxy::Caddy => &["caddy", "curl"],
        };
        let tools = tools(proxy, needed)?;
        let dir = tempfile::tempdir().unwrap();

        let port = free_port();
        let config_dir = dir.path().join("mcp-authd");
        std::fs::create_dir(&config_dir).unwrap();
        // §11: the internal host is the second issuer.
        let config = write_config(
            &config_dir,
            &servers_json_with(PUBLIC_ISSUER, |section| {
                section["additionalIssuers"] = json!([{"issuerUrl": INTERNAL_ISSUER}]);
            }),
        );
        let mut server = Server::start(serve_cmd(&config_dir, &config, port), port);
        server.wait_ready(&http()).await;

        let tap = Tap::start(format!("http://127.0.0.1:{port}")).await;
        let (stand_in, stand_in_addr) = start_stand_in().await;
        let proxy_port = free_port();
        let upstreams = Upstreams {
            mcp_authd: tap.addr,
            oauth2_proxy: stand_in_addr,
            mcp_server: stand_in_addr,
        };
        let proxy_dir = dir.path().join("proxy");
        std::fs::create_dir(&proxy_dir).unwrap();
        let (daemon, front) = match proxy {
            Proxy::Nginx => start_nginx(&tools, &proxy_dir, proxy_port, &upstreams),
            Proxy::Caddy => start_caddy(&tools, &proxy_dir, proxy_port, &upstreams),
        };
        let mut daemon = daemon;
        daemon.wait_listening(proxy_port).await;
        Some(Self {
            front,
            tap,
            _proxy: daemon,
            _stand_in: stand_in,
            _server: server,
            _dir: dir,
        })
    }
}

/// Where the proxy sends what.
struct Upstreams {
    mcp_authd: SocketAddr,
    oauth2_proxy: SocketAddr,
    mcp_server: SocketAddr,
}

/// The tools in `needed`, by name, found on `PATH` (or in /usr/sbin, where Debian puts
/// nginx); `None` after a skip message if one is missing, unless [`REQUIRE_ENV`] is `1`.
fn tools(proxy: Proxy, needed: &[&str]) -> Option<HashMap<String, PathBuf>> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .collect();
    let mut found = HashMap::new();
    let mut missing = Vec::new();
    for name in needed {
        match dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            Some(path) => {
                found.insert(name.to_string(), path);
            }
            None => missing.push(*name),
        }
    }
    if missing.is_empty() {
        return Some(found);
    }
    let message = format!(
        "the {proxy:?} recipe test needs {} (apt-get install nginx caddy curl openssl)",
        missing.join(", ")
    );
    assert!(
        std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
        "{message}, and {REQUIRE_ENV}=1"
    );
    // Straight to stderr, past the test harness's capture, so that the skip shows.
    let _ = writeln!(
        std::io::stderr(),
        "SKIP: {message}; set {REQUIRE_ENV}=1 to make this a failure"
    );
    None
}

/// The nginx recipe with its placeholders filled, under a test-only main configuration that
/// keeps every file in `dir`; TLS on `port` for both hosts.
fn start_nginx(
    tools: &HashMap<String, PathBuf>,
    dir: &Path,
    port: u16,
    upstreams: &Upstreams,
) -> (Daemon, Front) {
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx");
    let tls = dir.join("tls");
    let mut bundle = String::new();
    for host in [PUBLIC_HOST, INTERNAL_HOST] {
        let host_dir = tls.join(host);
        std::fs::create_dir_all(&host_dir).unwrap();
        let made = Command::new(&tools["openssl"])
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-nodes", "-days", "2", "-subj"])
            .arg(format!("/CN={host}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{host}"))
            .arg("-keyout")
            .arg(host_dir.join("privkey.pem"))
            .arg("-out")
            .arg(host_dir.join("fullchain.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success(), "openssl could not make a certificate");
        bundle.push_str(&std::fs::read_to_string(host_dir.join("fullchain.pem")).unwrap());
    }
    let cacert = dir.join("ca.pem");
    std::fs::write(&cacert, bundle).unwrap();

    let listen = format!("127.0.0.1:{port}");
    let site = fill_placeholders(
        &std::fs::read_to_string(recipe.join("mcp-authd.conf")).unwrap(),
        &[
            ("PUBLIC_LISTEN", listen.as_str()),
            ("INTERNAL_LISTEN", listen.as_str()),
            ("PUBLIC_HOST", PUBLIC_HOST),
            ("INTERNAL_HOST", INTERNAL_HOST),
            ("TLS_DIR", tls.to_str().unwrap()),
            ("MCP_AUTHD", &upstreams.mcp_authd.to_string()),
            ("OAUTH2_PROXY", &upstreams.oauth2_proxy.to_string()),
            ("MCP_SERVER", &upstreams.mcp_server.to_string()),
        ],
    );
    std::fs::create_dir(dir.join("sites")).unwrap();
    std::fs::write(dir.join("sites/mcp-authd.conf"), site).unwrap();
    let locations = std::fs::read_to_string(recipe.join("mcp-authd-locations.conf")).unwrap();
    // Copied as it is: it has no placeholders.
    assert_eq!(fill_placeholders(&locations, &[]), locations);
    std::fs::create_dir(dir.join("snippets")).unwrap();
    std::fs::write(dir.join("snippets/mcp-authd-locations.conf"), locations).unwrap();

    // The test's stand-in for /etc/nginx/nginx.conf: the recipe's include path
    // (snippets/...) is relative to this file's directory, as it is to /etc/nginx.
    let d = dir.display();
    let main = format!(
        "worker_processes 1;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
         access_log {d}/access.log;\n\
         client_body_temp_path {d}/tmp/body;\n\
         proxy_temp_path {d}/tmp/proxy;\n\
         fastcgi_temp_path {d}/tmp/fastcgi;\n\
         uwsgi_temp_path {d}/tmp/uwsgi;\n\
         scgi_temp_path {d}/tmp/scgi;\n\
         include sites/mcp-authd.conf;\n\
         }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    std::fs::create_dir(dir.join("tmp")).unwrap();
    // Run as root, nginx's workers are `nobody`: they must reach the temporary directories.
    use std::os::unix::fs::PermissionsExt as _;
    for path in [dir.to_path_buf(), dir.join("tmp")] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let log = dir.join("error.log");
    let mut cmd = Command::new(&tools["nginx"]);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(&log)
        .arg("-g")
        .arg(format!(
            "daemon off; pid {d}/nginx.pid; error_log {} info;",
            log.display()
        ));
    let daemon = Daemon::spawn("nginx", cmd, log);
    let front = Front {
        curl: tools["curl"].clone(),
        scheme: "https",
        port,
        cacert: Some(cacert),
    };
    (daemon, front)
}

/// The Caddyfile exactly as it is in `deploy/`, with its settings in the environment: plain
/// HTTP sites on `port` (the recipe's defaults are the automatic-HTTPS host names), the
/// admin API off, bound to loopback, and Caddy's own storage in `dir`.
fn start_caddy(
    tools: &HashMap<String, PathBuf>,
    dir: &Path,
    port: u16,
    upstreams: &Upstreams,
) -> (Daemon, Front) {
    let caddyfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/caddy/Caddyfile");
    let log = dir.join("caddy.log");
    let mut cmd = Command::new(&tools["caddy"]);
    cmd.arg("run")
        .arg("--config")
        .arg(&caddyfile)
        .args(["--adapter", "caddyfile"])
        .current_dir(dir)
        .env("MCP_PUBLIC_SITE", format!("http://{PUBLIC_HOST}:{port}"))
        .env(
            "MCP_INTERNAL_SITE",
            format!("http://{INTERNAL_HOST}:{port}"),
        )
        .env("MCP_AUTHD", upstreams.mcp_authd.to_string())
        .env("OAUTH2_PROXY", upstreams.oauth2_proxy.to_string())
        .env("MCP_SERVER", upstreams.mcp_server.to_string())
        .env("CADDY_ADMIN", "off")
        .env("CADDY_BIND", "127.0.0.1")
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    let daemon = Daemon::spawn("caddy", cmd, log);
    let front = Front {
        curl: tools["curl"].clone(),
        scheme: "http",
        port,
        cacert: None,
    };
    (daemon, front)
}

/// `text` with each `${NAME}` of `values` replaced, as `envsubst '${NAME} …'` does; fails if
/// a `${UPPER_CASE}` placeholder is left outside a comment (a name the recipe uses but its
/// documented list lacks).
fn fill_placeholders(text: &str, values: &[(&str, &str)]) -> String {
    let mut filled = text.to_string();
    for (name, value) in values {
        filled = filled.replace(&format!("${{{name}}}"), value);
    }
    for line in filled.lines() {
        let code = line.split('#').next().unwrap_or_default();
        if let Some(at) = code.find("${") {
            let name: String = code[at + 2..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            assert!(name.is_empty(), "placeholder ${{{name}}} left in: {line}");
        }
    }
    filled
}

/// A proxy child process with its log; stopped on drop (SIGTERM, so that nginx's master
/// takes its workers with it, then SIGKILL if it lingers).
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { name, child, log }
    }

    /// Waits until `port` accepts connections; fails with the log if the process exits or
    /// time runs out.
    async fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited at start ({status})\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {port} within {START_TIMEOUT:?}\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // Not reaped yet, so the pid is still this child's.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A task serving on loopback, aborted on drop.
struct Background(tokio::task::JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `router` on a fresh loopback port.
async fn serve_on_loopback(router: Router) -> (Background, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (Background(task), addr)
}

// ---------------------------------------------------------------------------------------
// The oauth2-proxy stand-in (and the MCP server).

/// Starts the stand-in: oauth2-proxy's `/oauth2/auth` and `/oauth2/sign_in`, and an MCP
/// server at `/mcp` that echoes what reached it.
async fn start_stand_in() -> (Background, SocketAddr) {
    let router = Router::new()
        .route("/oauth2/auth", any(oauth2_auth))
        .route("/oauth2/sign_in", get(oauth2_sign_in))
        .route("/mcp", any(mcp_echo));
    serve_on_loopback(router).await
}

/// oauth2-proxy's `/oauth2/auth` with `set_xauthrequest`: 202 and the user's headers for a
/// known session cookie, 401 otherwise.
async fn oauth2_auth(headers: HeaderMap) -> Response {
    let session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(&format!("{SESSION_COOKIE}=")))
        .map(str::to_string);
    let Some(user) = USERS.iter().find(|u| Some(u.session) == session.as_deref()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut answer = vec![
        ("X-Auth-Request-User", user.sub),
        ("X-Auth-Request-Email", user.email),
    ];
    if let Some(groups) = user.groups {
        answer.push(("X-Auth-Request-Groups", groups));
    }
    let mut response = StatusCode::ACCEPTED.into_response();
    for (name, value) in answer {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// oauth2-proxy's `/oauth2/sign_in` with `skip_provider_button`: straight to the identity
/// provider, remembering where to return (the `rd` parameter, else the
/// `X-Auth-Request-Redirect` header).
async fn oauth2_sign_in(
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let return_to = query
        .get("rd")
        .cloned()
        .or_else(|| {
            headers
                .get("x-auth-request-redirect")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/".to_string());
    let encoded: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("{IDP_LOGIN}?rd={encoded}"))],
    )
        .into_response()
}

/// The MCP server: says what reached it.
async fn mcp_echo(headers: HeaderMap) -> Json<Value> {
    let identity: Vec<String> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str().replace('_', "-");
            name == "x-forwarded-user" || name == "x-forwarded-groups"
        })
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
        .collect();
    Json(json!({
        "server": "mcp",
        "authorization": headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
        "identity_headers": identity,
    }))
}

// ---------------------------------------------------------------------------------------
// The recorder between the proxy and mcp-authd.

/// One request as mcp-authd received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query.
    target: String,
    /// Every header line, names lowercase, in order.
    headers: Vec<(String, String)>,
}

impl Seen {
    /// The path without the query.
    fn route(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Every value of header `name`.
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Passes each request on to mcp-authd unchanged and keeps what it saw.
struct Tap {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _task: Background,
}

/// The recorder's state.
#[derive(Clone)]
struct TapState {
    upstream: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Hop-by-hop headers (and the length, which the client recomputes): not passed on.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

impl Tap {
    async fn start(upstream: String) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = TapState {
            upstream,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            seen: seen.clone(),
        };
        let router = Router::new().fallback(relay).with_state(state);
        let (task, addr) = serve_on_loopback(router).await;
        Self {
            addr,
            seen,
            _task: task,
        }
    }

    /// What reached mcp-authd since the last call.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Records the request, sends it on (its `Host` included), returns the answer.
async fn relay(State(tap): State<TapState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    tap.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        headers,
    });
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let mut onward = tap
        .http
        .request(parts.method.clone(), format!("{}{target}", tap.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            onward = onward.header(name, value);
        }
    }
    let answer = onward.send().await.unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap();
    response.body(axum::body::Body::from(bytes)).unwrap()
}

// ---------------------------------------------------------------------------------------
// The client: curl, so that nginx's TLS is exercised with real SNI for each host name.

/// How the tests reach the proxy.
struct Front {
    curl: PathBuf,
    /// `https` (nginx) or `http` (Caddy's test sites).
    scheme: &'static str,
    port: u16,
    /// The certificates to trust (nginx's self-signed ones).
    cacert: Option<PathBuf>,
}

/// An HTTP answer.
struct Reply {
    status: u16,
    /// Names lowercase.
    headers: Vec<(String, String)>,
    body: String,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}\n{}", self.status, self.headers, self.body)
    }
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location: {self:?}"))
            .to_string()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

impl Front {
    /// `method` `path` on `host` through the proxy, with `headers` and an optional
    /// (content type, body).
    async fn send(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let mut cmd = Command::new(&self.curl);
        cmd.args(["-sS", "-i", "--max-time", "10", "-X", method])
            .arg("--resolve")
            .arg(format!("{host}:{}:127.0.0.1", self.port));
        if let Some(cacert) = &self.cacert {
            cmd.arg("--cacert").arg(cacert);
        }
        for (name, value) in headers {
            cmd.arg("-H").arg(format!("{name}: {value}"));
        }
        let input = body.map(|(content_type, bytes)| {
            cmd.arg("-H")
                .arg(format!("Content-Type: {content_type}"))
                // No `Expect: 100-continue` round trip.
                .args(["-H", "Expect:", "--data-binary", "@-"]);
            bytes
        });
        cmd.arg(format!("{}://{host}:{}{path}", self.scheme, self.port));
        let output = tokio::task::spawn_blocking(move || {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            if let Some(bytes) = input {
                stdin.write_all(&bytes).unwrap();
            }
            drop(stdin);
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "curl {method} {host}{path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        parse_reply(&String::from_utf8_lossy(&output.stdout))
    }
}

/// curl `-i` output: the status line, headers, a blank line, the body (after any interim
/// `100 Continue` block).
fn parse_reply(mut text: &str) -> Reply {
    loop {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        if status == 100 {
            text = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        return Reply {
            status,
            headers,
            body: body.to_string(),
        };
    }
}
