//! Prometheus metrics (SPEC §15), served by `serve --metrics-listen ADDR` at `GET /metrics` on
//! that address only, never on the public listener.
//!
//! Labels are route patterns, status codes, grant types and outcomes: small fixed sets. No
//! user, client or token value is ever a label (it would leak identities to whoever scrapes,
//! and every new value would be a new series).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::{Registration, Store};

const HTTP_REQUESTS: &str = "mcp_authd_http_requests_total";
const HTTP_DURATION: &str = "mcp_authd_http_request_duration_seconds";
const TOKENS_ISSUED: &str = "mcp_authd_tokens_issued_total";
const AUTHORIZE: &str = "mcp_authd_authorize_total";
const REGISTRATIONS: &str = "mcp_authd_registrations_total";
const REFRESH_REUSE: &str = "mcp_authd_refresh_reuse_detected_total";
const CODE_REPLAY: &str = "mcp_authd_code_replay_detected_total";
const RATE_LIMITED: &str = "mcp_authd_rate_limited_total";
const STORE_ERRORS: &str = "mcp_authd_store_errors_total";
const CLIENTS: &str = "mcp_authd_clients";
const LIVE_SIGN_INS: &str = "mcp_authd_live_sign_ins";
const BUILD_INFO: &str = "mcp_authd_build_info";

/// Request duration buckets: 100 µs to about 6.5 s.
const DURATION_BUCKETS: [f64; 9] = [
    0.0001, 0.0004, 0.0016, 0.0064, 0.0256, 0.1024, 0.4096, 1.6384, 6.5536,
];

/// The process's one recorder (the `metrics` facade is global), installed on first use.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &DURATION_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed already (a library user's): render ours anyway.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        describe();
        handle
    })
}

/// Help texts, and every known label value at zero, so that `rate()` and alerts see each
/// series from the first scrape rather than from the first event.
fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route pattern and status");
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time from request to response head, by route pattern"
    );
    describe_counter!(TOKENS_ISSUED, "Access tokens issued, by grant type");
    describe_counter!(
        AUTHORIZE,
        "Authorization requests by outcome (code, consent_page, denied, error)"
    );
    describe_counter!(
        REGISTRATIONS,
        "Dynamic client registrations by outcome (created, rejected, full)"
    );
    describe_counter!(
        REFRESH_REUSE,
        "Refresh tokens presented again after their successor was used (family revoked)"
    );
    describe_counter!(
        CODE_REPLAY,
        "Spent authorization codes presented again by their own client (grant revoked)"
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused by a rate limit, by endpoint"
    );
    describe_counter!(
        STORE_ERRORS,
        "State changes the store could not make durable"
    );
    describe_gauge!(CLIENTS, "Registered clients by how they were registered");
    describe_gauge!(LIVE_SIGN_INS, "Live refresh-token families (sign-ins)");
    describe_gauge!(BUILD_INFO, "Build information: the version and commit");
    gauge!(BUILD_INFO, "version" => crate::VERSION).set(1.0);
    for grant_type in ["authorization_code", "refresh_token"] {
        counter!(TOKENS_ISSUED, "grant_type" => grant_type).absolute(0);
    }
    for result in ["code", "consent_page", "denied", "error"] {
        counter!(AUTHORIZE, "result" => result).absolute(0);
    }
    for result in ["created", "rejected", "full"] {
        counter!(REGISTRATIONS, "result" => result).absolute(0);
    }
    for endpoint in ["register", "token", "authorize", "introspect", "revoke"] {
        counter!(RATE_LIMITED, "endpoint" => endpoint).absolute(0);
    }
    for name in [REFRESH_REUSE, CODE_REPLAY, STORE_ERRORS] {
        counter!(name).absolute(0);
    }
}

/// Handles of the series that change on every request, looked up once: a `counter!` with
/// labels builds its key, hashes it and searches the recorder's registry each time (the route
/// label and the status text were also allocated on every request).
struct Series {
    tokens_issued: [(&'static str, Counter); 2],
    authorize: [(&'static str, Counter); 4],
    registrations: [(&'static str, Counter); 3],
    /// Per route pattern: the duration histogram and the request counter of each status seen.
    routes: RwLock<HashMap<String, RouteSeries>>,
}

struct RouteSeries {
    duration: Histogram,
    by_status: Vec<(u16, Counter)>,
}

/// Route patterns kept in [`Series::routes`] at most; the router has a few dozen, so this is
/// only a bound, should some label ever come from outside the route table.
const MAX_CACHED_ROUTES: usize = 256;

/// The cached handles, registered with the recorder [`handle`] installs (handles taken before
/// a recorder exists would record nothing).
fn series() -> &'static Series {
    static SERIES: OnceLock<Series> = OnceLock::new();
    SERIES.get_or_init(|| {
        handle();
        Series {
            tokens_issued: ["authorization_code", "refresh_token"]
                .map(|g| (g, counter!(TOKENS_ISSUED, "grant_type" => g))),
            authorize: ["code", "consent_page", "denied", "error"]
                .map(|r| (r, counter!(AUTHORIZE, "result" => r))),
            registrations: ["created", "rejected", "full"]
                .map(|r| (r, counter!(REGISTRATIONS, "result" => r))),
            routes: RwLock::new(HashMap::new()),
        }
    })
}

/// The cached counter for `value`, if it is one of `known`.
fn known<'a>(known: &'a [(&'static str, Counter)], value: &str) -> Option<&'a Counter> {
    known.iter().find(|(v, _)| *v == value).map(|(_, c)| c)
}

/// The server's metrics. The values live in the process-wide recorder; this handle is what
/// the rest of the code calls, so that call sites name events, not series.
pub struct Metrics {
    handle: &'static PrometheusHandle,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Installs the recorder on first use, with every series of SPEC §15 described.
    pub fn new() -> Self {
        Self { handle: handle() }
    }

    /// An access token was issued (`authorization_code`, `refresh_token`).
    pub fn token_issued(&self, grant_type: &'static str) {
        match known(&series().tokens_issued, grant_type) {
            Some(c) => c.increment(1),
            None => counter!(TOKENS_ISSUED, "grant_type" => grant_type).increment(1),
        }
    }

    /// An authorization request ended: `code`, `consent_page`, `denied` or `error`.
    pub fn authorize_result(&self, result: &'static str) {
        match known(&series().authorize, result) {
            Some(c) => c.increment(1),
            None => counter!(AUTHORIZE, "result" => result).increment(1),
        }
    }

    /// A registration ended: `created`, `rejected` or `full`.
    pub fn registration_result(&self, result: &'static str) {
        match known(&series().registrations, result) {
            Some(c) => c.increment(1),
            None => counter!(REGISTRATIONS, "result" => result).increment(1),
        }
    }

    /// Refresh-token reuse was detected.
    pub fn refresh_reuse_detected(&self) {
        counter!(REFRESH_REUSE).increment(1);
    }

    /// A spent code was replayed by its client.
    pub fn code_replay_detected(&self) {
        counter!(CODE_REPLAY).increment(1);
    }

    /// A request was refused by a rate limit.
    pub fn rate_limited(&self, endpoint: &'static str) {
        counter!(RATE_LIMITED, "endpoint" => endpoint).increment(1);
    }

    /// The store refused a change.
    pub fn store_error(&self) {
        counter!(STORE_ERRORS).increment(1);
    }

    /// Records one finished request under its route pattern.
    fn observe(&self, route: &str, status: u16, seconds: f64) {
        let routes = &series().routes;
        {
            let cached = routes.read().unwrap_or_else(|e| e.into_inner());
            if let Some(series) = cached.get(route)
                && let Some((_, requests)) = series.by_status.iter().find(|(s, _)| *s == status)
            {
                requests.increment(1);
                series.duration.record(seconds);
                return;
            }
        }
        // A route or status not seen yet: register its series (once).
        let requests =
            counter!(HTTP_REQUESTS, "route" => route.to_string(), "status" => status.to_string());
        requests.increment(1);
        let mut cached = routes.write().unwrap_or_else(|e| e.into_inner());
        if cached.len() >= MAX_CACHED_ROUTES && !cached.contains_key(route) {
            histogram!(HTTP_DURATION, "route" => route.to_string()).record(seconds);
            return;
        }
        let series = cached
            .entry(route.to_string())
            .or_insert_with(|| RouteSeries {
                duration: histogram!(HTTP_DURATION, "route" => route.to_string()),
                by_status: Vec::new(),
            });
        series.duration.record(seconds);
        if !series.by_status.iter().any(|(s, _)| *s == status) {
            series.by_status.push((status, requests));
        }
    }

    /// The Prometheus text exposition (format 0.0.4), with the gauges read from `store` now.
    pub async fn render(&self, store: &dyn Store) -> String {
        let clients = store.clients().await;
        let dynamic = clients
            .iter()
            .filter(|c| c.registration == Registration::Dynamic)
            .count();
        gauge!(CLIENTS, "registration" => "dynamic").set(dynamic as f64);
        gauge!(CLIENTS, "registration" => "provisioned").set((clients.len() - dynamic) as f64);
        gauge!(LIVE_SIGN_INS).set(store.families().await.len() as f64);
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// Middleware on the public router: counts every request under its matched route pattern
/// (`unmatched` when no route matched, so a scan of random paths adds no series).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    // A clone of the matched path shares its text (no allocation per request).
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// How often histogram buffers are folded in when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The `/metrics` router for the metrics listener; also starts the recorder's upkeep task
/// (call inside the runtime).
pub fn router(metrics: Arc<Metrics>, store: Arc<dyn Store>) -> Router {
    let handle = metrics.handle;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    });
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            let store = store.clone();
            async move {
                (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(store.as_ref()).await,
                )
                    .into_response()
            }
        }),
    )
}
