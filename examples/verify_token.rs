//! How an MCP server checks the bearer token on every `/mcp` request with mcp-authd's
//! verification API.
//!
//! Run: `cargo run --example verify_token -- <access token>` with `MCP_AUTH_JWT_SECRET`,
//! `MCP_AUTH_ISSUER` (e.g. `http://127.0.0.1:8080`) and optionally `MCP_AUTH_RESOURCE` set.

use mcp_authd::{TokenExpectations, verify_access_token};

fn main() -> std::process::ExitCode {
    let Some(token) = std::env::args().nth(1) else {
        eprintln!("usage: verify_token <access token>");
        return std::process::ExitCode::from(2);
    };
    let issuer =
        std::env::var("MCP_AUTH_ISSUER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let expectations = TokenExpectations {
        audience: std::env::var("MCP_AUTH_RESOURCE").unwrap_or_else(|_| format!("{issuer}/mcp")),
        issuer,
        secret: std::env::var("MCP_AUTH_JWT_SECRET")
            .unwrap_or_default()
            .into_bytes(),
        leeway_seconds: 30,
    };
    match verify_access_token(&token, &expectations) {
        Ok(claims) => {
            // A real server would now check `claims.scope` / `claims.roles` for the tool called.
            println!(
                "valid token for {} (client {}, scope {:?})",
                claims.sub, claims.client_id, claims.scope
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            // Answer 401 with
            // WWW-Authenticate: Bearer resource_metadata="<issuer>/.well-known/oauth-protected-resource/mcp"
            eprintln!("rejected: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
