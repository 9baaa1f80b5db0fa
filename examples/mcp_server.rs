//! A small MCP server protected by mcp-authd: copy this file to protect your own.
//!
//! It speaks MCP's streamable HTTP transport in its simplest form (JSON-RPC over `POST /mcp`,
//! one JSON answer per request, no sessions) and offers two tools:
//!
//! - `echo` returns its `text` argument; any valid access token may call it;
//! - `admin_echo` does the same but needs the scope `mcp:admin`.
//!
//! Everything about authentication sits in [`authenticate`] and [`require_scope`] below:
//!
//! - no token, or a token that fails [`mcp_authd::verify_access_token`] → `401` with
//!   `WWW-Authenticate: Bearer resource_metadata="<this origin>/.well-known/oauth-protected-resource/mcp"`
//!   (plus `error="invalid_token"` when a token was presented), which is how MCP clients
//!   discover where to sign in;
//! - a tool that needs a scope the token lacks → `403` with
//!   `WWW-Authenticate: Bearer error="insufficient_scope", scope="mcp:admin", resource_metadata="…"`,
//!   so clients can ask the user for more (step-up).
//!
//! MCP clients fetch the protected resource metadata (RFC 9728) from the MCP server's own
//! origin, so this server serves it too, at `/.well-known/oauth-protected-resource[/mcp]`,
//! naming mcp-authd as its authorization server.
//!
//! Run (with mcp-authd on 127.0.0.1:8080 and `resourceUrl` = `http://127.0.0.1:9000/mcp`):
//!
//! ```sh
//! MCP_AUTH_JWT_SECRET=... MCP_AUTH_ISSUER=http://127.0.0.1:8080 \
//!   cargo run --example mcp_server -- --listen 127.0.0.1:9000
//! ```
//!
//! Settings (a command-line flag wins over the environment):
//!
//! | flag | environment | default |
//! |---|---|---|
//! | `--listen ADDR` | `MCP_LISTEN` | `127.0.0.1:9000` |
//! | `--issuer URL` | `MCP_AUTH_ISSUER` | `http://127.0.0.1:8080` (mcp-authd's `issuerUrl`) |
//! | `--resource URL` | `MCP_AUTH_RESOURCE` | `http://<listen>/mcp` (mcp-authd's `resourceUrl`) |
//! | — | `MCP_AUTH_JWT_SECRET` | required (mcp-authd's `jwtSecret`) |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mcp_authd::{TokenExpectations, verify_access_token};
use serde_json::{Value, json};
use tower_http::cors::{Any, CorsLayer};

/// The scope `admin_echo` needs.
pub const ADMIN_SCOPE: &str = "mcp:admin";

/// How this server checks tokens and describes itself.
#[derive(Clone, Debug)]
pub struct Settings {
    /// mcp-authd's `issuerUrl`, compared exactly with the token's `iss`.
    pub issuer: String,
    /// This server's MCP URL (mcp-authd's `resourceUrl`), which must be the token's `aud`.
    pub resource: String,
    /// The shared HS256 secret (mcp-authd's `jwtSecret`).
    pub secret: Vec<u8>,
}

impl Settings {
    /// The protected resource metadata URL for [`Settings::resource`], on the same origin
    /// (RFC 9728 §3.1: the well-known segment goes between the host and the path).
    pub fn resource_metadata_url(&self) -> String {
        match url::Url::parse(&self.resource) {
            Ok(url) => format!(
                "{}/.well-known/oauth-protected-resource{}",
                url.origin().ascii_serialization(),
                url.path().trim_end_matches('/')
            ),
            Err(_) => format!("{}/.well-known/oauth-protected-resource", self.resource),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication: the only part that knows about OAuth. Swap it for your framework's middleware.
// ---------------------------------------------------------------------------------------------

/// Who is calling, from a verified access token.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The user the SSO proxy signed in (`sub`).
    pub user: String,
    /// The OAuth client acting for the user.
    pub client_id: String,
    /// The scopes granted to the token.
    pub scopes: Vec<String>,
    /// The user's groups, as the proxy reported them.
    pub groups: Vec<String>,
}

/// Checks the bearer token of a request. On failure, returns the `401` to send as is.
#[allow(clippy::result_large_err)] // the ready-made response is the point; failures are rare
pub fn authenticate(settings: &Settings, headers: &HeaderMap) -> Result<Identity, Response> {
    let Some(token) = bearer_token(headers) else {
        return Err(challenge(
            StatusCode::UNAUTHORIZED,
            settings,
            None,
            "invalid_token",
            "an access token is required",
        ));
    };
    let expectations = TokenExpectations {
        issuer: settings.issuer.clone(),
        audience: settings.resource.clone(),
        secret: settings.secret.clone(),
        leeway_seconds: 30,
    };
    match verify_access_token(token, &expectations) {
        Ok(claims) => Ok(Identity {
            user: claims.sub,
            client_id: claims.client_id,
            scopes: claims
                .scope
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            groups: claims.groups,
        }),
        // The reason is safe to show: it never contains the token.
        Err(why) => Err(challenge(
            StatusCode::UNAUTHORIZED,
            settings,
            Some("error=\"invalid_token\""),
            "invalid_token",
            &why.to_string(),
        )),
    }
}

/// Requires `scope` of an authenticated caller. On failure, returns the `403` to send as is.
#[allow(clippy::result_large_err)] // as for `authenticate`
pub fn require_scope(settings: &Settings, who: &Identity, scope: &str) -> Result<(), Response> {
    if who.scopes.iter().any(|s| s == scope) {
        return Ok(());
    }
    Err(challenge(
        StatusCode::FORBIDDEN,
        settings,
        Some(&format!("error=\"insufficient_scope\", scope=\"{scope}\"")),
        "insufficient_scope",
        &format!("this tool needs the scope {scope}"),
    ))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A 401 or 403 with its `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9728 §5.1).
fn challenge(
    status: StatusCode,
    settings: &Settings,
    params: Option<&str>,
    error: &str,
    description: &str,
) -> Response {
    let mut value = String::from("Bearer ");
    if let Some(params) = params {
        value.push_str(params);
        value.push_str(", ");
    }
    value.push_str(&format!(
        "resource_metadata=\"{}\"",
        settings.resource_metadata_url()
    ));
    let body = Json(json!({"error": error, "error_description": description}));
    match HeaderValue::from_str(&value) {
        Ok(value) => (status, [(header::WWW_AUTHENTICATE, value)], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, body).into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// The server's routes: `/mcp` and the protected resource metadata, with CORS for browser
/// clients.
pub fn router(settings: Settings) -> Router {
    let settings = Arc::new(settings);
    let mut metadata_paths = vec!["/.well-known/oauth-protected-resource".to_string()];
    let specific = settings
        .resource_metadata_url()
        .split_once("/.well-known/")
        .map(|(_, rest)| format!("/.well-known/{rest}"));
    if let Some(path) = specific.filter(|p| !metadata_paths.contains(p)) {
        metadata_paths.push(path);
    }
    let mut router = Router::new().route("/mcp", post(mcp_post).get(mcp_other).delete(mcp_other));
    for path in metadata_paths {
        router = router.route(&path, get(protected_resource_metadata));
    }
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("mcp-session-id"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("mcp-session-id"),
        ]);
    router.layer(cors).with_state(settings)
}

/// `GET /.well-known/oauth-protected-resource[/mcp]` (RFC 9728).
async fn protected_resource_metadata(State(settings): State<Arc<Settings>>) -> Json<Value> {
    Json(json!({
        "resource": settings.resource,
        "authorization_servers": [settings.issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-authd example MCP server",
    }))
}

/// `GET` and `DELETE /mcp`: this server opens no server-to-client stream and keeps no
/// sessions, so both answer 405 (after authentication, so that a probe still learns where to
/// sign in).
async fn mcp_other(State(settings): State<Arc<Settings>>, headers: HeaderMap) -> Response {
    if let Err(response) = authenticate(&settings, &headers) {
        return response;
    }
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static("POST"))],
    )
        .into_response()
}

/// `POST /mcp`: one JSON-RPC message.
async fn mcp_post(
    State(settings): State<Arc<Settings>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match authenticate(&settings, &headers) {
        Ok(who) => who,
        Err(response) => return response,
    };
    let message: Value = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(_) => return rpc_error(Value::Null, -32700, "parse error"),
    };
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        // A response from the client (we never ask it anything): accepted, nothing to say.
        return StatusCode::ACCEPTED.into_response();
    };
    let Some(id) = message.get("id").cloned() else {
        // A notification, e.g. `notifications/initialized`.
        return StatusCode::ACCEPTED.into_response();
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "initialize" => rpc_result(id, initialize(&params)),
        "ping" => rpc_result(id, json!({})),
        "tools/list" => rpc_result(id, json!({ "tools": tools() })),
        "tools/call" => call_tool(&settings, &who, id, &params),
        _ => rpc_error(id, -32601, &format!("method not found: {method}")),
    }
}

// ---------------------------------------------------------------------------------------------
// MCP
// ---------------------------------------------------------------------------------------------

/// Protocol versions this server speaks, oldest first.
const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The `initialize` result: the client's protocol version when we speak it, else our latest.
fn initialize(params: &Value) -> Value {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let version = requested
        .filter(|v| PROTOCOL_VERSIONS.contains(v))
        .or(PROTOCOL_VERSIONS.last().copied())
        .unwrap_or_default();
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "mcp-authd-example", "version": env!("CARGO_PKG_VERSION") },
        "instructions": "Call echo with {\"text\": …}; admin_echo needs the scope mcp:admin."
    })
}

/// The tool list.
fn tools() -> Value {
    let schema = json!({
        "type": "object",
        "properties": { "text": { "type": "string", "description": "What to send back" } },
        "required": ["text"]
    });
    json!([
        {
            "name": "echo",
            "description": "Returns its text argument.",
            "inputSchema": schema,
        },
        {
            "name": "admin_echo",
            "description": "Returns its text argument, prefixed with the caller; needs the scope mcp:admin.",
            "inputSchema": schema,
        }
    ])
}

/// `tools/call`.
fn call_tool(settings: &Settings, who: &Identity, id: Value, params: &Value) -> Response {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let text = params
        .pointer("/arguments/text")
        .and_then(Value::as_str)
        .unwrap_or("");
    let output = match name {
        "echo" => text.to_string(),
        "admin_echo" => {
            if let Err(response) = require_scope(settings, who, ADMIN_SCOPE) {
                return response;
            }
            format!("{} (admin): {text}", who.user)
        }
        _ => return rpc_error(id, -32602, &format!("unknown tool: {name}")),
    };
    rpc_result(
        id,
        json!({ "content": [{ "type": "text", "text": output }], "isError": false }),
    )
}

fn rpc_result(id: Value, result: Value) -> Response {
    Json(json!({ "jsonrpc": "2.0", "id": id, "result": result })).into_response()
}

fn rpc_error(id: Value, code: i64, message: &str) -> Response {
    Json(json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }))
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------------

/// Reads the settings from the command line and the environment.
fn settings_from_env() -> Result<(SocketAddr, Settings), String> {
    let mut args = std::env::args().skip(1);
    let mut flags = std::collections::HashMap::new();
    while let Some(flag) = args.next() {
        let name = match flag.as_str() {
            "--listen" | "--issuer" | "--resource" => flag.trim_start_matches("--").to_string(),
            _ => return Err(format!("unknown argument {flag}")),
        };
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        flags.insert(name, value);
    }
    let setting =
        |flag: &str, env: &str| flags.get(flag).cloned().or_else(|| std::env::var(env).ok());
    let listen: SocketAddr = setting("listen", "MCP_LISTEN")
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let issuer = setting("issuer", "MCP_AUTH_ISSUER")
        .unwrap_or_else(|| "http://127.0.0.1:8080".into())
        .trim_end_matches('/')
        .to_string();
    let resource =
        setting("resource", "MCP_AUTH_RESOURCE").unwrap_or(format!("http://{listen}/mcp"));
    let secret = std::env::var("MCP_AUTH_JWT_SECRET").unwrap_or_default();
    if secret.len() < 32 {
        return Err(
            "MCP_AUTH_JWT_SECRET must hold mcp-authd's jwtSecret (at least 32 bytes)".into(),
        );
    }
    Ok((
        listen,
        Settings {
            issuer,
            resource,
            secret: secret.into_bytes(),
        },
    ))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let (listen, settings) = match settings_from_env() {
        Ok(ok) => ok,
        Err(why) => {
            eprintln!("mcp_server: {why}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("mcp_server: cannot listen on {listen}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!(
        "mcp_server: serving {} (authorization server {})",
        settings.resource, settings.issuer
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, router(settings))
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp_server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
