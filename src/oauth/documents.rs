//! Client metadata documents as this server uses them (SPEC §12): fetched through
//! [`crate::fetch`], validated by [`crate::oauth::cimd`], cached per `Cache-Control`, served
//! stale while their host is unreachable, and every refusal audited.
//!
//! Document clients are not stored: the document is the registration, so it is resolved on
//! every use (from the cache, mostly), and a client whose document turns invalid or stays
//! unreachable stops working. Consents and refresh-token families name the URL as their
//! `client_id`. The cache belongs to the process (one per replica).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use url::Url;

use crate::config::{ClientMetadataDocuments, Config};
use crate::fetch::{FetchLimits, Fetcher};
use crate::oauth::cimd::{
    self, ClientDocument, DocumentAuth, KeySource, Refusal, check_client_id_url, host_is_allowed,
};
use crate::oauth::error::printable;
use crate::store::{AuthMethod, Client, Registration};

/// Freshness of a document whose answer has no `Cache-Control` lifetime, in seconds.
pub const DEFAULT_MAX_AGE: u64 = 300;

/// A JWKS is refetched for a `kid` it lacks (a key rotation) at most this often, in seconds.
pub const JWKS_REFETCH_SECONDS: u64 = 60;

/// Entries beyond this many make room by dropping the expired ones, then the stalest.
const MAX_CACHED: usize = 10_000;

/// Why a document client cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The URL or the document breaks a rule, or the host is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// The document could not be fetched and no copy may serve in its place.
    #[error("{0}")]
    Unreachable(String),
}

impl DocumentError {
    /// Whether the host could not be reached (rather than the document being wrong).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

impl From<Refusal> for DocumentError {
    fn from(refusal: Refusal) -> Self {
        Self::Invalid(refusal.0)
    }
}

struct Cached<T> {
    value: T,
    fetched_at: u64,
    fresh_until: u64,
}

type Cache<T> = Mutex<HashMap<String, Cached<T>>>;

/// The documents and JWKS fetched for document clients, with the fetcher.
pub struct ClientDocuments {
    settings: ClientMetadataDocuments,
    fetcher: Fetcher,
    documents: Cache<Arc<ClientDocument>>,
    jwks: Cache<Arc<JwkSet>>,
}

impl std::fmt::Debug for ClientDocuments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientDocuments")
            .field("fetcher", &self.fetcher)
            .finish_non_exhaustive()
    }
}

impl ClientDocuments {
    /// The cache and fetcher for `settings`.
    pub fn new(settings: &ClientMetadataDocuments) -> Self {
        let limits = FetchLimits {
            max_bytes: settings.max_bytes,
            timeout: Duration::from_millis(settings.timeout_ms),
            allow_private_addresses: settings.allow_private_addresses,
        };
        Self {
            fetcher: Fetcher::new(limits, settings.ca_pem.as_deref()),
            settings: settings.clone(),
            documents: Mutex::default(),
            jwks: Mutex::default(),
        }
    }

    /// The valid document of the client `client_id` (a URL), from the cache while fresh.
    /// A refusal is audited as `client_metadata_rejected`.
    pub async fn document(
        &self,
        config: &Config,
        client_id: &str,
        now: u64,
    ) -> Result<Arc<ClientDocument>, DocumentError> {
        let resolved = self.resolve(config, client_id, now).await;
        if let Err(e) = &resolved {
            audit_rejection(client_id, e);
        }
        resolved
    }

    async fn resolve(
        &self,
        config: &Config,
        client_id: &str,
        now: u64,
    ) -> Result<Arc<ClientDocument>, DocumentError> {
        let url = check_client_id_url(client_id)?;
        host_is_allowed(&url, &self.settings.allowed_hosts)?;
        self.cached(&self.documents, &url, now, false, |body| {
            cimd::parse_document(
                &url,
                body,
                &config.redirect_allowlist,
                &config.scopes_supported,
            )
            .map(Arc::new)
        })
        .await
    }

    /// The public keys of a `private_key_jwt` client: its inline `jwks`, or its `jwks_uri`
    /// fetched under the document rules. `refetch` asks for a new copy of a `jwks_uri` (a
    /// `kid` was not found), which happens at most once a minute; `None` then means no
    /// refetch was allowed yet. A refusal is audited as `client_metadata_rejected`.
    pub async fn keys(
        &self,
        document: &ClientDocument,
        now: u64,
        refetch: bool,
    ) -> Option<Result<Arc<JwkSet>, DocumentError>> {
        let url = match &document.auth {
            DocumentAuth::PrivateKeyJwt(KeySource::Inline(keys)) => {
                return (!refetch).then(|| Ok(Arc::new(keys.clone())));
            }
            DocumentAuth::PrivateKeyJwt(KeySource::Uri(url)) => url,
            DocumentAuth::None => {
                return Some(Err(DocumentError::Invalid(
                    "the document declares no keys".into(),
                )));
            }
        };
        if refetch {
            let last = lock(&self.jwks).get(url.as_str()).map(|c| c.fetched_at);
            if last.is_some_and(|at| now < at.saturating_add(JWKS_REFETCH_SECONDS)) {
                return None;
            }
        }
        let keys = self
            .cached(&self.jwks, url, now, refetch, |body| {
                cimd::parse_jwks(body).map(Arc::new)
            })
            .await
            .map_err(|e| match e {
                DocumentError::Invalid(why) => DocumentError::Invalid(format!("jwks_uri: {why}")),
                DocumentError::Unreachable(why) => {
                    DocumentError::Unreachable(format!("jwks_uri: {why}"))
                }
            });
        if let Err(e) = &keys {
            audit_rejection(&document.client_id, e);
        }
        Some(keys)
    }

    /// The cached value for `url` while fresh (unless `force`); else a fetch, parsed by
    /// `parse`. When the fetch cannot reach the host, a copy past its freshness serves for
    /// up to `staleSeconds` more; a fetched answer that is refused replaces it.
    async fn cached<T: Clone>(
        &self,
        cache: &Cache<T>,
        url: &Url,
        now: u64,
        force: bool,
        parse: impl FnOnce(&[u8]) -> Result<T, Refusal>,
    ) -> Result<T, DocumentError> {
        let key = url.as_str();
        if !force
            && let Some(entry) = lock(cache).get(key)
            && now < entry.fresh_until
        {
            return Ok(entry.value.clone());
        }
        let outcome = match self.fetcher.get(url).await {
            Ok(fetched) => parse(&fetched.body)
                .map(|value| (value, fetched.cache_control))
                .map_err(DocumentError::from),
            Err(e) if e.is_refusal() => Err(DocumentError::Invalid(e.to_string())),
            Err(e) => Err(DocumentError::Unreachable(e.to_string())),
        };
        let mut entries = lock(cache);
        match outcome {
            Ok((value, cache_control)) => {
                let lifetime = cache_control
                    .as_deref()
                    .and_then(cimd::max_age)
                    .unwrap_or(DEFAULT_MAX_AGE)
                    .min(self.settings.max_cache_seconds);
                if entries.len() >= MAX_CACHED && !entries.contains_key(key) {
                    make_room(&mut entries, now, self.settings.stale_seconds);
                }
                entries.insert(
                    key.to_string(),
                    Cached {
                        value: value.clone(),
                        fetched_at: now,
                        fresh_until: now.saturating_add(lifetime),
                    },
                );
                Ok(value)
            }
            Err(DocumentError::Unreachable(why)) => match entries.get(key) {
                Some(entry)
                    if now
                        < entry
                            .fresh_until
                            .saturating_add(self.settings.stale_seconds) =>
                {
                    tracing::warn!(url = %key, reason = %why, "serving a stale copy: the refetch failed");
                    Ok(entry.value.clone())
                }
                _ => Err(DocumentError::Unreachable(why)),
            },
            Err(invalid) => {
                entries.remove(key);
                Err(invalid)
            }
        }
    }
}

fn lock<T>(cache: &Cache<T>) -> std::sync::MutexGuard<'_, HashMap<String, Cached<T>>> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

fn make_room<T>(entries: &mut HashMap<String, Cached<T>>, now: u64, stale_seconds: u64) {
    entries.retain(|_, e| now < e.fresh_until.saturating_add(stale_seconds));
    if entries.len() >= MAX_CACHED
        && let Some(stalest) = entries
            .iter()
            .min_by_key(|(_, e)| e.fresh_until)
            .map(|(k, _)| k.clone())
    {
        entries.remove(&stalest);
    }
}

fn audit_rejection(client_id: &str, error: &DocumentError) {
    tracing::info!(
        target: "audit",
        event = "client_metadata_rejected",
        client_id = %printable(client_id),
        reason = %error,
        unreachable = error.is_unreachable(),
        "client metadata document rejected"
    );
}

impl ClientDocument {
    /// The client as the authorization and token endpoints see it.
    pub fn to_client(&self) -> Client {
        Client {
            client_id: self.client_id.clone(),
            client_name: self.client_name.clone(),
            redirect_uris: self.redirect_uris.clone(),
            token_endpoint_auth_method: match self.auth {
                DocumentAuth::None => AuthMethod::None,
                DocumentAuth::PrivateKeyJwt(_) => AuthMethod::PrivateKeyJwt,
            },
            grant_types: self.grant_types.clone(),
            response_types: vec!["code".to_string()],
            scope: self.scope.clone(),
            secret_hash: None,
            client_id_issued_at: 0,
            registration: Registration::MetadataDocument,
            application_type: None,
        }
    }
}

/// Whether `client_id` is to be resolved as a metadata document under `config`.
pub fn is_document_client(config: &Config, client_id: &str) -> bool {
    config.client_metadata_documents.enabled && cimd::is_document_url(client_id)
}
