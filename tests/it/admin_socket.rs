//! The admin socket serves only the server's own account (SPEC §17), checked on every
//! connection: even a socket whose mode was loosened (the race the old bind-then-chmod left
//! open, or an operator's chmod) refuses another uid. Needs root to run a client as another
//! user; skipped with a message otherwise.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use mcp_authd::admin::{AdminCommand, AdminReply};

use crate::cli::{Server, add_gemini, config_dir, one_shot, run, serve_cmd};
use crate::process::{free_port, http};

/// Tells [`peer_helper`] which state's socket to use.
const HELPER_STATE_ENV: &str = "MCP_AUTHD_TEST_ADMIN_STATE";
/// Tells [`peer_helper`] which client to ask to remove.
const HELPER_CLIENT_ENV: &str = "MCP_AUTHD_TEST_ADMIN_CLIENT";
/// The uid the helper runs as (`nobody`).
const OTHER_UID: u32 = 65534;

#[tokio::test]
async fn another_uid_is_refused_even_when_the_socket_mode_lets_it_connect() {
    if mcp_authd::store::state_files::euid() != 0 {
        eprintln!(
            "SKIPPED another_uid_is_refused_even_when_the_socket_mode_lets_it_connect: needs root to run a client as uid {OTHER_UID}"
        );
        return;
    }
    let port = free_port();
    let (dir, config) = config_dir(port);
    let (client_id, _) = add_gemini(dir.path(), &config);
    // The other user may enter the directory (not list or write it), so only the socket's own
    // mode and the peer check stand in its way.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut server = Server::start(serve_cmd(dir.path(), &config, port), port);
    server.wait_ready(&http()).await;
    let state = dir.path().join("auth_server.json");
    let socket = mcp_authd::admin::socket_path(&state);
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();

    // The other user must be able to run this test binary, wherever the checkout lives (a home
    // directory may be closed to others): run it from a directory anyone may enter.
    let exe_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(exe_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = exe_dir.path().join("it-peer-helper");
    let current = std::env::current_exe().unwrap();
    if std::fs::hard_link(&current, &exe).is_err() {
        std::fs::copy(&current, &exe).unwrap();
    }
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let helper = Command::new(&exe)
        .args([
            "--exact",
            "admin_socket::peer_helper",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_STATE_ENV, &state)
        .env(HELPER_CLIENT_ENV, &client_id)
        .current_dir("/")
        .gid(OTHER_UID)
        .uid(OTHER_UID)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&helper.stdout);
    let reply = stdout
        .lines()
        .find_map(|l| l.strip_prefix("REPLY "))
        .unwrap_or_else(|| {
            panic!(
                "the helper printed no reply\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&helper.stderr)
            )
        });
    match serde_json::from_str::<AdminReply>(reply).unwrap() {
        AdminReply::Failed { message } => assert!(
            message.contains("serves only uid 0, the account the server runs as"),
            "{message}"
        ),
        other => panic!("uid {OTHER_UID} was served: {other:?}"),
    }
    let log = server.stderr();
    assert!(
        log.contains(&format!("refused a connection from uid {OTHER_UID}")),
        "{log}"
    );
    // The client is still there, and the owner is still served.
    let listed = run(&mut one_shot(dir.path(), &config, &["clients", "list"]));
    assert!(listed.stdout.contains(&client_id), "{}", listed.stdout);
    run(&mut one_shot(
        dir.path(),
        &config,
        &["clients", "remove", &client_id],
    ))
    .assert_success();
    assert!(server.terminate().await.success());
}

/// Run by the test above as another user: sends one admin command and prints the reply.
#[tokio::test]
#[ignore = "a helper that another test runs as another user"]
async fn peer_helper() {
    let (Some(state), Some(client_id)) = (
        std::env::var_os(HELPER_STATE_ENV),
        std::env::var(HELPER_CLIENT_ENV).ok(),
    ) else {
        return;
    };
    let reply =
        mcp_authd::admin::send(Path::new(&state), &AdminCommand::RemoveClient { client_id })
            .await
            .unwrap();
    println!("REPLY {}", serde_json::to_string(&reply).unwrap());
}
