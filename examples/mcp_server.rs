//! A small MCP server protected by mcp-authd: copy this file to protect your own.
//!
//! It speaks MCP's streamable HTTP transport in its simplest form (JSON-RPC over `POST /mcp`,
//! one JSON answer per request, no sessions) and offers these tools:
//!
//! - `echo` returns its `text` argument;
//! - `admin_echo` does the same but needs the OAuth scope `mcp:admin` (step-up);
//! - `admin_audit` needs a wider scope still, `mcp:admin` and `mcp:audit`: a token short of
//!   either gets one challenge naming both;
//! - `sentry__list_issues`, `sentry__resolve_issue` and `github__merge_pr` stand in for the
//!   tools of real integrations, to show per-tool access control.
//!
//! Authentication is the library's: an [`Authenticator`] built from `serverAuth` and the
//! [`require_bearer`] middleware in front of `/mcp`. So:
//!
//! - no token, or a token that is not an mcp-authd access token for this server → `401` with
//!   `WWW-Authenticate: Bearer resource_metadata="<this origin>/.well-known/oauth-protected-resource/mcp"`
//!   (plus `error="invalid_token"` when a token was presented), which is how MCP clients
//!   discover where to sign in;
//! - a tool that needs a scope the token lacks → `403` with
//!   `WWW-Authenticate: Bearer error="insufficient_scope", scope="mcp:admin", resource_metadata="…"`,
//!   where `scope` lists every scope the tool needs (`scope="mcp:admin mcp:audit"` for
//!   `admin_audit`), so the client can step up in one authorization;
//! - `serverAuth.toolAccess` filters `tools/list` and refuses `tools/call` of anything else,
//!   for OAuth users and static bearer tokens alike.
//!
//! MCP clients fetch the protected resource metadata (RFC 9728) from the MCP server's own
//! origin, so this server serves it too, naming mcp-authd as its authorization server.
//!
//! Two hosts (mcp-authd's `additionalIssuers`, e.g. an internal host for VPN clients and a
//! public one for cloud clients): tokens of every issuer are accepted, each for its own
//! resource URL, and the metadata and the challenges a request gets are those of the host it
//! was addressed to (`X-Forwarded-Host`, else `Host`).
//!
//! Run it with a `servers.json`. It reads `serverAuth.oauthAs`, `.bearer` and `.toolAccess`,
//! and the tokens' audience is `oauthAs.resourceUrl` (and each `additionalIssuers` entry's):
//!
//! ```sh
//! MCP_AUTH_JWT_SECRET=... MCP_ADMIN_TOKEN=... \
//!   cargo run --example mcp_server -- --config config/servers.local.json --listen 127.0.0.1:9000
//! ```
//!
//! Or run it without one, configured from the environment (no static tokens, no access rules):
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
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mcp_authd::resource::{Authenticator, Identity, require_bearer};
use serde_json::{Value, json};
use tower_http::cors::{Any, CorsLayer};

/// The scope `admin_echo` needs.
pub const ADMIN_SCOPE: &str = "mcp:admin";

/// The scopes `admin_audit` needs: a wider set than `admin_echo`'s.
pub const AUDIT_SCOPES: &[&str] = &[ADMIN_SCOPE, "mcp:audit"];

/// Every tool this server has, with its description.
pub const TOOLS: &[(&str, &str)] = &[
    ("echo", "Returns its text argument."),
    (
        "admin_echo",
        "Returns its text argument, prefixed with the caller; needs the scope mcp:admin.",
    ),
    (
        "admin_audit",
        "Returns an audit line for its text argument; needs the scopes mcp:admin and mcp:audit.",
    ),
    (
        "sentry__list_issues",
        "Lists open issues (a stand-in for a Sentry integration).",
    ),
    (
        "sentry__resolve_issue",
        "Resolves an issue (a stand-in for a Sentry integration).",
    ),
    (
        "github__merge_pr",
        "Merges a pull request (a stand-in for a GitHub integration).",
    ),
];

/// How this server checks tokens and describes itself.
#[derive(Clone, Debug)]
pub struct Settings {
    /// mcp-authd's `issuerUrl`, named in the protected resource metadata of the primary host.
    pub issuer: String,
    /// This server's MCP URL (mcp-authd's `resourceUrl`), which must be the token's `aud`;
    /// on another host, that host's resource (`additionalIssuers`) is.
    pub resource: String,
    /// Verifies bearer tokens and holds the `toolAccess` rules.
    pub auth: Arc<Authenticator>,
}

impl Settings {
    /// Trusts access tokens from `issuer` for `resource`, signed with `secret`; no static
    /// tokens, no access rules.
    pub fn new(issuer: &str, resource: &str, secret: &str) -> Result<Self, String> {
        Self::for_issuers(&[(issuer, resource)], secret)
    }

    /// Trusts access tokens of each (issuer, resource) pair, the first being the primary,
    /// signed with `secret`; no static tokens, no access rules.
    pub fn for_issuers(issuers: &[(&str, &str)], secret: &str) -> Result<Self, String> {
        let ((issuer, resource), more) = issuers.split_first().ok_or("no issuer")?;
        let additional: Vec<Value> = more
            .iter()
            .map(|(issuer, resource)| json!({"issuerUrl": issuer, "resourceUrl": resource}))
            .collect();
        let doc = json!({"serverAuth": {"oauthAs": {
            "issuerUrl": issuer, "jwtSecret": secret, "resourceUrl": resource,
            "additionalIssuers": additional
        }}});
        Self::from_servers_json(&doc.to_string(), |_| None)
    }

    /// Reads `serverAuth` (`oauthAs`, `bearer`, `toolAccess`) from the text of a
    /// `servers.json`; `env` resolves `${NAME}` secrets.
    pub fn from_servers_json(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let auth = Authenticator::from_servers_json(text, env).map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let oauth = &doc["serverAuth"]["oauthAs"];
        let issuer = oauth["issuerUrl"].as_str().unwrap_or_default().to_string();
        let resource = oauth["resourceUrl"]
            .as_str()
            .map_or_else(|| format!("{issuer}/mcp"), str::to_string);
        Ok(Self {
            issuer,
            resource,
            auth: Arc::new(auth),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// The server's routes: `/mcp` behind the bearer middleware, the protected resource metadata,
/// and CORS for browser clients.
pub fn router(settings: Settings) -> Router {
    let settings = Arc::new(settings);
    let mut metadata_paths = vec!["/.well-known/oauth-protected-resource".to_string()];
    // Each host's resource may have a path of its own.
    for resource in settings.auth.resources() {
        let specific = resource
            .metadata_url
            .split_once("/.well-known/")
            .map(|(_, rest)| format!("/.well-known/{rest}"));
        if let Some(path) = specific.filter(|p| !metadata_paths.contains(p)) {
            metadata_paths.push(path);
        }
    }
    let mut router = Router::new()
        .route("/mcp", post(mcp_post).get(mcp_other).delete(mcp_other))
        .layer(from_fn_with_state(settings.auth.clone(), require_bearer));
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

/// `GET /.well-known/oauth-protected-resource[/mcp]` (RFC 9728), for the host the request
/// was addressed to.
async fn protected_resource_metadata(
    State(settings): State<Arc<Settings>>,
    headers: axum::http::HeaderMap,
) -> Json<Value> {
    let (issuer, resource) = match settings.auth.resource_for(&headers) {
        Some(chosen) => (chosen.issuer.as_str(), chosen.resource.as_str()),
        None => (settings.issuer.as_str(), settings.resource.as_str()),
    };
    Json(json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "mcp-authd example MCP server",
    }))
}

/// `GET` and `DELETE /mcp`: this server opens no server-to-client stream and keeps no
/// sessions, so both answer 405 (behind the middleware, so that a probe without a token
/// still learns where to sign in).
async fn mcp_other() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static("POST"))],
    )
        .into_response()
}

/// `POST /mcp`: one JSON-RPC message from an authenticated caller.
async fn mcp_post(
    State(settings): State<Arc<Settings>>,
    who: Identity,
    body: axum::body::Bytes,
) -> Response {
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
        "tools/list" => rpc_result(id, json!({ "tools": visible_tools(&settings, &who) })),
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
        "instructions": "Call echo with {\"text\": …}; admin_echo needs the scope mcp:admin, admin_audit mcp:admin and mcp:audit."
    })
}

/// The tools `who` may see and call, as `tools/list` describes them.
fn visible_tools(settings: &Settings, who: &Identity) -> Value {
    let schema = json!({
        "type": "object",
        "properties": { "text": { "type": "string", "description": "What to send back" } },
        "required": ["text"]
    });
    TOOLS
        .iter()
        .filter(|(name, _)| settings.auth.tool_access.is_allowed(who, name))
        .map(|(name, description)| {
            json!({ "name": name, "description": description, "inputSchema": schema })
        })
        .collect()
}

/// `tools/call`. A tool the caller may not use is answered like an unknown one, so access
/// rules do not reveal which tools exist.
fn call_tool(settings: &Settings, who: &Identity, id: Value, params: &Value) -> Response {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let text = params
        .pointer("/arguments/text")
        .and_then(Value::as_str)
        .unwrap_or("");
    let is_known = TOOLS.iter().any(|(known, _)| *known == name);
    if !is_known || !settings.auth.tool_access.is_allowed(who, name) {
        return rpc_error(id, -32602, &format!("unknown tool: {name}"));
    }
    let output = match name {
        "echo" => text.to_string(),
        "admin_echo" => {
            if !who.has_scope(ADMIN_SCOPE) {
                return settings
                    .auth
                    .insufficient_scope(ADMIN_SCOPE)
                    .into_response();
            }
            format!("{} (admin): {text}", who.subject)
        }
        "admin_audit" => {
            if let Err(challenge) = settings.auth.require_scopes(who, AUDIT_SCOPES) {
                return challenge.into_response();
            }
            format!("audit by {}: {text}", who.subject)
        }
        other => format!("{other} called by {}: {text}", who.subject),
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

/// Reads the settings from the command line: a `servers.json` (`--config`), or the
/// environment.
fn settings_from_args() -> Result<(SocketAddr, Settings), String> {
    let mut args = std::env::args().skip(1);
    let mut flags = std::collections::HashMap::new();
    while let Some(flag) = args.next() {
        let name = match flag.as_str() {
            "--listen" | "--issuer" | "--resource" | "--config" => {
                flag.trim_start_matches("--").to_string()
            }
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
    if let Some(path) = flags.get("config") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let settings = Settings::from_servers_json(&text, |name| std::env::var(name).ok())?;
        return Ok((listen, settings));
    }
    let issuer = setting("issuer", "MCP_AUTH_ISSUER")
        .unwrap_or_else(|| "http://127.0.0.1:8080".into())
        .trim_end_matches('/')
        .to_string();
    let resource =
        setting("resource", "MCP_AUTH_RESOURCE").unwrap_or(format!("http://{listen}/mcp"));
    let secret = std::env::var("MCP_AUTH_JWT_SECRET").unwrap_or_default();
    Ok((listen, Settings::new(&issuer, &resource, &secret)?))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let (listen, settings) = match settings_from_args() {
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
    for resource in settings.auth.resources() {
        eprintln!(
            "mcp_server: serving {} (authorization server {})",
            resource.resource, resource.issuer
        );
    }
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
