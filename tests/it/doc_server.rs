//! An HTTPS server on loopback for client metadata documents and their JWKS, with a CA made
//! at test time (rcgen), answers set per path, and a hit count per path; plus the pieces the
//! CIMD tests share: signing keys for client assertions and a capture of audit events.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::Full;
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

/// One canned answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Cache-Control`, if any.
    pub cache_control: Option<String>,
    /// `Location`, if any.
    pub location: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// 200 with `value` as `application/json`.
    pub fn json(value: &Value) -> Self {
        Self::body(200, "application/json", value.to_string().into_bytes())
    }

    /// An answer with this status, type and body.
    pub fn body(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type,
            cache_control: None,
            location: None,
            body,
            delay: Duration::ZERO,
        }
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        let mut reply = Self::body(status, "text/plain", Vec::new());
        reply.location = Some(location.to_string());
        reply
    }

    /// The same, answered after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The same with `Cache-Control: value`.
    pub fn cache(mut self, value: &str) -> Self {
        self.cache_control = Some(value.to_string());
        self
    }
}

#[derive(Default)]
struct Routes {
    replies: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
}

/// The running server; stops when dropped.
pub struct DocServer {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The PEM file of the CA that signed the server's certificate (`caFile`).
    pub ca_file: PathBuf,
    routes: Arc<Mutex<Routes>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DocServer {
    /// A CA, a certificate for `localhost`, `127.0.0.1` and `::1` signed by it, and a server
    /// on a free loopback port.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mcp-authd test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let certs = vec![pki_types::CertificateDer::from(leaf.der().to_vec())];
        let key = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
            leaf_key.serialize_der(),
        ));
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes = Arc::new(Mutex::new(Routes::default()));
        let serving = routes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let routes = serving.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let routes = routes.clone();
                        async move { Ok::<_, Infallible>(answer(&routes, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            port,
            ca_file,
            routes,
            task,
            _dir: dir,
        }
    }

    /// `https://localhost:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Answers `path` with `reply` from now on.
    pub fn serve(&self, path: &str, reply: Reply) {
        self.routes
            .lock()
            .unwrap()
            .replies
            .insert(path.to_string(), reply);
    }

    /// How many requests `path` received.
    pub fn hits(&self, path: &str) -> usize {
        self.routes
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// The `oauthAs` changes that let mcp-authd fetch from this server: the test-only
    /// options, and the redirect URIs of the real-client fixtures in the allowlist.
    pub fn configure(&self, section: &mut Value) {
        section["clientMetadataDocuments"] = json!({
            "allowPrivateAddresses": true,
            "caFile": self.ca_file,
        });
        let allowlist = section["redirectUriAllowlist"].as_array_mut().unwrap();
        for uri in [
            "https://vscode.dev/redirect",
            "https://insiders.vscode.dev/redirect",
        ] {
            allowlist.push(json!(uri));
        }
    }
}

async fn answer(
    routes: &Mutex<Routes>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let reply = {
        let mut routes = routes.lock().unwrap();
        *routes.hits.entry(path.clone()).or_default() += 1;
        routes.replies.get(&path).cloned()
    };
    let reply = reply.unwrap_or_else(|| Reply::body(404, "text/plain", b"not found".to_vec()));
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = hyper::Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type);
    if let Some(value) = &reply.cache_control {
        response = response.header("cache-control", value);
    }
    if let Some(value) = &reply.location {
        response = response.header("location", value);
    }
    response.body(Full::new(Bytes::from(reply.body))).unwrap()
}

/// A fixture from `tests/fixtures/cimd/` with its placeholders filled in.
pub fn fixture(name: &str, url: &str, jwks_uri: &str) -> Value {
    let path = format!("{}/tests/fixtures/cimd/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(
        &text
            .replace("{{URL}}", url)
            .replace("{{JWKS_URI}}", jwks_uri),
    )
    .unwrap()
}

/// A client's signing key for `private_key_jwt`, and its public JWK.
pub struct ClientKey {
    algorithm: jsonwebtoken::Algorithm,
    kid: String,
    encoding: jsonwebtoken::EncodingKey,
    /// The public key as a JWK.
    pub jwk: Value,
}

impl ClientKey {
    /// A fresh P-256 key (ES256).
    pub fn es256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = pair.public_key_raw();
        Self {
            algorithm: jsonwebtoken::Algorithm::ES256,
            kid: kid.to_string(),
            encoding: jsonwebtoken::EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])}),
        }
    }

    /// A fresh Ed25519 key (EdDSA).
    pub fn ed25519(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Self {
            algorithm: jsonwebtoken::Algorithm::EdDSA,
            kid: kid.to_string(),
            encoding: jsonwebtoken::EncodingKey::from_ed_der(&pair.serialize_der()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(pair.public_key_raw())}),
        }
    }

    /// `{"keys": [jwk]}`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }

    /// A JWS of `claims` signed with this key, `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn captured() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOG.get_or_init(Mutex::default)
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        captured().lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing `audit` events of this test process (once).
pub fn capture_audit() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("audit=info"))
            .with_ansi(false)
            .with_writer(|| Capture)
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// The captured audit lines that mention `needle`.
pub fn audit_lines(needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&captured().lock().unwrap())
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}
