//! The ratio benchmark: mcp-authd against a null HTTP server, measured in the same run.
//!
//! ```sh
//! cargo build --release --bins --examples
//! target/release/examples/bench                 # 16 connections, 5 s per phase, 3 repeats
//! target/release/examples/bench --phases refresh --repeats 5 --verbose
//! ```
//!
//! One command starts two servers on loopback, each on a fresh port:
//!
//! - **authd**: the release binary (`target/<profile>/mcp-authd`, or `--binary`) with a
//!   temporary configuration and state directory: the default file store, durable before every
//!   response, default logging (info, text) written to a file in that directory;
//! - **null**: this program in its null-server mode: hyper's HTTP/1.1 server on a
//!   single-threaded runtime answering every request with a canned answer captured from
//!   authd (same status, headers and body, so the same sizes), with no state.
//!
//! When two CPUs are available both servers run on the first (`taskset -c`) and the driver on
//! the second, so a server never competes with its load. The driver is one closed-loop client
//! (hyper's HTTP/1.1 client, `--connections` keep-alive connections, each sending its next
//! request when the previous answer is in) that drives both servers through the same phases
//! with the same requests:
//!
//! | phase | one operation |
//! |---|---|
//! | `metadata` | `GET /.well-known/oauth-authorization-server` |
//! | `register` | `POST /oauth/register` (a public client) |
//! | `flow` | `GET /oauth/authorize` through the trusted-header path (consent given once at setup), then `POST /oauth/token` with the code |
//! | `refresh` | `POST /oauth/token` with the connection's latest refresh token |
//! | `introspect` | `POST /oauth/introspect` of an access token, as a provisioned confidential client |
//!
//! Each phase runs `--warmup` seconds unmeasured, then `--duration` seconds measured, on
//! one server and then the other (the order alternates between repeats, so a drift in the
//! machine's load falls on both). The table (format 1, see README "Performance") has one row
//! per phase: operations per second, p50 and p99 latency in milliseconds, server CPU time per
//! operation in microseconds (from `/proc/<pid>/stat`), for both servers, and the ratios. Each
//! figure is the median over the repeats; `ratio` is the median of the per-repeat ratios.
//!
//! `--callgrind` instead counts authd's instructions per operation with valgrind: for each
//! phase, two server lifetimes (setup and `--warmup-requests` operations; the same plus
//! `--requests` more), and the difference divided by `--requests`.
//!
//! Both servers are stopped on every exit path: normal end, error, panic, Ctrl-C, SIGTERM,
//! SIGHUP, and the overall deadline. Should this process be killed outright, a watchdog
//! process (this program again, reading a pipe from it) sees the pipe close and ends them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Both servers allocate alike: the daemon uses mimalloc, so the null server does too.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The version of the printed table; bumped whenever a column changes meaning.
const FORMAT: u32 = 1;
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const USER: &str = "bench@example.com";
const USER_HEADER: &str = "x-forwarded-user";
const SECRET: &str = "bench-secret-do-not-use-0123456789-abcdefgh";
/// Linux reports process CPU time in these ticks per second (`USER_HZ`, 100 on every
/// architecture Linux ships for).
const TICKS_PER_SECOND: f64 = 100.0;

/// Measures mcp-authd against a null HTTP server on loopback; see the module documentation.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Concurrent keep-alive connections (closed loop).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Measured seconds per phase and server.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Unmeasured seconds before each measurement.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// How many times every phase is measured; the table shows medians.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// The phases, in order (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "metadata,register,flow,refresh,introspect"
    )]
    phases: Vec<Phase>,
    /// The mcp-authd binary (default: `mcp-authd` in the directory above this program's,
    /// i.e. the same cargo profile).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Leave every process on every CPU.
    #[arg(long)]
    no_pin: bool,
    /// Measure only this server (`authd` or `null`), e.g. while a profiler watches it; the
    /// other's columns and the ratios are then `NaN`.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Print every repeat's figures too (lines starting with `run`).
    #[arg(long)]
    verbose: bool,
    /// Count instructions per operation of mcp-authd under valgrind's callgrind instead of
    /// measuring rates (needs `valgrind`).
    #[arg(long)]
    callgrind: bool,
    /// With --callgrind: measured operations per phase.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// With --callgrind: operations before the measured ones (first-use costs).
    #[arg(long, default_value_t = 400)]
    warmup_requests: usize,
    /// An environment variable for mcp-authd, as NAME=VALUE (repeatable), e.g. RUST_LOG=warn.
    #[arg(long, value_name = "NAME=VALUE")]
    authd_env: Vec<String>,
    /// Keep the temporary directories (configuration, state, logs) and print where.
    #[arg(long)]
    keep: bool,
    /// mcp-authd's `maxDynamicClients` (0: no cap, the default here, since the register phase
    /// adds tens of thousands of clients; a cap above that measures what counting costs).
    #[arg(long, default_value_t = 0)]
    max_dynamic_clients: usize,
    /// Where the temporary directories go, mcp-authd's state included (default: the system's
    /// temporary directory, `TMPDIR`). Its file system's fsync latency bounds every phase
    /// that changes state; a tmpfs (`/dev/shm`) takes it out of the measurement.
    #[arg(long, value_name = "DIR")]
    tmpdir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    Authd,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    Metadata,
    Register,
    Flow,
    Refresh,
    Introspect,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Metadata => "metadata",
            Phase::Register => "register",
            Phase::Flow => "flow",
            Phase::Refresh => "refresh",
            Phase::Introspect => "introspect",
        }
    }
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("__null-server") => return exit(null_server::main()),
        Some("__watchdog") => return exit(watchdog_main()),
        _ => {}
    }
    let args = Args::parse();
    // Before any thread exists, so every thread of the driver inherits the CPU.
    let cpus = if args.no_pin {
        Cpus::Unpinned("--no-pin".into())
    } else {
        Cpus::choose()
    };
    if let Cpus::Pinned { driver, .. } = &cpus
        && let Err(e) = pin_process(std::process::id(), *driver)
    {
        eprintln!("bench: cannot pin the driver ({e}); run with --no-pin");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    exit(runtime.block_on(run_until_signal(args, cpus)))
}

fn exit(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark until it ends, a signal arrives or the deadline passes. Servers are
/// owned by the benchmark's future, so each of these ends drops them, and dropping stops them.
async fn run_until_signal(args: Args, cpus: Cpus) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let deadline = overall_deadline(&args);
    let watchdog = Arc::new(Watchdog::start()?);
    let outcome = tokio::select! {
        result = tokio::time::timeout(deadline, run(&args, &cpus, &watchdog)) => match result {
            Ok(result) => result,
            Err(_) => Err(format!("gave up after {} s (the overall deadline)", deadline.as_secs()).into()),
        },
        _ = interrupt.recv() => Err("interrupted".into()),
        _ = terminate.recv() => Err("terminated".into()),
        _ = hangup.recv() => Err("hung up".into()),
    };
    watchdog.close();
    outcome
}

/// A generous bound on the whole run: setup plus every measurement, with slack for slow
/// starts (valgrind is 20 to 100 times slower).
fn overall_deadline(args: &Args) -> Duration {
    let phases = args.phases.len() as f64;
    let seconds = if args.callgrind {
        // Two server lifetimes per phase at about 2 ms per operation under valgrind.
        phases * 2.0 * (120.0 + (args.requests + args.warmup_requests) as f64 * 0.05)
    } else {
        120.0 + args.repeats as f64 * phases * 2.0 * (args.warmup + args.duration + 10.0)
    };
    Duration::from_secs_f64(seconds.min(24.0 * 3600.0))
}

async fn run(args: &Args, cpus: &Cpus, watchdog: &Arc<Watchdog>) -> Result<(), Error> {
    if args.connections == 0 || args.repeats == 0 || args.phases.is_empty() {
        return Err("--connections, --repeats and --phases must not be 0 or empty".into());
    }
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => default_binary()?,
    };
    if !binary.is_file() {
        return Err(format!(
            "{} does not exist: build it first (cargo build --release --bins --examples) or pass --binary",
            binary.display()
        )
        .into());
    }
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "mcp-authd bench, format {FORMAT}{}",
        if args.callgrind { " (callgrind)" } else { "" }
    );
    println!("binary      {} ({version})", binary.display());
    if args.callgrind {
        let has_valgrind = Command::new("valgrind")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_valgrind {
            return Err("--callgrind needs valgrind (Debian: apt-get install valgrind)".into());
        }
        return callgrind(args, cpus, watchdog, &binary).await;
    }
    println!(
        "setup       {} connections, {} s per phase after {} s warm-up, median of {} repeat(s); {}",
        args.connections,
        args.duration,
        args.warmup,
        args.repeats,
        cpus.describe()
    );
    println!("load        {}", load_average());
    let fsync = fsync_latency(args)?;
    println!(
        "fsync       {:.3} ms (median of 50 appends with fdatasync in the state directory): a state change at {} connections waits for at least one, so at most {:.0}/s",
        fsync * 1e3,
        args.connections,
        args.connections as f64 / fsync
    );

    let authd = Authd::start(&binary, args, cpus, watchdog, None).await?;
    let (fixture, mut authd_tokens, canned) = authd.setup(args.connections).await?;
    let fixture = Arc::new(fixture);
    let null = match args.only {
        Some(Only::Authd) => None,
        _ => Some(NullServer::start(&canned, args, cpus, watchdog).await?),
    };
    let mut null_tokens = authd_tokens.clone();
    println!(
        "servers     authd pid {} on {}, null {}",
        authd.process.pid,
        authd.addr,
        match &null {
            Some(n) => format!("pid {} on {}", n.process.pid, n.addr),
            None => "not started (--only authd)".into(),
        }
    );
    println!();
    print_header();

    let plan = Plan::Timed {
        warmup: Duration::from_secs_f64(args.warmup),
        measure: Duration::from_secs_f64(args.duration),
    };
    let mut results: Vec<Vec<(Sample, Sample)>> = vec![Vec::new(); args.phases.len()];
    for repeat in 0..args.repeats {
        for (index, phase) in args.phases.iter().copied().enumerate() {
            let mut on_null = async || match &null {
                Some(null) if args.only != Some(Only::Authd) => {
                    run_phase(phase, &fixture, &mut null_tokens, null, plan).await
                }
                _ => Ok(Sample::none()),
            };
            let mut on_authd = async || {
                if args.only == Some(Only::Null) {
                    return Ok(Sample::none());
                }
                run_phase(phase, &fixture, &mut authd_tokens, &authd, plan).await
            };
            // Alternate the order, so a change in the machine's load falls on both.
            let (n, a) = if repeat % 2 == 0 {
                let n = on_null().await?;
                (n, on_authd().await?)
            } else {
                let a = on_authd().await?;
                (on_null().await?, a)
            };
            if args.verbose {
                print_row(
                    &format!("run{}:{}", repeat + 1, phase.name()),
                    &[(n.clone(), a.clone())],
                );
            }
            results[index].push((n, a));
        }
    }
    if args.verbose {
        println!();
        print_header();
    }
    for (phase, samples) in args.phases.iter().zip(&results) {
        print_row(phase.name(), samples);
    }
    let errors: u64 = results
        .iter()
        .flatten()
        .map(|(n, a)| n.errors + a.errors)
        .sum();
    if errors > 0 {
        eprintln!(
            "bench: {errors} operation(s) failed; the server's log is {}{}",
            authd.log_path().display(),
            if args.keep {
                ""
            } else {
                " (pass --keep to keep it)"
            }
        );
    }
    drop(null);
    if let Some(kept) = authd.stop(args.keep) {
        println!("kept        {}", kept.display());
    }
    Ok(())
}

/// A new temporary directory under `--tmpdir` (or the system's).
fn temp_dir(args: &Args, prefix: &str) -> Result<tempfile::TempDir, Error> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    Ok(match &args.tmpdir {
        Some(dir) => builder.tempdir_in(dir)?,
        None => builder.tempdir()?,
    })
}

/// The median time of a small append plus `fdatasync` where the state will live: the floor
/// under every durable answer (the state writer's group commit shares one among many).
fn fsync_latency(args: &Args) -> Result<f64, Error> {
    let dir = temp_dir(args, "mcp-authd-bench-fsync.")?;
    let mut file = std::fs::File::create(dir.path().join("probe"))?;
    let line = [b'x'; 200];
    let mut times = Vec::with_capacity(50);
    for _ in 0..50 {
        let started = Instant::now();
        file.write_all(&line)?;
        file.sync_data()?;
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// `--callgrind`: instructions per operation, phase by phase, of mcp-authd and of the null
/// server. Each phase takes two lifetimes of each server that differ only in `--requests`
/// operations, so boot, setup and first-use costs cancel out. SHA-256 is shown apart:
/// valgrind hides the CPU's SHA instructions, so `sha2` runs its portable rounds there, about
/// ten times the instructions it needs on a CPU with SHA extensions.
async fn callgrind(
    args: &Args,
    cpus: &Cpus,
    watchdog: &Arc<Watchdog>,
    binary: &Path,
) -> Result<(), Error> {
    println!(
        "setup       {} connections, {} operations per phase after {} unmeasured; {}",
        args.connections,
        args.requests,
        args.warmup_requests,
        cpus.describe()
    );
    println!();
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>7}",
        "phase", "null_Ir/op", "authd_Ir/op", "sha256_Ir/op", "ratio"
    );
    let out = temp_dir(args, "mcp-authd-bench-callgrind.")?;
    let valgrind = |file: &Path| {
        vec![
            "valgrind".to_string(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}", file.display()),
        ]
    };
    for phase in args.phases.iter().copied() {
        let mut authd_totals = Vec::new();
        let mut null_totals = Vec::new();
        for measured in [0, args.requests] {
            let plan = Plan::Counted {
                warmup: args.warmup_requests,
                measure: measured,
            };
            let name = format!("{}.{measured}", phase.name());
            let file = out.path().join(format!("callgrind.out.authd.{name}"));
            let authd = Authd::start(binary, args, cpus, watchdog, Some(&valgrind(&file))).await?;
            let (fixture, mut tokens, canned) = authd.setup(args.connections).await?;
            let fixture = Arc::new(fixture);
            let mut null_tokens = tokens.clone();
            let sample = run_phase(phase, &fixture, &mut tokens, &authd, plan).await?;
            // The profile is written when the server exits.
            authd.stop(false);
            if sample.errors > 0 {
                return Err(
                    format!("{name} failed {} time(s) under valgrind", sample.errors).into(),
                );
            }
            authd_totals.push(callgrind_costs(&file)?);

            let file = out.path().join(format!("callgrind.out.null.{name}"));
            let null =
                NullServer::start_wrapped(&canned, args, cpus, watchdog, Some(&valgrind(&file)))
                    .await?;
            run_phase(phase, &fixture, &mut null_tokens, &null, plan).await?;
            drop(null);
            null_totals.push(callgrind_costs(&file)?);
        }
        let per_op = |t: &[(u64, u64)], f: fn(&(u64, u64)) -> u64| {
            (f(&t[1]) as f64 - f(&t[0]) as f64) / args.requests.max(1) as f64
        };
        let null = per_op(&null_totals, |t| t.0);
        let authd = per_op(&authd_totals, |t| t.0);
        println!(
            "{:<16} {:>12.0} {:>12.0} {:>12.0} {:>7.2}",
            phase.name(),
            null,
            authd,
            per_op(&authd_totals, |t| t.1),
            ratio(null, authd)
        );
    }
    if args.keep {
        println!("kept        {}", out.keep().display());
    }
    Ok(())
}

/// The instruction count (`Ir`) of a callgrind profile, and the part spent in SHA-256's
/// compression function (its own cost, not what it calls).
fn callgrind_costs(file: &Path) -> Result<(u64, u64), Error> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("no callgrind profile at {} ({e})", file.display()))?;
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no totals in {}", file.display()))?;
    // Names are compressed: `fn=(12) name` the first time, `fn=(12)` after. A cost line after
    // `calls=` is the callee's inclusive cost, not the current function's own.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut is_sha = false;
    let mut skip_next = false;
    let mut sha = 0u64;
    for line in text.lines() {
        // A callee (`cfn=`) may be the first to name a function.
        let (is_fn, rest) = match (line.strip_prefix("fn="), line.strip_prefix("cfn=")) {
            (Some(rest), _) => (true, Some(rest)),
            (None, Some(rest)) => (false, Some(rest)),
            _ => (false, None),
        };
        if let Some(rest) = rest {
            let (id, name) = match rest.split_once(") ") {
                Some((id, name)) => (format!("{id})"), name.to_string()),
                None => (rest.to_string(), String::new()),
            };
            let name = if name.is_empty() {
                names.get(&id).cloned().unwrap_or_default()
            } else {
                names.insert(id, name.clone());
                name
            };
            if is_fn {
                is_sha = name.contains("sha256") && name.contains("compress");
            }
        } else if line.starts_with("calls=") {
            skip_next = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-' || c == '*')
        {
            if std::mem::take(&mut skip_next) {
                continue;
            }
            if is_sha
                && let Some(ir) = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            {
                sha += ir;
            }
        }
    }
    Ok((total, sha))
}

// ---------------------------------------------------------------------------------------------
// The table.

fn print_header() {
    println!(
        "{:<16} {:>8} {:>8} {:>6} {:>8} {:>9} {:>8} {:>9} {:>6} {:>8} {:>9} {:>6}",
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
        "errors"
    );
}

/// One row: medians over `samples` (null, authd).
fn print_row(label: &str, samples: &[(Sample, Sample)]) {
    let median_of = |f: &dyn Fn(&(Sample, Sample)) -> f64| median(samples.iter().map(f).collect());
    println!(
        "{:<16} {:>8.0} {:>8.0} {:>6.2} {:>8.3} {:>9.3} {:>8.3} {:>9.3} {:>6.2} {:>8.1} {:>9.1} {:>6}",
        label,
        median_of(&|(n, _)| n.rate),
        median_of(&|(_, a)| a.rate),
        median_of(&|(n, a)| ratio(a.rate, n.rate)),
        median_of(&|(n, _)| n.p50_ms),
        median_of(&|(_, a)| a.p50_ms),
        median_of(&|(n, _)| n.p99_ms),
        median_of(&|(_, a)| a.p99_ms),
        median_of(&|(n, a)| ratio(a.p99_ms, n.p99_ms)),
        median_of(&|(n, _)| n.cpu_us),
        median_of(&|(_, a)| a.cpu_us),
        samples
            .iter()
            .map(|(n, a)| n.errors + a.errors)
            .sum::<u64>(),
    );
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().take(3).collect();
            (f.len() == 3).then(|| format!("{} {} {} (1, 5, 15 min, at start)", f[0], f[1], f[2]))
        })
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------------------------------------
// CPUs.

enum Cpus {
    Pinned { server: usize, driver: usize },
    Unpinned(String),
}

impl Cpus {
    /// The first two CPUs this process may run on: servers on the first, the driver on the
    /// second. Unpinned when there is only one, or `taskset` is missing.
    fn choose() -> Self {
        let allowed = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(|l| parse_cpu_list(l.trim()))
            })
            .unwrap_or_default();
        if allowed.len() < 2 {
            return Cpus::Unpinned(format!("{} CPU(s) available", allowed.len()));
        }
        let has_taskset = Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_taskset {
            return Cpus::Unpinned("taskset not found".into());
        }
        Cpus::Pinned {
            server: allowed[0],
            driver: allowed[1],
        }
    }

    fn describe(&self) -> String {
        match self {
            Cpus::Pinned { server, driver } => {
                format!("servers on cpu {server}, driver on cpu {driver}")
            }
            Cpus::Unpinned(why) => format!("unpinned ({why})"),
        }
    }

    /// `program args…`, started on the servers' CPU.
    fn command(&self, program: &[String]) -> Command {
        match self {
            Cpus::Pinned { server, .. } => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(server.to_string()).args(program);
                c
            }
            Cpus::Unpinned(_) => {
                let mut c = Command::new(&program[0]);
                c.args(&program[1..]);
                c
            }
        }
    }
}

/// `0-3,6` → `[0, 1, 2, 3, 6]`.
fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let mut ends = part.splitn(2, '-').map(|n| n.trim().parse::<usize>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), None) => cpus.push(a),
            (Some(Ok(a)), Some(Ok(b))) => cpus.extend(a..=b),
            _ => {}
        }
    }
    cpus
}

fn pin_process(pid: u32, cpu: usize) -> Result<(), Error> {
    let status = Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("taskset -p -c {cpu} {pid} failed: {status}").into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes: the watchdog, and stopping servers.

/// A child process that ends the servers if this process dies without doing so itself: it
/// reads `+PID` and `-PID` lines from a pipe, and when the pipe closes it sends SIGTERM to
/// every PID still listed, then SIGKILL after two seconds.
struct Watchdog {
    pipe: Mutex<Option<std::process::ChildStdin>>,
    child: Mutex<Option<Child>>,
}

impl Watchdog {
    fn start() -> Result<Self, Error> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("__watchdog")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Self {
            pipe: Mutex::new(pipe),
            child: Mutex::new(Some(child)),
        })
    }

    fn send(&self, line: &str) {
        if let Ok(mut pipe) = self.pipe.lock()
            && let Some(p) = pipe.as_mut()
        {
            // A dead watchdog cannot help; the servers are still stopped by `Drop`.
            let _ = writeln!(p, "{line}").and_then(|()| p.flush());
        }
    }

    fn watch(&self, pid: u32) {
        self.send(&format!("+{pid}"));
    }

    fn forget(&self, pid: u32) {
        self.send(&format!("-{pid}"));
    }

    /// Closes the pipe (nothing is listed any more, so the watchdog just exits) and reaps it.
    fn close(&self) {
        if let Ok(mut pipe) = self.pipe.lock() {
            pipe.take();
        }
        if let Ok(mut child) = self.child.lock()
            && let Some(mut c) = child.take()
        {
            let _ = c.wait();
        }
    }
}

fn watchdog_main() -> Result<(), Error> {
    use rustix::process::{Pid, Signal, kill_process};
    let mut pids = std::collections::BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(pid) = line.strip_prefix('+').and_then(|p| p.parse::<i32>().ok()) {
            pids.insert(pid);
        } else if let Some(pid) = line.strip_prefix('-').and_then(|p| p.parse::<i32>().ok()) {
            pids.remove(&pid);
        }
    }
    let targets: Vec<Pid> = pids.into_iter().filter_map(Pid::from_raw).collect();
    for pid in &targets {
        let _ = kill_process(*pid, Signal::TERM);
    }
    if !targets.is_empty() {
        std::thread::sleep(Duration::from_secs(2));
        for pid in &targets {
            let _ = kill_process(*pid, Signal::KILL);
        }
    }
    Ok(())
}

/// A running child server: stopped (SIGTERM, then SIGKILL after `grace`) when dropped.
struct Process {
    name: &'static str,
    child: Option<Child>,
    pid: u32,
    grace: Duration,
    watchdog: Arc<Watchdog>,
}

impl Process {
    fn spawn(
        name: &'static str,
        mut command: Command,
        grace: Duration,
        watchdog: &Arc<Watchdog>,
    ) -> Result<Self, Error> {
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let pid = child.id();
        watchdog.watch(pid);
        Ok(Self {
            name,
            child: Some(child),
            pid,
            grace,
            watchdog: watchdog.clone(),
        })
    }

    /// Whether it has exited already (then with what).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// User plus system CPU time so far, in seconds (every thread).
    fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return f64::NAN;
        };
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return f64::NAN;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of the line are utime and stime: 11 and 12 after the name.
        match (fields.get(11), fields.get(12)) {
            (Some(u), Some(s)) => match (u.parse::<f64>(), s.parse::<f64>()) {
                (Ok(u), Ok(s)) => (u + s) / TICKS_PER_SECOND,
                _ => f64::NAN,
            },
            _ => f64::NAN,
        }
    }

    fn stop(&mut self) {
        use rustix::process::{Pid, Signal, kill_process};
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            if let Some(pid) = Pid::from_raw(self.pid as i32) {
                let _ = kill_process(pid, Signal::TERM);
            }
            let deadline = Instant::now() + self.grace;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() >= deadline {
                    eprintln!(
                        "bench: {} did not stop within {} s of SIGTERM; killing it",
                        self.name,
                        self.grace.as_secs()
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.watchdog.forget(self.pid);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port: bound, read, released (the server binds it a moment later).
fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `addr` accepts connections, failing early if the process exits.
async fn wait_listening(
    process: &mut Process,
    addr: SocketAddr,
    limit: Duration,
    log: &Path,
) -> Result<(), Error> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = process.exited() {
            return Err(format!(
                "{} exited during start ({status}); its log:\n{}",
                process.name,
                tail(log)
            )
            .into());
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not listen on {addr} within {} s; its log:\n{}",
                process.name,
                limit.as_secs(),
                tail(log)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn default_binary() -> Result<PathBuf, Error> {
    // target/<profile>/examples/bench → target/<profile>/mcp-authd
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot tell where this program lives; pass --binary")?;
    Ok(profile_dir.join("mcp-authd"))
}

// ---------------------------------------------------------------------------------------------
// The servers.

/// What the driver needs of a server.
trait Server {
    fn addr(&self) -> SocketAddr;
    fn cpu_seconds(&self) -> f64;
    /// How long one request may take before it counts as failed.
    fn request_timeout(&self) -> Duration;
}

/// mcp-authd with a temporary configuration and state.
struct Authd {
    process: Process,
    addr: SocketAddr,
    dir: Option<tempfile::TempDir>,
    log: PathBuf,
    /// The provisioned confidential client that introspects.
    introspector: (String, String),
    slow: bool,
}

impl Authd {
    async fn start(
        binary: &Path,
        args: &Args,
        cpus: &Cpus,
        watchdog: &Arc<Watchdog>,
        wrapper: Option<&[String]>,
    ) -> Result<Self, Error> {
        let dir = temp_dir(args, "mcp-authd-bench.")?;
        let dir_path = dir.path().to_path_buf();
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let base = format!("http://{addr}");
        let config = serde_json::json!({
            "serverAuth": {"oauthAs": {
                "issuerUrl": base,
                "resourceUrl": "http://127.0.0.1:9/mcp",
                "jwtSecret": SECRET,
                "trustedSourceCidrs": ["127.0.0.1/32"],
                "redirectUriAllowlist": ["http://127.0.0.1:*"],
                "injectedRoles": ["mcp-user"],
                // One client address and one user make every request: no limit may interfere.
                "rateLimits": {"registerPerMinute": 0, "registerGlobalPerMinute": 0,
                               "tokenPerMinute": 0, "authorizePerMinute": 0},
                "maxDynamicClients": args.max_dynamic_clients,
                "maxPendingCodesPerUser": 0,
                "maxPendingCodes": 0
            }}
        });
        let config_path = dir_path.join("servers.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let clean = |c: &mut Command| {
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy().into_owned();
                if name == "RUST_LOG" || name.starts_with("MCP_") {
                    c.env_remove(&name);
                }
            }
            for pair in &args.authd_env {
                if let Some((k, v)) = pair.split_once('=') {
                    c.env(k, v);
                }
            }
        };
        let mut add = Command::new(binary);
        add.args(["clients", "add", "--name", "bench introspector"])
            .args(["--redirect-uri", REDIRECT, "--config"])
            .arg(&config_path)
            .stderr(Stdio::null());
        clean(&mut add);
        let added = add.output()?;
        let stdout = String::from_utf8_lossy(&added.stdout);
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let (Some(id), Some(secret)) = (field("client_id:"), field("client_secret:")) else {
            return Err(format!("`clients add` failed ({}): {stdout}", added.status).into());
        };

        let log = dir_path.join("mcp-authd.log");
        let mut program: Vec<String> = wrapper.map(<[String]>::to_vec).unwrap_or_default();
        program.push(binary.display().to_string());
        program.extend(["serve".into(), "--listen".into(), addr.to_string()]);
        program.extend(["--shutdown-timeout".into(), "5".into(), "--config".into()]);
        program.push(config_path.display().to_string());
        let mut command = cpus.command(&program);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        clean(&mut command);
        let slow = wrapper.is_some();
        let grace = Duration::from_secs(if slow { 300 } else { 20 });
        let mut process = Process::spawn("mcp-authd", command, grace, watchdog)?;
        let start_limit = Duration::from_secs(if slow { 300 } else { 30 });
        wait_listening(&mut process, addr, start_limit, &log).await?;
        Ok(Self {
            process,
            addr,
            dir: Some(dir),
            log,
            introspector: (id, secret),
            slow,
        })
    }

    fn log_path(&self) -> &Path {
        &self.log
    }

    /// Stops the server (it exits 0 after its graceful shutdown), then removes its directory,
    /// or keeps it and says where.
    fn stop(mut self, keep: bool) -> Option<PathBuf> {
        self.process.stop();
        let dir = self.dir.take()?;
        keep.then(|| dir.keep())
    }

    /// Registers the benchmark's client, gives consent once, makes one sign-in per connection
    /// (a refresh token and an access token each), and captures one answer of every kind for
    /// the null server.
    async fn setup(
        &self,
        connections: usize,
    ) -> Result<(Fixture, Vec<String>, BTreeMap<NullKey, Canned>), Error> {
        let mut c = Connection::open(self).await?;
        let mut canned = BTreeMap::new();
        let metadata = c
            .send(&Req::get("/.well-known/oauth-authorization-server".into()))
            .await?;
        expect(&metadata, StatusCode::OK, "metadata")?;
        canned.insert(NullKey::Metadata, Canned::from(&metadata));

        let registered = c.send(&register_request()).await?;
        expect(&registered, StatusCode::CREATED, "registration")?;
        let client_id = json_str(&registered.body, "client_id")
            .ok_or("the registration answer has no client_id")?
            .to_string();
        canned.insert(NullKey::Register, Canned::from(&registered));
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.introspector.0, self.introspector.1))
        );
        let mut fixture = Fixture::new(client_id, basic)?;

        // Consent once: the page's ticket, then the approval.
        let page = c.send(&fixture.authorize).await?;
        expect(&page, StatusCode::OK, "the consent page")?;
        let text = String::from_utf8_lossy(&page.body);
        let marker = "name=\"ticket\" value=\"";
        let start = text.find(marker).ok_or("no ticket on the consent page")? + marker.len();
        let end = text[start..].find('"').ok_or("bad consent page")? + start;
        let approve = Req::form(
            "/oauth/authorize/consent",
            &[("ticket", &text[start..end]), ("decision", "approve")],
        )
        .header(HeaderName::from_static(USER_HEADER), USER)?;
        let approved = c.send(&approve).await?;
        expect(&approved, StatusCode::SEE_OTHER, "the consent approval")?;

        let mut refresh_tokens = Vec::with_capacity(connections);
        for _ in 0..connections {
            let (code_answer, token_answer) = fixture.flow(&mut c).await?;
            let field = |name| {
                json_str(&token_answer.body, name)
                    .map(str::to_string)
                    .ok_or(format!("no {name} in the token answer"))
            };
            refresh_tokens.push(field("refresh_token")?);
            fixture.access_tokens.push(field("access_token")?);
            canned.insert(NullKey::Authorize, Canned::from(&code_answer));
            canned.insert(NullKey::TokenCode, Canned::from(&token_answer));
        }
        // One rotation of the first sign-in, for its answer.
        let refreshed = c.send(&fixture.refresh_request(&refresh_tokens[0])).await?;
        expect(&refreshed, StatusCode::OK, "a refresh")?;
        refresh_tokens[0] = json_str(&refreshed.body, "refresh_token")
            .ok_or("no refresh_token in the refresh answer")?
            .to_string();
        canned.insert(NullKey::TokenRefresh, Canned::from(&refreshed));
        let introspected = c
            .send(&fixture.introspect_request(&fixture.access_tokens[0])?)
            .await?;
        expect(&introspected, StatusCode::OK, "introspection")?;
        if !contains(&introspected.body, b"\"active\":true") {
            return Err("introspection says the access token is inactive".into());
        }
        canned.insert(NullKey::Introspect, Canned::from(&introspected));
        Ok((fixture, refresh_tokens, canned))
    }
}

impl Server for Authd {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn cpu_seconds(&self) -> f64 {
        self.process.cpu_seconds()
    }
    fn request_timeout(&self) -> Duration {
        Duration::from_secs(if self.slow { 120 } else { 10 })
    }
}

/// The null server: this program in `__null-server` mode, answering from a file of canned
/// answers.
struct NullServer {
    process: Process,
    addr: SocketAddr,
    slow: bool,
    _dir: tempfile::TempDir,
}

impl NullServer {
    async fn start(
        canned: &BTreeMap<NullKey, Canned>,
        args: &Args,
        cpus: &Cpus,
        watchdog: &Arc<Watchdog>,
    ) -> Result<Self, Error> {
        Self::start_wrapped(canned, args, cpus, watchdog, None).await
    }

    /// Started under `wrapper` (a profiler's command line), if given.
    async fn start_wrapped(
        canned: &BTreeMap<NullKey, Canned>,
        args: &Args,
        cpus: &Cpus,
        watchdog: &Arc<Watchdog>,
        wrapper: Option<&[String]>,
    ) -> Result<Self, Error> {
        let dir = temp_dir(args, "mcp-authd-bench-null.")?;
        let answers = dir.path().join("answers.json");
        std::fs::write(
            &answers,
            serde_json::to_vec(&canned.iter().collect::<Vec<_>>())?,
        )?;
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let log = dir.path().join("null.log");
        let mut program: Vec<String> = wrapper.map(<[String]>::to_vec).unwrap_or_default();
        program.extend([
            std::env::current_exe()?.display().to_string(),
            "__null-server".into(),
            addr.to_string(),
            answers.display().to_string(),
        ]);
        let mut command = cpus.command(&program);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        let slow = wrapper.is_some();
        let limit = Duration::from_secs(if slow { 300 } else { 30 });
        let mut process = Process::spawn("the null server", command, limit, watchdog)?;
        wait_listening(&mut process, addr, limit, &log).await?;
        Ok(Self {
            process,
            addr,
            slow,
            _dir: dir,
        })
    }
}

impl Server for NullServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn cpu_seconds(&self) -> f64 {
        self.process.cpu_seconds()
    }
    fn request_timeout(&self) -> Duration {
        Duration::from_secs(if self.slow { 120 } else { 10 })
    }
}

/// Which canned answer the null server gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum NullKey {
    Metadata,
    Register,
    Authorize,
    TokenCode,
    TokenRefresh,
    Introspect,
}

/// An answer as authd gave it: status, headers (without those hyper writes itself) and body.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl From<&Answer> for Canned {
    fn from(answer: &Answer) -> Self {
        let skip = [
            header::DATE,
            header::CONTENT_LENGTH,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
        ];
        Self {
            status: answer.status.as_u16(),
            headers: answer
                .headers
                .iter()
                .filter(|(name, _)| !skip.contains(name))
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&answer.body).into_owned(),
        }
    }
}

mod null_server {
    //! `bench __null-server ADDR ANSWERS`: canned answers on one thread, no state.

    use super::*;

    struct Prepared {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    }

    impl Prepared {
        fn response(&self) -> Response<Full<Bytes>> {
            let mut response = Response::new(Full::new(self.body.clone()));
            *response.status_mut() = self.status;
            *response.headers_mut() = self.headers.clone();
            response
        }
    }

    pub(super) fn main() -> Result<(), Error> {
        let mut argv = std::env::args().skip(2);
        let (Some(addr), Some(answers)) = (argv.next(), argv.next()) else {
            return Err("usage: bench __null-server ADDR ANSWERS".into());
        };
        let addr: SocketAddr = addr.parse()?;
        if !addr.ip().is_loopback() {
            return Err("the null server listens on loopback only".into());
        }
        let canned: Vec<(NullKey, Canned)> = serde_json::from_slice(&std::fs::read(answers)?)?;
        let mut prepared = BTreeMap::new();
        for (key, answer) in canned {
            let mut headers = HeaderMap::new();
            for (name, value) in &answer.headers {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes())?,
                    HeaderValue::from_str(value)?,
                );
            }
            prepared.insert(
                key,
                Prepared {
                    status: StatusCode::from_u16(answer.status)?,
                    headers,
                    body: Bytes::from(answer.body),
                },
            );
        }
        let prepared = Arc::new(prepared);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            // SIGTERM ends it cleanly, so that a profiler it runs under writes its profile.
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => accepted?,
                    _ = terminate.recv() => return Ok(()),
                };
                let prepared = prepared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: Request<hyper::body::Incoming>| {
                            let prepared = prepared.clone();
                            async move { Ok::<_, Infallible>(answer(&prepared, request).await) }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http1_only()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        })
    }

    async fn answer(
        prepared: &BTreeMap<NullKey, Prepared>,
        request: Request<hyper::body::Incoming>,
    ) -> Response<Full<Bytes>> {
        let key = match (request.method(), request.uri().path()) {
            (&Method::GET, "/.well-known/oauth-authorization-server") => Some(NullKey::Metadata),
            (&Method::POST, "/oauth/register") => Some(NullKey::Register),
            (&Method::GET, "/oauth/authorize") => Some(NullKey::Authorize),
            (&Method::POST, "/oauth/introspect") => Some(NullKey::Introspect),
            (&Method::POST, "/oauth/token") => None,
            _ => {
                let mut missing = Response::new(Full::new(Bytes::new()));
                *missing.status_mut() = StatusCode::NOT_FOUND;
                return missing;
            }
        };
        // The body is read whatever the request, as a server must to reuse the connection.
        let body = match request.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let key = key.unwrap_or(if body.starts_with(b"grant_type=refresh_token") {
            NullKey::TokenRefresh
        } else {
            NullKey::TokenCode
        });
        match prepared.get(&key) {
            Some(p) => p.response(),
            None => {
                let mut missing = Response::new(Full::new(Bytes::new()));
                *missing.status_mut() = StatusCode::NOT_FOUND;
                missing
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client.

/// One answer, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

fn expect(answer: &Answer, status: StatusCode, what: &str) -> Result<(), Error> {
    if answer.status == status {
        return Ok(());
    }
    Err(format!(
        "{what} answered {} instead of {status}: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
    )
    .into())
}

/// A request, built once and sent as often as needed.
#[derive(Clone)]
struct Req {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn get(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    fn post(path: &str, content_type: &'static str, body: String) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Self {
            method: Method::POST,
            path: path.to_string(),
            headers,
            body: Bytes::from(body),
        }
    }

    fn form(path: &str, pairs: &[(&str, &str)]) -> Self {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            form.append_pair(k, v);
        }
        Self::post(path, "application/x-www-form-urlencoded", form.finish())
    }

    fn header(mut self, name: HeaderName, value: &str) -> Result<Self, Error> {
        self.headers.insert(name, HeaderValue::from_str(value)?);
        Ok(self)
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    host: HeaderValue,
    timeout: Duration,
}

impl Connection {
    async fn open(server: &dyn Server) -> Result<Self, Error> {
        Self::connect(server.addr(), server.request_timeout()).await
    }

    /// A new connection to the same server.
    async fn reopen(&self) -> Result<Self, Error> {
        Self::connect(self.addr, self.timeout).await
    }

    async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, Error> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            timeout,
        })
    }

    async fn send(&mut self, req: &Req) -> Result<Answer, Error> {
        let mut request = Request::new(Full::new(req.body.clone()));
        *request.method_mut() = req.method.clone();
        *request.uri_mut() = req.path.parse()?;
        *request.headers_mut() = req.headers.clone();
        request
            .headers_mut()
            .insert(header::HOST, self.host.clone());
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Error>(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| "a request timed out")?
    }
}

/// The value of the JSON string member `name` in a compact serde_json answer.
fn json_str<'a>(body: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(body).ok()?;
    let marker = format!("\"{name}\":\"");
    let start = text.find(&marker)? + marker.len();
    let end = text[start..].find('"')? + start;
    Some(&text[start..end])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The code in a redirect's query.
fn code_of(location: &str) -> Option<&str> {
    let query = location.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix("code="))
}

fn register_request() -> Req {
    let body = serde_json::json!({"client_name": "bench", "redirect_uris": [REDIRECT]});
    Req::post("/oauth/register", "application/json", body.to_string())
}

// ---------------------------------------------------------------------------------------------
// The phases.

/// The requests the phases send, the same to both servers. Only refresh tokens change (each
/// connection carries its own, rotated on every refresh), and they are kept per server.
struct Fixture {
    metadata: Req,
    register: Req,
    authorize: Req,
    client_id: String,
    introspector_basic: String,
    /// One access token per connection, for introspection.
    access_tokens: Vec<String>,
}

impl Fixture {
    fn new(client_id: String, introspector_basic: String) -> Result<Self, Error> {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "bench-state")
            .finish();
        Ok(Self {
            metadata: Req::get("/.well-known/oauth-authorization-server".into()),
            register: register_request(),
            authorize: Req::get(format!("/oauth/authorize?{query}"))
                .header(HeaderName::from_static(USER_HEADER), USER)?,
            client_id,
            introspector_basic,
            access_tokens: Vec::new(),
        })
    }

    fn refresh_request(&self, token: &str) -> Req {
        Req::form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &self.client_id),
                ("refresh_token", token),
            ],
        )
    }

    fn introspect_request(&self, token: &str) -> Result<Req, Error> {
        Req::form("/oauth/introspect", &[("token", token)])
            .header(header::AUTHORIZATION, &self.introspector_basic)
    }

    fn code_request(&self, code: &str) -> Req {
        Req::form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", &self.client_id),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
    }

    /// One authorization-code flow: the redirect with the code, and the token answer.
    async fn flow(&self, c: &mut Connection) -> Result<(Answer, Answer), Error> {
        let redirect = c.send(&self.authorize).await?;
        expect(&redirect, StatusCode::FOUND, "authorize")?;
        let location = redirect
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or("authorize answered without a Location")?;
        let code = code_of(location).ok_or("no code in the redirect")?;
        let token = c.send(&self.code_request(code)).await?;
        expect(&token, StatusCode::OK, "the code exchange")?;
        Ok((redirect, token))
    }

    /// One operation of `phase` on connection `i`, whose refresh token is `refresh`.
    async fn operate(
        &self,
        phase: Phase,
        c: &mut Connection,
        refresh: &mut String,
        i: usize,
    ) -> Result<(), Error> {
        match phase {
            Phase::Metadata => {
                let a = c.send(&self.metadata).await?;
                expect(&a, StatusCode::OK, "metadata")
            }
            Phase::Register => {
                let a = c.send(&self.register).await?;
                expect(&a, StatusCode::CREATED, "registration")?;
                json_str(&a.body, "client_id").ok_or("no client_id")?;
                Ok(())
            }
            Phase::Flow => {
                let (_, token) = self.flow(c).await?;
                json_str(&token.body, "refresh_token").ok_or("no refresh_token")?;
                Ok(())
            }
            Phase::Refresh => {
                let a = c.send(&self.refresh_request(refresh)).await?;
                expect(&a, StatusCode::OK, "a refresh")?;
                *refresh = json_str(&a.body, "refresh_token")
                    .ok_or("no refresh_token")?
                    .to_string();
                Ok(())
            }
            Phase::Introspect => {
                let token = &self.access_tokens[i % self.access_tokens.len().max(1)];
                let a = c.send(&self.introspect_request(token)?).await?;
                expect(&a, StatusCode::OK, "introspection")?;
                if contains(&a.body, b"\"active\":true") {
                    Ok(())
                } else {
                    Err("introspection says inactive".into())
                }
            }
        }
    }
}

/// How long, or how much, a phase runs.
#[derive(Clone, Copy)]
enum Plan {
    /// Unmeasured for `warmup`, then measured for `measure`.
    Timed { warmup: Duration, measure: Duration },
    /// `warmup` operations, then `measure` more, spread over the connections.
    Counted { warmup: usize, measure: usize },
}

/// One measurement of one phase on one server.
#[derive(Debug, Clone)]
struct Sample {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: f64,
    errors: u64,
}

impl Sample {
    /// The figures of a server that was not measured.
    fn none() -> Self {
        Self {
            rate: f64::NAN,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            cpu_us: f64::NAN,
            errors: 0,
        }
    }
}

/// What one connection measured.
struct Measured {
    latencies_us: Vec<u32>,
    errors: u64,
    refresh: String,
}

/// Runs `phase` on `server` over one connection per token in `tokens`, closed loop; the
/// tokens come back rotated.
async fn run_phase(
    phase: Phase,
    fixture: &Arc<Fixture>,
    tokens: &mut [String],
    server: &dyn Server,
    plan: Plan,
) -> Result<Sample, Error> {
    let connections = tokens.len();
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(Connection::open(server).await?);
    }
    let begin = Instant::now() + Duration::from_millis(5);
    let (measure_from, measure_until) = match plan {
        Plan::Timed { warmup, measure } => (begin + warmup, Some(begin + warmup + measure)),
        Plan::Counted { .. } => (begin, None),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (mut c, mut refresh)) in opened.into_iter().zip(tokens.iter().cloned()).enumerate() {
        let fixture = fixture.clone();
        let (warm, count) = match plan {
            Plan::Counted { warmup, measure } => (
                share(warmup, connections, i),
                share(measure, connections, i),
            ),
            Plan::Timed { .. } => (0, usize::MAX),
        };
        tasks.spawn(async move {
            tokio::time::sleep_until(begin.into()).await;
            let mut m = Measured {
                latencies_us: Vec::new(),
                errors: 0,
                refresh: String::new(),
            };
            let mut done = 0usize;
            while done < warm.saturating_add(count) {
                let started = Instant::now();
                if measure_until.is_some_and(|until| started >= until) {
                    break;
                }
                let outcome = fixture.operate(phase, &mut c, &mut refresh, i).await;
                let finished = Instant::now();
                // Timed: what completes inside the window counts. Counted: all after warm-up.
                let counts = match measure_until {
                    Some(until) => finished >= measure_from && finished < until,
                    None => done >= warm,
                };
                done += 1;
                match outcome {
                    Ok(()) if counts => {
                        let us = finished.duration_since(started).as_micros();
                        m.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    Ok(()) => {}
                    Err(e) => {
                        m.errors += u64::from(counts);
                        if m.errors <= 3 {
                            eprintln!("bench: {} on connection {i}: {e}", phase.name());
                        }
                        // The connection may be broken: open another. A refresh chain that
                        // failed may have been revoked: start a new sign-in.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if let Ok(fresh) = c.reopen().await {
                            c = fresh;
                        }
                        if phase == Phase::Refresh
                            && let Ok((_, token)) = fixture.flow(&mut c).await
                            && let Some(t) = json_str(&token.body, "refresh_token")
                        {
                            refresh = t.to_string();
                        }
                    }
                }
            }
            m.refresh = refresh;
            (i, m)
        });
    }
    // The server's CPU time over the measured window (timed), or the whole run (counted).
    let cpu_before = server.cpu_seconds();
    let window = async {
        let until = measure_until?;
        tokio::time::sleep_until(measure_from.into()).await;
        let at_start = server.cpu_seconds();
        tokio::time::sleep_until(until.into()).await;
        Some(server.cpu_seconds() - at_start)
    };
    let (cpu, finished) = tokio::join!(window, async {
        let mut all = Vec::with_capacity(connections);
        while let Some(joined) = tasks.join_next().await {
            all.push(joined);
        }
        all
    });
    let cpu = cpu.unwrap_or_else(|| server.cpu_seconds() - cpu_before);
    let elapsed = match plan {
        Plan::Timed { measure, .. } => measure.as_secs_f64(),
        Plan::Counted { .. } => begin.elapsed().as_secs_f64(),
    };
    let mut latencies = Vec::new();
    let mut errors = 0;
    for joined in finished {
        let (i, m) = joined?;
        latencies.extend_from_slice(&m.latencies_us);
        errors += m.errors;
        tokens[i] = m.refresh;
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies
            .get(index)
            .map_or(f64::NAN, |us| f64::from(*us) / 1000.0)
    };
    let ops = latencies.len();
    Ok(Sample {
        rate: ops as f64 / elapsed,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        cpu_us: if ops > 0 {
            cpu * 1e6 / ops as f64
        } else {
            f64::NAN
        },
        errors,
    })
}

/// Connection `i`'s share of `total` operations.
fn share(total: usize, connections: usize, i: usize) -> usize {
    total / connections + usize::from(i < total % connections)
}
