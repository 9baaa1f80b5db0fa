//! Logs and the audit trail (SPEC §15): text or JSON lines on stderr, filtered by `RUST_LOG`
//! (default `info`), and optionally every `audit` event appended to a file of its own.
//!
//! Audit events are ordinary `tracing` events on target `audit` with a field `event`; the file
//! layer sees every one of them whatever `RUST_LOG` says, so an operator who quiets the logs
//! does not lose the trail.

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable that sets the log format when `--log-format` is not given.
pub const LOG_FORMAT_ENV: &str = "MCP_AUTHD_LOG_FORMAT";

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields at the top level.
    Json,
}

/// Installs the global subscriber. `audit_log`, when given, is opened (created 0600, appended,
/// never through a symbolic link) before anything is logged, so a bad path fails the start.
pub fn init(format: LogFormat, audit_log: Option<&Path>) -> std::io::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let audit = match audit_log {
        None => None,
        Some(path) => Some(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(std::sync::Mutex::new(open_audit_file(path)?))
                .with_filter(filter_fn(|meta| meta.target() == "audit")),
        ),
    };
    // A second init (tests that run `serve` in-process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(audit)
        .try_init();
    Ok(())
}

/// Opens the audit file for appending: created with mode 0600, refused when it is a symbolic
/// link (a planted link must not make the server append to a file of the attacker's choice).
fn open_audit_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot open the audit log {}: {e}", path.display()),
        )
    })
}
