//! HTTP: the router and the handlers. Handlers extract, call `oauth::*`, and shape the
//! response; they decide nothing themselves.

pub mod authorize;
pub mod body;
pub mod client;
pub mod conn;
pub mod error;
pub mod issuer;
pub mod metadata;
pub mod metrics;
pub mod pages;
pub mod rate_limit;
pub mod register;
pub mod token;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, header};
use axum::middleware::{from_fn_with_state, map_response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Router};
use tower_http::cors::{Any, CorsLayer};

use crate::oauth::Server;
use rate_limit::{Endpoint, RateLimiter};

/// Request bodies above this many bytes are refused with 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Paths relative to the issuer's path.
pub mod paths {
    /// The authorization endpoint.
    pub const AUTHORIZE: &str = "/oauth/authorize";
    /// Where the consent form posts.
    pub const CONSENT: &str = "/oauth/authorize/consent";
    /// The token endpoint.
    pub const TOKEN: &str = "/oauth/token";
    /// The registration endpoint.
    pub const REGISTER: &str = "/oauth/register";
    /// The revocation endpoint.
    pub const REVOKE: &str = "/oauth/revoke";
    /// The introspection endpoint.
    pub const INTROSPECT: &str = "/oauth/introspect";
    /// RFC 8414 metadata.
    pub const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
    /// OpenID discovery (same document).
    pub const OIDC_METADATA: &str = "/.well-known/openid-configuration";
    /// RFC 9728 protected resource metadata.
    pub const PRM: &str = "/.well-known/oauth-protected-resource";
    /// The public signing keys (RFC 7517 JWK Set), advertised as `jwks_uri`.
    pub const JWKS: &str = "/.well-known/jwks.json";
}

/// Shared state as handlers receive it.
pub type Shared = Arc<Server>;

/// Every route, in one place. The endpoints live under each issuer's path (SPEC §11: one
/// set of routes per distinct path, marked with its [`issuer::Mount`]); the root aliases
/// and the root discovery documents are shared, answering for the request's issuer.
pub fn router(state: Shared) -> Router {
    let limiter = Arc::new(new_limiter(&state));
    router_with(state, limiter)
}

/// The rate limiter for `state`'s configuration, with empty buckets.
fn new_limiter(state: &Server) -> RateLimiter {
    RateLimiter::new(
        state.config.rate_limits,
        state.config.trusted_sources.clone(),
        state.clock.clone(),
    )
}

/// [`router`] with a given rate limiter (a reload hands over the running one's buckets).
fn router_with(state: Shared, limiter: Arc<RateLimiter>) -> Router {
    // Sorted and without repeats: issuers often share a path ("" on hosts of their own), and
    // a route may be registered only once.
    let prefixes: std::collections::BTreeSet<String> =
        state.config.issuers().map(|i| i.path.clone()).collect();
    let resource_paths: std::collections::BTreeSet<String> = state
        .config
        .issuers()
        .map(|i| i.resource_path())
        .filter(|p| !p.is_empty())
        .collect();

    // Registration, token, revocation and introspection answer anyone: rate-limited per
    // client address.
    let register_route = || -> MethodRouter<Shared> {
        post(register::register).layer(from_fn_with_state(
            (limiter.clone(), Endpoint::Register),
            rate_limit::enforce,
        ))
    };
    let token_route = || -> MethodRouter<Shared> {
        post(token::token).layer(from_fn_with_state(
            (limiter.clone(), Endpoint::Token),
            rate_limit::enforce,
        ))
    };
    // Introspection and revocation authenticate clients too, so they are limited like the
    // token endpoint (SPEC §17).
    let revoke_route = || -> MethodRouter<Shared> {
        post(token::revoke).layer(from_fn_with_state(
            (limiter.clone(), Endpoint::Revoke),
            rate_limit::enforce,
        ))
    };
    let introspect_route = || -> MethodRouter<Shared> {
        post(token::introspect).layer(from_fn_with_state(
            (limiter.clone(), Endpoint::Introspect),
            rate_limit::enforce,
        ))
    };
    let under = |prefix: &str, route: MethodRouter<Shared>| {
        route.layer(Extension(issuer::Mount::IssuerPath(prefix.to_string())))
    };

    // Cloud clients call these from browsers or servers without SSO: CORS allowed.
    let mut public = Router::new()
        .route(paths::AS_METADATA, get(metadata::authorization_server))
        .route(paths::OIDC_METADATA, get(metadata::authorization_server))
        .route(paths::PRM, get(metadata::protected_resource))
        .route(paths::JWKS, get(metadata::jwks));
    // Server-to-server only (MCP servers with confidential credentials): no CORS.
    let mut introspection = Router::new();
    // Browser navigation behind SSO: never CORS.
    let mut browser = Router::new().route("/authorize", get(authorize::authorize));
    for prefix in &prefixes {
        public = public
            .route(
                &format!("{prefix}{}", paths::REGISTER),
                under(prefix, register_route()),
            )
            .route(
                &format!("{prefix}{}", paths::TOKEN),
                under(prefix, token_route()),
            )
            .route(
                &format!("{prefix}{}", paths::REVOKE),
                under(prefix, revoke_route()),
            );
        introspection = introspection.route(
            &format!("{prefix}{}", paths::INTROSPECT),
            under(prefix, introspect_route()),
        );
        browser = browser
            .route(
                &format!("{prefix}{}", paths::AUTHORIZE),
                under(prefix, get(authorize::authorize)),
            )
            .route(
                &format!("{prefix}{}", paths::CONSENT),
                under(prefix, post(authorize::consent)),
            );
        if prefix.is_empty() {
            continue;
        }
        // RFC 8414 §3.1 path insertion, and the OpenID "append" form some clients try.
        for path in [
            format!("{}{prefix}", paths::AS_METADATA),
            format!("{}{prefix}", paths::OIDC_METADATA),
            format!("{prefix}{}", paths::OIDC_METADATA),
            format!("{prefix}{}", paths::AS_METADATA),
        ] {
            public = public.route(&path, under(prefix, get(metadata::authorization_server)));
        }
        // `jwks_uri` is under the issuer: `{issuer}/.well-known/jwks.json`.
        public = public.route(
            &format!("{prefix}{}", paths::JWKS),
            under(prefix, get(metadata::jwks)),
        );
    }
    for resource_path in &resource_paths {
        public = public.route(
            &format!("{}{resource_path}", paths::PRM),
            get(metadata::protected_resource).layer(Extension(issuer::Mount::ResourcePath(
                resource_path.clone(),
            ))),
        );
    }
    // claude.ai and 2025-03-26 clients fall back to these at the origin root.
    public = public
        .route("/token", token_route())
        .route("/register", register_route());
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("mcp-protocol-version"),
        ])
        .expose_headers([header::WWW_AUTHENTICATE]);

    let introspection = introspection.layer(map_response(error::json_rejections));
    let browser = browser
        // The authorization endpoint counts requests per signed-in user
        // (`rateLimits.authorizePerMinute`) in the same limiter.
        .layer(Extension(limiter.clone()))
        .layer(map_response(error::page_rejections));

    Router::new()
        .merge(
            public
                .layer(map_response(error::json_rejections))
                .layer(cors),
        )
        .merge(introspection)
        .merge(browser)
        .route("/livez", get(metadata::livez))
        .route("/readyz", get(metadata::readyz))
        .route("/healthz", get(metadata::readyz))
        // After routing, so that the route pattern (never the raw path) is the label.
        .route_layer(from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(Extension(Arc::new(metadata::RenderedDocuments::new(
            &state.config,
        ))))
        .with_state(state)
}

/// The running application: its state and the router built from it, replaced together when
/// the configuration is reloaded ([`LiveApp::reconfigure`]). Each request takes the router
/// current when it starts (see [`conn::Routes`]) and keeps it to the end, so requests in
/// flight finish under the configuration they started with.
pub struct LiveApp {
    current: std::sync::RwLock<Current>,
    /// Held for a whole reconfiguration, so that two never interleave.
    reconfiguring: std::sync::Mutex<()>,
}

#[derive(Clone)]
struct Current {
    state: Shared,
    limiter: Arc<RateLimiter>,
    router: Router,
}

impl LiveApp {
    /// The application for `state`.
    pub fn new(state: Shared) -> Arc<Self> {
        let limiter = Arc::new(new_limiter(&state));
        let router = router_with(state.clone(), limiter.clone());
        Arc::new(Self {
            current: std::sync::RwLock::new(Current {
                state,
                limiter,
                router,
            }),
            reconfiguring: std::sync::Mutex::new(()),
        })
    }

    fn current_parts(&self) -> Current {
        // Only ever replaced whole, so a poisoned lock still holds a consistent value.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The state requests starting now are served with.
    pub fn state(&self) -> Shared {
        self.current_parts().state
    }

    /// Switches to `config`: a state from [`Server::reconfigured`] (sharing the stores and
    /// everything else that outlives a configuration), a rate limiter that keeps the running
    /// one's buckets, and a router built from both. Requests that start afterwards, on new
    /// and on open connections alike, use them. Returns the new state.
    pub fn reconfigure(&self, config: crate::config::Config) -> Shared {
        let _one_at_a_time = self.reconfiguring.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current_parts();
        let state = Arc::new(old.state.reconfigured(config));
        let limiter = Arc::new(old.limiter.reconfigured(
            state.config.rate_limits,
            state.config.trusted_sources.clone(),
        ));
        let router = router_with(state.clone(), limiter.clone());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Current {
            state: state.clone(),
            limiter,
            router,
        };
        state
    }
}

impl conn::Routes for LiveApp {
    fn current(&self) -> Router {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .router
            .clone()
    }
}

/// How often unused dynamic clients are looked for (the first pass runs at start).
pub const CLIENT_COLLECTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Serves the router on `listener` until `shutdown` completes, then drains in-flight requests,
/// with the default [`conn::Timeouts`]; see [`serve_with`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, shutdown, conn::Timeouts::default()).await
}

/// Serves the router on `listener` (at most `maxConnections` connections, with `timeouts`; see
/// [`conn`]) until `shutdown` completes, then drains in-flight requests for at most
/// `timeouts.shutdown`. Meanwhile a background task removes unused dynamic clients every
/// [`CLIENT_COLLECTION_INTERVAL`] (see [`collect_unused_clients`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    timeouts: conn::Timeouts,
) -> std::io::Result<()> {
    serve_live(listener, LiveApp::new(state), shutdown, timeouts).await
}

/// [`serve_with`] for an application that may be reconfigured while it serves: every request
/// uses the router current when it starts, and the collection of unused clients the
/// configuration current at each pass. `maxConnections` is read once, at start.
pub async fn serve_live(
    listener: tokio::net::TcpListener,
    live: Arc<LiveApp>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    timeouts: conn::Timeouts,
) -> std::io::Result<()> {
    let collector = tokio::spawn(collect_periodically(live.clone()));
    let max_connections = live.state().config.max_connections;
    let served = conn::serve(listener, live, max_connections, timeouts, shutdown).await;
    collector.abort();
    served
}

/// Removes the dynamically registered clients older than `unusedClientTtlSeconds` that no
/// user approved and that hold no refresh token (never pre-provisioned clients); how many.
pub async fn collect_unused_clients(app: &Server) -> usize {
    let ttl = app.config.unused_client_ttl;
    if ttl == 0 {
        return 0;
    }
    let older_than = app.now().saturating_sub(ttl);
    match app.store.remove_unused_dynamic_clients(older_than).await {
        Ok(0) => 0,
        Ok(removed) => {
            tracing::info!(target: "audit", removed, "removed dynamically registered clients that were never used");
            removed
        }
        // The store is then unhealthy and /healthz says so; nothing else to do here.
        Err(_) => 0,
    }
}

/// Deletes what expired (codes, consent tickets, refresh families, deny-list entries) by the
/// server's clock; how many records went. Safe on every replica at once: each record is
/// deleted by whichever gets there first.
pub async fn prune_expired(app: &Server) -> usize {
    match app.store.prune_expired(app.now()).await {
        Ok(pruned) => pruned,
        // The store is then unhealthy and /readyz says so; nothing else to do here.
        Err(e) => {
            tracing::warn!("expired records not pruned: {e}");
            0
        }
    }
}

/// How often expired records are pruned.
pub const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

async fn collect_periodically(live: Arc<LiveApp>) {
    let mut prune = tokio::time::interval(PRUNE_INTERVAL);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collect = tokio::time::interval(CLIENT_COLLECTION_INTERVAL);
    collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = prune.tick() => {
                prune_expired(&live.state()).await;
            }
            _ = collect.tick() => {
                collect_unused_clients(&live.state()).await;
            }
        }
    }
}
