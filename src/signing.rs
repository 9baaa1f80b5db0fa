//! Asymmetric signing keys for access tokens (SPEC §14): Ed25519 (`EdDSA`) and P-256
//! (`ES256`) keys, read from and written to PEM files, published as JWKs whose `kid` is the
//! RFC 7638 thumbprint.
//!
//! The private key is PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the public keys are SPKI PEM
//! (`-----BEGIN PUBLIC KEY-----`): the forms `openssl genpkey` and `openssl pkey -pubout`
//! write, so keys made elsewhere work too. Nothing here ever prints key material: errors name
//! the file and what is wrong with it.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::LineEnding;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// How access tokens are signed (`oauthAs.signing.algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// HMAC-SHA256 with `jwtSecret`, shared with every resource server (the default).
    HS256,
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA on P-256 with SHA-256 (RFC 7518 §3.4).
    ES256,
}

impl SigningAlgorithm {
    /// The name used in configuration, in JWS headers and in JWKs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }

    /// Parses a name exactly as JOSE spells it (`HS256`, `EdDSA`, `ES256`).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::HS256, Self::EdDSA, Self::ES256]
            .into_iter()
            .find(|a| a.as_str() == name)
    }

    /// Whether the algorithm uses a key pair (and so has a JWKS).
    pub fn is_asymmetric(self) -> bool {
        self != Self::HS256
    }

    /// The `jsonwebtoken` algorithm.
    pub fn jose(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::HS256 => jsonwebtoken::Algorithm::HS256,
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl std::fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key could not be read or used. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// The public half of a key, as a verifier needs it.
#[derive(Clone)]
enum PublicMaterial {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::PublicKey),
}

/// A public verification key with its algorithm and key id.
#[derive(Clone)]
pub struct PublicKey {
    material: PublicMaterial,
    kid: String,
    decoding: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.kid)
            .finish()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.thumbprint() == other.thumbprint()
    }
}

impl PublicKey {
    fn new(material: PublicMaterial) -> Self {
        let decoding = match &material {
            PublicMaterial::Ed25519(key) => DecodingKey::from_ed_der(key.as_bytes()),
            PublicMaterial::P256(key) => {
                DecodingKey::from_ec_der(key.to_encoded_point(false).as_bytes())
            }
        };
        let mut key = Self {
            material,
            kid: String::new(),
            decoding,
        };
        key.kid = key.thumbprint();
        key
    }

    /// Reads an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`), Ed25519 or P-256. Its
    /// `kid` is its thumbprint.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        match pem_label(text).as_deref() {
            Some("PUBLIC KEY") => {}
            Some("PRIVATE KEY" | "EC PRIVATE KEY") => {
                return Err(KeyError(
                    "holds a private key; list its public half instead (the .pub file `mcp-authd gen-key` wrote, or `openssl pkey -in KEY -pubout`)".into(),
                ));
            }
            _ => {
                return Err(KeyError(
                    "is not a PEM public key (-----BEGIN PUBLIC KEY-----)".into(),
                ));
            }
        }
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
            return Ok(Self::new(PublicMaterial::Ed25519(key)));
        }
        if let Ok(key) = p256::PublicKey::from_public_key_pem(text) {
            return Ok(Self::new(PublicMaterial::P256(key)));
        }
        Err(KeyError(
            "is not an Ed25519 or P-256 public key (the only kinds supported)".into(),
        ))
    }

    /// Reads one JWK (RFC 7517) of kind `OKP`/`Ed25519` or `EC`/`P-256`. Its `kid` is the
    /// JWK's own `kid` when it has one (the label tokens carry), else its thumbprint. An `alg`
    /// member, if present, must be the one the curve implies, and `use`, if present, `sig`.
    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let member = |name: &str| jwk.get(name).and_then(Value::as_str);
        let coordinate = |name: &str| -> Result<[u8; 32], KeyError> {
            let text = member(name).ok_or_else(|| KeyError(format!("JWK without {name}")))?;
            URL_SAFE_NO_PAD
                .decode(text)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| KeyError(format!("JWK {name} is not 32 bytes of base64url")))
        };
        if jwk.get("use").is_some_and(|u| u != "sig") {
            return Err(KeyError("JWK is not for signatures (use)".into()));
        }
        let material = match (member("kty"), member("crv")) {
            (Some("OKP"), Some("Ed25519")) => {
                let key = ed25519_dalek::VerifyingKey::from_bytes(&coordinate("x")?)
                    .map_err(|_| KeyError("JWK x is not an Ed25519 point".into()))?;
                PublicMaterial::Ed25519(key)
            }
            (Some("EC"), Some("P-256")) => {
                let mut point = vec![0x04];
                point.extend_from_slice(&coordinate("x")?);
                point.extend_from_slice(&coordinate("y")?);
                let key = p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| KeyError("JWK x, y is not a P-256 point".into()))?;
                PublicMaterial::P256(key)
            }
            (kty, crv) => {
                return Err(KeyError(format!(
                    "unsupported JWK kty {:?} crv {:?} (only OKP Ed25519 and EC P-256)",
                    kty.unwrap_or(""),
                    crv.unwrap_or("")
                )));
            }
        };
        let mut key = Self::new(material);
        if let Some(alg) = jwk.get("alg")
            && alg != key.algorithm().as_str()
        {
            return Err(KeyError(format!(
                "JWK alg {alg} does not fit its curve (expected {})",
                key.algorithm()
            )));
        }
        match jwk.get("kid") {
            Some(Value::String(kid)) if !kid.is_empty() => key.kid = kid.clone(),
            None => {}
            Some(_) => return Err(KeyError("JWK kid is not a non-empty string".into())),
        }
        Ok(key)
    }

    /// The algorithm this key verifies: it follows from the key type alone, never from a token.
    pub fn algorithm(&self) -> SigningAlgorithm {
        match self.material {
            PublicMaterial::Ed25519(_) => SigningAlgorithm::EdDSA,
            PublicMaterial::P256(_) => SigningAlgorithm::ES256,
        }
    }

    /// The key id tokens signed with this key carry in their header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): this server's `kid`.
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(&self.required_members())
    }

    /// The members RFC 7638 §3.2 hashes, in lexicographic order.
    fn required_members(&self) -> Vec<(&'static str, String)> {
        match &self.material {
            PublicMaterial::Ed25519(key) => vec![
                ("crv", "Ed25519".into()),
                ("kty", "OKP".into()),
                ("x", URL_SAFE_NO_PAD.encode(key.as_bytes())),
            ],
            PublicMaterial::P256(key) => {
                let point = key.to_encoded_point(false);
                let coordinate = |c: Option<&p256::FieldBytes>| {
                    URL_SAFE_NO_PAD.encode(c.map(|c| &c[..]).unwrap_or_default())
                };
                vec![
                    ("crv", "P-256".into()),
                    ("kty", "EC".into()),
                    ("x", coordinate(point.x())),
                    ("y", coordinate(point.y())),
                ]
            }
        }
    }

    /// The public JWK as published at `/.well-known/jwks.json`: the key members plus `kid`,
    /// `alg` and `use: sig`.
    pub fn to_jwk(&self) -> Value {
        let mut jwk = serde_json::Map::new();
        for (name, value) in self.required_members() {
            jwk.insert(name.into(), Value::String(value));
        }
        jwk.insert("kid".into(), Value::String(self.kid.clone()));
        jwk.insert(
            "alg".into(),
            Value::String(self.algorithm().as_str().into()),
        );
        jwk.insert("use".into(), Value::String("sig".into()));
        Value::Object(jwk)
    }

    /// The SPKI PEM form (for `previousPublicKeyFiles`).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let pem = match &self.material {
            PublicMaterial::Ed25519(key) => key.to_public_key_pem(LineEnding::LF),
            PublicMaterial::P256(key) => key.to_public_key_pem(LineEnding::LF),
        };
        pem.map_err(|_| KeyError("cannot encode the public key".into()))
    }

    /// The key in the form `jsonwebtoken` verifies with.
    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// RFC 7638 §3: SHA-256 over the JSON object of the required members, sorted by name, with no
/// whitespace; base64url without padding. `members` must already be sorted.
pub fn jwk_thumbprint(members: &[(&str, String)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("{}:{}", Value::from(*name), Value::from(value.as_str())))
        .collect();
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{{{}}}", body.join(",")).as_bytes()))
}

/// The private half of a key pair; zeroised when dropped.
#[derive(Clone)]
enum PrivateMaterial {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::SecretKey),
}

/// A private signing key (EdDSA or ES256) and its public half.
#[derive(Clone)]
pub struct PrivateKey {
    material: PrivateMaterial,
    public: PublicKey,
    encoding: EncodingKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm())
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    fn new(material: PrivateMaterial) -> Result<Self, KeyError> {
        let unencodable = |_| KeyError("cannot encode the private key as PKCS#8".into());
        let (public, encoding) = match &material {
            PrivateMaterial::Ed25519(key) => (
                PublicKey::new(PublicMaterial::Ed25519(key.verifying_key())),
                EncodingKey::from_ed_der(
                    ed25519_v1(key, |pair| pair.to_pkcs8_der())
                        .map_err(unencodable)?
                        .as_bytes(),
                ),
            ),
            PrivateMaterial::P256(key) => (
                PublicKey::new(PublicMaterial::P256(key.public_key())),
                EncodingKey::from_ec_der(key.to_pkcs8_der().map_err(unencodable)?.as_bytes()),
            ),
        };
        Ok(Self {
            material,
            public,
            encoding,
        })
    }

    /// A fresh key from the operating-system-seeded CSPRNG.
    pub fn generate(algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        match algorithm {
            SigningAlgorithm::EdDSA => {
                rand::rng().fill_bytes(seed.as_mut());
                Self::new(PrivateMaterial::Ed25519(
                    ed25519_dalek::SigningKey::from_bytes(&seed),
                ))
            }
            SigningAlgorithm::ES256 => loop {
                // A 32-byte string is a valid scalar unless it is 0 or ≥ the group order
                // (probability about 2^-32): draw again then.
                rand::rng().fill_bytes(seed.as_mut());
                if let Ok(key) = p256::SecretKey::from_slice(seed.as_ref()) {
                    break Self::new(PrivateMaterial::P256(key));
                }
            },
            SigningAlgorithm::HS256 => Err(KeyError(
                "HS256 has no key pair (use `mcp-authd gen-secret`)".into(),
            )),
        }
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), Ed25519 or P-256.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        match pem_label(text).as_deref() {
            Some("PRIVATE KEY") => {}
            Some("EC PRIVATE KEY") => {
                return Err(KeyError(
                    "is a SEC1 EC key; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`".into(),
                ));
            }
            Some("ENCRYPTED PRIVATE KEY") => {
                return Err(KeyError(
                    "is encrypted; mcp-authd needs an unencrypted PKCS#8 key (protect it with file permissions)".into(),
                ));
            }
            Some("PUBLIC KEY") => {
                return Err(KeyError("holds a public key, not the private key".into()));
            }
            _ => {
                return Err(KeyError(
                    "is not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----; generate one with `mcp-authd gen-key`)".into(),
                ));
            }
        }
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
            return Self::new(PrivateMaterial::Ed25519(key));
        }
        if let Ok(key) = p256::SecretKey::from_pkcs8_pem(text) {
            return Self::new(PrivateMaterial::P256(key));
        }
        Err(KeyError(
            "is not an Ed25519 or P-256 private key (the only kinds supported)".into(),
        ))
    }

    /// The PKCS#8 PEM form, for writing the key file.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let pem = match &self.material {
            PrivateMaterial::Ed25519(key) => {
                ed25519_v1(key, |pair| pair.to_pkcs8_pem(LineEnding::LF))
            }
            PrivateMaterial::P256(key) => key.to_pkcs8_pem(LineEnding::LF),
        };
        pem.map_err(|_| KeyError("cannot encode the private key".into()))
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.public.algorithm()
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The key in the form `jsonwebtoken` signs with.
    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// Encodes an Ed25519 key as a PKCS#8 v1 structure (RFC 8410 §7: the private key only), the
/// form `openssl genpkey` writes. The v2 form with the public key, which the key type writes by
/// itself, is refused by OpenSSL and by Python's `cryptography`. The copy of the secret made
/// for this is wiped afterwards (the structure does not wipe itself in this build).
fn ed25519_v1<T>(
    key: &ed25519_dalek::SigningKey,
    encode: impl FnOnce(&ed25519_dalek::pkcs8::KeypairBytes) -> T,
) -> T {
    use p256::elliptic_curve::zeroize::Zeroize as _;
    let mut pair = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let encoded = encode(&pair);
    pair.secret_key.zeroize();
    encoded
}

/// The label of the first PEM block, if the text starts like one.
fn pem_label(text: &str) -> Option<String> {
    let first = text.trim_start().lines().next()?;
    let label = first.strip_prefix("-----BEGIN ")?.strip_suffix("-----")?;
    Some(label.to_string())
}

/// `oauthAs.signing` exactly as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawSigning {
    algorithm: Option<String>,
    private_key_file: Option<String>,
    previous_public_key_files: Option<Vec<String>>,
    jwks_url: Option<String>,
}

/// The validated `oauthAs.signing`.
#[derive(Debug, Clone)]
pub struct SigningConfig {
    /// `algorithm`.
    pub algorithm: SigningAlgorithm,
    /// The key read from `privateKeyFile` (asymmetric algorithms only).
    pub private_key: Option<std::sync::Arc<PrivateKey>>,
    /// The keys read from `previousPublicKeyFiles`: still accepted and still published, so
    /// tokens signed before a rotation verify until they expire.
    pub previous_public_keys: Vec<PublicKey>,
    /// `jwksUrl`: where a resource server without the key files fetches the public keys.
    /// mcp-authd itself does not use it.
    pub jwks_url: Option<String>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::HS256,
            private_key: None,
            previous_public_keys: Vec::new(),
            jwks_url: None,
        }
    }
}

impl SigningConfig {
    /// Every public key to publish and accept, the current one first, each kid once. Empty for
    /// HS256.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        let mut keys: Vec<PublicKey> = Vec::new();
        let current = self.private_key.as_ref().map(|k| k.public_key().clone());
        for key in current
            .into_iter()
            .chain(self.previous_public_keys.iter().cloned())
        {
            if !keys.iter().any(|k| k.kid() == key.kid()) {
                keys.push(key);
            }
        }
        keys
    }

    /// The JWK Set document (RFC 7517 §5) of [`Self::public_keys`].
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.public_keys().iter().map(PublicKey::to_jwk).collect();
        json!({ "keys": keys })
    }
}

/// What a resource server reads from `oauthAs.signing`.
pub(crate) enum ResourceKeys {
    /// HS256: verify with `jwtSecret`.
    Secret,
    /// Verify with these public keys (from the key files).
    Files(Vec<PublicKey>),
    /// Fetch the keys from this JWKS URL.
    Jwks(String),
}

/// Validates `oauthAs.signing` for mcp-authd: the private key is required with an asymmetric
/// algorithm. Relative paths resolve against `base_dir` (the configuration file's directory).
/// Every problem is pushed to `errors`, named after its field.
pub(crate) fn load_signing(
    raw: Option<RawSigning>,
    base_dir: &Path,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> SigningConfig {
    let raw = raw.unwrap_or_default();
    let Some(algorithm) = algorithm_of(&raw, errors) else {
        return SigningConfig::default();
    };
    if !algorithm.is_asymmetric() {
        refuse_key_fields(&raw, errors);
        return SigningConfig::default();
    }
    let private_key = match raw.private_key_file.as_deref() {
        None => {
            errors.push(format!(
                "oauthAs.signing.privateKeyFile is required with algorithm {algorithm} (create one with `mcp-authd gen-key --algorithm {algorithm} --output FILE`)"
            ));
            None
        }
        Some(file) => {
            let path = resolve(base_dir, file);
            warn_if_shared(&path, warnings);
            match read(&path).and_then(|text| PrivateKey::from_pem(&text)) {
                Ok(key) if key.algorithm() != algorithm => {
                    errors.push(format!(
                        "oauthAs.signing.privateKeyFile: {} holds an {} key, but algorithm is {algorithm}",
                        path.display(),
                        key.algorithm()
                    ));
                    None
                }
                Ok(key) => Some(std::sync::Arc::new(key)),
                Err(e) => {
                    errors.push(format!(
                        "oauthAs.signing.privateKeyFile: {} {e}",
                        path.display()
                    ));
                    None
                }
            }
        }
    };
    let previous_public_keys = previous_keys(&raw, base_dir, errors);
    let jwks_url = raw
        .jwks_url
        .as_deref()
        .and_then(|url| match check_jwks_url(url) {
            Ok(()) => Some(url.to_string()),
            Err(e) => {
                errors.push(e);
                None
            }
        });
    SigningConfig {
        algorithm,
        private_key,
        previous_public_keys,
        jwks_url,
    }
}

/// Reads `oauthAs.signing` for a resource server: the JWKS URL when one is given (the key
/// files are then not read), otherwise the public half of `privateKeyFile` and the
/// `previousPublicKeyFiles`.
pub(crate) fn load_resource_keys(
    raw: Option<RawSigning>,
    base_dir: &Path,
    errors: &mut Vec<String>,
) -> ResourceKeys {
    let raw = raw.unwrap_or_default();
    let Some(algorithm) = algorithm_of(&raw, errors) else {
        return ResourceKeys::Secret;
    };
    if !algorithm.is_asymmetric() {
        refuse_key_fields(&raw, errors);
        return ResourceKeys::Secret;
    }
    // The URL itself is checked once, by the verifier built from it.
    if let Some(url) = raw.jwks_url.as_deref() {
        return ResourceKeys::Jwks(url.to_string());
    }
    let mut keys = Vec::new();
    match raw.private_key_file.as_deref() {
        None => errors.push(format!(
            "oauthAs.signing needs jwksUrl or privateKeyFile to verify {algorithm} tokens"
        )),
        Some(file) => {
            let path = resolve(base_dir, file);
            match read(&path).and_then(|text| PrivateKey::from_pem(&text)) {
                Ok(key) => keys.push(key.public_key().clone()),
                Err(e) => errors.push(format!(
                    "oauthAs.signing.privateKeyFile: {} {e}",
                    path.display()
                )),
            }
        }
    }
    keys.extend(previous_keys(&raw, base_dir, errors));
    ResourceKeys::Files(keys)
}

fn algorithm_of(raw: &RawSigning, errors: &mut Vec<String>) -> Option<SigningAlgorithm> {
    match raw.algorithm.as_deref() {
        None => Some(SigningAlgorithm::HS256),
        Some(name) => SigningAlgorithm::parse(name).or_else(|| {
            errors.push(format!(
                "oauthAs.signing.algorithm: {name:?} is not supported (HS256, EdDSA or ES256)"
            ));
            None
        }),
    }
}

fn refuse_key_fields(raw: &RawSigning, errors: &mut Vec<String>) {
    if raw.jwks_url.is_some() {
        errors.push("oauthAs.signing.jwksUrl is only used with EdDSA or ES256".into());
    }
    if raw.private_key_file.is_some() {
        errors.push(
            "oauthAs.signing.privateKeyFile is only used with EdDSA or ES256 (HS256 signs with jwtSecret)".into(),
        );
    }
    if raw.previous_public_key_files.is_some() {
        errors.push(
            "oauthAs.signing.previousPublicKeyFiles is only used with EdDSA or ES256 (HS256 rotates with previousJwtSecrets)".into(),
        );
    }
}

fn previous_keys(raw: &RawSigning, base_dir: &Path, errors: &mut Vec<String>) -> Vec<PublicKey> {
    let files = raw.previous_public_key_files.as_deref().unwrap_or_default();
    files
        .iter()
        .enumerate()
        .filter_map(|(i, file)| {
            let path = resolve(base_dir, file);
            read(&path)
                .and_then(|text| PublicKey::from_pem(&text))
                .map_err(|e| {
                    errors.push(format!(
                        "oauthAs.signing.previousPublicKeyFiles[{i}]: {} {e}",
                        path.display()
                    ));
                })
                .ok()
        })
        .collect()
}

/// `jwksUrl` is fetched with the plain HTTP/1.1 client of `resource/` (as introspection is):
/// the authorization server's internal address.
pub(crate) fn check_jwks_url(value: &str) -> Result<(), String> {
    match url::Url::parse(value) {
        Ok(url) if url.scheme() == "http" && url.host_str().is_some() => Ok(()),
        Ok(url) if url.scheme() == "https" => Err(format!(
            "oauthAs.signing.jwksUrl: {value:?} is https, but the built-in client speaks plain http to the authorization server's internal address; use that (e.g. http://127.0.0.1:8080/.well-known/jwks.json) or the key files"
        )),
        _ => Err(format!(
            "oauthAs.signing.jwksUrl: {value:?} is not an absolute http:// URL"
        )),
    }
}

/// A configured path, relative ones taken from the configuration file's directory.
pub(crate) fn resolve(base_dir: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|e| KeyError(format!("cannot be read: {e}")))
}

fn warn_if_shared(path: &Path, warnings: &mut Vec<String>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            warnings.push(format!(
                "oauthAs.signing.privateKeyFile: {} is accessible to other users; chmod 600 it",
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, warnings);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8037 §A.1/§A.3: an Ed25519 key and its RFC 7638 thumbprint.
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    #[test]
    fn thumbprint_matches_the_rfc_7638_rsa_vector() {
        // RFC 7638 §3.1, the example RSA key's required members.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let members = [
            ("e", "AQAB".to_string()),
            ("kty", "RSA".into()),
            ("n", n.into()),
        ];
        assert_eq!(
            jwk_thumbprint(&members),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn an_ed25519_jwk_gets_the_rfc_8037_thumbprint() {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X});
        let key = PublicKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.thumbprint(), RFC8037_THUMBPRINT);
        // Without a kid of its own, the thumbprint names it.
        assert_eq!(key.kid(), RFC8037_THUMBPRINT);
        assert_eq!(key.algorithm(), SigningAlgorithm::EdDSA);
        assert_eq!(
            key.to_jwk(),
            json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "kid": RFC8037_THUMBPRINT, "alg": "EdDSA", "use": "sig"})
        );
    }

    #[test]
    fn generated_keys_round_trip_through_pem_and_jwk() {
        for algorithm in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256] {
            let key = PrivateKey::generate(algorithm).unwrap();
            assert_eq!(key.algorithm(), algorithm);
            let pem = key.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let read = PrivateKey::from_pem(&pem).unwrap();
            assert_eq!(read.public_key(), key.public_key());
            let public_pem = key.public_key().to_pem().unwrap();
            assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
            assert_eq!(&PublicKey::from_pem(&public_pem).unwrap(), key.public_key());
            let jwk = key.public_key().to_jwk();
            assert_eq!(jwk["alg"], algorithm.as_str());
            assert_eq!(jwk["kid"], key.public_key().thumbprint());
            assert!(jwk.get("d").is_none(), "no private member is published");
            let from_jwk = PublicKey::from_jwk(&jwk).unwrap();
            assert_eq!(&from_jwk, key.public_key());
            assert_eq!(from_jwk.thumbprint().len(), 43);
        }
        assert!(PrivateKey::generate(SigningAlgorithm::HS256).is_err());
        let ec = PrivateKey::generate(SigningAlgorithm::ES256).unwrap();
        let jwk = ec.public_key().to_jwk();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        assert_eq!(
            jwk.as_object().unwrap().len(),
            7,
            "kty crv x y kid alg use: {jwk}"
        );
    }

    /// RFC 8410 §10.3: an Ed25519 private key as `openssl genpkey` writes it (PKCS#8 v1).
    const RFC8410_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";

    #[test]
    fn ed25519_keys_are_written_as_openssl_writes_them() {
        // The v2 form (with the public key) would not round-trip, and OpenSSL and Python's
        // `cryptography` refuse it.
        let key = PrivateKey::from_pem(RFC8410_PRIVATE).unwrap();
        assert_eq!(key.to_pem().unwrap().as_str(), RFC8410_PRIVATE);
        let fresh = PrivateKey::generate(SigningAlgorithm::EdDSA)
            .unwrap()
            .to_pem()
            .unwrap();
        let body: String = fresh.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert_eq!(der.len(), 48, "version, algorithm and private key only");
        assert_eq!(&der[..5], [0x30, 0x2e, 0x02, 0x01, 0x00]);
    }

    #[test]
    fn wrong_pem_kinds_are_explained() {
        let key = PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap();
        let private = key.to_pem().unwrap();
        let public = key.public_key().to_pem().unwrap();
        assert!(
            PublicKey::from_pem(&private)
                .unwrap_err()
                .0
                .contains("private key")
        );
        assert!(
            PrivateKey::from_pem(&public)
                .unwrap_err()
                .0
                .contains("public key")
        );
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert!(
            PrivateKey::from_pem(sec1)
                .unwrap_err()
                .0
                .contains("openssl pkcs8")
        );
        assert!(PrivateKey::from_pem("garbage").is_err());
        let broken = private.replace('A', "B");
        let error = PrivateKey::from_pem(&broken).map(|_| ()).unwrap_err().0;
        assert!(
            !error.contains(&private[30..60]),
            "no key material in errors"
        );
    }

    #[test]
    fn bad_jwks_members_are_refused() {
        let short = URL_SAFE_NO_PAD.encode([1u8; 31]);
        for jwk in [
            json!({"kty": "OKP", "crv": "Ed25519", "x": short}),
            json!({"kty": "OKP", "crv": "Ed25519"}),
            json!({"kty": "OKP", "crv": "X25519", "x": RFC8037_X}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "alg": "ES256"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "alg": "HS256"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "use": "enc"}),
            json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "kid": 7}),
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            json!({"kty": "EC", "crv": "P-256", "x": RFC8037_X, "y": RFC8037_X}),
        ] {
            assert!(PublicKey::from_jwk(&jwk).is_err(), "{jwk}");
        }
        let labelled = json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "kid": "k1"});
        assert_eq!(PublicKey::from_jwk(&labelled).unwrap().kid(), "k1");
    }

    fn write(dir: &Path, name: &str, text: &str) -> String {
        std::fs::write(dir.join(name), text).unwrap();
        name.to_string()
    }

    fn raw(value: Value) -> Option<RawSigning> {
        Some(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn key_files_are_read_relative_to_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        let current = PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap();
        let old = PrivateKey::generate(SigningAlgorithm::ES256).unwrap();
        let private = write(dir.path(), "signing.pem", &current.to_pem().unwrap());
        let previous = write(
            dir.path(),
            "old.pem.pub",
            &old.public_key().to_pem().unwrap(),
        );
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let signing = load_signing(
            raw(
                json!({"algorithm": "EdDSA", "privateKeyFile": private, "previousPublicKeyFiles": [previous]}),
            ),
            dir.path(),
            &mut errors,
            &mut warnings,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let kids: Vec<String> = signing
            .public_keys()
            .iter()
            .map(|k| k.kid().to_string())
            .collect();
        assert_eq!(kids, [current.public_key().kid(), old.public_key().kid()]);
        let jwks = signing.jwks();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][1]["alg"], "ES256");
    }

    #[test]
    fn signing_mistakes_are_named_after_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let ed = PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap();
        let ed_file = write(dir.path(), "ed.pem", &ed.to_pem().unwrap());
        let cases = [
            (
                json!({"algorithm": "RS256"}),
                "oauthAs.signing.algorithm: \"RS256\" is not supported",
            ),
            (
                json!({"algorithm": "hs256"}),
                "oauthAs.signing.algorithm: \"hs256\"",
            ),
            (
                json!({"algorithm": "EdDSA"}),
                "oauthAs.signing.privateKeyFile is required",
            ),
            (
                json!({"algorithm": "ES256", "privateKeyFile": ed_file}),
                "holds an EdDSA key, but algorithm is ES256",
            ),
            (
                json!({"algorithm": "EdDSA", "privateKeyFile": "missing.pem"}),
                "oauthAs.signing.privateKeyFile: ",
            ),
            (
                json!({"algorithm": "EdDSA", "privateKeyFile": ed_file, "previousPublicKeyFiles": [ed_file]}),
                "oauthAs.signing.previousPublicKeyFiles[0]: ",
            ),
            (
                json!({"privateKeyFile": ed_file}),
                "oauthAs.signing.privateKeyFile is only used with EdDSA or ES256",
            ),
            (
                json!({"jwksUrl": "http://127.0.0.1:8080/.well-known/jwks.json"}),
                "oauthAs.signing.jwksUrl is only used with EdDSA or ES256",
            ),
            (
                json!({"algorithm": "EdDSA", "privateKeyFile": ed_file, "jwksUrl": "https://as.example/jwks"}),
                "oauthAs.signing.jwksUrl: ",
            ),
        ];
        for (value, expected) in cases {
            let (mut errors, mut warnings) = (Vec::new(), Vec::new());
            load_signing(raw(value.clone()), dir.path(), &mut errors, &mut warnings);
            assert!(
                errors.len() == 1 && errors[0].contains(expected),
                "{value}: {errors:?}"
            );
        }
        assert!(serde_json::from_value::<RawSigning>(json!({"privateKey": "x"})).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_private_key_readable_by_others_is_warned_about() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = PrivateKey::generate(SigningAlgorithm::ES256).unwrap();
        let file = write(dir.path(), "k.pem", &key.to_pem().unwrap());
        let path = dir.path().join(&file);
        for (mode, warned) in [(0o600, false), (0o644, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let (mut errors, mut warnings) = (Vec::new(), Vec::new());
            load_signing(
                raw(json!({"algorithm": "ES256", "privateKeyFile": file})),
                dir.path(),
                &mut errors,
                &mut warnings,
            );
            assert!(errors.is_empty());
            assert_eq!(!warnings.is_empty(), warned, "{mode:o}: {warnings:?}");
        }
    }

    #[test]
    fn the_resource_side_prefers_the_jwks_url_and_needs_no_private_key_then() {
        let dir = tempfile::tempdir().unwrap();
        let mut errors = Vec::new();
        let keys = load_resource_keys(
            raw(
                json!({"algorithm": "EdDSA", "privateKeyFile": "absent.pem", "jwksUrl": "http://127.0.0.1:8080/.well-known/jwks.json"}),
            ),
            dir.path(),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(matches!(keys, ResourceKeys::Jwks(url) if url.ends_with("/jwks.json")));
        let keys = load_resource_keys(raw(json!({"algorithm": "ES256"})), dir.path(), &mut errors);
        assert!(matches!(keys, ResourceKeys::Files(k) if k.is_empty()));
        assert_eq!(errors.len(), 1, "{errors:?}");
        let mut errors = Vec::new();
        assert!(matches!(
            load_resource_keys(None, dir.path(), &mut errors),
            ResourceKeys::Secret
        ));
        assert!(errors.is_empty());
    }
}
