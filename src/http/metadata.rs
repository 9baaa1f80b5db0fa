//! Discovery documents (RFC 8414, RFC 9728) and the health check.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::issuer::RequestIssuer;
use super::{Shared, paths};
use crate::config::{Config, Issuer};
use crate::oauth::cimd::SIGNING_ALGORITHMS;

/// The RFC 8414 authorization server metadata of `issuer`: its own `issuer` and every
/// endpoint under its own URL.
pub fn authorization_server_document(config: &Config, issuer: &Issuer) -> Value {
    let mut document = base_document(config, issuer);
    if config.client_metadata_documents.enabled {
        // SPEC §12: claude.ai uses a document only when this flag is set and `none` is listed.
        document["client_id_metadata_document_supported"] = json!(true);
        for methods in [
            "token_endpoint_auth_methods_supported",
            "revocation_endpoint_auth_methods_supported",
        ] {
            if let Some(list) = document[methods].as_array_mut() {
                list.push(json!("private_key_jwt"));
            }
        }
        document["token_endpoint_auth_signing_alg_values_supported"] = json!(SIGNING_ALGORITHMS);
        document["revocation_endpoint_auth_signing_alg_values_supported"] =
            json!(SIGNING_ALGORITHMS);
    }
    document
}

fn base_document(config: &Config, issuer: &Issuer) -> Value {
    let mut document = json!({
        "issuer": issuer.url,
        "authorization_endpoint": issuer.endpoint(paths::AUTHORIZE),
        "token_endpoint": issuer.endpoint(paths::TOKEN),
        "registration_endpoint": issuer.endpoint(paths::REGISTER),
        "revocation_endpoint": issuer.endpoint(paths::REVOKE),
        "introspection_endpoint": issuer.endpoint(paths::INTROSPECT),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": config.scopes_supported,
        "authorization_response_iss_parameter_supported": true,
    });
    // A JWKS exists only for key pairs: an HS256 secret is never published.
    if config.signing.algorithm.is_asymmetric() {
        document["jwks_uri"] = Value::String(issuer.endpoint(paths::JWKS));
    }
    document
}

/// The RFC 9728 protected resource metadata for the MCP server as `issuer` protects it: its
/// resource, and itself as the one authorization server.
pub fn protected_resource_document(config: &Config, issuer: &Issuer) -> Value {
    json!({
        "resource": issuer.resource,
        "authorization_servers": [issuer.url],
        "scopes_supported": config.scopes_supported,
        "bearer_methods_supported": ["header"],
    })
}

/// Both discovery documents of every issuer, serialised once per configuration: they depend
/// on the configuration alone, and building and serialising a `Value` was two thirds of a
/// metadata request's work (docs/performance.md). The router is rebuilt on reload, and this
/// with it.
#[derive(Debug, Default)]
pub struct RenderedDocuments {
    /// Issuer URL → (authorization server metadata, protected resource metadata).
    by_issuer: HashMap<String, (Bytes, Bytes)>,
}

impl RenderedDocuments {
    /// The documents of every issuer of `config`.
    pub fn new(config: &Config) -> Self {
        let render = |document: Value| Bytes::from(document.to_string());
        let by_issuer = config
            .issuers()
            .map(|issuer| {
                let documents = (
                    render(authorization_server_document(config, issuer)),
                    render(protected_resource_document(config, issuer)),
                );
                (issuer.url.clone(), documents)
            })
            .collect();
        Self { by_issuer }
    }
}

/// A JSON answer of bytes already serialised, as `Json` would send them.
fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /.well-known/oauth-authorization-server` (and its aliases), for the request's issuer.
pub async fn authorization_server(
    State(app): State<Shared>,
    Extension(rendered): Extension<Arc<RenderedDocuments>>,
    RequestIssuer(issuer): RequestIssuer,
) -> Response {
    match rendered.by_issuer.get(&issuer.url) {
        Some((document, _)) => json_bytes(document.clone()),
        None => Json(authorization_server_document(&app.config, &issuer)).into_response(),
    }
}

/// `GET /.well-known/oauth-protected-resource[/<path>]`, for the request's issuer.
pub async fn protected_resource(
    State(app): State<Shared>,
    Extension(rendered): Extension<Arc<RenderedDocuments>>,
    RequestIssuer(issuer): RequestIssuer,
) -> Response {
    match rendered.by_issuer.get(&issuer.url) {
        Some((_, document)) => json_bytes(document.clone()),
        None => Json(protected_resource_document(&app.config, &issuer)).into_response(),
    }
}

/// How long a client may cache the key set. Verifiers refetch on an unknown `kid` anyway, so
/// this only bounds how long a retired key stays in their caches.
const JWKS_MAX_AGE_SECONDS: u32 = 300;

/// `GET /.well-known/jwks.json` (also under the issuer's path): the current and previous
/// public keys. Under HS256 there is no public key, and a 404 says so (an empty set would send
/// a JWKS-based verifier looking for keys that never come).
/// The keys are the same for every issuer; the issuer is extracted only so that the copy
/// under one issuer's path is not served on another's host.
pub async fn jwks(State(app): State<Shared>, _issuer: RequestIssuer) -> Response {
    if !app.config.signing.algorithm.is_asymmetric() {
        let body = json!({
            "error": "not_found",
            "error_description": "this server signs access tokens with HS256 (a shared secret) and publishes no keys",
        });
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    }
    (
        [(
            header::CACHE_CONTROL,
            format!("public, max-age={JWKS_MAX_AGE_SECONDS}"),
        )],
        Json(app.config.signing.jwks()),
    )
        .into_response()
}

/// `GET /livez`: 200 while the process serves HTTP, whatever the store's health (an
/// orchestrator restarts on this one, so a failed store must not trigger restarts).
pub async fn livez() -> impl IntoResponse {
    (StatusCode::OK, Json(json!({"status": "ok"})))
}

/// `GET /readyz` (and `/healthz`): 200 while the store works, else 503 with the reason, so a
/// load balancer stops sending requests that would only get 503s.
pub async fn readyz(State(app): State<Shared>) -> impl IntoResponse {
    match app.store.health().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": reason})),
        ),
    }
}
