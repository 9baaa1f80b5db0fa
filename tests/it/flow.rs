//! The complete flow a real MCP client runs, step by step.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn register_authorize_consent_token_refresh_and_reuse_detection() {
    let (app, _dir) = TestApp::spawn().await;

    // Register as a public client.
    let client_id = app.register_public(REDIRECT).await;

    // Authorize through the "proxy": a dynamic client gets the consent page first.
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    let response = app.authorize_as(Some(USER), &params).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "no CORS on authorize"
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("Test client") && page.contains("unverified"));
    assert!(page.contains("127.0.0.1") && page.contains(USER));

    // Approve: 303 to the client with code, state and iss.
    let response = app.answer_consent(&page, USER, "approve").await;
    assert_eq!(response.status(), 303);
    let query = query_of(&location(&response));
    assert!(location(&response).starts_with(REDIRECT));
    assert_eq!(query["state"], "xyz");
    assert_eq!(query["iss"], app.base);
    let code = query["code"].clone();

    // Exchange the code.
    let response = app.exchange(&client_id, &code, REDIRECT).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    // The access token carries every claim and verifies with the library API.
    let claims = mcp_authd::verify_access_token(
        tokens["access_token"].as_str().unwrap(),
        &app.expectations(),
    )
    .expect("access token verifies");
    assert_eq!(claims.sub, USER);
    assert_eq!(claims.client_id, client_id);
    assert_eq!(claims.aud, format!("{}/mcp", app.base));
    assert_eq!(claims.groups, vec!["eng", "ops"]);
    assert_eq!(claims.roles, vec!["mcp-user"]);
    assert_eq!(claims.exp - claims.iat, 3600);
    let header = jsonwebtoken::decode_header(tokens["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));

    // The approval is remembered: the next authorization skips the page.
    let response = app.authorize_as(Some(USER), &params).await;
    assert_eq!(response.status(), 302);

    // Refresh rotates.
    let response = app.refresh(&client_id, &first_refresh).await;
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.unwrap();
    let second_refresh = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second_refresh, first_refresh);

    // A retry with the old token inside the grace window gets the same successor.
    app.clock.advance(10);
    let response = app.refresh(&client_id, &first_refresh).await;
    assert_eq!(response.status(), 200);
    let retried: Value = response.json().await.unwrap();
    assert_eq!(retried["refresh_token"], second_refresh.as_str());

    // Outside the window, reuse revokes the whole family, including the live token.
    app.clock.advance(60);
    let description = assert_oauth_error(
        app.refresh(&client_id, &first_refresh).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(description.contains("revoked"), "{description}");
    assert_oauth_error(
        app.refresh(&client_id, &second_refresh).await,
        400,
        "invalid_grant",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn three_back_to_back_refreshes_like_claude_code() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, tokens) = app.signed_in_client().await;
    let mut refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let response = app.refresh(&client_id, &refresh).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        refresh = body["refresh_token"].as_str().unwrap().to_string();
    }
    app.stop().await;
}
