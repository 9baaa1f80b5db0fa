//! The real `mcp-authd` binary (SPEC §3, §4, §9): every test runs it as a child process in a
//! temporary directory holding its own `servers.json`, with the state environment variables
//! cleared so that nothing from the developer's shell leaks in. Every child is bounded in time
//! and killed if a test fails while it runs.

// Test code: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{VERIFIER, assert_owner_only, challenge, query_of, sha256_forms};
use crate::process::{BIN, Served, free_port, http};

/// A literal `jwtSecret` long enough to be accepted.
pub(crate) const JWT_SECRET: &str = "cli-test-secret-cli-test-secret-0123456789";
/// The redirect URI Gemini Enterprise uses.
pub(crate) const GEMINI_REDIRECT: &str = "https://vertexaisearch.cloud.google.com/oauth-redirect";
/// Environment variables that select the configuration or the state.
const STATE_ENV: [&str; 3] = [
    "MCP_AUTH_SERVER_PATH",
    "MCP_AUTH_SERVER_CONFIG",
    "MCP_CONFIG",
];
/// How long a command that is expected to finish on its own may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// A complete `servers.json` whose `oauthAs` section is valid for `issuer`, with the keys that
/// belong to the MCP server around it (which mcp-authd must ignore).
pub(crate) fn servers_json(issuer: &str) -> Value {
    json!({
        "mcpServers": {"sentry": {"url": "http://127.0.0.1:9000/mcp"}},
        "serverAuth": {
            "bearer": {"tokens": ["not-for-mcp-authd"]},
            "oauthAs": {
                "issuerUrl": issuer,
                "jwtSecret": JWT_SECRET,
                "trustedSourceCidrs": ["127.0.0.1/32"],
                "redirectUriAllowlist": [
                    "http://127.0.0.1:*",
                    "http://localhost:*",
                    GEMINI_REDIRECT
                ]
            }
        }
    })
}

/// `servers_json` with `change` applied to its `oauthAs` section.
pub(crate) fn servers_json_with(issuer: &str, change: impl FnOnce(&mut Value)) -> Value {
    let mut doc = servers_json(issuer);
    change(&mut doc["serverAuth"]["oauthAs"]);
    doc
}

/// Writes `doc` as `servers.json` in `dir`; returns its path.
pub(crate) fn write_config(dir: &Path, doc: &Value) -> PathBuf {
    let path = dir.join("servers.json");
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    path
}

/// A directory with a valid `servers.json` for an issuer on `port`.
pub(crate) fn config_dir(port: u16) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &servers_json(&issuer(port)));
    (dir, config)
}

pub(crate) fn issuer(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The binary, run in `dir`, with every state/config variable removed from its environment.
pub(crate) fn mcp_authd(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .env_remove("RUST_LOG");
    for var in STATE_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// `mcp-authd serve --config CONFIG --listen 127.0.0.1:PORT`.
pub(crate) fn serve_cmd(dir: &Path, config: &Path, port: u16) -> Command {
    let mut cmd = mcp_authd(dir);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    cmd
}

/// `mcp-authd ARGS… --config CONFIG` for a one-shot subcommand.
pub(crate) fn one_shot(dir: &Path, config: &Path, args: &[&str]) -> Command {
    let mut cmd = mcp_authd(dir);
    cmd.args(args).arg("--config").arg(config);
    cmd
}

/// What a finished command did.
pub(crate) struct Outcome {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Outcome {
    pub(crate) fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "expected success, got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    pub(crate) fn assert_failure(&self) -> &Self {
        assert!(
            !self.status.success(),
            "expected a non-zero exit, got {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts that some line of stderr ends with exactly `message`.
    pub(crate) fn assert_stderr_line(&self, message: &str) -> &Self {
        assert!(
            self.stderr
                .lines()
                .any(|line| line.trim_end().ends_with(message)),
            "no stderr line ends with {message:?}\nstderr:\n{}",
            self.stderr
        );
        self
    }

    pub(crate) fn assert_stderr_contains(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr does not mention {needle:?}\nstderr:\n{}",
            self.stderr
        );
        self
    }
}

/// Runs `cmd` to completion; kills it and fails if it takes longer than [`RUN_TIMEOUT`].
pub(crate) fn run(cmd: &mut Command) -> Outcome {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(output) => {
            let output = output.unwrap();
            Outcome {
                status: output.status,
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            // The waiting thread has not reaped the child, so the pid is still ours.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("{cmd:?} did not finish within {RUN_TIMEOUT:?}");
        }
    }
}

/// A running `serve` child with its log directory (see `process.rs`).
pub(crate) struct Server {
    served: Served,
    _logs: tempfile::TempDir,
}

impl std::ops::Deref for Server {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.served
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Served {
        &mut self.served
    }
}

impl Server {
    /// Spawns `cmd` (a `serve` command listening on `port`), stderr to a log file outside the
    /// configuration directory.
    pub(crate) fn start(mut cmd: Command, port: u16) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let served = Served::spawn(&mut cmd, port, logs.path().join("stderr.log"));
        Self {
            served,
            _logs: logs,
        }
    }
}

/// The bytes of the state file and its journal, concatenated (the journal may be absent).
fn state_bytes(state: &Path) -> String {
    let mut text = std::fs::read_to_string(state).unwrap();
    text.push_str(
        &std::fs::read_to_string(mcp_authd::store::file::journal_path(state)).unwrap_or_default(),
    );
    text
}

/// The names in `dir`, sorted.
pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `clients add` for Gemini; returns (client_id, client_secret).
pub(crate) fn add_gemini(dir: &Path, config: &Path) -> (String, String) {
    let out = run(one_shot(
        dir,
        config,
        &[
            "clients",
            "add",
            "--name",
            "Gemini",
            "--redirect-uri",
            GEMINI_REDIRECT,
        ],
    )
    .env_remove("MCP_AUTH_JWT_SECRET"));
    out.assert_success();
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no `{name}: …` line in\n{}", out.stdout))
            .trim()
            .to_string()
    };
    let (id, secret) = (field("client_id"), field("client_secret"));
    assert!(!id.is_empty() && !secret.is_empty());
    (id, secret)
}

#[test]
fn gen_secret_prints_fresh_base64url_with_at_least_32_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let out = run(mcp_authd(dir.path()).arg("gen-secret"));
        out.assert_success();
        let secret = out.stdout.trim().to_string();
        let bytes = URL_SAFE_NO_PAD
            .decode(&secret)
            .unwrap_or_else(|e| panic!("{secret:?} is not unpadded base64url: {e}"));
        assert!(
            bytes.len() >= 32,
            "{secret:?} decodes to {} bytes",
            bytes.len()
        );
        // Usable as jwtSecret as printed.
        assert!(secret.len() >= 32);
        secrets.push(secret);
    }
    assert_ne!(secrets[0], secrets[1], "gen-secret repeated itself");
}

#[test]
fn check_accepts_a_valid_config_and_prints_a_summary() {
    let (dir, config) = config_dir(8080);
    let out = run(&mut one_shot(dir.path(), &config, &["check"]));
    out.assert_success();
    assert!(
        out.stdout.contains("http://127.0.0.1:8080"),
        "the summary names the issuer:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("127.0.0.1/32"),
        "the summary names the trusted sources:\n{}",
        out.stdout
    );
}

#[test]
fn check_warns_about_the_test_only_client_metadata_document_options() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let doc = servers_json_with(&issuer(8080), |oauth| {
        oauth["clientMetadataDocuments"] =
            json!({"allowPrivateAddresses": true, "caFile": ca_file});
    });
    let config = write_config(dir.path(), &doc);
    let out = run(&mut one_shot(dir.path(), &config, &["check"]));
    out.assert_success();
    for option in ["allowPrivateAddresses", "caFile"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with("warning: ") && l.contains(option)),
            "a warning about {option}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn check_accepts_the_example_config_with_its_secret_from_the_environment() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/servers.example.json");
    let example_dir = example.parent().unwrap().to_path_buf();
    let before = listing(&example_dir);
    let dir = tempfile::tempdir().unwrap();
    let out = run(one_shot(dir.path(), &example, &["check"])
        .env("MCP_AUTH_JWT_SECRET", JWT_SECRET)
        .env("MCP_AUTH_SERVER_PATH", dir.path().join("auth_server.json")));
    out.assert_success();
    assert!(
        out.stdout.contains("https://mcp.example.com"),
        "{}",
        out.stdout
    );
    assert_eq!(
        listing(&example_dir),
        before,
        "nothing may be written beside the example"
    );

    // Without the variable, the same file names it.
    let out = run(one_shot(dir.path(), &example, &["check"])
        .env_remove("MCP_AUTH_JWT_SECRET")
        .env("MCP_AUTH_SERVER_PATH", dir.path().join("auth_server.json")));
    out.assert_failure()
        .assert_stderr_contains("MCP_AUTH_JWT_SECRET");
}

/// Boots `serve` with `doc` as its configuration; it must fail before listening.
fn serve_with_config(doc: &Value) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), doc);
    let out = run(&mut serve_cmd(dir.path(), &config, free_port()));
    out.assert_failure();
    out
}

#[test]
fn serve_refuses_a_short_jwt_secret() {
    let doc = servers_json_with(&issuer(8080), |s| s["jwtSecret"] = json!("too-short"));
    serve_with_config(&doc).assert_stderr_line("oauthAs.jwtSecret must be at least 32 bytes");
}

#[test]
fn serve_refuses_empty_trusted_source_cidrs() {
    let doc = servers_json_with(&issuer(8080), |s| s["trustedSourceCidrs"] = json!([]));
    serve_with_config(&doc)
        .assert_stderr_line("oauthAs.trustedSourceCidrs must list at least one CIDR");
}

#[test]
fn serve_names_an_unknown_key_inside_oauth_as() {
    let doc = servers_json_with(&issuer(8080), |s| {
        s["issuerURL"] = json!("https://x.example")
    });
    serve_with_config(&doc).assert_stderr_contains("issuerURL");
}

#[test]
fn serve_names_an_unset_secret_variable() {
    let doc = servers_json_with(&issuer(8080), |s| {
        s["jwtSecret"] = json!("${MCP_AUTHD_TEST_UNSET_SECRET}")
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &doc);
    let out =
        run(serve_cmd(dir.path(), &config, free_port()).env_remove("MCP_AUTHD_TEST_UNSET_SECRET"));
    out.assert_failure()
        .assert_stderr_contains("MCP_AUTHD_TEST_UNSET_SECRET");
}

#[test]
fn serve_refuses_wildcard_trusted_sources() {
    for wildcard in ["0.0.0.0/0", "::/0"] {
        let doc = servers_json_with(&issuer(8080), |s| {
            s["trustedSourceCidrs"] = json!(["127.0.0.1/32", wildcard])
        });
        serve_with_config(&doc).assert_stderr_contains(wildcard);
    }
}

#[test]
fn serve_and_check_print_every_problem_at_once() {
    let doc = servers_json_with(&issuer(8080), |s| {
        s["jwtSecret"] = json!("too-short");
        s["trustedSourceCidrs"] = json!([]);
    });
    let serve = serve_with_config(&doc);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &doc);
    let check = run(&mut one_shot(dir.path(), &config, &["check"]));
    check.assert_failure();
    for out in [&serve, &check] {
        out.assert_stderr_line("oauthAs.jwtSecret must be at least 32 bytes")
            .assert_stderr_line("oauthAs.trustedSourceCidrs must list at least one CIDR");
    }
}

#[test]
fn serve_and_check_refuse_a_redirect_pattern_that_allows_every_host() {
    for every_host in ["https://*", "http://*"] {
        let doc = servers_json_with(&issuer(8080), |s| {
            s["redirectUriAllowlist"] = json!(["http://127.0.0.1:*", every_host])
        });
        let line = format!("oauthAs.redirectUriAllowlist: {every_host:?} would allow any host");
        serve_with_config(&doc).assert_stderr_contains(&line);
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &doc);
        run(&mut one_shot(dir.path(), &config, &["check"]))
            .assert_failure()
            .assert_stderr_contains(&line);
    }
}

#[test]
fn check_names_every_wrongly_typed_field_and_warns_about_dead_patterns_and_secrets() {
    let doc = servers_json_with(&issuer(8080), |s| {
        s["accessTokenTtlSeconds"] = json!("3600");
        s["rateLimits"] = json!({"tokenPerMinute": "600"});
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &doc);
    run(&mut one_shot(dir.path(), &config, &["check"]))
        .assert_failure()
        .assert_stderr_line("oauthAs.accessTokenTtlSeconds: expected a number")
        .assert_stderr_line("oauthAs.rateLimits.tokenPerMinute: expected a number");

    // Valid, but each of these is almost certainly a mistake: said at boot, not refused.
    let doc = servers_json_with(&issuer(8080), |s| {
        s["redirectUriAllowlist"] = json!(["http://127.0.0.1:*", "http://localhost"]);
        s["jwtSecret"] = json!("$MCP_AUTH_JWT_SECRET_OF_THE_PRODUCTION_HOST_XYZ");
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &doc);
    let out = run(&mut one_shot(dir.path(), &config, &["check"]));
    out.assert_success();
    for warning in [
        "warning: oauthAs.redirectUriAllowlist: \"http://localhost\" can never match",
        "warning: oauthAs.jwtSecret looks like an unexpanded variable",
        "warning: oauthAs.trustedSourceCidrs includes loopback",
    ] {
        assert!(out.stdout.contains(warning), "{warning}\n{}", out.stdout);
    }
}

#[test]
fn serve_refuses_a_non_loopback_listen_address_without_insecure() {
    let (dir, config) = config_dir(8080);
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = run(mcp_authd(dir.path()).args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            listen,
        ]));
        out.assert_failure();
        assert!(!out.stderr.is_empty(), "the refusal is explained");
    }
}

#[tokio::test]
async fn serve_on_a_non_loopback_address_with_insecure() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let mut cmd = mcp_authd(dir.path());
    cmd.args([
        "serve",
        "--insecure",
        "--listen",
        &format!("0.0.0.0:{port}"),
    ])
    .arg("--config")
    .arg(&config);
    let mut server = Server::start(cmd, port);
    server.wait_ready(&http()).await;
    let status = server.terminate().await;
    assert!(status.success(), "{status}\n{}", server.stderr());
}

#[tokio::test]
async fn serve_answers_health_and_metadata_then_stops_cleanly_on_sigterm() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let mut server = Server::start(serve_cmd(dir.path(), &config, port), port);
    server.wait_ready(&http()).await;

    let http = http();
    let response = http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let metadata: Value = response.json().await.unwrap();
    assert_eq!(metadata["issuer"], issuer(port));
    assert_eq!(
        metadata["token_endpoint"],
        format!("{}/oauth/token", issuer(port))
    );

    let status = server.terminate().await;
    assert!(
        status.success(),
        "SIGTERM must end serve with exit 0, got {status}\nstderr:\n{}",
        server.stderr()
    );
}

#[tokio::test]
async fn a_second_serve_on_the_same_state_is_refused() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let mut first = Server::start(serve_cmd(dir.path(), &config, port), port);
    first.wait_ready(&http()).await;

    let out = run(&mut serve_cmd(dir.path(), &config, free_port()));
    out.assert_failure();
    let stderr = out.stderr.to_lowercase();
    assert!(
        stderr.contains("lock") || stderr.contains("in use"),
        "the refusal names the lock:\n{}",
        out.stderr
    );

    // The first one is unaffected.
    let health = http()
        .get(format!("{}/healthz", first.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    run(mcp_authd(dir.path()).args(["health", "--url", &first.base])).assert_success();
    let status = first.terminate().await;
    assert!(status.success(), "{status}");
}

#[test]
fn version_names_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(mcp_authd(dir.path()).arg("--version"));
    out.assert_success();
    let line = out.stdout.trim();
    let commit = line
        .strip_prefix(concat!("mcp-authd ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        commit == "unknown"
            || commit
                .trim_end_matches("-dirty")
                .bytes()
                .all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
}

#[test]
fn health_fails_when_nothing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    run(mcp_authd(dir.path()).args(["health", "--url", &url]))
        .assert_failure()
        .assert_stderr_contains("not ready");
}

#[test]
fn clients_add_list_remove() {
    let (dir, config) = config_dir(8080);
    let state = dir.path().join("auth_server.json");
    let (id, secret) = add_gemini(dir.path(), &config);

    // Listed as pre-provisioned, with its name and redirect URI.
    let out = run(&mut one_shot(dir.path(), &config, &["clients", "list"]));
    out.assert_success();
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{id} is not listed:\n{}", out.stdout));
    assert!(line.contains("provisioned"), "{line}");
    assert!(
        line.contains("Gemini") && line.contains(GEMINI_REDIRECT),
        "{line}"
    );

    // On disk: the hash, never the secret; owner-only files.
    let on_disk = state_bytes(&state);
    assert!(
        !on_disk.contains(&secret),
        "the plaintext secret reached disk"
    );
    assert!(
        sha256_forms(&secret).iter().any(|h| on_disk.contains(h)),
        "no SHA-256 of the secret in the state"
    );
    let (doc, _) = mcp_authd::store::file::read_state(&state).unwrap();
    assert!(doc.clients[&id].secret_hash.is_some());
    assert_owner_only(&state);
    let journal = mcp_authd::store::file::journal_path(&state);
    if journal.exists() {
        assert_owner_only(&journal);
    }

    // A second client, so that removal is seen to remove only the one named.
    let (other, _) = add_gemini(dir.path(), &config);
    assert_ne!(other, id);
    let out = run(&mut one_shot(
        dir.path(),
        &config,
        &["clients", "remove", &id],
    ));
    out.assert_success();
    let out = run(&mut one_shot(dir.path(), &config, &["clients", "list"]));
    out.assert_success();
    assert!(!out.stdout.contains(&id), "{}", out.stdout);
    assert!(out.stdout.contains(&other), "{}", out.stdout);

    // Removing it again, or any unknown id, fails.
    for unknown in [id.as_str(), "no-such-client"] {
        let out = run(&mut one_shot(
            dir.path(),
            &config,
            &["clients", "remove", unknown],
        ));
        out.assert_failure().assert_stderr_contains(unknown);
    }

    // A dangerous redirect URI is refused and nothing is added.
    let out = run(&mut one_shot(
        dir.path(),
        &config,
        &[
            "clients",
            "add",
            "--name",
            "Evil",
            "--redirect-uri",
            "javascript:alert(1)",
        ],
    ));
    out.assert_failure();
    let (doc, _) = mcp_authd::store::file::read_state(&state).unwrap();
    assert_eq!(doc.clients.len(), 1, "{:?}", doc.clients.keys());
    assert_owner_only(&state);
}

#[test]
fn state_path_variable_moves_the_state_file() {
    let (dir, config) = config_dir(8080);
    let elsewhere = tempfile::tempdir().unwrap();
    let state = elsewhere.path().join("state.json");
    let out = run(one_shot(
        dir.path(),
        &config,
        &[
            "clients",
            "add",
            "--name",
            "Gemini",
            "--redirect-uri",
            GEMINI_REDIRECT,
        ],
    )
    .env("MCP_AUTH_SERVER_PATH", &state));
    out.assert_success();
    assert_eq!(listing(dir.path()), vec!["servers.json".to_string()]);
    let (doc, _) = mcp_authd::store::file::read_state(&state).unwrap();
    assert_eq!(doc.clients.len(), 1);
    assert_owner_only(&state);

    let out = run(
        one_shot(dir.path(), &config, &["clients", "list"]).env("MCP_AUTH_SERVER_PATH", &state)
    );
    out.assert_success();
    assert!(out.stdout.contains("Gemini"), "{}", out.stdout);
}

#[tokio::test]
async fn provisioned_client_completes_a_flow_with_client_secret_basic() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let state = dir.path().join("auth_server.json");
    let (id, secret) = add_gemini(dir.path(), &config);

    let mut server = Server::start(serve_cmd(dir.path(), &config, port), port);
    server.wait_ready(&http()).await;
    let http = http();
    let base = issuer(port);

    // Authorize through the "proxy" (127.0.0.1 is trusted): no consent page for a
    // pre-provisioned client, straight to the redirect.
    let response = http
        .get(format!("{base}/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", id.as_str()),
            ("redirect_uri", GEMINI_REDIRECT),
            ("code_challenge", challenge(VERIFIER).as_str()),
            ("code_challenge_method", "S256"),
            ("state", "gemini-state"),
        ])
        .header("X-Forwarded-User", "bob@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302, "{}", server.stderr());
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{GEMINI_REDIRECT}?")),
        "{location}"
    );
    let query = query_of(&location);
    assert_eq!(query["state"], "gemini-state");
    assert_eq!(query["iss"], base);
    let code = query["code"].clone();

    // A wrong secret is refused with a Basic challenge.
    let response = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(&id, Some("wrong-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "not-a-code"),
            ("redirect_uri", GEMINI_REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    // The exchange with client_secret_basic.
    let response = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", GEMINI_REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let claims = mcp_authd::verify_access_token(
        tokens["access_token"].as_str().unwrap(),
        &mcp_authd::TokenExpectations {
            issuer: base.clone(),
            audience: format!("{base}/mcp"),
            secret: JWT_SECRET.as_bytes().to_vec(),
            leeway_seconds: 0,
        },
    )
    .unwrap();
    assert_eq!(claims.sub, "bob@example.com");
    assert_eq!(claims.client_id, id);

    // And a refresh with the same authentication.
    let response = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let status = server.terminate().await;
    assert!(status.success(), "{status}");
    let on_disk = state_bytes(&state);
    assert!(!on_disk.contains(&secret) && !on_disk.contains(&refresh));
    let (doc, _) = mcp_authd::store::file::read_state(&state).unwrap();
    assert_eq!(doc.refresh_tokens.len(), 1);
}

#[tokio::test]
async fn inline_state_is_read_only() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let inline = r#"{"clients":{},"refresh_tokens":{}}"#;

    let out = run(one_shot(dir.path(), &config, &["check"]).env("MCP_AUTH_SERVER_CONFIG", inline));
    out.assert_success();

    // `clients add` cannot write inline state.
    let out = run(one_shot(
        dir.path(),
        &config,
        &[
            "clients",
            "add",
            "--name",
            "Gemini",
            "--redirect-uri",
            GEMINI_REDIRECT,
        ],
    )
    .env("MCP_AUTH_SERVER_CONFIG", inline));
    out.assert_failure();

    let mut cmd = serve_cmd(dir.path(), &config, port);
    cmd.env("MCP_AUTH_SERVER_CONFIG", inline);
    let mut server = Server::start(cmd, port);
    server.wait_ready(&http()).await;
    let response = http()
        .post(format!("{}/oauth/register", server.base))
        .json(&json!({
            "client_name": "Inline",
            "redirect_uris": ["http://127.0.0.1:5000/callback"],
            "token_endpoint_auth_method": "client_secret_post"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let status = server.terminate().await;
    assert!(status.success(), "{status}");
    assert_eq!(
        listing(dir.path()),
        vec!["servers.json".to_string()],
        "inline state must never be written"
    );

    // Corrupt inline state is refused like a corrupt file.
    let out =
        run(one_shot(dir.path(), &config, &["check"])
            .env("MCP_AUTH_SERVER_CONFIG", r#"{"clients": ["#));
    out.assert_failure();
    assert!(
        out.stderr.to_lowercase().contains("corrupt"),
        "{}",
        out.stderr
    );
}

/// A state document with one client, `{client}` filed under `{key}`, and two refresh-token
/// families with ids `{f1}` and `{f2}`.
fn state_text(key: &str, client: &str, f1: &str, f2: &str) -> String {
    let family = r#"{"grant": {"client_id": "CLIENT", "sub": "alice", "groups": [], "scope": "",
        "resource": "http://127.0.0.1:8080/mcp"}, "current_hash": "h", "created_at": 1,
        "expires_at": 99999999999}"#
        .replace("CLIENT", client);
    format!(
        r#"{{"version": 1, "seq": 3, "clients": {{"{key}": {{"client_id": "{client}",
        "client_name": "c", "redirect_uris": ["http://127.0.0.1:5000/cb"],
        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"],
        "response_types": ["code"], "client_id_issued_at": 1, "registration": "dynamic"}}}},
        "refresh_tokens": {{"{f1}": {family}, "{f2}": {family}}}}}"#
    )
}

#[test]
fn a_corrupt_state_file_stops_serve_and_check_and_is_left_untouched() {
    // The control: well-formed, so what fails below fails for the one thing changed.
    let (dir, config) = config_dir(8080);
    std::fs::write(
        dir.path().join("auth_server.json"),
        state_text("c1", "c1", "f1", "f2"),
    )
    .unwrap();
    run(&mut one_shot(dir.path(), &config, &["check"])).assert_success();

    let truncated = r#"{"clients": ["#.to_string();
    let future = r#"{"version": 99, "clients": {}, "refresh_tokens": {}}"#.to_string();
    // serde would keep the second of two equal keys; the load must refuse instead.
    let twice = state_text("c1", "c1", "f1", "f1");
    let misfiled = state_text("c1", "c2", "f1", "f2");
    for content in [&truncated, &future, &twice, &misfiled] {
        let (dir, config) = config_dir(8080);
        let state = dir.path().join("auth_server.json");
        std::fs::write(&state, content).unwrap();

        let check = run(&mut one_shot(dir.path(), &config, &["check"]));
        let serve = run(&mut serve_cmd(dir.path(), &config, free_port()));
        for (what, out) in [("check", &check), ("serve", &serve)] {
            out.assert_failure();
            assert!(
                out.stderr.to_lowercase().contains("corrupt"),
                "{what} on {content:?}:\n{}",
                out.stderr
            );
        }
        assert_eq!(
            &std::fs::read_to_string(&state).unwrap(),
            content,
            "a corrupt state file must never be overwritten"
        );
    }
}

/// Signs `user` in with a pre-provisioned client (no consent page) and returns the token
/// response.
pub(crate) async fn sign_in_provisioned(base: &str, id: &str, secret: &str, user: &str) -> Value {
    let http = http();
    let response = http
        .get(format!("{base}/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", id),
            ("redirect_uri", GEMINI_REDIRECT),
            ("code_challenge", challenge(VERIFIER).as_str()),
            ("code_challenge_method", "S256"),
        ])
        .header("X-Forwarded-User", user)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let code = query_of(response.headers()["location"].to_str().unwrap())["code"].clone();
    let response = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", GEMINI_REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A refresh with client_secret_basic; returns the status.
pub(crate) async fn refresh_status(base: &str, id: &str, secret: &str, refresh_token: &str) -> u16 {
    http()
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn admin_commands_reach_a_running_server_through_its_socket() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let mut server = Server::start(serve_cmd(dir.path(), &config, port), port);
    server.wait_ready(&http()).await;
    let base = issuer(port);
    let socket = dir.path().join("auth_server.json.sock");
    assert_owner_only(&socket);

    // `clients add` while the server holds the state: the client works at once.
    let (id, secret) = add_gemini(dir.path(), &config);
    let alice = sign_in_provisioned(&base, &id, &secret, "alice@example.com").await;
    let bob = sign_in_provisioned(&base, &id, &secret, "bob@example.com").await;

    // `tokens list` reads the live state.
    let out = run(&mut one_shot(dir.path(), &config, &["tokens", "list"]));
    out.assert_success();
    assert!(out.stdout.contains("alice@example.com") && out.stdout.contains("bob@example.com"));
    assert!(
        !out.stdout
            .contains(alice["refresh_token"].as_str().unwrap())
    );
    let out = run(&mut one_shot(
        dir.path(),
        &config,
        &["tokens", "list", "--user", "bob@example.com"],
    ));
    assert!(!out.stdout.contains("alice@example.com"));

    // Offboarding alice revokes her sign-in only, without a restart.
    let out = run(&mut one_shot(
        dir.path(),
        &config,
        &["tokens", "revoke", "--user", "alice@example.com"],
    ));
    out.assert_success();
    assert!(out.stdout.contains("revoked 1 sign-in"), "{}", out.stdout);
    let alice_refresh = alice["refresh_token"].as_str().unwrap();
    let bob_refresh = bob["refresh_token"].as_str().unwrap();
    assert_eq!(
        refresh_status(&base, &id, &secret, alice_refresh).await,
        400
    );
    assert_eq!(refresh_status(&base, &id, &secret, bob_refresh).await, 200);

    // `clients remove` through the socket: the client is gone at once.
    run(&mut one_shot(
        dir.path(),
        &config,
        &["clients", "remove", &id],
    ))
    .assert_success();
    assert_eq!(refresh_status(&base, &id, &secret, bob_refresh).await, 401);

    assert!(server.terminate().await.success());
    assert!(!socket.exists(), "the socket is removed on shutdown");
    // What the server did on the admin's behalf is durable.
    let (doc, _) =
        mcp_authd::store::file::read_state(&dir.path().join("auth_server.json")).unwrap();
    assert!(doc.clients.is_empty() && doc.refresh_tokens.is_empty());
}

#[test]
fn check_reports_the_signing_key_ids() {
    let dir = tempfile::tempdir().unwrap();
    let doc = servers_json_with("http://127.0.0.1:8080", |oauth| {
        oauth["previousJwtSecrets"] = json!(["an-older-secret-an-older-secret-0123456789"]);
    });
    let config = write_config(dir.path(), &doc);
    let out = run(&mut one_shot(dir.path(), &config, &["check"]));
    out.assert_success();
    let current = mcp_authd::jwt::key_id(JWT_SECRET.as_bytes());
    let previous = mcp_authd::jwt::key_id(b"an-older-secret-an-older-secret-0123456789");
    assert!(
        out.stdout
            .contains(&format!("signing key id:    {current}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&previous), "{}", out.stdout);
}

/// `gen-key` in `dir`; returns what it printed as `name: value` pairs.
fn gen_key(dir: &Path, algorithm: &str, output: &str) -> (Outcome, Vec<(String, String)>) {
    let out = run(mcp_authd(dir).args(["gen-key", "--algorithm", algorithm, "--output", output]));
    let fields = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (out, fields)
}

#[test]
fn gen_key_writes_an_owner_only_key_pair_and_prints_its_thumbprint() {
    let dir = tempfile::tempdir().unwrap();
    for (algorithm, file) in [("EdDSA", "ed.pem"), ("ES256", "ec.pem")] {
        let (out, fields) = gen_key(dir.path(), algorithm, file);
        out.assert_success();
        let private = dir.path().join(file);
        assert_owner_only(&private);
        let text = std::fs::read_to_string(&private).unwrap();
        assert!(
            text.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "PKCS#8 PEM"
        );
        let key = mcp_authd::signing::PrivateKey::from_pem(&text).unwrap();
        assert_eq!(key.algorithm().as_str(), algorithm);
        let public_text = std::fs::read_to_string(dir.path().join(format!("{file}.pub"))).unwrap();
        let public = mcp_authd::signing::PublicKey::from_pem(&public_text).unwrap();
        assert_eq!(&public, key.public_key());
        let kid = fields
            .iter()
            .find(|(k, _)| k == "kid")
            .map(|(_, v)| v.clone());
        assert_eq!(kid, Some(public.thumbprint()), "{}", out.stdout);
        // The printed output never holds the private key.
        assert!(!out.stdout.contains("PRIVATE") && !out.stderr.contains("PRIVATE"));
    }
    // Two runs never produce the same key.
    let (out, _) = gen_key(dir.path(), "EdDSA", "ed2.pem");
    out.assert_success();
    assert_ne!(
        std::fs::read(dir.path().join("ed.pem")).unwrap(),
        std::fs::read(dir.path().join("ed2.pem")).unwrap()
    );
}

#[test]
fn gen_key_refuses_to_overwrite_and_to_make_hs256_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = gen_key(dir.path(), "EdDSA", "signing.pem");
    out.assert_success();
    let before = std::fs::read(dir.path().join("signing.pem")).unwrap();
    let (out, _) = gen_key(dir.path(), "ES256", "signing.pem");
    out.assert_failure()
        .assert_stderr_contains("refusing to overwrite signing.pem");
    assert_eq!(
        std::fs::read(dir.path().join("signing.pem")).unwrap(),
        before
    );

    // An existing public file is not replaced either, and no private key is left behind.
    std::fs::write(dir.path().join("other.pem.pub"), "keep me").unwrap();
    let (out, _) = gen_key(dir.path(), "EdDSA", "other.pem");
    out.assert_failure()
        .assert_stderr_contains("refusing to overwrite other.pem.pub");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("other.pem.pub")).unwrap(),
        "keep me"
    );
    assert!(!dir.path().join("other.pem").exists());

    for bad in ["HS256", "RS256", "eddsa"] {
        let (out, _) = gen_key(dir.path(), bad, "x.pem");
        out.assert_failure();
        assert!(!dir.path().join("x.pem").exists(), "{bad}");
    }
}

#[tokio::test]
async fn serve_and_check_use_a_generated_key_found_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    let (out, fields) = gen_key(dir.path(), "ES256", "keys/new.pem");
    out.assert_success();
    let (out, old_fields) = gen_key(dir.path(), "EdDSA", "keys/old.pem");
    out.assert_success();
    let kid = |f: &[(String, String)]| f.iter().find(|(k, _)| k == "kid").unwrap().1.clone();
    let port = free_port();
    // Relative paths: taken from the configuration's directory, not from where serve runs.
    let doc = servers_json_with(&issuer(port), |oauth| {
        oauth["signing"] = json!({
            "algorithm": "ES256",
            "privateKeyFile": "keys/new.pem",
            "previousPublicKeyFiles": ["keys/old.pem.pub"]
        });
    });
    let config = write_config(dir.path(), &doc);
    let elsewhere = tempfile::tempdir().unwrap();

    let out = run(&mut one_shot(elsewhere.path(), &config, &["check"]));
    out.assert_success();
    assert!(
        out.stdout.contains("signing:           ES256"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("signing key id:    {}", kid(&fields))),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(&kid(&old_fields)), "{}", out.stdout);

    let mut cmd = serve_cmd(elsewhere.path(), &config, port);
    cmd.env("RUST_LOG", "trace");
    let mut server = Server::start(cmd, port);
    server.wait_ready(&http()).await;
    let jwks: Value = http()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [kid(&fields), kid(&old_fields)]);
    assert!(server.terminate().await.success());
    // Neither the summary nor a trace-level log shows any line of the private keys.
    let logs = format!("{}{}{}", out.stdout, out.stderr, server.stderr());
    assert!(logs.contains(&kid(&fields)), "serve names its key id");
    for file in ["keys/new.pem", "keys/old.pem"] {
        let pem = std::fs::read_to_string(dir.path().join(file)).unwrap();
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!logs.contains(line), "{file} leaked");
        }
    }

    // A key file that is not there stops both, naming the field.
    let doc = servers_json_with(&issuer(port), |oauth| {
        oauth["signing"] = json!({"algorithm": "EdDSA", "privateKeyFile": "keys/none.pem"});
    });
    let config = write_config(dir.path(), &doc);
    run(&mut one_shot(dir.path(), &config, &["check"]))
        .assert_failure()
        .assert_stderr_contains("error: oauthAs.signing.privateKeyFile: ");
    run(&mut serve_cmd(dir.path(), &config, port))
        .assert_failure()
        .assert_stderr_contains("error: oauthAs.signing.privateKeyFile: ");
}
