//! Signing keys (SPEC §14): EdDSA and ES256 access tokens from the real router, the JWKS it
//! publishes, verification from that JWKS URL and from key files, rotation with
//! `previousPublicKeyFiles`, the refetch rate limit (counted by hits on a JWKS server), the
//! bounds on a fetch, and algorithm confusion; with the HS256 default, JWT headers that try
//! to choose the key (`kid`, `jku`, `x5u`, `jwk`) or carry an unknown `crit` (catalogue
//! section F).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::ManualClock;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_authd::clock::Clock as _;
use mcp_authd::jwt::{AccessTokenClaims, VerifyError, mint_access_token_with_key};
use mcp_authd::resource::{Authenticator, JwksVerifier};
use mcp_authd::signing::{PrivateKey, SigningAlgorithm};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;
use crate::resource::{forge, get_tools, protected};

const ALGORITHMS: [SigningAlgorithm; 2] = [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256];

/// A key pair written into `dir` as `NAME.pem` (0600) and `NAME.pem.pub`; returns the key
/// and the two paths.
fn key_files(dir: &Path, name: &str, algorithm: SigningAlgorithm) -> (PrivateKey, String, String) {
    use std::os::unix::fs::PermissionsExt as _;
    let key = PrivateKey::generate(algorithm).unwrap();
    let private = dir.join(format!("{name}.pem"));
    std::fs::write(&private, key.to_pem().unwrap().as_bytes()).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public = dir.join(format!("{name}.pem.pub"));
    std::fs::write(&public, key.public_key().to_pem().unwrap()).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    (key, path(&private), path(&public))
}

/// A server in `dir` that signs with `private` and also publishes `previous`.
async fn spawn_signing(
    dir: &Path,
    algorithm: SigningAlgorithm,
    private: &str,
    previous: &[&str],
    addr: Option<SocketAddr>,
) -> TestApp {
    let signing = json!({
        "algorithm": algorithm.as_str(),
        "privateKeyFile": private,
        "previousPublicKeyFiles": previous,
    });
    TestApp::spawn_with(Options {
        configure: &|c| c["signing"] = signing.clone(),
        dir: Some(dir),
        addr,
    })
    .await
}

/// RFC 7638 §3.2, computed here from the JWK's members rather than by the crate.
fn thumbprint_of(jwk: &Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str() {
        Some("OKP") => &["crv", "kty", "x"],
        Some("EC") => &["crv", "kty", "x", "y"],
        other => panic!("unexpected kty {other:?}"),
    };
    let canonical: Vec<String> = members
        .iter()
        .map(|m| format!("\"{m}\":\"{}\"", jwk[*m].as_str().unwrap()))
        .collect();
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{{{}}}", canonical.join(","))))
}

async fn get_json(
    app: &TestApp,
    url: &str,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
    let response = app
        .http
        .get(url)
        .header("Origin", "https://claude.ai")
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.json().await.unwrap())
}

fn header_of(token: &str) -> jsonwebtoken::Header {
    jsonwebtoken::decode_header(token).unwrap()
}

/// The `serverAuth.oauthAs` of a resource server next to `app` that fetches the JWKS.
fn jwks_oauth_as(app: &TestApp, algorithm: SigningAlgorithm) -> Value {
    json!({
        "issuerUrl": app.base,
        "signing": {"algorithm": algorithm.as_str(), "jwksUrl": app.url("/.well-known/jwks.json")},
    })
}

#[tokio::test]
async fn eddsa_and_es256_tokens_are_signed_with_the_key_the_jwks_publishes() {
    for algorithm in ALGORITHMS {
        let dir = tempfile::tempdir().unwrap();
        let (key, private, _) = key_files(dir.path(), "signing", algorithm);
        let app = spawn_signing(dir.path(), algorithm, &private, &[], None).await;
        let (_, tokens) = app.signed_in_client().await;
        let token = tokens["access_token"].as_str().unwrap();
        let header = header_of(token);
        assert_eq!(header.alg, algorithm.jose());
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));

        let (status, headers, jwks) = get_json(&app, &app.url("/.well-known/jwks.json")).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["access-control-allow-origin"], "*",
            "CORS like metadata"
        );
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{jwks}");
        let jwk = &keys[0];
        let mut names: Vec<&str> = jwk
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        let expected: &[&str] = match algorithm {
            SigningAlgorithm::EdDSA => &["alg", "crv", "kid", "kty", "use", "x"],
            _ => &["alg", "crv", "kid", "kty", "use", "x", "y"],
        };
        assert_eq!(names, expected, "{jwk}");
        assert_eq!(jwk["alg"], algorithm.as_str());
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], thumbprint_of(jwk));
        assert_eq!(header.kid.as_deref(), jwk["kid"].as_str());
        assert_eq!(jwk["kid"], key.public_key().thumbprint());

        let (_, _, metadata) =
            get_json(&app, &app.url("/.well-known/oauth-authorization-server")).await;
        assert_eq!(metadata["jwks_uri"], app.url("/.well-known/jwks.json"));

        // A standard JOSE library takes the published JWK as it is.
        let decoding =
            jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap())
                .unwrap();
        let mut validation = jsonwebtoken::Validation::new(algorithm.jose());
        validation.set_audience(&[app.url("/mcp")]);
        validation.validate_exp = false;
        let data =
            jsonwebtoken::decode::<AccessTokenClaims>(token, &decoding, &validation).unwrap();
        assert_eq!(data.claims.sub, USER);

        // The verification API, from the JWKS URL of the real router.
        let remote = JwksVerifier::new(
            &app.url("/.well-known/jwks.json"),
            &app.base,
            &app.url("/mcp"),
        )
        .unwrap();
        let claims = remote.verify_at(token, app.clock.now()).await.unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.aud.as_str()),
            (USER, app.url("/mcp").as_str())
        );

        // A resource server with the key files, and one with only the JWKS URL (no jwtSecret).
        let clock = Arc::new(ManualClock::new(app.clock.now()));
        let from_files = crate::resource::authenticator(json!({
            "issuerUrl": app.base,
            "signing": {"algorithm": algorithm.as_str(), "privateKeyFile": private},
        }))
        .with_clock(clock.clone());
        let from_jwks =
            crate::resource::authenticator(jwks_oauth_as(&app, algorithm)).with_clock(clock);
        for auth in [from_files, from_jwks] {
            let (rs, _task) = protected(auth).await;
            let response = get_tools(&app.http, &rs, Some(token)).await;
            assert_eq!(response.status(), 200, "{algorithm}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["subject"], USER);
        }
        // mcp-authd's own verifier (introspection) holds the key pair too.
        assert!(app.state.verifier.verify_at(token, app.clock.now()).is_ok());
        app.stop().await;
    }
}

#[tokio::test]
async fn hs256_publishes_no_key_and_no_jwks_uri() {
    let (app, _dir) = TestApp::spawn().await;
    let response = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body = response.text().await.unwrap();
    assert!(
        !body.contains(SECRET) && !body.contains("\"keys\""),
        "{body}"
    );
    let (_, _, metadata) =
        get_json(&app, &app.url("/.well-known/oauth-authorization-server")).await;
    assert!(metadata.get("jwks_uri").is_none(), "{metadata}");
    let (_, tokens) = app.signed_in_client().await;
    assert_eq!(
        header_of(tokens["access_token"].as_str().unwrap()).alg,
        jsonwebtoken::Algorithm::HS256
    );
    app.stop().await;
}

/// Row 58: `kid` is only a key into the configured table (path or SQL fragments find nothing),
/// key-carrying headers (`jku`, `x5u`, `jwk`) are never followed, and a `crit` extension the
/// verifier does not understand is refused (RFC 7515 §4.1.11).
#[tokio::test]
async fn jwt_headers_never_choose_the_key_and_unknown_crit_is_refused() {
    let (app, _dir) = TestApp::spawn().await;
    let (_, tokens) = app.signed_in_client().await;
    let token = string(&tokens, "access_token");
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let expectations = app.expectations();
    let kid = mcp_authd::jwt::key_id(SECRET.as_bytes());
    let attacker_key = b"attacker-key-attacker-key-attacker-key!!";
    // The genuine header, re-signed with the real key, verifies (the control).
    let genuine = forge(
        json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
        claims.clone(),
        SECRET.as_bytes(),
    );
    assert!(mcp_authd::verify_access_token(&genuine, &expectations).is_ok());
    let jwk = json!({"kty": "oct", "k": URL_SAFE_NO_PAD.encode(attacker_key)});
    let mut refused = Vec::new();
    for (header, key) in [
        (
            json!({"alg": "HS256", "typ": "at+jwt", "kid": "../../../../dev/null"}),
            &attacker_key[..],
        ),
        (
            json!({"alg": "HS256", "typ": "at+jwt", "kid": "x' OR '1'='1"}),
            &attacker_key[..],
        ),
        (
            json!({"alg": "HS256", "typ": "at+jwt", "kid": ""}),
            b"".as_slice(),
        ),
        (
            json!({"alg": "HS256", "typ": "at+jwt", "jku": "https://evil.example/jwks.json"}),
            &attacker_key[..],
        ),
        (
            json!({"alg": "HS256", "typ": "at+jwt", "x5u": "https://evil.example/cert.pem"}),
            &attacker_key[..],
        ),
        (
            json!({"alg": "HS256", "typ": "at+jwt", "jwk": jwk}),
            &attacker_key[..],
        ),
        (
            json!({"alg": "HS256", "typ": "at+jwt", "kid": kid, "crit": ["urn:example:unknown"], "urn:example:unknown": "x"}),
            SECRET.as_bytes(),
        ),
        (
            json!({"alg": "HS256", "typ": "at+jwt", "kid": kid, "crit": ["exp"]}),
            SECRET.as_bytes(),
        ),
    ] {
        let forged = forge(header.clone(), claims.clone(), key);
        if mcp_authd::verify_access_token(&forged, &expectations).is_ok() {
            refused.push(header);
        }
    }
    assert!(refused.is_empty(), "accepted: {refused:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_issuer_with_a_path_serves_its_jwks_under_that_path() {
    let dir = tempfile::tempdir().unwrap();
    let (_, private, _) = key_files(dir.path(), "signing", SigningAlgorithm::EdDSA);
    let app = TestApp::spawn_with(Options {
        configure: &|c| {
            c["issuerUrl"] = json!(format!("{}/auth", c["issuerUrl"].as_str().unwrap()));
            c["signing"] = json!({"algorithm": "EdDSA", "privateKeyFile": private});
        },
        dir: Some(dir.path()),
        addr: None,
    })
    .await;
    let (_, _, metadata) = get_json(
        &app,
        &app.url("/.well-known/oauth-authorization-server/auth"),
    )
    .await;
    let jwks_uri = metadata["jwks_uri"].as_str().unwrap().to_string();
    assert_eq!(jwks_uri, app.url("/auth/.well-known/jwks.json"));
    let (status, headers, under_path) = get_json(&app, &jwks_uri).await;
    assert_eq!(status, 200);
    assert_eq!(headers["access-control-allow-origin"], "*");
    let (_, _, at_root) = get_json(&app, &app.url("/.well-known/jwks.json")).await;
    assert_eq!(under_path, at_root);
    assert_eq!(under_path["keys"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn rotation_keeps_tokens_of_the_previous_key_valid_until_it_is_retired() {
    let dir = tempfile::tempdir().unwrap();
    // The rotation also changes the algorithm: each key carries its own.
    let (key_a, private_a, public_a) = key_files(dir.path(), "a", SigningAlgorithm::EdDSA);
    let (key_b, private_b, _) = key_files(dir.path(), "b", SigningAlgorithm::ES256);
    let (kid_a, kid_b) = (key_a.public_key().kid(), key_b.public_key().kid());

    let app = spawn_signing(dir.path(), SigningAlgorithm::EdDSA, &private_a, &[], None).await;
    let addr = app.addr;
    let (client_id, tokens) = app.signed_in_client().await;
    let token_a = tokens["access_token"].as_str().unwrap().to_string();
    let refresh_a = tokens["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(header_of(&token_a).kid.as_deref(), Some(kid_a));
    // A resource server on the JWKS URL, with its own clock (it decides when to refetch).
    let rs_clock = Arc::new(ManualClock::new(app.clock.now()));
    let (rs, _task) = protected(
        crate::resource::authenticator(jwks_oauth_as(&app, SigningAlgorithm::EdDSA))
            .with_clock(rs_clock.clone()),
    )
    .await;
    assert_eq!(
        get_tools(&app.http, &rs, Some(&token_a)).await.status(),
        200
    );
    app.stop().await;

    // Switch: B signs, A is still published and accepted.
    let app = spawn_signing(
        dir.path(),
        SigningAlgorithm::ES256,
        &private_b,
        &[&public_a],
        Some(addr),
    )
    .await;
    let (_, _, jwks) = get_json(&app, &app.url("/.well-known/jwks.json")).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [kid_b, kid_a]);
    let response = app.refresh(&client_id, &refresh_a).await;
    assert_eq!(response.status(), 200, "refresh tokens outlive the key");
    let token_b = response.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let header = header_of(&token_b);
    assert_eq!(
        (header.alg, header.kid.as_deref()),
        (jsonwebtoken::Algorithm::ES256, Some(kid_b))
    );
    // The cached set lacks B: the unknown kid makes the resource server fetch again (a minute
    // after its last fetch at the earliest).
    rs_clock.advance(61);
    assert_eq!(
        get_tools(&app.http, &rs, Some(&token_b)).await.status(),
        200
    );
    assert_eq!(
        get_tools(&app.http, &rs, Some(&token_a)).await.status(),
        200
    );
    // The same with the key files.
    let (files_rs, _files_task) = protected(
        crate::resource::authenticator(json!({
            "issuerUrl": app.base,
            "signing": {"algorithm": "ES256", "privateKeyFile": private_b, "previousPublicKeyFiles": [public_a]},
        }))
        .with_clock(rs_clock.clone()),
    )
    .await;
    assert_eq!(
        get_tools(&app.http, &files_rs, Some(&token_a))
            .await
            .status(),
        200
    );
    assert_eq!(
        get_tools(&app.http, &files_rs, Some(&token_b))
            .await
            .status(),
        200
    );
    app.stop().await;

    // Retire A: no longer published; once the resource server's set is refreshed (every
    // 5 minutes), A's tokens are refused.
    let app = spawn_signing(
        dir.path(),
        SigningAlgorithm::ES256,
        &private_b,
        &[],
        Some(addr),
    )
    .await;
    let (_, _, jwks) = get_json(&app, &app.url("/.well-known/jwks.json")).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    rs_clock.advance(mcp_authd::resource::jwks::DEFAULT_REFRESH_SECONDS);
    assert_eq!(
        get_tools(&app.http, &rs, Some(&token_b)).await.status(),
        200
    );
    assert_eq!(
        get_tools(&app.http, &rs, Some(&token_a)).await.status(),
        401
    );
    app.stop().await;
}

/// A JWKS server whose answer the test sets, counting the requests it gets.
#[derive(Clone)]
struct KeyServer {
    url: String,
    hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<(u16, String)>>,
}

impl KeyServer {
    async fn start(keys: &[&PrivateKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            url: format!("http://{}/keys", listener.local_addr().unwrap()),
            hits: Arc::new(AtomicUsize::new(0)),
            answer: Arc::new(Mutex::new((200, String::new()))),
        };
        server.publish(keys);
        let handler = |State(s): State<KeyServer>| async move {
            s.hits.fetch_add(1, Ordering::SeqCst);
            let (status, body) = s.answer.lock().unwrap().clone();
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                body,
            )
        };
        let router = Router::new()
            .route("/keys", get(handler))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        server
    }

    fn publish(&self, keys: &[&PrivateKey]) {
        let keys: Vec<Value> = keys.iter().map(|k| k.public_key().to_jwk()).collect();
        self.answer(200, json!({ "keys": keys }).to_string());
    }

    fn answer(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

const ISSUER: &str = "https://as.example.com";
const AUDIENCE: &str = "https://as.example.com/mcp";
const T0: u64 = 1_800_000_000;

fn token(key: &PrivateKey) -> String {
    let claims = AccessTokenClaims {
        iss: ISSUER.into(),
        sub: USER.into(),
        aud: AUDIENCE.into(),
        client_id: "c".into(),
        scope: String::new(),
        groups: vec![],
        roles: vec![],
        iat: T0,
        exp: T0 + 86_400,
        jti: mcp_authd::secrets::random_token(8),
        sid: None,
    };
    mint_access_token_with_key(&claims, key).unwrap()
}

#[tokio::test]
async fn unknown_kids_refetch_the_key_set_at_most_once_a_minute() {
    let key_a = PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap();
    let key_b = PrivateKey::generate(SigningAlgorithm::ES256).unwrap();
    let server = KeyServer::start(&[&key_a]).await;
    let verifier = Arc::new(JwksVerifier::new(&server.url, ISSUER, AUDIENCE).unwrap());
    let token_a = token(&key_a);

    assert!(verifier.verify_at(&token_a, T0).await.is_ok());
    assert!(verifier.verify_at(&token_a, T0 + 1).await.is_ok());
    assert_eq!(server.hits(), 1, "a known kid is served from the cache");
    assert_eq!(verifier.key_ids(), [key_a.public_key().kid()]);

    // Within a minute of the first fetch, an unknown kid does not fetch again.
    let stranger = token(&PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap());
    let unknown = Err(VerifyError::UnknownKey);
    assert_eq!(verifier.verify_at(&stranger, T0 + 59).await, unknown);
    assert_eq!(server.hits(), 1);

    // A burst of tokens naming key ids nobody published, all at once: one refetch.
    let strangers: Vec<String> = (0..20)
        .map(|_| token(&PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap()))
        .collect();
    let results = futures_join(strangers.iter().map(|t| {
        let verifier = verifier.clone();
        let t = t.clone();
        async move { verifier.verify_at(&t, T0 + 60).await }
    }))
    .await;
    assert!(results.iter().all(|r| *r == unknown), "{results:?}");
    assert_eq!(server.hits(), 2);
    assert_eq!(verifier.verify_at(&strangers[0], T0 + 119).await, unknown);
    assert_eq!(
        server.hits(),
        2,
        "not again within a minute of the last fetch"
    );

    // A rotation publishes B: its first token is honoured once a minute has passed.
    server.publish(&[&key_b, &key_a]);
    let token_b = token(&key_b);
    assert_eq!(verifier.verify_at(&token_b, T0 + 119).await, unknown);
    assert_eq!(server.hits(), 2);
    assert!(verifier.verify_at(&token_b, T0 + 120).await.is_ok());
    assert_eq!(server.hits(), 3);

    // The set is refreshed every 5 minutes even when every kid is known, so a retired key
    // stops verifying.
    server.publish(&[&key_b]);
    let fetched = T0 + 120;
    assert!(verifier.verify_at(&token_a, fetched + 299).await.is_ok());
    assert_eq!(server.hits(), 3);
    assert_eq!(
        verifier.verify_at(&token_a, fetched + 300).await,
        Err(VerifyError::UnknownKey)
    );
    assert_eq!(server.hits(), 4);
    assert!(verifier.verify_at(&token_b, fetched + 301).await.is_ok());
    assert_eq!(server.hits(), 4);
}

/// Runs the futures concurrently and collects their outputs in order.
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_last_set_and_fails_closed_without_one() {
    let key = PrivateKey::generate(SigningAlgorithm::ES256).unwrap();
    let server = KeyServer::start(&[&key]).await;
    let verifier = JwksVerifier::new(&server.url, ISSUER, AUDIENCE).unwrap();
    let good = token(&key);
    assert!(verifier.verify_at(&good, T0).await.is_ok());
    server.answer(500, "{}".into());
    // Due for a refresh that fails: the set fetched before still serves.
    assert!(verifier.verify_at(&good, T0 + 400).await.is_ok());
    assert_eq!(server.hits(), 2);
    // A key the verifier has never seen: it cannot say the token is bad, only that it cannot
    // check it.
    let unseen = token(&PrivateKey::generate(SigningAlgorithm::ES256).unwrap());
    assert_eq!(
        verifier.verify_at(&unseen, T0 + 500).await,
        Err(VerifyError::KeysUnavailable)
    );
    // The resource server answers 503 then, not 401.
    let (rs, _task) = protected(crate::resource::authenticator(json!({
        "issuerUrl": ISSUER,
        "resourceUrl": AUDIENCE,
        "signing": {"algorithm": "ES256", "jwksUrl": server.url},
    })))
    .await;
    let http = reqwest::Client::new();
    let response = get_tools(&http, &rs, Some(&good)).await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn a_key_set_over_the_size_cap_is_refused() {
    let key = PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap();
    let jwk = key.public_key().to_jwk();
    let server = KeyServer::start(&[]).await;
    let padded = |n: usize| json!({"keys": [jwk], "padding": "x".repeat(n)}).to_string();
    let max = mcp_authd::resource::jwks::MAX_JWKS_BYTES;
    // Just under the cap: a valid set.
    server.answer(200, padded(max - 200));
    let verifier = JwksVerifier::new(&server.url, ISSUER, AUDIENCE).unwrap();
    assert!(verifier.verify_at(&token(&key), T0).await.is_ok());
    // Over it: the same valid set is not read.
    server.answer(200, padded(max + 1));
    let verifier = JwksVerifier::new(&server.url, ISSUER, AUDIENCE).unwrap();
    assert_eq!(
        verifier.verify_at(&token(&key), T0).await,
        Err(VerifyError::KeysUnavailable)
    );
}

#[tokio::test]
async fn a_jwks_server_that_never_answers_is_given_up_on() {
    // Accepts connections and reads nothing back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let verifier = JwksVerifier::new(&url, ISSUER, AUDIENCE)
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let key = PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        verifier.verify_at(&token(&key), T0),
    )
    .await
    .expect("the fetch timeout ends the wait");
    assert_eq!(outcome, Err(VerifyError::KeysUnavailable));
}

#[tokio::test]
async fn hmac_tokens_made_from_the_public_key_are_refused() {
    for algorithm in ALGORITHMS {
        let dir = tempfile::tempdir().unwrap();
        let (key, private, _) = key_files(dir.path(), "signing", algorithm);
        let app = spawn_signing(dir.path(), algorithm, &private, &[], None).await;
        let (_, tokens) = app.signed_in_client().await;
        let real = tokens["access_token"].as_str().unwrap();
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(real.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        let (_, _, jwks) = get_json(&app, &app.url("/.well-known/jwks.json")).await;
        let jwk = jwks["keys"][0].clone();
        let kid = jwk["kid"].as_str().unwrap().to_string();
        let public_pem = key.public_key().to_pem().unwrap();
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        // Everything an attacker can read, used as an HMAC key under the published kid; and
        // the jwtSecret, which no longer signs access tokens.
        let mut forged: Vec<String> = [public_pem.as_bytes(), jwk.to_string().as_bytes(), &x]
            .iter()
            .map(|secret| {
                forge(
                    json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
                    claims.clone(),
                    secret,
                )
            })
            .collect();
        forged.push(forge(
            json!({"alg": "HS256", "typ": "at+jwt"}),
            claims.clone(),
            SECRET.as_bytes(),
        ));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
            real.split('.').nth(1).unwrap()
        );
        forged.push(none);

        let clock = Arc::new(ManualClock::new(app.clock.now()));
        let from_jwks: Authenticator =
            crate::resource::authenticator(jwks_oauth_as(&app, algorithm))
                .with_clock(clock.clone());
        let from_files = crate::resource::authenticator(json!({
            "issuerUrl": app.base,
            "signing": {"algorithm": algorithm.as_str(), "privateKeyFile": private},
        }))
        .with_clock(clock);
        for auth in [from_jwks, from_files] {
            let (rs, _task) = protected(auth).await;
            assert_eq!(get_tools(&app.http, &rs, Some(real)).await.status(), 200);
            for token in &forged {
                let response = get_tools(&app.http, &rs, Some(token)).await;
                assert_eq!(response.status(), 401, "{algorithm}: {token}");
            }
        }
        for token in &forged {
            assert!(
                app.state
                    .verifier
                    .verify_at(token, app.clock.now())
                    .is_err()
            );
        }
        app.stop().await;
    }
}
