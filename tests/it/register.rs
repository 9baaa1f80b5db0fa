//! Dynamic client registration (RFC 7591, SPEC §6 "Registration") and catalogue section H:
//! the fields of a registration, what is refused and with which error, the redirect URI
//! tricks the validator refuses on its own (whatever the allowlist admits), duplicate JSON
//! members, and, as a property, that registration accepts only canonical, safe URIs.

// The helpers in this file run only inside tests, where a failed step should panic.

use mcp_authd::clock::Clock;
use mcp_authd::oauth::redirect::validate_for_registration;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::authorize::is_http_loopback;
use crate::helpers::*;

const CLAUDE: &str = "https://claude.ai/api/mcp/auth_callback";
const CURSOR_APP: &str = "cursor://anysphere.cursor-mcp/oauth/callback";
const CURSOR_WEB: &str = "https://www.cursor.com/agents/mcp/oauth/callback";
const CURSOR_LOOPBACK: &str = "http://localhost:8787/callback";

/// POST /oauth/register with `body` as it is, labelled JSON (for bodies `json!` cannot make).
async fn register_text(app: &TestApp, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.http
        .post(app.url("/oauth/register"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// How many clients the store holds.
async fn client_count(app: &TestApp) -> usize {
    app.state.store.clients().await.unwrap().len()
}

/// Posts `body` to /oauth/register, asserts a 400 JSON error with `code`, checks that
/// no client was created, and returns the description.
async fn assert_rejected(app: &TestApp, body: Value, code: &str) -> String {
    let before = client_count(app).await;
    let description = assert_oauth_error(app.register_raw(body.clone()).await, 400, code).await;
    assert_eq!(
        client_count(app).await,
        before,
        "a rejected registration created a client: {body}"
    );
    description
}

/// Registers `body`, asserts 201 and returns the response JSON.
async fn registered(app: &TestApp, body: Value) -> Value {
    let response = app.register_raw(body).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_no_nulls(&body, "$");
    body
}

#[tokio::test]
async fn registration_returns_201_with_every_field_and_no_null() {
    let (app, _dir) = TestApp::spawn().await;
    let body = registered(
        &app,
        json!({"client_name": "Claude Code", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}),
    )
    .await;
    let client_id = body["client_id"].as_str().expect("client_id is a string");
    assert!(client_id.len() >= 16, "{client_id}");
    assert_eq!(body["redirect_uris"], json!([REDIRECT]));
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(body["response_types"], json!(["code"]));
    assert_eq!(body["client_id_issued_at"], json!(app.clock.now()));
    assert_eq!(body["client_name"], "Claude Code");
    assert!(body.get("client_secret").is_none() && body.get("client_secret_expires_at").is_none());

    // The client exists and is usable.
    let stored = app
        .state
        .store
        .client(client_id)
        .await
        .unwrap()
        .expect("the client was stored");
    assert_eq!(stored.redirect_uris, vec![REDIRECT.to_string()]);
    let second = registered(&app, json!({"redirect_uris": [REDIRECT]})).await;
    assert_ne!(
        second["client_id"], body["client_id"],
        "client ids are unique"
    );
    app.stop().await;
}

#[tokio::test]
async fn omitted_auth_method_registers_a_public_client_without_a_secret() {
    let (app, _dir) = TestApp::spawn().await;
    // The Python SDK's body: no token_endpoint_auth_method (RFC 7591 would default to Basic).
    let body = registered(
        &app,
        json!({"client_name": "mcp python", "redirect_uris": ["http://localhost:3030/callback"], "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}),
    )
    .await;
    assert_eq!(body["token_endpoint_auth_method"], "none");
    assert!(body.get("client_secret").is_none());
    assert!(body.get("client_secret_expires_at").is_none());
    // And it really is public: client_id alone authenticates at the token endpoint.
    let client_id = body["client_id"].as_str().unwrap();
    let code = app
        .code_for(client_id, "http://localhost:3030/callback")
        .await;
    assert_eq!(
        app.exchange(client_id, &code, "http://localhost:3030/callback")
            .await
            .status(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn client_secret_post_and_basic_get_a_secret_that_never_expires() {
    let (app, _dir) = TestApp::spawn().await;
    for method in ["client_secret_post", "client_secret_basic"] {
        let body = registered(
            &app,
            json!({"client_name": "claude.ai", "redirect_uris": [CLAUDE], "token_endpoint_auth_method": method}),
        )
        .await;
        assert_eq!(body["token_endpoint_auth_method"], method);
        let secret = body["client_secret"].as_str().expect("a client_secret");
        assert!(secret.len() >= 32, "{method}: secret too short");
        assert_eq!(body["client_secret_expires_at"], json!(0), "{method}");
        assert_eq!(body["redirect_uris"], json!([CLAUDE]));
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_metadata_is_ignored_and_client_chosen_ids_are_not_used() {
    let (app, _dir) = TestApp::spawn().await;
    let body = registered(
        &app,
        json!({
            "client_name": "Inspector",
            "redirect_uris": [REDIRECT],
            "application_type": "native",
            "software_id": "io.example.inspector",
            "software_version": "2.12.0",
            "client_uri": "https://inspector.example",
            "logo_uri": "https://inspector.example/logo.png",
            "contacts": ["ops@example.com"],
            "x-vendor-extension": {"nested": [1, 2, 3]},
            "client_id": "chosen-by-the-client",
            "client_secret": "chosen-secret",
            "client_id_issued_at": 1
        }),
    )
    .await;
    assert_ne!(body["client_id"], "chosen-by-the-client");
    assert!(body.get("client_secret").is_none());
    assert_ne!(body["client_id_issued_at"], json!(1));
    assert!(
        app.state
            .store
            .client("chosen-by-the-client")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(body["client_name"], "Inspector");
    app.stop().await;
}

#[tokio::test]
async fn empty_scope_is_accepted() {
    let (app, _dir) = TestApp::spawn().await;
    // Gemini CLI and the Inspector send scope: "".
    let body = registered(
        &app,
        json!({"client_name": "Gemini CLI", "redirect_uris": [REDIRECT], "scope": ""}),
    )
    .await;
    assert!(body.get("scope").is_none_or(|s| s == ""), "{body}");
    let client_id = body["client_id"].as_str().unwrap();
    let code = app.code_for(client_id, REDIRECT).await;
    assert_eq!(app.exchange(client_id, &code, REDIRECT).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn cursor_three_redirect_uris_in_one_registration_are_accepted() {
    let (app, _dir) = TestApp::spawn_configured(&|c| {
        c["redirectUriAllowlist"]
            .as_array_mut()
            .unwrap()
            .push(json!(CURSOR_WEB));
    })
    .await;
    let uris = [CURSOR_APP, CURSOR_WEB, CURSOR_LOOPBACK];
    let body = registered(
        &app,
        json!({"client_name": "Cursor", "redirect_uris": uris, "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}),
    )
    .await;
    assert_eq!(body["redirect_uris"], json!(uris));
    // Each of them can be used.
    let client_id = body["client_id"].as_str().unwrap();
    for uri in uris {
        let code = app.code_for(client_id, uri).await;
        assert_eq!(
            app.exchange(client_id, &code, uri).await.status(),
            200,
            "{uri}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn forbidden_redirect_uris_are_rejected_by_name() {
    let (app, _dir) = TestApp::spawn().await;
    for uri in [
        // Dangerous schemes (catalogue row 76).
        "javascript:alert(1)",
        "javascript://claude.ai/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "blob:https://claude.ai/0b6f6f7e",
        "about:blank",
        // Non-loopback http (row 77).
        "http://app.example/cb",
        "http://claude.ai/api/mcp/auth_callback",
        "http://localhost.evil.com/cb",
        "http://127.0.0.1.evil.com/cb",
        // Wildcards (row 78).
        "https://*.claude.ai/api/mcp/auth_callback",
        "https://claude.ai/*",
        "http://127.0.0.1:*/callback",
        // Not in canonical form (row 79).
        "http://127.0.0.1:3000/call\tback",
        "http://127.0.0.1:3000/call\nback",
        "https:claude.ai/api/mcp/auth_callback",
        "https:///claude.ai/api/mcp/auth_callback",
        "http://127.0.0.1:03000/callback",
        "HTTP://127.0.0.1:3000/callback",
        "http://LOCALHOST:3000/callback",
        "https://CLAUDE.AI/api/mcp/auth_callback",
        "https://bücher.example/cb",
        "http://127.0.0.1:3000/a/../callback",
        "http://127.0.0.1:3000/a/%2e%2e/callback",
        "http://127.1:3000/callback",
        "http://2130706433:3000/callback",
        "http://0x7f.1:3000/callback",
        "http://localhost:3000",
        " http://127.0.0.1:3000/callback",
        // Fragment, userinfo, relative, no host (row 80).
        "https://claude.ai/api/mcp/auth_callback#frag",
        "http://127.0.0.1:3000/callback#",
        "https://user@claude.ai/api/mcp/auth_callback",
        "https://claude.ai@evil.com/api/mcp/auth_callback",
        "http://user:pass@127.0.0.1:3000/callback",
        "//evil.com/cb",
        "/callback",
        "callback",
        "https://",
        "",
    ] {
        let description = assert_rejected(
            &app,
            json!({"redirect_uris": [uri]}),
            "invalid_redirect_uri",
        )
        .await;
        assert!(
            description.starts_with("redirect_uri rejected: "),
            "{uri:?}: {description}"
        );
        // One bad URI among good ones still rejects the whole registration.
        assert_rejected(
            &app,
            json!({"redirect_uris": [REDIRECT, uri]}),
            "invalid_redirect_uri",
        )
        .await;
    }
    assert_eq!(client_count(&app).await, 0);
    app.stop().await;
}

/// Rows 6, 78–80: with an allowlist that admits every https URI, the registration validator
/// alone refuses each trick (the reason is never the allowlist).
#[tokio::test]
async fn registration_tricks_are_refused_by_the_validator_itself() {
    let (app, _dir) = TestApp::spawn_configured(&|c| {
        // Every https host, by first character (a single `https://*` is refused at
        // boot), so that whatever is refused here is refused by the validator alone.
        let mut allow: Vec<String> = (b'!'..=b'~')
            .map(|c| format!("https://{}*", c as char))
            .collect();
        allow.extend(["http://127.0.0.1:*", "http://localhost:*", "app://*"].map(String::from));
        c["redirectUriAllowlist"] = json!(allow)
    })
    .await;
    for uri in [
        "https://claude.ai@evil.com/cb",
        "https://evil.com\\@claude.ai/cb",
        "https://claude.ai\\@evil.com/cb",
        "https://claude.ai%2F@evil.com/cb",
        "https://*.example.com/cb",
        "https://example.com/*",
        "https://example.com/cb#",
        "https://example.com/cb#frag",
        "https://EXAMPLE.com/cb",
        "https://example.com:443/cb",
        "https://example.com",
        "https://example.com/a/../cb",
        "https://example.com/a/./cb",
        "https://example.com/c\tb",
        "https://example.com/c\nb",
        "https://exa\u{0}mple.com/cb",
        "https:example.com/cb",
        "https:///example.com/cb",
        "https://xn--80ak6aa92e.com/cb\u{202E}",
        "https://аpple.com/cb",
        "https://example.com/c b",
        "https://[::1/cb",
        "https://example.com:99999/cb",
        "http://127.0.0.1:3000/cb#",
        "http://127.1:3000/cb",
        "http://0x7f000001:3000/cb",
        "http://localhost.:3000/cb",
        "app:callback",
    ] {
        let response = app.register_raw(json!({"redirect_uris": [uri]})).await;
        let description = assert_oauth_error(response, 400, "invalid_redirect_uri").await;
        assert!(
            description.starts_with("redirect_uri rejected: "),
            "{uri:?}: {description}"
        );
        assert!(
            !description.contains("redirectUriAllowlist"),
            "{uri:?}: {description}"
        );
    }
    assert!(app.state.store.clients().await.unwrap().is_empty());
    // The same allowlist still admits clean URIs.
    app.register_uris(&["https://example.com/cb", "app://callback"])
        .await;
    app.stop().await;
}

// Registration, differentially against the `url` crate: whatever the validator accepts is
// canonical and safe.

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

proptest! {
    #![proptest_config(proptest_cases(2048))]

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
}

#[tokio::test]
async fn syntactically_valid_uri_outside_the_allowlist_is_rejected() {
    let (app, _dir) = TestApp::spawn().await;
    for uri in [
        "https://evil.example/cb",
        "https://claude.ai/api/mcp/auth_callback2",
        "https://claude.ai/api/mcp/auth_callback?x=1",
        "https://chatgpt.com/other",
        "cursor://anysphere.cursor-mcp/oauth/other",
        "vscode://saoudrizwan.claude-dev/mcp-auth/callback",
    ] {
        let description = assert_rejected(
            &app,
            json!({"redirect_uris": [uri]}),
            "invalid_redirect_uri",
        )
        .await;
        assert!(
            description.starts_with(&format!("redirect_uri rejected: {uri}")),
            "{uri}: {description}"
        );
    }
    assert_eq!(client_count(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn non_json_content_type_is_invalid_client_metadata() {
    let (app, _dir) = TestApp::spawn().await;
    let body = json!({"redirect_uris": [REDIRECT]}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        None,
    ] {
        let mut request = app.http.post(app.url("/oauth/register")).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        assert_oauth_error(
            request.send().await.unwrap(),
            400,
            "invalid_client_metadata",
        )
        .await;
    }
    // A form-encoded registration is not accepted either.
    let response = app
        .http
        .post(app.url("/oauth/register"))
        .form(&[("redirect_uris", REDIRECT)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 400, "invalid_client_metadata").await;
    // With a charset parameter it is still JSON.
    let response = app
        .http
        .post(app.url("/oauth/register"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(client_count(&app).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_is_invalid_client_metadata() {
    let (app, _dir) = TestApp::spawn().await;
    for body in [
        "{\"redirect_uris\": [",
        "not json",
        "",
        "[]",
        "\"http://127.0.0.1:33418/callback\"",
        "{\"redirect_uris\": \"http://127.0.0.1:33418/callback\"}",
        "{\"redirect_uris\": [42]}",
        "{\"redirect_uris\": [\"http://127.0.0.1:33418/callback\"], \"client_name\": 7}",
    ] {
        assert_oauth_error(
            register_text(&app, body).await,
            400,
            "invalid_client_metadata",
        )
        .await;
    }
    assert_eq!(client_count(&app).await, 0);
    app.stop().await;
}

/// Row 83: a repeated JSON member is refused rather than resolved to one of its values.
#[tokio::test]
async fn a_duplicate_json_member_is_invalid_client_metadata() {
    let (app, _dir) = TestApp::spawn().await;
    for body in [
        format!(
            r#"{{"redirect_uris": ["{REDIRECT}"], "redirect_uris": ["http://127.0.0.1:1/evil"]}}"#
        ),
        format!(
            r#"{{"redirect_uris": ["{REDIRECT}"], "token_endpoint_auth_method": "none", "token_endpoint_auth_method": "client_secret_post"}}"#
        ),
        format!(r#"{{"redirect_uris": ["{REDIRECT}"], "client_name": "a", "client_name": "b"}}"#),
    ] {
        assert_oauth_error(
            register_text(&app, body).await,
            400,
            "invalid_client_metadata",
        )
        .await;
    }
    assert!(app.state.store.clients().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn missing_or_empty_redirect_uris_are_rejected() {
    let (app, _dir) = TestApp::spawn().await;
    for body in [
        json!({"client_name": "No URIs"}),
        json!({"client_name": "Null URIs", "redirect_uris": null}),
        json!({"client_name": "Empty URIs", "redirect_uris": []}),
    ] {
        let response = app.register_raw(body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"] == "invalid_redirect_uri" || error["error"] == "invalid_client_metadata",
            "{body}: {error}"
        );
    }
    assert_eq!(client_count(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn unsupported_grant_types_response_types_and_auth_methods_are_invalid_client_metadata() {
    let (app, _dir) = TestApp::spawn().await;
    for extra in [
        json!({"grant_types": ["client_credentials"]}),
        json!({"grant_types": ["authorization_code", "implicit"]}),
        json!({"grant_types": ["password"]}),
        json!({"grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"]}),
        json!({"grant_types": ["refresh_token"]}),
        json!({"grant_types": []}),
        json!({"response_types": ["token"]}),
        json!({"response_types": ["code", "token"]}),
        json!({"response_types": ["id_token"]}),
        json!({"response_types": []}),
        json!({"token_endpoint_auth_method": "private_key_jwt"}),
        json!({"token_endpoint_auth_method": "client_secret_jwt"}),
    ] {
        let mut body = json!({"client_name": "Odd client", "redirect_uris": [REDIRECT]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        assert_rejected(&app, body, "invalid_client_metadata").await;
    }
    assert_eq!(client_count(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn more_than_ten_redirect_uris_are_rejected() {
    let (app, _dir) = TestApp::spawn().await;
    let ten: Vec<String> = (0..10)
        .map(|i| format!("http://127.0.0.1:{}/callback", 3000 + i))
        .collect();
    registered(&app, json!({"redirect_uris": ten})).await;
    let eleven: Vec<String> = (0..11)
        .map(|i| format!("http://127.0.0.1:{}/callback", 3000 + i))
        .collect();
    let response = app.register_raw(json!({"redirect_uris": eleven})).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    // SPEC §6 does not name the code; the catalogue (row 75) suggests invalid_client_metadata.
    assert!(
        error["error"] == "invalid_redirect_uri" || error["error"] == "invalid_client_metadata",
        "{error}"
    );
    assert_eq!(client_count(&app).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn body_over_16_kib_is_413_and_creates_nothing() {
    let (app, _dir) = TestApp::spawn().await;
    let body = json!({"client_name": "x".repeat(17 * 1024), "redirect_uris": [REDIRECT]});
    let response = app.register_raw(body).await;
    assert_eq!(response.status(), 413);
    assert_eq!(client_count(&app).await, 0);
    // Just under the limit is fine (the name is capped, not refused).
    let body = json!({"client_name": "y".repeat(15 * 1024), "redirect_uris": [REDIRECT]});
    let accepted = registered(&app, body).await;
    assert!(accepted["client_name"].as_str().unwrap().len() <= 256);
    app.stop().await;
}

#[tokio::test]
async fn rejected_registrations_create_no_client() {
    let (app, _dir) = TestApp::spawn().await;
    assert_rejected(
        &app,
        json!({"redirect_uris": ["javascript:alert(1)"]}),
        "invalid_redirect_uri",
    )
    .await;
    assert_rejected(
        &app,
        json!({"redirect_uris": ["https://evil.example/cb"]}),
        "invalid_redirect_uri",
    )
    .await;
    assert_rejected(
        &app,
        json!({"redirect_uris": [REDIRECT], "grant_types": ["password"]}),
        "invalid_client_metadata",
    )
    .await;
    assert_eq!(client_count(&app).await, 0);
    let client_id = app.register_public(REDIRECT).await;
    let clients = app.state.store.clients().await.unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].client_id, client_id);
    app.stop().await;
}

#[tokio::test]
async fn application_type_is_echoed_inferred_when_absent_and_stored() {
    let (app, _dir) = TestApp::spawn().await;
    for (body, expected) in [
        // Claude Code, mcp-remote, VS Code send native with a loopback URI.
        (
            json!({"redirect_uris": [REDIRECT], "application_type": "native"}),
            "native",
        ),
        // Absent: loopback or a private-use scheme means an app on the device.
        (json!({"redirect_uris": [REDIRECT]}), "native"),
        (json!({"redirect_uris": [CURSOR_APP]}), "native"),
        (
            json!({"redirect_uris": [CLAUDE, CURSOR_LOOPBACK]}),
            "native",
        ),
        (json!({"redirect_uris": [CLAUDE]}), "web"),
        // Stated, it is kept as stated.
        (
            json!({"redirect_uris": [CLAUDE], "application_type": "native"}),
            "native",
        ),
    ] {
        let response = registered(&app, body.clone()).await;
        assert_eq!(response["application_type"], expected, "{body}");
        let client_id = response["client_id"].as_str().unwrap();
        let stored = app.state.store.client(client_id).await.unwrap().unwrap();
        assert_eq!(
            stored.application_type.map(|t| t.as_str()),
            Some(expected),
            "{body}"
        );
    }
    let description = assert_rejected(
        &app,
        json!({"redirect_uris": [REDIRECT], "application_type": "desktop"}),
        "invalid_client_metadata",
    )
    .await;
    assert!(description.contains("application_type"), "{description}");
    app.stop().await;
}
