//! Fixtures for the clients that cannot run here (a vendor's cloud or a GUI): each test replays
//! the requests that client sends, as recorded in the client reference (redirect URIs,
//! registration bodies, discovery order, token authentication, refresh habits), and checks
//! every answer the client depends on. One test per client.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::helpers::*;

/// A server whose allowlist also holds `extra` patterns.
async fn spawn_allowing(extra: &[&str]) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let configure = move |section: &mut Value| {
        let list = section["redirectUriAllowlist"].as_array_mut().unwrap();
        list.extend(extra.iter().map(|p| json!(p)));
    };
    let app = TestApp::spawn_with(Options {
        configure: &configure,
        dir: Some(dir.path()),
        addr: None,
    })
    .await;
    (app, dir)
}

/// GETs a discovery document: 200, JSON, no nulls.
async fn discover(app: &TestApp, path: &str) -> Value {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let doc: Value = response.json().await.unwrap();
    assert_no_nulls(&doc, path);
    doc
}

/// The discovery chain every MCP client walks: PRM (path-aware, then root) names the issuer,
/// and the AS metadata's `issuer` is byte-identical to it (Python SDK, Claude, Gemini CLI).
async fn discovery_chain(app: &TestApp) -> Value {
    let prm = discover(app, "/.well-known/oauth-protected-resource/mcp").await;
    assert_eq!(
        prm,
        discover(app, "/.well-known/oauth-protected-resource").await,
        "the root PRM is the same document"
    );
    assert_eq!(prm["authorization_servers"], json!([app.base]));
    assert_eq!(prm["resource"], json!(app.url("/mcp")));
    let metadata = discover(app, "/.well-known/oauth-authorization-server").await;
    assert_eq!(metadata["issuer"], prm["authorization_servers"][0]);
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        json!(["S256"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    metadata
}

/// POSTs a registration body to `path`; asserts 201 (never a redirect) and no nulls.
async fn register(app: &TestApp, path: &str, body: Value) -> Value {
    let response = app
        .http
        .post(app.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "registration at {path}");
    let registered: Value = response.json().await.unwrap();
    assert_no_nulls(&registered, "registration");
    assert!(registered["client_id"].is_string());
    assert_eq!(registered["redirect_uris"], body["redirect_uris"]);
    assert!(registered["client_id_issued_at"].is_u64());
    registered
}

/// The authorize query a client sends; `scope` and `resource` only when given.
fn authorize_query(
    client_id: &str,
    redirect: &str,
    state: &str,
    scope: Option<&str>,
    resource: Option<&str>,
) -> Vec<(String, String)> {
    let mut query = vec![
        ("response_type", "code".to_string()),
        ("client_id", client_id.to_string()),
        ("redirect_uri", redirect.to_string()),
        ("state", state.to_string()),
        ("code_challenge", challenge(VERIFIER)),
        ("code_challenge_method", "S256".to_string()),
    ];
    if let Some(scope) = scope {
        query.push(("scope", scope.to_string()));
    }
    if let Some(resource) = resource {
        query.push(("resource", resource.to_string()));
    }
    query.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// What a browser run through the proxy ends with.
struct Redirect {
    /// The `Location` the client's redirect URI receives.
    location: String,
    /// Its query.
    query: HashMap<String, String>,
    /// Whether the consent page was shown on the way.
    consent_shown: bool,
}

/// The browser behind the SSO proxy: GET `path` (the authorization endpoint or its root
/// alias) with `X-Forwarded-User`, approving the consent page when it is shown.
async fn browse(app: &TestApp, path: &str, query: &[(String, String)]) -> Redirect {
    let response = app
        .http
        .get(app.url(path))
        .query(query)
        .header("X-Forwarded-User", USER)
        .send()
        .await
        .unwrap();
    let (response, consent_shown) = if response.status() == 200 {
        let page = response.text().await.unwrap();
        let approved = app.answer_consent(&page, USER, "approve").await;
        assert_eq!(approved.status(), 303);
        (approved, true)
    } else {
        assert_eq!(response.status(), 302, "authorize redirects");
        (response, false)
    };
    let location = location(&response);
    let query_sent: HashMap<_, _> = query.iter().cloned().collect();
    let query = query_of(&location);
    assert_eq!(query.get("iss"), Some(&app.base), "RFC 9207 iss");
    assert_eq!(query.get("state"), query_sent.get("state"), "state echoed");
    Redirect {
        location,
        query,
        consent_shown,
    }
}

/// POSTs a token request to `path`, optionally with HTTP Basic credentials.
async fn token_request(
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut request = app.http.post(app.url(path)).form(form);
    if let Some((id, secret)) = basic {
        request = request.header(
            "Authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        );
    }
    request.send().await.unwrap()
}

/// Asserts a successful token response as every client parses it; returns the body.
async fn assert_tokens(app: &TestApp, response: reqwest::Response) -> Value {
    assert_eq!(
        response.status(),
        200,
        "exactly 200 (the Python SDK insists)"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let tokens: Value = response.json().await.unwrap();
    assert_no_nulls(&tokens, "token response");
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].is_u64());
    assert!(tokens["refresh_token"].is_string());
    mcp_authd::verify_access_token(
        tokens["access_token"].as_str().unwrap(),
        &app.expectations(),
    )
    .expect("the access token verifies at the MCP server");
    tokens
}

fn claims(app: &TestApp, tokens: &Value) -> mcp_authd::AccessTokenClaims {
    mcp_authd::verify_access_token(
        tokens["access_token"].as_str().unwrap(),
        &app.expectations(),
    )
    .unwrap()
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap()
}

#[tokio::test]
async fn claude_ai() {
    let (app, _dir) = spawn_allowing(&["https://claude.com/api/mcp/auth_callback"]).await;
    discovery_chain(&app).await;
    let redirect = "https://claude.ai/api/mcp/auth_callback";
    let resource = app.url("/mcp");

    // claude.ai's backend (python-httpx) registers as a confidential client_secret_post client;
    // when discovery fails it makes up /register, /token and /authorize at the origin root.
    let body = json!({
        "client_name": "Claude",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_post"
    });
    let registered = register(&app, "/register", body).await;
    assert_eq!(
        registered["token_endpoint_auth_method"],
        "client_secret_post"
    );
    assert_eq!(registered["client_secret_expires_at"], 0);
    let client_id = str_of(&registered["client_id"]);
    let secret = str_of(&registered["client_secret"]);

    // The same through the advertised endpoint, with the claude.com callback.
    let other = register(
        &app,
        "/oauth/register",
        json!({"client_name": "Claude", "redirect_uris": ["https://claude.com/api/mcp/auth_callback"],
               "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    assert!(other["client_secret"].is_string());

    // Authorize at the root alias, with `resource`; the consent page first.
    let query = authorize_query(client_id, redirect, "claude-state", None, Some(&resource));
    let back = browse(&app, "/authorize", &query).await;
    assert!(back.consent_shown);
    assert!(back.location.starts_with(&format!("{redirect}?")));
    let code = back.query["code"].as_str();

    // Token at the root alias, client_secret_post, never redirected.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
        ("resource", resource.as_str()),
        ("client_id", client_id),
        ("client_secret", secret),
    ];
    let tokens = assert_tokens(&app, token_request(&app, "/token", &form, None).await).await;
    assert_eq!(claims(&app, &tokens).client_id, client_id);

    // Refresh, also with post; a forgotten secret is invalid_client.
    let refresh = str_of(&tokens["refresh_token"]);
    let no_secret = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", client_id),
    ];
    assert_oauth_error(
        token_request(&app, "/token", &no_secret, None).await,
        401,
        "invalid_client",
    )
    .await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("resource", resource.as_str()),
        ("client_id", client_id),
        ("client_secret", secret),
    ];
    let rotated = assert_tokens(&app, token_request(&app, "/token", &form, None).await).await;
    assert_ne!(rotated["refresh_token"], tokens["refresh_token"]);
    app.stop().await;
}

#[tokio::test]
async fn chatgpt() {
    let (app, _dir) = spawn_allowing(&["https://chatgpt.com/connector/oauth/*"]).await;
    let metadata = discovery_chain(&app).await;
    // ChatGPT uses the stable callback only when the AS advertises RFC 9207 `iss`.
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );
    let methods = metadata["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(methods.contains(&json!("client_secret_post")) && methods.contains(&json!("none")));
    // `resource` is PRM.resource, verbatim.
    let prm = discover(&app, "/.well-known/oauth-protected-resource/mcp").await;
    let resource = str_of(&prm["resource"]).to_string();

    for (redirect, method) in [
        (
            "https://chatgpt.com/connector_platform_oauth_redirect",
            "none",
        ),
        (
            "https://chatgpt.com/connector/oauth/3f9a1c2e7b5d",
            "client_secret_post",
        ),
    ] {
        let registered = register(
            &app,
            "/oauth/register",
            json!({
                "client_name": "ChatGPT",
                "redirect_uris": [redirect],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": method
            }),
        )
        .await;
        let client_id = str_of(&registered["client_id"]).to_string();
        let secret = registered["client_secret"].as_str().map(str::to_string);
        let exchange = |code: String| {
            let mut form = vec![
                ("grant_type", "authorization_code".to_string()),
                ("code", code),
                ("redirect_uri", redirect.to_string()),
                ("code_verifier", VERIFIER.to_string()),
                ("resource", resource.clone()),
                ("client_id", client_id.clone()),
            ];
            if let Some(secret) = &secret {
                form.push(("client_secret", secret.clone()));
            }
            form
        };

        // First connection: scope from the metadata, as in the reported request.
        let query = authorize_query(
            &client_id,
            redirect,
            "oauth_s_691b55f5b114",
            Some("mcp:tools"),
            Some(&resource),
        );
        let back = browse(&app, "/oauth/authorize", &query).await;
        assert!(back.consent_shown);
        let form = exchange(back.query["code"].clone());
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let tokens = assert_tokens(&app, app.token(&form).await).await;
        assert_eq!(claims(&app, &tokens).scope, "mcp:tools");

        // Disconnect + connect: ChatGPT omits `scope` (community.openai.com t/1366784). The
        // request succeeds with the client's registered scope (none here); consent is
        // remembered, so there is no page.
        let query = authorize_query(
            &client_id,
            redirect,
            "oauth_s_691b57560b64",
            None,
            Some(&resource),
        );
        let back = browse(&app, "/oauth/authorize", &query).await;
        assert!(!back.consent_shown, "approval is remembered");
        let form = exchange(back.query["code"].clone());
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let tokens = assert_tokens(&app, app.token(&form).await).await;
        assert_eq!(claims(&app, &tokens).scope, "");
    }
    app.stop().await;
}

#[tokio::test]
async fn cursor() {
    let (app, _dir) = spawn_allowing(&["https://www.cursor.com/agents/mcp/oauth/callback"]).await;
    // Cursor probes the path-suffixed PRM, then the root (it may lose `resource_metadata`).
    discovery_chain(&app).await;
    let uris = [
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "https://www.cursor.com/agents/mcp/oauth/callback",
        "http://localhost:8787/callback",
    ];
    // Three redirect URIs in one registration: refusing one would kill all of them.
    let registered = register(
        &app,
        "/oauth/register",
        json!({
            "client_name": "Cursor",
            "redirect_uris": uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none"
        }),
    )
    .await;
    assert_eq!(registered["token_endpoint_auth_method"], "none");
    assert!(registered.get("client_secret").is_none());
    let client_id = str_of(&registered["client_id"]);
    let resource = app.url("/mcp");

    // The desktop app signs in through its private-use scheme; consent once.
    let mut consented = false;
    for redirect in [uris[0], uris[2]] {
        let query = authorize_query(client_id, redirect, "cursor", None, Some(&resource));
        let back = browse(&app, "/oauth/authorize", &query).await;
        assert_eq!(back.consent_shown, !consented);
        consented = true;
        assert!(
            back.location.starts_with(&format!("{redirect}?")),
            "{}",
            back.location
        );
        let form = [
            ("grant_type", "authorization_code"),
            ("code", back.query["code"].as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
            ("resource", resource.as_str()),
            ("client_id", client_id),
        ];
        assert_tokens(&app, app.token(&form).await).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn vs_code() {
    // VS Code registers `http://127.0.0.1/` (no port) beside `http://127.0.0.1:33418/`.
    let body = json!({
        "client_name": "Visual Studio Code",
        "client_uri": "https://code.visualstudio.com",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [
            "https://insiders.vscode.dev/redirect",
            "https://vscode.dev/redirect",
            "http://127.0.0.1/",
            "http://127.0.0.1:33418/"
        ],
        "token_endpoint_auth_method": "none",
        "application_type": "native"
    });

    // With only `http://127.0.0.1:*` in the allowlist, the port-less URI is not allowed and the
    // whole registration is refused, naming it: the operator must list it (README).
    let (strict, _strict_dir) = spawn_allowing(&[
        "https://vscode.dev/redirect",
        "https://insiders.vscode.dev/redirect",
    ])
    .await;
    let description = assert_oauth_error(
        strict.register_raw(body.clone()).await,
        400,
        "invalid_redirect_uri",
    )
    .await;
    assert!(
        description.contains("redirect_uri rejected: http://127.0.0.1/"),
        "{description}"
    );
    strict.stop().await;

    let (app, _dir) = spawn_allowing(&[
        "https://vscode.dev/redirect",
        "https://insiders.vscode.dev/redirect",
        "http://127.0.0.1/",
    ])
    .await;
    discovery_chain(&app).await;
    let registered = register(&app, "/oauth/register", body).await;
    let client_id = str_of(&registered["client_id"]);
    let resource = app.url("/mcp");

    // Port 33418 is busy, so VS Code listens on another port (microsoft/vscode#278512): the
    // loopback URI matches whatever the port (RFC 8252 §7.3), and the code goes there.
    for redirect in [
        "http://127.0.0.1:59656/",
        "http://127.0.0.1:33418/",
        "https://vscode.dev/redirect",
    ] {
        let query = authorize_query(client_id, redirect, "vscode", None, Some(&resource));
        let back = browse(&app, "/oauth/authorize", &query).await;
        assert!(
            back.location.starts_with(&format!("{redirect}?")),
            "{}",
            back.location
        );
        let form = [
            ("grant_type", "authorization_code"),
            ("code", back.query["code"].as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
            ("resource", resource.as_str()),
            ("client_id", client_id),
        ];
        assert_tokens(&app, app.token(&form).await).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn gemini_cli() {
    let (app, _dir) = TestApp::spawn().await;
    discovery_chain(&app).await;
    // The configured MCP URL; Gemini CLI demands PRM.resource == protocol//host+pathname of it
    // exactly (ResourceMismatchError otherwise): no trailing slash, same case.
    let configured = url::Url::parse(&app.url("/mcp")).unwrap();
    let authority = match configured.port() {
        Some(port) => format!("{}:{port}", configured.host_str().unwrap()),
        None => configured.host_str().unwrap().to_string(),
    };
    let expected = format!("{}://{authority}{}", configured.scheme(), configured.path());
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        assert_eq!(discover(&app, path).await["resource"], json!(expected));
    }

    // Registration with `scope: ""` when no scope is configured.
    let redirect = "http://localhost:7777/oauth/callback";
    let registered = register(
        &app,
        "/oauth/register",
        json!({
            "client_name": "Gemini CLI MCP Client",
            "redirect_uris": [redirect],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": ""
        }),
    )
    .await;
    let client_id = str_of(&registered["client_id"]);

    // No scope on authorize (none configured); `resource` as computed above.
    let query = authorize_query(client_id, redirect, "gemini", None, Some(&expected));
    let back = browse(&app, "/oauth/authorize", &query).await;
    assert!(back.consent_shown);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", back.query["code"].as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
        ("resource", expected.as_str()),
        ("client_id", client_id),
    ];
    let tokens = assert_tokens(&app, app.token(&form).await).await;
    assert_eq!(claims(&app, &tokens).scope, "");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", str_of(&tokens["refresh_token"])),
        ("client_id", client_id),
    ];
    assert_tokens(&app, app.token(&form).await).await;
    app.stop().await;
}

#[tokio::test]
async fn gemini_enterprise() {
    let (app, _dir) = TestApp::spawn().await;
    // No DCR: the admin pre-provisions a confidential client (`mcp-authd clients add`); its
    // redirect URI is checked for safety but needs no allowlist entry.
    let redirect = "https://vertexaisearch.cloud.google.com/oauth-redirect";
    let provisioned = mcp_authd::oauth::register::provision(
        "Gemini Enterprise",
        vec![redirect.to_string()],
        app.state.now(),
    )
    .unwrap();
    let secret = provisioned.secret.clone().unwrap();
    let client_id = provisioned.client.client_id.clone();
    app.state
        .store
        .put_client(provisioned.client)
        .await
        .unwrap();
    let resource = app.url("/mcp");

    // Pre-provisioned clients skip the consent page; both token authentication methods work.
    for basic in [true, false] {
        let query = authorize_query(&client_id, redirect, "gemini-ent", None, Some(&resource));
        let back = browse(&app, "/oauth/authorize", &query).await;
        assert!(
            !back.consent_shown,
            "no consent page for a provisioned client"
        );
        let code = back.query["code"].clone();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
            ("resource", resource.as_str()),
        ];
        let response = if basic {
            token_request(&app, "/oauth/token", &form, Some((&client_id, &secret))).await
        } else {
            form.extend([
                ("client_id", client_id.as_str()),
                ("client_secret", secret.as_str()),
            ]);
            token_request(&app, "/oauth/token", &form, None).await
        };
        let tokens = assert_tokens(&app, response).await;
        // Refresh with the same method.
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", str_of(&tokens["refresh_token"])),
        ];
        let response = if basic {
            token_request(&app, "/oauth/token", &form, Some((&client_id, &secret))).await
        } else {
            form.extend([
                ("client_id", client_id.as_str()),
                ("client_secret", secret.as_str()),
            ]);
            token_request(&app, "/oauth/token", &form, None).await
        };
        assert_tokens(&app, response).await;
    }

    // A wrong secret over Basic: 401 with a Basic challenge.
    let form = [("grant_type", "refresh_token"), ("refresh_token", "x.y")];
    let response = token_request(
        &app,
        "/oauth/token",
        &form,
        Some((&client_id, "wrong-secret")),
    )
    .await;
    assert!(response.headers().contains_key("www-authenticate"));
    assert_oauth_error(response, 401, "invalid_client").await;
    app.stop().await;
}

#[tokio::test]
async fn claude_code() {
    let (app, _dir) = TestApp::spawn().await;
    // `claude mcp login` skips the 401 probe and goes straight to the path-aware PRM.
    discovery_chain(&app).await;
    let redirect = "http://localhost:54213/callback";
    let registered = register(
        &app,
        "/oauth/register",
        json!({
            "client_name": "Claude Code (srv)",
            "redirect_uris": [redirect],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "native"
        }),
    )
    .await;
    let client_id = str_of(&registered["client_id"]);
    let resource = app.url("/mcp");
    let query = authorize_query(client_id, redirect, "claude-code", None, Some(&resource));
    let back = browse(&app, "/oauth/authorize", &query).await;
    assert!(back.consent_shown);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", back.query["code"].as_str()),
        ("code_verifier", VERIFIER),
        ("redirect_uri", redirect),
        ("client_id", client_id),
        ("resource", resource.as_str()),
    ];
    let mut tokens = assert_tokens(&app, app.token(&form).await).await;

    // `claude mcp list` refreshed three times in a row: each rotation works and the previous
    // token is spent.
    let mut spent = Vec::new();
    for _ in 0..3 {
        let refresh = str_of(&tokens["refresh_token"]).to_string();
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", client_id),
            ("resource", resource.as_str()),
        ];
        let next = assert_tokens(&app, app.token(&form).await).await;
        assert_ne!(next["refresh_token"], tokens["refresh_token"]);
        assert_ne!(next["access_token"], tokens["access_token"]);
        spent.push(refresh);
        tokens = next;
    }
    assert_eq!(spent.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn python_sdk() {
    let (app, _dir) = TestApp::spawn().await;
    discovery_chain(&app).await;
    let redirect = "http://localhost:3030/callback";

    // `mcp` 2.x registers without token_endpoint_auth_method (RFC 7591 default: basic); the
    // server answers with a public client, and no secret (check_registration_usable).
    let registered = register(
        &app,
        "/oauth/register",
        json!({
            "response_types": ["code"],
            "client_name": "mcp-authd e2e (Python SDK)",
            "redirect_uris": [redirect],
            "grant_types": ["authorization_code", "refresh_token"],
            "application_type": "native"
        }),
    )
    .await;
    assert_eq!(registered["token_endpoint_auth_method"], "none");
    assert!(registered.get("client_secret").is_none());
    let client_id = str_of(&registered["client_id"]);
    let resource = app.url("/mcp");

    // Public: client_id in the body only.
    let query = authorize_query(client_id, redirect, "py", None, Some(&resource));
    let back = browse(&app, "/oauth/authorize", &query).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", back.query["code"].as_str()),
        ("redirect_uri", redirect),
        ("client_id", client_id),
        ("code_verifier", VERIFIER),
        ("resource", resource.as_str()),
    ];
    let tokens = assert_tokens(&app, app.token(&form).await).await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", str_of(&tokens["refresh_token"])),
        ("client_id", client_id),
        ("resource", resource.as_str()),
    ];
    assert_tokens(&app, app.token(&form).await).await;

    // When a registration does name client_secret_basic, the Python SDK sends Basic *and*
    // client_id in the body.
    let registered = register(
        &app,
        "/oauth/register",
        json!({
            "redirect_uris": [redirect],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "mcp-authd e2e (Python SDK, confidential)"
        }),
    )
    .await;
    let client_id = str_of(&registered["client_id"]);
    let secret = str_of(&registered["client_secret"]);
    let query = authorize_query(client_id, redirect, "py2", None, Some(&resource));
    let back = browse(&app, "/oauth/authorize", &query).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", back.query["code"].as_str()),
        ("redirect_uri", redirect),
        ("client_id", client_id),
        ("code_verifier", VERIFIER),
        ("resource", resource.as_str()),
    ];
    let response = token_request(&app, "/oauth/token", &form, Some((client_id, secret))).await;
    let tokens = assert_tokens(&app, response).await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", str_of(&tokens["refresh_token"])),
        ("client_id", client_id),
    ];
    let response = token_request(&app, "/oauth/token", &form, Some((client_id, secret))).await;
    assert_tokens(&app, response).await;
    app.stop().await;
}
