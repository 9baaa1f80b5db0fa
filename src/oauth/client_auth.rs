//! Client authentication at the token and revocation endpoints (OAuth 2.1 §2.4, §3.2.1).
//!
//! Accepted: `none` (client_id in the body), `client_secret_post`, `client_secret_basic`, and
//! Basic with the same client_id repeated in the body (the Python SDK sends both).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::OAuthError;
use super::params::Params;
use crate::secrets::{constant_time_eq, sha256_b64};
use crate::store::{Client, Store};

/// The credentials a request presented.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The claimed client.
    pub client_id: String,
    /// The secret, if any.
    pub secret: Option<String>,
    /// Whether HTTP Basic was used (a failure must then carry `WWW-Authenticate: Basic`).
    pub used_basic: bool,
}

/// Reads the credentials from an `Authorization` header value and the form.
pub fn extract(authorization: Option<&str>, form: &Params) -> Result<Credentials, OAuthError> {
    let body_id = form.non_empty("client_id");
    let body_secret = form.non_empty("client_secret");
    let Some(header) = authorization else {
        let client_id = body_id.ok_or_else(|| {
            OAuthError::invalid_client("client authentication is required (client_id)")
        })?;
        return Ok(Credentials {
            client_id: client_id.to_string(),
            secret: body_secret.map(str::to_string),
            used_basic: false,
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
    })
}

fn form_decode(s: &str) -> Option<String> {
    let plus_decoded = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_decoded)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Authenticates the credentials against the registered client.
pub async fn authenticate(store: &dyn Store, creds: &Credentials) -> Result<Client, OAuthError> {
    let fail =
        |why: &'static str| OAuthError::invalid_client(why).with_basic_auth(creds.used_basic);
    let client = store
        .client(&creds.client_id)
        .await
        .ok_or_else(|| fail("unknown client_id; register the client again"))?;
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
                used_basic: false
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
                used_basic: true
            }
        );
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
