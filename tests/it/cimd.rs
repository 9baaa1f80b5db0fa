//! Client ID Metadata Documents (SPEC §12) against a real HTTPS document server on loopback
//! (`doc_server.rs`, its CA made at test time): the document shapes of real clients from
//! sign-in to refresh, a refusal per rule, caching and stale copies counted by hits on the
//! server, the SSRF guard, `private_key_jwt` with ES256 and EdDSA, and consent.

use std::time::Duration;

use serde_json::{Value, json};

use crate::doc_server::*;
use crate::helpers::*;

/// mcp-authd trusting `docs`'s CA and allowed to fetch from loopback, with `extra` applied.
async fn spawn(docs: &DocServer, extra: &dyn Fn(&mut Value)) -> (TestApp, tempfile::TempDir) {
    let configure = |section: &mut Value| {
        docs.configure(section);
        extra(section);
    };
    TestApp::spawn_configured(&configure).await
}

/// `GET /oauth/authorize` as `user` for `client_id` and `redirect`.
async fn authorize(
    app: &TestApp,
    user: &str,
    client_id: &str,
    redirect: &str,
) -> reqwest::Response {
    app.authorize_as(Some(user), &TestApp::authorize_params(client_id, redirect))
        .await
}

/// Approves the consent page `page` as `user`; returns the code sent to `redirect`.
async fn approve(app: &TestApp, page: &str, user: &str, redirect: &str) -> String {
    let response = app.answer_consent(page, user, "approve").await;
    assert_eq!(response.status(), 303);
    code_from(app, &response, redirect)
}

fn code_from(app: &TestApp, response: &reqwest::Response, redirect: &str) -> String {
    let location = location(response);
    assert!(location.starts_with(&format!("{redirect}?")), "{location}");
    let query = query_of(&location);
    assert_eq!(query.get("iss"), Some(&app.base));
    assert_eq!(query.get("state").map(String::as_str), Some("xyz"));
    query["code"].clone()
}

/// Asserts an error page with `status` that says `reason`, and an audit event for `client_id`.
async fn assert_refused(response: reqwest::Response, status: u16, client_id: &str, reason: &str) {
    let page = assert_page(response, status).await;
    assert!(
        page.contains(reason),
        "{client_id}: expected {reason:?} in\n{page}"
    );
    let events = audit_lines(&format!("client_id={client_id} "));
    assert!(
        events
            .iter()
            .any(|l| l.contains("event=\"client_metadata_rejected\"") && l.contains("reason=")),
        "{client_id}: no client_metadata_rejected audit event in {events:?}"
    );
}

#[tokio::test]
async fn metadata_advertises_documents_and_private_key_jwt_unless_disabled() {
    let (app, _dir) = TestApp::spawn().await;
    let doc: Value = app.metadata().await;
    assert_eq!(doc["client_id_metadata_document_supported"], true);
    let methods = doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    // claude.ai uses its document only when `none` is listed beside the flag.
    assert!(methods.contains(&json!("none")) && methods.contains(&json!("private_key_jwt")));
    assert_eq!(
        doc["token_endpoint_auth_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256"])
    );
    assert!(doc["registration_endpoint"].is_string(), "DCR stays on");
    app.stop().await;

    let docs = DocServer::start().await;
    let claude_code = docs.url("/oauth/claude-code-client-metadata");
    docs.serve(
        "/oauth/claude-code-client-metadata",
        Reply::json(&fixture("claude_code.json", &claude_code, "")),
    );
    let (app, _dir) = spawn(&docs, &|c| {
        c["clientMetadataDocuments"]["enabled"] = json!(false)
    })
    .await;
    let doc: Value = app.metadata().await;
    assert!(
        doc.get("client_id_metadata_document_supported").is_none(),
        "{doc}"
    );
    assert!(!doc.to_string().contains("private_key_jwt"), "{doc}");
    // Disabled: a URL client_id is just an unknown client, and nothing is fetched.
    let page = assert_page(
        authorize(&app, USER, &claude_code, "http://localhost:50000/callback").await,
        400,
    )
    .await;
    assert!(page.contains("unknown client_id"), "{page}");
    assert_eq!(docs.hits("/oauth/claude-code-client-metadata"), 0);
    app.stop().await;
}

#[tokio::test]
async fn real_client_documents_sign_in_refresh_and_are_approved_once_per_user() {
    let docs = DocServer::start().await;
    let (app, _dir) = spawn(&docs, &|_| {}).await;
    // (fixture, path as the client publishes it, content type, redirect URI the client
    // really uses, the host the consent page names)
    let cases = [
        // Listed as http://localhost/callback, no port; listens on a random one.
        (
            "claude_code.json",
            "/oauth/claude-code-client-metadata",
            "application/json",
            "http://localhost:54321/callback",
            "localhost",
        ),
        (
            "claude_ai.json",
            "/oauth/mcp-oauth-client-metadata",
            "application/json",
            "https://claude.ai/api/mcp/auth_callback",
            "claude.ai",
        ),
        // Lists the device_code grant, which is ignored; port-shifted loopback.
        (
            "vscode.json",
            "/oauth/client-metadata.json",
            "application/json",
            "http://127.0.0.1:61234/",
            "127.0.0.1",
        ),
        // Declares :33418, binds another port; served as text/plain.
        (
            "copilot_cli.json",
            "/copilot-cli/client-metadata.json",
            "text/plain; charset=utf-8",
            "http://127.0.0.1:50123/",
            "127.0.0.1",
        ),
    ];
    for (name, path, content_type, redirect, redirect_host) in cases {
        let client_id = docs.url(path);
        let document = fixture(name, &client_id, "");
        docs.serve(
            path,
            Reply::body(200, content_type, document.to_string().into_bytes()),
        );

        let response = authorize(&app, USER, &client_id, redirect).await;
        assert_eq!(response.status(), 200, "{name}: a consent page");
        let page = response.text().await.unwrap();
        let client_name = document["client_name"].as_str().unwrap();
        for shown in [
            format!("{client_name} <em>(as stated by localhost)</em>"),
            "<dt>Verified origin</dt><dd>localhost</dd>".to_string(),
            format!("<dt>Redirects to</dt><dd>{redirect_host}</dd>"),
            "is its verified origin".to_string(),
        ] {
            assert!(
                page.contains(&shown),
                "{name}: {shown:?} missing from\n{page}"
            );
        }
        assert!(!page.contains("unverified"), "{name}");
        let code = approve(&app, &page, USER, redirect).await;

        let response = app.exchange(&client_id, &code, redirect).await;
        assert_eq!(response.status(), 200, "{name}");
        let tokens: Value = response.json().await.unwrap();
        let claims = mcp_authd::verify_access_token(
            tokens["access_token"].as_str().unwrap(),
            &app.expectations(),
        )
        .unwrap();
        assert_eq!(claims.client_id, client_id);
        let response = app
            .refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(response.status(), 200, "{name}: refresh");

        // Approved once per user × client_id URL.
        let again = authorize(&app, USER, &client_id, redirect).await;
        assert_eq!(again.status(), 302, "{name}: the approval is remembered");
        code_from(&app, &again, redirect);
        let other = authorize(&app, "bob@example.com", &client_id, redirect).await;
        assert_eq!(other.status(), 200, "{name}: another user is asked");
    }
    // Document clients are not registered clients.
    assert!(app.state.store.clients().await.unwrap().is_empty());
    app.stop().await;
}

/// A minimal valid public-client document for `url`.
fn valid(url: &str) -> Value {
    json!({"client_id": url, "redirect_uris": ["http://localhost/callback"]})
}

/// [`valid`] with `key` set to `value`.
fn with(url: &str, key: &str, value: Value) -> Reply {
    let mut doc = valid(url);
    doc[key] = value;
    Reply::json(&doc)
}

/// [`valid`], padded past the default `maxBytes` with a member nobody reads.
fn padded(url: &str) -> Reply {
    let mut doc = valid(url);
    doc["software_statement"] = json!("x".repeat(6000));
    Reply::json(&doc)
}

#[tokio::test]
async fn every_document_rule_refuses_with_a_page_and_an_audit_event() {
    capture_audit();
    let docs = DocServer::start().await;
    let (app, _dir) = spawn(&docs, &|c| {
        c["clientMetadataDocuments"]["timeoutMs"] = json!(1000)
    })
    .await;
    let redirect = "http://localhost:50000/callback";
    type Make = dyn Fn(&str) -> Reply;
    let cases: Vec<(&str, Box<Make>, u16, &str)> = vec![
        (
            "/mismatch",
            Box::new(move |u| with(u, "client_id", json!(format!("{u}/other")))),
            400,
            "is not its URL",
        ),
        (
            "/no-redirects",
            Box::new(move |u| with(u, "redirect_uris", json!([]))),
            400,
            "lists no redirect_uris",
        ),
        (
            "/bad-redirect",
            Box::new(move |u| with(u, "redirect_uris", json!(["http://app.example/cb"]))),
            400,
            "http is only allowed",
        ),
        (
            "/fragment-redirect",
            Box::new(move |u| with(u, "redirect_uris", json!(["http://localhost/cb#x"]))),
            400,
            "fragments are not allowed",
        ),
        (
            "/unlisted-redirect",
            Box::new(move |u| with(u, "redirect_uris", json!(["https://evil.example/cb"]))),
            400,
            "redirectUriAllowlist",
        ),
        (
            "/secret",
            Box::new(move |u| with(u, "token_endpoint_auth_method", json!("client_secret_post"))),
            400,
            "client_secret_post is not accepted",
        ),
        (
            "/no-keys",
            Box::new(move |u| with(u, "token_endpoint_auth_method", json!("private_key_jwt"))),
            400,
            "needs jwks or jwks_uri",
        ),
        (
            "/array",
            Box::new(|_| Reply::json(&json!([1]))),
            400,
            "not a JSON object",
        ),
        (
            "/html",
            Box::new(|_| Reply::body(200, "text/html", b"<html>sign in</html>".to_vec())),
            400,
            "not a JSON object",
        ),
        (
            "/too-large",
            Box::new(padded),
            400,
            "larger than 5120 bytes",
        ),
        (
            "/moved",
            Box::new(|_| Reply::redirect(302, "https://localhost/elsewhere")),
            400,
            "not followed",
        ),
        (
            "/missing",
            Box::new(|_| Reply::body(404, "text/plain", Vec::new())),
            502,
            "HTTP 404",
        ),
        (
            "/slow",
            Box::new(move |u| Reply::json(&valid(u)).delayed(Duration::from_secs(3))),
            502,
            "within 1000 ms",
        ),
    ];
    for (path, make, status, reason) in cases {
        let client_id = docs.url(path);
        docs.serve(path, make(&client_id));
        let response = authorize(&app, USER, &client_id, redirect).await;
        assert_refused(response, status, &client_id, reason).await;
    }
    // Rules on the URL itself: nothing is fetched.
    let origin = docs.url("");
    for (client_id, reason) in [
        (format!("{origin}/"), "must have a path"),
        (format!("{origin}/doc#frag"), "must not contain a fragment"),
        (
            format!("https://user@localhost:{}/doc", docs.port),
            "must not contain userinfo",
        ),
        (
            format!("https://LOCALHOST:{}/doc", docs.port),
            "not in canonical form",
        ),
        (format!("{origin}/a/../doc"), "not in canonical form"),
    ] {
        let response = authorize(&app, USER, &client_id, redirect).await;
        assert_refused(response, 400, &client_id, reason).await;
    }
    assert_eq!(docs.hits("/doc"), 0);
    // http is never fetched: such a client_id is no document URL, just unknown.
    let page = assert_page(
        authorize(
            &app,
            USER,
            &format!("http://localhost:{}/mismatch", docs.port),
            redirect,
        )
        .await,
        400,
    )
    .await;
    assert!(page.contains("unknown client_id"), "{page}");

    // The token endpoint answers 401 invalid_client for an unusable document.
    let client_id = docs.url("/mismatch");
    let response = app
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &client_id),
            ("code", "x"),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .await;
    let description = assert_oauth_error(response, 401, "invalid_client").await;
    assert!(description.contains("is not its URL"), "{description}");
    app.stop().await;
}

#[tokio::test]
async fn allowed_hosts_restrict_where_documents_come_from() {
    capture_audit();
    let docs = DocServer::start().await;
    let path = "/oauth/claude-code-client-metadata";
    let client_id = docs.url(path);
    docs.serve(
        path,
        Reply::json(&fixture("claude_code.json", &client_id, "")),
    );
    let (app, _dir) = spawn(&docs, &|c| {
        c["clientMetadataDocuments"]["allowedHosts"] = json!(["claude.ai", "*.example.com"])
    })
    .await;
    let response = authorize(&app, USER, &client_id, "http://localhost:50000/callback").await;
    assert_refused(response, 400, &client_id, "(allowedHosts)").await;
    assert_eq!(
        docs.hits(path),
        0,
        "a host outside allowedHosts is never fetched"
    );
    app.stop().await;

    let (app, _dir) = spawn(&docs, &|c| {
        c["clientMetadataDocuments"]["allowedHosts"] = json!(["localhost"])
    })
    .await;
    let response = authorize(&app, USER, &client_id, "http://localhost:50000/callback").await;
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn documents_are_cached_per_cache_control_and_served_stale_while_unreachable() {
    capture_audit();
    let docs = DocServer::start().await;
    let (app, _dir) = spawn(&docs, &|c| {
        c["clientMetadataDocuments"]["maxCacheSeconds"] = json!(3600);
        c["clientMetadataDocuments"]["staleSeconds"] = json!(600);
    })
    .await;
    let redirect = "http://localhost:50000/callback";
    let serve = |path: &str, cache: Option<&str>| {
        let client_id = docs.url(path);
        let reply = Reply::json(&fixture("claude_code.json", &client_id, ""));
        docs.serve(
            path,
            match cache {
                Some(value) => reply.cache(value),
                None => reply,
            },
        );
        client_id
    };
    let visit = |client_id: String| {
        let app = &app;
        async move {
            let response = authorize(app, USER, &client_id, redirect).await;
            response.status()
        }
    };

    // max-age=60: one fetch for a minute.
    let a = serve("/a", Some("public, max-age=60"));
    // No Cache-Control: five minutes.
    let b = serve("/b", None);
    // max-age beyond maxCacheSeconds: capped at an hour.
    let c = serve("/c", Some("max-age=999999"));
    // no-store: every use fetches.
    let d = serve("/d", Some("no-store"));
    for id in [&a, &b, &c, &d] {
        assert_eq!(visit(id.clone()).await, 200);
        assert_eq!(visit(id.clone()).await, 200);
    }
    assert_eq!(
        [
            docs.hits("/a"),
            docs.hits("/b"),
            docs.hits("/c"),
            docs.hits("/d")
        ],
        [1, 1, 1, 2]
    );
    app.clock.advance(61);
    for id in [&a, &b, &c] {
        visit(id.clone()).await;
    }
    assert_eq!(
        [docs.hits("/a"), docs.hits("/b"), docs.hits("/c")],
        [2, 1, 1]
    );
    app.clock.advance(240); // 301 s after the first fetch
    for id in [&b, &c] {
        visit(id.clone()).await;
    }
    assert_eq!([docs.hits("/b"), docs.hits("/c")], [2, 1]);
    app.clock.advance(3300); // 3601 s
    visit(c.clone()).await;
    assert_eq!(docs.hits("/c"), 2);

    // Stale: a signed-in client keeps refreshing while its document host is down, for up to
    // staleSeconds past the copy's freshness; then invalid_client.
    let e = serve("/e", Some("max-age=60"));
    let response = authorize(&app, USER, &e, redirect).await;
    let page = response.text().await.unwrap();
    let code = approve(&app, &page, USER, redirect).await;
    let tokens: Value = app
        .exchange(&e, &code, redirect)
        .await
        .json()
        .await
        .unwrap();
    let mut refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(docs.hits("/e"), 1);
    docs.serve("/e", Reply::body(503, "text/plain", Vec::new()));
    app.clock.advance(61);
    let response = app.refresh(&e, &refresh_token).await;
    assert_eq!(response.status(), 200, "served from the stale copy");
    refresh_token = response.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        visit(e.clone()).await,
        302,
        "authorize uses the stale copy too"
    );
    assert_eq!(docs.hits("/e"), 3, "each use tries the host again");
    app.clock.advance(600);
    let response = app.refresh(&e, &refresh_token).await;
    let description = assert_oauth_error(response, 401, "invalid_client").await;
    assert!(description.contains("HTTP 503"), "{description}");
    let response = authorize(&app, USER, &e, redirect).await;
    assert_refused(response, 502, &e, "HTTP 503").await;

    // A refetch that returns an invalid document replaces the copy at once (no stale use).
    let f = serve("/f", Some("max-age=60"));
    assert_eq!(visit(f.clone()).await, 200);
    docs.serve(
        "/f",
        Reply::json(&json!({"client_id": f, "redirect_uris": []})),
    );
    app.clock.advance(61);
    let response = authorize(&app, USER, &f, redirect).await;
    assert_refused(response, 400, &f, "lists no redirect_uris").await;
    app.stop().await;
}

#[tokio::test]
async fn the_ssrf_guard_refuses_loopback_and_private_addresses_without_the_test_option() {
    capture_audit();
    let docs = DocServer::start().await;
    let port = docs.port;
    let ca_file = docs.ca_file.clone();
    let configure = move |section: &mut Value| {
        section["clientMetadataDocuments"] = json!({"caFile": ca_file});
    };
    let app = TestApp::spawn_with(Options {
        configure: &configure,
        ..Default::default()
    })
    .await;
    for (client_id, reason) in [
        (
            format!("https://127.0.0.1:{port}/ssrf"),
            "127.0.0.1 is not a public address",
        ),
        // A name that resolves to loopback: refused by the resolver, not connected to.
        (
            format!("https://localhost:{port}/ssrf"),
            "localhost resolves to no public address",
        ),
        (
            format!("https://[::1]:{port}/ssrf"),
            "::1 is not a public address",
        ),
        (
            format!("https://[::ffff:7f00:1]:{port}/ssrf"),
            "::ffff:127.0.0.1 is not a public address",
        ),
        // A private IP literal is refused before any connection is attempted.
        (
            "https://10.0.0.1/ssrf".to_string(),
            "10.0.0.1 is not a public address",
        ),
    ] {
        docs.serve(
            "/ssrf",
            Reply::json(&fixture("claude_code.json", &client_id, "")),
        );
        let response = authorize(&app, USER, &client_id, "http://localhost:50000/callback").await;
        assert_refused(response, 400, &client_id, reason).await;
    }
    assert_eq!(
        docs.hits("/ssrf"),
        0,
        "no connection reached the document server"
    );
    app.stop().await;
}

/// The form of a code exchange authenticated by `assertion` (and `client_id`, if given).
fn assertion_form<'a>(
    client_id: Option<&'a str>,
    code: &'a str,
    redirect: &'a str,
    assertion: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    if let Some(id) = client_id {
        form.push(("client_id", id));
    }
    form
}

#[tokio::test]
async fn private_key_jwt_clients_authenticate_with_single_use_es256_and_eddsa_assertions() {
    capture_audit();
    let docs = DocServer::start().await;
    let (app, _dir) = spawn(&docs, &|_| {}).await;
    let now = || mcp_authd::clock::Clock::now(app.clock.as_ref());
    let token_endpoint = app.url("/oauth/token");
    let claims = |client_id: &str, aud: &str, exp: u64, jti: &str| json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": exp, "iat": now(), "jti": jti});

    // ChatGPT's shape: ES256 keys at a jwks_uri.
    let redirect = "https://chatgpt.com/connector_platform_oauth_redirect";
    let chatgpt = docs.url("/oauth/chatgpt/client-metadata.json");
    let key = ClientKey::es256("k1");
    docs.serve("/oauth/chatgpt/jwks.json", Reply::json(&key.jwks()));
    docs.serve(
        "/oauth/chatgpt/client-metadata.json",
        Reply::json(&fixture(
            "chatgpt.json",
            &chatgpt,
            &docs.url("/oauth/chatgpt/jwks.json"),
        )),
    );
    let page = authorize(&app, USER, &chatgpt, redirect)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("ChatGPT <em>(as stated by localhost)</em>"),
        "{page}"
    );
    let code = approve(&app, &page, USER, redirect).await;

    let other_key = ClientKey::es256("k1");
    let refusals: Vec<(String, &str)> = vec![
        (key.sign(&claims(&chatgpt, "https://other.example/token", now() + 60, "j-aud")), "aud must be the token endpoint"),
        (key.sign(&claims(&chatgpt, &token_endpoint, now() - 120, "j-old")), "has expired"),
        (key.sign(&claims(&chatgpt, &token_endpoint, now() + 3600, "j-far")), "more than 5 minutes ahead"),
        (key.sign(&json!({"iss": chatgpt, "sub": "someone-else", "aud": token_endpoint, "exp": now() + 60, "jti": "j-sub"})), "iss and sub"),
        (other_key.sign(&claims(&chatgpt, &token_endpoint, now() + 60, "j-key")), "signature does not verify"),
        (ClientKey::es256("k9").sign(&claims(&chatgpt, &token_endpoint, now() + 60, "j-kid")), "no key in the client"),
        (ClientKey::ed25519("k1").sign(&claims(&chatgpt, &token_endpoint, now() + 60, "j-alg")), "no key in the client"),
    ];
    for (assertion, reason) in refusals {
        let response = app
            .token(&assertion_form(Some(&chatgpt), &code, redirect, &assertion))
            .await;
        let description = assert_oauth_error(response, 401, "invalid_client").await;
        assert!(description.contains(reason), "{reason}: {description}");
    }
    // Without an assertion, or with a secret beside it.
    let response = app.exchange(&chatgpt, &code, redirect).await;
    let description = assert_oauth_error(response, 401, "invalid_client").await;
    assert!(
        description.contains("must authenticate with a private_key_jwt"),
        "{description}"
    );
    let good = key.sign(&claims(&chatgpt, &token_endpoint, now() + 120, "j-1"));
    let mut form = assertion_form(Some(&chatgpt), &code, redirect, &good);
    form.push(("client_secret", "guess"));
    assert_oauth_error(app.token(&form).await, 400, "invalid_request").await;

    // The refused requests did not burn the code or the assertion.
    let response = app
        .token(&assertion_form(Some(&chatgpt), &code, redirect, &good))
        .await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let refresh = |assertion: String| {
        let app = &app;
        let chatgpt = chatgpt.clone();
        let refresh_token = refresh_token.to_string();
        async move {
            app.token(&[
                ("grant_type", "refresh_token"),
                ("client_id", &chatgpt),
                ("refresh_token", &refresh_token),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ])
            .await
        }
    };
    // Replayed jti: refused.
    let description = assert_oauth_error(refresh(good.clone()).await, 401, "invalid_client").await;
    assert!(description.contains("already used"), "{description}");
    // A fresh assertion whose aud is the issuer works for the refresh.
    let response = refresh(key.sign(&claims(&chatgpt, &app.base, now() + 60, "j-2"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        docs.hits("/oauth/chatgpt/jwks.json"),
        1,
        "the JWKS is cached"
    );

    // Key rotation: an unknown kid refetches the jwks_uri, at most once a minute.
    let rotated = ClientKey::es256("k2");
    docs.serve("/oauth/chatgpt/jwks.json", Reply::json(&rotated.jwks()));
    let page = authorize(&app, "bob@example.com", &chatgpt, redirect)
        .await
        .text()
        .await
        .unwrap();
    let code = approve(&app, &page, "bob@example.com", redirect).await;
    let new_key_assertion = rotated.sign(&claims(&chatgpt, &token_endpoint, now() + 60, "j-3"));
    let response = app
        .token(&assertion_form(
            Some(&chatgpt),
            &code,
            redirect,
            &new_key_assertion,
        ))
        .await;
    assert_oauth_error(response, 401, "invalid_client").await;
    assert_eq!(
        docs.hits("/oauth/chatgpt/jwks.json"),
        1,
        "no refetch within a minute"
    );
    app.clock.advance(61);
    // (a fresh code: the first one has expired meanwhile)
    let response = authorize(&app, "bob@example.com", &chatgpt, redirect).await;
    let code = code_from(&app, &response, redirect);
    let new_key_assertion = rotated.sign(&claims(&chatgpt, &token_endpoint, now() + 60, "j-4"));
    let response = app
        .token(&assertion_form(
            Some(&chatgpt),
            &code,
            redirect,
            &new_key_assertion,
        ))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(docs.hits("/oauth/chatgpt/jwks.json"), 2);

    // EdDSA with the keys inline, the client named only by the assertion's iss.
    let redirect = "http://127.0.0.1:40000/cb";
    let agent = docs.url("/agent/client.json");
    let ed = ClientKey::ed25519("ed-1");
    docs.serve(
        "/agent/client.json",
        Reply::json(&json!({
            "client_id": agent, "client_name": "Agent", "redirect_uris": ["http://127.0.0.1/cb"],
            "token_endpoint_auth_method": "private_key_jwt", "jwks": ed.jwks()
        })),
    );
    let page = authorize(&app, USER, &agent, redirect)
        .await
        .text()
        .await
        .unwrap();
    let code = approve(&app, &page, USER, redirect).await;
    let assertion = ed.sign(&claims(&agent, &token_endpoint, now() + 300, "ed-j-1"));
    let response = app
        .token(&assertion_form(None, &code, redirect, &assertion))
        .await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let response = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ])
        .await;
    let description = assert_oauth_error(response, 401, "invalid_client").await;
    assert!(description.contains("already used"), "{description}");
    // A public document client may not present an assertion it never declared.
    let claude = docs.url("/claude");
    docs.serve(
        "/claude",
        Reply::json(&fixture("claude_code.json", &claude, "")),
    );
    let response = app
        .token(&assertion_form(
            Some(&claude),
            "x",
            "http://localhost:1/callback",
            &ed.sign(&claims(&claude, &token_endpoint, now() + 60, "c-1")),
        ))
        .await;
    let description = assert_oauth_error(response, 401, "invalid_client").await;
    assert!(
        description.contains("does not declare private_key_jwt"),
        "{description}"
    );
    app.stop().await;
}

#[tokio::test]
async fn document_clients_are_not_stored_and_do_not_count_against_max_dynamic_clients() {
    let docs = DocServer::start().await;
    let (app, _dir) = spawn(&docs, &|c| c["maxDynamicClients"] = json!(1)).await;
    let path = "/oauth/claude-code-client-metadata";
    let client_id = docs.url(path);
    docs.serve(
        path,
        Reply::json(&fixture("claude_code.json", &client_id, "")),
    );
    let redirect = "http://localhost:50000/callback";
    let page = authorize(&app, USER, &client_id, redirect)
        .await
        .text()
        .await
        .unwrap();
    let code = approve(&app, &page, USER, redirect).await;
    assert_eq!(
        app.exchange(&client_id, &code, redirect).await.status(),
        200
    );
    // The one dynamic slot is still free.
    let dcr = app.register_public(REDIRECT).await;
    let clients = app.state.store.clients().await.unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].client_id, dcr);
    // A self-registered client keeps its "unverified" marking.
    let page = app
        .authorize_as(Some(USER), &TestApp::authorize_params(&dcr, REDIRECT))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<em>(unverified)</em>") && !page.contains("Verified origin"),
        "{page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_requested_loopback_uri_must_still_match_the_allowlist() {
    let docs = DocServer::start().await;
    // Only port 3000 on localhost: the document's portless URI can match it, other ports not.
    let (app, _dir) = spawn(&docs, &|c| {
        c["redirectUriAllowlist"] = json!(["http://localhost:3000/*"]);
    })
    .await;
    let path = "/oauth/claude-code-client-metadata";
    let client_id = docs.url(path);
    let mut document = fixture("claude_code.json", &client_id, "");
    document["redirect_uris"] = json!(["http://localhost/callback"]);
    docs.serve(path, Reply::json(&document));
    let page = assert_page(
        authorize(&app, USER, &client_id, "http://localhost:54321/callback").await,
        400,
    )
    .await;
    assert!(page.contains("redirectUriAllowlist"), "{page}");
    let response = authorize(&app, USER, &client_id, "http://localhost:3000/callback").await;
    assert_eq!(response.status(), 200);
    app.stop().await;
}
