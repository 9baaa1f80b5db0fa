//! Read-only commands: `check` (configuration and state), `doctor` (a deployment from
//! outside) and `health` (a running server's `/readyz`).

use super::*;

/// `mcp-authd doctor`: the report on stdout, exit 1 when any check failed.
pub(super) fn doctor(mcp_url: &str) -> ExitCode {
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
pub(super) fn health(url: &str) -> ExitCode {
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

pub(super) fn load_state_read_only(
    config_path: &Path,
) -> Result<(String, StateDocument), StateError> {
    match state_source(config_path) {
        StateSource::File(path) => Ok((path.display().to_string(), read_state(&path)?.0)),
        StateSource::Inline(text) => Ok((
            format!("{STATE_INLINE_ENV} (inline, read-only)"),
            parse_document(&text, &inline_origin())?,
        )),
    }
}

pub(super) fn check(config_path: &Path) -> ExitCode {
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
