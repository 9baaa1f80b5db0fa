//! Slow and idle clients, the connection cap and signals (SPEC §15), against the real binary:
//! idle keep-alive connections and partial request heads are closed after their timeouts,
//! `/healthz` answers while slow clients hold every connection slot or every file descriptor,
//! SIGTERM drains within `--shutdown-timeout` whatever half-sent connections are open, and
//! SIGHUP does not stop the server (what a reload does is tested in `reload.rs`).
//!
//! The timeouts are shortened with the test-only variables `MCP_AUTHD_HEADER_TIMEOUT_MS` and
//! `MCP_AUTHD_IDLE_TIMEOUT_MS` where a test waits for them; tests that must not be rescued by
//! a timeout keep the default 10 s header timeout and finish well before it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mcp_authd::http::conn::{HEADER_TIMEOUT_ENV, IDLE_TIMEOUT_ENV};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::cli::{Server, config_dir, serve_cmd, servers_json_with, write_config};
use crate::process::{BIN, free_port, http};

/// The start of a request whose head never ends.
const PARTIAL_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";

/// A whole keep-alive request.
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Starts `serve` for a fresh directory, with `env` and, if given, `maxConnections`.
fn start(env: &[(&str, &str)], max_connections: Option<u64>) -> (tempfile::TempDir, Server) {
    let port = free_port();
    let (dir, config) = config_dir(port);
    if let Some(max) = max_connections {
        let doc = servers_json_with(&format!("http://127.0.0.1:{port}"), |s| {
            s["maxConnections"] = max.into();
        });
        write_config(dir.path(), &doc);
    }
    let mut cmd = serve_cmd(dir.path(), &config, port);
    cmd.envs(env.iter().copied());
    let server = Server::start(cmd, port);
    (dir, server)
}

fn port_of(server: &Server) -> u16 {
    server.base.rsplit(':').next().unwrap().parse().unwrap()
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port_of(server)))
        .await
        .unwrap()
}

/// Reads one response (head and `Content-Length` body) and returns it.
pub(crate) async fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "closed before a whole response");
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Whether the server closes `stream` within `within` (any bytes it sends first are skipped).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Opens `n` connections that each send the start of a request head and nothing more.
async fn partial_heads(server: &Server, n: usize) -> Vec<TcpStream> {
    let mut streams = Vec::new();
    for _ in 0..n {
        let mut stream = connect(server).await;
        stream.write_all(PARTIAL_HEAD).await.unwrap();
        streams.push(stream);
    }
    streams
}

/// The sockets the process holds open (connections and listeners).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_the_idle_timeout_not_the_header_timeout() {
    let (_dir, mut server) = start(
        &[(HEADER_TIMEOUT_ENV, "1000"), (IDLE_TIMEOUT_ENV, "3000")],
        None,
    );
    server.wait_ready(&http()).await;
    let mut idle = JoinSet::new();
    for _ in 0..50 {
        let mut stream = connect(&server).await;
        idle.spawn(async move {
            stream.write_all(HEALTHZ).await.unwrap();
            let response = read_response(&mut stream).await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            let idle_since = Instant::now();
            // Past the header timeout: an idle connection is not waiting for a head.
            tokio::time::sleep(Duration::from_millis(1600)).await;
            let early = closed_within(&mut stream, Duration::from_millis(100)).await;
            let closed = closed_within(&mut stream, Duration::from_secs(8)).await;
            (early, closed, idle_since.elapsed())
        });
    }
    while let Some(result) = idle.join_next().await {
        let (early, closed, after) = result.unwrap();
        assert!(
            !early,
            "an idle connection was closed at the header timeout"
        );
        assert!(closed, "an idle connection was still open after {after:?}");
    }
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn partial_request_heads_close_after_the_header_timeout_however_slowly_they_trickle() {
    let (_dir, mut server) = start(&[(HEADER_TIMEOUT_ENV, "1000")], None);
    server.wait_ready(&http()).await;
    let mut slow = JoinSet::new();
    for mut stream in partial_heads(&server, 50).await {
        let opened = Instant::now();
        slow.spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                // One more header line every 300 ms must not keep the connection alive.
                tokio::select! {
                    read = stream.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return Some(opened.elapsed()),
                        Ok(_) => {}
                    },
                    () = tokio::time::sleep(Duration::from_millis(300)) => {
                        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                            return Some(opened.elapsed());
                        }
                    }
                }
                if opened.elapsed() > Duration::from_secs(8) {
                    return None;
                }
            }
        });
    }
    while let Some(result) = slow.join_next().await {
        let after = result
            .unwrap()
            .expect("a trickling head was still open after 8 s");
        assert!(
            after >= Duration::from_millis(900),
            "closed after {after:?}, before the header timeout"
        );
    }
    // The server itself is fine.
    let health = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn healthz_answers_while_slow_clients_hold_every_connection_slot() {
    // The default 10 s header timeout: only eviction can make room in time.
    let (_dir, mut server) = start(&[], Some(20));
    server.wait_ready(&http()).await;
    let _slow = partial_heads(&server, 60).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // No more than the cap is accepted (plus the listeners and the runtime's signal pipe).
    let sockets = open_sockets(server.child.id());
    assert!(
        sockets <= 20 + 6,
        "{sockets} sockets open with maxConnections 20"
    );
    let started = Instant::now();
    let health = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn healthz_answers_when_slow_clients_exhaust_the_file_descriptors() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    // A low open-file limit, as on a host left at the common default of 1024 facing more.
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -n 64; exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(serve_cmd_args(&config, port))
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("MCP_AUTH_SERVER_PATH")
        .env_remove("MCP_AUTH_SERVER_CONFIG")
        .env_remove("MCP_CONFIG");
    let mut server = Server::start(cmd, port);
    server.wait_ready(&http()).await;
    let _slow = partial_heads(&server, 150).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let health = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    let stderr = server.stderr();
    assert!(
        stderr.contains("open-file limit (64) is below maxConnections"),
        "no warning about the file limit:\n{stderr}"
    );
    assert!(server.terminate().await.success());
}

/// The arguments of `serve_cmd`, for a wrapped command.
fn serve_cmd_args(config: &Path, port: u16) -> Vec<String> {
    let cmd = serve_cmd(Path::new("."), config, port);
    cmd.get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

pub(crate) fn signal(server: &Server, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} failed");
}

#[tokio::test]
async fn sigterm_closes_half_sent_connections_finishes_requests_and_exits_at_the_deadline() {
    let port = free_port();
    let (dir, config) = config_dir(port);
    let mut cmd = serve_cmd(dir.path(), &config, port);
    cmd.args(["--shutdown-timeout", "3"]);
    let mut server = Server::start(cmd, port);
    server.wait_ready(&http()).await;

    let mut partial = partial_heads(&server, 1).await.remove(0);
    let mut idle = connect(&server).await;
    idle.write_all(HEALTHZ).await.unwrap();
    read_response(&mut idle).await;
    // Two token requests whose bodies are in flight: one will finish, one never does.
    let body = b"grant_type=refresh_token&client_id=c&refresh_token=x";
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut finishing = connect(&server).await;
    let mut stuck = connect(&server).await;
    for stream in [&mut finishing, &mut stuck] {
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body[..10]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    signal(&server, "TERM");
    let signalled = Instant::now();
    // Connections without a request in flight close at once, and no new one is accepted.
    assert!(closed_within(&mut partial, Duration::from_secs(2)).await);
    assert!(closed_within(&mut idle, Duration::from_secs(2)).await);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "a connection was accepted after SIGTERM"
    );
    // A request in flight still gets its answer.
    finishing.write_all(&body[10..]).await.unwrap();
    let response = read_response(&mut finishing).await;
    assert!(response.starts_with("HTTP/1.1 4"), "{response}");
    assert!(closed_within(&mut finishing, Duration::from_secs(2)).await);

    // The stuck one holds the process until the deadline, not longer.
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(8),
            "still running 8 s after SIGTERM with --shutdown-timeout 3\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}\n{}", server.stderr());
    assert!(
        signalled.elapsed() >= Duration::from_millis(2500),
        "exited after {:?}, without waiting for the request in flight",
        signalled.elapsed()
    );
    assert!(
        server
            .stderr()
            .contains("still busy after the 3s shutdown timeout")
    );
}

#[tokio::test]
async fn sighup_reloads_and_the_server_keeps_serving() {
    let (_dir, mut server) = start(&[], None);
    server.wait_ready(&http()).await;
    signal(&server, "HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("configuration reloaded") {
        assert!(
            Instant::now() < deadline,
            "no reload logged\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the server"
    );
    let health = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(server.terminate().await.success());
}
