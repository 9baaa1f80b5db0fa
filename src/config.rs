//! `servers.json` → [`Config`]: parsed and validated once at boot.
//!
//! Only `serverAuth.oauthAs` is read; other top-level keys belong to the MCP server that shares
//! the file. Every problem is collected, so `check` and `serve` print one line per fix.

use std::path::{Path, PathBuf};

use axum::http::HeaderName;
use serde::Deserialize;

use crate::oauth::cimd::HostPattern;
use crate::oauth::redirect::RedirectPattern;
use crate::proxy_trust::TrustedSources;

/// The shortest accepted `jwtSecret`, in bytes (RFC 7518 §3.2: HS256 keys ≥ 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// When the consent page is shown (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentMode {
    /// A dynamically registered client needs each user's approval once.
    Dynamic,
    /// Every authorization asks.
    Always,
    /// Never ask (only safe when every client is trusted).
    Never,
}

/// The `serverAuth.oauthAs` object exactly as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawOauthAs {
    issuer_url: Option<String>,
    jwt_secret: Option<String>,
    previous_jwt_secrets: Option<Vec<String>>,
    trusted_user_header: Option<String>,
    trusted_groups_header: Option<String>,
    trusted_source_cidrs: Option<Vec<String>>,
    access_token_ttl_seconds: Option<u64>,
    refresh_token_ttl_seconds: Option<u64>,
    authorization_code_ttl_seconds: Option<u64>,
    scopes_supported: Option<Vec<String>>,
    redirect_uri_allowlist: Option<Vec<String>>,
    injected_roles: Option<Vec<String>>,
    resource_url: Option<String>,
    consent: Option<ConsentMode>,
    rate_limits: Option<RawRateLimits>,
    max_dynamic_clients: Option<usize>,
    unused_client_ttl_seconds: Option<u64>,
    max_connections: Option<usize>,
    max_pending_codes_per_user: Option<usize>,
    max_pending_codes: Option<usize>,
    signing: Option<crate::signing::RawSigning>,
    client_metadata_documents: Option<RawClientMetadataDocuments>,
}

/// `oauthAs.clientMetadataDocuments` exactly as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawClientMetadataDocuments {
    enabled: Option<bool>,
    allowed_hosts: Option<Vec<String>>,
    max_bytes: Option<u64>,
    timeout_ms: Option<u64>,
    max_cache_seconds: Option<u64>,
    stale_seconds: Option<u64>,
    allow_private_addresses: Option<bool>,
    ca_file: Option<PathBuf>,
}

/// `oauthAs.clientMetadataDocuments` (SPEC §12): clients identified by the https URL of a
/// metadata document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadataDocuments {
    /// `enabled`: whether a URL `client_id` is fetched and advertised.
    pub enabled: bool,
    /// `allowedHosts` (empty: any public https host).
    pub allowed_hosts: Vec<HostPattern>,
    /// `maxBytes`: the largest document (or JWKS) read.
    pub max_bytes: usize,
    /// `timeoutMs`: the longest one fetch may take.
    pub timeout_ms: u64,
    /// `maxCacheSeconds`: the cap on a document's `Cache-Control: max-age`.
    pub max_cache_seconds: u64,
    /// `staleSeconds`: how long past its freshness a copy serves when a refetch fails.
    pub stale_seconds: u64,
    /// `allowPrivateAddresses` (tests only): documents may come from loopback and private
    /// networks.
    pub allow_private_addresses: bool,
    /// The PEM text of `caFile` (tests only): extra roots trusted for fetches.
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for ClientMetadataDocuments {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_hosts: Vec::new(),
            max_bytes: 5120,
            timeout_ms: 3000,
            max_cache_seconds: 86_400,
            stale_seconds: 86_400,
            allow_private_addresses: false,
            ca_pem: None,
        }
    }
}

/// `oauthAs.rateLimits` exactly as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRateLimits {
    register_per_minute: Option<u32>,
    register_global_per_minute: Option<u32>,
    token_per_minute: Option<u32>,
    authorize_per_minute: Option<u32>,
}

/// `oauthAs.rateLimits`: requests per minute, as token buckets whose burst equals the
/// per-minute rate. 0 disables a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `POST /oauth/register` (and `/register`) per client address.
    pub register_per_minute: u32,
    /// `POST /oauth/register` (and `/register`) from all addresses together.
    pub register_global_per_minute: u32,
    /// `POST /oauth/token` (and `/token`) per client address.
    pub token_per_minute: u32,
    /// `GET /oauth/authorize` (and `/authorize`) per signed-in user.
    pub authorize_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            register_per_minute: 20,
            register_global_per_minute: 200,
            token_per_minute: 600,
            authorize_per_minute: 60,
        }
    }
}

/// Default of `maxDynamicClients`.
pub const DEFAULT_MAX_DYNAMIC_CLIENTS: usize = 10_000;

/// Default of `unusedClientTtlSeconds` (one day).
pub const DEFAULT_UNUSED_CLIENT_TTL: u64 = 86_400;

/// Default of `maxConnections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default of `maxPendingCodesPerUser`.
pub const DEFAULT_MAX_PENDING_CODES_PER_USER: usize = 32;

/// Default of `maxPendingCodes`.
pub const DEFAULT_MAX_PENDING_CODES: usize = 100_000;

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The validated configuration. Every field holds a value that has been checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// `issuerUrl`, without a trailing slash.
    pub issuer: String,
    /// The path part of the issuer (`""` or `/something`), where the endpoints live.
    pub issuer_path: String,
    /// `jwtSecret`.
    pub jwt_secret: Secret,
    /// `previousJwtSecrets`: accepted for verifying access tokens only, during a key rotation.
    pub previous_jwt_secrets: Vec<Secret>,
    /// `trustedUserHeader`.
    pub user_header: HeaderName,
    /// `trustedGroupsHeader`.
    pub groups_header: HeaderName,
    /// `trustedSourceCidrs`.
    pub trusted_sources: TrustedSources,
    /// `accessTokenTtlSeconds`.
    pub access_token_ttl: u64,
    /// `refreshTokenTtlSeconds`.
    pub refresh_token_ttl: u64,
    /// `authorizationCodeTtlSeconds`.
    pub code_ttl: u64,
    /// `scopesSupported`.
    pub scopes_supported: Vec<String>,
    /// `redirectUriAllowlist`.
    pub redirect_allowlist: Vec<RedirectPattern>,
    /// `injectedRoles`.
    pub injected_roles: Vec<String>,
    /// `resourceUrl` (default: issuer + `/mcp`).
    pub resource: String,
    /// `consent`.
    pub consent: ConsentMode,
    /// `rateLimits`.
    pub rate_limits: RateLimits,
    /// `maxDynamicClients`: the most dynamically registered clients kept (0: no cap).
    pub max_dynamic_clients: usize,
    /// `unusedClientTtlSeconds`: a dynamic client never used for this long is removed
    /// (0: never).
    pub unused_client_ttl: u64,
    /// `maxConnections`: the most HTTP connections open at once; more wait in the listen
    /// backlog (see `http::conn`).
    pub max_connections: usize,
    /// `maxPendingCodesPerUser`: the most unredeemed, unexpired authorization codes one user
    /// may hold (0: no cap).
    pub max_pending_codes_per_user: usize,
    /// `maxPendingCodes`: the most unredeemed, unexpired authorization codes in total
    /// (0: no cap).
    pub max_pending_codes: usize,
    /// `signing`: how access tokens are signed (HS256 with `jwtSecret`, or a key pair).
    pub signing: crate::signing::SigningConfig,
    /// `clientMetadataDocuments`.
    pub client_metadata_documents: ClientMetadataDocuments,
    /// Things that are allowed but deserve the operator's attention.
    pub warnings: Vec<String>,
}

/// Every problem found in a configuration, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

impl Config {
    /// Reads and validates `path`. Relative key file paths in it are taken from its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
        Self::parse_in(&text, config_dir(path), |name| std::env::var(name).ok())
    }

    /// Parses and validates the text of a `servers.json`; `env` resolves `${NAME}` secrets.
    /// Relative key file paths are taken from the current directory.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        Self::parse_in(text, Path::new("."), env)
    }

    /// Like [`Self::parse`], with relative key file paths taken from `base_dir` (the directory
    /// of the configuration file).
    pub fn parse_in(
        text: &str,
        base_dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigErrors> {
        let doc: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ConfigErrors(vec![format!("servers.json is not valid JSON: {e}")]))?;
        let section = doc
            .get("serverAuth")
            .and_then(|s| s.get("oauthAs"))
            .ok_or_else(|| {
                ConfigErrors(vec![
                    "servers.json has no serverAuth.oauthAs section".into(),
                ])
            })?;
        validate(parse_section(section)?, base_dir, env)
    }

    /// Where refresh tokens and clients are stored when `MCP_AUTH_SERVER_PATH` is not set:
    /// `auth_server.json` beside the configuration file.
    pub fn default_state_path(config_path: &Path) -> PathBuf {
        config_dir(config_path).join("auth_server.json")
    }

    /// The trusted networks, for display.
    pub fn trusted_sources_display(&self) -> String {
        self.trusted_sources.to_string()
    }

    /// The access-token verifier for this issuer and resource: the current secret plus
    /// `previousJwtSecrets` under HS256, the current and previous public keys otherwise.
    pub fn verifier(&self) -> crate::jwt::Verifier {
        if self.signing.algorithm.is_asymmetric() {
            let keys = self.signing.public_keys();
            return crate::jwt::Verifier::with_public_keys(&self.issuer, &self.resource, &keys);
        }
        let expect = crate::jwt::TokenExpectations {
            issuer: self.issuer.clone(),
            audience: self.resource.clone(),
            secret: self.jwt_secret.expose().to_vec(),
            leeway_seconds: 0,
        };
        crate::jwt::Verifier::new(&expect).with_previous_secrets(
            self.previous_jwt_secrets
                .iter()
                .map(|s| s.expose().to_vec()),
        )
    }

    /// What signs this server's access tokens.
    pub fn signer(&self) -> crate::jwt::TokenSigner {
        match &self.signing.private_key {
            Some(key) => crate::jwt::TokenSigner::Key(key.clone()),
            None => crate::jwt::TokenSigner::hs256(self.jwt_secret.expose()),
        }
    }

    /// An endpoint URL under the issuer, e.g. `endpoint("/oauth/token")`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

/// Deserialises `serverAuth.oauthAs`, naming the field of every wrongly typed value and
/// every unknown key, not only the first: each key is read on its own first.
fn parse_section(section: &serde_json::Value) -> Result<RawOauthAs, ConfigErrors> {
    let Some(fields) = section.as_object() else {
        return Err(ConfigErrors(vec![format!(
            "serverAuth.oauthAs: expected an object, found {}",
            json_kind(section)
        )]));
    };
    let mut errors = Vec::new();
    for (key, value) in fields {
        let alone =
            serde_json::Value::Object(std::iter::once((key.clone(), value.clone())).collect());
        if let Err(e) = serde_path_to_error::deserialize::<_, RawOauthAs>(&alone) {
            errors.push(describe_field_error(key, &e));
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    serde_json::from_value(section.clone()).map_err(|e| ConfigErrors(vec![format!("oauthAs: {e}")]))
}

/// One line for a value serde refused: `oauthAs.<path>: expected a number`.
fn describe_field_error(key: &str, e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let message = e.inner().to_string();
    if message.starts_with("unknown field") {
        return format!("oauthAs: {message}");
    }
    let path = match e.path().to_string() {
        p if p.is_empty() || p == "." => key.to_string(),
        p => p,
    };
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, what)| what)
        .unwrap_or("");
    let integer_max = match expected {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        "u64" | "usize" => Some(u64::MAX),
        _ => None,
    };
    let wanted = if let Some(max) = integer_max {
        if message.starts_with("invalid value") {
            format!("a whole number from 0 to {max}")
        } else {
            "a number".to_string()
        }
    } else if expected == "a sequence" {
        "a list".to_string()
    } else if matches!(expected, "a string" | "a borrowed string" | "string or map") {
        "a string".to_string()
    } else if expected.starts_with("struct ") || expected == "a map" {
        "an object".to_string()
    } else if expected == "a boolean" {
        "true or false".to_string()
    } else {
        return format!("oauthAs.{path}: {message}");
    };
    format!("oauthAs.{path}: expected {wanted}")
}

/// How a JSON value is called in an error line.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The directory a configuration file is in (`.` for a bare file name).
fn config_dir(config_path: &Path) -> &Path {
    config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn validate(
    raw: RawOauthAs,
    base_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    let (issuer, issuer_path) = match raw.issuer_url.as_deref() {
        None => {
            errors.push("oauthAs.issuerUrl is required (the public URL clients reach, e.g. https://mcp.example.com)".into());
            (String::new(), String::new())
        }
        Some(url) => match check_public_url("issuerUrl", url, &mut warnings) {
            Ok(path) => (url.to_string(), path),
            Err(e) => {
                errors.push(e);
                (String::new(), String::new())
            }
        },
    };

    let jwt_secret = match raw.jwt_secret.as_deref() {
        None => {
            errors.push(
                "oauthAs.jwtSecret is required (generate one with `mcp-authd gen-secret`)".into(),
            );
            Secret(Vec::new())
        }
        Some(value) => {
            let secret = secret_field("oauthAs.jwtSecret", value, &env, &mut errors);
            warnings.extend(weak_secret_warning("oauthAs.jwtSecret", value, &secret));
            secret
        }
    };
    let previous_jwt_secrets: Vec<Secret> = raw
        .previous_jwt_secrets
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, value)| {
            secret_field(
                &format!("oauthAs.previousJwtSecrets[{i}]"),
                value,
                &env,
                &mut errors,
            )
        })
        .collect();

    let user_header = header_name(
        raw.trusted_user_header.as_deref(),
        "x-forwarded-user",
        "trustedUserHeader",
        &mut errors,
    );
    let groups_header = header_name(
        raw.trusted_groups_header.as_deref(),
        "x-forwarded-groups",
        "trustedGroupsHeader",
        &mut errors,
    );

    let trusted_sources = match TrustedSources::parse(
        raw.trusted_source_cidrs.as_deref().unwrap_or_default(),
    ) {
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
    };

    let access_token_ttl = positive(
        "accessTokenTtlSeconds",
        raw.access_token_ttl_seconds,
        3600,
        &mut errors,
    );
    let refresh_token_ttl = positive(
        "refreshTokenTtlSeconds",
        raw.refresh_token_ttl_seconds,
        2_592_000,
        &mut errors,
    );
    let code_ttl = positive(
        "authorizationCodeTtlSeconds",
        raw.authorization_code_ttl_seconds,
        60,
        &mut errors,
    );
    if code_ttl > 600 {
        errors.push(
            "oauthAs.authorizationCodeTtlSeconds must be at most 600 (OAuth 2.1 §4.1.2)".into(),
        );
    }

    let scopes_supported = raw.scopes_supported.unwrap_or_default();
    for scope in &scopes_supported {
        if scope.is_empty() || scope.contains(' ') {
            errors.push(format!(
                "oauthAs.scopesSupported: {scope:?} is not a single scope token"
            ));
        }
    }

    let redirect_allowlist: Vec<RedirectPattern> = match raw.redirect_uri_allowlist {
        None => {
            errors.push("oauthAs.redirectUriAllowlist is required (patterns clients may register; a trailing * matches any suffix)".into());
            Vec::new()
        }
        Some(patterns) => {
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
    };

    let resource = match raw.resource_url {
        Some(url) => match check_public_url("resourceUrl", &url, &mut warnings) {
            Ok(_) => url,
            Err(e) => {
                errors.push(e);
                String::new()
            }
        },
        None => format!("{issuer}/mcp"),
    };

    let consent = raw.consent.unwrap_or(ConsentMode::Dynamic);
    if consent == ConsentMode::Never {
        warnings.push(
            "oauthAs.consent is \"never\": any dynamically registered client can obtain a code for a signed-in user from a link"
                .into(),
        );
    }

    let rate_limits = {
        let raw_limits = raw.rate_limits.unwrap_or_default();
        let defaults = RateLimits::default();
        RateLimits {
            register_per_minute: raw_limits
                .register_per_minute
                .unwrap_or(defaults.register_per_minute),
            register_global_per_minute: raw_limits
                .register_global_per_minute
                .unwrap_or(defaults.register_global_per_minute),
            token_per_minute: raw_limits
                .token_per_minute
                .unwrap_or(defaults.token_per_minute),
            authorize_per_minute: raw_limits
                .authorize_per_minute
                .unwrap_or(defaults.authorize_per_minute),
        }
    };
    let max_dynamic_clients = raw
        .max_dynamic_clients
        .unwrap_or(DEFAULT_MAX_DYNAMIC_CLIENTS);
    let unused_client_ttl = raw
        .unused_client_ttl_seconds
        .unwrap_or(DEFAULT_UNUSED_CLIENT_TTL);
    if unused_client_ttl != 0 && unused_client_ttl < 600 {
        // A client needs time to send the user through the login and consent before it has
        // anything that keeps it alive.
        errors.push(
            "oauthAs.unusedClientTtlSeconds must be 0 (never collect) or at least 600".into(),
        );
    }

    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections == 0 {
        errors.push("oauthAs.maxConnections must be greater than 0".into());
    }
    let max_pending_codes_per_user = raw
        .max_pending_codes_per_user
        .unwrap_or(DEFAULT_MAX_PENDING_CODES_PER_USER);
    let max_pending_codes = raw.max_pending_codes.unwrap_or(DEFAULT_MAX_PENDING_CODES);
    let signing = crate::signing::load_signing(raw.signing, base_dir, &mut errors, &mut warnings);
    let client_metadata_documents = client_metadata_documents(
        raw.client_metadata_documents.unwrap_or_default(),
        &mut errors,
        &mut warnings,
    );

    match (errors.is_empty(), trusted_sources) {
        (true, Some(trusted_sources)) => Ok(Config {
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
            injected_roles: raw.injected_roles.unwrap_or_default(),
            resource,
            consent,
            rate_limits,
            max_dynamic_clients,
            unused_client_ttl,
            max_connections,
            max_pending_codes_per_user,
            max_pending_codes,
            signing,
            client_metadata_documents,
            warnings,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The largest `maxBytes` accepted (a client metadata document is a few hundred bytes).
const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// The longest `timeoutMs` accepted: a fetch holds an authorization or token request open.
const MAX_DOCUMENT_TIMEOUT_MS: u64 = 30_000;

fn client_metadata_documents(
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
fn secret_field(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(oauth_as: serde_json::Value) -> Result<Config, ConfigErrors> {
        let doc = serde_json::json!({"mcpServers": {}, "serverAuth": {"bearer": {}, "oauthAs": oauth_as}});
        Config::parse(&doc.to_string(), |name| {
            (name == "JWT").then(|| "0123456789abcdefghijklmnopqrstuvwxyz".to_string())
        })
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "issuerUrl": "https://mcp.example.com",
            "jwtSecret": "${JWT}",
            "trustedSourceCidrs": ["10.0.0.0/8"],
            "redirectUriAllowlist": ["http://localhost:*"]
        })
    }

    #[test]
    fn defaults_are_applied() {
        let c = config(minimal()).unwrap();
        assert_eq!(c.access_token_ttl, 3600);
        assert_eq!(c.refresh_token_ttl, 2_592_000);
        assert_eq!(c.code_ttl, 60);
        assert_eq!(c.resource, "https://mcp.example.com/mcp");
        assert_eq!(c.user_header, "x-forwarded-user");
        assert_eq!(c.consent, ConsentMode::Dynamic);
        assert_eq!(c.jwt_secret.expose().len(), 36);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn short_secret_and_empty_cidrs_give_the_documented_lines() {
        let mut raw = minimal();
        raw["jwtSecret"] = "short".into();
        raw["trustedSourceCidrs"] = serde_json::json!([]);
        let errors = config(raw).unwrap_err().0;
        assert!(
            errors.contains(&"oauthAs.jwtSecret must be at least 32 bytes".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"oauthAs.trustedSourceCidrs must list at least one CIDR".to_string()),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_keys_inside_oauth_as_are_errors() {
        let mut raw = minimal();
        raw["issuerURL"] = "x".into();
        let errors = config(raw).unwrap_err().0;
        assert!(
            errors[0].contains("unknown field `issuerURL`"),
            "{errors:?}"
        );
    }

    #[test]
    fn issuer_must_be_canonical_without_trailing_slash() {
        for bad in [
            "https://mcp.example.com/",
            "ftp://x.example",
            "http://mcp.example.com",
            "HTTPS://MCP.example.com",
        ] {
            let mut raw = minimal();
            raw["issuerUrl"] = bad.into();
            assert!(config(raw).is_err(), "{bad}");
        }
        let mut raw = minimal();
        raw["issuerUrl"] = "http://127.0.0.1:8080".into();
        assert_eq!(config(raw).unwrap().warnings.len(), 1);
    }

    #[test]
    fn an_empty_redirect_allowlist_boots_with_a_warning() {
        let mut raw = minimal();
        raw["redirectUriAllowlist"] = serde_json::json!([]);
        let warnings = config(raw).unwrap().warnings;
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("redirectUriAllowlist is empty")),
            "{warnings:?}"
        );
    }

    #[test]
    fn unset_env_secret_is_named() {
        let mut raw = minimal();
        raw["jwtSecret"] = "${NOPE}".into();
        let errors = config(raw).unwrap_err().0;
        assert_eq!(
            errors,
            vec!["oauthAs.jwtSecret refers to ${NOPE}, which is not set".to_string()]
        );
    }

    #[test]
    fn abuse_limits_have_safe_defaults_and_can_be_disabled() {
        let c = config(minimal()).unwrap();
        assert_eq!(c.rate_limits, RateLimits::default());
        assert_eq!(c.rate_limits.register_per_minute, 20);
        assert_eq!(c.rate_limits.register_global_per_minute, 200);
        assert_eq!(c.rate_limits.token_per_minute, 600);
        assert_eq!(c.max_dynamic_clients, 10_000);
        assert_eq!(c.unused_client_ttl, 86_400);
        assert_eq!(c.rate_limits.authorize_per_minute, 60);
        assert_eq!(c.max_pending_codes_per_user, 32);
        assert_eq!(c.max_pending_codes, 100_000);

        let mut raw = minimal();
        raw["rateLimits"] = serde_json::json!({"registerPerMinute": 0, "tokenPerMinute": 5, "authorizePerMinute": 0});
        raw["maxDynamicClients"] = 0.into();
        raw["unusedClientTtlSeconds"] = 0.into();
        raw["maxPendingCodesPerUser"] = 4.into();
        raw["maxPendingCodes"] = 0.into();
        let c = config(raw).unwrap();
        assert_eq!(c.rate_limits.authorize_per_minute, 0);
        assert_eq!((c.max_pending_codes_per_user, c.max_pending_codes), (4, 0));
        assert_eq!(c.rate_limits.register_per_minute, 0);
        assert_eq!(c.rate_limits.register_global_per_minute, 200);
        assert_eq!(c.rate_limits.token_per_minute, 5);
        assert_eq!((c.max_dynamic_clients, c.unused_client_ttl), (0, 0));
    }

    #[test]
    fn abuse_limit_mistakes_are_named() {
        let mut raw = minimal();
        raw["rateLimits"] = serde_json::json!({"registerPerHour": 5});
        let errors = config(raw).unwrap_err().0;
        assert!(errors[0].contains("registerPerHour"), "{errors:?}");
        for bad in [
            serde_json::json!({"tokenPerMinute": -1}),
            serde_json::json!({"tokenPerMinute": "600"}),
            serde_json::json!({"authorizePerMinute": -1}),
        ] {
            let mut raw = minimal();
            raw["rateLimits"] = bad.clone();
            assert!(config(raw).is_err(), "{bad}");
        }
        for (key, bad) in [
            ("maxPendingCodesPerUser", serde_json::json!(-1)),
            ("maxPendingCodes", serde_json::json!("many")),
        ] {
            let mut raw = minimal();
            raw[key] = bad.clone();
            assert!(config(raw).is_err(), "{key}: {bad}");
        }
        let mut raw = minimal();
        raw["unusedClientTtlSeconds"] = 60.into();
        let errors = config(raw).unwrap_err().0;
        assert!(
            errors[0].starts_with("oauthAs.unusedClientTtlSeconds"),
            "{errors:?}"
        );
    }

    #[test]
    fn max_connections_defaults_to_4096_and_must_be_positive() {
        assert_eq!(config(minimal()).unwrap().max_connections, 4096);
        let mut raw = minimal();
        raw["maxConnections"] = 64.into();
        assert_eq!(config(raw).unwrap().max_connections, 64);
        let mut raw = minimal();
        raw["maxConnections"] = 0.into();
        let errors = config(raw).unwrap_err().0;
        assert_eq!(
            errors,
            vec!["oauthAs.maxConnections must be greater than 0".to_string()]
        );
        let mut raw = minimal();
        raw["maxConnections"] = (-1).into();
        assert!(config(raw).is_err());
    }

    #[test]
    fn signing_defaults_to_hs256_and_reads_key_files_beside_the_config() {
        let c = config(minimal()).unwrap();
        assert_eq!(c.signing.algorithm, crate::signing::SigningAlgorithm::HS256);
        assert!(c.signing.public_keys().is_empty());
        assert_eq!(
            c.signer().key_id(),
            crate::jwt::key_id(c.jwt_secret.expose())
        );

        let dir = tempfile::tempdir().unwrap();
        let key =
            crate::signing::PrivateKey::generate(crate::signing::SigningAlgorithm::ES256).unwrap();
        std::fs::write(
            dir.path().join("signing.pem"),
            key.to_pem().unwrap().as_bytes(),
        )
        .unwrap();
        let mut raw = minimal();
        raw["jwtSecret"] = "e".repeat(40).into();
        raw["signing"] = serde_json::json!({"algorithm": "ES256", "privateKeyFile": "signing.pem"});
        let path = dir.path().join("servers.json");
        let doc = serde_json::json!({"serverAuth": {"oauthAs": raw}});
        std::fs::write(&path, doc.to_string()).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.signer().key_id(), key.public_key().thumbprint());
        assert_eq!(c.verifier().key_ids(), [key.public_key().thumbprint()]);
        // jwtSecret stays required: it keys refresh tokens and consent tickets.
        let mut raw = raw.clone();
        raw.as_object_mut().unwrap().remove("jwtSecret");
        std::fs::write(
            &path,
            serde_json::json!({"serverAuth": {"oauthAs": raw}}).to_string(),
        )
        .unwrap();
        let errors = Config::load(&path).unwrap_err().0;
        assert!(
            errors[0].starts_with("oauthAs.jwtSecret is required"),
            "{errors:?}"
        );
        let mut raw = minimal();
        raw["signing"] = serde_json::json!({"algorithm": "EdDSA", "privateKey": "x"});
        let errors = config(raw).unwrap_err().0;
        assert!(
            errors[0].contains("unknown field `privateKey`"),
            "{errors:?}"
        );
    }

    #[test]
    fn client_metadata_documents_have_the_documented_defaults() {
        let c = config(minimal()).unwrap().client_metadata_documents;
        assert_eq!(c, ClientMetadataDocuments::default());
        assert!(c.enabled);
        assert!(c.allowed_hosts.is_empty());
        assert_eq!(c.max_bytes, 5120);
        assert_eq!(c.timeout_ms, 3000);
        assert_eq!(c.max_cache_seconds, 86_400);
        assert_eq!(c.stale_seconds, 86_400);
        assert!(!c.allow_private_addresses);
        assert_eq!(c.ca_pem, None);
        assert!(config(minimal()).unwrap().warnings.is_empty());
    }

    #[test]
    fn client_metadata_documents_are_configurable_and_test_options_warn() {
        let mut raw = minimal();
        raw["clientMetadataDocuments"] = serde_json::json!({
            "enabled": false, "allowedHosts": ["claude.ai", "*.openai.com"], "maxBytes": 2048,
            "timeoutMs": 500, "maxCacheSeconds": 60, "staleSeconds": 0, "allowPrivateAddresses": true
        });
        let c = config(raw).unwrap();
        let d = &c.client_metadata_documents;
        assert!(!d.enabled);
        assert_eq!(
            d.allowed_hosts,
            vec![
                HostPattern::Exact("claude.ai".into()),
                HostPattern::Subdomains(".openai.com".into())
            ]
        );
        assert_eq!((d.max_bytes, d.timeout_ms), (2048, 500));
        assert_eq!((d.max_cache_seconds, d.stale_seconds), (60, 0));
        assert!(d.allow_private_addresses);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("allowPrivateAddresses")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn client_metadata_document_mistakes_are_named() {
        let missing_ca = std::env::temp_dir().join("mcp-authd-no-such-ca.pem");
        for (value, expected) in [
            (
                serde_json::json!({"allowedHosts": ["https://claude.ai"]}),
                "allowedHosts",
            ),
            (
                serde_json::json!({"allowedHosts": ["*.com"]}),
                "allowedHosts",
            ),
            (serde_json::json!({"maxBytes": 0}), "maxBytes"),
            (serde_json::json!({"timeoutMs": 600000}), "timeoutMs"),
            (serde_json::json!({"caFile": missing_ca}), "caFile"),
            (serde_json::json!({"maxbytes": 1}), "maxbytes"),
        ] {
            let mut raw = minimal();
            raw["clientMetadataDocuments"] = value.clone();
            let errors = config(raw).unwrap_err().0;
            assert!(errors[0].contains(expected), "{value}: {errors:?}");
        }
    }

    #[test]
    fn issuer_path_is_kept() {
        let mut raw = minimal();
        raw["issuerUrl"] = "https://sso.example.com/mcp-auth".into();
        let c = config(raw).unwrap();
        assert_eq!(c.issuer_path, "/mcp-auth");
        assert_eq!(
            c.endpoint("/oauth/token"),
            "https://sso.example.com/mcp-auth/oauth/token"
        );
    }

    #[test]
    fn wrongly_typed_values_name_their_field_every_one() {
        let mut raw = minimal();
        raw["accessTokenTtlSeconds"] = "3600".into();
        raw["scopesSupported"] = "read".into();
        raw["rateLimits"] = serde_json::json!({"tokenPerMinute": "600"});
        raw["maxDynamicClients"] = (-1).into();
        raw["consent"] = true.into();
        let mut errors = config(raw).unwrap_err().0;
        errors.sort();
        assert_eq!(
            errors,
            vec![
                "oauthAs.accessTokenTtlSeconds: expected a number",
                "oauthAs.consent: expected a string",
                "oauthAs.maxDynamicClients: expected a whole number from 0 to 18446744073709551615",
                "oauthAs.rateLimits.tokenPerMinute: expected a number",
                "oauthAs.scopesSupported: expected a list",
            ]
        );
        let doc = serde_json::json!({"serverAuth": {"oauthAs": []}});
        let errors = Config::parse(&doc.to_string(), |_| None).unwrap_err().0;
        assert_eq!(
            errors,
            vec!["serverAuth.oauthAs: expected an object, found a list"]
        );
    }

    #[test]
    fn match_every_host_patterns_are_refused_and_dead_ones_warned() {
        let mut raw = minimal();
        raw["redirectUriAllowlist"] = serde_json::json!(["https://*", "http://localhost:*"]);
        let errors = config(raw).unwrap_err().0;
        assert!(
            errors[0]
                .starts_with("oauthAs.redirectUriAllowlist: \"https://*\" would allow any host"),
            "{errors:?}"
        );
        let mut raw = minimal();
        raw["redirectUriAllowlist"] = serde_json::json!(["http://localhost"]);
        let warnings = config(raw).unwrap().warnings;
        assert!(
            warnings.iter().any(|w| w
                .starts_with("oauthAs.redirectUriAllowlist: \"http://localhost\" can never match")),
            "{warnings:?}"
        );
    }

    #[test]
    fn secrets_that_look_like_mistakes_are_warned_about() {
        let warn_for = |secret: &str| {
            let mut raw = minimal();
            raw["jwtSecret"] = secret.into();
            config(raw).unwrap().warnings
        };
        let unexpanded = warn_for("$MCP_AUTH_JWT_SECRET_FOR_THE_PRODUCTION_HOST");
        assert!(
            unexpanded.iter().any(|w| w.contains("unexpanded variable")
                && w.contains("${MCP_AUTH_JWT_SECRET_FOR_THE_PRODUCTION_HOST}")),
            "{unexpanded:?}"
        );
        let repetitive = warn_for(&"ab".repeat(20));
        assert!(
            repetitive
                .iter()
                .any(|w| w.contains("only 2 distinct bytes")),
            "{repetitive:?}"
        );
        assert!(warn_for("kX8vQ2mN9pL4rT7wY1zB5cF3hJ6dG0sA").is_empty());
    }

    #[test]
    fn loopback_in_trusted_sources_is_warned_about() {
        for cidrs in [
            serde_json::json!(["127.0.0.1/32"]),
            serde_json::json!(["::1/128"]),
            serde_json::json!(["10.0.0.0/8", "127.0.0.0/8"]),
        ] {
            let mut raw = minimal();
            raw["trustedSourceCidrs"] = cidrs.clone();
            let warnings = config(raw).unwrap().warnings;
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("includes loopback") && w.contains("assert any user")),
                "{cidrs}: {warnings:?}"
            );
        }
    }
}
