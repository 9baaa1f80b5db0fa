//! The command line (SPEC §3, §15): `serve`, `check`, `gen-secret`, `gen-key`, `health`,
//! `doctor`, and the admin commands `clients`, `tokens`, `consents` and `state`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::admin::{self, AdminCommand, AdminReply};
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

/// `mcp-authd doctor`: the report on stdout, exit 1 when any check failed.
fn doctor(mcp_url: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail([format!("cannot start the runtime: {e}")]),
    };
    let http = match crate::doctor::http_client() {
        Ok(http) => http,
        Err(e) => return fail([format!("cannot build the HTTP client: {e}")]),
    };
    let findings = runtime.block_on(crate::doctor::diagnose(&http, mcp_url));
    for finding in &findings {
        println!("{finding}");
    }
    if findings
        .iter()
        .any(|f| f.verdict == crate::doctor::Verdict::Fail)
    {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `mcp-authd health`: one line, exit 0 only on a 200.
fn health(url: &str) -> ExitCode {
    let target = match crate::health_check::readiness_url(url) {
        Ok(target) => target,
        Err(e) => return fail([e]),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail([format!("cannot start the runtime: {e}")]),
    };
    match runtime.block_on(crate::health_check::probe(&target)) {
        Ok((200, body)) => {
            println!("ready: {target} answered 200 {body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => fail([format!("not ready: {target} answered {status} {body}")]),
        Err(e) => fail([format!("not ready: {e}")]),
    }
}

fn serve(
    config_path: &Path,
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    insecure: bool,
    shutdown_timeout: std::time::Duration,
) -> ExitCode {
    let (config, section) = match Config::load_with_section(config_path) {
        Ok(loaded) => loaded,
        Err(e) => return fail(e.0),
    };
    if !listen.ip().is_loopback() && !insecure {
        return fail([format!(
            "refusing to listen on {listen}: not a loopback address (put mcp-authd behind its reverse proxy on loopback, or pass --insecure)"
        )]);
    }
    if let Some(metrics) = metrics_listen.filter(|m| !m.ip().is_loopback() && !insecure) {
        return fail([format!(
            "refusing to serve metrics on {metrics}: not a loopback address (scrape it on loopback, or pass --insecure)"
        )]);
    }
    tracing::info!(
        version = crate::VERSION,
        store = "file",
        "mcp-authd starting"
    );
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    #[cfg(unix)]
    warn_if_few_file_descriptors(config.max_connections);
    let signer = config.signer();
    tracing::info!(algorithm = %signer.algorithm(), kid = %signer.key_id(), "signing access tokens");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail([format!("cannot start the async runtime: {e}")]),
    };
    #[cfg(unix)]
    runtime.block_on(survive_file_size_limit());
    #[cfg(unix)]
    let hangups = runtime.block_on(catch_hangups());
    let mut state_file = None;
    let store: Arc<dyn Store> = match state_source_for(config_path, &config.store) {
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
    let issuer = config
        .issuers()
        .map(|i| i.url.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let timeouts = crate::http::conn::Timeouts {
        shutdown: shutdown_timeout,
        ..Default::default()
    }
    .with_test_overrides();
    let live = crate::http::LiveApp::new(Arc::new(AppState::new(config, store)));
    let state = live.state();
    let config_file = config_path.to_path_buf();
    let reloader = crate::reload::Reloader::new(
        config_path.to_path_buf(),
        live.clone(),
        section,
        Box::new(
            move |c: &Config| match state_source_for(&config_file, &c.store) {
                StateSource::File(path) => path.display().to_string(),
                StateSource::Inline(_) => format!("{STATE_INLINE_ENV} (inline)"),
            },
        ),
    );
    let result = runtime.block_on(async move {
        #[cfg(unix)]
        if let Some(hangups) = hangups {
            tokio::spawn(reload_on_hangup(hangups, reloader));
        }
        #[cfg(not(unix))]
        drop(reloader);
        let shutdown = shutdown_signal();
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        if let Some(address) = metrics_listen {
            let metrics = tokio::net::TcpListener::bind(address).await?;
            tracing::info!("metrics at http://{}/metrics", metrics.local_addr()?);
            let app = crate::http::metrics::router(state.metrics.clone(), state.store.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(metrics, app).await {
                    tracing::error!("the metrics listener failed: {e}");
                }
            });
        }
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
        drop(state);
        let served = crate::http::serve_live(listener, live, shutdown, timeouts).await;
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

/// Catches SIGHUP, whose default action ends the process, before the server answers: a
/// hangup that arrives before the reload task runs is kept and handled by it. `None` (logged)
/// when the handler cannot be installed.
#[cfg(unix)]
async fn catch_hangups() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .map_err(|e| tracing::warn!("cannot catch SIGHUP ({e}): a hangup would stop the server"))
        .ok()
}

/// Reloads the configuration on every SIGHUP, one reload at a time: hangups that arrive
/// while one runs are folded into one more (see [`crate::reload`]).
#[cfg(unix)]
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reloader: crate::reload::Reloader,
) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        // The outcome is logged by the reloader; the server goes on either way.
        let _ = reloader.reload().await;
    }
}

/// File descriptors kept beside the connections: the listeners, the state files, the runtime.
#[cfg(unix)]
const FD_RESERVE: u64 = 64;

/// Warns when the open-file limit cannot hold `maxConnections` connections: past it, `accept`
/// fails and the server can only make room by closing idle connections.
#[cfg(unix)]
fn warn_if_few_file_descriptors(max_connections: usize) {
    use rustix::process::{Resource, getrlimit};
    let needed = (max_connections as u64).saturating_add(FD_RESERVE);
    if let Some(limit) = getrlimit(Resource::Nofile).current
        && limit < needed
    {
        tracing::warn!(
            "the open-file limit ({limit}) is below maxConnections ({max_connections}) + {FD_RESERVE}: raise it (ulimit -n, systemd LimitNOFILE=) or lower oauthAs.maxConnections; at the limit, idle connections are closed to make room"
        );
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
    // The server must be able to write there (SPEC §17); reading alone passes above.
    if state.is_some()
        && let StateSource::File(path) = state_source(config_path)
        && let Err(e) = crate::store::state_files::check_dir_writable(&path)
    {
        errors.push(e.to_string());
    }
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
    // Every issuer with its resource (SPEC §11): the primary first, then additionalIssuers.
    for (i, issuer) in config.issuers().enumerate() {
        let label = if i == 0 {
            "issuer:"
        } else {
            "additional issuer:"
        };
        println!("{label:<19}{} (host {})", issuer.url, issuer.authority());
        println!("{:<19}{}", "  resource:", issuer.resource);
    }
    println!("trusted sources:   {}", config.trusted_sources_display());
    println!("redirect patterns: {}", config.redirect_allowlist.len());
    println!("consent:           {:?}", config.consent);
    println!("max connections:   {}", config.max_connections);
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
    match &config.signing.private_key {
        Some(_) => println!(
            "signing:           {} (public keys at {})",
            config.signing.algorithm,
            config.endpoint(crate::http::paths::JWKS)
        ),
        None => println!("signing:           HS256 (jwtSecret)"),
    }
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

fn parse_key_algorithm(name: &str) -> Result<SigningAlgorithm, String> {
    match SigningAlgorithm::parse(name) {
        Some(a) if a.is_asymmetric() => Ok(a),
        Some(_) => Err("HS256 uses jwtSecret, not a key pair: run `mcp-authd gen-secret`".into()),
        None => Err(format!("{name:?} is not EdDSA or ES256")),
    }
}

/// `gen-key`: both files are created exclusively (an existing file is never replaced), the
/// private one with mode 0600 from its first byte.
fn gen_key(algorithm: SigningAlgorithm, output: &Path, public_output: Option<PathBuf>) -> ExitCode {
    let public_path = public_output.unwrap_or_else(|| {
        let mut name = output.as_os_str().to_owned();
        name.push(".pub");
        PathBuf::from(name)
    });
    if public_path == output {
        return fail(["--public-output must differ from --output".to_string()]);
    }
    let encoded = PrivateKey::generate(algorithm).and_then(|key| {
        let private = key.to_pem()?;
        let public = key.public_key().to_pem()?;
        Ok((key.public_key().kid().to_string(), private, public))
    });
    let (kid, private_pem, public_pem) = match encoded {
        Ok(parts) => parts,
        Err(e) => return fail([e.to_string()]),
    };
    if let Err(e) = write_new(output, private_pem.as_bytes(), 0o600) {
        return fail([e]);
    }
    if let Err(e) = write_new(&public_path, public_pem.as_bytes(), 0o644) {
        // Leave no half-made pair behind, so that the command can simply be run again.
        let _ = std::fs::remove_file(output);
        return fail([e]);
    }
    println!("kid: {kid}");
    println!("private key: {} (mode 0600)", output.display());
    println!("public key: {}", public_path.display());
    eprintln!(
        "Use it with \"signing\": {{\"algorithm\": \"{algorithm}\", \"privateKeyFile\": \"{}\"}} in serverAuth.oauthAs.",
        output.display()
    );
    ExitCode::SUCCESS
}

/// Creates `path` (refusing an existing one) with `mode`, writes `bytes` and syncs them.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            format!(
                "refusing to overwrite {}: it already exists",
                path.display()
            )
        }
        _ => format!("cannot create {}: {e}", path.display()),
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            // The file is ours (just created): a truncated key must not stay behind.
            let _ = std::fs::remove_file(path);
            format!("cannot write {}: {e}", path.display())
        })
}

fn clients(config_path: &Path, command: ClientsCommand) -> ExitCode {
    let (command, json) = match command {
        ClientsCommand::Add {
            name,
            redirect_uris,
            introspection_only,
        } => (
            AdminCommand::AddClient {
                name,
                redirect_uris,
                introspection_only,
            },
            false,
        ),
        ClientsCommand::List { json } => (AdminCommand::ListClients, json),
        ClientsCommand::Remove { client_id } => (AdminCommand::RemoveClient { client_id }, false),
        ClientsCommand::RotateSecret { client_id } => {
            (AdminCommand::RotateSecret { client_id }, false)
        }
    };
    admin(config_path, command, json)
}

fn tokens(config_path: &Path, command: TokensCommand) -> ExitCode {
    let (command, json) = match command {
        TokensCommand::List { user, json } => (AdminCommand::ListTokens { user }, json),
        TokensCommand::Revoke {
            user: Some(sub), ..
        } => (AdminCommand::RevokeUser { sub }, false),
        TokensCommand::Revoke {
            client: Some(client_id),
            ..
        } => (AdminCommand::RevokeClientTokens { client_id }, false),
        // clap requires one of the two.
        TokensCommand::Revoke { .. } => return fail(["name --user or --client".to_string()]),
    };
    admin(config_path, command, json)
}

fn consents(config_path: &Path, command: ConsentsCommand) -> ExitCode {
    let (command, json) = match command {
        ConsentsCommand::List { user, json } => (AdminCommand::ListConsents { user }, json),
        ConsentsCommand::Revoke { user, client } => (
            AdminCommand::RevokeConsents {
                sub: user,
                client_id: client,
            },
            false,
        ),
    };
    admin(config_path, command, json)
}

fn state(config_path: &Path, command: StateCommand) -> ExitCode {
    match command {
        StateCommand::Export { output } => {
            match run_admin(config_path, AdminCommand::ExportState) {
                Ok(AdminReply::State { document }) => export(&document, output.as_deref()),
                Ok(other) => fail([format!("unexpected answer to an export: {other:?}")]),
                Err(code) => code,
            }
        }
        StateCommand::Import { file } => import(config_path, &file),
    }
}

/// Writes an exported document to `output` (created 0600, never replacing a file) or stdout.
fn export(document: &StateDocument, output: Option<&Path>) -> ExitCode {
    let text = match document.to_export_json() {
        Ok(text) => text,
        Err(e) => return fail([format!("cannot serialise the state: {e}")]),
    };
    match output {
        Some(path) => match write_new(path, text.as_bytes(), 0o600) {
            Ok(()) => {
                eprintln!(
                    "exported {} client(s), {} consent(s) and {} sign-in(s) to {} (mode 0600: it holds secret hashes)",
                    document.clients.len(),
                    document.consent_count(),
                    document.refresh_tokens.len(),
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail([e]),
        },
        None => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail([format!("cannot write the export to standard output: {e}")]),
            }
        }
    }
}

/// `state import FILE`: parsed and checked like a state file, then loaded into the empty state
/// as one change. Never while a server holds the state: the server would not see it.
fn import(config_path: &Path, file: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => return fail([format!("cannot read {}: {e}", file.display())]),
    };
    let document = match parse_document(&text, file) {
        Ok(document) => document,
        Err(StateError::Corrupt { detail, .. }) => {
            return fail([format!(
                "{} is not a state document ({detail}); nothing was imported",
                file.display()
            )]);
        }
        Err(e) => return fail([e.to_string()]),
    };
    let path = match state_source(config_path) {
        StateSource::File(path) => path,
        StateSource::Inline(_) => {
            return fail([format!(
                "the state comes from {STATE_INLINE_ENV} and is read-only; put the document there instead"
            )]);
        }
    };
    init_admin_logging();
    let store = match StateStore::open(&path) {
        Ok(store) => store,
        Err(StateError::Locked { .. }) => {
            return fail([format!(
                "refusing to import into {}: a running mcp-authd holds it; stop the server, import, then start it",
                path.display()
            )]);
        }
        Err(e) => return fail([e.to_string()]),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail([format!("cannot start the async runtime: {e}")]),
    };
    let (clients, consents, families) = (
        document.clients.len(),
        document.consent_count(),
        document.refresh_tokens.len(),
    );
    match runtime.block_on(store.import_state(document)) {
        Ok(()) => {
            tracing::info!(state_path = %path.display(), clients, consents, families, "state imported");
            println!(
                "imported {clients} client(s), {consents} consent(s) and {families} sign-in(s) into {}",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e @ ImportError::NotEmpty { .. }) => fail([format!(
            "refusing to import into {}: {e}; import only into a new, empty state",
            path.display()
        )]),
        Err(e) => fail([format!("cannot import into {}: {e}", path.display())]),
    }
}

/// Sends direct admin commands' audit events (and warnings) to stderr, as `serve` logs them
/// (`MCP_AUTHD_LOG_FORMAT` chooses text or JSON): a change made without a server is in the
/// audit trail too. Through the socket, the server logs them itself.
fn init_admin_logging() {
    let format = std::env::var(crate::logging::LOG_FORMAT_ENV)
        .ok()
        .and_then(|v| <crate::logging::LogFormat as clap::ValueEnum>::from_str(&v, true).ok())
        .unwrap_or_default();
    // Only fails if a subscriber is already installed, which is then used.
    let _ = crate::logging::init(format, None);
}

/// Runs an admin command and prints its reply (`json`: listings as JSON arrays).
fn admin(config_path: &Path, command: AdminCommand, json: bool) -> ExitCode {
    match run_admin(config_path, command) {
        Ok(reply) => print_reply(reply, json),
        Err(code) => code,
    }
}

/// Runs an admin command where the state is: a change directly on the state when no server
/// holds it, otherwise through the running server's admin socket; a read through the socket
/// when a server answers there, otherwise on the files as they are (nothing is written). A
/// failure is printed as one line and returned as the exit code.
fn run_admin(config_path: &Path, command: AdminCommand) -> Result<AdminReply, ExitCode> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err(fail([format!("cannot start the async runtime: {e}")])),
    };
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let reply = match state_source(config_path) {
        StateSource::Inline(text) => {
            if !command.is_read_only() {
                return Err(fail([format!(
                    "the state comes from {STATE_INLINE_ENV} and is read-only; edit that JSON instead"
                )]));
            }
            let doc = parse_document(&text, &inline_origin()).map_err(|e| fail([e.to_string()]))?;
            runtime.block_on(admin::execute(&StateStore::in_memory(doc), command, now))
        }
        StateSource::File(path) if command.is_read_only() => {
            runtime.block_on(read_only(&path, command, now))?
        }
        StateSource::File(path) => {
            init_admin_logging();
            match StateStore::open(&path) {
                // Dropped at the end of this arm: the journal is folded into the state file.
                Ok(store) => runtime.block_on(admin::execute(&store, command, now)),
                #[cfg(unix)]
                Err(StateError::Locked { .. }) => runtime
                    .block_on(admin::send(&path, &command))
                    .map_err(|e| socket_silent(&path, &e))?,
                Err(e) => return Err(fail([e.to_string()])),
            }
        }
    };
    match reply {
        AdminReply::Failed { message } => Err(fail([message])),
        reply => Ok(reply),
    }
}

/// A read-only command on a state file: asked of the server running on it, if one answers
/// on its admin socket (its live state, consistent at one instant); otherwise run on the files
/// as they are, without taking the lock or writing anything.
async fn read_only(path: &Path, command: AdminCommand, now: u64) -> Result<AdminReply, ExitCode> {
    #[cfg(unix)]
    match admin::send(path, &command).await {
        Ok(reply) => return Ok(reply),
        // No socket, or one left by a server that is gone: nobody is serving this state.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) => {}
        Err(e) => return Err(socket_silent(path, &e)),
    }
    let (doc, _) = read_state(path).map_err(|e| fail([e.to_string()]))?;
    Ok(admin::execute(&StateStore::in_memory(doc), command, now).await)
}

/// The error line for a server that holds the state but does not answer on its socket.
#[cfg(unix)]
fn socket_silent(path: &Path, e: &std::io::Error) -> ExitCode {
    fail([format!(
        "a running mcp-authd holds {} but its admin socket {} does not answer: {e}",
        path.display(),
        admin::socket_path(path).display()
    )])
}

fn print_reply(reply: AdminReply, json: bool) -> ExitCode {
    fn print_json(value: &impl serde::Serialize) -> ExitCode {
        match serde_json::to_string_pretty(value) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail([format!("cannot serialise the answer: {e}")]),
        }
    }
    match reply {
        AdminReply::ClientAdded {
            client_id,
            client_secret,
        } => {
            println!("client_id: {client_id}");
            println!("client_secret: {client_secret}");
            eprintln!("Store the secret now: only its hash is kept, it cannot be shown again.");
        }
        AdminReply::SecretRotated {
            client_id,
            client_secret,
        } => {
            println!("client_id: {client_id}");
            println!("client_secret: {client_secret}");
            eprintln!(
                "The old secret no longer works. Store the new one now: only its hash is kept, it cannot be shown again."
            );
        }
        AdminReply::ClientRemoved => println!("removed"),
        AdminReply::UserRevoked { families } | AdminReply::ClientTokensRevoked { families } => {
            println!("revoked {families} sign-in(s)");
        }
        AdminReply::ConsentsRevoked { consents, families } => {
            println!("revoked {consents} consent(s) and {families} sign-in(s)");
        }
        AdminReply::Clients { clients } if json => return print_json(&clients),
        AdminReply::Clients { clients } => {
            for c in clients {
                let kind = match c.registration {
                    _ if c.introspection_only => "introspection-only",
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
        }
        AdminReply::Tokens { sign_ins } if json => return print_json(&sign_ins),
        AdminReply::Tokens { sign_ins } => {
            println!("user\tclient_id\tclient_name\tsigned_in\texpires\tscope");
            for f in sign_ins {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    f.sub,
                    f.client_id,
                    f.client_name.as_deref().unwrap_or("(removed)"),
                    utc(f.created_at),
                    utc(f.expires_at),
                    f.scope
                );
            }
        }
        AdminReply::Consents { consents } if json => return print_json(&consents),
        AdminReply::Consents { consents } => {
            println!("user\tclient_id\tclient_name\tapproved\tscope");
            for c in consents {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.sub,
                    c.client_id,
                    c.client_name.as_deref().unwrap_or("(removed)"),
                    utc(c.approved_at),
                    c.scope
                );
            }
        }
        AdminReply::State { document } => return export(&document, None),
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
