//! Prometheus metrics (SPEC §15): the series, and the named events the rest of the code
//! records. Served by `serve --metrics-listen ADDR` at `GET /metrics` on that address only,
//! never on the public listener (the router and the request middleware are `http::metrics`).
//!
//! Labels are route patterns, status codes, grant types and outcomes: small fixed sets. No
//! user, client or token value is ever a label (it would leak identities to whoever scrapes,
//! and every new value would be a new series).

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
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
        counter!(TOKENS_ISSUED, "grant_type" => grant_type).increment(1);
    }

    /// An authorization request ended: `code`, `consent_page`, `denied` or `error`.
    pub fn authorize_result(&self, result: &'static str) {
        counter!(AUTHORIZE, "result" => result).increment(1);
    }

    /// A registration ended: `created`, `rejected` or `full`.
    pub fn registration_result(&self, result: &'static str) {
        counter!(REGISTRATIONS, "result" => result).increment(1);
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
    pub fn observe(&self, route: String, status: u16, seconds: f64) {
        counter!(HTTP_REQUESTS, "route" => route.clone(), "status" => status.to_string())
            .increment(1);
        histogram!(HTTP_DURATION, "route" => route).record(seconds);
    }

    /// The Prometheus text exposition (format 0.0.4), with the gauges read from `store` now.
    pub async fn render(&self, store: &dyn Store) -> String {
        // A store that cannot answer leaves the gauges at their last values and is counted;
        // the scrape itself still succeeds, so the error counter reaches the operator.
        match store.clients().await {
            Ok(clients) => {
                let dynamic = clients
                    .iter()
                    .filter(|c| c.registration == Registration::Dynamic)
                    .count();
                gauge!(CLIENTS, "registration" => "dynamic").set(dynamic as f64);
                gauge!(CLIENTS, "registration" => "provisioned")
                    .set((clients.len() - dynamic) as f64);
            }
            Err(_) => self.store_error(),
        }
        match store.family_count().await {
            Ok(count) => gauge!(LIVE_SIGN_INS).set(count as f64),
            Err(_) => self.store_error(),
        }
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// Folds the recorder's histogram buffers in; run now and then when nobody scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}
