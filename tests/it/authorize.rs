//! The authorization endpoint and the consent form: trusted proxy, redirect URI rules, PKCE,
//! scope and resource, consent and its CSRF protection.

// The helpers in this file run only inside tests, where a failed step should panic.

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_authd::http::authorize::UNTRUSTED_PEER;
use mcp_authd::oauth::redirect::{matches_registered, validate_for_registration};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::*;

const CLAUDE: &str = "https://claude.ai/api/mcp/auth_callback";

/// Another loopback address: a peer outside `trustedSourceCidrs` (127.0.0.1/32).
fn untrusted_ip() -> IpAddr {
    "127.0.0.2".parse().unwrap()
}

/// Asserts a redirect with `status` to `redirect` carrying `error`, the echoed state and `iss`,
/// and no code; returns the query.
fn assert_error_redirect(
    app: &TestApp,
    response: &reqwest::Response,
    status: u16,
    redirect: &str,
    error: &str,
) -> HashMap<String, String> {
    assert_eq!(response.status(), status);
    let location = location(response);
    assert!(location.starts_with(&format!("{redirect}?")), "{location}");
    let query = query_of(&location);
    assert_eq!(
        query.get("error").map(String::as_str),
        Some(error),
        "{location}"
    );
    assert_eq!(
        query.get("state").map(String::as_str),
        Some("xyz"),
        "{location}"
    );
    assert_eq!(query.get("iss"), Some(&app.base), "{location}");
    assert!(!query.contains_key("code"), "{location}");
    query
}

/// Authorizes as `USER` with `params`, approving the consent page if it is shown; returns the
/// final redirect.
async fn approve(app: &TestApp, params: &[(String, String)]) -> reqwest::Response {
    let response = app.authorize_as(Some(USER), params).await;
    if response.status() != 200 {
        return response;
    }
    let page = response.text().await.unwrap();
    let response = app.answer_consent(&page, USER, "approve").await;
    assert_eq!(response.status(), 303);
    response
}

/// The code in a successful redirect.
fn code_in(app: &TestApp, response: &reqwest::Response) -> String {
    let query = query_of(&location(response));
    assert_eq!(query.get("iss"), Some(&app.base));
    query.get("code").cloned().expect("a code in the redirect")
}

/// Exchanges `code` and returns the access token's claims.
async fn claims_for(
    app: &TestApp,
    client_id: &str,
    code: &str,
    redirect: &str,
    expectations: &mcp_authd::TokenExpectations,
) -> mcp_authd::AccessTokenClaims {
    let response = app.exchange(client_id, code, redirect).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    mcp_authd::verify_access_token(tokens["access_token"].as_str().unwrap(), expectations).unwrap()
}

/// The consent page for `client_id`, as `USER`.
async fn consent_page(app: &TestApp, client_id: &str) -> String {
    let response = app
        .authorize_as(Some(USER), &TestApp::authorize_params(client_id, REDIRECT))
        .await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Posts a consent form with `ticket` as `user`.
async fn post_consent(
    http: &reqwest::Client,
    app: &TestApp,
    ticket: &str,
    user: &str,
) -> reqwest::Response {
    http.post(app.url("/oauth/authorize/consent"))
        .header("X-Forwarded-User", user)
        .form(&[("ticket", ticket), ("decision", "approve")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn untrusted_peer_is_refused_with_403_and_no_redirect() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let untrusted = client(Some(untrusted_ip()));
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    for path in ["/oauth/authorize", "/authorize"] {
        // The user header is set, but the peer is not the proxy.
        let response = untrusted
            .get(app.url(path))
            .query(&params)
            .header("X-Forwarded-User", USER)
            .header("X-Forwarded-Groups", "admins")
            .send()
            .await
            .unwrap();
        let page = assert_page(response, 403).await;
        assert!(page.contains(UNTRUSTED_PEER), "{page}");
        assert!(page.contains("/authorize must originate from a trusted reverse proxy"));

        // Claiming to be forwarded by the proxy does not help: only the TCP peer counts.
        let response = untrusted
            .get(app.url(path))
            .query(&params)
            .header("X-Forwarded-User", USER)
            .header("X-Forwarded-For", "127.0.0.1")
            .header("X-Real-IP", "127.0.0.1")
            .header("Forwarded", "for=127.0.0.1;proto=https")
            .send()
            .await
            .unwrap();
        let page = assert_page(response, 403).await;
        assert!(page.contains("/authorize must originate from a trusted reverse proxy"));

        // Without a user header it is the same answer.
        let response = untrusted
            .get(app.url(path))
            .query(&params)
            .send()
            .await
            .unwrap();
        assert_page(response, 403).await;
    }
    assert!(!app.state.store.has_consent(USER, &client_id).await.unwrap());
    app.stop().await;
}

#[tokio::test]
async fn consent_post_from_an_untrusted_peer_is_refused() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let page = consent_page(&app, &client_id).await;
    let ticket = consent_ticket(&page);
    let untrusted = client(Some(untrusted_ip()));
    let response = untrusted
        .post(app.url("/oauth/authorize/consent"))
        .header("X-Forwarded-User", USER)
        .header("X-Forwarded-For", "127.0.0.1")
        .form(&[("ticket", ticket.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    let body = assert_page(response, 403).await;
    assert!(
        body.contains("/authorize must originate from a trusted reverse proxy"),
        "{body}"
    );
    assert!(
        !app.state.store.has_consent(USER, &client_id).await.unwrap(),
        "nothing was recorded"
    );
    app.stop().await;
}

#[tokio::test]
async fn missing_user_header_is_a_401_page() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let response = app
        .authorize_as(None, &TestApp::authorize_params(&client_id, REDIRECT))
        .await;
    let page = assert_page(response, 401).await;
    assert!(
        page.to_ascii_lowercase().contains("x-forwarded-user"),
        "{page}"
    );
    // Look-alike header names are different headers and do not sign anyone in.
    let response = app
        .http
        .get(app.url("/oauth/authorize"))
        .query(&TestApp::authorize_params(&client_id, REDIRECT))
        .header("X_Forwarded_User", USER)
        .header("X-Forwarded_User", USER)
        .header("X-Forwarded-Email", USER)
        .send()
        .await
        .unwrap();
    assert_page(response, 401).await;
    app.stop().await;
}

#[tokio::test]
async fn ambiguous_user_header_is_a_400_page() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);

    // Two header lines: never pick the first or the last.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.append("x-forwarded-user", "alice@example.com".parse().unwrap());
    headers.append("x-forwarded-user", "bob@example.com".parse().unwrap());
    let response = app
        .http
        .get(app.url("/oauth/authorize"))
        .query(&params)
        .headers(headers)
        .send()
        .await
        .unwrap();
    assert_page(response, 400).await;

    // Two users in one line, or an empty one.
    for user in [
        "alice,bob",
        "alice@example.com, bob@example.com",
        "",
        "   ",
        "al ice",
    ] {
        let response = app.authorize_as(Some(user), &params).await;
        assert_page(response, 400).await;
    }
    assert!(!app.state.store.has_consent(USER, &client_id).await.unwrap());
    app.stop().await;
}

#[tokio::test]
async fn unknown_or_missing_client_id_is_a_400_page_without_redirect() {
    let (app, _dir) = TestApp::spawn().await;
    app.register_public(REDIRECT).await;
    for client_id in [Some("no-such-client"), Some(""), None] {
        let params = params_with("placeholder", REDIRECT, &[("client_id", client_id)]);
        let response = app.authorize_as(Some(USER), &params).await;
        assert_page(response, 400).await;
    }
    app.stop().await;
}

/// Row 19: error pages and the consent form's answers carry the anti-framing and referrer
/// headers, and no CORS even when asked from another origin.
#[tokio::test]
async fn error_pages_forbid_framing_and_referrers_and_never_allow_cors() {
    let (app, _dir) = TestApp::spawn().await;
    let response = app
        .http
        .get(app.url("/oauth/authorize"))
        .query(&[("client_id", "nope")])
        .header("X-Forwarded-User", USER)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    assert_page(response, 400).await;
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.get("access-control-allow-origin").is_none());

    let client_id = app.register_public(REDIRECT).await;
    let page = app
        .authorize_as(Some(USER), &TestApp::authorize_params(&client_id, REDIRECT))
        .await
        .text()
        .await
        .unwrap();
    let response = app
        .http
        .post(app.url("/oauth/authorize/consent"))
        .header("X-Forwarded-User", USER)
        .header("Origin", "https://evil.example")
        .form(&[
            ("ticket", consent_ticket(&page).as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.stop().await;
}

/// Catalogue rows 4, 6, 8: anything but the registered URI byte for byte, however alike, is
/// an error page and never a redirect, for an https URI and a loopback URI.
#[tokio::test]
async fn unregistered_redirect_uri_is_a_400_page_without_redirect() {
    let (app, _dir) = TestApp::spawn().await;
    let response = app
        .register_raw(json!({"client_name": "Two URIs", "redirect_uris": [CLAUDE, REDIRECT]}))
        .await;
    assert_eq!(response.status(), 201);
    let client_id = response.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tried = 0;
    for redirect in [
        "https://evil.example/cb",
        // Look-alikes of the https URI: other port, trailing slash, case, scheme, query.
        "https://claude.ai:8443/api/mcp/auth_callback",
        "https://claude.ai:443/api/mcp/auth_callback",
        "https://claude.ai/api/mcp/auth_callback/",
        "https://CLAUDE.AI/api/mcp/auth_callback",
        "https://Claude.ai/api/mcp/auth_callback",
        "HTTPS://claude.ai/api/mcp/auth_callback",
        "http://claude.ai/api/mcp/auth_callback",
        "https://claude.ai/api/mcp/auth_callback?x=1",
        "https://claude.ai/api/mcp/../mcp/auth_callback",
        "https://claude.ai/api/mcp/%2e%2e/mcp/auth_callback",
        "https://claude.ai@evil.com/api/mcp/auth_callback",
        "https://claude.ai.evil.com/api/mcp/auth_callback",
        // Look-alikes of the loopback URI: another host, path or form of 127.0.0.1.
        "http://localhost:33418/callback",
        "http://127.0.0.2:33418/callback",
        "http://127.1:33418/callback",
        "http://2130706433:33418/callback",
        "http://[::ffff:127.0.0.1]:33418/callback",
        "http://127.0.0.1.evil.com:33418/callback",
        "http://127.0.0.1:33418/callback/",
        "http://127.0.0.1:33418/Callback",
        "http://127.0.0.1:33418/callback?x=1",
        "https://127.0.0.1:33418/callback",
        // Catalogue rows 4, 6, 8: byte comparison defeats every look-alike and parser trick.
        // Encoded and double-encoded traversal, encoded unreserved characters.
        "https://claude.ai/api/mcp/%252e%252e/mcp/auth_callback",
        "https://claude.ai/api/mcp/./auth_callback",
        "https://claude.ai/api/mcp//auth_callback",
        "https://claude.ai/api/mcp/auth%5Fcallback",
        "https://claude.ai/api/mcp/auth_callback%20",
        "https://claude.ai/api/mcp/auth_callback%00",
        "https://claude.ai/api/mcp/auth_callback?",
        "https://claude.ai/api/mcp/auth_callback#",
        "https://claude.ai/api/mcp/auth_callback#x",
        // Authority tricks: userinfo, backslashes, a trailing dot, encoded separators.
        "https://evil.com\\@claude.ai/api/mcp/auth_callback",
        "https://claude.ai\\@evil.com/api/mcp/auth_callback",
        "https://claude.ai%2F@evil.com/api/mcp/auth_callback",
        "https://claude.ai%40evil.com/api/mcp/auth_callback",
        "https://claude.ai./api/mcp/auth_callback",
        "https://claude.ai:/api/mcp/auth_callback",
        "//claude.ai/api/mcp/auth_callback",
        "https:/claude.ai/api/mcp/auth_callback",
        " https://claude.ai/api/mcp/auth_callback",
        "https://claude.ai/api/mcp/auth_callback\t",
        "https://claude.ai/api/mcp/auth\ncallback",
        // More look-alikes of the registered 127.0.0.1 (row 8).
        "http://LOCALHOST:33418/callback",
        "http://localhost.:33418/callback",
        "http://127.0.0.1.:33418/callback",
        "http://0x7f.1:33418/callback",
        "http://0x7f000001:33418/callback",
        "http://017700000001:33418/callback",
        "http://127.000.000.001:33418/callback",
        "http://localhost.evil.com:33418/callback",
        "http://[::1]:33418/callback",
        "http://[0:0:0:0:0:ffff:7f00:1]:33418/callback",
        "http://127.0.0.1:33418@evil.com/callback",
        "http://127.0.0.1:33418\\@evil.com/callback",
        "http://127.0.0.1:033418/callback",
        "http://127.0.0.1:/callback",
        "http://127.0.0.1:33418:80/callback",
        "http://127.0.0.1:33418/callback/..",
        "http://127.0.0.1:33418/callback%2f",
        "http://127.0.0.1:33418/%63allback",
    ] {
        let params = TestApp::authorize_params(&client_id, redirect);
        let page = assert_page(app.authorize_as(Some(USER), &params).await, 400).await;
        assert!(
            page.contains("redirect_uri rejected"),
            "{redirect:?}: {page}"
        );
        tried += 1;
    }
    assert_eq!(tried, 23 + 38);
    assert!(!app.state.store.has_consent(USER, &client_id).await.unwrap());
    // A missing redirect_uri never falls back to a registered one.
    let params = params_with(&client_id, REDIRECT, &[("redirect_uri", None)]);
    assert_page(app.authorize_as(Some(USER), &params).await, 400).await;
    // The registered URIs themselves work.
    for redirect in [CLAUDE, REDIRECT] {
        let response = approve(&app, &TestApp::authorize_params(&client_id, redirect)).await;
        assert!(location(&response).starts_with(&format!("{redirect}?")));
    }
    app.stop().await;
}

/// Row 5: a registered query is part of the URI; any other query is a different URI.
#[tokio::test]
async fn a_registered_query_must_match_exactly() {
    let (app, _dir) = TestApp::spawn_configured(&|c| {
        c["redirectUriAllowlist"]
            .as_array_mut()
            .unwrap()
            .push(json!("https://app.example.com/cb?x=1"));
    })
    .await;
    let registered = "https://app.example.com/cb?x=1";
    let client_id = app.register_uris(&[registered]).await;
    for requested in [
        "https://app.example.com/cb?x=1&y=2",
        "https://app.example.com/cb?y=2&x=1",
        "https://app.example.com/cb?x=2",
        "https://app.example.com/cb?X=1",
        "https://app.example.com/cb?x=1&",
        "https://app.example.com/cb?x=%31",
        "https://app.example.com/cb",
        "https://app.example.com/cb?",
    ] {
        let params = TestApp::authorize_params(&client_id, requested);
        assert_page(app.authorize_as(Some(USER), &params).await, 400).await;
    }
    // The exact URI works, and the code is appended to its query.
    let code = app.code_for(&client_id, registered).await;
    let response = app.exchange(&client_id, &code, registered).await;
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn loopback_redirect_uri_matches_any_port() {
    let (app, _dir) = TestApp::spawn().await;
    for (registered, requested) in [
        (REDIRECT, "http://127.0.0.1:59656/callback"),
        ("http://127.0.0.1:33418/", "http://127.0.0.1:59656/"),
        (
            "http://localhost:3000/callback",
            "http://localhost:4321/callback",
        ),
        ("http://[::1]:9000/cb", "http://[::1]:9001/cb"),
    ] {
        let client_id = app.register_public(registered).await;
        let response = approve(&app, &TestApp::authorize_params(&client_id, requested)).await;
        assert!(
            location(&response).starts_with(&format!("{requested}?")),
            "{}",
            location(&response)
        );
        let code = code_in(&app, &response);
        let claims = claims_for(&app, &client_id, &code, requested, &app.expectations()).await;
        assert_eq!(claims.client_id, client_id);
    }
    app.stop().await;
}

// Redirect URI matching, differentially against the `url` crate: a match names the same
// place; outside http loopback a match is byte equality, and on http loopback it is equality
// once the port is removed.

pub(crate) const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

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

pub(crate) fn is_http_loopback(url: &url::Url) -> bool {
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
    #![proptest_config(proptest_cases(2048))]

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

/// PKCE at authorize (catalogue section B): only an S256 challenge of 43 base64url
/// characters is accepted; anything else is `invalid_request` by redirect, and nothing is
/// remembered.
#[tokio::test]
async fn missing_challenge_plain_or_missing_method_is_invalid_request_by_redirect() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let verifier_as_challenge = VERIFIER;
    for changes in [
        vec![("code_challenge", None)],
        vec![("code_challenge", None), ("code_challenge_method", None)],
        vec![
            ("code_challenge", Some(verifier_as_challenge)),
            ("code_challenge_method", Some("plain")),
        ],
        vec![("code_challenge_method", None)],
        vec![("code_challenge_method", Some("plain"))],
        vec![("code_challenge_method", Some("s256"))],
        vec![("code_challenge", Some("too-short"))],
        vec![(
            "code_challenge",
            Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"),
        )],
    ] {
        let params = params_with(&client_id, REDIRECT, &changes);
        let response = app.authorize_as(Some(USER), &params).await;
        assert_error_redirect(&app, &response, 302, REDIRECT, "invalid_request");
    }
    // Catalogue row 23: a challenge that is not 43 base64url characters.
    let good = challenge(VERIFIER);
    let padded = format!("{good}=");
    let short = good[..42].to_string();
    let long = format!("{good}A");
    let non_ascii = format!("{}é", &good[..42]);
    let spaced = format!("{} ", &good[..42]);
    let dotted = format!("{}.", &good[..42]);
    for bad in [
        &padded,
        &short,
        &long,
        &non_ascii,
        &spaced,
        &dotted,
        &String::new(),
    ] {
        let params = params_with(&client_id, REDIRECT, &[("code_challenge", Some(bad))]);
        let response = app.authorize_as(Some(USER), &params).await;
        assert_error_redirect(&app, &response, 302, REDIRECT, "invalid_request");
    }
    assert!(!app.state.store.has_consent(USER, &client_id).await.unwrap());
    app.stop().await;
}

#[tokio::test]
async fn response_type_other_than_code_is_rejected_by_redirect() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    for response_type in ["token", "code token", "id_token"] {
        let params = params_with(
            &client_id,
            REDIRECT,
            &[("response_type", Some(response_type))],
        );
        let response = app.authorize_as(Some(USER), &params).await;
        assert_error_redirect(&app, &response, 302, REDIRECT, "unsupported_response_type");
    }
    let params = params_with(&client_id, REDIRECT, &[("response_type", None)]);
    let response = app.authorize_as(Some(USER), &params).await;
    assert_error_redirect(&app, &response, 302, REDIRECT, "invalid_request");
    app.stop().await;
}

#[tokio::test]
async fn another_resource_is_invalid_target() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    for resource in [
        "https://evil.example/mcp".to_string(),
        app.url("/other"),
        app.url("/mcp/x"),
        app.url("/MCP"),
        format!("{}#frag", app.url("/mcp")),
        "/mcp".to_string(),
        app.base.clone(),
    ] {
        let params = params_with(&client_id, REDIRECT, &[("resource", Some(&resource))]);
        let response = app.authorize_as(Some(USER), &params).await;
        assert_error_redirect(&app, &response, 302, REDIRECT, "invalid_target");
    }
    app.stop().await;
}

#[tokio::test]
async fn resource_with_trailing_slash_or_other_case_is_the_same_resource() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let resource = app.url("/mcp");
    for requested in [
        resource.clone(),
        format!("{resource}/"),
        resource.replacen("http://", "HTTP://", 1),
        format!("{}/", resource.replacen("http://", "Http://", 1)),
    ] {
        let params = params_with(&client_id, REDIRECT, &[("resource", Some(&requested))]);
        let response = approve(&app, &params).await;
        let code = code_in(&app, &response);
        let claims = claims_for(&app, &client_id, &code, REDIRECT, &app.expectations()).await;
        assert_eq!(claims.aud, resource, "{requested}");
    }
    app.stop().await;
}

#[tokio::test]
async fn resource_with_uppercase_host_is_the_same_resource() {
    let (app, _dir) =
        TestApp::spawn_configured(&|c| c["resourceUrl"] = json!("https://mcp.example.com/mcp"))
            .await;
    let expectations = mcp_authd::TokenExpectations {
        audience: "https://mcp.example.com/mcp".to_string(),
        ..app.expectations()
    };
    let client_id = app.register_public(REDIRECT).await;
    for requested in [
        "https://MCP.Example.COM/mcp",
        "https://mcp.example.com/mcp/",
        "HTTPS://MCP.EXAMPLE.COM/mcp/",
    ] {
        let params = params_with(&client_id, REDIRECT, &[("resource", Some(requested))]);
        let response = approve(&app, &params).await;
        let code = code_in(&app, &response);
        let claims = claims_for(&app, &client_id, &code, REDIRECT, &expectations).await;
        assert_eq!(claims.aud, "https://mcp.example.com/mcp", "{requested}");
    }
    let params = params_with(
        &client_id,
        REDIRECT,
        &[("resource", Some("https://mcp.example.com/MCP"))],
    );
    let response = app.authorize_as(Some(USER), &params).await;
    assert_error_redirect(&app, &response, 302, REDIRECT, "invalid_target");
    app.stop().await;
}

#[tokio::test]
async fn missing_resource_means_the_configured_resource() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let params = params_with(&client_id, REDIRECT, &[("resource", None)]);
    let response = approve(&app, &params).await;
    let code = code_in(&app, &response);
    let claims = claims_for(&app, &client_id, &code, REDIRECT, &app.expectations()).await;
    assert_eq!(claims.aud, app.url("/mcp"));
    app.stop().await;
}

#[tokio::test]
async fn scope_outside_scopes_supported_is_invalid_scope() {
    let (app, _dir) =
        TestApp::spawn_configured(&|c| c["scopesSupported"] = json!(["mcp:tools"])).await;
    let client_id = app.register_public(REDIRECT).await;
    for scope in [
        "mcp:admin",
        "mcp:tools mcp:admin",
        "openid email profile",
        "MCP:TOOLS",
    ] {
        let params = params_with(&client_id, REDIRECT, &[("scope", Some(scope))]);
        let response = app.authorize_as(Some(USER), &params).await;
        assert_error_redirect(&app, &response, 302, REDIRECT, "invalid_scope");
    }
    let params = params_with(&client_id, REDIRECT, &[("scope", Some("mcp:tools"))]);
    let response = approve(&app, &params).await;
    let code = code_in(&app, &response);
    let claims = claims_for(&app, &client_id, &code, REDIRECT, &app.expectations()).await;
    assert_eq!(claims.scope, "mcp:tools");
    app.stop().await;
}

#[tokio::test]
async fn missing_scope_falls_back_to_the_registered_scope() {
    let (app, _dir) =
        TestApp::spawn_configured(&|c| c["scopesSupported"] = json!(["mcp:tools", "mcp:read"]))
            .await;
    let response = app
        .register_raw(
            json!({"client_name": "ChatGPT", "redirect_uris": [REDIRECT], "scope": "mcp:tools"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let client_id = response.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string();

    // ChatGPT's reconnect: no scope parameter at all.
    let params = params_with(&client_id, REDIRECT, &[("scope", None)]);
    let response = approve(&app, &params).await;
    let code = code_in(&app, &response);
    let tokens: Value = app
        .exchange(&client_id, &code, REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "mcp:tools");
    let claims = mcp_authd::verify_access_token(
        tokens["access_token"].as_str().unwrap(),
        &app.expectations(),
    )
    .unwrap();
    assert_eq!(claims.scope, "mcp:tools");

    // An explicit scope is used as asked.
    let params = params_with(&client_id, REDIRECT, &[("scope", Some("mcp:read"))]);
    let code = code_in(&app, &approve(&app, &params).await);
    let claims = claims_for(&app, &client_id, &code, REDIRECT, &app.expectations()).await;
    assert_eq!(claims.scope, "mcp:read");

    // A client that registered no scope gets none.
    let other = app.register_public(REDIRECT).await;
    let params = params_with(&other, REDIRECT, &[("scope", None)]);
    let code = code_in(&app, &approve(&app, &params).await);
    let claims = claims_for(&app, &other, &code, REDIRECT, &app.expectations()).await;
    assert_eq!(claims.scope, "");
    app.stop().await;
}

/// `state` is optional; when sent it is echoed exactly, however long and odd (catalogue row 12).
#[tokio::test]
async fn state_is_optional_and_echoed_exactly() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let params = params_with(&client_id, REDIRECT, &[("state", None)]);
    let response = approve(&app, &params).await;
    let query = query_of(&location(&response));
    assert!(!query.contains_key("state"));
    assert!(query.contains_key("code"));
    assert_eq!(query["iss"], app.base);

    let odd = "a b&c=d#e\"<>'é+%20";
    let params = params_with(&client_id, REDIRECT, &[("state", Some(odd))]);
    let response = approve(&app, &params).await;
    let query = query_of(&location(&response));
    assert_eq!(query["state"], odd);

    // Catalogue row 12: a 4 KiB `state` of awkward characters comes back byte for byte, from
    // the remembered approval and in an error redirect.
    let state: String = "a&b=c#d%20e+f\"<>'é/?\\"
        .chars()
        .cycle()
        .take(4096)
        .collect();
    let params = params_with(&client_id, REDIRECT, &[("state", Some(&state))]);
    let response = app.authorize_as(Some(USER), &params).await;
    assert_eq!(response.status(), 302);
    assert_eq!(query_of(&location(&response))["state"], state);
    let params = params_with(
        &client_id,
        REDIRECT,
        &[
            ("state", Some(&state)),
            ("code_challenge_method", Some("plain")),
        ],
    );
    let response = app.authorize_as(Some(USER), &params).await;
    let query = query_of(&location(&response));
    assert_eq!(query["error"], "invalid_request");
    assert_eq!(query["state"], state);
    app.stop().await;
}

/// Row 13: the success redirect carries exactly one `code`, `state` and `iss`; codes are
/// 256-bit base64url strings, all different, each bound to its own redirect.
#[tokio::test]
async fn the_success_redirect_has_one_code_state_and_iss_and_codes_are_256_bit() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    app.code_for(&client_id, REDIRECT).await;
    let mut codes = std::collections::HashSet::new();
    for _ in 0..20 {
        let response = app
            .authorize_as(Some(USER), &TestApp::authorize_params(&client_id, REDIRECT))
            .await;
        assert_eq!(response.status(), 302);
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
        let location = location(&response);
        let pairs: Vec<(String, String)> = url::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (k, _) in &pairs {
            *counts.entry(k.as_str()).or_default() += 1;
        }
        assert_eq!(
            counts,
            HashMap::from([("code", 1), ("state", 1), ("iss", 1)]),
            "{location}"
        );
        let code = pairs.iter().find(|(k, _)| k == "code").unwrap().1.clone();
        assert_eq!(URL_SAFE_NO_PAD.decode(&code).unwrap().len(), 32, "{code}");
        assert!(codes.insert(code));
    }
    app.stop().await;
}

#[tokio::test]
async fn consent_deny_redirects_with_access_denied() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let page = consent_page(&app, &client_id).await;
    let response = app.answer_consent(&page, USER, "deny").await;
    assert_error_redirect(&app, &response, 303, REDIRECT, "access_denied");
    assert!(
        !app.state.store.has_consent(USER, &client_id).await.unwrap(),
        "a denial is not remembered as approval"
    );
    // The next attempt asks again.
    consent_page(&app, &client_id).await;
    app.stop().await;
}

#[tokio::test]
async fn forged_or_tampered_consent_ticket_is_403() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let page = consent_page(&app, &client_id).await;
    let ticket = consent_ticket(&page);
    let (body, mac) = ticket.split_once('.').expect("a body.mac ticket");

    // The request inside, rewritten to another redirect URI and re-signed with a guessed key.
    let mut inner: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
    inner["request"]["redirect_uri"] = json!("http://127.0.0.1:1/steal");
    let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&inner).unwrap());
    let mut flipped = body.to_string().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let forgeries = [
        String::new(),
        "garbage".to_string(),
        format!("{body}."),
        format!("{body}.{}", URL_SAFE_NO_PAD.encode([0u8; 32])),
        format!("{forged_body}.{mac}"),
        format!("{flipped}.{mac}"),
        format!("{body}.{mac}x"),
        body.to_string(),
    ];
    for forged in &forgeries {
        let response = post_consent(&app.http, &app, forged, USER).await;
        assert_page(response, 403).await;
    }
    // A form without a ticket at all.
    let response = app
        .http
        .post(app.url("/oauth/authorize/consent"))
        .header("X-Forwarded-User", USER)
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_page(response, 403).await;
    assert!(!app.state.store.has_consent(USER, &client_id).await.unwrap());

    // The genuine ticket was not spent by the forgeries.
    let response = post_consent(&app.http, &app, &ticket, USER).await;
    assert_eq!(response.status(), 303);
    assert!(location(&response).starts_with(&format!("{REDIRECT}?")));
    app.stop().await;
}

#[tokio::test]
async fn consent_ticket_replayed_is_403() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let page = consent_page(&app, &client_id).await;
    let response = app.answer_consent(&page, USER, "approve").await;
    assert_eq!(response.status(), 303);
    let code = code_in(&app, &response);

    for decision in ["approve", "deny"] {
        let response = app.answer_consent(&page, USER, decision).await;
        let body = assert_page(response, 403).await;
        assert!(body.contains("already"), "{body}");
    }
    // The one code issued still works.
    assert_eq!(
        app.exchange(&client_id, &code, REDIRECT).await.status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn consent_ticket_presented_by_another_user_is_403() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let page = consent_page(&app, &client_id).await;
    let ticket = consent_ticket(&page);
    let response = post_consent(&app.http, &app, &ticket, "bob@example.com").await;
    assert_page(response, 403).await;
    assert!(
        !app.state
            .store
            .has_consent("bob@example.com", &client_id)
            .await
            .unwrap()
    );
    assert!(!app.state.store.has_consent(USER, &client_id).await.unwrap());
    app.stop().await;
}

#[tokio::test]
async fn dynamic_consent_is_remembered_per_user_and_client() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let page = consent_page(&app, &client_id).await;
    assert!(page.contains("unverified"));
    assert_eq!(
        app.answer_consent(&page, USER, "approve").await.status(),
        303
    );
    assert!(app.state.store.has_consent(USER, &client_id).await.unwrap());

    // Alice is not asked again for this client.
    let response = app
        .authorize_as(Some(USER), &TestApp::authorize_params(&client_id, REDIRECT))
        .await;
    assert_eq!(response.status(), 302);
    code_in(&app, &response);
    // Bob is, and so is Alice for another client.
    let response = app
        .authorize_as(
            Some("bob@example.com"),
            &TestApp::authorize_params(&client_id, REDIRECT),
        )
        .await;
    assert_eq!(response.status(), 200);
    let other = app.register_public(REDIRECT).await;
    consent_page(&app, &other).await;
    app.stop().await;
}

/// Row 15 (confused deputy): a client an attacker registered, sent to a signed-in victim as a
/// link, gets a consent page naming it as unverified and showing where the code would go;
/// nothing is issued or remembered before the victim approves, and approving another
/// client earlier does not count.
#[tokio::test]
async fn an_attackers_client_sent_as_a_link_gets_only_a_consent_page() {
    let (app, _dir) = TestApp::spawn().await;
    // The victim already uses a legitimate client.
    let legit = app.register_public(REDIRECT).await;
    app.code_for(&legit, REDIRECT).await;
    assert!(app.state.store.has_consent(USER, &legit).await.unwrap());

    let attacker_uri = "http://localhost:4444/steal";
    let response = app
        .register_raw(json!({"client_name": "Claude Code", "redirect_uris": [attacker_uri]}))
        .await;
    let attacker = string(&response.json().await.unwrap(), "client_id");
    let response = app
        .authorize_as(
            Some(USER),
            &TestApp::authorize_params(&attacker, attacker_uri),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("location").is_none());
    let page = response.text().await.unwrap();
    assert!(page.contains("unverified"), "{page}");
    assert!(
        page.contains("localhost"),
        "the redirect host is shown: {page}"
    );
    assert!(!page.contains("code="), "{page}");
    assert!(!app.state.store.has_consent(USER, &attacker).await.unwrap());
    // Denying sends the user back with an error, and still remembers nothing.
    let response = app.answer_consent(&page, USER, "deny").await;
    assert_eq!(response.status(), 303);
    assert!(query_of(&location(&response))["error"] == "access_denied");
    assert!(!app.state.store.has_consent(USER, &attacker).await.unwrap());
    assert!(app.state.store.families().await.unwrap().is_empty());
    app.stop().await;
}

/// SPEC §13 (issue 8, item 6): a remembered consent covers the scopes the user approved.
/// A request for more shows the page again, naming the new scopes; approving stores the
/// union, denying keeps the old consent. Other users and pre-provisioned clients are unaffected.
#[tokio::test]
async fn a_consent_covers_only_its_scopes_and_a_wider_request_asks_again() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let with_scope = |scope: &str| params_with(&client_id, REDIRECT, &[("scope", Some(scope))]);
    let response = app.authorize_as(Some(USER), &with_scope("read")).await;
    assert_eq!(response.status(), 200);
    let first = response.text().await.unwrap();
    assert!(!first.contains("(new)"), "a first approval marks nothing");
    code_in(&app, &app.answer_consent(&first, USER, "approve").await);
    let response = app.authorize_as(Some(USER), &with_scope("read")).await;
    assert_eq!(response.status(), 302);

    // More than was approved: the page again, the new scopes marked, the old one not.
    let response = app
        .authorize_as(Some(USER), &with_scope("read admin tools:delete"))
        .await;
    assert_eq!(response.status(), 200, "a wider scope needs a new approval");
    let page = response.text().await.unwrap();
    assert!(
        page.contains("<strong>admin</strong> <em>(new)</em>"),
        "{page}"
    );
    assert!(
        page.contains("<strong>tools:delete</strong> <em>(new)</em>"),
        "{page}"
    );
    assert!(!page.contains("<strong>read</strong>"), "{page}");
    assert!(
        page.contains("It now asks for more: <strong>admin tools:delete</strong>"),
        "{page}"
    );

    // Denied: nothing more is approved, the old approval stands.
    let denied = app.answer_consent(&page, USER, "deny").await;
    assert_eq!(query_of(&location(&denied))["error"], "access_denied");
    let response = app.authorize_as(Some(USER), &with_scope("admin")).await;
    assert_eq!(response.status(), 200);
    let response = app.authorize_as(Some(USER), &with_scope("read")).await;
    assert_eq!(response.status(), 302);

    // Approved: the union is remembered.
    let response = app
        .authorize_as(Some(USER), &with_scope("tools:delete admin"))
        .await;
    let page = response.text().await.unwrap();
    let code = code_in(&app, &app.answer_consent(&page, USER, "approve").await);
    let claims = claims_for(&app, &client_id, &code, REDIRECT, &app.expectations()).await;
    assert_eq!(claims.scope, "tools:delete admin");
    for scope in ["read admin tools:delete", "admin read", "tools:delete", ""] {
        let response = app.authorize_as(Some(USER), &with_scope(scope)).await;
        assert_eq!(response.status(), 302, "{scope:?}");
    }
    let response = app
        .authorize_as(Some(USER), &with_scope("read write"))
        .await;
    assert_eq!(response.status(), 200);
    // Bob approved nothing.
    let response = app
        .authorize_as(Some("bob@example.com"), &with_scope("read"))
        .await;
    assert_eq!(response.status(), 200);

    // A pre-provisioned client is never asked, whatever its scope.
    let provisioned = mcp_authd::oauth::register::provision(
        "Gemini Enterprise",
        vec![REDIRECT.to_string()],
        app.state.now(),
    )
    .unwrap()
    .client;
    let provisioned_id = provisioned.client_id.clone();
    app.state.store.put_client(provisioned).await.unwrap();
    let params = params_with(&provisioned_id, REDIRECT, &[("scope", Some("admin"))]);
    assert_eq!(app.authorize_as(Some(USER), &params).await.status(), 302);
    app.stop().await;
}

/// SPEC §13: `offline_access` is accepted and ignored, also when `scopesSupported` does not
/// list it: never refused, never granted, never asked about, neither a widening nor a
/// narrowing at refresh; a refresh token comes anyway.
#[tokio::test]
async fn offline_access_is_accepted_and_ignored() {
    let (app, _dir) =
        TestApp::spawn_configured(&|c| c["scopesSupported"] = json!(["mcp:tools"])).await;
    let client_id = app.register_public(REDIRECT).await;
    let params = params_with(
        &client_id,
        REDIRECT,
        &[("scope", Some("mcp:tools offline_access"))],
    );
    let response = app.authorize_as(Some(USER), &params).await;
    assert_eq!(
        response.status(),
        200,
        "the consent page, not invalid_scope"
    );
    let page = response.text().await.unwrap();
    assert!(!page.contains("offline_access"), "{page}");
    let code = code_in(&app, &app.answer_consent(&page, USER, "approve").await);
    let response = app.exchange(&client_id, &code, REDIRECT).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["scope"], "mcp:tools");
    // A refresh token is issued whether or not offline_access was asked for.
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].is_u64(), "{tokens}");
    assert!(tokens["access_token"].is_string(), "{tokens}");
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    // Asked for alone, it needs no new approval either.
    let params = params_with(&client_id, REDIRECT, &[("scope", Some("offline_access"))]);
    let response = app.authorize_as(Some(USER), &params).await;
    assert_eq!(response.status(), 302);
    code_in(&app, &response);
    // A refresh naming it is not a widening.
    let response = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", refresh_token),
            ("scope", "mcp:tools offline_access"),
        ])
        .await;
    assert_eq!(response.status(), 200);
    let refreshed: Value = response.json().await.unwrap();
    assert_eq!(refreshed["scope"], "mcp:tools");
    // Nor is a refresh asking for it alone a narrowing.
    let response = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", &string(&refreshed, "refresh_token")),
            ("scope", "offline_access"),
        ])
        .await;
    assert_eq!(response.status(), 200);
    let refreshed: Value = response.json().await.unwrap();
    assert_eq!(
        refreshed["scope"], "mcp:tools",
        "offline_access alone narrows nothing"
    );
    assert!(refreshed["refresh_token"].is_string(), "{refreshed}");
    app.stop().await;
}

#[tokio::test]
async fn consent_always_shows_the_page_even_after_approval() {
    let (app, _dir) = TestApp::spawn_configured(&|c| c["consent"] = json!("always")).await;
    let client_id = app.register_public(REDIRECT).await;
    for _ in 0..2 {
        let page = consent_page(&app, &client_id).await;
        let response = app.answer_consent(&page, USER, "approve").await;
        assert_eq!(response.status(), 303);
        code_in(&app, &response);
    }
    app.stop().await;
}

#[tokio::test]
async fn consent_never_skips_the_page() {
    let (app, _dir) = TestApp::spawn_configured(&|c| c["consent"] = json!("never")).await;
    let client_id = app.register_public(REDIRECT).await;
    let response = app
        .authorize_as(Some(USER), &TestApp::authorize_params(&client_id, REDIRECT))
        .await;
    assert_eq!(response.status(), 302);
    assert!(location(&response).starts_with(&format!("{REDIRECT}?")));
    let code = code_in(&app, &response);
    assert_eq!(
        app.exchange(&client_id, &code, REDIRECT).await.status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn repeated_query_parameter_is_a_400_page() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let other = app.register_public("http://127.0.0.1:1/evil").await;
    for (name, value) in [
        ("client_id", other.as_str()),
        ("redirect_uri", "http://127.0.0.1:1/evil"),
        ("state", "other"),
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("response_type", "code"),
    ] {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in TestApp::authorize_params(&client_id, REDIRECT) {
            query.append_pair(&k, &v);
        }
        query.append_pair(name, value);
        let response = app
            .http
            .get(format!(
                "{}?{}",
                app.url("/oauth/authorize"),
                query.finish()
            ))
            .header("X-Forwarded-User", USER)
            .send()
            .await
            .unwrap();
        let page = assert_page(response, 400).await;
        assert!(page.contains("repeated"), "{name}: {page}");
    }
    app.stop().await;
}
