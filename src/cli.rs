//! The command line (SPEC §3): `serve`, `check`, `gen-secret`, `clients add|list|remove`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::admin::{self, AdminCommand, AdminReply};
use crate::app::AppState;
use crate::config::Config;
use crate::secrets::random_token;
use crate::store::file::{StateError, parse_document, read_state};
use crate::store::{Registration, StateDocument, StateStore, Store};

/// Environment variable naming the state file.
pub const STATE_PATH_ENV: &str = "MCP_AUTH_SERVER_PATH";
/// Environment variable holding the state inline (read-only).
pub const STATE_INLINE_ENV: &str = "MCP_AUTH_SERVER_CONFIG";

/// OAuth 2.1 authorization server for remote MCP servers behind an SSO reverse proxy.
#[derive(Debug, Parser)]
#[command(name = "mcp-authd", version, about)]
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
    },
    /// Validate the configuration and state, print a summary, and exit.
    Check {
        /// The configuration file.
        #[command(flatten)]
        config: ConfigPath,
    },
    /// Print a fresh random secret (32 bytes, base64url) for `jwtSecret`.
    GenSecret,
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
    },
    /// Revoke every refresh token of a user (offboarding). Access tokens already issued stay
    /// valid until they expire (`accessTokenTtlSeconds`) unless MCP servers introspect.
    Revoke {
        /// The user, as the proxy names them (`X-Forwarded-User`).
        #[arg(long, allow_hyphen_values = true)]
        user: String,
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
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
    },
    /// List registered clients.
    List,
    /// Remove a client, its consents and its refresh tokens.
    Remove {
        /// The client to remove. Generated ids are base64url, so one in 64 starts with `-`;
        /// accept that as a value rather than as an unknown flag.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

/// Where the state lives.
enum StateSource {
    File(PathBuf),
    Inline(String),
}

fn state_source(config_path: &Path) -> StateSource {
    if let Ok(inline) = std::env::var(STATE_INLINE_ENV) {
        return StateSource::Inline(inline);
    }
    match std::env::var_os(STATE_PATH_ENV) {
        Some(path) => StateSource::File(PathBuf::from(path)),
        None => StateSource::File(Config::default_state_path(config_path)),
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
        } => serve(&config.path, listen, insecure),
        Command::Check { config } => check(&config.path),
        Command::GenSecret => {
            println!("{}", random_token(32));
            ExitCode::SUCCESS
        }
        Command::Clients { config, command } => clients(&config.path, command),
        Command::Tokens { config, command } => tokens(&config.path, command),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn serve(config_path: &Path, listen: SocketAddr, insecure: bool) -> ExitCode {
    init_logging();
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return fail(e.0),
    };
    if !listen.ip().is_loopback() && !insecure {
        return fail([format!(
            "refusing to listen on {listen}: not a loopback address (put mcp-authd behind its reverse proxy on loopback, or pass --insecure)"
        )]);
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail([format!("cannot start the async runtime: {e}")]),
    };
    #[cfg(unix)]
    runtime.block_on(survive_file_size_limit());
    let mut state_file = None;
    let store: Arc<dyn Store> = match state_source(config_path) {
        StateSource::File(path) => match StateStore::open(&path) {
            Ok(store) => {
                tracing::info!(state_path = %path.display(), "state loaded");
                state_file = Some(path);
                Arc::new(store)
            }
            Err(e) => return fail([e.to_string()]),
        },
        StateSource::Inline(text) => match parse_document(&text, &inline_origin()) {
            Ok(doc) => {
                tracing::warn!(
                    "state comes from {STATE_INLINE_ENV} and is never written: registrations, consents and refresh tokens made now are lost on restart"
                );
                Arc::new(StateStore::in_memory(doc))
            }
            Err(e) => return fail([e.to_string()]),
        },
    };
    let issuer = config.issuer.clone();
    let state = Arc::new(AppState::new(config, store));
    let result = runtime.block_on(async move {
        let shutdown = shutdown_signal();
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        #[cfg(unix)]
        if let Some(path) = state_file.clone() {
            let (store, clock) = (state.store.clone(), state.clock.clone());
            tokio::spawn(async move {
                if let Err(e) = admin::serve_socket(&path, store, clock).await {
                    tracing::error!("admin socket for {} failed: {e}", path.display());
                }
            });
        }
        tracing::info!("mcp-authd listening on http://{local} (issuer {issuer})");
        let served = crate::http::serve(listener, state, shutdown).await;
        if let Some(path) = &state_file {
            let _ = std::fs::remove_file(admin::socket_path(path));
        }
        served
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fail([format!("cannot serve on {listen}: {e}")]),
    }
}

/// Catches SIGXFSZ, whose default action kills the process when a write passes the file size
/// limit (`ulimit -f`). Caught, the write fails with EFBIG instead, which the store handles like
/// a full disk: the request gets a 503 and nothing unpersisted is handed out. Tokio keeps a
/// signal's handler installed for the life of the process, so the stream can be dropped.
#[cfg(unix)]
async fn survive_file_size_limit() {
    let xfsz = tokio::signal::unix::SignalKind::from_raw(libc::SIGXFSZ);
    if let Err(e) = tokio::signal::unix::signal(xfsz) {
        tracing::warn!("cannot catch SIGXFSZ ({e}): a file size limit would stop the server");
    }
}

/// A future that completes on Ctrl-C or SIGTERM. The handlers are installed now, not when the
/// future is first polled: a SIGTERM that arrives as soon as the server answers must already
/// drain it rather than meet the default action (exit without flushing). Needs the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let listeners = {
        use tokio::signal::unix::{SignalKind, signal};
        [SignalKind::interrupt(), SignalKind::terminate()].map(|kind| {
            signal(kind)
                .map_err(|e| tracing::warn!("cannot listen for signal {kind:?}: {e}"))
                .ok()
        })
    };
    async move {
        #[cfg(unix)]
        {
            let [interrupt, terminate] = listeners;
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

fn load_state_read_only(config_path: &Path) -> Result<(String, StateDocument), StateError> {
    match state_source(config_path) {
        StateSource::File(path) => Ok((path.display().to_string(), read_state(&path)?.0)),
        StateSource::Inline(text) => Ok((
            format!("{STATE_INLINE_ENV} (inline, read-only)"),
            parse_document(&text, &inline_origin())?,
        )),
    }
}

fn check(config_path: &Path) -> ExitCode {
    let mut errors = Vec::new();
    let config = Config::load(config_path)
        .map_err(|e| errors.extend(e.0))
        .ok();
    let state = load_state_read_only(config_path)
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    if !errors.is_empty() {
        return fail(errors);
    }
    let (Some(config), Some((origin, doc))) = (config, state) else {
        return ExitCode::FAILURE;
    };
    let provisioned = doc
        .clients
        .values()
        .filter(|c| c.registration == Registration::Provisioned)
        .count();
    println!("config:            {} (ok)", config_path.display());
    println!("issuer:            {}", config.issuer);
    println!("resource:          {}", config.resource);
    println!("trusted sources:   {}", config.trusted_sources_display());
    println!("redirect patterns: {}", config.redirect_allowlist.len());
    println!("consent:           {:?}", config.consent);
    println!(
        "token lifetimes:   access {}s, refresh {}s, code {}s",
        config.access_token_ttl, config.refresh_token_ttl, config.code_ttl
    );
    println!("state:             {origin} (ok)");
    println!(
        "clients:           {} ({provisioned} pre-provisioned)",
        doc.clients.len()
    );
    println!("refresh families:  {}", doc.refresh_tokens.len());
    let key_ids = config.verifier().key_ids();
    if let Some((current, previous)) = key_ids.split_first() {
        println!("signing key id:    {current}");
        if !previous.is_empty() {
            println!(
                "previous key ids:  {} (verification only)",
                previous.join(", ")
            );
        }
    }
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    ExitCode::SUCCESS
}

fn clients(config_path: &Path, command: ClientsCommand) -> ExitCode {
    if let ClientsCommand::List = command {
        return match load_state_read_only(config_path) {
            Ok((_, doc)) => {
                for c in doc.clients.values() {
                    let kind = match c.registration {
                        Registration::Dynamic => "dynamic",
                        Registration::Provisioned => "provisioned",
                        Registration::MetadataDocument => "document",
                    };
                    println!(
                        "{}\t{kind}\t{}\t{}\t{}",
                        c.client_id,
                        c.token_endpoint_auth_method.as_str(),
                        c.client_name,
                        c.redirect_uris.join(" ")
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail([e.to_string()]),
        };
    }
    let command = match command {
        ClientsCommand::Add {
            name,
            redirect_uris,
        } => AdminCommand::AddClient {
            name,
            redirect_uris,
        },
        ClientsCommand::Remove { client_id } => AdminCommand::RemoveClient { client_id },
        ClientsCommand::List => return ExitCode::SUCCESS,
    };
    admin(config_path, command)
}

fn tokens(config_path: &Path, command: TokensCommand) -> ExitCode {
    match command {
        TokensCommand::Revoke { user } => {
            admin(config_path, AdminCommand::RevokeUser { sub: user })
        }
        TokensCommand::List { user } => match load_state_read_only(config_path) {
            Ok((_, doc)) => {
                let mut families: Vec<_> = doc
                    .refresh_tokens
                    .values()
                    .filter(|f| user.as_deref().is_none_or(|u| f.grant.sub == u))
                    .collect();
                families.sort_by(|a, b| {
                    (&a.grant.sub, a.created_at).cmp(&(&b.grant.sub, b.created_at))
                });
                println!("user\tclient_id\tclient_name\tsigned_in\texpires\tscope");
                for f in families {
                    let name = doc
                        .clients
                        .get(&f.grant.client_id)
                        .map_or("(removed)", |c| c.client_name.as_str());
                    println!(
                        "{}\t{}\t{name}\t{}\t{}\t{}",
                        f.grant.sub,
                        f.grant.client_id,
                        utc(f.created_at),
                        utc(f.expires_at),
                        f.grant.scope
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail([e.to_string()]),
        },
    }
}

/// Runs an admin command: directly on the state when no server holds it, otherwise through
/// the running server's admin socket.
fn admin(config_path: &Path, command: AdminCommand) -> ExitCode {
    let path = match state_source(config_path) {
        StateSource::File(path) => path,
        StateSource::Inline(_) => {
            return fail([format!(
                "the state comes from {STATE_INLINE_ENV} and is read-only; edit that JSON instead"
            )]);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail([format!("cannot start the async runtime: {e}")]),
    };
    let reply = match StateStore::open(&path) {
        Ok(store) => {
            let now = crate::clock::Clock::now(&crate::clock::SystemClock);
            runtime.block_on(admin::execute(&store, command, now))
        }
        #[cfg(unix)]
        Err(StateError::Locked { .. }) => match runtime.block_on(admin::send(&path, &command)) {
            Ok(reply) => reply,
            Err(e) => {
                return fail([format!(
                    "a running mcp-authd holds {} but its admin socket {} does not answer: {e}",
                    path.display(),
                    admin::socket_path(&path).display()
                )]);
            }
        },
        Err(e) => return fail([e.to_string()]),
    };
    match reply {
        AdminReply::ClientAdded {
            client_id,
            client_secret,
        } => {
            println!("client_id: {client_id}");
            println!("client_secret: {client_secret}");
            eprintln!("Store the secret now: only its hash is kept, it cannot be shown again.");
        }
        AdminReply::ClientRemoved => println!("removed"),
        AdminReply::UserRevoked { families } => println!("revoked {families} sign-in(s)"),
        AdminReply::Failed { message } => return fail([message]),
    }
    ExitCode::SUCCESS
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (civil-from-days, proleptic Gregorian).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
                command: TokensCommand::Revoke { user },
                ..
            } => assert_eq!(user, "-alice"),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
