//! The admin commands of SPEC §15 and the state portability of §10, with the real binary:
//! each command on the state directly (no server) and through the admin socket of a running
//! server, the JSON the listings print, and what each change does at the endpoints at once.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cli::{
    GEMINI_REDIRECT, Outcome, Server, add_gemini, config_dir, listing, one_shot, refresh_status,
    run, serve_cmd, sign_in_provisioned,
};
use crate::helpers::{VERIFIER, assert_owner_only, challenge, consent_ticket, query_of};
use crate::process::{free_port, http};

/// A redirect URI the test configuration allows for self-registered clients.
const REDIRECT: &str = "http://127.0.0.1:5000/callback";

/// The documented fields of `clients list --json`, sorted.
const CLIENT_FIELDS: [&str; 10] = [
    "application_type",
    "client_id",
    "client_id_issued_at",
    "client_name",
    "grant_types",
    "introspection_only",
    "redirect_uris",
    "registration",
    "scope",
    "token_endpoint_auth_method",
];
/// The documented fields of `tokens list --json`, sorted.
const SIGN_IN_FIELDS: [&str; 10] = [
    "client_id",
    "client_name",
    "created_at",
    "expires_at",
    "groups",
    "resource",
    "rotated_at",
    "scope",
    "sid",
    "sub",
];
/// The documented fields of `consents list --json`, sorted.
const CONSENT_FIELDS: [&str; 5] = ["approved_at", "client_id", "client_name", "scope", "sub"];

/// `mcp-authd ARGS --config CONFIG` in `dir`, run to completion.
fn admin(dir: &Path, config: &Path, args: &[&str]) -> Outcome {
    run(&mut one_shot(dir, config, args))
}

/// The JSON a successful command printed.
fn json_of(out: &Outcome) -> Value {
    out.assert_success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout))
}

/// The sorted keys of a JSON object.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// The `client_id: …` and `client_secret: …` lines a command printed.
fn credentials(out: &Outcome) -> (String, String) {
    out.assert_success();
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no `{name}: …` line in\n{}", out.stdout))
            .trim()
            .to_string()
    };
    (field("client_id"), field("client_secret"))
}

/// `clients add --introspection-only`; returns (client_id, client_secret).
fn add_introspection_client(dir: &Path, config: &Path) -> (String, String) {
    credentials(&admin(
        dir,
        config,
        &[
            "clients",
            "add",
            "--name",
            "MCP server",
            "--introspection-only",
        ],
    ))
}

/// The state file in `dir`.
fn state_of(dir: &Path) -> PathBuf {
    dir.join("auth_server.json")
}

/// `serve` on `port`, with the audit trail also in `audit` (JSON lines).
fn start_audited(dir: &Path, config: &Path, port: u16, audit: &Path) -> Server {
    let mut cmd = serve_cmd(dir, config, port);
    cmd.arg("--audit-log").arg(audit);
    Server::start(cmd, port)
}

/// The audit events named `event` in the audit file.
fn audit_events(audit: &Path, event: &str) -> Vec<Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == event)
        .collect()
}

/// Registers a public client; returns its id.
async fn register_public(base: &str) -> String {
    let response = http()
        .post(format!("{base}/oauth/register"))
        .json(&json!({"client_name": "Desktop app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// GET /oauth/authorize for a public client, as the proxy sends it for `user`.
async fn authorize(base: &str, client_id: &str, user: &str) -> reqwest::Response {
    http()
        .get(format!("{base}/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge(VERIFIER).as_str()),
            ("code_challenge_method", "S256"),
        ])
        .header("X-Forwarded-User", user)
        .send()
        .await
        .unwrap()
}

/// Signs `user` in with a public client, approving the consent page if it is shown; returns
/// the token response.
async fn sign_in_public(base: &str, client_id: &str, user: &str) -> Value {
    let mut response = authorize(base, client_id, user).await;
    if response.status() == 200 {
        let ticket = consent_ticket(&response.text().await.unwrap());
        response = http()
            .post(format!("{base}/oauth/authorize/consent"))
            .header("X-Forwarded-User", user)
            .form(&[("ticket", ticket.as_str()), ("decision", "approve")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
    } else {
        assert_eq!(response.status(), 302);
    }
    let code = query_of(response.headers()["location"].to_str().unwrap())["code"].clone();
    let response = http()
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// A refresh as a public client: the status, and the new refresh token on success.
async fn refresh_public(base: &str, client_id: &str, refresh: &str) -> (u16, Option<String>) {
    let response = http()
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["refresh_token"].as_str().map(str::to_string))
}

/// A refresh with client_secret_basic: the new refresh token (the refresh must succeed).
async fn refresh_provisioned(base: &str, id: &str, secret: &str, refresh: &str) -> String {
    let response = http()
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A code exchange with a made-up code and client_secret_basic: 401 `invalid_client` when
/// the secret is refused, 400 `invalid_grant` once it is accepted (the code is the problem).
async fn token_with_secret(base: &str, id: &str, secret: &str) -> (u16, String) {
    let response = http()
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "not-a-code"),
            ("redirect_uri", GEMINI_REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

/// POST /oauth/introspect with client_secret_basic: the status and the body.
async fn introspect(base: &str, id: &str, secret: &str, token: &str) -> (u16, Value) {
    let response = http()
        .post(format!("{base}/oauth/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts a failed command printed exactly one line, containing `needle`, and exited 1.
fn assert_one_line_failure(out: &Outcome, needle: &str) {
    out.assert_failure();
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(lines[0].contains(needle), "{}", out.stderr);
}

#[tokio::test]
async fn listings_print_the_documented_json_from_the_files_and_through_the_socket() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let (gemini, gemini_secret) = add_gemini(dir.path(), &config);
    let (mcp, _) = add_introspection_client(dir.path(), &config);
    let mut server = Server::start(serve_cmd(dir.path(), &config, port), port);
    server.wait_ready(&http()).await;
    let base = server.base.clone();
    let alice = sign_in_provisioned(&base, &gemini, &gemini_secret, "alice@example.com").await;
    let desktop = register_public(&base).await;
    let bob = sign_in_public(&base, &desktop, "bob@example.com").await;

    let listings = [
        &["clients", "list", "--json"][..],
        &["tokens", "list", "--json"],
        &["consents", "list", "--json"],
        &["tokens", "list", "--user", "bob@example.com", "--json"],
        &["consents", "list", "--user", "alice@example.com", "--json"],
    ];
    let live: Vec<Value> = listings
        .iter()
        .map(|args| json_of(&admin(dir.path(), &config, args)))
        .collect();

    // Clients, in id order, each with every documented field and no secret.
    let clients = live[0].as_array().unwrap();
    assert_eq!(clients.len(), 3, "{}", live[0]);
    let by_id = |id: &str| {
        clients
            .iter()
            .find(|c| c["client_id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {}", live[0]))
    };
    for c in clients {
        assert_eq!(keys(c), CLIENT_FIELDS, "{c}");
    }
    let ids: Vec<&str> = clients
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    let g = by_id(&gemini);
    assert_eq!(g["registration"], "provisioned");
    assert_eq!(g["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(g["introspection_only"], false);
    assert_eq!(g["redirect_uris"], json!([GEMINI_REDIRECT]));
    assert_eq!(g["client_name"], "Gemini");
    assert!(g["client_id_issued_at"].as_u64().unwrap() > 1_600_000_000);
    let m = by_id(&mcp);
    assert_eq!(m["introspection_only"], true);
    assert_eq!(m["redirect_uris"], json!([]));
    assert_eq!(m["grant_types"], json!([]));
    let d = by_id(&desktop);
    assert_eq!(d["registration"], "dynamic");
    assert_eq!(d["token_endpoint_auth_method"], "none");
    assert_eq!(d["application_type"], "native");
    let (doc, _) = mcp_authd::store::file::read_state(&state_of(dir.path())).unwrap();
    let text = live
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!text.contains("secret_hash") && !text.contains("current_hash"));
    for c in doc.clients.values() {
        if let Some(hash) = &c.secret_hash {
            assert!(!text.contains(hash.as_str()), "a secret hash was listed");
        }
    }
    for (key, f) in &doc.refresh_tokens {
        assert!(!text.contains(&f.current_hash), "a token hash was listed");
        assert!(text.contains(key.as_str()), "the sid {key} is listed");
    }
    for token in [&alice, &bob] {
        assert!(!text.contains(token["refresh_token"].as_str().unwrap()));
    }

    // Sign-ins, by user.
    let sign_ins = live[1].as_array().unwrap();
    assert_eq!(sign_ins.len(), 2, "{}", live[1]);
    for s in sign_ins {
        assert_eq!(keys(s), SIGN_IN_FIELDS, "{s}");
    }
    assert_eq!(sign_ins[0]["sub"], "alice@example.com");
    assert_eq!(sign_ins[0]["client_id"], gemini.as_str());
    assert_eq!(sign_ins[0]["client_name"], "Gemini");
    assert_eq!(sign_ins[0]["rotated_at"], Value::Null);
    assert_eq!(sign_ins[0]["resource"], format!("{base}/mcp"));
    assert!(
        sign_ins[0]["expires_at"].as_u64().unwrap() > sign_ins[0]["created_at"].as_u64().unwrap()
    );
    assert_eq!(sign_ins[1]["sub"], "bob@example.com");
    assert_eq!(sign_ins[1]["client_id"], desktop.as_str());

    // Consents: bob's approval of the self-registered client (the provisioned one needs none).
    let consents = live[2].as_array().unwrap();
    assert_eq!(consents.len(), 1, "{}", live[2]);
    assert_eq!(keys(&consents[0]), CONSENT_FIELDS);
    assert_eq!(consents[0]["sub"], "bob@example.com");
    assert_eq!(consents[0]["client_id"], desktop.as_str());
    assert_eq!(consents[0]["client_name"], "Desktop app");
    assert_eq!(consents[0]["scope"], "");
    assert!(consents[0]["approved_at"].as_u64().unwrap() > 1_600_000_000);
    // The --user filters.
    assert_eq!(live[3].as_array().unwrap().len(), 1);
    assert_eq!(live[3][0]["sub"], "bob@example.com");
    assert_eq!(live[4], json!([]));

    // The tables name the same things.
    let table = admin(dir.path(), &config, &["consents", "list"]);
    table.assert_success();
    assert!(
        table
            .stdout
            .starts_with("user\tclient_id\tclient_name\tapproved\tscope\n"),
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .contains(&format!("bob@example.com\t{desktop}\tDesktop app\t"))
    );
    let table = admin(dir.path(), &config, &["clients", "list"]);
    assert!(
        table
            .assert_success()
            .stdout
            .contains(&format!("{mcp}\tintrospection-only\t")),
        "{}",
        table.stdout
    );

    // Without the server, the same listings come from the files, and reading changes nothing.
    assert!(server.terminate().await.success());
    let before = listing(dir.path());
    let state_before = std::fs::read(state_of(dir.path())).unwrap();
    for (args, live) in listings.iter().zip(&live) {
        assert_eq!(
            &json_of(&admin(dir.path(), &config, args)),
            live,
            "{args:?}"
        );
    }
    assert_eq!(listing(dir.path()), before);
    assert_eq!(std::fs::read(state_of(dir.path())).unwrap(), state_before);
}

#[tokio::test]
async fn rotate_secret_stops_the_old_secret_at_once_directly_and_through_the_socket() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let (id, first) = add_gemini(dir.path(), &config);
    // Directly on the state.
    let out = admin(dir.path(), &config, &["clients", "rotate-secret", &id]);
    let (rotated_id, second) = credentials(&out);
    assert_eq!(rotated_id, id);
    assert_ne!(second, first);
    out.assert_stderr_contains("The old secret no longer works")
        .assert_stderr_contains("client_secret_rotated");

    let audit = dir.path().join("audit.jsonl");
    let mut server = start_audited(dir.path(), &config, port, &audit);
    server.wait_ready(&http()).await;
    let base = server.base.clone();
    assert_eq!(
        token_with_secret(&base, &id, &first).await,
        (401, "invalid_client".into())
    );
    assert_eq!(
        token_with_secret(&base, &id, &second).await,
        (400, "invalid_grant".into())
    );
    // A sign-in made before a rotation survives it.
    let alice = sign_in_provisioned(&base, &id, &second, "alice@example.com").await;

    // Through the socket: effective at once.
    let (_, third) = credentials(&admin(
        dir.path(),
        &config,
        &["clients", "rotate-secret", &id],
    ));
    assert_eq!(
        token_with_secret(&base, &id, &second).await,
        (401, "invalid_client".into())
    );
    assert_eq!(
        token_with_secret(&base, &id, &third).await,
        (400, "invalid_grant".into())
    );
    refresh_provisioned(&base, &id, &third, alice["refresh_token"].as_str().unwrap()).await;
    let rotated = audit_events(&audit, "client_secret_rotated");
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert_eq!(rotated[0]["client_id"], id.as_str());

    // The same for an introspection-only client, at the introspection endpoint.
    let (mcp, old) = add_introspection_client(dir.path(), &config);
    let access = alice["access_token"].as_str().unwrap();
    assert_eq!(introspect(&base, &mcp, &old, access).await.0, 200);
    let (_, new) = credentials(&admin(
        dir.path(),
        &config,
        &["clients", "rotate-secret", &mcp],
    ));
    assert_eq!(introspect(&base, &mcp, &old, access).await.0, 401);
    let (status, body) = introspect(&base, &mcp, &new, access).await;
    assert_eq!((status, &body["active"]), (200, &json!(true)), "{body}");

    // A public client has no secret to rotate; an unknown client is named.
    let public = register_public(&base).await;
    let out = admin(dir.path(), &config, &["clients", "rotate-secret", &public]);
    assert_one_line_failure(&out, "is a public client");
    assert!(!out.stdout.contains("client_secret"), "{}", out.stdout);
    assert_one_line_failure(
        &admin(
            dir.path(),
            &config,
            &["clients", "rotate-secret", "no-such-client"],
        ),
        "no client no-such-client",
    );
    assert!(server.terminate().await.success());
    // Only the hash of the newest secret is kept.
    let (doc, _) = mcp_authd::store::file::read_state(&state_of(dir.path())).unwrap();
    assert_eq!(
        doc.clients[&id].secret_hash.as_deref(),
        Some(mcp_authd::secrets::sha256_b64(third.as_bytes()).as_str())
    );
    assert_eq!(doc.clients[&public].secret_hash, None);
}

#[tokio::test]
async fn an_introspection_only_client_introspects_and_is_given_no_token() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    // A client that is neither introspection-only nor given a redirect URI is refused.
    admin(
        dir.path(),
        &config,
        &["clients", "add", "--name", "Nothing"],
    )
    .assert_failure();
    let (mcp, mcp_secret) = add_introspection_client(dir.path(), &config);
    let (gemini, gemini_secret) = add_gemini(dir.path(), &config);
    let mut server = Server::start(serve_cmd(dir.path(), &config, port), port);
    server.wait_ready(&http()).await;
    let base = server.base.clone();
    let alice = sign_in_provisioned(&base, &gemini, &gemini_secret, "alice@example.com").await;
    let (access, refresh) = (
        alice["access_token"].as_str().unwrap(),
        alice["refresh_token"].as_str().unwrap(),
    );

    // It introspects both kinds of token.
    let (status, body) = introspect(&base, &mcp, &mcp_secret, access).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "alice@example.com");
    assert_eq!(body["client_id"], gemini.as_str());
    let (_, body) = introspect(&base, &mcp, &mcp_secret, refresh).await;
    assert_eq!(body["active"], true, "{body}");

    // The token endpoint gives it nothing, whatever the grant, and consumes nothing.
    for form in [
        vec![
            ("grant_type", "authorization_code"),
            ("code", "not-a-code"),
            ("redirect_uri", GEMINI_REDIRECT),
            ("code_verifier", VERIFIER),
        ],
        vec![("grant_type", "refresh_token"), ("refresh_token", refresh)],
        vec![("grant_type", "client_credentials")],
    ] {
        let response = http()
            .post(format!("{base}/oauth/token"))
            .basic_auth(&mcp, Some(&mcp_secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{form:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized_client", "{form:?}: {body}");
        assert!(!body.to_string().contains("access_token"));
    }
    refresh_provisioned(&base, &gemini, &gemini_secret, refresh).await;

    // Authorization has no redirect URI to send anything to: an error page.
    let response = http()
        .get(format!("{base}/oauth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", mcp.as_str()),
            ("redirect_uri", GEMINI_REDIRECT),
            ("code_challenge", challenge(VERIFIER).as_str()),
            ("code_challenge_method", "S256"),
        ])
        .header("X-Forwarded-User", "alice@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());

    // It authenticates at revocation too; another client's token is left alone there.
    let response = http()
        .post(format!("{base}/oauth/revoke"))
        .basic_auth(&mcp, Some(&mcp_secret))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        introspect(&base, &mcp, &mcp_secret, access).await.1["active"],
        true
    );
    let response = http()
        .post(format!("{base}/oauth/revoke"))
        .basic_auth(&mcp, Some("wrong"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // Added through the socket while serving: it works at once.
    let (second, second_secret) = add_introspection_client(dir.path(), &config);
    assert_eq!(
        introspect(&base, &second, &second_secret, access).await.1["active"],
        true
    );
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn tokens_revoke_client_ends_refresh_for_that_client_only() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let (a, a_secret) = add_gemini(dir.path(), &config);
    let (b, b_secret) = add_gemini(dir.path(), &config);
    let audit = dir.path().join("audit.jsonl");
    let mut server = start_audited(dir.path(), &config, port, &audit);
    server.wait_ready(&http()).await;
    let base = server.base.clone();
    let refresh_of = |v: &Value| v["refresh_token"].as_str().unwrap().to_string();
    let alice_a = refresh_of(&sign_in_provisioned(&base, &a, &a_secret, "alice@example.com").await);
    let bob_a = refresh_of(&sign_in_provisioned(&base, &a, &a_secret, "bob@example.com").await);
    let alice_b = refresh_of(&sign_in_provisioned(&base, &b, &b_secret, "alice@example.com").await);

    // Through the socket.
    let out = admin(dir.path(), &config, &["tokens", "revoke", "--client", &a]);
    out.assert_success();
    assert_eq!(out.stdout.trim(), "revoked 2 sign-in(s)");
    assert_eq!(refresh_status(&base, &a, &a_secret, &alice_a).await, 400);
    assert_eq!(refresh_status(&base, &a, &a_secret, &bob_a).await, 400);
    let alice_b = refresh_provisioned(&base, &b, &b_secret, &alice_b).await;
    // The client itself stays: its users can sign in again.
    sign_in_provisioned(&base, &a, &a_secret, "bob@example.com").await;
    let revoked = audit_events(&audit, "token_revoked");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["client_id"], a.as_str());
    assert_eq!(revoked[0]["families"], 2);
    assert_one_line_failure(
        &admin(
            dir.path(),
            &config,
            &["tokens", "revoke", "--client", "no-such-client"],
        ),
        "no client no-such-client",
    );

    // Directly on the state.
    assert!(server.terminate().await.success());
    let out = admin(dir.path(), &config, &["tokens", "revoke", "--client", &b]);
    out.assert_success().assert_stderr_contains("token_revoked");
    assert_eq!(out.stdout.trim(), "revoked 1 sign-in(s)");
    assert_one_line_failure(
        &admin(
            dir.path(),
            &config,
            &["tokens", "revoke", "--client", "no-such-client"],
        ),
        "no client no-such-client",
    );
    let mut server = Server::start(serve_cmd(dir.path(), &config, port), port);
    server.wait_ready(&http()).await;
    assert_eq!(refresh_status(&base, &b, &b_secret, &alice_b).await, 400);
    let (doc, _) = mcp_authd::store::file::read_state(&state_of(dir.path())).unwrap();
    let clients: Vec<&str> = doc
        .refresh_tokens
        .values()
        .map(|f| f.grant.client_id.as_str())
        .collect();
    assert_eq!(
        clients,
        [a.as_str()],
        "bob's new sign-in with A is all that is left"
    );
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn consents_revoke_asks_again_and_ends_the_sign_ins_made_under_it() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let audit = dir.path().join("audit.jsonl");
    let mut server = start_audited(dir.path(), &config, port, &audit);
    server.wait_ready(&http()).await;
    let base = server.base.clone();
    let (x, y) = (register_public(&base).await, register_public(&base).await);
    let refresh_of = |v: &Value| v["refresh_token"].as_str().unwrap().to_string();
    let alice_x = refresh_of(&sign_in_public(&base, &x, "alice@example.com").await);
    let bob_x = refresh_of(&sign_in_public(&base, &x, "bob@example.com").await);
    let alice_y = refresh_of(&sign_in_public(&base, &y, "alice@example.com").await);
    assert_eq!(
        authorize(&base, &x, "alice@example.com").await.status(),
        302
    );

    // Through the socket: alice's approval of X only.
    let out = admin(
        dir.path(),
        &config,
        &[
            "consents",
            "revoke",
            "--user",
            "alice@example.com",
            "--client",
            &x,
        ],
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "revoked 1 consent(s) and 1 sign-in(s)");
    let page = authorize(&base, &x, "alice@example.com").await;
    assert_eq!(page.status(), 200, "the consent page again");
    assert!(page.text().await.unwrap().contains("name=\"ticket\""));
    assert_eq!(refresh_public(&base, &x, &alice_x).await.0, 400);
    let (status, bob_x) = refresh_public(&base, &x, &bob_x).await;
    assert_eq!(status, 200, "bob's sign-in with X stays");
    assert_eq!(
        authorize(&base, &y, "alice@example.com").await.status(),
        302
    );
    assert_eq!(authorize(&base, &x, "bob@example.com").await.status(), 302);
    let events = audit_events(&audit, "user_revoked");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["sub"], "alice@example.com");
    assert_eq!(events[0]["client_id"], x.as_str());
    assert_eq!(
        (&events[0]["consents"], &events[0]["families"]),
        (&json!(1), &json!(1))
    );
    assert_one_line_failure(
        &admin(
            dir.path(),
            &config,
            &[
                "consents",
                "revoke",
                "--user",
                "alice@example.com",
                "--client",
                "no-such-client",
            ],
        ),
        "no client no-such-client",
    );

    // Directly on the state: every consent of alice's (only Y's is left).
    assert!(server.terminate().await.success());
    let out = admin(
        dir.path(),
        &config,
        &["consents", "revoke", "--user", "alice@example.com"],
    );
    out.assert_success().assert_stderr_contains("user_revoked");
    assert_eq!(out.stdout.trim(), "revoked 1 consent(s) and 1 sign-in(s)");
    let mut server = Server::start(serve_cmd(dir.path(), &config, port), port);
    server.wait_ready(&http()).await;
    assert_eq!(
        authorize(&base, &y, "alice@example.com").await.status(),
        200
    );
    assert_eq!(refresh_public(&base, &y, &alice_y).await.0, 400);
    assert_eq!(authorize(&base, &x, "bob@example.com").await.status(), 302);
    assert_eq!(
        refresh_public(&base, &x, bob_x.as_deref().unwrap()).await.0,
        200
    );
    // Nothing left to revoke is not an error.
    let out = admin(
        dir.path(),
        &config,
        &["consents", "revoke", "--user", "alice@example.com"],
    );
    out.assert_success();
    assert_eq!(out.stdout.trim(), "revoked 0 consent(s) and 0 sign-in(s)");
    assert!(server.terminate().await.success());
}

/// The export with `seq` removed: the one field an import does not carry over (the target
/// store numbers its own changes).
fn without_seq(mut document: Value) -> Value {
    document.as_object_mut().unwrap().remove("seq");
    document
}

#[tokio::test]
async fn an_export_works_as_the_state_file_and_inline_and_imports_into_an_empty_state_only() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let mut server = Server::start(serve_cmd(dir.path(), &config, port), port);
    server.wait_ready(&http()).await;
    let base = server.base.clone();
    let (id, secret) = add_gemini(dir.path(), &config);
    let alice = sign_in_provisioned(&base, &id, &secret, "alice@example.com").await;
    let refresh = alice["refresh_token"].as_str().unwrap().to_string();
    let desktop = register_public(&base).await;
    sign_in_public(&base, &desktop, "bob@example.com").await;

    // While serving, through the socket: to a new 0600 file, never over an existing one.
    let exports = tempfile::tempdir().unwrap();
    let file = exports.path().join("backup.json");
    let out = admin(
        dir.path(),
        &config,
        &["state", "export", "--output", file.to_str().unwrap()],
    );
    out.assert_success()
        .assert_stderr_contains("exported 2 client(s), 1 consent(s) and 2 sign-in(s)");
    assert_owner_only(&file);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&secret) && !text.contains(&refresh));
    let stdout = admin(dir.path(), &config, &["state", "export"]);
    assert_eq!(
        stdout.assert_success().stdout,
        text,
        "the same state, the same bytes"
    );
    let again = admin(
        dir.path(),
        &config,
        &["state", "export", "--output", file.to_str().unwrap()],
    );
    assert_one_line_failure(&again, "refusing to overwrite");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    assert!(server.terminate().await.success());
    let exported: Value = serde_json::from_str(&text).unwrap();
    for field in ["version", "seq", "clients", "consents", "refresh_tokens"] {
        assert!(exported.get(field).is_some(), "{field} missing: {text}");
    }

    // As auth_server.json of a new server: the exported sign-in refreshes.
    let port2 = free_port();
    let (dir2, config2) = config_dir(port2);
    std::fs::copy(&file, state_of(dir2.path())).unwrap();
    let mut server = Server::start(serve_cmd(dir2.path(), &config2, port2), port2);
    server.wait_ready(&http()).await;
    refresh_provisioned(&server.base, &id, &secret, &refresh).await;
    assert!(server.terminate().await.success());

    // As MCP_AUTH_SERVER_CONFIG: the same, and nothing is written.
    let port3 = free_port();
    let (dir3, config3) = config_dir(port3);
    let mut cmd = serve_cmd(dir3.path(), &config3, port3);
    cmd.env("MCP_AUTH_SERVER_CONFIG", &text);
    let mut server = Server::start(cmd, port3);
    server.wait_ready(&http()).await;
    refresh_provisioned(&server.base, &id, &secret, &refresh).await;
    assert!(server.terminate().await.success());
    assert_eq!(listing(dir3.path()), ["servers.json"]);

    // Imported into an empty state: the same document comes back out.
    let port4 = free_port();
    let (dir4, config4) = config_dir(port4);
    let out = admin(
        dir4.path(),
        &config4,
        &["state", "import", file.to_str().unwrap()],
    );
    out.assert_success();
    assert!(
        out.stdout
            .contains("imported 2 client(s), 1 consent(s) and 2 sign-in(s)"),
        "{}",
        out.stdout
    );
    assert!(
        !mcp_authd::store::file::journal_path(&state_of(dir4.path())).exists(),
        "the state file alone holds the import"
    );
    assert_owner_only(&state_of(dir4.path()));
    let round_trip = json_of(&admin(dir4.path(), &config4, &["state", "export"]));
    assert_eq!(without_seq(round_trip), without_seq(exported.clone()));

    // A second import into the now non-empty state is refused and changes nothing.
    let before = std::fs::read(state_of(dir4.path())).unwrap();
    let out = admin(
        dir4.path(),
        &config4,
        &["state", "import", file.to_str().unwrap()],
    );
    assert_one_line_failure(
        &out,
        "the state is not empty (2 client(s), 1 consent(s), 2 sign-in(s))",
    );
    assert_eq!(std::fs::read(state_of(dir4.path())).unwrap(), before);

    // Not while a server runs on it, even on an empty state.
    let port5 = free_port();
    let (dir5, config5) = config_dir(port5);
    let mut server = Server::start(serve_cmd(dir5.path(), &config5, port5), port5);
    server.wait_ready(&http()).await;
    assert_one_line_failure(
        &admin(
            dir5.path(),
            &config5,
            &["state", "import", file.to_str().unwrap()],
        ),
        "a running mcp-authd holds it",
    );
    let clients = json_of(&admin(
        dir5.path(),
        &config5,
        &["clients", "list", "--json"],
    ));
    assert_eq!(clients, json!([]));
    assert!(server.terminate().await.success());

    // A file that is not a state document: one line, nothing imported.
    let bad = exports.path().join("bad.json");
    std::fs::write(&bad, r#"{"clients": {}, "tokens": {}}"#).unwrap();
    assert_one_line_failure(
        &admin(
            dir5.path(),
            &config5,
            &["state", "import", bad.to_str().unwrap()],
        ),
        "is not a state document",
    );
    assert_eq!(
        json_of(&admin(dir5.path(), &config5, &["state", "export"]))["clients"],
        json!({})
    );
    // Inline state is read-only: it exports, and refuses an import.
    let out =
        run(one_shot(dir5.path(), &config5, &["state", "export"])
            .env("MCP_AUTH_SERVER_CONFIG", &text));
    assert_eq!(out.assert_success().stdout, text);
    assert_one_line_failure(
        &run(one_shot(
            dir5.path(),
            &config5,
            &["state", "import", file.to_str().unwrap()],
        )
        .env("MCP_AUTH_SERVER_CONFIG", &text)),
        "read-only",
    );
}

#[tokio::test]
async fn after_clients_add_and_after_a_clean_shutdown_the_state_file_alone_is_the_whole_state() {
    // `clients add` with no server: a copy of auth_server.json alone knows the client.
    let (dir, config) = config_dir(free_port());
    let (id, secret) = add_gemini(dir.path(), &config);
    assert_eq!(
        listing(dir.path()),
        ["auth_server.json", "auth_server.json.lock", "servers.json"]
    );
    let port = free_port();
    let (copy, copy_config) = config_dir(port);
    std::fs::copy(state_of(dir.path()), state_of(copy.path())).unwrap();
    let mut server = Server::start(serve_cmd(copy.path(), &copy_config, port), port);
    server.wait_ready(&http()).await;
    let alice = sign_in_provisioned(&server.base, &id, &secret, "alice@example.com").await;
    let refresh = refresh_provisioned(
        &server.base,
        &id,
        &secret,
        alice["refresh_token"].as_str().unwrap(),
    )
    .await;
    let desktop = register_public(&server.base).await;
    sign_in_public(&server.base, &desktop, "bob@example.com").await;

    // serve, sign-ins, SIGTERM: again the state file alone holds everything.
    assert!(server.terminate().await.success());
    assert!(!mcp_authd::store::file::journal_path(&state_of(copy.path())).exists());
    let port = free_port();
    let (second, second_config) = config_dir(port);
    std::fs::copy(state_of(copy.path()), state_of(second.path())).unwrap();
    let mut server = Server::start(serve_cmd(second.path(), &second_config, port), port);
    server.wait_ready(&http()).await;
    refresh_provisioned(&server.base, &id, &secret, &refresh).await;
    assert_eq!(
        authorize(&server.base, &desktop, "bob@example.com")
            .await
            .status(),
        302,
        "bob's consent came along"
    );
    assert!(server.terminate().await.success());
}
