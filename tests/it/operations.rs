//! Operating the real binary: Prometheus metrics (checked by Debian's `promtool` and scraped by
//! a real Prometheus server on loopback) and JSON log lines.
//!
//! `promtool` and `prometheus` are external programs. `.ci/run` installs them and sets
//! `MCP_AUTHD_REQUIRE_EXTERNAL_TOOLS=1`, so there a missing program fails the test; elsewhere
//! the test says it skipped that part.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::helpers::{Options, TestApp, oauth_as};
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
    let dir = tempfile::tempdir().unwrap();
    let mcp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mcp = format!("http://{}/mcp", mcp_listener.local_addr().unwrap());
    let resource = mcp.clone();
    let configure = move |c: &mut Value| {
        c["trustedSourceCidrs"] = json!([trusted]);
        c["resourceUrl"] = json!(resource);
    };
    let app = TestApp::spawn_with(Options {
        configure: &configure,
        dir: Some(dir.path()),
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
