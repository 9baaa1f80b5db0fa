//! State files are never opened through a symbolic link, must be regular files of the account
//! the server runs as, and live in a directory no other account can write to (SPEC §17); `check`
//! also fails when the server could not write its state directory. The real binary, with
//! `serve` and `check`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use mcp_authd::store::file::journal_path;

use crate::cli::{add_gemini, config_dir, one_shot, run, serve_cmd};
use crate::process::free_port;

/// A directory with a config and a state holding one pre-provisioned client.
fn with_state() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, config) = config_dir(8080);
    add_gemini(dir.path(), &config);
    let state = dir.path().join("auth_server.json");
    // A clean close folds the journal into the state file and removes it; a running or
    // crashed server leaves one, which is checked like the others.
    assert!(!journal_path(&state).exists() && lock_path(&state).exists());
    std::fs::write(journal_path(&state), b"").unwrap();
    chmod(&journal_path(&state), 0o600);
    (dir, config, state)
}

fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Which file of a state (given the state file's path).
type StateFile = fn(&Path) -> PathBuf;

#[test]
fn a_symlinked_journal_lock_or_snapshot_stops_serve_and_check_and_its_target_is_untouched() {
    let elsewhere = tempfile::tempdir().unwrap();
    let snapshot = |s: &Path| s.to_path_buf();
    let cases: [(&str, StateFile); 3] = [
        ("journal", journal_path),
        ("lock", lock_path),
        ("snapshot", snapshot),
    ];
    for (what, file_of) in cases {
        let (dir, config, state) = with_state();
        let file = file_of(&state);
        // The target: another file of the same account, which the server must never touch.
        let target = elsewhere.path().join(what);
        let original = std::fs::read(&state).unwrap();
        std::fs::write(&target, &original).unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&target, &file).unwrap();

        let serve = run(&mut serve_cmd(dir.path(), &config, free_port()));
        let check = run(&mut one_shot(dir.path(), &config, &["check"]));
        for (command, out) in [("serve", &serve), ("check", &check)] {
            out.assert_failure().assert_stderr_contains(&format!(
                "{} is a symbolic link; state files are never opened through one",
                file.display()
            ));
            assert!(
                !out.stderr.contains("listening"),
                "{command} with a linked {what}"
            );
        }
        assert_eq!(
            std::fs::read(&target).unwrap(),
            original,
            "the {what}'s target changed"
        );
        assert!(
            std::fs::symlink_metadata(&file)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    // A dangling link as the lock: its target is not created.
    let (dir, config, state) = with_state();
    let missing = elsewhere.path().join("created-through-the-link");
    std::fs::remove_file(lock_path(&state)).unwrap();
    std::os::unix::fs::symlink(&missing, lock_path(&state)).unwrap();
    run(&mut serve_cmd(dir.path(), &config, free_port())).assert_failure();
    assert!(!missing.exists(), "the lock's link target was created");
}

#[test]
fn a_state_directory_writable_by_others_stops_serve_and_check_with_one_line() {
    let (dir, config, state) = with_state();
    run(&mut one_shot(dir.path(), &config, &["check"])).assert_success();
    let before = std::fs::read(&state).unwrap();
    std::fs::remove_file(lock_path(&state)).unwrap();
    for mode in [0o777, 0o1777, 0o770] {
        chmod(dir.path(), mode);
        let line = format!(
            "refusing the state directory {}: it is writable by group or others (mode {mode:o}); run chmod go-w on it or choose another directory",
            dir.path().display()
        );
        let serve = run(&mut serve_cmd(dir.path(), &config, free_port()));
        let check = run(&mut one_shot(dir.path(), &config, &["check"]));
        for out in [&serve, &check] {
            out.assert_failure().assert_stderr_line(&line);
            assert_eq!(
                out.stderr
                    .lines()
                    .filter(|l| l.starts_with("error:"))
                    .count(),
                1,
                "{}",
                out.stderr
            );
        }
        assert!(
            !lock_path(&state).exists(),
            "something was created in an unsafe directory"
        );
    }
    chmod(dir.path(), 0o700);
    assert_eq!(std::fs::read(&state).unwrap(), before);
    run(&mut one_shot(dir.path(), &config, &["check"])).assert_success();
}

#[test]
fn a_state_file_of_another_user_stops_serve_and_check() {
    if rustix_euid() != 0 {
        eprintln!(
            "SKIPPED a_state_file_of_another_user_stops_serve_and_check: needs root to chown a file"
        );
        return;
    }
    for file_of in [journal_path as fn(&Path) -> PathBuf, |s: &Path| {
        s.to_path_buf()
    }] {
        let (dir, config, state) = with_state();
        let file = file_of(&state);
        std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
        let before = std::fs::read(&file).unwrap();
        for out in [
            run(&mut serve_cmd(dir.path(), &config, free_port())),
            run(&mut one_shot(dir.path(), &config, &["check"])),
        ] {
            out.assert_failure().assert_stderr_contains(&format!(
                "{} belongs to uid 65534, but mcp-authd runs as uid 0",
                file.display()
            ));
        }
        assert_eq!(std::fs::read(&file).unwrap(), before);
    }
}

/// The effective uid of the tests (the crate's own view of it).
fn rustix_euid() -> u32 {
    mcp_authd::store::state_files::euid()
}
