//! SPEC §16: what one signed-in user can make the server hold. Scope size, outstanding codes
//! per user and in total, authorize requests per user, and access tokens no larger than the
//! verifier accepts (issue 8 items 4 and 5).

use serde_json::{Value, json};

use crate::helpers::*;

/// `n` distinct scope tokens.
fn tokens(n: usize) -> String {
    (0..n)
        .map(|i| format!("s{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The query of a redirect's `Location`, asserting it went to `REDIRECT` with `state` and
/// `iss`.
fn redirected(
    app: &TestApp,
    response: &reqwest::Response,
) -> std::collections::HashMap<String, String> {
    let location = location(response);
    assert!(location.starts_with(REDIRECT), "{location}");
    let query = query_of(&location);
    assert_eq!(query.get("state").map(String::as_str), Some("xyz"));
    assert_eq!(query.get("iss"), Some(&app.base));
    query
}

/// Authorize as `user` (consent `never`): the query of the redirect.
async fn authorize_query(
    app: &TestApp,
    user: &str,
    params: &[(String, String)],
) -> std::collections::HashMap<String, String> {
    let response = app.authorize_as(Some(user), params).await;
    assert_eq!(response.status(), 302);
    redirected(app, &response)
}

/// Issue 8 item 4: 6,000 authorize requests with a 60 KB scope took 400 MB. A scope over
/// 1024 bytes or 64 tokens is refused with an `invalid_scope` redirect (the client and the
/// redirect URI are valid by then), and nothing is stored.
#[tokio::test]
async fn a_scope_over_1024_bytes_or_64_tokens_is_an_invalid_scope_redirect() {
    let (app, _dir) = TestApp::spawn_configured(&|c| c["consent"] = "never".into()).await;
    let client_id = app.register_public(REDIRECT).await;
    let exactly = format!("{} {}", tokens(10), "x".repeat(1024 - tokens(10).len() - 1));
    assert_eq!(exactly.len(), 1024);
    for fits in [
        exactly.clone(),
        tokens(64),
        format!("{} s0 s1 s2", tokens(64)),
    ] {
        let params = params_with(&client_id, REDIRECT, &[("scope", Some(&fits))]);
        let query = authorize_query(&app, USER, &params).await;
        assert!(query.contains_key("code"), "{query:?}");
    }
    for (over, why) in [
        (format!("{exactly}y"), "1024 bytes"),
        (format!("{} s0", tokens(65)), "64 tokens"),
        ("a ".repeat(30_000), "1024 bytes"),
    ] {
        let params = params_with(&client_id, REDIRECT, &[("scope", Some(&over))]);
        let query = authorize_query(&app, USER, &params).await;
        assert_eq!(query["error"], "invalid_scope", "{query:?}");
        assert!(query["error_description"].contains(why), "{query:?}");
        assert!(!query.contains_key("code"));
    }
    app.stop().await;
}

/// Issue 8 item 4: a refresh request's scope is bounded the same way (JSON `invalid_scope`),
/// even when it only repeats granted tokens.
#[tokio::test]
async fn a_refresh_with_an_oversized_scope_is_invalid_scope() {
    let (app, _dir) = TestApp::spawn_configured(&|c| c["consent"] = "never".into()).await;
    let client_id = app.register_public(REDIRECT).await;
    let params = params_with(&client_id, REDIRECT, &[("scope", Some("read write"))]);
    let code = authorize_query(&app, USER, &params).await["code"].clone();
    let tokens_body: Value = app
        .exchange(&client_id, &code, REDIRECT)
        .await
        .json()
        .await
        .unwrap();
    let refresh_token = tokens_body["refresh_token"].as_str().unwrap().to_string();
    let refresh_with = |scope: String| {
        let (app, client_id, refresh_token) = (&app, client_id.clone(), refresh_token.clone());
        async move {
            app.token(&[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", &refresh_token),
                ("scope", &scope),
            ])
            .await
        }
    };
    let description = assert_oauth_error(
        refresh_with("read ".repeat(300)).await,
        400,
        "invalid_scope",
    )
    .await;
    assert!(description.contains("1024 bytes"), "{description}");
    let description =
        assert_oauth_error(refresh_with(tokens(65)).await, 400, "invalid_scope").await;
    assert!(description.contains("64 tokens"), "{description}");
    // Neither spent the token: a narrowing refresh still works.
    let response = refresh_with("read".into()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "read");
    app.stop().await;
}

/// Issue 8 item 4: a user holds at most `maxPendingCodesPerUser` (default 32) unredeemed
/// codes; the next request gets a `temporarily_unavailable` redirect. A redemption or the
/// codes' expiry frees places, and other users are not affected.
#[tokio::test]
async fn outstanding_codes_are_capped_per_user_and_freed_by_redemption_and_expiry() {
    let (app, _dir) = TestApp::spawn_configured(&|c| c["consent"] = "never".into()).await;
    let client_id = app.register_public(REDIRECT).await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    let mut codes = Vec::new();
    for _ in 0..32 {
        codes.push(authorize_query(&app, USER, &params).await["code"].clone());
    }
    let query = authorize_query(&app, USER, &params).await;
    assert_eq!(query["error"], "temporarily_unavailable", "{query:?}");
    assert!(!query.contains_key("code"));
    assert!(
        authorize_query(&app, "bob@example.com", &params)
            .await
            .contains_key("code")
    );

    let response = app.exchange(&client_id, &codes[0], REDIRECT).await;
    assert_eq!(response.status(), 200);
    assert!(
        authorize_query(&app, USER, &params)
            .await
            .contains_key("code")
    );
    assert_eq!(
        authorize_query(&app, USER, &params).await["error"],
        "temporarily_unavailable"
    );

    // Past the 60 s code lifetime every code is gone, and so is the count.
    app.clock.advance(61);
    for _ in 0..32 {
        assert!(
            authorize_query(&app, USER, &params)
                .await
                .contains_key("code")
        );
    }
    let response = app.exchange(&client_id, &codes[1], REDIRECT).await;
    assert_oauth_error(response, 400, "invalid_grant").await;
    app.stop().await;
}

/// Issue 8 item 4: the cap holds for codes issued by the consent answer too (303 with the
/// error), and `maxPendingCodes` bounds all users together.
#[tokio::test]
async fn the_consent_answer_and_all_users_together_are_capped() {
    let (app, _dir) = TestApp::spawn_configured(&|c| {
        c["consent"] = "always".into();
        c["maxPendingCodesPerUser"] = 1.into();
        c["maxPendingCodes"] = 2.into();
    })
    .await;
    let client_id = app.register_public(REDIRECT).await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    let approve = |user: &'static str| {
        let (app, params) = (&app, params.clone());
        async move {
            let page = app
                .authorize_as(Some(user), &params)
                .await
                .text()
                .await
                .unwrap();
            let response = app.answer_consent(&page, user, "approve").await;
            assert_eq!(response.status(), 303);
            redirected(app, &response)
        }
    };
    assert!(approve(USER).await.contains_key("code"));
    let query = approve(USER).await;
    assert_eq!(query["error"], "temporarily_unavailable", "{query:?}");
    assert!(approve("bob@example.com").await.contains_key("code"));
    let query = approve("carol@example.com").await;
    assert_eq!(query["error"], "temporarily_unavailable", "{query:?}");
    assert!(query["error_description"].contains("server"), "{query:?}");
    app.stop().await;
}

/// Issue 8 item 4: `/oauth/authorize` had no rate limit. By default a user may send 60 a
/// minute (a burst of 60, then one a second); the next gets a 429 page with `Retry-After`,
/// counted before the request is even validated. Other users are not affected.
#[tokio::test]
async fn authorize_is_rate_limited_per_user_with_a_429_page() {
    let (app, _dir) = TestApp::spawn_configured(&|c| {
        c["rateLimits"]
            .as_object_mut()
            .unwrap()
            .remove("authorizePerMinute");
    })
    .await;
    // No client_id: each request is a 400 page, and still counts.
    let params: Vec<(String, String)> = vec![];
    for _ in 0..60 {
        assert_page(app.authorize_as(Some(USER), &params).await, 400).await;
    }
    let response = app.authorize_as(Some(USER), &params).await;
    assert_eq!(response.headers()["retry-after"], "1");
    let page = assert_page(response, 429).await;
    assert!(page.contains("temporarily_unavailable"), "{page}");
    assert_page(
        app.authorize_as(Some("bob@example.com"), &params).await,
        400,
    )
    .await;
    app.clock.advance(1);
    assert_page(app.authorize_as(Some(USER), &params).await, 400).await;
    assert_page(app.authorize_as(Some(USER), &params).await, 429).await;
    app.stop().await;
}

/// `injectedRoles` large enough that every access token is over the verifier's 8 KiB.
fn huge_roles(c: &mut Value) {
    c["injectedRoles"] = json!(
        (0..100)
            .map(|i| format!("role-{i:03}-{}", "r".repeat(90)))
            .collect::<Vec<_>>()
    );
}

/// Issue 8 item 5: a token larger than the server's own verifier accepts (which could then
/// never be used, introspected or revoked) is never handed out: the code exchange and the
/// refresh answer 500 `server_error` instead, and the failed exchange leaves no sign-in.
#[tokio::test]
async fn an_access_token_over_the_verifiers_limit_is_never_issued() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Options {
        configure: &huge_roles,
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let client_id = app.register_public(REDIRECT).await;
    let code = app.code_for(&client_id, REDIRECT).await;
    let response = app.exchange(&client_id, &code, REDIRECT).await;
    let description = assert_oauth_error(response, 500, "server_error").await;
    assert!(description.contains("injectedRoles"), "{description}");
    assert!(app.state.store.families().await.unwrap().is_empty());
    app.stop().await;

    // A sign-in from before the roles grew: its refresh is refused the same way.
    let app = TestApp::spawn_with(Options {
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let (client_id, tokens) = app.signed_in_client().await;
    app.stop().await;
    let app = TestApp::spawn_with(Options {
        configure: &huge_roles,
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let response = app.refresh(&client_id, refresh_token).await;
    assert_oauth_error(response, 500, "server_error").await;
    app.stop().await;
}
