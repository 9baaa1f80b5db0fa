//! `servers.json` → [`Config`]: parsed and validated once at boot.
//!
//! Only `serverAuth.oauthAs` is read; other top-level keys belong to the MCP server that shares
//! the file. Every problem is collected, so `check` and `serve` print one line per fix.
//!
//! Two passes: `raw` reads the section as written (naming every wrongly typed field),
//! `validate` checks it field group by field group and builds the one typed [`Config`].
//! Configuration sits beside the store, above [`crate::model`] only: it uses the model's
//! grammars (redirect URI patterns) and the signing primitives, never the protocol rules.

pub mod issuer;
mod raw;
mod resource_side;
#[cfg(test)]
mod tests;
mod validate;

use std::path::{Path, PathBuf};

use ::http::HeaderName;
use serde::Deserialize;

pub use issuer::Issuer;
pub(crate) use resource_side::parse_resource_section;
pub(crate) use validate::resolve_secret;

use crate::model::{Grant, RedirectPattern};
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

/// An `allowedHosts` entry: a host name, or `*.example.com` for every subdomain of
/// `example.com` (not `example.com` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// This host only.
    Exact(String),
    /// Any host ending in this suffix (which starts with a dot).
    Subdomains(String),
}

impl HostPattern {
    /// Parses an entry; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let lower = raw.to_ascii_lowercase();
        let (name, wildcard) = match lower.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (lower.as_str(), false),
        };
        let is_host_name = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !is_host_name {
            return Err(format!(
                "{raw:?} is not a host name or *.domain (no scheme, port or path)"
            ));
        }
        if wildcard && !name.contains('.') {
            return Err(format!(
                "{raw:?} would allow every host under a top-level domain"
            ));
        }
        Ok(if wildcard {
            Self::Subdomains(format!(".{name}"))
        } else {
            Self::Exact(name.to_string())
        })
    }

    /// Whether `host` (lower case, as the URL parser gives it) is allowed.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
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

/// `oauthAs.store`: where registrations, consents and refresh tokens live. This build has the
/// file store only (`{"type": "file"}`, the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSettings {
    /// `path`: the state file, relative paths taken from the configuration's directory
    /// (default: `auth_server.json` beside it). `MCP_AUTH_SERVER_PATH` wins over it.
    pub path: Option<PathBuf>,
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
    /// `store`: where the state lives (read at start only; a change needs a restart).
    pub store: StoreSettings,
    /// `signing`: how access tokens are signed (HS256 with `jwtSecret`, or a key pair).
    pub signing: crate::signing::SigningConfig,
    /// `clientMetadataDocuments`.
    pub client_metadata_documents: ClientMetadataDocuments,
    /// The primary issuer: `issuer`, `issuer_path` and `resource` as one value.
    primary_issuer: Issuer,
    /// `additionalIssuers` (SPEC §11), in the order written: distinct from each other and
    /// from the primary, each on a host (and port) of its own.
    additional_issuers: Vec<Issuer>,
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
        Self::load_with_section(path).map(|(config, _)| config)
    }

    /// Like [`Self::load`], also returning the `serverAuth.oauthAs` object as written, which a
    /// reload compares with the running one to name what changed.
    pub fn load_with_section(path: &Path) -> Result<(Self, serde_json::Value), ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
        let config = Self::parse_in(&text, config_dir(path), |name| std::env::var(name).ok())?;
        let section = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|doc| doc.get("serverAuth")?.get("oauthAs").cloned())
            .unwrap_or_default();
        Ok((config, section))
    }

    /// `oauthAs.store` of the file at `path`, read leniently: the administrative commands
    /// need the state's location without the secrets a full load resolves. Anything
    /// unreadable gives the default (`serve` and `check` report it from the full load).
    pub fn peek_store(path: &Path) -> StoreSettings {
        let store_path = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|doc| {
                let path = doc
                    .get("serverAuth")?
                    .get("oauthAs")?
                    .get("store")?
                    .get("path")?
                    .as_str()?
                    .to_string();
                (!path.is_empty()).then_some(path)
            });
        StoreSettings {
            path: store_path.map(|p| config_dir(path).join(p)),
        }
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
        validate::validate(raw::parse_section(section)?, base_dir, env)
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

    /// The access-token verifier for every issuer and its resource (SPEC §11): the current
    /// secret plus `previousJwtSecrets` under HS256, the current and previous public keys
    /// otherwise.
    pub fn verifier(&self) -> crate::jwt::Verifier {
        let verifier = self.primary_verifier();
        self.additional_issuers
            .iter()
            .fold(verifier, |verifier, issuer| {
                verifier.with_additional_issuer(&issuer.url, &issuer.resource)
            })
    }

    /// The verifier for the primary issuer and resource alone.
    fn primary_verifier(&self) -> crate::jwt::Verifier {
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

    /// An endpoint URL under the primary issuer, e.g. `endpoint("/oauth/token")`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Every issuer this server answers as (SPEC §11): the primary first, then
    /// `additionalIssuers` in the order written.
    pub fn issuers(&self) -> impl Iterator<Item = &Issuer> {
        std::iter::once(&self.primary_issuer).chain(&self.additional_issuers)
    }

    /// The primary issuer (`issuerUrl`, `resourceUrl`).
    pub fn primary_issuer(&self) -> &Issuer {
        &self.primary_issuer
    }

    /// The issuer a request is addressed to (SPEC §11): by `X-Forwarded-Host` when `peer` is
    /// in `trustedSourceCidrs`, else by `Host` (or the HTTP/2 `uri_authority`); an authority
    /// no issuer serves gets the primary. A function of the configuration and the request
    /// only, so it follows a reloaded configuration.
    pub fn issuer_for(
        &self,
        peer: Option<std::net::IpAddr>,
        headers: &::http::HeaderMap,
        uri_authority: Option<&str>,
    ) -> &Issuer {
        let trusted = peer.is_some_and(|peer| self.trusted_sources.contains(peer));
        let authority = crate::proxy_trust::request_authority(headers, trusted, uri_authority);
        issuer::select(&self.primary_issuer, &self.additional_issuers, authority)
    }

    /// The issuer a grant (a code or a refresh-token family) was issued under: the one it
    /// names, or the primary for a grant that names none (issued by the primary, or stored
    /// before grants named theirs).
    pub fn issuer_of<'a>(&'a self, grant: &'a Grant) -> &'a str {
        if grant.issuer.is_empty() {
            &self.issuer
        } else {
            &grant.issuer
        }
    }
}

/// The directory a configuration file is in (`.` for a bare file name).
fn config_dir(config_path: &Path) -> &Path {
    config_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}
