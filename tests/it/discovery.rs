//! Discovery (RFC 8414, RFC 9728), CORS, the root aliases and the health check.

// The helpers in this file run only inside tests, where a failed step should panic.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// GETs `url` and returns the status and the body text.
async fn get_text(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A CORS preflight for a POST (or GET) from a browser client that sends `MCP-Protocol-Version`.
async fn preflight(http: &reqwest::Client, url: &str, method: &str) -> reqwest::Response {
    http.request(Method::OPTIONS, url)
        .header("Origin", "https://inspector.example")
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", "mcp-protocol-version")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn authorization_server_metadata_has_every_required_field() {
    let (app, _dir) = TestApp::spawn().await;
    let response = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "metadata is JSON"
    );
    let doc: Value = response.json().await.unwrap();

    // RFC 8414 §3.3: the issuer is exactly the URL the metadata was derived from.
    assert_eq!(doc["issuer"], json!(app.base));
    assert_eq!(
        doc["authorization_endpoint"],
        json!(app.url("/oauth/authorize"))
    );
    assert_eq!(doc["token_endpoint"], json!(app.url("/oauth/token")));
    assert_eq!(
        doc["registration_endpoint"],
        json!(app.url("/oauth/register"))
    );
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(
        doc["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    let mut methods: Vec<String> = doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .expect("token_endpoint_auth_methods_supported is a list")
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    methods.sort();
    assert_eq!(
        methods,
        [
            "client_secret_basic",
            "client_secret_post",
            "none",
            "private_key_jwt"
        ]
    );
    assert_eq!(doc["client_id_metadata_document_supported"], json!(true));
    assert!(doc["scopes_supported"].is_array(), "{doc}");
    assert_eq!(
        doc["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    app.stop().await;
}

#[tokio::test]
async fn openid_configuration_serves_the_same_json() {
    let (app, _dir) = TestApp::spawn().await;
    let (status, rfc8414) = get_text(
        &app.http,
        &app.url("/.well-known/oauth-authorization-server"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, openid) = get_text(&app.http, &app.url("/.well-known/openid-configuration")).await;
    assert_eq!(status, 200);
    let rfc8414: Value = serde_json::from_str(&rfc8414).unwrap();
    let openid: Value = serde_json::from_str(&openid).unwrap();
    assert_eq!(rfc8414, openid);
    app.stop().await;
}

#[tokio::test]
async fn scopes_supported_are_advertised_in_both_documents() {
    let (app, _dir) = TestApp::spawn_configured(&|c| {
        c["scopesSupported"] = json!(["mcp:tools", "mcp:resources"])
    })
    .await;
    let metadata: Value = app.metadata().await;
    assert_eq!(
        metadata["scopes_supported"],
        json!(["mcp:tools", "mcp:resources"])
    );
    let prm: Value = app.get_json("/.well-known/oauth-protected-resource").await;
    assert_eq!(
        prm["scopes_supported"],
        json!(["mcp:tools", "mcp:resources"])
    );
    app.stop().await;
}

#[tokio::test]
async fn protected_resource_metadata_at_the_root_and_the_resource_path() {
    let (app, _dir) = TestApp::spawn().await;
    let issuer: Value = app.metadata().await;
    let mut documents = Vec::new();
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let doc: Value = response.json().await.unwrap();
        assert_eq!(doc["resource"], json!(app.url("/mcp")), "{path}");
        assert_eq!(doc["authorization_servers"], json!([app.base]), "{path}");
        // Byte-identical to the issuer the client will compare with (Python SDK, claude.ai).
        assert_eq!(doc["authorization_servers"][0], issuer["issuer"], "{path}");
        documents.push(doc);
    }
    assert_eq!(documents[0], documents[1]);
    app.stop().await;
}

#[tokio::test]
async fn path_issuer_gets_path_aware_discovery_and_endpoints_under_its_path() {
    let (app, _dir) = TestApp::spawn_configured(&|c| {
        c["issuerUrl"] = json!(format!("{}/auth", c["issuerUrl"].as_str().unwrap()))
    })
    .await;
    let issuer = app.url("/auth");

    // RFC 8414 §3.1: path insertion.
    let response = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server/auth"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["issuer"], json!(issuer));
    assert_eq!(doc["token_endpoint"], json!(app.url("/auth/oauth/token")));
    assert_eq!(
        doc["authorization_endpoint"],
        json!(app.url("/auth/oauth/authorize"))
    );
    assert_eq!(
        doc["registration_endpoint"],
        json!(app.url("/auth/oauth/register"))
    );
    let openid: Value = app.get_json("/.well-known/openid-configuration/auth").await;
    assert_eq!(openid, doc);

    // The PRM names the resource under the issuer and the issuer byte for byte.
    let response = app
        .http
        .get(app.url("/.well-known/oauth-protected-resource/auth/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let prm: Value = response.json().await.unwrap();
    assert_eq!(prm["resource"], json!(app.url("/auth/mcp")));
    assert_eq!(prm["authorization_servers"], json!([issuer]));

    // The advertised endpoints really are there: a whole flow under /auth.
    let response = app
        .http
        .post(app.url("/auth/oauth/register"))
        .json(&json!({"client_name": "Path client", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let registered: Value = response.json().await.unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_string();
    let response = app
        .http
        .get(app.url("/auth/oauth/authorize"))
        .query(&TestApp::authorize_params(&client_id, REDIRECT))
        .header("X-Forwarded-User", USER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "consent page");
    let page = response.text().await.unwrap();
    assert!(
        page.contains("action=\"/auth/oauth/authorize/consent\"")
            || page.contains(&app.url("/auth/oauth/authorize/consent"))
    );
    let response = app
        .http
        .post(app.url("/auth/oauth/authorize/consent"))
        .header("X-Forwarded-User", USER)
        .form(&[
            ("ticket", consent_ticket(&page).as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let query = query_of(&location(&response));
    assert_eq!(query["iss"], issuer);
    let response = app
        .http
        .post(app.url("/auth/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id.as_str()),
            ("code", query["code"].as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let expectations = mcp_authd::TokenExpectations {
        issuer: issuer.clone(),
        audience: app.url("/auth/mcp"),
        secret: SECRET.as_bytes().to_vec(),
        leeway_seconds: 0,
    };
    let claims =
        mcp_authd::verify_access_token(tokens["access_token"].as_str().unwrap(), &expectations)
            .expect("the token names the path issuer and resource");
    assert_eq!(claims.iss, issuer);
    app.stop().await;
}

#[tokio::test]
async fn cors_preflight_is_answered_on_public_endpoints() {
    let (app, _dir) = TestApp::spawn().await;
    for (path, method) in [
        ("/.well-known/oauth-authorization-server", "GET"),
        ("/.well-known/openid-configuration", "GET"),
        ("/.well-known/oauth-protected-resource", "GET"),
        ("/.well-known/oauth-protected-resource/mcp", "GET"),
        ("/oauth/register", "POST"),
        ("/oauth/token", "POST"),
        ("/oauth/revoke", "POST"),
        ("/register", "POST"),
        ("/token", "POST"),
    ] {
        let response = preflight(&app.http, &app.url(path), method).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let headers = response.headers();
        assert_eq!(
            headers
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            Some("*"),
            "{path}"
        );
        let allowed = headers
            .get("access-control-allow-headers")
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .unwrap_or_default();
        for header in ["mcp-protocol-version", "authorization", "content-type"] {
            assert!(
                allowed.contains(header),
                "{path}: allow-headers {allowed:?} lacks {header}"
            );
        }
        let methods = headers
            .get("access-control-allow-methods")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            methods.contains(method),
            "{path}: allow-methods {methods:?}"
        );
    }

    // A simple cross-origin request also gets the headers, and WWW-Authenticate is exposed.
    let response = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .header("Origin", "https://inspector.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .header("Origin", "https://inspector.example")
        .form(&[("grant_type", "authorization_code")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(
        response.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("www-authenticate")
    );
    app.stop().await;
}

#[tokio::test]
async fn authorize_never_carries_cors_headers() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    for path in ["/oauth/authorize", "/authorize", "/oauth/authorize/consent"] {
        let response = preflight(&app.http, &app.url(path), "GET").await;
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{path} preflight"
        );
        assert!(
            response
                .headers()
                .get("access-control-allow-methods")
                .is_none(),
            "{path} preflight"
        );
    }
    let response = app
        .http
        .get(app.url("/oauth/authorize"))
        .query(&TestApp::authorize_params(&client_id, REDIRECT))
        .header("Origin", "https://evil.example")
        .header("X-Forwarded-User", USER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.stop().await;
}

#[tokio::test]
async fn root_aliases_run_a_whole_flow_and_post_token_never_redirects() {
    let (app, _dir) = TestApp::spawn().await;

    // /register
    let response = app
        .http
        .post(app.url("/register"))
        .json(&json!({"client_name": "Alias client", "redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let registered: Value = response.json().await.unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_string();

    // /authorize
    let response = app
        .http
        .get(app.url("/authorize"))
        .query(&TestApp::authorize_params(&client_id, REDIRECT))
        .header("X-Forwarded-User", USER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "consent page");
    let page = response.text().await.unwrap();
    let response = app.answer_consent(&page, USER, "approve").await;
    assert_eq!(response.status(), 303);
    let query = query_of(&location(&response));
    assert_eq!(query["iss"], app.base);
    let code = query["code"].clone();

    // POST /token: an answer, never a redirect (a redirect would turn the POST into a GET).
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let response = app
        .http
        .post(app.url("/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("location").is_none());
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["refresh_token"].is_string());

    // An error on /token is JSON too, not a redirect.
    let response = app
        .http
        .post(app.url("/token"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("location").is_none());
    assert_oauth_error(response, 401, "invalid_client").await;
    app.stop().await;
}

#[tokio::test]
async fn healthz_is_ok_while_serving() {
    let (app, _dir) = TestApp::spawn().await;
    let (status, _) = get_text(&app.http, &app.url("/healthz")).await;
    assert_eq!(status, 200);
    for probe in ["/livez", "/readyz", "/healthz"] {
        let (status, body) = get_text(&app.http, &app.url(probe)).await;
        assert_eq!(status, 200, "{probe}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body, json!({"status": "ok"}), "{probe}");
    }
    app.stop().await;
}
