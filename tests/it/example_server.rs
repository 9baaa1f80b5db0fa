//! The example MCP server (`examples/mcp_server.rs`) run in-process: the helper other tests use
//! to start it, and its per-tool access control, step-up and challenges.

use serde_json::{Value, json};

use crate::helpers::*;

// The example a user copies is the server under test.
#[allow(dead_code)]
#[path = "../../examples/mcp_server.rs"]
pub mod mcp_server;

/// A static admin token for the example's `serverAuth.bearer`.
const ADMIN_TOKEN: &str = "example-admin-token-example-admin-token-1";

/// The example MCP server on a loopback port; stops when dropped.
pub struct McpServer {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for McpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl McpServer {
    /// Binds a port first, so that mcp-authd can be configured with the resource URL.
    pub async fn bind() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        (listener, url)
    }

    /// Serves the example on `listener`, trusting tokens from `issuer` (no access rules).
    pub fn start(listener: tokio::net::TcpListener, url: String, issuer: &str) -> Self {
        let settings = mcp_server::Settings::new(issuer, &url, SECRET).unwrap();
        Self::start_with(listener, url, settings)
    }

    /// Serves the example on `listener` with `settings`.
    pub fn start_with(
        listener: tokio::net::TcpListener,
        url: String,
        settings: mcp_server::Settings,
    ) -> Self {
        let router = mcp_server::router(settings);
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { url, task }
    }

    /// Sends one JSON-RPC request with `token`; returns the HTTP response.
    async fn rpc(&self, token: &str, method: &str, params: Value) -> reqwest::Response {
        client(None)
            .post(&self.url)
            .bearer_auth(token)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .unwrap()
    }

    /// The names `tools/list` shows to `token`.
    async fn tool_names(&self, token: &str) -> Vec<String> {
        let body: Value = self
            .rpc(token, "tools/list", json!({}))
            .await
            .json()
            .await
            .unwrap();
        body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Calls `tool`; returns the JSON-RPC body.
    async fn call(&self, token: &str, tool: &str) -> Value {
        let params = json!({"name": tool, "arguments": {"text": "hi"}});
        let response = self.rpc(token, "tools/call", params).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// mcp-authd whose `resourceUrl` is the example server, and the example configured from a
/// `servers.json` with a static admin token and the documented access rules.
async fn servers_with_rules() -> (TestApp, tempfile::TempDir, McpServer) {
    let (listener, url) = McpServer::bind().await;
    let resource = url.clone();
    let configure = move |section: &mut Value| section["resourceUrl"] = json!(resource);
    let (app, dir) = TestApp::spawn_configured(&configure).await;
    let servers_json = json!({"serverAuth": {
        "oauthAs": {"issuerUrl": app.base, "jwtSecret": "${MCP_AUTH_JWT_SECRET}", "resourceUrl": url},
        "bearer": {"ops-admin": {"token": "${MCP_ADMIN_TOKEN}", "roles": ["admin"]}},
        "toolAccess": [
            {"roles": ["admin"], "tools": ["*"], "policy": "allow"},
            {"roles": ["mcp-user"], "tools": ["sentry__*"], "policy": "allow"}
        ]
    }});
    let env = |name: &str| match name {
        "MCP_AUTH_JWT_SECRET" => Some(SECRET.to_string()),
        "MCP_ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_string()),
        _ => None,
    };
    let settings = mcp_server::Settings::from_servers_json(&servers_json.to_string(), env).unwrap();
    let mcp = McpServer::start_with(listener, url, settings);
    (app, dir, mcp)
}

#[tokio::test]
async fn oauth_users_see_only_sentry_tools_and_a_static_admin_sees_everything() {
    let (app, _dir, mcp) = servers_with_rules().await;
    let (_, tokens) = app.signed_in_client().await;
    let user = tokens["access_token"].as_str().unwrap();

    // An OAuth user (role mcp-user from injectedRoles) sees and may call sentry__* only.
    assert_eq!(
        mcp.tool_names(user).await,
        ["sentry__list_issues", "sentry__resolve_issue"]
    );
    let ok = mcp.call(user, "sentry__list_issues").await;
    assert!(
        ok["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains(USER)
    );
    for hidden in ["github__merge_pr", "echo", "admin_echo"] {
        let refused = mcp.call(user, hidden).await;
        assert_eq!(refused["error"]["code"], -32602, "{hidden}: {refused}");
        assert_eq!(
            refused["error"]["message"],
            format!("unknown tool: {hidden}")
        );
    }

    // The static admin token sees and may call everything.
    let names: Vec<&str> = mcp_server::TOOLS.iter().map(|(n, _)| *n).collect();
    assert_eq!(mcp.tool_names(ADMIN_TOKEN).await, names);
    for tool in names {
        let body = mcp.call(ADMIN_TOKEN, tool).await;
        assert!(body.get("result").is_some(), "{tool}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_missing_scope_asks_for_step_up_and_no_token_asks_to_sign_in() {
    let (listener, url) = McpServer::bind().await;
    let resource = url.clone();
    let configure = move |section: &mut Value| section["resourceUrl"] = json!(resource);
    let app = TestApp::spawn_with(Options {
        configure: &configure,
        ..Default::default()
    })
    .await;
    let mcp = McpServer::start(listener, url.clone(), &app.base);
    let (_, tokens) = app.signed_in_client().await;
    let user = tokens["access_token"].as_str().unwrap();

    // No access rules: everything is listed; admin_echo still needs the scope.
    assert_eq!(mcp.tool_names(user).await.len(), mcp_server::TOOLS.len());
    let params = json!({"name": "admin_echo", "arguments": {"text": "hi"}});
    let response = mcp.rpc(user, "tools/call", params).await;
    assert_eq!(response.status(), 403);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with(r#"Bearer error="insufficient_scope", scope="mcp:admin""#));

    // Without a token: 401 pointing at this server's own metadata, which names mcp-authd.
    let response = client(None)
        .post(&url)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let origin = url.trim_end_matches("/mcp");
    let metadata_url = format!("{origin}/.well-known/oauth-protected-resource/mcp");
    assert_eq!(
        response.headers()["www-authenticate"],
        format!(r#"Bearer resource_metadata="{metadata_url}""#).as_str()
    );
    let prm: Value = client(None)
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], url);
    assert_eq!(prm["authorization_servers"], json!([app.base]));
    app.stop().await;
}

#[tokio::test]
async fn a_tool_needing_a_wider_scope_names_every_scope_it_needs_in_one_challenge() {
    let (listener, url) = McpServer::bind().await;
    let resource = url.clone();
    let configure = move |section: &mut Value| section["resourceUrl"] = json!(resource);
    let app = TestApp::spawn_with(Options {
        configure: &configure,
        ..Default::default()
    })
    .await;
    let mcp = McpServer::start(listener, url, &app.base);
    let client_id = app.register_public(REDIRECT).await;
    let token_with = |scope: &'static str| {
        let app = &app;
        let client_id = client_id.clone();
        async move {
            let params = params_with(&client_id, REDIRECT, &[("scope", Some(scope))]);
            let mut response = app.authorize_as(Some(USER), &params).await;
            if response.status() == 200 {
                let page = response.text().await.unwrap();
                response = app.answer_consent(&page, USER, "approve").await;
            }
            let code = query_of(&location(&response))["code"].clone();
            let tokens: Value = app
                .exchange(&client_id, &code, REDIRECT)
                .await
                .json()
                .await
                .unwrap();
            tokens["access_token"].as_str().unwrap().to_string()
        }
    };
    let call = |token: String| {
        let mcp = &mcp;
        async move {
            let params = json!({"name": "admin_audit", "arguments": {"text": "hi"}});
            mcp.rpc(&token, "tools/call", params).await
        }
    };
    // Holding mcp:admin (enough for admin_echo) is not enough: the challenge names both
    // scopes admin_audit needs, not only the missing one.
    for scope in ["mcp:tools", "mcp:admin"] {
        let response = call(token_with(scope).await).await;
        assert_eq!(response.status(), 403, "{scope}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.starts_with(r#"Bearer error="insufficient_scope", scope="mcp:admin mcp:audit", resource_metadata=""#),
            "{scope}: {challenge}"
        );
        assert_eq!(challenge.matches("Bearer").count(), 1, "one challenge");
    }
    let response = call(token_with("mcp:admin mcp:audit").await).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["result"]["content"][0]["text"],
        format!("audit by {USER}: hi")
    );
    app.stop().await;
}
