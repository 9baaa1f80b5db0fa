//! The command line (SPEC §3, §15): `serve`, `check`, `gen-secret`, `gen-key`, `health`,
//! `doctor`, and the admin commands `clients`, `tokens`, `consents` and `state`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

mod admin;
mod inspect;
mod keys;
mod serve;

use admin::*;
use inspect::*;
use keys::*;
use serve::*;

use crate::admin::{AdminCommand, AdminReply};
use crate::app::AppState;
use crate::config::Config;
use crate::secrets::random_token;
use crate::signing::{PrivateKey, SigningAlgorithm};
use crate::store::file::{StateError, parse_document, read_state};
use crate::store::{ImportError, Registration, StateDocument, StateStore, StateTransfer, Store};

/// Environment variable naming the state file.
pub const STATE_PATH_ENV: &str = "MCP_AUTH_SERVER_PATH";
/// Environment variable holding the state inline (read-only).
pub const STATE_INLINE_ENV: &str = "MCP_AUTH_SERVER_CONFIG";

/// OAuth 2.1 authorization server for remote MCP servers behind an SSO reverse proxy.
#[derive(Debug, Parser)]
#[command(name = "mcp-authd", version = crate::VERSION, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the authorization server.
    Serve {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigPath,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Allow listening on a non-loopback address.
        #[arg(long)]
        insecure: bool,
        /// Log lines as text or as one JSON object per line.
        #[arg(long, value_enum, env = crate::logging::LOG_FORMAT_ENV, default_value = "text")]
        log_format: crate::logging::LogFormat,
        /// Also append every audit event to this file as JSON lines (created 0600).
        #[arg(long, value_name = "FILE")]
        audit_log: Option<PathBuf>,
        /// Serve Prometheus metrics at GET /metrics on this address (loopback unless
        /// --insecure).
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
        /// After SIGTERM or Ctrl-C, how long requests in flight may take to finish before the
        /// server exits anyway (idle and half-sent connections are closed at once).
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        shutdown_timeout: u64,
    },
    /// Validate the configuration and state, print a summary, and exit.
    Check {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigPath,
    },
    /// Print a fresh random secret (32 bytes, base64url) for `jwtSecret`.
    GenSecret,
    /// Check a deployment from outside, as an MCP client would: one PASS/WARN/FAIL line per
    /// check with the fix; exit 1 if any check fails.
    Doctor {
        /// The MCP server URL clients are given, e.g. https://mcp.example.com/mcp.
        mcp_url: String,
    },
    /// Exit 0 when a running server answers 200 on /readyz (for container health checks).
    Health {
        /// The server to ask (its listen address), or a full /readyz or /livez URL.
        #[arg(long, default_value = crate::health_check::DEFAULT_URL)]
        url: String,
    },
    /// Write a new signing key pair for `oauthAs.signing` and print its key id.
    GenKey {
        /// `EdDSA` (Ed25519) or `ES256` (P-256).
        #[arg(long, value_parser = parse_key_algorithm)]
        algorithm: SigningAlgorithm,
        /// The private key file to create (PKCS#8 PEM, mode 0600); never overwritten.
        #[arg(long)]
        output: PathBuf,
        /// The public key file to create (SPKI PEM, for `previousPublicKeyFiles` and resource
        /// servers); default: the output path with `.pub` appended.
        #[arg(long)]
        public_output: Option<PathBuf>,
    },
    /// Manage pre-provisioned clients.
    Clients {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigPath,
        /// The clients subcommand.
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Inspect and revoke refresh tokens (sign-ins).
    Tokens {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigPath,
        /// The tokens subcommand.
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Inspect and withdraw users' consents to clients.
    Consents {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigPath,
        /// The consents subcommand.
        #[command(subcommand)]
        command: ConsentsCommand,
    },
    /// Export the whole state as one JSON document, or import one into an empty state
    /// (backups, moving to another host or backend).
    State {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigPath,
        /// The state subcommand.
        #[command(subcommand)]
        command: StateCommand,
    },
}

/// `--config`: the `servers.json` to read (`serverAuth.oauthAs`); the state file lives beside
/// it unless `MCP_AUTH_SERVER_PATH` says otherwise.
#[derive(Debug, clap::Args)]
pub struct ConfigPath {
    /// The configuration file.
    #[arg(
        long = "config",
        env = "MCP_CONFIG",
        default_value = "./servers.json",
        global = true
    )]
    pub path: PathBuf,
}

/// `mcp-authd tokens …`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List live sign-ins (refresh-token families).
    List {
        /// Only this user's.
        #[arg(long, allow_hyphen_values = true)]
        user: Option<String>,
        /// Print a JSON array (see README, "Admin commands") instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke refresh tokens: every one of a user (offboarding), or every one of a client.
    /// Access tokens already issued stay valid until they expire (`accessTokenTtlSeconds`)
    /// unless MCP servers introspect.
    #[command(group(clap::ArgGroup::new("whose").required(true).args(["user", "client"])))]
    Revoke {
        /// The user, as the proxy names them (`X-Forwarded-User`).
        #[arg(long, allow_hyphen_values = true)]
        user: Option<String>,
        /// The client_id, as `clients list` shows it: ends every user's sign-ins with it; the
        /// client stays registered.
        #[arg(long = "client", allow_hyphen_values = true)]
        client: Option<String>,
    },
}

/// `mcp-authd consents …`.
#[derive(Debug, Subcommand)]
pub enum ConsentsCommand {
    /// List the consents users gave to dynamically registered clients.
    List {
        /// Only this user's.
        #[arg(long, allow_hyphen_values = true)]
        user: Option<String>,
        /// Print a JSON array (see README, "Admin commands") instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a user's consent (to one client, or to every client) and revoke the user's
    /// refresh tokens for the same clients: the user's sign-ins there end, and the next
    /// authorization shows the consent page again.
    Revoke {
        /// The user, as the proxy names them (`X-Forwarded-User`).
        #[arg(long, allow_hyphen_values = true)]
        user: String,
        /// Only the consent to this client_id.
        #[arg(long = "client", allow_hyphen_values = true)]
        client: Option<String>,
    },
}

/// `mcp-authd state …`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Write the whole state as one JSON document in the state file format (it works as
    /// auth_server.json and as MCP_AUTH_SERVER_CONFIG). It holds secret and token hashes:
    /// keep it private. While a server runs, its live state is exported.
    Export {
        /// Write to this file (created with mode 0600; an existing file is never replaced)
        /// instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Load an exported document into an empty state. Refuses a state that holds anything,
    /// and a state a running server holds.
    Import {
        /// The document, as `state export` wrote it.
        file: PathBuf,
    },
}

/// `mcp-authd clients …`.
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Add a confidential client; prints its client_id and client_secret once.
    Add {
        /// Display name.
        #[arg(long)]
        name: String,
        /// A redirect URI (repeat for several).
        #[arg(long = "redirect-uri", required_unless_present = "introspection_only")]
        redirect_uris: Vec<String>,
        /// A client that may only call introspection and revocation (an MCP server checking
        /// tokens): no redirect URI, and the token endpoint gives it nothing.
        #[arg(long, conflicts_with = "redirect_uris")]
        introspection_only: bool,
    },
    /// List registered clients.
    List {
        /// Print a JSON array (see README, "Admin commands") instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a client, its consents and its refresh tokens.
    Remove {
        /// The client_id to remove, as `clients list` shows it.
        // Generated ids are base64url, so one in 64 starts with `-`: take that as a value,
        // not as an unknown flag.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Give a confidential client a new secret, printed once; the old one stops working at
    /// once. Its users' sign-ins are kept (the client authenticates its refreshes with the
    /// new secret); `tokens revoke --client` ends them too.
    RotateSecret {
        /// The client_id, as `clients list` shows it.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

/// Where the state lives.
#[derive(Debug, PartialEq, Eq)]
enum StateSource {
    File(PathBuf),
    Inline(String),
}

/// The state of the configuration at `config_path`, for the commands that do not load the
/// whole configuration (they run without its secrets).
fn state_source(config_path: &Path) -> StateSource {
    state_source_for(config_path, &Config::peek_store(config_path))
}

/// The state: `MCP_AUTH_SERVER_CONFIG` (inline), else `MCP_AUTH_SERVER_PATH`, else
/// `oauthAs.store.path`, else `auth_server.json` beside the configuration.
fn state_source_for(config_path: &Path, store: &crate::config::StoreSettings) -> StateSource {
    if let Ok(inline) = std::env::var(STATE_INLINE_ENV) {
        return StateSource::Inline(inline);
    }
    match (std::env::var_os(STATE_PATH_ENV), &store.path) {
        (Some(path), _) => StateSource::File(PathBuf::from(path)),
        (None, Some(path)) => StateSource::File(path.clone()),
        (None, None) => StateSource::File(Config::default_state_path(config_path)),
    }
}

fn inline_origin() -> PathBuf {
    PathBuf::from(STATE_INLINE_ENV)
}

fn fail(lines: impl IntoIterator<Item = String>) -> ExitCode {
    for line in lines {
        eprintln!("error: {line}");
    }
    ExitCode::FAILURE
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve {
            config,
            listen,
            insecure,
            log_format,
            audit_log,
            metrics_listen,
            shutdown_timeout,
        } => {
            if let Err(e) = crate::logging::init(log_format, audit_log.as_deref()) {
                return fail([e.to_string()]);
            }
            serve(
                &config.path,
                listen,
                metrics_listen,
                insecure,
                std::time::Duration::from_secs(shutdown_timeout),
            )
        }
        Command::Check { config } => check(&config.path),
        Command::GenSecret => {
            println!("{}", random_token(32));
            ExitCode::SUCCESS
        }
        Command::Health { url } => health(&url),
        Command::Doctor { mcp_url } => doctor(&mcp_url),
        Command::GenKey {
            algorithm,
            output,
            public_output,
        } => gen_key(algorithm, &output, public_output),
        Command::Clients { config, command } => clients(&config.path, command),
        Command::Tokens { config, command } => tokens(&config.path, command),
        Command::Consents { config, command } => consents(&config.path, command),
        Command::State { config, command } => state(&config.path, command),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, ClientsCommand, Command, TokensCommand, utc};

    fn parse(args: &[&str]) -> Command {
        match Cli::try_parse_from(std::iter::once("mcp-authd").chain(args.iter().copied())) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{args:?} did not parse: {e}"),
        }
    }

    #[test]
    fn ids_and_users_starting_with_a_hyphen_are_values_not_flags() {
        for args in [
            &["clients", "remove", "-Dx3_abc"][..],
            &["clients", "remove", "--config", "s.json", "-Dx3_abc"],
            &["clients", "remove", "-Dx3_abc", "--config", "s.json"],
        ] {
            match parse(args) {
                Command::Clients {
                    command: ClientsCommand::Remove { client_id },
                    ..
                } => assert_eq!(client_id, "-Dx3_abc", "{args:?}"),
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        match parse(&["tokens", "revoke", "--user", "-alice"]) {
            Command::Tokens {
                command: TokensCommand::Revoke { user, client: None },
                ..
            } => assert_eq!(user.as_deref(), Some("-alice")),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["tokens", "revoke", "--client", "-Dx3_abc"]) {
            Command::Tokens {
                command: TokensCommand::Revoke { user: None, client },
                ..
            } => assert_eq!(client.as_deref(), Some("-Dx3_abc")),
            other => panic!("parsed as {other:?}"),
        }
        match parse(&["clients", "rotate-secret", "-Dx3_abc"]) {
            Command::Clients {
                command: ClientsCommand::RotateSecret { client_id },
                ..
            } => assert_eq!(client_id, "-Dx3_abc"),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn refused(args: &[&str]) -> String {
        match Cli::try_parse_from(std::iter::once("mcp-authd").chain(args.iter().copied())) {
            Ok(cli) => panic!("{args:?} parsed as {:?}", cli.command),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn revocation_and_client_kinds_take_exactly_what_they_need() {
        // One target for `tokens revoke`, never none or both.
        refused(&["tokens", "revoke"]);
        refused(&["tokens", "revoke", "--user", "a", "--client", "c"]);
        // A redirect URI unless the client only introspects, and then none.
        refused(&["clients", "add", "--name", "x"]);
        refused(&[
            "clients",
            "add",
            "--name",
            "x",
            "--introspection-only",
            "--redirect-uri",
            "https://a.example/cb",
        ]);
        match parse(&[
            "clients",
            "add",
            "--name",
            "MCP server",
            "--introspection-only",
        ]) {
            Command::Clients {
                command:
                    ClientsCommand::Add {
                        redirect_uris,
                        introspection_only: true,
                        ..
                    },
                ..
            } => assert!(redirect_uris.is_empty()),
            other => panic!("parsed as {other:?}"),
        }
        // `consents revoke` always names the user.
        refused(&["consents", "revoke", "--client", "c"]);
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
