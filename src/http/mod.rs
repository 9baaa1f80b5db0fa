//! HTTP: the router and the handlers. Handlers extract, call `oauth::*`, and shape the
//! response; they decide nothing themselves.

pub mod authorize;
pub mod error;
pub mod metadata;
pub mod pages;
pub mod register;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, header};
use axum::routing::{get, post};
use tower_http::cors::{Any, CorsLayer};

use crate::app::AppState;

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
}

/// Shared state as handlers receive it.
pub type Shared = Arc<AppState>;

/// Every route, in one place.
pub fn router(state: Shared) -> Router {
    let prefix = state.config.issuer_path.clone();
    let resource_path = url::Url::parse(&state.config.resource)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();

    // Cloud clients call these from browsers or servers without SSO: CORS allowed.
    let mut public = Router::new()
        .route(paths::AS_METADATA, get(metadata::authorization_server))
        .route(paths::OIDC_METADATA, get(metadata::authorization_server))
        .route(paths::PRM, get(metadata::protected_resource))
        .route(
            &format!("{prefix}{}", paths::REGISTER),
            post(register::register),
        )
        .route(&format!("{prefix}{}", paths::TOKEN), post(token::token))
        .route(&format!("{prefix}{}", paths::REVOKE), post(token::revoke));
    if !prefix.is_empty() {
        // RFC 8414 §3.1 path insertion, and the OpenID "append" form some clients try.
        for path in [
            format!("{}{prefix}", paths::AS_METADATA),
            format!("{}{prefix}", paths::OIDC_METADATA),
            format!("{prefix}{}", paths::OIDC_METADATA),
            format!("{prefix}{}", paths::AS_METADATA),
        ] {
            public = public.route(&path, get(metadata::authorization_server));
        }
    }
    if !resource_path.is_empty() {
        public = public.route(
            &format!("{}{resource_path}", paths::PRM),
            get(metadata::protected_resource),
        );
    }
    // claude.ai and 2025-03-26 clients fall back to these at the origin root.
    public = public
        .route("/token", post(token::token))
        .route("/register", post(register::register));
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("mcp-protocol-version"),
        ])
        .expose_headers([header::WWW_AUTHENTICATE]);

    // Server-to-server only (MCP servers with confidential credentials): no CORS.
    let introspection = Router::new().route(
        &format!("{prefix}{}", paths::INTROSPECT),
        post(token::introspect),
    );

    // Browser navigation behind SSO: never CORS.
    let browser = Router::new()
        .route(
            &format!("{prefix}{}", paths::AUTHORIZE),
            get(authorize::authorize),
        )
        .route("/authorize", get(authorize::authorize))
        .route(
            &format!("{prefix}{}", paths::CONSENT),
            post(authorize::consent),
        );

    Router::new()
        .merge(public.layer(cors))
        .merge(introspection)
        .merge(browser)
        .route("/healthz", get(metadata::healthz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
