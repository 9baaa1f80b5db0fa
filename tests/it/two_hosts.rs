//! SPEC §11: one server, several issuers. The primary (`issuerUrl`, the test server's own
//! `http://127.0.0.1:PORT`) and two `additionalIssuers`: an internal host with no path and a
//! host whose issuer has a path and whose resource lives elsewhere. Requests pick their
//! issuer by `Host`, or by `X-Forwarded-Host` from a trusted peer (the tests' own address,
//! 127.0.0.1, is trusted; 127.0.0.2 is not).

use mcp_authd::Verifier;
use mcp_authd::clock::Clock as _;
use mcp_authd::resource::Authenticator;
use serde_json::{Value, json};

use crate::cli::{one_shot, run, servers_json_with, write_config};
use crate::helpers::*;

/// The internal host's issuer (no path; the resource defaults to `/mcp` under it).
const INTERNAL: &str = "https://mcp.internal.example";
const INTERNAL_HOST: &str = "mcp.internal.example";
const INTERNAL_RESOURCE: &str = "https://mcp.internal.example/mcp";
/// An issuer with a path, whose resource is on another host.
const PATHED: &str = "https://sso.example.org/auth";
const PATHED_HOST: &str = "sso.example.org";
const PATHED_RESOURCE: &str = "https://tools.example.org/mcp";

/// The two additional issuers, as `oauthAs.additionalIssuers`.
fn additional_issuers() -> Value {
    json!([
        {"issuerUrl": INTERNAL},
        {"issuerUrl": PATHED, "resourceUrl": PATHED_RESOURCE}
    ])
}

fn with_two_hosts(section: &mut Value) {
    section["additionalIssuers"] = additional_issuers();
}

/// How a request names its host.
#[derive(Clone, Copy, Debug)]
enum By {
    /// `Host` itself.
    Host,
    /// `X-Forwarded-Host` (with `Host` the server's own address, as a proxy sends it).
    Forwarded,
}

/// Requests to the test server addressed to one issuer's host.
#[derive(Clone, Copy)]
struct Via<'a> {
    app: &'a TestApp,
    /// The host name, or `None` for the primary (the server's own address).
    host: Option<&'a str>,
    by: By,
    /// The issuer URL those requests must get.
    issuer: &'a str,
    /// Its resource.
    resource: &'a str,
    /// Its path.
    path: &'a str,
}

impl<'a> Via<'a> {
    fn primary(app: &'a TestApp) -> Self {
        Self {
            app,
            host: None,
            by: By::Host,
            issuer: &app.base,
            resource: "",
            path: "",
        }
    }

    fn internal(app: &'a TestApp, by: By) -> Self {
        Self {
            app,
            host: Some(INTERNAL_HOST),
            by,
            issuer: INTERNAL,
            resource: INTERNAL_RESOURCE,
            path: "",
        }
    }

    fn pathed(app: &'a TestApp, by: By) -> Self {
        Self {
            app,
            host: Some(PATHED_HOST),
            by,
            issuer: PATHED,
            resource: PATHED_RESOURCE,
            path: "/auth",
        }
    }

    fn resource(&self) -> String {
        if self.resource.is_empty() {
            self.app.url("/mcp")
        } else {
            self.resource.to_string()
        }
    }

    fn addressed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (self.host, self.by) {
            (None, _) => request,
            (Some(host), By::Host) => request.header("Host", host),
            (Some(host), By::Forwarded) => request.header("X-Forwarded-Host", host),
        }
    }

    /// GET `path` (at the root, not under the issuer's path).
    async fn get(&self, path: &str) -> reqwest::Response {
        let request = self.app.http.get(self.app.url(path));
        self.addressed(request).send().await.unwrap()
    }

    /// POST a form to `endpoint` under the issuer's path.
    async fn post_form(&self, endpoint: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let url = self.app.url(&format!("{}{endpoint}", self.path));
        let request = self.app.http.post(url).form(form);
        self.addressed(request).send().await.unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "{path} via {:?}", self.host);
        response.json().await.unwrap()
    }

    async fn register(&self) -> String {
        let url = self.app.url(&format!("{}/oauth/register", self.path));
        let body = json!({"client_name": "Two hosts", "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none"});
        let response = self
            .addressed(self.app.http.post(url).json(&body))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["client_id"].as_str().unwrap().to_string()
    }

    /// GET the authorization endpoint as the proxy sends it, signed in.
    async fn authorize(&self, params: &[(String, String)]) -> reqwest::Response {
        let url = self.app.url(&format!("{}/oauth/authorize", self.path));
        let request = self
            .app
            .http
            .get(url)
            .query(params)
            .header("X-Forwarded-User", USER)
            .header("X-Forwarded-Groups", "eng");
        self.addressed(request).send().await.unwrap()
    }

    /// Answers a consent page at this issuer's consent endpoint.
    async fn consent(&self, page: &str, decision: &str) -> reqwest::Response {
        let url = self
            .app
            .url(&format!("{}/oauth/authorize/consent", self.path));
        let ticket = consent_ticket(page);
        let request = self
            .app
            .http
            .post(url)
            .header("X-Forwarded-User", USER)
            .form(&[("ticket", ticket.as_str()), ("decision", decision)]);
        self.addressed(request).send().await.unwrap()
    }

    /// Authorize (approving the consent page) and the code from the redirect, whose `iss`
    /// must be this issuer.
    async fn code(&self, client_id: &str) -> String {
        let params = TestApp::authorize_params(client_id, REDIRECT);
        let mut response = self.authorize(&params).await;
        if response.status() == 200 {
            let page = response.text().await.unwrap();
            assert!(
                page.contains(&format!(
                    "action=\"{}/oauth/authorize/consent\"",
                    self.issuer
                )),
                "the form posts to its own issuer: {page}"
            );
            response = self.consent(&page, "approve").await;
            assert_eq!(response.status(), 303);
        } else {
            assert_eq!(response.status(), 302);
        }
        let query = query_of(&location(&response));
        assert_eq!(query.get("iss").map(String::as_str), Some(self.issuer));
        query.get("code").cloned().expect("a code")
    }

    async fn exchange(&self, client_id: &str, code: &str) -> reqwest::Response {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
    }

    async fn refresh(&self, client_id: &str, refresh_token: &str) -> reqwest::Response {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Register, sign in and exchange here; (client_id, token response).
    async fn signed_in(&self) -> (String, Value) {
        let client_id = self.register().await;
        let code = self.code(&client_id).await;
        let response = self.exchange(&client_id, &code).await;
        assert_eq!(response.status(), 200);
        (client_id, response.json().await.unwrap())
    }
}

/// A verifier for every issuer of the test configuration.
fn verifier_of_all(app: &TestApp) -> Verifier {
    Verifier::new(&app.expectations())
        .with_additional_issuer(INTERNAL, INTERNAL_RESOURCE)
        .with_additional_issuer(PATHED, PATHED_RESOURCE)
}

fn access_token(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

fn refresh_token(tokens: &Value) -> &str {
    tokens["refresh_token"].as_str().unwrap()
}

#[tokio::test]
async fn each_host_gets_its_own_metadata_and_protected_resource_metadata() {
    let dir = tempfile::tempdir().unwrap();
    // A key pair, so that the metadata has a `jwks_uri` too.
    let key = mcp_authd::signing::PrivateKey::generate(mcp_authd::signing::SigningAlgorithm::EdDSA)
        .unwrap();
    let key_file = dir.path().join("signing.pem");
    std::fs::write(&key_file, key.to_pem().unwrap().as_bytes()).unwrap();
    let configure = |section: &mut Value| {
        with_two_hosts(section);
        section["signing"] = json!({"algorithm": "EdDSA", "privateKeyFile": key_file});
    };
    let app = TestApp::spawn_with(Options {
        configure: &configure,
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;

    let mut vias = vec![Via::primary(&app)];
    for by in [By::Host, By::Forwarded] {
        vias.push(Via::internal(&app, by));
        vias.push(Via::pathed(&app, by));
    }
    for via in vias {
        let what = format!("{:?} by {:?}", via.host, via.by);
        let mut metadata_paths = vec![
            "/.well-known/oauth-authorization-server".to_string(),
            "/.well-known/openid-configuration".to_string(),
        ];
        if !via.path.is_empty() {
            // RFC 8414 §3.1 path insertion, under the issuer's own path only.
            metadata_paths.push(format!(
                "/.well-known/oauth-authorization-server{}",
                via.path
            ));
            metadata_paths.push(format!("{}/.well-known/openid-configuration", via.path));
        }
        for path in metadata_paths {
            let doc = via.json(&path).await;
            assert_eq!(doc["issuer"], via.issuer, "{what} {path}");
            for (field, endpoint) in [
                ("authorization_endpoint", "/oauth/authorize"),
                ("token_endpoint", "/oauth/token"),
                ("registration_endpoint", "/oauth/register"),
                ("revocation_endpoint", "/oauth/revoke"),
                ("introspection_endpoint", "/oauth/introspect"),
                ("jwks_uri", "/.well-known/jwks.json"),
            ] {
                assert_eq!(
                    doc[field],
                    format!("{}{endpoint}", via.issuer),
                    "{what} {path} {field}"
                );
            }
            assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        }
        for path in [
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/mcp",
        ] {
            let prm = via.json(path).await;
            assert_eq!(prm["resource"], via.resource(), "{what} {path}");
            assert_eq!(
                prm["authorization_servers"],
                json!([via.issuer]),
                "{what} {path}"
            );
        }
        // The keys are published under each issuer's URL.
        let jwks = via
            .json(&format!("{}/.well-known/jwks.json", via.path))
            .await;
        assert_eq!(jwks["keys"][0]["kid"], key.public_key().thumbprint());
    }
    app.stop().await;
}

#[tokio::test]
async fn endpoints_under_one_issuers_path_are_not_served_on_another_host() {
    let (app, _dir) = TestApp::spawn_configured(&with_two_hosts).await;
    let internal = Via::internal(&app, By::Host);
    let pathed = Via::pathed(&app, By::Host);
    let not_found = |response: reqwest::Response, what: &str| {
        assert_eq!(response.status(), 404, "{what}");
    };
    // The pathed issuer's endpoints are under /auth, the others' at the root.
    not_found(
        internal
            .get("/.well-known/oauth-authorization-server/auth")
            .await,
        "AS metadata of /auth on the internal host",
    );
    not_found(
        internal.get("/auth/.well-known/jwks.json").await,
        "jwks of /auth on the internal host",
    );
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "x"),
        ("refresh_token", "y"),
    ];
    let request = app.http.post(app.url("/auth/oauth/token")).form(&form);
    not_found(
        internal.addressed(request).send().await.unwrap(),
        "/auth/oauth/token on the internal host",
    );
    let request = app.http.post(app.url("/oauth/token")).form(&form);
    not_found(
        pathed.addressed(request).send().await.unwrap(),
        "/oauth/token on the pathed host",
    );
    not_found(
        pathed.get("/oauth/authorize").await,
        "/oauth/authorize on the pathed host",
    );
    // The root aliases answer for every issuer.
    let request = app.http.post(app.url("/token")).form(&form);
    let answer = pathed.addressed(request).send().await.unwrap();
    assert_oauth_error(answer, 401, "invalid_client").await;
    app.stop().await;
}

#[tokio::test]
async fn the_forwarded_host_counts_only_from_a_trusted_peer() {
    let (app, _dir) = TestApp::spawn_configured(&with_two_hosts).await;
    let issuer_seen = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 200);
        let doc: Value = response.json().await.unwrap();
        doc["issuer"].as_str().unwrap().to_string()
    };
    let metadata = app.url("/.well-known/oauth-authorization-server");
    let untrusted = client(Some("127.0.0.2".parse().unwrap()));
    // A stranger's X-Forwarded-Host is ignored: Host decides.
    let response = untrusted
        .get(&metadata)
        .header("X-Forwarded-Host", INTERNAL_HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(issuer_seen(response).await, app.base);
    let response = untrusted
        .get(&metadata)
        .header("Host", INTERNAL_HOST)
        .header("X-Forwarded-Host", PATHED_HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(issuer_seen(response).await, INTERNAL);
    // The same headers from the trusted proxy: X-Forwarded-Host decides.
    let response = app
        .http
        .get(&metadata)
        .header("Host", INTERNAL_HOST)
        .header("X-Forwarded-Host", PATHED_HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(issuer_seen(response).await, PATHED);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_host_gets_the_primary_and_host_names_are_compared_without_case() {
    let (app, _dir) = TestApp::spawn_configured(&with_two_hosts).await;
    for (host, expected) in [
        ("unknown.example", app.base.as_str()),
        ("mcp.internal.example.evil.example", app.base.as_str()),
        ("MCP.Internal.EXAMPLE", INTERNAL),
        ("mcp.internal.example:443", INTERNAL),
        ("mcp.internal.example:8443", app.base.as_str()),
        ("SSO.example.ORG", PATHED),
    ] {
        for header in ["Host", "X-Forwarded-Host"] {
            let response = app
                .http
                .get(app.url("/.well-known/oauth-authorization-server"))
                .header(header, host)
                .send()
                .await
                .unwrap();
            let doc: Value = response.json().await.unwrap();
            assert_eq!(doc["issuer"], expected, "{header}: {host}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_sign_in_on_another_host_gets_that_issuers_iss_and_audience() {
    let (app, _dir) = TestApp::spawn_configured(&with_two_hosts).await;
    let all = verifier_of_all(&app);
    let servers_json = json!({"serverAuth": {"oauthAs": {
        "issuerUrl": app.base, "jwtSecret": SECRET, "additionalIssuers": additional_issuers()
    }}});
    let resource_side = Authenticator::from_servers_json(&servers_json.to_string(), |_| None)
        .unwrap()
        .with_clock(app.clock.clone());
    for via in [
        Via::internal(&app, By::Forwarded),
        Via::pathed(&app, By::Host),
        Via::primary(&app),
    ] {
        let what = format!("{:?}", via.host);
        let (client_id, tokens) = via.signed_in().await;
        let claims = all
            .verify_at(access_token(&tokens), app.clock.now())
            .unwrap();
        assert_eq!(claims.iss, via.issuer, "{what}");
        assert_eq!(claims.aud, via.resource(), "{what}");
        assert_eq!(claims.sub, USER);
        // The library's resource side reads the same oauthAs section and accepts it.
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {}", access_token(&tokens)).parse().unwrap(),
        );
        if via.host.is_some() {
            // A verifier that knows only the primary refuses it.
            assert!(
                Verifier::new(&app.expectations())
                    .verify_at(access_token(&tokens), app.clock.now())
                    .is_err()
            );
        }
        let identity = resource_side.authenticate(&headers).await;
        assert!(identity.is_ok(), "{what}: {identity:?}");
        // A refresh at the same issuer keeps iss and aud.
        let response = via.refresh(&client_id, refresh_token(&tokens)).await;
        assert_eq!(response.status(), 200, "{what}");
        let refreshed: Value = response.json().await.unwrap();
        let claims = all
            .verify_at(access_token(&refreshed), app.clock.now())
            .unwrap();
        assert_eq!(
            (claims.iss.as_str(), claims.aud),
            (via.issuer, via.resource())
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_resource_side_challenges_with_the_metadata_of_the_host_addressed() {
    let servers_json = json!({"serverAuth": {"oauthAs": {
        "issuerUrl": "https://mcp.example.com", "jwtSecret": SECRET,
        "additionalIssuers": additional_issuers()
    }}});
    let auth = Authenticator::from_servers_json(&servers_json.to_string(), |_| None).unwrap();
    let resources: Vec<(&str, &str)> = auth
        .resources()
        .iter()
        .map(|r| (r.issuer.as_str(), r.resource.as_str()))
        .collect();
    assert_eq!(
        resources,
        [
            ("https://mcp.example.com", "https://mcp.example.com/mcp"),
            (INTERNAL, INTERNAL_RESOURCE),
            (PATHED, PATHED_RESOURCE)
        ]
    );
    for (header, host, metadata) in [
        (
            "host",
            "mcp.internal.example",
            "https://mcp.internal.example/.well-known/oauth-protected-resource/mcp",
        ),
        (
            "x-forwarded-host",
            "TOOLS.example.org",
            "https://tools.example.org/.well-known/oauth-protected-resource/mcp",
        ),
        (
            "host",
            "elsewhere.example",
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        ),
    ] {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header, host.parse().unwrap());
        let refused = auth.authenticate(&headers).await.unwrap_err();
        let response = axum::response::IntoResponse::into_response(refused);
        assert_eq!(
            response.headers()["www-authenticate"],
            format!(r#"Bearer resource_metadata="{metadata}""#).as_str(),
            "{host}"
        );
    }
    // An entry without an issuer is named.
    let bad = json!({"serverAuth": {"oauthAs": {
        "issuerUrl": "https://mcp.example.com", "jwtSecret": SECRET,
        "additionalIssuers": [{"resourceUrl": "https://x.example/mcp"}]
    }}});
    let errors = Authenticator::from_servers_json(&bad.to_string(), |_| None)
        .unwrap_err()
        .0;
    assert_eq!(
        errors,
        ["serverAuth.oauthAs.additionalIssuers[0].issuerUrl is required"]
    );
}

#[tokio::test]
async fn a_code_is_redeemed_only_at_the_issuer_that_issued_it() {
    let (app, _dir) = TestApp::spawn_configured(&with_two_hosts).await;
    let internal = Via::internal(&app, By::Forwarded);
    let client_id = internal.register().await;
    let code = internal.code(&client_id).await;
    // Another issuer's token endpoint refuses it, and the code is not spent.
    for elsewhere in [Via::primary(&app), Via::pathed(&app, By::Host)] {
        let response = elsewhere.exchange(&client_id, &code).await;
        let why = assert_oauth_error(response, 400, "invalid_grant").await;
        assert!(why.contains("another host"), "{why}");
    }
    let response = internal.exchange(&client_id, &code).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();

    // The spent code presented at another issuer by its own client is no replay: nothing is
    // revoked.
    let response = Via::primary(&app).exchange(&client_id, &code).await;
    assert_oauth_error(response, 400, "invalid_grant").await;
    let response = internal.refresh(&client_id, refresh_token(&tokens)).await;
    assert_eq!(response.status(), 200, "the sign-in survived");
    let refreshed: Value = response.json().await.unwrap();
    // Presented at its own issuer, the replay still revokes what the code issued.
    let response = internal.exchange(&client_id, &code).await;
    let why = assert_oauth_error(response, 400, "invalid_grant").await;
    assert!(why.contains("revoked"), "{why}");
    let response = internal
        .refresh(&client_id, refresh_token(&refreshed))
        .await;
    assert_oauth_error(response, 400, "invalid_grant").await;
    app.stop().await;
}

#[tokio::test]
async fn a_refresh_token_works_only_at_its_issuer_and_is_not_spent_elsewhere() {
    let (app, _dir) = TestApp::spawn_configured(&with_two_hosts).await;
    let pathed = Via::pathed(&app, By::Forwarded);
    let (client_id, tokens) = pathed.signed_in().await;
    let first = refresh_token(&tokens).to_string();
    for elsewhere in [Via::primary(&app), Via::internal(&app, By::Host)] {
        let response = elsewhere.refresh(&client_id, &first).await;
        let why = assert_oauth_error(response, 400, "invalid_grant").await;
        assert!(why.contains("another host"), "{why}");
    }
    // Not taken for reuse: the token still rotates at its issuer.
    let response = pathed.refresh(&client_id, &first).await;
    assert_eq!(response.status(), 200);
    let second: Value = response.json().await.unwrap();
    // The previous token, inside the grace window, at another issuer: refused, and neither
    // the grace answer nor a revocation.
    let response = Via::primary(&app).refresh(&client_id, &first).await;
    assert_oauth_error(response, 400, "invalid_grant").await;
    let response = pathed.refresh(&client_id, refresh_token(&second)).await;
    assert_eq!(response.status(), 200, "the family was not revoked");
    app.stop().await;
}

#[tokio::test]
async fn error_redirects_and_denials_carry_the_iss_of_their_host() {
    let (app, _dir) = TestApp::spawn_configured(&with_two_hosts).await;
    for via in [
        Via::internal(&app, By::Host),
        Via::pathed(&app, By::Forwarded),
        Via::primary(&app),
    ] {
        let client_id = via.register().await;
        let what = format!("{:?}", via.host);
        // A request error, redirected to the client.
        let params = params_with(&client_id, REDIRECT, &[("response_type", Some("token"))]);
        let response = via.authorize(&params).await;
        assert_eq!(response.status(), 302, "{what}");
        let query = query_of(&location(&response));
        assert_eq!(query["error"], "unsupported_response_type");
        assert_eq!(query["iss"], via.issuer, "{what}");
        // A resource of another issuer is not this one's.
        let other = if via.host == Some(INTERNAL_HOST) {
            PATHED_RESOURCE
        } else {
            INTERNAL_RESOURCE
        };
        let params = params_with(&client_id, REDIRECT, &[("resource", Some(other))]);
        let query = query_of(&location(&via.authorize(&params).await));
        assert_eq!(query["error"], "invalid_target", "{what}");
        assert_eq!(query["iss"], via.issuer, "{what}");
        // The user denies on the consent page.
        let params = TestApp::authorize_params(&client_id, REDIRECT);
        let page = via.authorize(&params).await.text().await.unwrap();
        let response = via.consent(&page, "deny").await;
        assert_eq!(response.status(), 303);
        let query = query_of(&location(&response));
        assert_eq!(query["error"], "access_denied");
        assert_eq!(query["iss"], via.issuer, "{what}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_consent_page_is_answered_only_at_the_issuer_that_showed_it() {
    let (app, _dir) = TestApp::spawn_configured(&with_two_hosts).await;
    let internal = Via::internal(&app, By::Host);
    let client_id = internal.register().await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    let response = internal.authorize(&params).await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    // Posted through the primary host (same path, other issuer): refused, ticket unspent.
    let body = assert_page(Via::primary(&app).consent(&page, "approve").await, 403).await;
    assert!(body.contains("another host"), "{body}");
    let response = internal.consent(&page, "approve").await;
    assert_eq!(response.status(), 303);
    let query = query_of(&location(&response));
    assert_eq!(query["iss"], INTERNAL);
    assert!(query.contains_key("code"));
    app.stop().await;
}

#[tokio::test]
async fn clients_and_consents_are_shared_and_revocation_and_introspection_work_anywhere() {
    let (app, _dir) = TestApp::spawn_configured(&with_two_hosts).await;
    let internal = Via::internal(&app, By::Host);
    let primary = Via::primary(&app);
    // Registered and approved on the internal host, the client signs in on the primary
    // without a second consent page.
    let (client_id, internal_tokens) = internal.signed_in().await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    let response = primary.authorize(&params).await;
    assert_eq!(response.status(), 302, "the consent is shared");
    let query = query_of(&location(&response));
    assert_eq!(query["iss"], app.base);

    // Introspection at the primary answers for the internal host's tokens, with their iss.
    let new = mcp_authd::oauth::register::provision(
        "MCP server",
        vec!["https://rs.example/unused".into()],
        0,
    )
    .unwrap();
    let (id, secret) = (new.client.client_id.clone(), new.secret.clone().unwrap());
    app.state.store.put_client(new.client).await.unwrap();
    for token in [
        access_token(&internal_tokens),
        refresh_token(&internal_tokens),
    ] {
        let answer: Value = app
            .http
            .post(app.url("/oauth/introspect"))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["active"], true, "{answer}");
        assert_eq!(answer["iss"], INTERNAL, "{answer}");
        assert_eq!(answer["aud"], INTERNAL_RESOURCE, "{answer}");
    }
    // Revoked through the primary's endpoint, the internal sign-in ends.
    let response = primary
        .post_form(
            "/oauth/revoke",
            &[
                ("token", refresh_token(&internal_tokens)),
                ("client_id", &client_id),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = internal
        .refresh(&client_id, refresh_token(&internal_tokens))
        .await;
    assert_oauth_error(response, 400, "invalid_grant").await;
    app.stop().await;
}

/// A state file written before grants named their issuer: its refresh tokens belong to the
/// primary issuer.
#[tokio::test]
async fn a_state_file_without_issuers_loads_and_its_sign_ins_belong_to_the_primary() {
    use mcp_authd::oauth::refresh::{family_key, hash};
    let dir = tempfile::tempdir().unwrap();
    let family_id = "BBBBBBBBBBBBBBBBBBBBBB";
    let token = format!("{family_id}.{}", "7".repeat(43));
    let snapshot = json!({
        "version": 2, "seq": 1,
        "clients": {"c1": {"client_id": "c1", "client_name": "Cursor", "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"], "client_id_issued_at": 1_700_000_000u64,
            "registration": "dynamic"}},
        "refresh_tokens": {family_key(family_id): {
            "grant": {"client_id": "c1", "sub": USER, "groups": [], "scope": "",
                      "resource": "http://127.0.0.1:8080/mcp"},
            "current_hash": hash(&token), "created_at": 1_000, "expires_at": 4_000_000_000u64,
        }},
    });
    std::fs::write(dir.path().join("auth_server.json"), snapshot.to_string()).unwrap();
    let app = TestApp::spawn_with(Options {
        configure: &with_two_hosts,
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let response = Via::internal(&app, By::Host).refresh("c1", &token).await;
    assert_oauth_error(response, 400, "invalid_grant").await;
    let response = Via::primary(&app).refresh("c1", &token).await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let expect = mcp_authd::TokenExpectations {
        audience: "http://127.0.0.1:8080/mcp".into(),
        ..app.expectations()
    };
    let claims = Verifier::new(&expect)
        .verify_at(access_token(&tokens), app.clock.now())
        .unwrap();
    assert_eq!(claims.iss, app.base);
    app.stop().await;
}

#[test]
fn check_lists_every_issuer_and_names_bad_entries() {
    let dir = tempfile::tempdir().unwrap();
    let doc = servers_json_with("https://mcp.example.com", |section| {
        section["additionalIssuers"] = additional_issuers();
    });
    let config = write_config(dir.path(), &doc);
    let out = run(&mut one_shot(dir.path(), &config, &["check"]));
    out.assert_success();
    for line in [
        "issuer:            https://mcp.example.com (host mcp.example.com:443)",
        "  resource:        https://mcp.example.com/mcp",
        "additional issuer: https://mcp.internal.example (host mcp.internal.example:443)",
        "  resource:        https://mcp.internal.example/mcp",
        "additional issuer: https://sso.example.org/auth (host sso.example.org:443)",
        "  resource:        https://tools.example.org/mcp",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "no line {line:?} in\n{}",
            out.stdout
        );
    }

    let doc = servers_json_with("https://mcp.example.com", |section| {
        section["additionalIssuers"] = json!([
            {"issuerUrl": "https://mcp.example.com"},
            {"issuerUrl": "https://mcp.internal.example/"},
            {"issuerUrl": "https://mcp.example.com/second"}
        ]);
    });
    let config = write_config(dir.path(), &doc);
    let out = run(&mut one_shot(dir.path(), &config, &["check"]));
    out.assert_failure()
        .assert_stderr_line("oauthAs.additionalIssuers[0].issuerUrl: https://mcp.example.com is already issuerUrl; every issuer must be distinct")
        .assert_stderr_line("oauthAs.additionalIssuers[1].issuerUrl must not end with a slash (clients compare it byte for byte)")
        .assert_stderr_line("oauthAs.additionalIssuers[2].issuerUrl: its host mcp.example.com:443 is already that of issuerUrl; requests choose their issuer by host, so each issuer needs a host (or port) of its own");
}

/// Routes mounted under several issuers' paths are labelled with their patterns: the path of
/// each mount, never a host or a raw path.
#[tokio::test]
async fn metrics_label_each_issuers_routes_by_their_pattern() {
    let configure = |section: &mut Value| {
        section["additionalIssuers"] =
            json!([{"issuerUrl": "https://metrics-host.example/labelled"}]);
    };
    let (app, _dir) = TestApp::spawn_configured(&configure).await;
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "nobody"),
        ("refresh_token", "x"),
    ];
    for path in [
        "/labelled/oauth/token",
        "/oauth/token",
        "/labelled/oauth/token-not-a-route",
    ] {
        app.http
            .post(app.url(path))
            .header("Host", "metrics-host.example")
            .form(&form)
            .send()
            .await
            .unwrap();
    }
    let text = app.state.metrics.render(&*app.state.store).await;
    assert!(
        text.contains(
            r#"mcp_authd_http_requests_total{route="/labelled/oauth/token",status="401"}"#
        ),
        "{text}"
    );
    // The primary's pattern on this host: 404, labelled by the pattern all the same.
    assert!(
        text.contains(r#"mcp_authd_http_requests_total{route="/oauth/token",status="404"}"#),
        "{text}"
    );
    assert!(
        !text.contains("metrics-host") && !text.contains("token-not-a-route"),
        "{text}"
    );
    app.stop().await;
}

/// The primary's sign-ins are not tied to its URL (a new `issuerUrl`, here a new port, keeps
/// them); an additional issuer's are tied to its `issuerUrl`, so renaming it ends them rather
/// than handing them to another issuer.
#[tokio::test]
async fn renaming_an_additional_issuer_ends_its_sign_ins_but_the_primarys_survive_a_new_url() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(Options {
        configure: &with_two_hosts,
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let (primary_client, primary_tokens) = Via::primary(&app).signed_in().await;
    let (internal_client, internal_tokens) = Via::internal(&app, By::Host).signed_in().await;
    app.stop().await;

    let renamed = |section: &mut Value| {
        section["additionalIssuers"] = json!([{"issuerUrl": "https://renamed.internal.example"}]);
    };
    let app = TestApp::spawn_with(Options {
        configure: &renamed,
        dir: Some(dir.path()),
        ..Default::default()
    })
    .await;
    let response = Via::primary(&app)
        .refresh(&primary_client, refresh_token(&primary_tokens))
        .await;
    assert_eq!(response.status(), 200);
    let tokens: Value = response.json().await.unwrap();
    let claims = Verifier::new(&mcp_authd::TokenExpectations {
        audience: claims_aud(&primary_tokens),
        ..app.expectations()
    })
    .verify_at(access_token(&tokens), app.clock.now())
    .unwrap();
    assert_eq!(claims.iss, app.base, "the new primary URL");
    for host in [None, Some("renamed.internal.example"), Some(INTERNAL_HOST)] {
        let mut request = app.http.post(app.url("/oauth/token")).form(&[
            ("grant_type", "refresh_token"),
            ("client_id", internal_client.as_str()),
            ("refresh_token", refresh_token(&internal_tokens)),
        ]);
        if let Some(host) = host {
            request = request.header("Host", host);
        }
        let response = request.send().await.unwrap();
        assert_oauth_error(response, 400, "invalid_grant").await;
    }
    app.stop().await;
}

/// The `aud` of an access token in a token response, read without verifying it.
fn claims_aud(tokens: &Value) -> String {
    use base64::Engine as _;
    let payload = access_token(tokens).split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["aud"].as_str().unwrap().to_string()
}
