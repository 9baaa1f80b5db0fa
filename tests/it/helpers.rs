//! The one helper set of the integration tests. `TestApp`: a server on `127.0.0.1:0` with a
//! temporary state directory, a manual clock, and typed helpers for the steps of an OAuth flow
//! (registering a client, a sign-in through the proxy and the consent page, token requests,
//! the metadata document); plus the assertions every endpoint's tests share. Tests of the real
//! binary add `process.rs` on top.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_authd::app::AppState;
use mcp_authd::clock::Clock;
use mcp_authd::config::Config;
use mcp_authd::store::{StateStore, Store};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

/// The user the proxy signs in.
pub const USER: &str = "alice@example.com";
/// A fixed PKCE verifier.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// A redirect URI on loopback.
pub const REDIRECT: &str = "http://127.0.0.1:33418/callback";
/// The secret every test server uses.
pub const SECRET: &str = "test-secret-Q7wK2xZ9-mN4vB8rT1yL6pD3-0123";
/// Where every test server's manual clock starts (seconds since the epoch); also the creation
/// time of clients put straight into a store.
pub const CLOCK_START: u64 = 1_800_000_000;

/// S256 challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The `oauthAs` section used by tests, for an issuer at `issuer`.
pub fn oauth_as(issuer: &str) -> Value {
    json!({
        "issuerUrl": issuer,
        "jwtSecret": SECRET,
        "trustedSourceCidrs": ["127.0.0.1/32"],
        "redirectUriAllowlist": [
            "http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*",
            "https://claude.ai/api/mcp/auth_callback",
            "https://chatgpt.com/connector_platform_oauth_redirect",
            "cursor://anysphere.cursor-mcp/oauth/callback"
        ],
        "injectedRoles": ["mcp-user"],
        "scopesSupported": [],
        // Tests send bursts from one address; `limits.rs` tests the limits themselves.
        "rateLimits": {"registerPerMinute": 0, "registerGlobalPerMinute": 0, "tokenPerMinute": 0, "authorizePerMinute": 0}
    })
}

/// Binds `addr`. A restart on the same port can find it briefly taken: another test's outgoing
/// connection may have been given it as its ephemeral port once the first server let go, so
/// retry for a few seconds before failing.
async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    let mut tries = 0;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 && tries < 50 =>
            {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    }
}

/// A running server.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, also the issuer.
    pub base: String,
    /// A client that does not follow redirects.
    pub http: reqwest::Client,
    /// The server's clock.
    pub clock: Arc<ManualClock>,
    /// The state file.
    pub state_path: PathBuf,
    /// The application state (for inspecting the store).
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The state directory made for this server when [`Options::dir`] was `None`: removed
    /// once the server is dropped (after [`TestApp::stop`] has released the state).
    _own_dir: Option<tempfile::TempDir>,
}

/// Options for [`TestApp::spawn_with`].
pub struct Options<'a> {
    /// Changes to the `oauthAs` section.
    pub configure: &'a dyn Fn(&mut Value),
    /// The state directory. `None` makes a fresh one that lives as long as the server; pass
    /// `Some` (a directory that outlives it) to restart a server on the same state.
    pub dir: Option<&'a Path>,
    /// Bind this exact address (restart on the same port).
    pub addr: Option<SocketAddr>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            configure: &|_| {},
            dir: None,
            addr: None,
        }
    }
}

impl TestApp {
    /// A server with the default test configuration and a fresh state directory (which is
    /// kept alive by the returned guard).
    pub async fn spawn() -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let app = Self::spawn_with(Options {
            dir: Some(dir.path()),
            ..Default::default()
        })
        .await;
        (app, dir)
    }

    /// A server with the test configuration changed by `configure`, and a fresh state
    /// directory (kept alive by the returned guard).
    pub async fn spawn_configured(configure: &dyn Fn(&mut Value)) -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let app = Self::spawn_with(Options {
            configure,
            dir: Some(dir.path()),
            ..Default::default()
        })
        .await;
        (app, dir)
    }

    /// A server with options.
    pub async fn spawn_with(options: Options<'_>) -> Self {
        let listener = bind(
            options
                .addr
                .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
        )
        .await;
        let addr = listener.local_addr().unwrap();
        // A dual-stack `[::]` listener is reached, and names itself, through IPv4 loopback.
        let base = if addr.ip().is_unspecified() {
            format!("http://127.0.0.1:{}", addr.port())
        } else {
            format!("http://{addr}")
        };
        let mut section = oauth_as(&base);
        (options.configure)(&mut section);
        let doc = json!({"mcpServers": {}, "serverAuth": {"oauthAs": section}});
        let config = Config::parse(&doc.to_string(), |_| None).expect("test config is valid");
        let own_dir = match options.dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().unwrap()),
        };
        let state_path = options
            .dir
            .or(own_dir.as_ref().map(tempfile::TempDir::path))
            .expect("a state directory")
            .join("auth_server.json");
        let store: Arc<dyn Store> = Arc::new(StateStore::open(&state_path).unwrap());
        let clock = Arc::new(ManualClock::new(CLOCK_START));
        let state = Arc::new(AppState::with_clock(config, store, clock.clone()));
        let (tx, rx) = oneshot::channel::<()>();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            mcp_authd::http::serve(listener, serving, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            base,
            http: client(None),
            clock,
            state_path,
            state,
            shutdown: Some(tx),
            task: Some(task),
            _own_dir: own_dir,
        }
    }

    /// Stops the server and waits until its state is released.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// An absolute URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers a client with `body`; returns the response.
    pub async fn register_raw(&self, body: Value) -> reqwest::Response {
        self.http
            .post(self.url("/oauth/register"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Registers a public client for `redirect`; returns its client_id.
    pub async fn register_public(&self, redirect: &str) -> String {
        let response = self
            .register_raw(json!({"client_name": "Test client", "redirect_uris": [redirect], "token_endpoint_auth_method": "none"}))
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["client_id"].as_str().unwrap().to_string()
    }

    /// Registers a client for `uris` with the default authentication method (none); returns
    /// its client_id.
    pub async fn register_uris(&self, uris: &[&str]) -> String {
        let response = self
            .register_raw(json!({"client_name": "Client", "redirect_uris": uris}))
            .await;
        assert_eq!(response.status(), 201);
        string(&response.json().await.unwrap(), "client_id")
    }

    /// Registers a confidential client for [`REDIRECT`] authenticating with `method`; returns
    /// (client_id, client_secret).
    pub async fn register_confidential(&self, method: &str) -> (String, String) {
        let response = self
            .register_raw(json!({"client_name": "Confidential", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": method}))
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        (string(&body, "client_id"), string(&body, "client_secret"))
    }

    /// The authorization server metadata (RFC 8414) this server publishes.
    pub async fn metadata(&self) -> Value {
        self.get_json("/.well-known/oauth-authorization-server")
            .await
    }

    /// GET `path` on this server, as JSON (for documents whose headers a test does not check).
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Standard authorize query parameters for `client_id`.
    pub fn authorize_params(client_id: &str, redirect: &str) -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("code_challenge", &challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
            ("state", "xyz"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// GET /oauth/authorize as the proxy would send it, signed in as `user`.
    pub async fn authorize_as(
        &self,
        user: Option<&str>,
        params: &[(String, String)],
    ) -> reqwest::Response {
        let mut request = self.http.get(self.url("/oauth/authorize")).query(params);
        if let Some(user) = user {
            request = request
                .header("X-Forwarded-User", user)
                .header("X-Forwarded-Groups", "eng,ops");
        }
        request.send().await.unwrap()
    }

    /// Answers the consent page in `page` with `decision`, as `user`.
    pub async fn answer_consent(
        &self,
        page: &str,
        user: &str,
        decision: &str,
    ) -> reqwest::Response {
        let ticket = consent_ticket(page);
        self.http
            .post(self.url("/oauth/authorize/consent"))
            .header("X-Forwarded-User", user)
            .header("X-Forwarded-Groups", "eng,ops")
            .form(&[("ticket", ticket.as_str()), ("decision", decision)])
            .send()
            .await
            .unwrap()
    }

    /// Runs authorize (approving consent if asked) and returns the code.
    pub async fn code_for(&self, client_id: &str, redirect: &str) -> String {
        let params = Self::authorize_params(client_id, redirect);
        let mut response = self.authorize_as(Some(USER), &params).await;
        if response.status() == 200 {
            let page = response.text().await.unwrap();
            response = self.answer_consent(&page, USER, "approve").await;
            assert_eq!(response.status(), 303);
        } else {
            assert_eq!(response.status(), 302);
        }
        let location = location(&response);
        let query = query_of(&location);
        assert_eq!(query.get("state").map(String::as_str), Some("xyz"));
        assert_eq!(query.get("iss"), Some(&self.base));
        query.get("code").cloned().expect("a code in the redirect")
    }

    /// POST /oauth/token with `form`.
    pub async fn token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url("/oauth/token"))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Exchanges `code` for tokens as a public client.
    pub async fn exchange(&self, client_id: &str, code: &str, redirect: &str) -> reqwest::Response {
        self.token(&exchange_form(client_id, code, redirect)).await
    }

    /// Refreshes as a public client.
    pub async fn refresh(&self, client_id: &str, refresh_token: &str) -> reqwest::Response {
        self.token(&refresh_form(client_id, refresh_token)).await
    }

    /// Register + authorize + consent + exchange; returns (client_id, token response body).
    pub async fn signed_in_client(&self) -> (String, Value) {
        let client_id = self.register_public(REDIRECT).await;
        let code = self.code_for(&client_id, REDIRECT).await;
        let response = self.exchange(&client_id, &code, REDIRECT).await;
        assert_eq!(response.status(), 200);
        (client_id, response.json().await.unwrap())
    }

    /// The verified claims of the access token in a token response.
    pub fn claims(&self, tokens: &Value) -> mcp_authd::AccessTokenClaims {
        mcp_authd::verify_access_token(&string(tokens, "access_token"), &self.expectations())
            .expect("the access token verifies")
    }

    /// The token verification expectations for this server.
    pub fn expectations(&self) -> mcp_authd::TokenExpectations {
        mcp_authd::TokenExpectations {
            issuer: self.base.clone(),
            audience: format!("{}/mcp", self.base),
            secret: SECRET.as_bytes().to_vec(),
            leeway_seconds: 0,
        }
    }
}

/// The token request form exchanging `code` as the public client `client_id`, with
/// [`VERIFIER`].
pub fn exchange_form<'a>(
    client_id: &'a str,
    code: &'a str,
    redirect: &'a str,
) -> [(&'a str, &'a str); 5] {
    [
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", code),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
    ]
}

/// The token request form refreshing `refresh_token` as the public client `client_id`.
pub fn refresh_form<'a>(client_id: &'a str, refresh_token: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("refresh_token", refresh_token),
    ]
}

/// The key the store files a refresh token's family under (a hash of `<family>` in
/// `<family>.<secret>`).
pub fn family_key_of(refresh_token: &str) -> String {
    let (family, _) = refresh_token
        .split_once('.')
        .expect("a <family>.<secret> token");
    mcp_authd::oauth::refresh::family_key(family)
}

/// SHA-256 of `secret` in the encodings a state file could reasonably use (for tests that
/// look for a secret's hash where only another hash may be).
pub fn sha256_forms(secret: &str) -> [String; 3] {
    let digest = Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    [
        URL_SAFE_NO_PAD.encode(digest),
        base64::engine::general_purpose::STANDARD.encode(digest),
        hex,
    ]
}

/// The ids of the clients `store` holds.
pub async fn client_ids(store: &dyn Store) -> std::collections::BTreeSet<String> {
    store
        .clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect()
}

/// A client provisioned straight into a store (as `mcp-authd clients add` does), created at
/// [`CLOCK_START`].
pub fn provisioned_client(name: &str, redirect_uris: Vec<String>) -> mcp_authd::store::Client {
    mcp_authd::oauth::register::provision(name, redirect_uris, CLOCK_START)
        .unwrap_or_else(|e| panic!("provision: {}", e.description))
        .client
}

/// A proptest configuration with `cases` cases unless `PROPTEST_CASES` asks for another
/// number. Case counts are kept small so that `cargo test` stays fast.
pub fn proptest_cases(cases: u32) -> proptest::test_runner::Config {
    let from_env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    proptest::test_runner::Config {
        cases: from_env.unwrap_or(cases),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// Runs `f` to completion on a fresh single-threaded runtime (for proptest bodies, which are
/// not async).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The string member `field` of a JSON body; fails, showing the body, when there is none.
pub fn string(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .to_string()
}

/// Fails on a JSON `null` anywhere in `value` (the TypeScript SDK's schemas reject them);
/// `path` names where, as `$` for the root.
pub fn assert_no_nulls(value: &Value, path: &str) {
    match value {
        Value::Null => panic!("JSON null at {path}"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_no_nulls(item, &format!("{path}[{i}]"));
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                assert_no_nulls(member, &format!("{path}.{key}"));
            }
        }
        _ => {}
    }
}

/// Asserts that `path` is readable and writable by its owner only.
pub fn assert_owner_only(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
}

/// A reqwest client that never follows redirects, optionally bound to a local address.
pub fn client(local: Option<std::net::IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local)
        .build()
        .unwrap()
}

/// The `Location` header.
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_string()
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// The consent ticket in a consent page.
pub fn consent_ticket(page: &str) -> String {
    let start = page
        .find("name=\"ticket\" value=\"")
        .expect("a consent form")
        + "name=\"ticket\" value=\"".len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_string()
}

/// Asserts an OAuth JSON error and returns its description.
pub async fn assert_oauth_error(response: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(response.status(), status, "status");
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    body["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The standard parameters with `changes` applied: `Some(v)` sets, `None` removes.
pub fn params_with(
    client_id: &str,
    redirect: &str,
    changes: &[(&str, Option<&str>)],
) -> Vec<(String, String)> {
    let mut params = TestApp::authorize_params(client_id, redirect);
    for (name, value) in changes {
        params.retain(|(k, _)| k != name);
        if let Some(value) = value {
            params.push((name.to_string(), value.to_string()));
        }
    }
    params
}

/// Asserts an HTML error page with `status` and no redirect; returns the body.
pub async fn assert_page(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    assert!(
        response.headers().get("location").is_none(),
        "an error page never redirects"
    );
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    response.text().await.unwrap()
}

/// Starts `family` under `family_key` the way the server does: a code is issued for its
/// grant and exchanged into it (the store has no other way to create a family).
pub async fn store_family<S: Store + ?Sized>(
    store: &S,
    family_key: &str,
    family: mcp_authd::store::RefreshFamily,
) {
    let code_hash = format!("code-for-{family_key}");
    let code = mcp_authd::store::CodeGrant {
        grant: family.grant.clone(),
        redirect_uri: REDIRECT.into(),
        code_challenge: challenge(VERIFIER),
        expires_at: family.created_at + 60,
    };
    store
        .insert_code(
            &code_hash,
            code,
            mcp_authd::store::CodeLimits::default(),
            family.created_at,
        )
        .await
        .unwrap()
        .unwrap();
    let created_at = family.created_at;
    let exchanged = store
        .exchange_code(&code_hash, created_at, family_key, family)
        .await
        .unwrap();
    assert_eq!(exchanged, mcp_authd::store::Exchange::Exchanged);
}

/// Rotates a family from the token `current` to `next` the way a refresh does (a
/// compare-and-swap on the live hash); whether it rotated.
pub async fn rotate_family<S: Store + ?Sized>(
    store: &S,
    family_key: &str,
    current: &str,
    next: &str,
    now: u64,
    ttl: u64,
    answer: mcp_authd::store::RotationAnswer,
) -> bool {
    use mcp_authd::oauth::refresh::hash;
    store
        .rotate_family(
            family_key,
            &hash(current),
            mcp_authd::store::Rotation {
                current_hash: hash(next),
                previous_hash: hash(current),
                rotated_at: now,
                expires_at: now + ttl,
                answer,
            },
        )
        .await
        .unwrap()
}

/// A clock that only moves when told to: tests move time forward instead of sleeping.
#[derive(Debug)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    /// A clock standing at `now` seconds since the epoch.
    pub fn new(now: u64) -> Self {
        Self(std::sync::atomic::AtomicU64::new(now))
    }

    /// Moves the clock forward by `seconds`.
    pub fn advance(&self, seconds: u64) {
        self.0
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
