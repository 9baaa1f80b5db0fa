//! The token endpoint: client authentication (HTTP Basic decoding included), the
//! authorization_code grant (single use, bound to client, redirect URI and PKCE verifier;
//! failed checks and garbage requests do not burn the code; error fields keep to RFC 6749's
//! character set), the refresh_token grant (scope, resource, client binding, expiry, the
//! rotation and its 30 s grace rule under races, the token format) and revocation. The
//! catalogue rows of sections B–E that concern this endpoint are pinned here; the whole
//! lifecycle as a model is in `token_lifecycle.rs`.

// The helpers in this file run only inside tests, where a failed step should panic.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mcp_authd::oauth::pkce;
use proptest::prelude::*;
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
    TestApp::spawn_configured(&|c| c["scopesSupported"] = json!(["a", "b"])).await
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
    let (client_id, secret) = app.register_confidential("client_secret_post").await;
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
    let (client_id, secret) = app.register_confidential("client_secret_basic").await;
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
    let (client_id, secret) = app.register_confidential("client_secret_basic").await;
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
    let (client_id, secret) = app.register_confidential("client_secret_basic").await;
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
    let (client_id, secret) = app.register_confidential("client_secret_post").await;
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
        let (client_id, secret) = app.register_confidential(method).await;
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
    let (client_id, secret) = app.register_confidential("client_secret_basic").await;
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

/// Row 42: HTTP Basic is decoded per RFC 6749 §2.3.1 (form-decoding after base64), the
/// scheme is case-insensitive, and every malformed header is a 401 with
/// `WWW-Authenticate: Basic`. Revocation of an unknown token (200 once authenticated) is the
/// oracle, so no code is spent.
#[tokio::test]
async fn basic_credentials_are_decoded_per_rfc_6749_and_malformed_ones_are_401() {
    let (app, _dir) = TestApp::spawn().await;
    let (id, secret) = app.register_confidential("client_secret_basic").await;
    let other = app.register_public(REDIRECT).await;
    let encode_all = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let revoke = |authorization: Vec<u8>| {
        let request = app
            .http
            .post(app.url("/oauth/revoke"))
            .header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(&authorization).unwrap(),
            )
            .form(&[("token", "unknown.token")]);
        async move { request.send().await.unwrap() }
    };
    let b64 = |s: &str| STANDARD.encode(s.as_bytes());
    for good in [
        format!("Basic {}", b64(&format!("{id}:{secret}"))),
        format!("basic {}", b64(&format!("{id}:{secret}"))),
        format!("BASIC {}", b64(&format!("{id}:{secret}"))),
        format!(
            "Basic {}",
            b64(&format!("{}:{}", encode_all(&id), encode_all(&secret)))
        ),
    ] {
        assert_eq!(
            revoke(good.clone().into_bytes()).await.status(),
            200,
            "{good}"
        );
    }
    let mut bad: Vec<Vec<u8>> = [
        format!("Basic {}", b64(&format!("{id}:{secret}x"))),
        format!("Basic {}", b64(&format!("{id}:{secret}+"))),
        format!("Basic {}", b64(&format!("{id}:"))),
        format!("Basic {}", b64(&format!("{id}{secret}"))),
        format!("Basic {}", b64(&format!("{other}:{secret}"))),
        format!("Basic {}", b64(&format!(":{secret}"))),
        format!("Basic {}", b64(&format!("{id}:{secret}%"))),
        format!("Basic {}", b64(&format!("{id}:{secret}%ZZ"))),
        format!(
            "Basic {}",
            URL_SAFE_NO_PAD.encode(format!("{id}:{secret}?>"))
        ),
        "Basic !!!not-base64!!!".to_string(),
        "Basic".to_string(),
        "Basic ".to_string(),
        format!("Bearer {secret}"),
        format!("Digest {}", b64(&format!("{id}:{secret}"))),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    let mut non_utf8 = b"Basic ".to_vec();
    non_utf8.extend(STANDARD.encode(b"\xff\xfe:\xfd").into_bytes());
    bad.push(non_utf8);
    for authorization in bad {
        let response = revoke(authorization.clone()).await;
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic"),
            "{:?}",
            String::from_utf8_lossy(&authorization)
        );
        assert_oauth_error(response, 401, "invalid_client").await;
    }
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

/// Row 27 (decision): the same challenge may be used for several authorizations; each code
/// is still single-use and bound to its own request.
#[tokio::test]
async fn a_reused_challenge_is_accepted_but_each_code_works_once() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let first = app.code_for(&client_id, REDIRECT).await;
    let second = app.code_for(&client_id, REDIRECT).await;
    assert_ne!(first, second);
    for code in [&first, &second] {
        assert_eq!(app.exchange(&client_id, code, REDIRECT).await.status(), 200);
        assert_oauth_error(
            app.exchange(&client_id, code, REDIRECT).await,
            400,
            "invalid_grant",
        )
        .await;
    }
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
    let (confidential, secret) = app.register_confidential("client_secret_basic").await;
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

/// Rows 25, 26: a missing verifier is `invalid_request`; malformed ones (`+` decoded to a
/// space, `%00`, `%ZZ` kept literally, wrong alphabet) and wrong ones are `invalid_grant`;
/// none of them burns the code.
#[tokio::test]
async fn malformed_or_missing_verifiers_are_refused_and_keep_the_code() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let base = format!(
        "grant_type=authorization_code&client_id={client_id}&code={code}&redirect_uri={}",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let v = &VERIFIER[..42];
    for (tail, expected) in [
        (String::new(), "invalid_request"),
        ("&code_verifier=".to_string(), "invalid_request"),
        (format!("&code_verifier={v}+"), "invalid_grant"),
        (format!("&code_verifier={v}%00"), "invalid_grant"),
        (
            format!("&code_verifier={}%ZZ", &VERIFIER[..40]),
            "invalid_grant",
        ),
        (format!("&code_verifier={v}%2B"), "invalid_grant"),
        (format!("&code_verifier={v}%C3%A9"), "invalid_grant"),
        (format!("&code_verifier={VERIFIER}%20"), "invalid_grant"),
        (
            format!("&code_verifier={}", challenge(VERIFIER)),
            "invalid_grant",
        ),
    ] {
        let response = app
            .http
            .post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{base}{tail}"))
            .send()
            .await
            .unwrap();
        assert_oauth_error(response, 400, expected).await;
    }
    // Well-formed verifiers that are not the one: another, too short, too long, the challenge
    // with more characters, one character short.
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

// PKCE as properties of the rules themselves: S256 round-trips for every valid verifier and
// fails for every other one.

proptest! {
    #![proptest_config(proptest_cases(256))]

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
    // Omitted or empty (RFC 6749 §4.1.3; row 33, decision 4 in the catalogue): invalid_request
    // naming the parameter.
    for redirect in [None, Some("")] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", client_id.as_str()),
            ("code", code.as_str()),
            ("code_verifier", VERIFIER),
        ];
        if let Some(redirect) = redirect {
            form.push(("redirect_uri", redirect));
        }
        let description =
            assert_oauth_error(post_token(&app, None, &form).await, 400, "invalid_request").await;
        assert!(description.contains("redirect_uri"), "{description}");
    }
    assert_tokens(app.exchange(&client_id, &code, REDIRECT).await).await;
    app.stop().await;
}

#[tokio::test]
async fn code_of_another_client_is_invalid_grant_and_survives() {
    let (app, _dir) = TestApp::spawn().await;
    let client_a = app.register_public(REDIRECT).await;
    let client_b = app.register_public(REDIRECT).await;
    let (client_c, secret_c) = app.register_confidential("client_secret_basic").await;
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

/// Rows 36, 38: broken encodings, NUL, non-UTF-8 bytes, many or huge parameters: always a
/// 400 JSON error, never a 5xx, and the real code survives all of it.
#[tokio::test]
async fn garbage_token_requests_are_400_json_and_never_burn_the_code() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let many: String = (0..2000).map(|i| format!("p{i}=x&")).collect();
    let bodies: Vec<Vec<u8>> = vec![
        format!("grant_type=authorization_code&client_id={client_id}&code=%FF%FE&redirect_uri=x&code_verifier={VERIFIER}").into_bytes(),
        format!("grant_type=authorization_code&client_id={client_id}&code=%00&redirect_uri=x&code_verifier={VERIFIER}").into_bytes(),
        format!("grant_type=authorization_code&client_id={client_id}&code={code}%ZZ&redirect_uri=x&code_verifier={VERIFIER}").into_bytes(),
        b"\xff\xfe\xfd=\x00\x01&&&==&".to_vec(),
        b"grant_type=authorization_code&client_id=\xff".to_vec(),
        format!("{many}grant_type=authorization_code&client_id={client_id}").into_bytes(),
        format!("grant_type=refresh_token&client_id={client_id}&refresh_token=..").into_bytes(),
        format!("grant_type=refresh_token&client_id={client_id}&refresh_token=%00.%00").into_bytes(),
        b"=".to_vec(),
        b"%".to_vec(),
        Vec::new(),
    ];
    for body in bodies {
        let response = app
            .http
            .post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            status == 400 || status == 401,
            "{status} for {:?}",
            String::from_utf8_lossy(&body)
        );
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].is_string(), "{error}");
    }
    assert_eq!(
        app.exchange(&client_id, &code, REDIRECT).await.status(),
        200
    );
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

/// A grant the client did not register is refused as such before anything the grant needs is
/// looked at; a grant it did register names each missing parameter, in order.
#[tokio::test]
async fn an_unregistered_grant_is_refused_before_its_parameters() {
    let (app, _dir) = TestApp::spawn().await;
    let response = app
        .register_raw(json!({
            "client_name": "No refresh", "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"]
        }))
        .await;
    assert_eq!(response.status(), 201);
    let registered: Value = response.json().await.unwrap();
    assert_eq!(registered["grant_types"], json!(["authorization_code"]));
    let client_id = registered["client_id"].as_str().unwrap();
    for form in [
        vec![("grant_type", "refresh_token"), ("client_id", client_id)],
        vec![
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", "a.b"),
        ],
    ] {
        let why = assert_oauth_error(
            post_token(&app, None, &form).await,
            400,
            "unauthorized_client",
        )
        .await;
        assert_eq!(
            why, "this client did not register that grant type",
            "{form:?}"
        );
    }
    let code = app.code_for(client_id, REDIRECT).await;
    let verifier = ("code_verifier", VERIFIER);
    for (form, missing) in [
        (vec![], "code is required"),
        (vec![("code", code.as_str())], "redirect_uri is required"),
        (
            vec![("code", code.as_str()), ("redirect_uri", REDIRECT)],
            "code_verifier is required (PKCE)",
        ),
        (
            vec![("code", ""), ("redirect_uri", REDIRECT), verifier],
            "code is required",
        ),
    ] {
        let mut form = form;
        form.extend([
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
        ]);
        let why =
            assert_oauth_error(post_token(&app, None, &form).await, 400, "invalid_request").await;
        assert_eq!(why, missing, "{form:?}");
    }
    // None of that spent the code.
    assert_tokens(app.exchange(client_id, &code, REDIRECT).await).await;
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

/// Whether `text` keeps to RFC 6749 §5.2's characters for `error` and `error_description`.
fn is_rfc6749_charset(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// Row 37: every error response keeps `error` and `error_description` inside RFC 6749 §5.2's
/// character set, even when it quotes hostile input, and never quotes a code or secret.
#[tokio::test]
async fn error_fields_keep_to_the_rfc_6749_character_set() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let mut responses = Vec::new();
    for body in [
        json!({"redirect_uris": ["https://evil.example/\"é\\<x>"]}),
        json!({"redirect_uris": ["http://127.0.0.1:1/\u{202E}cb"]}),
        json!({"redirect_uris": "\"quoted\" é"}),
        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "\"é\\\u{7}"}),
        json!({"redirect_uris": [REDIRECT], "client_name": ["é\""]}),
    ] {
        responses.push(app.register_raw(body).await);
    }
    for form in [
        "grant_type=%22%C3%A9%5C".to_string(),
        "%C3%A9%22=1&%C3%A9%22=2".to_string(),
        format!(
            "grant_type=authorization_code&client_id={client_id}&code=x&redirect_uri=%22%C3%A9&code_verifier={VERIFIER}"
        ),
        format!(
            "grant_type=authorization_code&client_id={client_id}&code={code}&redirect_uri=%22%C3%A9&code_verifier={VERIFIER}"
        ),
        format!(
            "grant_type=refresh_token&client_id={client_id}&refresh_token=%22.%C3%A9&scope=%22%C3%A9"
        ),
        "grant_type=authorization_code&client_id=%22%C3%A9%5C".to_string(),
    ] {
        responses.push(
            app.http
                .post(app.url("/oauth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .unwrap(),
        );
    }
    assert_eq!(responses.len(), 11);
    for response in responses {
        let status = response.status().as_u16();
        assert!((400..500).contains(&status), "{status}");
        let body: Value = response.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(is_rfc6749_charset(error), "{body}");
        assert!(is_rfc6749_charset(description), "{body}");
        assert!(!description.contains(&code), "{body}");
    }
    // The code was never consumed by the attempts that named it.
    assert_eq!(
        app.exchange(&client_id, &code, REDIRECT).await.status(),
        200
    );
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

/// Row 50: two refreshes of one token at the same moment, 1000 times along one family. Under
/// the grace rule both succeed with the same successor (one rotation) and the same access
/// token (nothing minted for the second, SPEC §17), the family stays the only one and stays
/// live, and older tokens are still reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_of_one_token_follow_the_grace_rule_over_1000_runs() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, tokens) = app.signed_in_client().await;
    let mut current = string(&tokens, "refresh_token");
    let mut history = vec![current.clone()];
    let expectations = app.expectations();
    let http = [client(None), client(None)];
    for run in 0..1000 {
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for http in &http {
            let (http, url, start) = (http.clone(), app.url("/oauth/token"), start.clone());
            let form = [
                ("grant_type", "refresh_token".to_string()),
                ("client_id", client_id.clone()),
                ("refresh_token", current.clone()),
            ];
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                let response = http.post(url).form(&form).send().await.unwrap();
                (
                    response.status().as_u16(),
                    response.json::<Value>().await.unwrap(),
                )
            }));
        }
        let mut successors = Vec::new();
        let mut access_tokens = Vec::new();
        for task in tasks {
            let (status, body) = task.await.unwrap();
            assert_eq!(status, 200, "run {run}: {body}");
            access_tokens.push(string(&body, "access_token"));
            let claims =
                mcp_authd::verify_access_token(&string(&body, "access_token"), &expectations)
                    .unwrap();
            assert_eq!(
                (claims.sub.as_str(), claims.client_id.as_str()),
                (USER, client_id.as_str())
            );
            successors.push(string(&body, "refresh_token"));
        }
        assert_eq!(successors[0], successors[1], "run {run}: one rotation");
        // SPEC §17: the racing request gets the rotation's own access token, not a new one.
        assert_eq!(
            access_tokens[0], access_tokens[1],
            "run {run}: one access token"
        );
        assert_ne!(successors[0], current, "run {run}");
        current = successors.remove(0);
        history.push(current.clone());
    }
    let families = app.state.store.families().await.unwrap();
    assert_eq!(families.len(), 1);
    // The token two generations back is plain reuse: the family dies, the live token too.
    let stale = &history[history.len() - 3];
    assert_oauth_error(app.refresh(&client_id, stale).await, 400, "invalid_grant").await;
    assert_oauth_error(
        app.refresh(&client_id, &current).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(app.state.store.families().await.unwrap().is_empty());
    app.stop().await;
}

/// Row 51 (decision 2): a lost response may be retried with the previous token, more than
/// once, inside 30 s while the successor is unused; afterwards, or once the successor is
/// used, the previous token revokes the family.
#[tokio::test]
async fn lost_responses_may_be_retried_inside_the_grace_window_only() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, tokens) = app.signed_in_client().await;
    let first = string(&tokens, "refresh_token");
    let second = string(
        &app.refresh(&client_id, &first).await.json().await.unwrap(),
        "refresh_token",
    );
    for wait in [5, 20] {
        app.clock.advance(wait);
        let retried: Value = app.refresh(&client_id, &first).await.json().await.unwrap();
        assert_eq!(string(&retried, "refresh_token"), second);
    }
    // 31 s after the rotation the retry is reuse.
    app.clock.advance(6);
    assert_oauth_error(app.refresh(&client_id, &first).await, 400, "invalid_grant").await;
    assert_oauth_error(app.refresh(&client_id, &second).await, 400, "invalid_grant").await;

    // Same with the successor used first, inside the window.
    let (client_id, tokens) = app.signed_in_client().await;
    let first = string(&tokens, "refresh_token");
    let second = string(
        &app.refresh(&client_id, &first).await.json().await.unwrap(),
        "refresh_token",
    );
    let response = app.refresh(&client_id, &second).await;
    assert_eq!(response.status(), 200);
    let third = string(&response.json().await.unwrap(), "refresh_token");
    // The successor is used, so the old token is plain reuse even inside 30 s.
    assert_oauth_error(app.refresh(&client_id, &first).await, 400, "invalid_grant").await;
    assert_oauth_error(app.refresh(&client_id, &third).await, 400, "invalid_grant").await;
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
    let (client_c, secret_c) = app.register_confidential("client_secret_basic").await;
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
    let (app, _dir) =
        TestApp::spawn_configured(&|c| c["refreshTokenTtlSeconds"] = json!(300)).await;
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

/// Row 52: a family past its lifetime is dead, even for a retry inside the grace window.
#[tokio::test]
async fn an_expired_family_fails_even_inside_the_grace_window() {
    let (app, _dir) = TestApp::spawn_configured(&|c| c["refreshTokenTtlSeconds"] = json!(10)).await;
    let (client_id, tokens) = app.signed_in_client().await;
    let first = string(&tokens, "refresh_token");
    let second = string(
        &app.refresh(&client_id, &first).await.json().await.unwrap(),
        "refresh_token",
    );
    app.clock.advance(11);
    // The live token has expired; the previous one, inside its 30 s of grace, is refused too
    // (as reuse, which revokes what is left of the family).
    let description =
        assert_oauth_error(app.refresh(&client_id, &second).await, 400, "invalid_grant").await;
    assert!(description.contains("expired"), "{description}");
    assert_oauth_error(app.refresh(&client_id, &first).await, 400, "invalid_grant").await;
    assert!(app.state.store.families().await.unwrap().is_empty());
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

/// Row 54: refresh tokens are `<family id>.<secret>` with a 256-bit base64url secret; only
/// its SHA-256 is kept.
#[tokio::test]
async fn refresh_tokens_carry_256_bits_and_only_their_hash_is_kept() {
    let (app, _dir) = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_client().await;
    let refresh = string(&tokens, "refresh_token");
    let (family_id, secret) = refresh.split_once('.').expect("<family>.<secret>");
    assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len(), 32);
    // The family is filed under a hash of its id: no part of the token is kept in clear.
    let key = mcp_authd::oauth::refresh::family_key(family_id);
    assert!(app.state.store.family(family_id).await.unwrap().is_none());
    let family = app
        .state
        .store
        .family(&key)
        .await
        .unwrap()
        .expect("the family");
    assert_ne!(family.current_hash, refresh);
    assert!(!family.current_hash.contains(secret));
    assert!(!key.contains(family_id) && !key.contains(secret));
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
