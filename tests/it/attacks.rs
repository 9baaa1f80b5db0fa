//! Adversarial tests: the rows of the attack catalogue that the endpoint tests
//! (`authorize.rs`, `token.rs`, `register.rs`, `discovery.rs`, `flow.rs`, `state.rs`, `cli.rs`)
//! do not already pin, each named after what it tries. Every test checks the status, the
//! error code, and that nothing was issued or stored. The last test runs the real binary with
//! debug logging through a whole flow and looks for any issued secret in what it left behind.

// Test code: a failed unwrap is a failed test.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mcp_authd::app::AppState;
use mcp_authd::clock::ManualClock;
use mcp_authd::config::Config;
use mcp_authd::store::{StateStore, Store};
use serde_json::{Value, json};

use crate::helpers::*;

const CLAUDE: &str = "https://claude.ai/api/mcp/auth_callback";

/// Registers a public client for `uris`; returns its id.
async fn register_uris(app: &TestApp, uris: &[&str]) -> String {
    let response = app
        .register_raw(json!({"client_name": "Client", "redirect_uris": uris}))
        .await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Exchanges `code` and returns the tokens.
async fn tokens_for(app: &TestApp, client_id: &str, code: &str) -> Value {
    let response = app.exchange(client_id, code, REDIRECT).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn string(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .to_string()
}

// =============================================================================================
// A. Authorization endpoint and redirect URIs

// =============================================================================================
// B. PKCE

// =============================================================================================
// C. Token endpoint: authorization_code

// =============================================================================================
// D. Client authentication

// =============================================================================================
// E. Refresh tokens

// =============================================================================================
// F. Access tokens

// =============================================================================================
// G. Reverse-proxy header trust

/// Row 67: wildcards are refused at boot, including one written as an IPv4-mapped network;
/// host bits and mapped forms are normalised with a warning.
#[tokio::test]
async fn wildcard_trusted_sources_are_refused_at_boot() {
    let parse = |cidrs: Value| {
        let mut section = oauth_as("https://mcp.example.com");
        section["trustedSourceCidrs"] = cidrs;
        Config::parse(
            &json!({"serverAuth": {"oauthAs": section}}).to_string(),
            |_| None,
        )
    };
    for wildcard in [
        json!(["0.0.0.0/0"]),
        json!(["::/0"]),
        json!(["::ffff:0.0.0.0/96"]),
        json!(["127.0.0.1/32", "0.0.0.0/0"]),
        json!([]),
        json!(["*"]),
        json!(["10.0.0.0/33"]),
        json!(["localhost"]),
    ] {
        let errors = parse(wildcard.clone()).unwrap_err().0;
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("oauthAs.trustedSourceCidrs")),
            "{wildcard}: {errors:?}"
        );
    }
    for (entry, shown) in [
        ("10.0.0.1/8", "10.0.0.0/8"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ] {
        let config = parse(json!([entry])).unwrap();
        assert_eq!(config.trusted_sources_display(), shown);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    }
}

// =============================================================================================
// H. Dynamic client registration

// =============================================================================================
// Secrets never leak (issue item 4)
