//! Operating the real binary: Prometheus metrics (checked by Debian's `promtool` and scraped by
//! a real Prometheus server on loopback), JSON log lines, the audit log, `doctor`, and what
//! the logs never hold: a whole flow with trace logging, after which no issued secret is found
//! in stderr, stdout, the audit log, an error body or any file the server wrote.
//!
//! `promtool` and `prometheus` are external programs. `.ci/run` installs them and sets
//! `MCP_AUTHD_REQUIRE_EXTERNAL_TOOLS=1`, so there a missing program fails the test; elsewhere
//! the test says it skipped that part.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::helpers::{
    Options, REDIRECT, TestApp, USER, VERIFIER, consent_ticket, location, oauth_as, query_of,
    string,
};
use super::process::{BIN, Served, free_port, http};

/// Set by CI: external programs must be present.
const REQUIRE_ENV: &str = "MCP_AUTHD_REQUIRE_EXTERNAL_TOOLS";

/// Whether `program` can be run; fails the test when CI requires it.
fn have(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
            "{program} is required ({REQUIRE_ENV}=1) but is not installed"
        );
        eprintln!("SKIPPED: {program} is not installed (apt-get install prometheus)");
    }
    found
}

/// `serve` on `port` with metrics on `metrics_port` and JSON logs.
fn serve_with_metrics(dir: &Path, port: u16, metrics_port: u16) -> Served {
    let config = dir.join("servers.json");
    let doc = json!({"serverAuth": {"oauthAs": oauth_as(&format!("http://127.0.0.1:{port}"))}});
    std::fs::write(&config, doc.to_string()).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .env_remove("RUST_LOG")
        .env_remove("MCP_AUTH_SERVER_PATH")
        .env_remove("MCP_AUTH_SERVER_CONFIG");
    Served::spawn(&mut cmd, port, dir.join("stderr.log"))
}

#[tokio::test]
async fn metrics_are_prometheus_text_labelled_by_route_pattern_and_scraped_by_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let mut server = serve_with_metrics(dir.path(), port, metrics_port);
    let http = http();
    server.wait_ready(&http).await;

    // A registration, a metadata read, and paths no route matches.
    let registered = http
        .post(server.url("/oauth/register"))
        .json(&json!({"client_name": "Metrics", "redirect_uris": ["http://127.0.0.1:9/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let client_id = registered.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    http.get(server.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    for probe in ["/secret-probe-path-1", "/secret-probe-path-2"] {
        let missing = http.get(server.url(probe)).send().await.unwrap();
        assert_eq!(missing.status(), 404);
    }

    // Metrics are on their own listener only.
    let public = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let response = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for series in [
        "mcp_authd_build_info{version=",
        "mcp_authd_http_requests_total{route=\"/oauth/register\",status=\"201\"} 1",
        "mcp_authd_http_request_duration_seconds_bucket{route=\"/oauth/register\",le=",
        "mcp_authd_clients{registration=\"dynamic\"} 1",
        "mcp_authd_clients{registration=\"provisioned\"} 0",
        "mcp_authd_live_sign_ins 0",
        "mcp_authd_tokens_issued_total{grant_type=\"refresh_token\"} 0",
        "mcp_authd_authorize_total{result=\"code\"} 0",
        "mcp_authd_registrations_total{result=\"full\"} 0",
        "mcp_authd_refresh_reuse_detected_total 0",
        "mcp_authd_code_replay_detected_total 0",
        "mcp_authd_rate_limited_total{endpoint=\"token\"} 0",
        "mcp_authd_store_errors_total 0",
    ] {
        assert!(text.contains(series), "missing {series:?} in:\n{text}");
    }
    assert!(
        !text.contains("secret-probe-path") && !text.contains(&client_id),
        "a raw path or an id became a label:\n{text}"
    );

    if have("promtool") {
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    if have("prometheus") {
        scrape_with_prometheus(dir.path(), metrics_port).await;
    }

    // Every stderr line is one JSON object with the fields at the top level.
    let stderr = server.stderr();
    let mut lines = 0;
    for line in stderr.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(entry.get(field).is_some(), "{field} missing: {line}");
        }
        assert!(entry.get("fields").is_none(), "fields nested: {line}");
        assert!(
            !line.contains('\u{1b}'),
            "ANSI escape in a JSON log: {line:?}"
        );
        lines += 1;
    }
    assert!(
        stderr.contains("\"message\":\"mcp-authd starting\"") && stderr.contains("\"version\":"),
        "{stderr}"
    );
    assert!(lines >= 2, "{stderr}");
    let status = server.terminate().await;
    assert!(status.success(), "{status}");
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
    let mut cmd = Command::new(BIN);
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
        .stdin(Stdio::null());
    for var in [
        "MCP_AUTH_SERVER_PATH",
        "MCP_AUTH_SERVER_CONFIG",
        "MCP_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    let mut server = Served::spawn_with_stdout(&mut cmd, port, stderr_path.clone(), &stdout_path);
    let http = http();
    server.wait_ready(&http).await;

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

    server.terminate().await;
    drop(server);

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

/// Starts Prometheus on loopback with one scrape job for `metrics_port`, and waits until its
/// query API returns the build info series.
async fn scrape_with_prometheus(dir: &Path, metrics_port: u16) {
    let prometheus_port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: mcp-authd\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
        .current_dir(dir);
    let prometheus = Served::spawn(&mut cmd, prometheus_port, dir.join("prometheus.log"));
    let http = http();
    let query = format!(
        "{}/api/v1/query?query=mcp_authd_build_info",
        prometheus.base
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(&query).send().await
            && let Ok(answer) = response.json::<Value>().await
            && answer["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        {
            let series = &answer["data"]["result"][0]["metric"];
            assert_eq!(series["job"], "mcp-authd", "{answer}");
            assert!(series["version"].is_string(), "{answer}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape mcp-authd within 60 s:\n{}",
            prometheus.stderr()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(prometheus);
}

/// A stand-in MCP server on `listener`: every request gets 401 with the challenge that names
/// the PRM `as_base` serves for it.
fn serve_challenging_mcp_server(listener: tokio::net::TcpListener, as_base: &str) {
    let challenge =
        format!("Bearer resource_metadata=\"{as_base}/.well-known/oauth-protected-resource/mcp\"");
    let app = axum::Router::new().fallback(move || {
        let challenge = challenge.clone();
        async move {
            (
                axum::http::StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, challenge)],
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
}

/// An authorization server (trusting `trusted` at authorize) and an MCP server whose PRM it
/// serves; runs `mcp-authd doctor` on the MCP URL and returns its exit success and report.
async fn doctor_against(trusted: &'static str) -> (bool, String) {
    let mcp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mcp = format!("http://{}/mcp", mcp_listener.local_addr().unwrap());
    let resource = mcp.clone();
    let configure = move |c: &mut Value| {
        c["trustedSourceCidrs"] = json!([trusted]);
        c["resourceUrl"] = json!(resource);
    };
    let app = TestApp::spawn_with(Options {
        configure: &configure,
        ..Default::default()
    })
    .await;
    serve_challenging_mcp_server(mcp_listener, &app.base);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["doctor", &mcp])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    app.stop().await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Each line's verdict and check name, in order.
fn verdicts(report: &str) -> Vec<(&str, &str)> {
    report
        .lines()
        .map(|line| {
            let (verdict, rest) = line.split_once(' ').unwrap();
            (verdict, rest.split(':').next().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn doctor_passes_a_deployment_whose_authorize_only_the_proxy_reaches() {
    // The proxy is elsewhere: this test, on loopback, is an outsider to /oauth/authorize.
    let (ok, report) = doctor_against("10.9.0.0/16").await;
    assert!(ok, "{report}");
    assert_eq!(
        verdicts(&report),
        vec![
            ("PASS", "mcp-challenge"),
            ("PASS", "protected-resource-metadata"),
            ("PASS", "authorization-server-metadata"),
            // Loopback http: fine for a test, not for cloud clients.
            ("WARN", "endpoints-public-https"),
            ("PASS", "registration-without-sso"),
            ("PASS", "token-without-sso"),
            ("PASS", "authorize-behind-sso"),
            ("PASS", "cors-token"),
            ("PASS", "cors-register"),
        ],
        "{report}"
    );
    assert!(
        report.contains("— fix: "),
        "a WARN says what to change:\n{report}"
    );
}

#[tokio::test]
async fn doctor_fails_when_a_forged_identity_header_reaches_authorize() {
    // Loopback trusted and no SSO in front: whoever reaches it can claim any user.
    let (ok, report) = doctor_against("127.0.0.1/32").await;
    assert!(!ok, "{report}");
    let line = report
        .lines()
        .find(|l| l.starts_with("FAIL authorize-behind-sso"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        line.contains("consent page") && line.contains("fix: "),
        "{line}"
    );
}

#[tokio::test]
async fn doctor_fails_when_the_mcp_url_does_not_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = (
        Command::new(BIN)
            .args(["doctor", &format!("http://127.0.0.1:{}/mcp", free_port())])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap(),
        (),
    );
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.starts_with("FAIL mcp-challenge: "), "{report}");
}
