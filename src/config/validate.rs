//! From [`RawOauthAs`] to [`Config`]: every field group checked by its own function, every
//! problem collected as one line naming the field and the fix (errors refuse the
//! configuration, warnings boot with it). The groups run in the order of the fields in the
//! typed configuration, so the lines come out in that order.

use std::path::Path;

use ::http::HeaderName;

use super::raw::{RawClientMetadataDocuments, RawIssuer, RawOauthAs, RawRateLimits, RawStore};
use super::{
    ClientMetadataDocuments, Config, ConfigErrors, ConsentMode, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_DYNAMIC_CLIENTS, DEFAULT_MAX_PENDING_CODES, DEFAULT_MAX_PENDING_CODES_PER_USER,
    DEFAULT_UNUSED_CLIENT_TTL, HostPattern, Issuer, MIN_SECRET_BYTES, RateLimits, Secret,
    StoreSettings,
};
use crate::model::RedirectPattern;
use crate::proxy_trust::TrustedSources;

/// Validates the whole section: a [`Config`] when no field group found an error, else every
/// error found.
pub(super) fn validate(
    raw: RawOauthAs,
    base_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    // Taken apart field by field, so that a field added to the raw form must be used here.
    let RawOauthAs {
        issuer_url,
        jwt_secret,
        previous_jwt_secrets,
        trusted_user_header,
        trusted_groups_header,
        trusted_source_cidrs,
        access_token_ttl_seconds,
        refresh_token_ttl_seconds,
        authorization_code_ttl_seconds,
        scopes_supported,
        redirect_uri_allowlist,
        injected_roles,
        resource_url,
        consent,
        rate_limits,
        max_dynamic_clients,
        unused_client_ttl_seconds,
        max_connections,
        max_pending_codes_per_user,
        max_pending_codes,
        store,
        signing,
        client_metadata_documents,
        additional_issuers,
    } = raw;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    let (issuer, issuer_path) = issuer_url_field(issuer_url.as_deref(), &mut errors, &mut warnings);
    let jwt_secret = jwt_secret_field(jwt_secret.as_deref(), &env, &mut errors, &mut warnings);
    let previous_jwt_secrets =
        previous_jwt_secrets_field(previous_jwt_secrets.unwrap_or_default(), &env, &mut errors);
    let user_header = header_name(
        trusted_user_header.as_deref(),
        "x-forwarded-user",
        "trustedUserHeader",
        &mut errors,
    );
    let groups_header = header_name(
        trusted_groups_header.as_deref(),
        "x-forwarded-groups",
        "trustedGroupsHeader",
        &mut errors,
    );
    let trusted_sources = trusted_sources_field(
        trusted_source_cidrs.as_deref().unwrap_or_default(),
        &mut errors,
        &mut warnings,
    );
    let (access_token_ttl, refresh_token_ttl, code_ttl) = lifetimes(
        access_token_ttl_seconds,
        refresh_token_ttl_seconds,
        authorization_code_ttl_seconds,
        &mut errors,
    );
    let scopes_supported =
        scopes_supported_field(scopes_supported.unwrap_or_default(), &mut errors);
    let redirect_allowlist =
        redirect_allowlist_field(redirect_uri_allowlist, &mut errors, &mut warnings);
    let resource = resource_url_field(resource_url, &issuer, &mut errors, &mut warnings);
    let (primary_issuer, additional_issuers) = issuers(
        &issuer,
        &resource,
        additional_issuers.unwrap_or_default(),
        &mut errors,
        &mut warnings,
    );
    let consent = consent_field(consent, &mut warnings);
    let rate_limits = rate_limits_field(rate_limits.unwrap_or_default());
    let max_dynamic_clients = max_dynamic_clients.unwrap_or(DEFAULT_MAX_DYNAMIC_CLIENTS);
    let unused_client_ttl = unused_client_ttl_field(unused_client_ttl_seconds, &mut errors);
    let max_connections = max_connections_field(max_connections, &mut errors);
    let max_pending_codes_per_user =
        max_pending_codes_per_user.unwrap_or(DEFAULT_MAX_PENDING_CODES_PER_USER);
    let max_pending_codes = max_pending_codes.unwrap_or(DEFAULT_MAX_PENDING_CODES);
    let store = store_settings(store.unwrap_or_default(), base_dir, &mut errors);
    let signing = crate::signing::load_signing(signing, base_dir, &mut errors, &mut warnings);
    let client_metadata_documents = client_metadata_documents_field(
        client_metadata_documents.unwrap_or_default(),
        &mut errors,
        &mut warnings,
    );

    match (errors.is_empty(), trusted_sources, primary_issuer) {
        (true, Some(trusted_sources), Some(primary_issuer)) => Ok(Config {
            issuer,
            issuer_path,
            jwt_secret,
            previous_jwt_secrets,
            user_header,
            groups_header,
            trusted_sources,
            access_token_ttl,
            refresh_token_ttl,
            code_ttl,
            scopes_supported,
            redirect_allowlist,
            injected_roles: injected_roles.unwrap_or_default(),
            resource,
            consent,
            rate_limits,
            max_dynamic_clients,
            unused_client_ttl,
            max_connections,
            max_pending_codes_per_user,
            max_pending_codes,
            store,
            signing,
            client_metadata_documents,
            primary_issuer,
            additional_issuers,
            warnings,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// `issuerUrl` (required): the URL and its path part; empty ones when it was refused.
fn issuer_url_field(
    value: Option<&str>,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> (String, String) {
    match value {
        None => {
            errors.push("oauthAs.issuerUrl is required (the public URL clients reach, e.g. https://mcp.example.com)".into());
            (String::new(), String::new())
        }
        Some(url) => match check_public_url("issuerUrl", url, warnings) {
            Ok(path) => (url.to_string(), path),
            Err(e) => {
                errors.push(e);
                (String::new(), String::new())
            }
        },
    }
}

/// `jwtSecret` (required): resolved, long enough, and not looking like a mistake.
fn jwt_secret_field(
    value: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Secret {
    match value {
        None => {
            errors.push(
                "oauthAs.jwtSecret is required (generate one with `mcp-authd gen-secret`)".into(),
            );
            Secret(Vec::new())
        }
        Some(value) => {
            let secret = secret_field("oauthAs.jwtSecret", value, env, errors);
            warnings.extend(weak_secret_warning("oauthAs.jwtSecret", value, &secret));
            secret
        }
    }
}

/// `previousJwtSecrets`: each resolved and long enough, like `jwtSecret`.
fn previous_jwt_secrets_field(
    values: Vec<String>,
    env: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> Vec<Secret> {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            secret_field(
                &format!("oauthAs.previousJwtSecrets[{i}]"),
                value,
                env,
                errors,
            )
        })
        .collect()
}

/// `trustedSourceCidrs`: parsed, with a warning when loopback is trusted; `None` when refused.
fn trusted_sources_field(
    cidrs: &[String],
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<TrustedSources> {
    match TrustedSources::parse(cidrs) {
        Ok((sources, cidr_warnings)) => {
            warnings.extend(cidr_warnings);
            if sources.contains(std::net::Ipv4Addr::LOCALHOST.into())
                || sources.contains(std::net::Ipv6Addr::LOCALHOST.into())
            {
                warnings.push(
                        "oauthAs.trustedSourceCidrs includes loopback: every process on this host can reach /oauth/authorize directly and assert any user; list loopback only when the proxy runs here and no untrusted local user or service does"
                            .into(),
                    );
            }
            Some(sources)
        }
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

/// `accessTokenTtlSeconds`, `refreshTokenTtlSeconds` and `authorizationCodeTtlSeconds`:
/// positive, and a code lives at most 600 s.
fn lifetimes(
    access: Option<u64>,
    refresh: Option<u64>,
    code: Option<u64>,
    errors: &mut Vec<String>,
) -> (u64, u64, u64) {
    let access_token_ttl = positive("accessTokenTtlSeconds", access, 3600, errors);
    let refresh_token_ttl = positive("refreshTokenTtlSeconds", refresh, 2_592_000, errors);
    let code_ttl = positive("authorizationCodeTtlSeconds", code, 60, errors);
    if code_ttl > 600 {
        errors.push(
            "oauthAs.authorizationCodeTtlSeconds must be at most 600 (OAuth 2.1 §4.1.2)".into(),
        );
    }
    (access_token_ttl, refresh_token_ttl, code_ttl)
}

/// `scopesSupported`: each entry one scope token.
fn scopes_supported_field(scopes: Vec<String>, errors: &mut Vec<String>) -> Vec<String> {
    for scope in &scopes {
        if scope.is_empty() || scope.contains(' ') {
            errors.push(format!(
                "oauthAs.scopesSupported: {scope:?} is not a single scope token"
            ));
        }
    }
    scopes
}

/// `redirectUriAllowlist` (required): every pattern audited (SPEC §6); an empty list boots
/// with a warning.
fn redirect_allowlist_field(
    value: Option<Vec<String>>,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Vec<RedirectPattern> {
    let Some(patterns) = value else {
        errors.push("oauthAs.redirectUriAllowlist is required (patterns clients may register; a trailing * matches any suffix)".into());
        return Vec::new();
    };
    if patterns.is_empty() {
        // Valid (pre-provisioned clients are not checked against it), but every
        // registration will be refused: say so at boot rather than at the first client.
        warnings.push(
            "oauthAs.redirectUriAllowlist is empty: every dynamic registration will be refused; only clients added with `mcp-authd clients add` can sign in"
                .into(),
        );
    }
    for pattern in &patterns {
        match RedirectPattern::parse(pattern).audit() {
            Ok(None) => {}
            Ok(Some(warning)) => warnings.push(format!(
                "oauthAs.redirectUriAllowlist: {pattern:?} {warning}"
            )),
            Err(refusal) => errors.push(format!(
                "oauthAs.redirectUriAllowlist: {pattern:?} {refusal}"
            )),
        }
    }
    patterns.iter().map(|p| RedirectPattern::parse(p)).collect()
}

/// `resourceUrl`: checked like `issuerUrl`; the issuer + `/mcp` when absent.
fn resource_url_field(
    value: Option<String>,
    issuer: &str,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> String {
    match value {
        Some(url) => match check_public_url("resourceUrl", &url, warnings) {
            Ok(_) => url,
            Err(e) => {
                errors.push(e);
                String::new()
            }
        },
        None => format!("{issuer}/mcp"),
    }
}

/// `consent`: `dynamic` by default; `never` boots with a warning.
fn consent_field(value: Option<ConsentMode>, warnings: &mut Vec<String>) -> ConsentMode {
    let consent = value.unwrap_or(ConsentMode::Dynamic);
    if consent == ConsentMode::Never {
        warnings.push(
            "oauthAs.consent is \"never\": any dynamically registered client can obtain a code for a signed-in user from a link"
                .into(),
        );
    }
    consent
}

/// `rateLimits`: each limit as written, else its default.
fn rate_limits_field(raw: RawRateLimits) -> RateLimits {
    let defaults = RateLimits::default();
    RateLimits {
        register_per_minute: raw
            .register_per_minute
            .unwrap_or(defaults.register_per_minute),
        register_global_per_minute: raw
            .register_global_per_minute
            .unwrap_or(defaults.register_global_per_minute),
        token_per_minute: raw.token_per_minute.unwrap_or(defaults.token_per_minute),
        authorize_per_minute: raw
            .authorize_per_minute
            .unwrap_or(defaults.authorize_per_minute),
    }
}

/// `unusedClientTtlSeconds`: 0 (never collect) or at least 600.
fn unused_client_ttl_field(value: Option<u64>, errors: &mut Vec<String>) -> u64 {
    let unused_client_ttl = value.unwrap_or(DEFAULT_UNUSED_CLIENT_TTL);
    if unused_client_ttl != 0 && unused_client_ttl < 600 {
        // A client needs time to send the user through the login and consent before it has
        // anything that keeps it alive.
        errors.push(
            "oauthAs.unusedClientTtlSeconds must be 0 (never collect) or at least 600".into(),
        );
    }
    unused_client_ttl
}

/// `maxConnections`: positive.
fn max_connections_field(value: Option<usize>, errors: &mut Vec<String>) -> usize {
    let max_connections = value.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        errors.push("oauthAs.maxConnections must be greater than 0".into());
    }
    max_connections
}

/// The primary issuer and `additionalIssuers` (SPEC §11), each URL checked like `issuerUrl`
/// and `resourceUrl`; an issuer that repeats another, or shares its host and port (requests
/// pick their issuer by host, so it could never be chosen), is an error. No primary when
/// `issuerUrl` itself was refused (`errors` says so then).
fn issuers(
    issuer: &str,
    resource: &str,
    raw: Vec<RawIssuer>,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> (Option<Issuer>, Vec<Issuer>) {
    let primary = Issuer::new(issuer, resource);
    let mut additional: Vec<Issuer> = Vec::new();
    for (i, entry) in raw.into_iter().enumerate() {
        let field = format!("additionalIssuers[{i}]");
        let Some(url) = entry.issuer_url else {
            errors.push(format!(
                "oauthAs.{field}.issuerUrl is required (the URL clients reach on that host, e.g. https://mcp.internal.example)"
            ));
            continue;
        };
        if let Err(e) = check_public_url(&format!("{field}.issuerUrl"), &url, warnings) {
            errors.push(e);
            continue;
        }
        let resource = match entry.resource_url {
            Some(resource) => {
                match check_public_url(&format!("{field}.resourceUrl"), &resource, warnings) {
                    Ok(_) => resource,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                }
            }
            None => format!("{url}/mcp"),
        };
        let Some(candidate) = Issuer::new(&url, &resource) else {
            errors.push(format!("oauthAs.{field}.issuerUrl: {url:?} has no host"));
            continue;
        };
        let earlier = primary
            .iter()
            .map(|p| (p, "issuerUrl".to_string()))
            .chain(
                additional
                    .iter()
                    .enumerate()
                    .map(|(j, a)| (a, format!("additionalIssuers[{j}].issuerUrl"))),
            )
            .find(|(other, _)| {
                other.url == candidate.url || other.authority() == candidate.authority()
            });
        match earlier {
            Some((other, name)) if other.url == candidate.url => errors.push(format!(
                "oauthAs.{field}.issuerUrl: {url} is already {name}; every issuer must be distinct"
            )),
            Some((_, name)) => errors.push(format!(
                "oauthAs.{field}.issuerUrl: its host {} is already that of {name}; requests choose their issuer by host, so each issuer needs a host (or port) of its own",
                candidate.authority()
            )),
            None => additional.push(candidate),
        }
    }
    (primary, additional)
}

/// `store`: the file store (the only one in this build), with an optional path.
fn store_settings(raw: RawStore, base_dir: &Path, errors: &mut Vec<String>) -> StoreSettings {
    match raw.kind.as_deref().unwrap_or("file") {
        "file" => {}
        "postgres" => errors.push(
            "oauthAs.store.type \"postgres\" is not available in this build; use \"file\" (the default)"
                .into(),
        ),
        other => errors.push(format!(
            "oauthAs.store.type: {other:?} is not a store type (use \"file\")"
        )),
    }
    for (field, is_set) in [
        ("url", raw.url.is_some()),
        ("poolSize", raw.pool_size.is_some()),
        ("schema", raw.schema.is_some()),
    ] {
        if is_set && raw.kind.as_deref() != Some("postgres") {
            errors.push(format!(
                "oauthAs.store.{field} applies to the postgres store only"
            ));
        }
    }
    let path = raw.path.map(|path| {
        if path.as_os_str().is_empty() {
            errors.push("oauthAs.store.path must not be empty".into());
        }
        base_dir.join(path)
    });
    StoreSettings { path }
}

/// The largest `maxBytes` accepted (a client metadata document is a few hundred bytes).
const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// The longest `timeoutMs` accepted: a fetch holds an authorization or token request open.
const MAX_DOCUMENT_TIMEOUT_MS: u64 = 30_000;

/// `clientMetadataDocuments` (SPEC §12): host patterns parsed, bounds checked, test-only
/// options warned about.
fn client_metadata_documents_field(
    raw: RawClientMetadataDocuments,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> ClientMetadataDocuments {
    const FIELD: &str = "oauthAs.clientMetadataDocuments";
    let defaults = ClientMetadataDocuments::default();
    let mut allowed_hosts = Vec::new();
    for entry in raw.allowed_hosts.unwrap_or_default() {
        match HostPattern::parse(&entry) {
            Ok(pattern) => allowed_hosts.push(pattern),
            Err(why) => errors.push(format!("{FIELD}.allowedHosts: {why}")),
        }
    }
    let max_bytes = raw.max_bytes.unwrap_or(defaults.max_bytes as u64);
    if !(1..=MAX_DOCUMENT_BYTES).contains(&max_bytes) {
        errors.push(format!(
            "{FIELD}.maxBytes must be between 1 and {MAX_DOCUMENT_BYTES}"
        ));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(defaults.timeout_ms);
    if !(1..=MAX_DOCUMENT_TIMEOUT_MS).contains(&timeout_ms) {
        errors.push(format!(
            "{FIELD}.timeoutMs must be between 1 and {MAX_DOCUMENT_TIMEOUT_MS}"
        ));
    }
    let allow_private_addresses = raw.allow_private_addresses.unwrap_or(false);
    if allow_private_addresses {
        warnings.push(format!(
            "{FIELD}.allowPrivateAddresses is on: client metadata documents may be fetched from loopback and private networks (for tests only)"
        ));
    }
    let ca_pem = raw.ca_file.and_then(|path| {
        warnings.push(format!(
            "{FIELD}.caFile is set: {} is trusted for client metadata document fetches (for tests only)",
            path.display()
        ));
        match std::fs::read(&path) {
            Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(roots) if !roots.is_empty() => Some(pem),
                _ => {
                    errors.push(format!(
                        "{FIELD}.caFile: {} holds no PEM certificate",
                        path.display()
                    ));
                    None
                }
            },
            Err(e) => {
                errors.push(format!(
                    "{FIELD}.caFile: cannot read {}: {e}",
                    path.display()
                ));
                None
            }
        }
    });
    ClientMetadataDocuments {
        enabled: raw.enabled.unwrap_or(defaults.enabled),
        allowed_hosts,
        max_bytes: usize::try_from(max_bytes).unwrap_or(defaults.max_bytes),
        timeout_ms,
        max_cache_seconds: raw.max_cache_seconds.unwrap_or(defaults.max_cache_seconds),
        stale_seconds: raw.stale_seconds.unwrap_or(defaults.stale_seconds),
        allow_private_addresses,
        ca_pem,
    }
}

/// Checks an advertised URL; returns its path ("" for the root).
fn check_public_url(
    field: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let url = url::Url::parse(value)
        .map_err(|_| format!("oauthAs.{field}: {value:?} is not an absolute URL"))?;
    if value.ends_with('/') {
        return Err(format!(
            "oauthAs.{field} must not end with a slash (clients compare it byte for byte)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "oauthAs.{field} must not have a query, fragment or userinfo"
        ));
    }
    // Clients compare the issuer byte for byte with what they derive, so it must already be in
    // the form the `url` crate (and browsers) would print.
    let canonical = url.as_str().trim_end_matches('/');
    if canonical != value {
        return Err(format!(
            "oauthAs.{field} must be written in canonical form: {canonical}"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let is_loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if is_loopback {
                warnings.push(format!(
                    "oauthAs.{field} uses http on loopback: fine for development only"
                ));
            } else {
                return Err(format!(
                    "oauthAs.{field} must use https (http is only allowed for localhost)"
                ));
            }
        }
        _ => return Err(format!("oauthAs.{field} must be an https URL")),
    }
    Ok(url.path().trim_end_matches('/').to_string())
}

/// Resolves a secret field and checks its length; problems are named after `field`.
pub(super) fn secret_field(
    field: &str,
    value: &str,
    env: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> Secret {
    match resolve_secret(field, value, env) {
        Ok(secret) if secret.len() >= MIN_SECRET_BYTES => Secret(secret.into_bytes()),
        Ok(_) => {
            errors.push(format!("{field} must be at least 32 bytes"));
            Secret(Vec::new())
        }
        Err(e) => {
            errors.push(e);
            Secret(Vec::new())
        }
    }
}

/// A warning for a secret that looks like a mistake rather than a key: an environment
/// variable written without braces (`$NAME` is taken literally, not expanded), or too few
/// distinct bytes to be random (a repeated character, a word).
fn weak_secret_warning(field: &str, written: &str, secret: &Secret) -> Option<String> {
    let unexpanded = written.strip_prefix('$').is_some_and(|name| {
        !name.starts_with('{')
            && !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    if unexpanded {
        return Some(format!(
            "{field} looks like an unexpanded variable; write \"${{{}}}\" to read it from the environment (it is used literally now)",
            &written[1..]
        ));
    }
    let bytes = secret.expose();
    let distinct = bytes.iter().collect::<std::collections::HashSet<_>>().len();
    (!bytes.is_empty() && distinct < 16).then(|| {
        format!(
            "{field} has only {distinct} distinct bytes: it does not look random; generate one with `mcp-authd gen-secret`"
        )
    })
}

/// Expands `"${NAME}"` from the environment; any other value is the secret itself.
pub(crate) fn resolve_secret(
    field: &str,
    value: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        Some(name) => {
            env(name).ok_or_else(|| format!("{field} refers to ${{{name}}}, which is not set"))
        }
        None => Ok(value.to_string()),
    }
}

/// `trustedUserHeader` or `trustedGroupsHeader`: a valid header name, lower-cased.
fn header_name(
    value: Option<&str>,
    default: &'static str,
    field: &str,
    errors: &mut Vec<String>,
) -> HeaderName {
    let value = value.unwrap_or(default);
    match HeaderName::try_from(value.to_ascii_lowercase()) {
        Ok(name) => name,
        Err(_) => {
            errors.push(format!(
                "oauthAs.{field}: {value:?} is not a valid header name"
            ));
            HeaderName::from_static(default)
        }
    }
}

/// A lifetime in seconds: `default` when absent, never 0.
fn positive(field: &str, value: Option<u64>, default: u64, errors: &mut Vec<String>) -> u64 {
    match value {
        Some(0) => {
            errors.push(format!("oauthAs.{field} must be greater than 0"));
            default
        }
        Some(v) => v,
        None => default,
    }
}
