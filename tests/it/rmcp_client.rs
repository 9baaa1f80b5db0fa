//! The Rust MCP SDK client (`rmcp` with its `auth` feature) signs in from nothing against
//! mcp-authd and the example MCP server, both in this process: 401 → protected resource
//! metadata → AS metadata → dynamic registration → authorize (as the proxy sends it, with the
//! consent page) → token → `tools/call echo` → a forced refresh → `echo` again.

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, InitializeRequestParams};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::example_server::McpServer;
use crate::helpers::*;

/// mcp-authd (whose `resourceUrl` is the MCP server) and the example MCP server.
async fn servers() -> (TestApp, tempfile::TempDir, McpServer) {
    let (listener, mcp_url) = McpServer::bind().await;
    let resource = mcp_url.clone();
    let configure = move |section: &mut Value| {
        section["resourceUrl"] = json!(resource);
    };
    let (app, dir) = TestApp::spawn_configured(&configure).await;
    let server = McpServer::start(listener, mcp_url, &app.base);
    (app, dir, server)
}

fn text_of(result: &impl serde::Serialize) -> String {
    serde_json::to_value(result).unwrap()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn rmcp_client_signs_in_calls_a_tool_and_refreshes() {
    let (app, _dir, server) = servers().await;
    let timeout = std::time::Duration::from_secs(60);
    tokio::time::timeout(timeout, async {
        // 1. Unauthenticated connection: the server's 401 challenge starts discovery.
        let transport = StreamableHttpClientTransport::with_client(
            reqwest013::Client::default(),
            StreamableHttpClientTransportConfig::with_uri(server.url.as_str()),
        );
        let error = InitializeRequestParams::default()
            .serve(transport)
            .await
            .expect_err("the MCP server requires a token");
        let challenge = error
            .auth_challenge()
            .expect("a WWW-Authenticate challenge")
            .to_string();
        assert!(
            challenge.contains("resource_metadata="),
            "challenge: {challenge}"
        );

        // 2. PRM → AS metadata → DCR, and the authorization URL.
        let redirect = "http://127.0.0.1:47113/callback";
        let mut oauth = OAuthState::new(server.url.as_str(), None).await.unwrap();
        oauth
            .start_authorization(
                AuthorizationRequest::new(redirect)
                    .with_client_name("rmcp test client")
                    .with_challenge(challenge),
            )
            .await
            .unwrap();
        let authorize_url = oauth.get_authorization_url().await.unwrap();
        assert!(authorize_url.starts_with(&app.url("/oauth/authorize?")));
        let query = query_of(&authorize_url);
        assert_eq!(query["resource"], server.url);

        // 3. The browser behind the SSO proxy: the consent page, approved.
        let response = app
            .http
            .get(&authorize_url)
            .header("X-Forwarded-User", USER)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "a self-registered client sees consent"
        );
        let page = response.text().await.unwrap();
        assert!(page.contains("rmcp test client"));
        let response = app.answer_consent(&page, USER, "approve").await;
        assert_eq!(response.status(), 303);
        let callback = location(&response);
        assert!(callback.starts_with(redirect), "{callback}");

        // 4. The callback: code + state + iss → token.
        oauth.handle_callback_url(&callback).await.unwrap();
        let manager = oauth.into_authorization_manager().unwrap();
        let auth_client = AuthClient::new(reqwest013::Client::default(), manager);
        let refresh_before = auth_client
            .auth_manager
            .lock()
            .await
            .get_credentials()
            .await
            .unwrap();

        // 5. Authorized: initialize, tools/list, tools/call.
        let transport = StreamableHttpClientTransport::with_client(
            auth_client.clone(),
            StreamableHttpClientTransportConfig::with_uri(server.url.as_str()),
        );
        let client = InitializeRequestParams::default()
            .serve(transport)
            .await
            .unwrap();
        let tools = client.peer().list_all_tools().await.unwrap();
        let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        let mut expected: Vec<_> = crate::example_server::mcp_server::TOOLS
            .iter()
            .map(|(name, _)| name.to_string())
            .collect();
        expected.sort();
        assert_eq!(names, expected);
        let args = json!({"text": "hello from rmcp"});
        let result = client
            .peer()
            .call_tool(
                CallToolRequestParams::new("echo")
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        assert_eq!(text_of(&result), "hello from rmcp");

        // 6. A forced refresh rotates the refresh token, and the new access token works.
        let refreshed = auth_client
            .auth_manager
            .lock()
            .await
            .refresh_token()
            .await
            .unwrap();
        let after = serde_json::to_value(&refreshed).unwrap();
        let before = serde_json::to_value(&refresh_before.1).unwrap();
        assert_ne!(after["refresh_token"], before["refresh_token"]);
        assert_ne!(after["access_token"], before["access_token"]);
        let args = json!({"text": "after refresh"});
        let result = client
            .peer()
            .call_tool(
                CallToolRequestParams::new("echo")
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        assert_eq!(text_of(&result), "after refresh");

        // 7. admin_echo needs mcp:admin, which this token lacks: the call fails (403).
        let args = json!({"text": "x"});
        let denied = client
            .peer()
            .call_tool(
                CallToolRequestParams::new("admin_echo")
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await;
        assert!(denied.is_err(), "admin_echo without mcp:admin: {denied:?}");
        let _ = client.cancel().await;
    })
    .await
    .expect("the rmcp flow finishes within a minute");
    drop(server);
    app.stop().await;
}
