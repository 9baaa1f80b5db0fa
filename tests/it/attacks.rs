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

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every regular file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(files_under(&entry.path()));
        } else if kind.is_file() {
            out.push((
                entry.path().display().to_string(),
                std::fs::read(entry.path()).unwrap(),
            ));
        }
    }
    out
}

/// Runs the real binary with `RUST_LOG=debug` through registration, consent, code exchange,
/// rotation, a grace retry, a code replay, reuse detection, failed authentications and
/// revocation; then looks for every secret it issued or was sent (client secret, codes,
/// consent ticket, access and refresh tokens and their secret halves, the PKCE verifier, the
/// signing key) in its stderr and stdout, in every error body, and in every file it wrote.
#[tokio::test]
async fn no_secret_reaches_the_logs_the_error_bodies_or_the_state() {
    let jwt_secret = "leak-test-signing-key-0123456789-abcdefghij";
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let doc = json!({"serverAuth": {"oauthAs": {
        "issuerUrl": base,
        "jwtSecret": "${LEAK_TEST_JWT_SECRET}",
        "trustedSourceCidrs": ["127.0.0.1/32"],
        "redirectUriAllowlist": ["http://127.0.0.1:*"]
    }}});
    let config = dir.path().join("servers.json");
    std::fs::write(&config, doc.to_string()).unwrap();
    let stderr_path = logs.path().join("stderr.log");
    let stdout_path = logs.path().join("stdout.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-authd"));
    cmd.current_dir(dir.path())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--audit-log")
        .arg(logs.path().join("audit.jsonl"))
        .env("RUST_LOG", "trace")
        .env("LEAK_TEST_JWT_SECRET", jwt_secret)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for var in [
        "MCP_AUTH_SERVER_PATH",
        "MCP_AUTH_SERVER_CONFIG",
        "MCP_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let child = Kill(&mut child);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not start: {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut secrets: Vec<String> = vec![jwt_secret.to_string(), VERIFIER.to_string()];
    let mut error_bodies: Vec<String> = Vec::new();
    let token = |form: Vec<(&'static str, String)>| {
        let request = http.post(format!("{base}/oauth/token")).form(&form);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let authorize = |client_id: String| {
        let request = http
            .get(format!("{base}/oauth/authorize"))
            .query(&TestApp::authorize_params(&client_id, REDIRECT))
            .header("X-Forwarded-User", USER);
        async move { request.send().await.unwrap() }
    };

    // Register a confidential client.
    let response = http
        .post(format!("{base}/oauth/register"))
        .json(&json!({"client_name": "Leak test", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let registered: Value = response.json().await.unwrap();
    let client_id = string(&registered, "client_id");
    let client_secret = string(&registered, "client_secret");
    secrets.push(client_secret.clone());

    // Consent, then a code.
    let page = authorize(client_id.clone()).await.text().await.unwrap();
    let ticket = consent_ticket(&page);
    secrets.push(ticket.clone());
    let response = http
        .post(format!("{base}/oauth/authorize/consent"))
        .header("X-Forwarded-User", USER)
        .form(&[("ticket", ticket.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let code = query_of(&location(&response))["code"].clone();
    secrets.push(code.clone());
    // The replayed ticket is refused (an error page).
    let response = http
        .post(format!("{base}/oauth/authorize/consent"))
        .header("X-Forwarded-User", USER)
        .form(&[("ticket", ticket.as_str()), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    error_bodies.push(response.text().await.unwrap());

    let code_form = |code: &str, verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("client_id", client_id.clone()),
            ("client_secret", client_secret.clone()),
            ("code", code.to_string()),
            ("redirect_uri", REDIRECT.to_string()),
            ("code_verifier", verifier.to_string()),
        ]
    };
    let refresh_form = |refresh: &str| {
        vec![
            ("grant_type", "refresh_token".to_string()),
            ("client_id", client_id.clone()),
            ("client_secret", client_secret.clone()),
            ("refresh_token", refresh.to_string()),
        ]
    };
    // A wrong verifier first (an error), then the exchange, then a replay (an error).
    let (status, body) = token(code_form(&code, &"x".repeat(43))).await;
    assert_eq!(status, 400);
    error_bodies.push(body);
    let (status, body) = token(code_form(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{body}");
    let first: Value = serde_json::from_str(&body).unwrap();
    let (status, body) = token(code_form(&code, VERIFIER)).await;
    assert_eq!(status, 400);
    error_bodies.push(body);

    // A new authorization (consent remembered), exchange, rotation, grace retry, reuse.
    let response = authorize(client_id.clone()).await;
    assert_eq!(response.status(), 302);
    let code = query_of(&location(&response))["code"].clone();
    secrets.push(code.clone());
    let (status, body) = token(code_form(&code, VERIFIER)).await;
    assert_eq!(status, 200);
    let second: Value = serde_json::from_str(&body).unwrap();
    let rt1 = string(&second, "refresh_token");
    let (_, body) = token(refresh_form(&rt1)).await;
    let rotated: Value = serde_json::from_str(&body).unwrap();
    let (_, body) = token(refresh_form(&rt1)).await;
    let retried: Value = serde_json::from_str(&body).unwrap();
    let rt2 = string(&rotated, "refresh_token");
    let (_, body) = token(refresh_form(&rt2)).await;
    let third: Value = serde_json::from_str(&body).unwrap();
    let (status, body) = token(refresh_form(&rt1)).await;
    assert_eq!(status, 400, "reuse: {body}");
    error_bodies.push(body);
    let (status, body) = token(refresh_form(&string(&third, "refresh_token"))).await;
    assert_eq!(status, 400);
    error_bodies.push(body);

    // Failed client authentication, by form and by Basic, with the secret nearly right.
    let mut wrong = refresh_form(&rt2);
    wrong[2].1.push('x');
    let (status, body) = token(wrong).await;
    assert_eq!(status, 401);
    error_bodies.push(body);
    let response = http
        .post(format!("{base}/oauth/revoke"))
        .basic_auth(&client_id, Some(format!("{client_secret}x")))
        .form(&[("token", rt2.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    error_bodies.push(response.text().await.unwrap());

    // A fresh family, revoked by its client.
    let response = authorize(client_id.clone()).await;
    let code = query_of(&location(&response))["code"].clone();
    secrets.push(code.clone());
    let (_, body) = token(code_form(&code, VERIFIER)).await;
    let fourth: Value = serde_json::from_str(&body).unwrap();
    let response = http
        .post(format!("{base}/oauth/revoke"))
        .form(&[
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
            ("token", string(&fourth, "refresh_token").as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    for issued in [&first, &second, &rotated, &retried, &third, &fourth] {
        for field in ["access_token", "refresh_token"] {
            let value = string(issued, field);
            // The signature of a JWT, the secret half of a refresh token.
            secrets.push(value.rsplit_once('.').unwrap().1.to_string());
            secrets.push(value);
        }
    }
    assert_eq!(error_bodies.len(), 7);

    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(child);

    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    // Trace logging was on, and the audit trail is there: it names clients and users only.
    assert!(stderr.contains("client registered"), "{stderr}");
    assert!(stderr.contains("tokens issued"), "{stderr}");
    assert!(stderr.contains("refresh token reused"), "{stderr}");
    // The audit file (SPEC §15): owner-only, one JSON object per line, every event of the
    // session with the fields that apply, and (checked below with the logs) no secret.
    let audit_path = logs.path().join("audit.jsonl");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&audit_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "audit log mode {mode:o}");
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    let events: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for (event, fields) in [
        ("client_registered", &["client_id", "issuer"][..]),
        ("consent_approved", &["sub", "client_id", "issuer", "peer"]),
        ("code_issued", &["sub", "client_id", "issuer"]),
        ("token_issued", &["sub", "client_id", "issuer", "sid"]),
        ("token_refreshed", &["sub", "client_id", "issuer", "sid"]),
        ("code_replay_detected", &["client_id", "issuer", "sid"]),
        (
            "refresh_reuse_detected",
            &["sub", "client_id", "issuer", "sid"],
        ),
        ("token_revoked", &["client_id", "issuer"]),
    ] {
        let found = events
            .iter()
            .find(|e| e["event"] == event)
            .unwrap_or_else(|| panic!("no {event} in the audit log:\n{audit}"));
        assert_eq!(found["target"], "audit", "{found}");
        for field in fields {
            assert!(found.get(field).is_some(), "{event} lacks {field}: {found}");
        }
    }
    assert!(
        events.iter().all(|e| e["target"] == "audit"),
        "only audit events go to the audit log"
    );
    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        ("stderr".into(), stderr.into_bytes()),
        ("stdout".into(), std::fs::read(&stdout_path).unwrap()),
        ("audit log".into(), audit.into_bytes()),
    ];
    haystacks.extend(
        error_bodies
            .into_iter()
            .enumerate()
            .map(|(i, b)| (format!("error body {i}"), b.into_bytes())),
    );
    let files = files_under(dir.path());
    assert!(
        files
            .iter()
            .any(|(name, _)| name.ends_with("auth_server.json")),
        "{:?}",
        files.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    haystacks.extend(files);
    assert!(secrets.len() >= 30, "{}", secrets.len());
    for (name, bytes) in &haystacks {
        let text = String::from_utf8_lossy(bytes);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{name} holds a secret ({} bytes): {secret}",
                secret.len()
            );
        }
    }
}
