//! Durable state (SPEC §9) under the failures a real deployment meets: `kill -9` at random
//! moments while mutations are in flight (and inside compactions), a journal write that fails
//! (a file size limit, the same error path as a full disk), SIGTERM while requests arrive, and
//! leftovers of a crash (a stale temporary snapshot, loose file modes).
//!
//! The real binary runs as a child process on a free loopback port with a temporary state
//! directory. The test drives it over HTTP and records every mutation that got a success
//! response (acknowledged); after each crash the state on disk must load and hold all of them,
//! and the latest acknowledged refresh token of every family must still refresh.
//!
//! The requests are the ones `helpers.rs` builds for in-process servers (authorize parameters,
//! token forms); here they go to the child's port and tolerate a broken connection, which is
//! how a kill shows.
//!
//! `MCP_AUTHD_KILL_ROUNDS` sets the number of kills (default 200); `MCP_AUTHD_KILL_SEED`
//! replays a run (the seed is printed).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mcp_authd::store::StateStore;
use mcp_authd::store::file::{
    COMPACT_EVERY_ENV, journal_path, journal_tmp_path, read_state, tmp_path,
};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

use crate::helpers::{
    REDIRECT, TestApp, exchange_form, family_key_of, provisioned_client, query_of, refresh_form,
};
use crate::process::{BIN, Served, free_port, http};

/// `jwtSecret` of every daemon here.
const SECRET: &str = "durability-secret-durability-secret-0123456";
/// The issuer the tokens name. It is only a string to the server, so every restart can listen
/// on a fresh port while tokens stay valid.
const ISSUER: &str = "http://127.0.0.1:8080";
/// The signed-in user.
const USER: &str = "durable@example.com";

/// `servers.json` for the daemons: no rate limits, no client cap, no collection of unused
/// clients and no consent page, so every request is a plain mutation.
fn write_config(dir: &Path) -> PathBuf {
    let doc = json!({
        "serverAuth": {"oauthAs": {
            "issuerUrl": ISSUER,
            "jwtSecret": SECRET,
            "trustedSourceCidrs": ["127.0.0.1/32"],
            "redirectUriAllowlist": ["http://127.0.0.1:*"],
            "consent": "never",
            "rateLimits": {"registerPerMinute": 0, "registerGlobalPerMinute": 0, "tokenPerMinute": 0, "authorizePerMinute": 0},
            "maxDynamicClients": 0,
            "unusedClientTtlSeconds": 0
        }}
    });
    let path = dir.join("servers.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

/// How a daemon is started.
#[derive(Default)]
struct Launch<'a> {
    /// `MCP_AUTHD_COMPACT_EVERY`.
    compact_every: Option<u64>,
    /// A file size limit in KiB (`ulimit -f`). SIGXFSZ keeps its default action (kill), as on
    /// a real host; the daemon must catch it so that writes past the limit fail with EFBIG.
    file_size_limit_kib: Option<u64>,
    /// Extra environment.
    env: &'a [(&'a str, &'a str)],
}

/// A running `mcp-authd serve` (see `process.rs`).
type Daemon = Served;

/// Starts `serve` on a free port for the configuration and state in `dir`; stderr goes to a
/// new file in `logs`, outside the state directory.
fn start_daemon(dir: &Path, logs: &Path, launch: &Launch<'_>) -> Daemon {
    {
        let config = dir.join("servers.json");
        let port = free_port();
        let mut cmd = match launch.file_size_limit_kib {
            None => Command::new(BIN),
            Some(kib) => {
                let mut cmd = Command::new("bash");
                cmd.arg("-c")
                    .arg(format!("trap - XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
                    .arg(BIN);
                cmd
            }
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env("MCP_AUTH_SERVER_PATH", dir.join("auth_server.json"))
            .env_remove("MCP_AUTH_SERVER_CONFIG")
            .env_remove("MCP_CONFIG")
            .env("RUST_LOG", "warn")
            .env_remove(COMPACT_EVERY_ENV);
        if let Some(n) = launch.compact_every {
            cmd.env(COMPACT_EVERY_ENV, n.to_string());
        }
        for (k, v) in launch.env {
            cmd.env(k, v);
        }
        static STARTS: AtomicU64 = AtomicU64::new(0);
        let log = logs.join(format!(
            "daemon-{}.log",
            STARTS.fetch_add(1, Ordering::Relaxed)
        ));
        Served::spawn(&mut cmd, port, log)
    }
}

/// Why a request did not succeed.
#[derive(Debug)]
enum Failure {
    /// No complete answer (the daemon died, or the connection broke): not acknowledged.
    Transport(String),
    /// An answer that is not the expected success.
    Status(u16, String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "no answer: {e}"),
            Self::Status(status, body) => write!(f, "{status}: {body}"),
        }
    }
}

type Outcome<T> = Result<T, Failure>;

async fn read_json(response: reqwest::Response, expect: u16) -> Outcome<Value> {
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| Failure::Transport(e.to_string()))?;
    if status != expect {
        return Err(Failure::Status(status, text));
    }
    serde_json::from_str(&text).map_err(|e| Failure::Status(status, format!("{e}: {text}")))
}

fn transport(e: reqwest::Error) -> Failure {
    Failure::Transport(e.to_string())
}

/// Registers a public client; its client_id once acknowledged (201).
async fn register(http: &reqwest::Client, base: &str) -> Outcome<String> {
    let response = http
        .post(format!("{base}/oauth/register"))
        .json(&json!({
            "client_name": "Durability test",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none"
        }))
        .send()
        .await
        .map_err(transport)?;
    let body = read_json(response, 201).await?;
    Ok(body["client_id"].as_str().unwrap().to_string())
}

/// Authorizes `client_id` as the trusted proxy would; the code.
async fn authorize(http: &reqwest::Client, base: &str, client_id: &str) -> Outcome<String> {
    let response = http
        .get(format!("{base}/oauth/authorize"))
        .query(&TestApp::authorize_params(client_id, REDIRECT))
        .header("X-Forwarded-User", USER)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status().as_u16();
    if status != 302 {
        let text = response.text().await.unwrap_or_default();
        return Err(Failure::Status(status, text));
    }
    let location = response.headers()["location"].to_str().unwrap().to_string();
    Ok(query_of(&location)["code"].clone())
}

/// POST /oauth/token; the JSON body of a 200.
async fn token(http: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> Outcome<Value> {
    let response = http
        .post(format!("{base}/oauth/token"))
        .form(form)
        .send()
        .await
        .map_err(transport)?;
    read_json(response, 200).await
}

/// Authorize + code exchange: a new refresh-token family; its first token once acknowledged.
async fn new_family(http: &reqwest::Client, base: &str, client_id: &str) -> Outcome<String> {
    let code = authorize(http, base, client_id).await?;
    let body = token(http, base, &exchange_form(client_id, &code, REDIRECT)).await?;
    Ok(body["refresh_token"].as_str().unwrap().to_string())
}

/// Refreshes; the successor once acknowledged.
async fn refresh(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    refresh_token: &str,
) -> Outcome<String> {
    let body = token(http, base, &refresh_form(client_id, refresh_token)).await?;
    Ok(body["refresh_token"].as_str().unwrap().to_string())
}

/// Revokes a refresh token's family (RFC 7009).
async fn revoke(http: &reqwest::Client, base: &str, client_id: &str, token: &str) -> Outcome<()> {
    let response = http
        .post(format!("{base}/oauth/revoke"))
        .form(&[("token", token), ("client_id", client_id)])
        .send()
        .await
        .map_err(transport)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(transport)?;
    if status != 200 {
        return Err(Failure::Status(status, text));
    }
    Ok(())
}

/// What the test knows about one refresh-token family.
#[derive(Debug, Clone)]
struct Family {
    client_id: String,
    /// The latest acknowledged token.
    token: String,
    /// A refresh of `token` was in flight when the daemon died: its rotation may be on disk.
    pending_refresh: bool,
    /// A revocation was in flight when the daemon died.
    pending_revoke: bool,
    /// A revocation was acknowledged.
    revoked: bool,
}

/// What one worker has had acknowledged, across all rounds.
#[derive(Debug, Default)]
struct Acked {
    clients: Vec<String>,
    families: Vec<Family>,
    mutations: u64,
}

/// Drives random mutations until the daemon stops answering. `Err` is a wrong answer.
async fn worker(base: String, mut acked: Acked, seed: u64) -> (Acked, Result<(), String>) {
    let http = http();
    let mut rng = StdRng::seed_from_u64(seed);
    loop {
        let live: Vec<usize> = (0..acked.families.len())
            .filter(|i| !acked.families[*i].revoked)
            .collect();
        let roll = rng.random_range(0..100);
        let result = if roll < 35 || acked.clients.is_empty() {
            register(&http, &base).await.map(|id| {
                acked.clients.push(id);
            })
        } else if roll < 50 || live.is_empty() {
            let client_id = acked.clients[rng.random_range(0..acked.clients.len())].clone();
            new_family(&http, &base, &client_id).await.map(|token| {
                acked.families.push(Family {
                    client_id,
                    token,
                    pending_refresh: false,
                    pending_revoke: false,
                    revoked: false,
                });
            })
        } else if roll < 96 {
            let i = live[rng.random_range(0..live.len())];
            let f = &mut acked.families[i];
            f.pending_refresh = true;
            let result = refresh(&http, &base, &f.client_id, &f.token).await;
            if let Ok(successor) = &result {
                f.token.clone_from(successor);
                f.pending_refresh = false;
            }
            result.map(|_| ())
        } else {
            let i = live[rng.random_range(0..live.len())];
            let f = &mut acked.families[i];
            f.pending_revoke = true;
            let result = revoke(&http, &base, &f.client_id, &f.token).await;
            if result.is_ok() {
                f.pending_revoke = false;
                f.revoked = true;
            }
            result
        };
        match result {
            Ok(()) => acked.mutations += 1,
            Err(Failure::Transport(_)) => return (acked, Ok(())),
            Err(Failure::Status(status, body)) => {
                return (
                    acked,
                    Err(format!("unexpected answer {status} from {base}: {body}")),
                );
            }
        }
    }
}

/// Checks the state on disk (the daemon is dead) against everything acknowledged, and settles
/// revocations that were in flight. Returns whether a temporary snapshot and whether a
/// temporary journal was left (the kill landed inside a compaction or a boot-time fold).
fn check_on_disk(state: &Path, workers: &mut [Acked], round: usize) -> (bool, bool) {
    let (doc, _) = read_state(state).unwrap_or_else(|e| {
        panic!("round {round}: the state does not load after kill -9: {e}");
    });
    for acked in workers.iter_mut() {
        for id in &acked.clients {
            assert!(
                doc.clients.contains_key(id),
                "round {round}: acknowledged client {id} is missing"
            );
        }
        for f in &mut acked.families {
            let id = family_key_of(&f.token);
            let stored = doc.refresh_tokens.get(&id);
            if f.revoked {
                assert!(
                    stored.is_none(),
                    "round {round}: family {id} was revoked (acknowledged) but is back"
                );
                continue;
            }
            if f.pending_revoke {
                // Either outcome is fine; from now on the disk says which it was.
                f.pending_revoke = false;
                if stored.is_none() {
                    f.revoked = true;
                    continue;
                }
            }
            let stored = stored.unwrap_or_else(|| {
                panic!("round {round}: family {id} (acknowledged, not revoked) is missing")
            });
            let hash = mcp_authd::oauth::refresh::hash(&f.token);
            let is_current = stored.current_hash == hash;
            let is_previous = stored.previous_hash.as_deref() == Some(hash.as_str());
            assert!(
                is_current || (f.pending_refresh && is_previous),
                "round {round}: the latest acknowledged token of family {id} is neither live \
                 nor the predecessor of an unacknowledged rotation"
            );
        }
    }
    (tmp_path(state).exists(), journal_tmp_path(state).exists())
}

/// After a restart, and before anything can kill the daemon again: every refresh that was in
/// flight is retried with the latest acknowledged token, which must work (either it is still
/// live, or its rotation reached the disk and the 30 s grace hands out the same successor).
async fn settle_pending(
    http: &reqwest::Client,
    daemon: &Daemon,
    workers: &mut [Acked],
    round: usize,
) {
    for acked in workers.iter_mut() {
        for f in acked.families.iter_mut().filter(|f| f.pending_refresh) {
            match refresh(http, &daemon.base, &f.client_id, &f.token).await {
                Ok(successor) => {
                    f.token = successor;
                    f.pending_refresh = false;
                    acked.mutations += 1;
                }
                Err(e) => panic!(
                    "round {round}: the latest acknowledged refresh token of family {} does \
                     not refresh after a restart: {e}\nstderr:\n{}",
                    family_key_of(&f.token),
                    daemon.stderr()
                ),
            }
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_mutation() {
    const WORKERS: usize = 3;
    let rounds = env_number("MCP_AUTHD_KILL_ROUNDS").unwrap_or(200) as usize;
    let seed = env_number("MCP_AUTHD_KILL_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    println!("kill -9 loop: {rounds} rounds, MCP_AUTHD_KILL_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let state = dir.path().join("auth_server.json");
    let mut workers: Vec<Acked> = (0..WORKERS).map(|_| Acked::default()).collect();
    let (mut boot_kills, mut tmp_left, mut journal_tmp_left, mut compacting_rounds) = (0, 0, 0, 0);
    let started = Instant::now();

    for round in 0..rounds {
        let compact_every = rng.random_bool(0.7).then(|| rng.random_range(3..60));
        compacting_rounds += usize::from(compact_every.is_some());
        let mut daemon = start_daemon(
            dir.path(),
            logs.path(),
            &Launch {
                compact_every,
                ..Default::default()
            },
        );
        if rng.random_bool(0.1) {
            // Kill while it boots: inside the load, the journal fold or the first snapshot.
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..15_000))).await;
            daemon.kill_9();
            boot_kills += 1;
        } else {
            let http = http();
            daemon.wait_ready(&http).await;
            assert!(
                !tmp_path(&state).exists() && !journal_tmp_path(&state).exists(),
                "round {round}: a stale temporary snapshot or journal survived the start"
            );
            settle_pending(&http, &daemon, &mut workers, round).await;

            let tasks: Vec<_> = std::mem::take(&mut workers)
                .into_iter()
                .map(|acked| tokio::spawn(worker(daemon.base.clone(), acked, rng.random())))
                .collect();
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..120_000))).await;
            daemon.kill_9();
            for task in tasks {
                let (acked, result) = task.await.unwrap();
                if let Err(e) = result {
                    panic!("round {round}: {e}\nstderr:\n{}", daemon.stderr());
                }
                workers.push(acked);
            }
        }
        let (snapshot_left, journal_left) = check_on_disk(&state, &mut workers, round);
        tmp_left += usize::from(snapshot_left);
        journal_tmp_left += usize::from(journal_left);
    }

    // A last start: everything acknowledged is served, and every live family refreshes.
    let mut daemon = start_daemon(dir.path(), logs.path(), &Launch::default());
    let http = http();
    daemon.wait_ready(&http).await;
    settle_pending(&http, &daemon, &mut workers, rounds).await;
    let mut live = 0;
    for acked in &mut workers {
        for f in acked.families.iter_mut().filter(|f| !f.revoked) {
            f.token = refresh(&http, &daemon.base, &f.client_id, &f.token)
                .await
                .unwrap_or_else(|e| panic!("final check: {e}"));
            live += 1;
        }
    }
    let status = daemon.terminate().await;
    assert!(status.success(), "{status}\nstderr:\n{}", daemon.stderr());
    let (doc, _) = read_state(&state).unwrap();
    let clients: usize = workers.iter().map(|w| w.clients.len()).sum();
    let families: usize = workers.iter().map(|w| w.families.len()).sum();
    let mutations: u64 = workers.iter().map(|w| w.mutations).sum();
    assert!(doc.clients.len() >= clients);
    assert!(
        mutations > rounds as u64,
        "too few mutations were acknowledged ({mutations}) for the loop to mean anything"
    );
    println!(
        "kill -9 loop: {rounds} kills survived ({boot_kills} during boot, {compacting_rounds} \
         rounds with frequent compaction, {tmp_left} left a temporary snapshot, \
         {journal_tmp_left} a temporary journal); \
         {mutations} acknowledged mutations, {clients} clients, {families} families \
         ({live} live) all present; {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// A token endpoint answer refusing for storage reasons: 503 `temporarily_unavailable`, not
/// cacheable, and no token in it.
async fn assert_refused_without_tokens(response: reqwest::Response) {
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(
        body.get("access_token").is_none() && body.get("refresh_token").is_none(),
        "a token was handed out that is not on disk: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_journal_write_refuses_cleanly_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let state = dir.path().join("auth_server.json");
    let http = http();

    // 48 KiB for any file: the first snapshot fits, the journal fills up after some clients.
    let mut daemon = start_daemon(
        dir.path(),
        logs.path(),
        &Launch {
            file_size_limit_kib: Some(48),
            ..Default::default()
        },
    );
    daemon.wait_ready(&http).await;
    let base = daemon.base.clone();
    let client = register(&http, &base).await.unwrap();
    let first = new_family(&http, &base, &client).await.unwrap();
    let latest = refresh(&http, &base, &client, &first).await.unwrap();
    let mut acked = vec![client.clone()];

    // Fill the journal until a registration cannot be made durable.
    let refused = loop {
        assert!(acked.len() < 2_000, "the file size limit never bit");
        match register(&http, &base).await {
            Ok(id) => acked.push(id),
            Err(Failure::Status(status, body)) => break (status, body),
            Err(e) => panic!(
                "the daemon died instead of refusing: {e}\nstderr:\n{}",
                daemon.stderr()
            ),
        }
    };
    let (status, body) = refused;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(body.get("client_id").is_none(), "{body}");

    // From now on every change is refused, reads keep working, and health says so.
    let health = http.get(daemon.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    // Ready no more, with the reason; but alive, so an orchestrator does not restart-loop it.
    let ready = http.get(daemon.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "unavailable", "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .is_some_and(|r| r.contains("storage")),
        "{ready}"
    );
    let live = http.get(daemon.url("/livez")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let health_cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-authd"))
        .args(["health", "--url", &daemon.base])
        .output()
        .unwrap();
    assert!(!health_cmd.status.success(), "health must fail on a 503");
    let refused_refresh = http
        .post(daemon.url("/oauth/token"))
        .form(&refresh_form(&client, &latest))
        .send()
        .await
        .unwrap();
    assert_refused_without_tokens(refused_refresh).await;
    // Authorizing writes nothing (codes live in memory), so it still works; redeeming the code
    // would create a family, so it is refused.
    let code = authorize(&http, &base, &client).await.unwrap();
    let refused_exchange = http
        .post(daemon.url("/oauth/token"))
        .form(&exchange_form(&client, &code, REDIRECT))
        .send()
        .await
        .unwrap();
    assert_refused_without_tokens(refused_exchange).await;
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "the daemon must keep running (and serving reads) after a write failure"
    );
    assert!(
        daemon.stderr().contains("writing the state failed"),
        "the failure is logged:\n{}",
        daemon.stderr()
    );

    // The journal holds exactly what was acknowledged: the refused batch was cut off again.
    let journal = std::fs::read(journal_path(&state)).unwrap();
    assert_eq!(journal.last(), Some(&b'\n'), "a torn entry was left behind");
    let status = daemon.terminate().await;
    assert!(status.success(), "{status}\nstderr:\n{}", daemon.stderr());
    let (doc, _) = read_state(&state).unwrap();
    let on_disk: HashSet<&String> = doc.clients.keys().collect();
    let expected: HashSet<&String> = acked.iter().collect();
    assert_eq!(
        on_disk, expected,
        "the clients on disk are not exactly the acknowledged ones"
    );

    // Restarted without the limit: everything acknowledged works, and changes are accepted.
    let mut daemon = start_daemon(dir.path(), logs.path(), &Launch::default());
    daemon.wait_ready(&http).await;
    let successor = refresh(&http, &daemon.base, &client, &latest)
        .await
        .expect("the latest acknowledged refresh token works after the restart");
    assert_ne!(successor, latest);
    register(&http, &daemon.base).await.unwrap();
    let status = daemon.terminate().await;
    assert!(status.success());
    let (doc, _) = read_state(&state).unwrap();
    for id in &acked {
        assert!(doc.clients.contains_key(id), "{id} lost");
    }
}

/// Compactions run beside the journal (a helper thread writes the snapshot while batches go
/// on being committed, then the journal is swapped for the entries after it): with one every
/// 20 entries under concurrent load, every acknowledged change is on disk after SIGTERM, the
/// journal holds only the tail, and nothing temporary is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frequent_compactions_under_load_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let state = dir.path().join("auth_server.json");
    let launch = Launch {
        compact_every: Some(20),
        ..Default::default()
    };
    let mut daemon = start_daemon(dir.path(), logs.path(), &launch);
    daemon.wait_ready(&http()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let base = daemon.base.clone();
        tasks.spawn(async move {
            let http = crate::durability::http();
            let client = register(&http, &base).await.unwrap();
            let mut latest = new_family(&http, &base, &client).await.unwrap();
            for _ in 0..20 {
                latest = refresh(&http, &base, &client, &latest).await.unwrap();
            }
            (client, latest)
        });
    }
    let mut acked = Vec::new();
    while let Some(done) = tasks.join_next().await {
        acked.push(done.unwrap());
    }
    // Read while the daemon still runs (nothing is being written any more): the shutdown
    // folds the journal into the state file.
    let journal = std::fs::read_to_string(journal_path(&state)).unwrap();
    let status = daemon.terminate().await;
    assert!(status.success(), "{status}\nstderr:\n{}", daemon.stderr());
    assert!(
        !journal_path(&state).exists(),
        "a clean shutdown leaves the state file alone"
    );

    let (doc, _) = read_state(&state).unwrap();
    for (client, latest) in &acked {
        assert!(doc.clients.contains_key(client), "{client} lost");
        assert_eq!(
            doc.refresh_tokens[&family_key_of(latest)].current_hash,
            mcp_authd::oauth::refresh::hash(latest),
            "the last acknowledged rotation is not the live token on disk"
        );
    }
    let entries = journal.lines().count();
    // 12 × 22 = 264 mutations were made; without compaction all would still be journaled.
    assert!(
        entries < 150,
        "{entries} journal entries: compaction never swapped the journal"
    );
    assert!(doc.seq >= 264, "{}", doc.seq);
    assert!(!tmp_path(&state).exists() && !journal_tmp_path(&state).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_everything_acknowledged_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let state = dir.path().join("auth_server.json");
    let http = http();
    let mut daemon = start_daemon(dir.path(), logs.path(), &Launch::default());
    daemon.wait_ready(&http).await;
    let client = register(&http, &daemon.base).await.unwrap();
    let token = new_family(&http, &daemon.base, &client).await.unwrap();

    // A slow stream of registrations and refreshes from two clients while SIGTERM arrives.
    let registrations = {
        let base = daemon.base.clone();
        tokio::spawn(async move {
            let http = crate::durability::http();
            let mut acked = Vec::new();
            while let Ok(id) = register(&http, &base).await {
                acked.push(id);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            acked
        })
    };
    let refreshes = {
        let base = daemon.base.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let http = crate::durability::http();
            let mut latest = token;
            let mut count = 0;
            loop {
                match refresh(&http, &base, &client, &latest).await {
                    Ok(next) => {
                        latest = next;
                        count += 1;
                    }
                    Err(Failure::Transport(_)) => return (latest, count),
                    Err(e) => panic!("{e}"),
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = daemon.terminate().await;
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}\nstderr:\n{}",
        daemon.stderr()
    );
    let acked = registrations.await.unwrap();
    let (latest, rotations) = refreshes.await.unwrap();
    assert!(
        !acked.is_empty() && rotations > 0,
        "nothing was acknowledged before SIGTERM"
    );

    let (doc, _) = read_state(&state).unwrap();
    for id in acked.iter().chain([&client]) {
        assert!(doc.clients.contains_key(id), "{id} lost on SIGTERM");
    }
    let family = &doc.refresh_tokens[&family_key_of(&latest)];
    assert_eq!(
        family.current_hash,
        mcp_authd::oauth::refresh::hash(&latest),
        "the last acknowledged rotation is not the live token on disk"
    );
    // The lock is released: the state opens again.
    drop(StateStore::open(&state).expect("the lock is released at exit"));
}

#[tokio::test]
async fn a_stale_temporary_snapshot_is_ignored_and_removed_and_modes_are_tightened() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("auth_server.json");
    let ids: Vec<String> = {
        let store = StateStore::open(&state).unwrap();
        let mut ids = Vec::new();
        for i in 0..3 {
            let client = provisioned_client(
                &format!("Client {i}"),
                vec![format!("https://client{i}.example.com/callback")],
            );
            ids.push(client.client_id.clone());
            mcp_authd::store::ClientStore::put_client(&store, client)
                .await
                .unwrap();
        }
        // As a crash leaves it, with the entries in the journal (a clean close folds them in).
        store.close_without_folding();
        ids
    };
    // A crash inside a compaction leaves a half-written temporary snapshot behind; an older
    // build or an operator's copy leaves loose modes.
    let tmp = tmp_path(&state);
    std::fs::write(&tmp, b"{\"version\":1,\"clients\":{\"half-writ").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
    let journal = journal_path(&state);
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o644)).unwrap();

    let store = StateStore::open(&state).unwrap();
    assert!(
        !tmp.exists(),
        "the stale temporary snapshot was not removed"
    );
    let doc = store.snapshot();
    for id in &ids {
        assert!(doc.clients.contains_key(id), "{id} lost");
    }
    // The journal had entries, so the open folded it into a new snapshot: created 0600.
    assert_eq!(mode(&state), 0o600);
    assert_eq!(mode(&journal), 0o600);
    drop(store);
    let (doc, _) = read_state(&state).unwrap();
    assert_eq!(doc.clients.len(), 3);
}

#[tokio::test]
async fn serve_warns_when_the_state_file_is_readable_by_others() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let state = dir.path().join("auth_server.json");
    drop(StateStore::open(&state).unwrap());
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
    let http = http();
    let mut daemon = start_daemon(dir.path(), logs.path(), &Launch::default());
    daemon.wait_ready(&http).await;
    let status = daemon.terminate().await;
    assert!(status.success());
    let stderr = daemon.stderr();
    assert!(
        stderr.contains("WARN") && stderr.contains("mode 644") && stderr.contains("chmod 600"),
        "no warning about the state file's mode:\n{stderr}"
    );
}
