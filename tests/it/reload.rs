//! Configuration reload on SIGHUP (SPEC §15), against the real binary: a valid `servers.json`
//! replaces the running configuration (also for a keep-alive connection opened before) and is
//! audited as `config_reloaded`; an invalid one changes nothing and every problem is logged; a
//! `jwtSecret` rotation through `previousJwtSecrets` keeps access tokens, refresh tokens and
//! consent pages of the old secret working; `store` and `maxConnections` need a restart.
//!
//! Logs are read as JSON lines (`--log-format json`), so the audit fields are checked exactly.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::cli::{
    JWT_SECRET, Server, add_gemini, issuer, refresh_status, serve_cmd, servers_json_with,
    sign_in_provisioned, write_config,
};
use crate::connections::{read_response, signal};
use crate::helpers::{VERIFIER, challenge, consent_ticket, query_of};
use crate::process::{free_port, http};

/// The secret a rotation moves to.
const NEW_SECRET: &str = "reload-test-new-secret-Zq8Wm3Kp7Tn2Vx5Rb9Ld4";

/// How long a reload may take to be logged.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A redirect URI for dynamically registered clients.
const REDIRECT: &str = "http://127.0.0.1:45871/callback";

/// A running server, its directory (with `servers.json`) and its port.
struct Running {
    dir: tempfile::TempDir,
    server: Server,
    port: u16,
}

impl Running {
    /// `serve --log-format json` on a fresh directory holding `servers.json` with `change`
    /// applied to its `oauthAs` section; `prepare` runs on the directory before the start
    /// (e.g. `clients add`).
    async fn start(change: impl FnOnce(&mut Value), prepare: impl FnOnce(&Path, &Path)) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &servers_json_with(&issuer(port), change));
        prepare(dir.path(), &config);
        let mut cmd = serve_cmd(dir.path(), &config, port);
        cmd.args(["--log-format", "json"]);
        let mut server = Server::start(cmd, port);
        server.wait_ready(&http()).await;
        Self { dir, server, port }
    }

    fn base(&self) -> String {
        issuer(self.port)
    }

    /// Rewrites `servers.json` with `change` applied to the default section.
    fn write(&self, change: impl FnOnce(&mut Value)) {
        write_config(self.dir.path(), &servers_json_with(&self.base(), change));
    }

    /// Every JSON log line so far.
    fn log(&self) -> Vec<Value> {
        self.server
            .stderr()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The `config_reloaded` audit events so far.
    fn reloads(&self) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|l| l["target"] == "audit" && l["event"] == "config_reloaded")
            .collect()
    }

    /// Lines saying a reload was refused.
    fn refusals(&self) -> usize {
        self.messages("ERROR")
            .iter()
            .filter(|m| m.starts_with("configuration reload refused"))
            .count()
    }

    /// The messages of the lines at `level`.
    fn messages(&self, level: &str) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| l["level"] == level)
            .filter_map(|l| l["message"].as_str().map(str::to_string))
            .collect()
    }

    /// Sends SIGHUP and waits until one more reload has been applied or refused; returns
    /// whether it was applied, with the `config_reloaded` event if so.
    async fn hup(&self) -> Option<Value> {
        let (applied, refused) = (self.reloads().len(), self.refusals());
        signal(&self.server, "HUP");
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        loop {
            let reloads = self.reloads();
            if reloads.len() > applied {
                return reloads.last().cloned();
            }
            if self.refusals() > refused {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "no reload logged within {RELOAD_TIMEOUT:?}\n{}",
                self.server.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The authorization server metadata.
    async fn metadata(&self) -> Value {
        let response = http()
            .get(format!(
                "{}/.well-known/oauth-authorization-server",
                self.base()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    fn assert_alive(&mut self) {
        assert!(
            self.server.child.try_wait().unwrap().is_none(),
            "the server stopped\n{}",
            self.server.stderr()
        );
    }
}

#[tokio::test]
async fn a_valid_file_is_applied_on_sighup_and_audited_with_the_changed_settings() {
    let mut gemini = None;
    let mut running =
        Running::start(|_| {}, |dir, config| gemini = Some(add_gemini(dir, config))).await;
    let (id, secret) = gemini.unwrap();
    let base = running.base();
    assert_eq!(running.metadata().await["scopes_supported"], json!([]));
    let before = sign_in_provisioned(&base, &id, &secret, "alice@example.com").await;
    assert_eq!(before["expires_in"], 3600);

    running.write(|s| {
        s["scopesSupported"] = json!(["tools:read", "tools:call"]);
        s["accessTokenTtlSeconds"] = json!(120);
    });
    let event = running.hup().await.expect("the reload is applied");
    assert_eq!(event["changed"], "accessTokenTtlSeconds,scopesSupported");
    assert_eq!(event["level"], "INFO");
    assert_eq!(
        running.metadata().await["scopes_supported"],
        json!(["tools:read", "tools:call"])
    );
    let after = sign_in_provisioned(&base, &id, &secret, "alice@example.com").await;
    assert_eq!(after["expires_in"], 120);
    // A refresh token issued before the reload gets the new lifetime too.
    let refreshed = http()
        .post(format!("{base}/oauth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", before["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    assert_eq!(refreshed.json::<Value>().await.unwrap()["expires_in"], 120);

    // SIGHUPs in a row: each is handled in turn (several may be folded into one), the server
    // keeps serving, and an unchanged file reloads with nothing changed.
    for _ in 0..5 {
        signal(&running.server, "HUP");
    }
    let event = running.hup().await.expect("the reload is applied");
    assert_eq!(event["changed"], "none");
    running.assert_alive();
    assert_eq!(
        running.metadata().await["scopes_supported"],
        json!(["tools:read", "tools:call"])
    );
    assert!(running.messages("ERROR").is_empty(), "{:?}", running.log());
    assert!(running.server.terminate().await.success());
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_logs_every_problem_and_the_server_keeps_serving() {
    let mut running = Running::start(|s| s["scopesSupported"] = json!(["before"]), |_, _| {}).await;
    let config = running.dir.path().join("servers.json");

    // Not JSON.
    std::fs::write(&config, "{\"serverAuth\": {").unwrap();
    assert_eq!(running.hup().await, None);
    assert!(
        running
            .messages("ERROR")
            .iter()
            .any(|m| m.starts_with("configuration reload: servers.json is not valid JSON")),
        "{:?}",
        running.messages("ERROR")
    );

    // A wrongly typed value (and a change that must not be applied either).
    running.write(|s| {
        s["scopesSupported"] = json!(["after"]);
        s["accessTokenTtlSeconds"] = json!("soon");
    });
    let errors_before = running.messages("ERROR").len();
    assert_eq!(running.hup().await, None);
    let errors: Vec<String> = running.messages("ERROR")[errors_before..].to_vec();
    assert!(
        errors.contains(
            &"configuration reload: oauthAs.accessTokenTtlSeconds: expected a number".to_string()
        ),
        "{errors:?}"
    );
    // Two problems found by validation: each is logged on a line of its own.
    running.write(|s| {
        s["scopesSupported"] = json!(["after"]);
        s["jwtSecret"] = json!("too-short");
        s["trustedSourceCidrs"] = json!([]);
    });
    let errors_before = running.messages("ERROR").len();
    assert_eq!(running.hup().await, None);
    let errors: Vec<String> = running.messages("ERROR")[errors_before..].to_vec();
    for problem in [
        "configuration reload: oauthAs.jwtSecret must be at least 32 bytes",
        "configuration reload: oauthAs.trustedSourceCidrs must list at least one CIDR",
    ] {
        assert!(errors.iter().any(|e| e == problem), "{problem}: {errors:?}");
    }
    assert!(
        errors
            .last()
            .unwrap()
            .starts_with("configuration reload refused: 2 problem(s)"),
        "{errors:?}"
    );
    assert!(
        !running.server.stderr().contains("too-short"),
        "a secret value reached the log"
    );

    // Unreadable (gone).
    std::fs::remove_file(&config).unwrap();
    assert_eq!(running.hup().await, None);
    assert!(
        running
            .messages("ERROR")
            .iter()
            .any(|m| m.starts_with("configuration reload: cannot read")),
    );

    // Through all of it the first configuration served, and nothing was reloaded.
    running.assert_alive();
    assert_eq!(
        running.metadata().await["scopes_supported"],
        json!(["before"])
    );
    assert!(running.reloads().is_empty());
    let live = http()
        .get(format!("{}/livez", running.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);

    // A good file again is applied.
    running.write(|s| s["scopesSupported"] = json!(["fixed"]));
    let event = running.hup().await.expect("the reload is applied");
    assert_eq!(event["changed"], "scopesSupported");
    assert_eq!(
        running.metadata().await["scopes_supported"],
        json!(["fixed"])
    );
    assert!(running.server.terminate().await.success());
}

/// POST /oauth/introspect of `token` by the provisioned client; the `active` member.
async fn is_active(base: &str, id: &str, secret: &str, token: &str) -> bool {
    let response = http()
        .post(format!("{base}/oauth/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["active"]
        .as_bool()
        .unwrap()
}

/// A refresh by the provisioned client; the token response.
async fn refresh(base: &str, id: &str, secret: &str, refresh_token: &str) -> Value {
    let response = http()
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn expectations(base: &str, secret: &str) -> mcp_authd::TokenExpectations {
    mcp_authd::TokenExpectations {
        issuer: base.to_string(),
        audience: format!("{base}/mcp"),
        secret: secret.as_bytes().to_vec(),
        leeway_seconds: 0,
    }
}

#[tokio::test]
async fn a_jwt_secret_rotation_keeps_old_tokens_refreshes_and_consent_pages_working() {
    let mut gemini = None;
    let mut running =
        Running::start(|_| {}, |dir, config| gemini = Some(add_gemini(dir, config))).await;
    let (id, secret) = gemini.unwrap();
    let base = running.base();
    let http = http();

    // Before the rotation: a sign-in, one refresh (so a grace retry of the first token is
    // possible), and a consent page shown to bob for a dynamically registered client.
    let signed_in = sign_in_provisioned(&base, &id, &secret, "alice@example.com").await;
    let old_access = signed_in["access_token"].as_str().unwrap().to_string();
    let first_refresh = signed_in["refresh_token"].as_str().unwrap().to_string();
    let rotated = refresh(&base, &id, &secret, &first_refresh).await;
    let second_refresh = rotated["refresh_token"].as_str().unwrap().to_string();
    let registered: Value = http
        .post(format!("{base}/oauth/register"))
        .json(&json!({"client_name": "Rotation test", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_string();
    let page = http
        .get(format!("{base}/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge(VERIFIER).as_str()),
            ("code_challenge_method", "S256"),
            ("state", "before-rotation"),
        ])
        .header("X-Forwarded-User", "bob@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "a consent page");
    let ticket = consent_ticket(&page.text().await.unwrap());

    // Step 1 of the rotation: a new jwtSecret, the old one moved to previousJwtSecrets.
    running.write(|s| {
        s["jwtSecret"] = json!(NEW_SECRET);
        s["previousJwtSecrets"] = json!([JWT_SECRET]);
    });
    let event = running.hup().await.expect("the reload is applied");
    assert_eq!(event["changed"], "jwtSecret,previousJwtSecrets");
    let log = running.server.stderr();
    assert!(!log.contains(NEW_SECRET) && !log.contains(JWT_SECRET));

    // The access token signed with the old secret is still active.
    assert!(is_active(&base, &id, &secret, &old_access).await);
    // A grace retry of the rotation made before the reload gets that rotation's successor.
    let retried = refresh(&base, &id, &secret, &first_refresh).await;
    assert_eq!(retried["refresh_token"], second_refresh.as_str());
    // The refresh token issued before the reload rotates, and new tokens carry the new key.
    let after = refresh(&base, &id, &secret, &second_refresh).await;
    let new_access = after["access_token"].as_str().unwrap();
    assert!(mcp_authd::verify_access_token(new_access, &expectations(&base, NEW_SECRET)).is_ok());
    assert!(mcp_authd::verify_access_token(new_access, &expectations(&base, JWT_SECRET)).is_err());
    assert!(is_active(&base, &id, &secret, new_access).await);
    // The consent page served before the reload is approved after it, once.
    let approve = || {
        http.post(format!("{base}/oauth/authorize/consent"))
            .header("X-Forwarded-User", "bob@example.com")
            .form(&[("ticket", ticket.as_str()), ("decision", "approve")])
            .send()
    };
    let approved = approve().await.unwrap();
    assert_eq!(approved.status(), 303);
    let location = approved.headers()["location"].to_str().unwrap().to_string();
    let query = query_of(&location);
    assert_eq!(query["state"], "before-rotation");
    let exchanged = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id.as_str()),
            ("code", query["code"].as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(exchanged.status(), 200);
    assert_eq!(
        approve().await.unwrap().status(),
        403,
        "a ticket stays single use"
    );

    // Step 2, once accessTokenTtlSeconds has passed: drop the previous secret. Tokens of the
    // old secret stop verifying; the sign-in itself goes on.
    running.write(|s| s["jwtSecret"] = json!(NEW_SECRET));
    let event = running.hup().await.expect("the reload is applied");
    assert_eq!(event["changed"], "previousJwtSecrets");
    assert!(!is_active(&base, &id, &secret, &old_access).await);
    assert!(is_active(&base, &id, &secret, new_access).await);
    assert_eq!(
        refresh_status(
            &base,
            &id,
            &secret,
            after["refresh_token"].as_str().unwrap()
        )
        .await,
        200
    );
    running.assert_alive();
    assert!(running.server.terminate().await.success());
}

#[tokio::test]
async fn a_store_or_connection_cap_change_needs_a_restart_and_keeps_the_running_store() {
    let mut gemini = None;
    let mut running =
        Running::start(|_| {}, |dir, config| gemini = Some(add_gemini(dir, config))).await;
    let (id, secret) = gemini.unwrap();
    let base = running.base();
    let signed_in = sign_in_provisioned(&base, &id, &secret, "alice@example.com").await;

    running.write(|s| {
        s["store"] = json!({"type": "file", "path": "moved/auth_server.json"});
        s["maxConnections"] = json!(64);
        s["scopesSupported"] = json!(["applied"]);
    });
    std::fs::create_dir(running.dir.path().join("moved")).unwrap();
    let event = running
        .hup()
        .await
        .expect("the rest of the file is applied");
    assert_eq!(event["changed"], "scopesSupported");
    let warnings = running.messages("WARN");
    for needle in ["oauthAs.store changed", "oauthAs.maxConnections changed"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(needle) && w.contains("restart mcp-authd")),
            "{needle}: {warnings:?}"
        );
    }
    assert_eq!(
        running.metadata().await["scopes_supported"],
        json!(["applied"])
    );
    // Still the same state: the client and its sign-in work, nothing was written elsewhere.
    let refreshed = refresh(
        &base,
        &id,
        &secret,
        signed_in["refresh_token"].as_str().unwrap(),
    )
    .await;
    let moved = running.dir.path().join("moved/auth_server.json");
    assert!(!moved.exists());
    // A second reload of the same file warns again (a restart is still needed).
    let store_warnings = |r: &Running| {
        r.messages("WARN")
            .iter()
            .filter(|w| w.contains("oauthAs.store changed"))
            .count()
    };
    assert_eq!(store_warnings(&running), 1);
    running.hup().await.expect("the reload is applied");
    assert_eq!(store_warnings(&running), 2);

    // After the restart the state is where the file says.
    assert!(running.server.terminate().await.success());
    let config = running.dir.path().join("servers.json");
    let mut cmd = serve_cmd(running.dir.path(), &config, running.port);
    cmd.args(["--log-format", "json"]);
    let mut restarted = Server::start(cmd, running.port);
    restarted.wait_ready(&http()).await;
    assert!(moved.exists());
    assert_eq!(
        refresh_status(
            &base,
            &id,
            &secret,
            refreshed["refresh_token"].as_str().unwrap()
        )
        .await,
        401,
        "the client lives in the old state, which the restarted server no longer reads"
    );
    assert!(restarted.terminate().await.success());
}

#[tokio::test]
async fn a_keep_alive_connection_opened_before_the_reload_sees_the_new_configuration() {
    let running = Running::start(|_| {}, |_, _| {}).await;
    let mut stream = TcpStream::connect(("127.0.0.1", running.port))
        .await
        .unwrap();
    let request =
        b"GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let scopes_of = |response: &str| -> Value {
        let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
        serde_json::from_str::<Value>(body).unwrap()["scopes_supported"].clone()
    };
    stream.write_all(request).await.unwrap();
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert_eq!(scopes_of(&first), json!([]));

    running.write(|s| s["scopesSupported"] = json!(["after-reload"]));
    running.hup().await.expect("the reload is applied");

    // The same connection, its next request: the new configuration.
    stream.write_all(request).await.unwrap();
    let second = read_response(&mut stream).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert_eq!(scopes_of(&second), json!(["after-reload"]));
}
