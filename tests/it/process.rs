//! A running `mcp-authd serve` child process, for the tests that drive the real binary
//! (`cli.rs`, `durability.rs`, `operations.rs`): readiness, SIGTERM, SIGKILL, and a kill on drop so that a
//! failing test never leaves a process behind.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_mcp-authd");

/// How long `serve` may take to answer `/healthz`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long `serve` may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A reqwest client that does not follow redirects. Make a fresh one per process, so no
/// pooled connection to a dead process is reused.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A running `serve` child; killed on drop unless it has already exited.
pub struct Served {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: PathBuf,
}

impl Served {
    /// Spawns `cmd` (a `serve` command listening on `port`), stdout discarded, stderr to `log`
    /// (a file outside the configuration directory).
    pub fn spawn(cmd: &mut Command, port: u16, log: PathBuf) -> Self {
        cmd.stdout(Stdio::null());
        Self::start(cmd, port, log)
    }

    /// As [`Served::spawn`], with stdout kept in the file `stdout` (for tests that read what
    /// the process printed).
    pub fn spawn_with_stdout(cmd: &mut Command, port: u16, log: PathBuf, stdout: &Path) -> Self {
        cmd.stdout(File::create(stdout).unwrap());
        Self::start(cmd, port, log)
    }

    fn start(cmd: &mut Command, port: u16, log: PathBuf) -> Self {
        let child = cmd.stderr(File::create(&log).unwrap()).spawn().unwrap();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An absolute URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Polls `/healthz` until it answers 200; fails if the process exits or time runs out.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "serve exited before becoming ready ({status})\nstderr:\n{}",
                    self.stderr()
                );
            }
            if let Ok(response) = http.get(self.url("/healthz")).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not answer /healthz within {READY_TIMEOUT:?}\nstderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGKILL, then reap.
    pub fn kill_9(&mut self) {
        // `Child::kill` is SIGKILL on Unix; the child is not reaped yet, so the pid is ours.
        let _ = self.child.kill();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit within {STOP_TIMEOUT:?} of SIGTERM\nstderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
