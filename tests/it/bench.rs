//! The ratio benchmark (`examples/bench.rs`) run for a moment against the binary under test:
//! its table keeps its documented format, and both servers it starts are gone when it ends,
//! normally, by SIGTERM, or killed outright (its watchdog then ends them).

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::process::BIN;

/// The columns of format 1, as README "Performance" documents them.
const HEADER: [&str; 12] = [
    "phase",
    "null/s",
    "authd/s",
    "ratio",
    "null_p50",
    "authd_p50",
    "null_p99",
    "authd_p99",
    "p99x",
    "null_cpu",
    "authd_cpu",
    "errors",
];

/// The benchmark, built with the same profile as the binary under test: `cargo test` builds
/// examples too, but a filtered run (`--test it`) does not, and a copy from an earlier build
/// would be stale. Once built, this is a check that finds nothing to do.
fn bench_binary() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let profile_dir = PathBuf::from(BIN).parent().unwrap().to_path_buf();
    BUILT.call_once(|| {
        // target/debug is the `dev` profile; any other directory is named after its profile.
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(name) => name,
        };
        let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args([
                "build",
                "--quiet",
                "--example",
                "bench",
                "--profile",
                profile,
            ])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example bench failed");
    });
    profile_dir.join("examples").join("bench")
}

/// Starts the benchmark with `args`; its stdout lines arrive on the receiver.
fn start(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(bench_binary())
        .arg("--binary")
        .arg(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Reads lines until one starts with `prefix` (or the output ends, or 60 s pass).
fn wait_for_line(lines: &mpsc::Receiver<String>, prefix: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.starts_with(prefix) {
                    return line;
                }
            }
            Err(_) => panic!(
                "no line starting with {prefix:?}; output so far:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// The two server pids from the `servers` line.
fn server_pids(line: &str) -> Vec<u32> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let pids: Vec<u32> = words
        .windows(2)
        .filter(|w| w[0] == "pid")
        .map(|w| w[1].parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{line}");
    pids
}

/// Whether `pid` still runs (a zombie nobody reaped has ended).
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn assert_gone_within(pids: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|p| is_running(*p)) {
        assert!(
            Instant::now() < deadline,
            "still running after {limit:?}: {:?}",
            pids.iter().filter(|p| is_running(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_short_run_prints_every_phase_in_the_documented_format_and_stops_both_servers() {
    let (mut child, lines) = start(&[
        "--duration",
        "0.4",
        "--warmup",
        "0.1",
        "--repeats",
        "1",
        "--connections",
        "4",
    ]);
    let mut seen = Vec::new();
    assert_eq!(
        wait_for_line(&lines, "mcp-authd bench", &mut seen),
        "mcp-authd bench, format 1"
    );
    let pids = server_pids(&wait_for_line(&lines, "servers ", &mut seen));
    let header = wait_for_line(&lines, "phase ", &mut seen);
    assert_eq!(header.split_whitespace().collect::<Vec<_>>(), HEADER);
    for phase in ["metadata", "register", "flow", "refresh", "introspect"] {
        let row = wait_for_line(&lines, phase, &mut seen);
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(columns.len(), HEADER.len(), "{row}");
        assert_eq!(columns[0], phase);
        for (name, value) in HEADER.iter().zip(&columns).skip(1) {
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("{name} is not a number in {row}"));
            if *name == "errors" {
                assert_eq!(value, 0.0, "{row}");
            } else {
                assert!(value > 0.0, "{name} in {row}");
            }
        }
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert_gone_within(&pids, Duration::from_secs(1));
}

#[test]
fn sigterm_and_sigkill_of_the_benchmark_both_end_its_servers() {
    use rustix::process::{Pid, Signal, kill_process};
    for signal in [Signal::TERM, Signal::KILL] {
        let (mut child, lines) = start(&["--duration", "30", "--repeats", "1"]);
        let mut seen = Vec::new();
        let pids = server_pids(&wait_for_line(&lines, "servers ", &mut seen));
        assert!(pids.iter().all(|p| is_running(*p)), "{pids:?}");
        let pid = Pid::from_raw(child.id() as i32).unwrap();
        kill_process(pid, signal).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{signal:?}: {status}");
        // SIGTERM: the benchmark stops them itself. SIGKILL: its watchdog sees the pipe close
        // and sends SIGTERM, then SIGKILL two seconds later.
        assert_gone_within(&pids, Duration::from_secs(10));
    }
}
