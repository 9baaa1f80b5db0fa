//! The token endpoint: client authentication, the authorization_code grant (single use, bound
//! to client, redirect URI, PKCE verifier; failed checks do not burn the code), the
//! refresh_token grant (scope, resource, client binding, expiry) and revocation.

// The helpers in this file run only inside tests, where a failed step should panic.

use serde_json::{Value, json};

use crate::helpers::*;

/// POST /oauth/token with `form`, optionally with HTTP Basic credentials.
async fn post_token(
    app: &TestApp,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app.http.post(app.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    request.send().await.unwrap()
}

/// Registers a confidential client with `method`; returns (client_id, client_secret).
async fn register_confidential(app: &TestApp, method: &str) -> (String, String) {
    let response = app
        .register_raw(json!({"client_name": "Confidential", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": method}))
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (
        body["client_id"].as_str().unwrap().to_string(),
        body["client_secret"].as_str().unwrap().to_string(),
    )
}

/// Runs authorize (and consent) for `client_id` asking for `scope`; returns the code.
async fn code_with_scope(app: &TestApp, client_id: &str, scope: &str) -> String {
    let mut params = TestApp::authorize_params(client_id, REDIRECT);
    params.push(("scope".to_string(), scope.to_string()));
    let mut response = app.authorize_as(Some(USER), &params).await;
    if response.status() == 200 {
        let page = response.text().await.unwrap();
        response = app.answer_consent(&page, USER, "approve").await;
    }
    query_of(&location(&response))
        .get("code")
        .cloned()
        .expect("a code")
}

/// The form of an authorization_code request without client authentication.
fn code_form<'a>(code: &'a str, redirect: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", verifier),
    ]
}

/// Asserts a successful token response and returns its JSON.
async fn assert_tokens(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].is_u64(), "{body}");
    assert!(body["access_token"].is_string(), "{body}");
    assert!(body["refresh_token"].is_string(), "{body}");
    body
}

/// The `scope` claim of an access token.
fn scope_claim(app: &TestApp, tokens: &Value) -> String {
    mcp_authd::verify_access_token(
        tokens["access_token"].as_str().unwrap(),
        &app.expectations(),
    )
    .unwrap()
    .scope
}

/// Refreshes as a public client with extra form parameters.
async fn refresh_with(
    app: &TestApp,
    client_id: &str,
    refresh_token: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("refresh_token", refresh_token),
    ];
    form.extend_from_slice(extra);
    post_token(app, None, &form).await
}

/// A spawned server whose `scopesSupported` is `["a", "b"]`.
async fn spawn_with_scopes_a_b() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Options {
        configure: &|c| c["scopesSupported"] = json!(["a", "b"]),
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    (app, dir)
}

// ---------------------------------------------------------------------------------------------
// Client authentication

#[tokio::test]
async fn public_client_authenticates_with_client_id_alone() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let response = app.exchange(&client_id, &code, REDIRECT).await;
    assert_eq!(response.headers()["pragma"], "no-cache");
    let tokens = assert_tokens(response).await;
    assert_eq!(tokens["expires_in"], 3600);
    let refreshed = assert_tokens(
        app.refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
            .await,
    )
    .await;
    assert_ne!(refreshed["refresh_token"], tokens["refresh_token"]);
    app.stop().await;
}

#[tokio::test]
async fn client_secret_post_authenticates() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, secret) = register_confidential(&app, "client_secret_post").await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let mut form = code_form(&code, REDIRECT, VERIFIER);
    form.extend([
        ("client_id", client_id.as_str()),
        ("client_secret", secret.as_str()),
    ]);
    let tokens = assert_tokens(post_token(&app, None, &form).await).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client_id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    assert_tokens(post_token(&app, None, &form).await).await;
    app.stop().await;
}

#[tokio::test]
async fn client_secret_basic_authenticates() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, secret) = register_confidential(&app, "client_secret_basic").await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let form = code_form(&code, REDIRECT, VERIFIER);
    let tokens = assert_tokens(post_token(&app, Some((&client_id, &secret)), &form).await).await;
    let claims = mcp_authd::verify_access_token(
        tokens["access_token"].as_str().unwrap(),
        &app.expectations(),
    )
    .unwrap();
    assert_eq!(claims.client_id, client_id);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
    ];
    assert_tokens(post_token(&app, Some((&client_id, &secret)), &form).await).await;
    app.stop().await;
}

#[tokio::test]
async fn basic_with_client_id_also_in_the_body_authenticates() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, secret) = register_confidential(&app, "client_secret_basic").await;
    let code = app.code_for(&client_id, REDIRECT).await;
    // The Python SDK sends both.
    let mut form = code_form(&code, REDIRECT, VERIFIER);
    form.push(("client_id", &client_id));
    assert_tokens(post_token(&app, Some((&client_id, &secret)), &form).await).await;
    app.stop().await;
}

#[tokio::test]
async fn wrong_secret_via_basic_is_401_with_www_authenticate_and_keeps_the_code() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, secret) = register_confidential(&app, "client_secret_basic").await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let form = code_form(&code, REDIRECT, VERIFIER);
    let response = post_token(&app, Some((&client_id, "not-the-secret")), &form).await;
    let challenge = response
        .headers()
        .get("www-authenticate")
        .expect("WWW-Authenticate after a failed Basic authentication")
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Basic"), "{challenge}");
    assert_oauth_error(response, 401, "invalid_client").await;
    // The code was not consumed.
    assert_tokens(post_token(&app, Some((&client_id, &secret)), &form).await).await;
    app.stop().await;
}

#[tokio::test]
async fn wrong_secret_via_post_is_401_without_www_authenticate() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, secret) = register_confidential(&app, "client_secret_post").await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let mut form = code_form(&code, REDIRECT, VERIFIER);
    form.extend([
        ("client_id", client_id.as_str()),
        ("client_secret", "not-the-secret"),
    ]);
    let response = post_token(&app, None, &form).await;
    assert!(response.headers().get("www-authenticate").is_none());
    assert_oauth_error(response, 401, "invalid_client").await;
    let mut form = code_form(&code, REDIRECT, VERIFIER);
    form.extend([
        ("client_id", client_id.as_str()),
        ("client_secret", secret.as_str()),
    ]);
    assert_tokens(post_token(&app, None, &form).await).await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_client_id_is_401_invalid_client() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let mut form = code_form(&code, REDIRECT, VERIFIER);
    form.push(("client_id", "no-such-client"));
    let response = post_token(&app, None, &form).await;
    assert!(response.headers().get("www-authenticate").is_none());
    assert_oauth_error(response, 401, "invalid_client").await;

    let response = post_token(
        &app,
        Some(("no-such-client", "secret")),
        &code_form(&code, REDIRECT, VERIFIER),
    )
    .await;
    assert!(response.headers().get("www-authenticate").is_some());
    assert_oauth_error(response, 401, "invalid_client").await;

    // No client_id at all.
    assert_oauth_error(
        post_token(&app, None, &code_form(&code, REDIRECT, VERIFIER)).await,
        401,
        "invalid_client",
    )
    .await;
    // Refresh with an unknown client too.
    assert_oauth_error(
        app.refresh("no-such-client", "x").await,
        401,
        "invalid_client",
    )
    .await;
    // The real client's code is untouched.
    assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    app.stop().await;
}

#[tokio::test]
async fn confidential_client_sending_only_client_id_is_401() {
    let (app, _dir) = TestApp::spawn().await;
    for method in ["client_secret_basic", "client_secret_post"] {
        let (client_id, secret) = register_confidential(&app, method).await;
        let code = app.code_for(&client_id, REDIRECT).await;
        // No downgrade to a public client.
        assert_oauth_error(
            app.exchange(&client_id, &code, REDIRECT).await,
            401,
            "invalid_client",
        )
        .await;
        let mut form = code_form(&code, REDIRECT, VERIFIER);
        form.extend([("client_id", client_id.as_str()), ("client_secret", "")]);
        assert_oauth_error(post_token(&app, None, &form).await, 401, "invalid_client").await;
        let mut form = code_form(&code, REDIRECT, VERIFIER);
        form.extend([
            ("client_id", client_id.as_str()),
            ("client_secret", secret.as_str()),
        ]);
        assert_tokens(post_token(&app, None, &form).await).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn basic_and_body_secret_together_is_invalid_request() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, secret) = register_confidential(&app, "client_secret_basic").await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let mut form = code_form(&code, REDIRECT, VERIFIER);
    form.push(("client_secret", &secret));
    assert_oauth_error(
        post_token(&app, Some((&client_id, &secret)), &form).await,
        400,
        "invalid_request",
    )
    .await;
    // The code survives the malformed request.
    assert_tokens(
        post_token(
            &app,
            Some((&client_id, &secret)),
            &code_form(&code, REDIRECT, VERIFIER),
        )
        .await,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn public_client_sending_a_secret_is_401() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let mut form = code_form(&code, REDIRECT, VERIFIER);
    form.extend([
        ("client_id", client_id.as_str()),
        ("client_secret", "made-up-secret"),
    ]);
    assert_oauth_error(post_token(&app, None, &form).await, 401, "invalid_client").await;
    let response = post_token(
        &app,
        Some((&client_id, "made-up-secret")),
        &code_form(&code, REDIRECT, VERIFIER),
    )
    .await;
    assert!(response.headers().get("www-authenticate").is_some());
    assert_oauth_error(response, 401, "invalid_client").await;
    assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// authorization_code

#[tokio::test]
async fn code_replay_is_invalid_grant_and_revokes_what_the_code_issued() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let tokens = assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();

    let description = assert_oauth_error(
        app.exchange(&client_id, &code, REDIRECT).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(
        !description.contains(&code),
        "the description never echoes the code"
    );
    // The refresh token of the first redemption is dead.
    assert_oauth_error(
        app.refresh(&client_id, refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    // And a third attempt is still refused.
    assert_oauth_error(
        app.exchange(&client_id, &code, REDIRECT).await,
        400,
        "invalid_grant",
    )
    .await;
    app.stop().await;
}

/// SPEC §17 (issue 8, item 9): a spent code leaks through browser history and callback logs.
/// Posted by another client, or by anyone naming the right client without its PKCE verifier
/// or redirect URI, it is plain `invalid_grant` and the victim's sign-in lives on; only the
/// code's own client, proving what the first redemption proved, revokes what it issued.
#[tokio::test]
async fn a_spent_code_replayed_by_a_stranger_is_invalid_grant_and_revokes_nothing() {
    let (app, _dir) = TestApp::spawn().await;
    let victim = app.register_public(REDIRECT).await;
    let code = app.code_for(&victim, REDIRECT).await;
    let tokens = assert_tokens(app.exchange(&victim, &code, REDIRECT).await).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();

    let stranger = app.register_public(REDIRECT).await;
    let (confidential, secret) = register_confidential(&app, "client_secret_basic").await;
    let wrong_verifier = "x".repeat(43);
    let mut attempts: Vec<reqwest::Response> = vec![
        app.exchange(&stranger, &code, REDIRECT).await,
        post_token(
            &app,
            Some((&confidential, &secret)),
            &code_form(&code, REDIRECT, VERIFIER),
        )
        .await,
    ];
    // The victim's client_id is public (it is in the authorize URL next to the code): naming
    // it is not enough without the verifier and the redirect URI.
    for (redirect, verifier) in [
        (REDIRECT, wrong_verifier.as_str()),
        ("http://127.0.0.1:1/other", VERIFIER),
    ] {
        let mut form = code_form(&code, redirect, verifier);
        form.push(("client_id", &victim));
        attempts.push(post_token(&app, None, &form).await);
    }
    for response in attempts {
        let description = assert_oauth_error(response, 400, "invalid_grant").await;
        assert!(!description.contains("revoked"), "{description}");
    }
    // The victim's sign-in is untouched.
    let rotated = assert_tokens(app.refresh(&victim, refresh_token).await).await;

    // Its own client replaying it is the theft signal: everything the code issued dies.
    let description = assert_oauth_error(
        app.exchange(&victim, &code, REDIRECT).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(description.contains("revoked"), "{description}");
    assert_oauth_error(
        app.refresh(&victim, rotated["refresh_token"].as_str().unwrap())
            .await,
        400,
        "invalid_grant",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn wrong_verifier_is_invalid_grant_and_does_not_burn_the_code() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let other_verifier = "x".repeat(43);
    let too_long = "a".repeat(129);
    let mut challenge_as_verifier = challenge(VERIFIER);
    challenge_as_verifier.push_str("abc");
    for verifier in [
        other_verifier.as_str(),
        "short",
        too_long.as_str(),
        challenge_as_verifier.as_str(),
        &VERIFIER[..42],
    ] {
        let mut form = code_form(&code, REDIRECT, verifier);
        form.push(("client_id", &client_id));
        assert_oauth_error(post_token(&app, None, &form).await, 400, "invalid_grant").await;
    }
    assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    app.stop().await;
}

#[tokio::test]
async fn wrong_redirect_uri_is_invalid_grant_and_does_not_burn_the_code() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    for redirect in [
        "http://127.0.0.1:1234/callback",
        "http://127.0.0.1:33418/callback/",
        "http://localhost:33418/callback",
        "https://evil.example/cb",
    ] {
        assert_oauth_error(
            app.exchange(&client_id, &code, redirect).await,
            400,
            "invalid_grant",
        )
        .await;
    }
    // Omitted (RFC 6749 §4.1.3; decision 4 in the catalogue).
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
    ];
    assert_oauth_error(post_token(&app, None, &form).await, 400, "invalid_request").await;
    assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    app.stop().await;
}

#[tokio::test]
async fn code_of_another_client_is_invalid_grant_and_survives() {
    let (app, _dir) = TestApp::spawn().await;
    let client_a = app.register_public(REDIRECT).await;
    let client_b = app.register_public(REDIRECT).await;
    let (client_c, secret_c) = register_confidential(&app, "client_secret_basic").await;
    let code = app.code_for(&client_a, REDIRECT).await;
    assert_oauth_error(
        app.exchange(&client_b, &code, REDIRECT).await,
        400,
        "invalid_grant",
    )
    .await;
    assert_oauth_error(
        post_token(
            &app,
            Some((&client_c, &secret_c)),
            &code_form(&code, REDIRECT, VERIFIER),
        )
        .await,
        400,
        "invalid_grant",
    )
    .await;
    let tokens = assert_tokens(app.exchange(&client_a, &code, REDIRECT).await).await;
    let claims = mcp_authd::verify_access_token(
        tokens["access_token"].as_str().unwrap(),
        &app.expectations(),
    )
    .unwrap();
    assert_eq!(claims.client_id, client_a);
    app.stop().await;
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    app.clock.advance(61);
    let description = assert_oauth_error(
        app.exchange(&client_id, &code, REDIRECT).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(description.contains("expired"), "{description}");

    // Just inside the lifetime it still works.
    let code = app.code_for(&client_id, REDIRECT).await;
    app.clock.advance(59);
    assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    app.stop().await;
}

#[tokio::test]
async fn garbage_codes_are_invalid_grant() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let long = "A".repeat(10_000);
    for code in ["nonexistent", long.as_str(), "\u{0}", "é"] {
        assert_oauth_error(
            app.exchange(&client_id, code, REDIRECT).await,
            400,
            "invalid_grant",
        )
        .await;
    }
    assert_oauth_error(
        app.exchange(&client_id, "", REDIRECT).await,
        400,
        "invalid_request",
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_redemptions_of_one_code_yield_exactly_one_token() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let url = app.url("/oauth/token");
    let form: Vec<(String, String)> = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, url, form, start) = (app.http.clone(), url.clone(), form.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let response = http.post(url).form(&form).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }));
    }
    let mut successes = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => successes.push(body),
            400 => assert_eq!(body["error"], "invalid_grant", "{body}"),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(successes.len(), 1, "exactly one redemption succeeds");
    // The others were replays: what the code issued is revoked (catalogue row 29).
    let refresh_token = successes[0]["refresh_token"].as_str().unwrap();
    assert_oauth_error(
        app.refresh(&client_id, refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn missing_grant_type_is_invalid_request_and_others_are_unsupported() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let form = [("client_id", client_id.as_str()), ("code", code.as_str())];
    assert_oauth_error(post_token(&app, None, &form).await, 400, "invalid_request").await;
    let form = [("grant_type", ""), ("client_id", client_id.as_str())];
    assert_oauth_error(post_token(&app, None, &form).await, 400, "invalid_request").await;
    for grant_type in [
        "password",
        "client_credentials",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "AUTHORIZATION_CODE",
    ] {
        let form = [
            ("grant_type", grant_type),
            ("client_id", client_id.as_str()),
            ("username", "alice"),
            ("password", "hunter2"),
        ];
        assert_oauth_error(
            post_token(&app, None, &form).await,
            400,
            "unsupported_grant_type",
        )
        .await;
    }
    assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    app.stop().await;
}

#[tokio::test]
async fn json_body_is_invalid_request() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .json(&json!({
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER
        }))
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 400, "invalid_request").await;
    // A form body without a content type is not accepted either.
    let body = format!("grant_type=authorization_code&client_id={client_id}");
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 400, "invalid_request").await;
    // Nothing was consumed.
    assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    app.stop().await;
}

#[tokio::test]
async fn duplicated_form_parameter_is_invalid_request() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let other = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    for (name, value) in [
        ("code", "other-code"),
        ("code", code.as_str()),
        ("client_id", other.as_str()),
        ("grant_type", "refresh_token"),
        ("redirect_uri", "http://127.0.0.1:1/x"),
        ("code_verifier", VERIFIER),
    ] {
        let mut form = code_form(&code, REDIRECT, VERIFIER);
        form.push(("client_id", &client_id));
        form.push((name, value));
        assert_oauth_error(post_token(&app, None, &form).await, 400, "invalid_request").await;
    }
    assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// refresh_token

#[tokio::test]
async fn refresh_with_a_wider_scope_is_invalid_scope_and_does_not_burn_the_token() {
    let (app, _dir) = spawn_with_scopes_a_b().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = code_with_scope(&app, &client_id, "a").await;
    let tokens = assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(scope_claim(&app, &tokens), "a");
    for scope in ["a b", "b", "c"] {
        let response = refresh_with(&app, &client_id, refresh_token, &[("scope", scope)]).await;
        assert_oauth_error(response, 400, "invalid_scope").await;
    }
    // The same token still refreshes, with the original scope.
    let refreshed = assert_tokens(app.refresh(&client_id, refresh_token).await).await;
    assert_eq!(scope_claim(&app, &refreshed), "a");
    app.stop().await;
}

#[tokio::test]
async fn refresh_with_a_narrower_scope_works() {
    let (app, _dir) = spawn_with_scopes_a_b().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = code_with_scope(&app, &client_id, "a b").await;
    let tokens = assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    assert_eq!(scope_claim(&app, &tokens), "a b");
    let narrowed = assert_tokens(
        refresh_with(
            &app,
            &client_id,
            tokens["refresh_token"].as_str().unwrap(),
            &[("scope", "a")],
        )
        .await,
    )
    .await;
    assert_eq!(scope_claim(&app, &narrowed), "a");
    assert_eq!(narrowed["scope"], "a");
    // The refresh token keeps the original grant (RFC 6749 §6: an omitted scope is the
    // originally granted one).
    let again = assert_tokens(
        app.refresh(&client_id, narrowed["refresh_token"].as_str().unwrap())
            .await,
    )
    .await;
    assert_eq!(scope_claim(&app, &again), "a b");
    app.stop().await;
}

/// SPEC §17 (issue 8, item 10): five presentations of a rotated refresh token inside the
/// grace window get exactly the rotation's answer (the same access token, byte for byte, the
/// same successor, the same narrowed scope and lifetime), so holding the old token mints
/// nothing. The successor still works, and the access token is not in the state file.
#[tokio::test]
async fn grace_retries_get_the_rotations_own_access_token_byte_for_byte() {
    let (app, _dir) = spawn_with_scopes_a_b().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = code_with_scope(&app, &client_id, "a b").await;
    let tokens = assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_string();
    // The rotation narrows the scope; the retries ask for nothing, as a lost-response retry
    // of another client might, and still get the rotation's token.
    let rotation =
        assert_tokens(refresh_with(&app, &client_id, &first, &[("scope", "a")]).await).await;
    assert_eq!(scope_claim(&app, &rotation), "a");
    for _ in 0..5 {
        app.clock.advance(5);
        let retry = assert_tokens(app.refresh(&client_id, &first).await).await;
        assert_eq!(retry, rotation, "a grace retry gets the rotation's answer");
    }
    let access = rotation["access_token"].as_str().unwrap();
    let on_disk = std::fs::read_to_string(&app.state_path).unwrap()
        + &std::fs::read_to_string(mcp_authd::store::file::journal_path(&app.state_path)).unwrap();
    let signature = access.rsplit('.').next().unwrap();
    assert!(
        !on_disk.contains(signature),
        "the access token is never stored"
    );

    // The successor rotates as usual, to a new access token; then the first token is reuse.
    let successor = rotation["refresh_token"].as_str().unwrap();
    let next = assert_tokens(app.refresh(&client_id, successor).await).await;
    assert_ne!(next["access_token"], rotation["access_token"]);
    assert_eq!(scope_claim(&app, &next), "a b");
    assert_oauth_error(app.refresh(&client_id, &first).await, 400, "invalid_grant").await;
    app.stop().await;
}

#[tokio::test]
async fn refresh_with_another_resource_is_invalid_target() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, tokens) = app.signed_in_client().await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    for resource in [
        "https://evil.example/mcp".to_string(),
        app.url("/other"),
        app.base.clone(),
    ] {
        let response =
            refresh_with(&app, &client_id, refresh_token, &[("resource", &resource)]).await;
        assert_oauth_error(response, 400, "invalid_target").await;
    }
    // The same resource, written with a trailing slash, is fine; the token was not burnt.
    let resource = format!("{}/", app.url("/mcp"));
    let refreshed = assert_tokens(
        refresh_with(&app, &client_id, refresh_token, &[("resource", &resource)]).await,
    )
    .await;
    let claims = mcp_authd::verify_access_token(
        refreshed["access_token"].as_str().unwrap(),
        &app.expectations(),
    )
    .unwrap();
    assert_eq!(claims.aud, app.url("/mcp"));
    app.stop().await;
}

#[tokio::test]
async fn refresh_token_of_another_client_is_invalid_grant() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_a, tokens) = app.signed_in_client().await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let client_b = app.register_public(REDIRECT).await;
    assert_oauth_error(
        app.refresh(&client_b, refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    let (client_c, secret_c) = register_confidential(&app, "client_secret_basic").await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    assert_oauth_error(
        post_token(&app, Some((&client_c, &secret_c)), &form).await,
        400,
        "invalid_grant",
    )
    .await;
    // A's token is unaffected.
    assert_tokens(app.refresh(&client_a, refresh_token).await).await;
    app.stop().await;
}

#[tokio::test]
async fn refresh_token_after_its_lifetime_is_invalid_grant() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Options {
        configure: &|c| c["refreshTokenTtlSeconds"] = json!(300),
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let (client_id, tokens) = app.signed_in_client().await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    app.clock.advance(301);
    let description = assert_oauth_error(
        app.refresh(&client_id, refresh_token).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(description.contains("expired"), "{description}");

    // A fresh sign-in inside its lifetime refreshes.
    let (client_id, tokens) = app.signed_in_client().await;
    app.clock.advance(299);
    assert_tokens(
        app.refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
            .await,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn garbage_refresh_tokens_are_invalid_grant() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, tokens) = app.signed_in_client().await;
    let real = tokens["refresh_token"].as_str().unwrap();
    let (family, _) = real.split_once('.').unwrap();
    let forged = format!("{family}.{}", "A".repeat(43));
    for token in [
        "garbage",
        forged.as_str(),
        tokens["access_token"].as_str().unwrap(),
    ] {
        assert_oauth_error(app.refresh(&client_id, token).await, 400, "invalid_grant").await;
    }
    assert_oauth_error(app.refresh(&client_id, "").await, 400, "invalid_request").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Revocation

#[tokio::test]
async fn revoking_a_refresh_token_kills_it() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, tokens) = app.signed_in_client().await;
    let first = tokens["refresh_token"].as_str().unwrap();
    let rotated = assert_tokens(app.refresh(&client_id, first).await).await;
    let live = rotated["refresh_token"].as_str().unwrap();
    let response = app
        .http
        .post(app.url("/oauth/revoke"))
        .form(&[
            ("token", live),
            ("token_type_hint", "refresh_token"),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_oauth_error(app.refresh(&client_id, live).await, 400, "invalid_grant").await;
    // The whole family is gone, including the grace path of the previous token.
    assert_oauth_error(app.refresh(&client_id, first).await, 400, "invalid_grant").await;
    app.stop().await;
}

#[tokio::test]
async fn revoking_an_unknown_token_is_200() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, tokens) = app.signed_in_client().await;
    let unknown = format!("{}.{}", "B".repeat(22), "C".repeat(43));
    for token in [
        "garbage",
        unknown.as_str(),
        tokens["access_token"].as_str().unwrap(),
    ] {
        let response = app
            .http
            .post(app.url("/oauth/revoke"))
            .form(&[("token", token), ("client_id", client_id.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{token}");
    }
    // None of that touched the real refresh token.
    assert_tokens(
        app.refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
            .await,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn another_client_cannot_revoke_a_refresh_token() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_a, tokens) = app.signed_in_client().await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let client_b = app.register_public(REDIRECT).await;
    let response = app
        .http
        .post(app.url("/oauth/revoke"))
        .form(&[("token", refresh_token), ("client_id", client_b.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_tokens(app.refresh(&client_a, refresh_token).await).await;
    app.stop().await;
}

#[tokio::test]
async fn offline_access_is_accepted_and_ignored_and_a_refresh_token_is_always_issued() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Options {
        configure: &|c| c["scopesSupported"] = json!(["mcp:tools"]),
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let client_id = app.register_public(REDIRECT).await;
    // Not in scopesSupported, yet no invalid_scope: offline_access asks for what is given anyway.
    let code = code_with_scope(&app, &client_id, "mcp:tools offline_access").await;
    let response = app.exchange(&client_id, &code, REDIRECT).await;
    let tokens = assert_tokens(response).await;
    assert_eq!(tokens["scope"], "mcp:tools");
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let response = post_token(
        &app,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", refresh_token),
            ("scope", "offline_access"),
        ],
    )
    .await;
    let refreshed = assert_tokens(response).await;
    assert_eq!(
        refreshed["scope"], "mcp:tools",
        "offline_access alone narrows nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn resource_with_uppercase_scheme_and_host_is_accepted_at_the_token_endpoint() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let shouting = app
        .url("/mcp")
        .replace("http://127.0.0.1", "HTTP://127.0.0.1");
    assert!(shouting.starts_with("HTTP://"));
    let mut form = code_form(&code, REDIRECT, VERIFIER);
    form.push(("client_id", &client_id));
    form.push(("resource", &shouting));
    let tokens = assert_tokens(post_token(&app, None, &form).await).await;
    let response = post_token(
        &app,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("resource", &format!("{shouting}/")),
        ],
    )
    .await;
    assert_tokens(response).await;
    app.stop().await;
}
