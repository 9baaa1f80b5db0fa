//! Client authentication at the token and revocation endpoints (OAuth 2.1 §2.4, §3.2.1).
//!
//! Accepted: `none` (client_id in the body), `client_secret_post`, `client_secret_basic`, and
//! Basic with the same client_id repeated in the body (the Python SDK sends both); for
//! clients identified by a metadata document, `none` or `private_key_jwt` (RFC 7523) as the
//! document says.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::OAuthError;
use super::Server as AppState;
use super::assertion::{self, JWT_BEARER_ASSERTION};
use super::documents::is_document_client;
use super::params::Params;
use crate::oauth::cimd::ClientDocument;
use crate::secrets::{constant_time_eq, sha256_b64};
use crate::store::{AuthMethod, Client};

/// The credentials a request presented.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The claimed client: the body's `client_id`, or the Basic user name. Empty when only a
    /// client assertion names the client (its `iss` is then used).
    pub client_id: String,
    /// The secret, if any.
    pub secret: Option<String>,
    /// Whether HTTP Basic was used (a failure must then carry `WWW-Authenticate: Basic`).
    pub used_basic: bool,
    /// An RFC 7523 client assertion (`client_assertion` with the jwt-bearer type).
    pub assertion: Option<String>,
}

/// Reads the credentials from an `Authorization` header value and the form.
pub fn extract(authorization: Option<&str>, form: &Params) -> Result<Credentials, OAuthError> {
    let body_id = form.non_empty("client_id");
    let body_secret = form.non_empty("client_secret");
    let assertion_type = form.get("client_assertion_type");
    let assertion = form.get("client_assertion");
    if assertion_type.is_some() || assertion.is_some() {
        if authorization.is_some() || body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not a client assertion and a secret",
            ));
        }
        if assertion_type != Some(JWT_BEARER_ASSERTION) {
            return Err(OAuthError::invalid_client(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
        let assertion = assertion
            .filter(|a| !a.is_empty())
            .ok_or_else(|| OAuthError::invalid_client("client_assertion is required"))?;
        return Ok(Credentials {
            client_id: body_id.unwrap_or_default().to_string(),
            secret: None,
            used_basic: false,
            assertion: Some(assertion.to_string()),
        });
    }
    let Some(header) = authorization else {
        let client_id = body_id.ok_or_else(|| {
            OAuthError::invalid_client("client authentication is required (client_id)")
        })?;
        return Ok(Credentials {
            client_id: client_id.to_string(),
            secret: body_secret.map(str::to_string),
            used_basic: false,
            assertion: None,
        });
    };
    let basic_error =
        || OAuthError::invalid_client("malformed HTTP Basic credentials").with_basic_auth(true);
    let (scheme, encoded) = header.split_once(' ').ok_or_else(basic_error)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "only HTTP Basic client authentication is supported",
        )
        .with_basic_auth(true));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| basic_error())?;
    let decoded = String::from_utf8(decoded).map_err(|_| basic_error())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(basic_error)?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
    let id = form_decode(id).ok_or_else(basic_error)?;
    let secret = form_decode(secret).ok_or_else(basic_error)?;
    if body_secret.is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not Basic and client_secret",
        )
        .with_basic_auth(true));
    }
    if body_id.is_some_and(|b| b != id) {
        return Err(OAuthError::invalid_client(
            "client_id in the body differs from the Basic credentials",
        )
        .with_basic_auth(true));
    }
    Ok(Credentials {
        client_id: id,
        secret: Some(secret).filter(|s| !s.is_empty()),
        used_basic: true,
        assertion: None,
    })
}

fn form_decode(s: &str) -> Option<String> {
    let plus_decoded = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Authenticates the credentials: against the registered client, or against the client's
/// metadata document. `audiences` are the `aud` values a client assertion may name (the
/// token endpoint URL, the issuer, the URL of the endpoint called).
pub async fn authenticate(
    app: &AppState,
    creds: &Credentials,
    audiences: &[&str],
) -> Result<Client, OAuthError> {
    let fail =
        |why: &'static str| OAuthError::invalid_client(why).with_basic_auth(creds.used_basic);
    let client_id = match (&creds.assertion, creds.client_id.is_empty()) {
        (Some(assertion), true) => assertion::unverified_issuer(assertion)
            .ok_or_else(|| fail("the client assertion is malformed"))?,
        _ => creds.client_id.clone(),
    };
    if is_document_client(&app.config, &client_id) {
        return authenticate_document_client(app, &client_id, creds, audiences).await;
    }
    let client = app
        .store
        .client(&client_id)
        .await?
        .ok_or_else(|| fail("unknown client_id; register the client again"))?;
    if creds.assertion.is_some() {
        return Err(fail(
            "this client does not authenticate with a client assertion",
        ));
    }
    match (&client.secret_hash, &creds.secret) {
        (Some(expected), Some(secret)) => {
            if !constant_time_eq(
                expected.as_bytes(),
                sha256_b64(secret.as_bytes()).as_bytes(),
            ) {
                return Err(fail("client authentication failed"));
            }
        }
        (Some(_), None) => {
            return Err(fail("this client must authenticate with its client_secret"));
        }
        (None, Some(_)) => {
            return Err(fail(
                "this is a public client; it must not send a client_secret",
            ));
        }
        (None, None) => {}
    }
    Ok(client)
}

/// A client identified by its metadata document: `none` → no credential at all (PKCE does
/// the rest); `private_key_jwt` → an assertion verified with the document's keys, used once.
/// A document that can be neither fetched nor served stale → `invalid_client`.
async fn authenticate_document_client(
    app: &AppState,
    client_id: &str,
    creds: &Credentials,
    audiences: &[&str],
) -> Result<Client, OAuthError> {
    let fail = |why: String| OAuthError::invalid_client(why).with_basic_auth(creds.used_basic);
    let now = app.now();
    let document = app
        .documents
        .document(&app.config, client_id, now)
        .await
        .map_err(|e| fail(format!("the client metadata document cannot be used: {e}")))?;
    let client = document.to_client();
    if creds.secret.is_some() || creds.used_basic {
        return Err(fail(
            "a client metadata document client has no client_secret".into(),
        ));
    }
    match (client.token_endpoint_auth_method, &creds.assertion) {
        (AuthMethod::None, None) => Ok(client),
        (AuthMethod::None, Some(_)) => Err(fail(
            "the client's metadata document does not declare private_key_jwt".into(),
        )),
        (_, None) => Err(fail(
            "this client must authenticate with a private_key_jwt client assertion".into(),
        )),
        (_, Some(presented)) => {
            let verified = verify_assertion(app, &document, presented, audiences, now).await?;
            let is_first = app
                .assertion_replay
                .first_use(client_id, &verified.jti, verified.exp, now)
                .await
                .map_err(|_| OAuthError::storage_unavailable())?;
            if !is_first {
                tracing::warn!(target: "audit", client_id = %client_id, "client assertion replayed");
                return Err(fail("the client assertion was already used".into()));
            }
            Ok(client)
        }
    }
}

/// Verifies a client assertion with the document's keys; an unknown key refetches a
/// `jwks_uri` once (the client may have rotated its keys).
async fn verify_assertion(
    app: &AppState,
    document: &ClientDocument,
    presented: &str,
    audiences: &[&str],
    now: u64,
) -> Result<assertion::VerifiedAssertion, OAuthError> {
    let expect = assertion::Expectations {
        client_id: &document.client_id,
        audiences,
        now,
    };
    let keys_error = |e: super::documents::DocumentError| {
        OAuthError::invalid_client(format!("the client's keys cannot be used: {e}"))
    };
    let keys = match app.documents.keys(document, now, false).await {
        Some(keys) => keys.map_err(keys_error)?,
        None => return Err(OAuthError::invalid_client("the client has no keys")),
    };
    let mut outcome = assertion::verify(presented, &keys, &expect);
    if outcome == Err(assertion::AssertionError::UnknownKey)
        && let Some(refetched) = app.documents.keys(document, now, true).await
    {
        let refetched = refetched.map_err(keys_error)?;
        outcome = assertion::verify(presented, &refetched, &expect);
    }
    outcome.map_err(|e| {
        tracing::info!(target: "audit", client_id = %document.client_id, reason = %e, "client assertion refused");
        OAuthError::invalid_client(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(s: &str) -> Params {
        Params::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn body_credentials() {
        let c = extract(None, &form("client_id=a&client_secret=s")).unwrap();
        assert_eq!(
            c,
            Credentials {
                client_id: "a".into(),
                secret: Some("s".into()),
                used_basic: false,
                assertion: None,
            }
        );
        assert!(extract(None, &form("grant_type=x")).is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded_and_may_repeat_the_id() {
        let header = format!("basic {}", STANDARD.encode("my%3Aid:s%2Bx+y"));
        let c = extract(Some(&header), &form("client_id=my%3Aid")).unwrap();
        assert_eq!(
            c,
            Credentials {
                client_id: "my:id".into(),
                secret: Some("s+x y".into()),
                used_basic: true,
                assertion: None,
            }
        );
    }

    #[test]
    fn client_assertions_are_read_and_never_mixed_with_secrets() {
        let jwt_bearer = "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
        let c = extract(None, &form(&format!("{jwt_bearer}&client_assertion=a.b.c"))).unwrap();
        assert_eq!(c.assertion.as_deref(), Some("a.b.c"));
        assert_eq!(c.client_id, "");
        let c = extract(
            None,
            &form(&format!(
                "{jwt_bearer}&client_assertion=a.b.c&client_id=https%3A%2F%2Fx.example%2Fc"
            )),
        )
        .unwrap();
        assert_eq!(c.client_id, "https://x.example/c");
        let basic = format!("Basic {}", STANDARD.encode("a:s"));
        let e = extract(
            Some(&basic),
            &form(&format!("{jwt_bearer}&client_assertion=a.b.c")),
        )
        .unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request");
        let e = extract(
            None,
            &form(&format!(
                "{jwt_bearer}&client_assertion=a.b.c&client_secret=s"
            )),
        )
        .unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request");
        let e = extract(None, &form("client_assertion_type=saml&client_assertion=x")).unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_client");
        let e = extract(None, &form(jwt_bearer)).unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_client");
    }

    #[test]
    fn conflicting_or_malformed_basic_is_refused() {
        let header = format!("Basic {}", STANDARD.encode("a:s"));
        assert!(extract(Some(&header), &form("client_secret=s")).is_err());
        assert!(extract(Some(&header), &form("client_id=b")).is_err());
        assert!(extract(Some("Basic !!!"), &form("")).is_err());
        assert!(
            extract(
                Some(&format!("Basic {}", STANDARD.encode("nocolon"))),
                &form("")
            )
            .is_err()
        );
        assert!(extract(Some("Bearer x"), &form("")).is_err());
    }
}
