//! The shared application state handed to every handler.

use std::sync::Arc;

use crate::cimd::ClientDocuments;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::oauth::consent::NonceGuard;
use crate::secrets::Keys;
use crate::store::{
    AssertionReplayCache, CodeLimits, CodeStore, MemoryAssertionReplayCache, MemoryCodeStore, Store,
};

/// Everything a request may need: configuration, stores, keys and the clock.
pub struct AppState {
    /// The validated configuration.
    pub config: Config,
    /// Clients, consents and refresh tokens.
    pub store: Arc<dyn Store>,
    /// Authorization codes.
    pub codes: Arc<dyn CodeStore>,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Keys derived from `jwtSecret`.
    pub keys: Keys,
    /// Consent tickets already used.
    pub consent_nonces: NonceGuard,
    /// Verifies this server's access tokens (current and previous keys).
    pub verifier: crate::jwt::Verifier,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Signs access tokens (`jwtSecret`, or the key of `oauthAs.signing`).
    pub signer: crate::jwt::TokenSigner,
    /// Client metadata documents and their keys, fetched and cached.
    pub documents: ClientDocuments,
    /// Client assertions (`jti`) already used.
    pub assertion_replay: Arc<dyn AssertionReplayCache>,
}

impl AppState {
    /// State with in-memory codes and the system clock.
    pub fn new(config: Config, store: Arc<dyn Store>) -> Self {
        Self::with_clock(config, store, Arc::new(SystemClock))
    }

    /// State with a given clock (tests move it forward).
    pub fn with_clock(config: Config, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let keys = Keys::derive(config.jwt_secret.expose());
        let verifier = config.verifier();
        let code_limits = CodeLimits {
            per_user: config.max_pending_codes_per_user,
            total: config.max_pending_codes,
        };
        let signer = config.signer();
        let documents = ClientDocuments::new(&config.client_metadata_documents);
        Self {
            verifier,
            signer,
            documents,
            assertion_replay: Arc::new(MemoryAssertionReplayCache::default()),
            config,
            store,
            codes: Arc::new(MemoryCodeStore::with_limits(code_limits)),
            clock,
            keys,
            consent_nonces: NonceGuard::default(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        }
    }

    /// Whether state changes can still be made durable.
    pub fn store_is_healthy(&self) -> bool {
        self.store.is_healthy()
    }

    /// Seconds since the epoch.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }
}
