//! The admin commands (`clients`, `tokens`, `consents`, `state`): run on the state directly,
//! or sent to the running server over its admin socket, and their replies printed.

use super::*;

pub(super) fn clients(config_path: &Path, command: ClientsCommand) -> ExitCode {
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

pub(super) fn tokens(config_path: &Path, command: TokensCommand) -> ExitCode {
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

pub(super) fn consents(config_path: &Path, command: ConsentsCommand) -> ExitCode {
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

pub(super) fn state(config_path: &Path, command: StateCommand) -> ExitCode {
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
pub(super) fn export(document: &StateDocument, output: Option<&Path>) -> ExitCode {
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
pub(super) fn import(config_path: &Path, file: &Path) -> ExitCode {
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
pub(super) fn init_admin_logging() {
    let format = std::env::var(crate::logging::LOG_FORMAT_ENV)
        .ok()
        .and_then(|v| <crate::logging::LogFormat as clap::ValueEnum>::from_str(&v, true).ok())
        .unwrap_or_default();
    // Only fails if a subscriber is already installed, which is then used.
    let _ = crate::logging::init(format, None);
}

/// Runs an admin command and prints its reply (`json`: listings as JSON arrays).
pub(super) fn admin(config_path: &Path, command: AdminCommand, json: bool) -> ExitCode {
    match run_admin(config_path, command) {
        Ok(reply) => print_reply(reply, json),
        Err(code) => code,
    }
}

/// Runs an admin command where the state is: a change directly on the state when no server
/// holds it, otherwise through the running server's admin socket; a read through the socket
/// when a server answers there, otherwise on the files as they are (nothing is written). A
/// failure is printed as one line and returned as the exit code.
pub(super) fn run_admin(config_path: &Path, command: AdminCommand) -> Result<AdminReply, ExitCode> {
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
            runtime.block_on(crate::admin::execute(
                &StateStore::in_memory(doc),
                command,
                now,
            ))
        }
        StateSource::File(path) if command.is_read_only() => {
            runtime.block_on(read_only(&path, command, now))?
        }
        StateSource::File(path) => {
            init_admin_logging();
            match StateStore::open(&path) {
                // Dropped at the end of this arm: the journal is folded into the state file.
                Ok(store) => runtime.block_on(crate::admin::execute(&store, command, now)),
                #[cfg(unix)]
                Err(StateError::Locked { .. }) => runtime
                    .block_on(crate::admin::send(&path, &command))
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
pub(super) async fn read_only(
    path: &Path,
    command: AdminCommand,
    now: u64,
) -> Result<AdminReply, ExitCode> {
    #[cfg(unix)]
    match crate::admin::send(path, &command).await {
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
    Ok(crate::admin::execute(&StateStore::in_memory(doc), command, now).await)
}

/// The error line for a server that holds the state but does not answer on its socket.
#[cfg(unix)]
pub(super) fn socket_silent(path: &Path, e: &std::io::Error) -> ExitCode {
    fail([format!(
        "a running mcp-authd holds {} but its admin socket {} does not answer: {e}",
        path.display(),
        crate::admin::socket_path(path).display()
    )])
}

pub(super) fn print_reply(reply: AdminReply, json: bool) -> ExitCode {
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
pub(super) fn utc(secs: u64) -> String {
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
