//! The authorization server as the protocol rules see it: what they decide with.

use std::sync::Arc;

use super::documents::ClientDocuments;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::secrets::Keys;
use crate::store::{AssertionReplayCache, CodeLimits, MemoryAssertionReplayCache, Store};

/// Everything a protocol rule may need: configuration, stores, keys and the clock. The HTTP
/// layer shares one per configuration among its handlers (`http::Shared`); it holds nothing
/// of HTTP.
///
/// A configuration reload builds a new `Server` with [`Server::reconfigured`]: everything
/// derived from [`Config`] is rebuilt, and what outlives a configuration (the stores, the
/// used-assertion memory, the metrics) is shared with the old one.
pub struct Server {
    /// The validated configuration.
    pub config: Config,
    /// Everything kept: clients, consents, codes, refresh families, the deny-list and used
    /// consent tickets.
    pub store: Arc<dyn Store>,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Keys derived from `jwtSecret`.
    pub keys: Keys,
    /// Keys derived from each of `previousJwtSecrets`, in order: consent tickets and refresh
    /// successors made before a `jwtSecret` rotation are still recognised.
    pub previous_keys: Vec<Keys>,
    /// Verifies this server's access tokens (current and previous keys).
    pub verifier: crate::jwt::Verifier,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Signs access tokens (`jwtSecret`, or the key of `oauthAs.signing`).
    pub signer: crate::jwt::TokenSigner,
    /// Client metadata documents and their keys, fetched and cached.
    pub documents: Arc<ClientDocuments>,
    /// Client assertions (`jti`) already used.
    pub assertion_replay: Arc<dyn AssertionReplayCache>,
}

impl Server {
    /// State with in-memory codes and the system clock.
    pub fn new(config: Config, store: Arc<dyn Store>) -> Self {
        Self::with_clock(config, store, Arc::new(SystemClock))
    }

    /// State with a given clock (tests move it forward).
    pub fn with_clock(config: Config, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let documents = Arc::new(ClientDocuments::new(&config.client_metadata_documents));
        Self::build(
            config,
            Shared {
                store,
                clock,
                metrics: Arc::new(crate::metrics::Metrics::new()),
                documents,
                assertion_replay: Arc::new(MemoryAssertionReplayCache::new(
                    super::assertion::LEEWAY_SECONDS,
                )),
            },
        )
    }

    /// The state for `config` after a reload: keys, verifier, signer and settings from
    /// `config`; the stores, the clock, the used tickets and assertions and the metrics shared
    /// with `self`. The client document cache is kept unless something its entries were
    /// validated or fetched under changed (their settings, the redirect allowlist, the
    /// scopes). The code limits are read from the configuration at each insert.
    pub fn reconfigured(&self, config: Config) -> Self {
        let old = &self.config;
        let documents = if old.client_metadata_documents == config.client_metadata_documents
            && old.redirect_allowlist == config.redirect_allowlist
            && old.scopes_supported == config.scopes_supported
        {
            self.documents.clone()
        } else {
            Arc::new(ClientDocuments::new(&config.client_metadata_documents))
        };
        Self::build(
            config,
            Shared {
                store: self.store.clone(),
                clock: self.clock.clone(),
                metrics: self.metrics.clone(),
                documents,
                assertion_replay: self.assertion_replay.clone(),
            },
        )
    }

    fn build(config: Config, shared: Shared) -> Self {
        Self {
            keys: Keys::derive(config.jwt_secret.expose()),
            previous_keys: config
                .previous_jwt_secrets
                .iter()
                .map(|s| Keys::derive(s.expose()))
                .collect(),
            verifier: config.verifier(),
            signer: config.signer(),
            config,
            store: shared.store,
            clock: shared.clock,
            metrics: shared.metrics,
            documents: shared.documents,
            assertion_replay: shared.assertion_replay,
        }
    }

    /// The current keys, then those of `previousJwtSecrets`.
    pub fn all_keys(&self) -> impl Iterator<Item = &Keys> {
        std::iter::once(&self.keys).chain(&self.previous_keys)
    }

    /// The bounds on outstanding authorization codes (SPEC §16).
    pub fn code_limits(&self) -> CodeLimits {
        CodeLimits {
            per_user: self.config.max_pending_codes_per_user,
            total: self.config.max_pending_codes,
        }
    }

    /// Seconds since the epoch.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }
}

/// What outlives a configuration.
struct Shared {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<crate::metrics::Metrics>,
    documents: Arc<ClientDocuments>,
    assertion_replay: Arc<dyn AssertionReplayCache>,
}
