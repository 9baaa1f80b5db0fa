//! The MCP server's side: the library middleware in front of a small protected router,
//! fed with real tokens from a real mcp-authd; introspection, revocation and key rotation.

use std::sync::Arc;

use crate::helpers::ManualClock;
use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_authd::clock::Clock as _;
use mcp_authd::resource::{
    Authenticator, Identity, IdentitySource, IntrospectionCheck, require_bearer,
};
use serde_json::{Value, json};

use crate::helpers::*;

/// A static admin token (at least 32 bytes).
const ADMIN_TOKEN: &str = "static-admin-token-static-admin-token-01";

/// Every tool the protected router knows.
const TOOLS: [&str; 3] = ["sentry__issues", "sentry__resolve", "github__merge"];

/// The `serverAuth` section an MCP server next to `app` would read.
fn server_auth(oauth_as: Value) -> String {
    json!({"serverAuth": {
        "oauthAs": oauth_as,
        "bearer": {"ci-admin": {"token": "${ADMIN}", "roles": ["admin"]}},
        "toolAccess": [
            {"roles": ["admin"], "tools": ["*"], "policy": "allow"},
            {"roles": ["mcp-user"], "tools": ["sentry__*"], "policy": "allow"}
        ]
    }, "mcpServers": {}})
    .to_string()
}

pub(crate) fn authenticator(oauth_as: Value) -> Authenticator {
    Authenticator::from_servers_json(&server_auth(oauth_as), |name| {
        (name == "ADMIN").then(|| ADMIN_TOKEN.to_string())
    })
    .unwrap()
}

fn default_oauth_as(app: &TestApp) -> Value {
    json!({"issuerUrl": app.base, "jwtSecret": SECRET})
}

/// A protected MCP-like router: `GET /tools` lists the visible tools, `POST /call/{tool}`
/// runs one, `GET /admin` needs the scope `mcp:admin`.
pub(crate) async fn protected(auth: Authenticator) -> (String, tokio::task::JoinHandle<()>) {
    let auth = Arc::new(auth);
    let list = |axum::extract::State(auth): axum::extract::State<Arc<Authenticator>>,
                who: Identity| async move {
        axum::Json(json!({
            "subject": who.subject,
            "source": format!("{:?}", who.source),
            "roles": who.roles,
            "groups": who.groups,
            "tools": auth.tool_access.visible(&who, TOOLS),
        }))
    };
    let call = |axum::extract::State(auth): axum::extract::State<Arc<Authenticator>>,
                axum::extract::Path(tool): axum::extract::Path<String>,
                who: Identity| async move {
        if auth.tool_access.is_allowed(&who, &tool) {
            (axum::http::StatusCode::OK, format!("{tool} ran")).into_response()
        } else {
            (axum::http::StatusCode::FORBIDDEN, "tool not allowed").into_response()
        }
    };
    let admin = |axum::extract::State(auth): axum::extract::State<Arc<Authenticator>>,
                 who: Identity| async move {
        if who.has_scope("mcp:admin") {
            "admin".into_response()
        } else {
            auth.insufficient_scope("mcp:admin").into_response()
        }
    };
    let router = Router::new()
        .route("/tools", get(list))
        .route("/call/{tool}", post(call))
        .route("/admin", get(admin))
        .layer(from_fn_with_state(auth.clone(), require_bearer))
        .with_state(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (base, task)
}

pub(crate) async fn get_tools(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = http.get(format!("{base}/tools"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn challenge_of(response: &reqwest::Response) -> String {
    response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Signs a JWT with arbitrary header and claims (for forgeries).
pub(crate) fn forge(header: Value, claims: Value, key: &[u8]) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = URL_SAFE_NO_PAD.encode(mcp_authd::secrets::hmac_raw(
        key,
        format!("{h}.{c}").as_bytes(),
    ));
    format!("{h}.{c}.{sig}")
}

#[tokio::test]
async fn a_valid_token_reaches_the_tool_with_its_identity() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, tokens) = app.signed_in_client().await;
    let (rs, _task) = protected(authenticator(default_oauth_as(&app))).await;
    let response = get_tools(&app.http, &rs, tokens["access_token"].as_str()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["subject"], USER);
    assert_eq!(body["source"], "OAuth");
    assert_eq!(body["roles"], json!(["mcp-user"]));
    assert_eq!(body["groups"], json!(["eng", "ops"]));
    // The OAuth user sees and may call only sentry__* tools.
    assert_eq!(body["tools"], json!(["sentry__issues", "sentry__resolve"]));
    let call = |tool: &'static str| {
        let request = app
            .http
            .post(format!("{rs}/call/{tool}"))
            .bearer_auth(tokens["access_token"].as_str().unwrap());
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(call("sentry__issues").await, 200);
    assert_eq!(call("github__merge").await, 403);
    assert!(!client_id.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_static_admin_token_sees_every_tool() {
    let (app, _dir) = TestApp::spawn().await;
    let (rs, _task) = protected(authenticator(default_oauth_as(&app))).await;
    let body: Value = get_tools(&app.http, &rs, Some(ADMIN_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["subject"], "ci-admin");
    assert_eq!(body["source"], format!("{:?}", IdentitySource::StaticToken));
    assert_eq!(body["tools"], json!(TOOLS));
    let response = app
        .http
        .post(format!("{rs}/call/github__merge"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn no_token_gets_401_with_the_resource_metadata_challenge() {
    let (app, _dir) = TestApp::spawn().await;
    let (rs, _task) = protected(authenticator(default_oauth_as(&app))).await;
    let response = get_tools(&app.http, &rs, None).await;
    assert_eq!(response.status(), 401);
    let challenge = challenge_of(&response);
    assert_eq!(
        challenge,
        format!(
            r#"Bearer resource_metadata="{}/.well-known/oauth-protected-resource/mcp""#,
            app.base
        )
    );
    // The challenge points at a document that exists and names this resource.
    let prm: Value = app
        .http
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            app.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], format!("{}/mcp", app.base));
    app.stop().await;
}

#[tokio::test]
async fn bad_tokens_get_401_invalid_token() {
    let (app, _dir) = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_client().await;
    let good = tokens["access_token"].as_str().unwrap().to_string();
    let claims = mcp_authd::verify_access_token(&good, &app.expectations()).unwrap();
    let body = serde_json::to_value(&claims).unwrap();
    let kid = mcp_authd::jwt::key_id(SECRET.as_bytes());
    let mut expired = body.clone();
    expired["exp"] = json!(1_000_000_000);
    let mut other_audience = body.clone();
    other_audience["aud"] = json!("https://other.example/mcp");
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt"}).to_string()),
        URL_SAFE_NO_PAD.encode(body.to_string())
    );
    let cases = [
        ("alg none", none),
        (
            "HS512",
            forge(
                json!({"alg": "HS512", "typ": "at+jwt", "kid": kid}),
                body.clone(),
                SECRET.as_bytes(),
            ),
        ),
        (
            "wrong key",
            forge(
                json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
                body.clone(),
                b"another-key-another-key-another-key!",
            ),
        ),
        (
            "no typ",
            forge(
                json!({"alg": "HS256", "kid": kid}),
                body.clone(),
                SECRET.as_bytes(),
            ),
        ),
        (
            "expired",
            forge(
                json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
                expired,
                SECRET.as_bytes(),
            ),
        ),
        (
            "other audience",
            forge(
                json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
                other_audience,
                SECRET.as_bytes(),
            ),
        ),
        (
            "a refresh token",
            tokens["refresh_token"].as_str().unwrap().to_string(),
        ),
        ("garbage", "not-a-token".to_string()),
    ];
    let (rs, _task) = protected(authenticator(default_oauth_as(&app))).await;
    assert_eq!(get_tools(&app.http, &rs, Some(&good)).await.status(), 200);
    for (what, token) in cases {
        let response = get_tools(&app.http, &rs, Some(&token)).await;
        assert_eq!(response.status(), 401, "{what}");
        assert!(
            challenge_of(&response).contains(r#"error="invalid_token""#),
            "{what}"
        );
        assert!(
            challenge_of(&response).contains("resource_metadata="),
            "{what}"
        );
    }
    // A resource server for another audience refuses a token minted for this one.
    let other = authenticator(
        json!({"issuerUrl": app.base, "jwtSecret": SECRET, "resourceUrl": "https://other.example/mcp"}),
    );
    let (other_rs, _other_task) = protected(other).await;
    assert_eq!(
        get_tools(&app.http, &other_rs, Some(&good)).await.status(),
        401
    );
    app.stop().await;
}

#[tokio::test]
async fn tokens_expire_on_the_resource_servers_clock() {
    let (app, _dir) = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_client().await;
    let clock = Arc::new(ManualClock::new(app.clock.now()));
    let auth = authenticator(default_oauth_as(&app)).with_clock(clock.clone());
    let (rs, _task) = protected(auth).await;
    let token = tokens["access_token"].as_str();
    assert_eq!(get_tools(&app.http, &rs, token).await.status(), 200);
    // 3600 s lifetime plus the 30 s leeway.
    clock.advance(3600 + 29);
    assert_eq!(get_tools(&app.http, &rs, token).await.status(), 200);
    clock.advance(2);
    assert_eq!(get_tools(&app.http, &rs, token).await.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn missing_scope_is_403_insufficient_scope() {
    let (app, _dir) = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_client().await;
    let (rs, _task) = protected(authenticator(default_oauth_as(&app))).await;
    let response = app
        .http
        .get(format!("{rs}/admin"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let challenge = challenge_of(&response);
    assert!(
        challenge.starts_with(r#"Bearer error="insufficient_scope", scope="mcp:admin""#),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata="));
    app.stop().await;
}

/// Pre-provisions a confidential client for the resource server; returns (id, secret).
async fn resource_server_credentials(app: &TestApp) -> (String, String) {
    let new = mcp_authd::oauth::register::provision(
        "MCP server",
        vec!["https://rs.example/unused".into()],
        0,
    )
    .unwrap();
    let creds = (new.client.client_id.clone(), new.secret.clone().unwrap());
    app.state.store.put_client(new.client).await.unwrap();
    creds
}

async fn introspect(app: &TestApp, id: &str, secret: &str, token: &str) -> reqwest::Response {
    app.http
        .post(app.url("/oauth/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// POST /oauth/revoke of `token` by the public client `client_id` (RFC 7009); always 200.
async fn revoke(app: &TestApp, client_id: &str, token: &str) {
    let response = app
        .http
        .post(app.url("/oauth/revoke"))
        .form(&[("token", token), ("client_id", client_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn introspection_follows_rfc_7662() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, tokens) = app.signed_in_client().await;
    let (id, secret) = resource_server_credentials(&app).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let response = introspect(&app, &id, &secret, access).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], USER);
    assert_eq!(body["client_id"], client_id);
    assert_eq!(body["aud"], format!("{}/mcp", app.base));
    assert_eq!(body["token_type"], "Bearer");

    let body: Value = introspect(&app, &id, &secret, refresh)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "refresh_token");

    for inactive in ["garbage", "", &format!("{access}x")] {
        let body: Value = introspect(&app, &id, &secret, inactive)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body, json!({"active": false}), "{inactive:?}");
    }
    // Public clients and bad credentials may not introspect.
    let response = app
        .http
        .post(app.url("/oauth/introspect"))
        .form(&[("token", access), ("client_id", &client_id)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(response, 401, "invalid_client").await;
    assert_oauth_error(
        introspect(&app, &id, "wrong", access).await,
        401,
        "invalid_client",
    )
    .await;
    // Advertised.
    let metadata: Value = app.metadata().await;
    assert_eq!(
        metadata["introspection_endpoint"],
        app.url("/oauth/introspect")
    );
    app.stop().await;
}

/// SPEC §17 (issue 8, item 8): anyone can register a `client_secret_post` or
/// `client_secret_basic` client; such a client may not introspect, or it would learn any
/// user's `sub`, scope and sign-in liveness from a token it found. Only clients added by the
/// operator may.
#[tokio::test]
async fn a_self_registered_confidential_client_cannot_introspect() {
    let (app, _dir) = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    for method in ["client_secret_post", "client_secret_basic"] {
        let registered: Value = app
            .register_raw(
                json!({"client_name": "MCP server", "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": method}),
            )
            .await
            .json()
            .await
            .unwrap();
        let id = registered["client_id"].as_str().unwrap();
        let secret = registered["client_secret"].as_str().unwrap();
        for token in [access, refresh, "garbage"] {
            let response = app
                .http
                .post(app.url("/oauth/introspect"))
                .form(&[
                    ("token", token),
                    ("client_id", id),
                    ("client_secret", secret),
                ])
                .send()
                .await
                .unwrap();
            let description = assert_oauth_error(response, 401, "invalid_client").await;
            assert!(description.contains("clients add"), "{description}");
            assert_oauth_error(
                introspect(&app, id, secret, token).await,
                401,
                "invalid_client",
            )
            .await;
        }
    }
    // A client the operator added still gets its answer.
    let (id, secret) = resource_server_credentials(&app).await;
    let body: Value = introspect(&app, &id, &secret, access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["active"], true);
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_access_token_is_refused_everywhere() {
    let (app, _dir) = TestApp::spawn().await;
    let (client_id, tokens) = app.signed_in_client().await;
    let (id, secret) = resource_server_credentials(&app).await;
    let access = tokens["access_token"].as_str().unwrap();
    let check = IntrospectionCheck::new(&app.url("/oauth/introspect"), &id, &secret)
        .unwrap()
        .with_cache_seconds(0);
    let (rs, _task) =
        protected(authenticator(default_oauth_as(&app)).with_introspection(check)).await;
    assert_eq!(get_tools(&app.http, &rs, Some(access)).await.status(), 200);

    // The client revokes its access token (RFC 7009).
    revoke(&app, &client_id, access).await;
    let body: Value = introspect(&app, &id, &secret, access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"active": false}));
    let response = get_tools(&app.http, &rs, Some(access)).await;
    assert_eq!(response.status(), 401);
    assert!(challenge_of(&response).contains(r#"error="invalid_token""#));
    // The refresh token is a separate grant and still works.
    assert_eq!(
        app.refresh(&client_id, tokens["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    app.stop().await;
}

/// The payload of a JWT, unverified.
fn decode_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Whether introspection calls `token` active.
async fn is_active(app: &TestApp, rs: &(String, String), token: &str) -> bool {
    let body: Value = introspect(app, &rs.0, &rs.1, token)
        .await
        .json()
        .await
        .unwrap();
    body["active"] == json!(true)
}

/// RFC 7009 §2.1: revoking a refresh token should also end the access tokens of the same
/// grant. Each access token names its sign-in (`sid`, a hash of the refresh family id), and
/// introspection calls it inactive once that sign-in is over, however it ended.
#[tokio::test]
async fn ending_a_sign_in_ends_its_access_tokens_at_introspection() {
    let (app, _dir) = TestApp::spawn().await;
    let rs = resource_server_credentials(&app).await;
    let access = |t: &Value| t["access_token"].as_str().unwrap().to_string();
    let refresh = |t: &Value| t["refresh_token"].as_str().unwrap().to_string();

    // Three sign-ins; each has an access token from the code and one from a refresh.
    let mut sign_ins = Vec::new();
    for _ in 0..3 {
        let (client_id, first) = app.signed_in_client().await;
        let response = app.refresh(&client_id, &refresh(&first)).await;
        assert_eq!(response.status(), 200);
        let second: Value = response.json().await.unwrap();
        sign_ins.push((client_id, first, second));
    }
    let (a, b, c) = (&sign_ins[0], &sign_ins[1], &sign_ins[2]);
    for (_, first, second) in &sign_ins {
        let claims = decode_claims(&access(first));
        let family_id = refresh(first).split_once('.').unwrap().0.to_string();
        assert_eq!(claims["sid"], decode_claims(&access(second))["sid"]);
        assert!(!claims["sid"].as_str().unwrap().contains(&family_id));
        assert!(is_active(&app, &rs, &access(first)).await);
    }

    // A: the client revokes its refresh token.
    revoke(&app, &a.0, &refresh(&a.2)).await;
    assert!(!is_active(&app, &rs, &access(&a.1)).await);
    assert!(!is_active(&app, &rs, &access(&a.2)).await);
    assert!(is_active(&app, &rs, &access(&b.2)).await);

    // B: its first refresh token is replayed after the grace window: reuse revokes the family.
    app.clock.advance(31);
    assert_eq!(app.refresh(&b.0, &refresh(&b.1)).await.status(), 400);
    assert!(!is_active(&app, &rs, &access(&b.2)).await);
    assert!(is_active(&app, &rs, &access(&c.2)).await);

    // C: the user is offboarded (what `mcp-authd tokens revoke --user` does).
    assert_eq!(app.state.store.revoke_user(USER).await.unwrap(), 1);
    assert!(!is_active(&app, &rs, &access(&c.1)).await);
    assert!(!is_active(&app, &rs, &access(&c.2)).await);
    // A resource server that introspects refuses it too.
    let check = IntrospectionCheck::new(&app.url("/oauth/introspect"), &rs.0, &rs.1)
        .unwrap()
        .with_cache_seconds(0);
    let (server, _task) =
        protected(authenticator(default_oauth_as(&app)).with_introspection(check)).await;
    let response = get_tools(&app.http, &server, Some(&access(&c.2))).await;
    assert_eq!(response.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn another_clients_access_token_cannot_be_revoked() {
    let (app, _dir) = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_client().await;
    let other = app.register_public(REDIRECT).await;
    let (id, secret) = resource_server_credentials(&app).await;
    let access = tokens["access_token"].as_str().unwrap();
    revoke(&app, &other, access).await;
    let body: Value = introspect(&app, &id, &secret, access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["active"], true);
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_introspection_endpoint_fails_closed() {
    let (app, _dir) = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_client().await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let check =
        IntrospectionCheck::new(&format!("http://{closed}/oauth/introspect"), "id", "secret")
            .unwrap();
    let (rs, _task) =
        protected(authenticator(default_oauth_as(&app)).with_introspection(check)).await;
    assert_eq!(
        get_tools(&app.http, &rs, tokens["access_token"].as_str())
            .await
            .status(),
        503
    );
    app.stop().await;
}

/// An introspection endpoint on loopback that reads each request, writes `answer` (possibly
/// nothing, or a response cut short) and then holds the connection open without a word more.
async fn stalling_introspection(answer: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/oauth/introspect", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 16 * 1024];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(&answer).await;
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                drop(socket);
            });
        }
    });
    url
}

/// An introspection endpoint that stalls, or answers more than anyone should read, leaves
/// the resource server waiting for at most its timeout and reading at most its cap; the token
/// is then refused with 503, never taken as active.
#[tokio::test]
async fn a_slow_or_oversized_introspection_answer_fails_closed() {
    let (app, _dir) = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_client().await;
    let access = tokens["access_token"].as_str().unwrap();
    let claims = decode_claims(access);
    let (jti, exp) = (
        claims["jti"].as_str().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    let now = app.clock.now();
    // "active": true first, so a reader without a cap would take it for an answer.
    let huge = format!(
        r#"{{"active": true, "padding": "{}"}}"#,
        "x".repeat(mcp_authd::resource::introspection::MAX_ANSWER_BYTES)
    );
    let full_huge = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{huge}",
        huge.len()
    );
    let chunked_huge = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{huge}\r\n",
        huge.len()
    );
    let timeout = std::time::Duration::from_millis(300);
    for (what, answer, error) in [
        ("no answer at all", Vec::new(), "no answer within"),
        (
            "a head and half a body",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{\"active\": true".to_vec(),
            "no answer within",
        ),
        ("a body over the cap", full_huge.into_bytes(), "at most 65536 bytes"),
        (
            "a chunked body over the cap, never ended",
            chunked_huge.into_bytes(),
            "at most 65536 bytes",
        ),
    ] {
        let url = stalling_introspection(answer).await;
        let check = || {
            IntrospectionCheck::new(&url, "id", "secret")
                .unwrap()
                .with_cache_seconds(0)
                .with_timeout(timeout)
        };
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            check().is_active(access, jti, exp, now),
        )
        .await
        .expect("the introspection timeout ends the wait");
        let error_text = outcome.unwrap_err().to_string();
        assert!(error_text.contains(error), "{what}: {error_text}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{what}");

        let (rs, _task) = protected(
            authenticator(default_oauth_as(&app)).with_introspection(check()),
        )
        .await;
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            get_tools(&app.http, &rs, Some(access)),
        )
        .await
        .expect("the introspection timeout ends the wait");
        assert_eq!(response.status(), 503, "{what}");
        assert!(
            challenge_of(&response).starts_with("Bearer resource_metadata="),
            "{what}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn key_rotation_keeps_tokens_valid_until_they_expire() {
    const NEW_SECRET: &str = "the-next-secret-the-next-secret-0123456789";
    let dir = tempfile::tempdir().unwrap();

    // 0. Before the rotation: the AS signs with SECRET.
    let app = TestApp::spawn_with(Options {
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let addr = app.addr;
    let (client_id, tokens) = app.signed_in_client().await;
    let old_token = tokens["access_token"].as_str().unwrap().to_string();
    let old_refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let old_rs_cfg = default_oauth_as(&app);

    // 1. Add the new secret to the resource servers, still accepting the old one.
    let new_rs_cfg =
        json!({"issuerUrl": app.base, "jwtSecret": NEW_SECRET, "previousJwtSecrets": [SECRET]});
    let (rs, _task) = protected(authenticator(new_rs_cfg)).await;
    assert_eq!(
        get_tools(&app.http, &rs, Some(&old_token)).await.status(),
        200
    );
    let (old_rs, _old_task) = protected(authenticator(old_rs_cfg)).await;
    app.stop().await;

    // 2. Switch the AS to the new secret, keeping the old one for verification.
    let app = TestApp::spawn_with(Options {
        configure: &|c| {
            c["jwtSecret"] = json!(NEW_SECRET);
            c["previousJwtSecrets"] = json!([SECRET]);
        },
        dir: Some(dir.path()),
        addr: Some(addr),
    })
    .await;
    let response = app.refresh(&client_id, &old_refresh).await;
    assert_eq!(response.status(), 200, "refresh tokens survive the switch");
    let new_token = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let new_kid = jsonwebtoken::decode_header(&new_token)
        .unwrap()
        .kid
        .unwrap();
    assert_eq!(new_kid, mcp_authd::jwt::key_id(NEW_SECRET.as_bytes()));
    assert_eq!(
        get_tools(&app.http, &rs, Some(&old_token)).await.status(),
        200
    );
    assert_eq!(
        get_tools(&app.http, &rs, Some(&new_token)).await.status(),
        200
    );
    // A resource server not yet updated refuses new tokens: update them first (step 1).
    assert_eq!(
        get_tools(&app.http, &old_rs, Some(&new_token))
            .await
            .status(),
        401
    );
    // The AS itself still accepts old tokens (introspection, revocation).
    let (id, secret) = resource_server_credentials(&app).await;
    let body: Value = introspect(&app, &id, &secret, &old_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["active"], true);

    // 3. After the old tokens expired, retire the old secret everywhere.
    let retired_rs_cfg = json!({"issuerUrl": app.base, "jwtSecret": NEW_SECRET});
    let (retired, _retired_task) = protected(authenticator(retired_rs_cfg)).await;
    assert_eq!(
        get_tools(&app.http, &retired, Some(&new_token))
            .await
            .status(),
        200
    );
    assert_eq!(
        get_tools(&app.http, &retired, Some(&old_token))
            .await
            .status(),
        401
    );
    app.stop().await;
}
