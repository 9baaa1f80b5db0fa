//! The token endpoint's request (OAuth 2.1 §4.1.3, §4.3), read once from its form.
//!
//! [`TokenRequest::parse`] is the only place that looks at the form's grant parameters; the
//! grants in [`super::token`] take the typed request. The client's own credentials in the same
//! form (`client_id`, `client_secret`, `client_assertion`) are read by
//! [`super::client_auth::extract`].

use super::params::Params;
use super::{ErrorCode, OAuthError};
use crate::store::Client;

/// The grant types this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    /// `authorization_code`.
    AuthorizationCode,
    /// `refresh_token`.
    RefreshToken,
}

impl GrantType {
    /// The `grant_type` value (also the name a client registers in `grant_types`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            _ => None,
        }
    }
}

/// A token request, with every parameter its grant needs.
///
/// Required parameters are non-empty (OAuth treats an empty parameter as absent). The optional
/// ones are kept as sent, empty included: an empty `resource` names no resource and is refused
/// by the comparison, an empty `scope` asks for the granted scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    /// Redeems an authorization code (OAuth 2.1 §4.1.3).
    AuthorizationCode {
        /// `code`.
        code: String,
        /// `redirect_uri`, compared byte for byte with the authorization request's.
        redirect_uri: String,
        /// `code_verifier` (PKCE).
        code_verifier: String,
        /// `resource` (RFC 8707), if sent.
        resource: Option<String>,
    },
    /// Rotates a refresh token (OAuth 2.1 §4.3).
    RefreshToken {
        /// `refresh_token`.
        refresh_token: String,
        /// `scope`, if sent: a subset of the granted scope.
        scope: Option<String>,
        /// `resource` (RFC 8707), if sent.
        resource: Option<String>,
    },
}

impl TokenRequest {
    /// Reads the request from the token endpoint's form for `client`, already authenticated.
    ///
    /// Refusals, in the order they are checked (the first that applies is the answer):
    /// no `grant_type` → `invalid_request`; a client that may only introspect →
    /// `unauthorized_client`, whatever it asks; a grant type this server does not implement →
    /// `unsupported_grant_type`; one the client did not register → `unauthorized_client`; a
    /// parameter of the grant missing → `invalid_request` naming it. So a client learns that it
    /// may not use a grant before it learns what the grant would need. (Repeated parameters
    /// were refused already by [`Params::parse`].)
    pub fn parse(form: &Params, client: &Client) -> Result<Self, OAuthError> {
        let grant_type = form
            .non_empty("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
        if client.is_introspection_only() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may only introspect and revoke tokens; it is given none",
            ));
        }
        let grant = GrantType::parse(grant_type).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type must be authorization_code or refresh_token",
            )
        })?;
        if !client.grant_types.iter().any(|g| g == grant.as_str()) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client did not register that grant type",
            ));
        }
        let required = |name: &str, description: &'static str| {
            form.non_empty(name)
                .map(str::to_string)
                .ok_or_else(|| OAuthError::invalid_request(description))
        };
        let optional = |name: &str| form.get(name).map(str::to_string);
        Ok(match grant {
            GrantType::AuthorizationCode => Self::AuthorizationCode {
                code: required("code", "code is required")?,
                redirect_uri: required("redirect_uri", "redirect_uri is required")?,
                code_verifier: required("code_verifier", "code_verifier is required (PKCE)")?,
                resource: optional("resource"),
            },
            GrantType::RefreshToken => Self::RefreshToken {
                refresh_token: required("refresh_token", "refresh_token is required")?,
                scope: optional("scope"),
                resource: optional("resource"),
            },
        })
    }

    /// The grant this request runs.
    pub fn grant_type(&self) -> GrantType {
        match self {
            Self::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            Self::RefreshToken { .. } => GrantType::RefreshToken,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuthMethod, Registration};

    fn client(grant_types: &[&str], registration: Registration, secret: bool) -> Client {
        Client {
            client_id: "c".into(),
            client_name: "c".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            token_endpoint_auth_method: AuthMethod::None,
            grant_types: grant_types.iter().map(|g| g.to_string()).collect(),
            response_types: vec!["code".into()],
            scope: String::new(),
            secret_hash: secret.then(|| "hash".into()),
            client_id_issued_at: 0,
            registration,
            application_type: None,
        }
    }

    fn public() -> Client {
        client(
            &["authorization_code", "refresh_token"],
            Registration::Dynamic,
            false,
        )
    }

    fn parse(form: &str, client: &Client) -> Result<TokenRequest, OAuthError> {
        TokenRequest::parse(&Params::parse(form.as_bytes()).unwrap(), client)
    }

    /// The error code and description of a refusal.
    fn refusal(form: &str, client: &Client) -> (&'static str, String) {
        let e = parse(form, client).unwrap_err();
        (e.code.as_str(), e.description.to_string())
    }

    #[test]
    fn an_authorization_code_request_carries_its_parameters() {
        let request = parse(
            "grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_verifier=v&client_id=c",
            &public(),
        )
        .unwrap();
        assert_eq!(
            request,
            TokenRequest::AuthorizationCode {
                code: "abc".into(),
                redirect_uri: "https://app.example/cb".into(),
                code_verifier: "v".into(),
                resource: None,
            }
        );
        assert_eq!(request.grant_type(), GrantType::AuthorizationCode);
        // An empty resource is kept: it names no resource, and the grant refuses it.
        let request = parse(
            "grant_type=authorization_code&code=a&redirect_uri=r&code_verifier=v&resource=",
            &public(),
        )
        .unwrap();
        assert!(matches!(
            request,
            TokenRequest::AuthorizationCode { resource: Some(r), .. } if r.is_empty()
        ));
    }

    #[test]
    fn a_refresh_request_carries_its_parameters() {
        let request = parse(
            "grant_type=refresh_token&refresh_token=f.s&scope=a+b&resource=https%3A%2F%2Fmcp.example%2Fmcp",
            &public(),
        )
        .unwrap();
        assert_eq!(
            request,
            TokenRequest::RefreshToken {
                refresh_token: "f.s".into(),
                scope: Some("a b".into()),
                resource: Some("https://mcp.example/mcp".into()),
            }
        );
        assert_eq!(request.grant_type(), GrantType::RefreshToken);
        let request = parse("grant_type=refresh_token&refresh_token=f.s", &public()).unwrap();
        assert_eq!(
            request,
            TokenRequest::RefreshToken {
                refresh_token: "f.s".into(),
                scope: None,
                resource: None,
            }
        );
    }

    #[test]
    fn each_missing_parameter_is_named() {
        let code = "grant_type=authorization_code";
        for (form, description) in [
            ("", "grant_type is required"),
            ("grant_type=&code=a", "grant_type is required"),
            (code, "code is required"),
            (&format!("{code}&code="), "code is required"),
            (&format!("{code}&code=a"), "redirect_uri is required"),
            (
                &format!("{code}&code=a&redirect_uri=r"),
                "code_verifier is required (PKCE)",
            ),
            (
                &format!("{code}&code=a&redirect_uri=r&code_verifier="),
                "code_verifier is required (PKCE)",
            ),
            ("grant_type=refresh_token", "refresh_token is required"),
            (
                "grant_type=refresh_token&refresh_token=&scope=a",
                "refresh_token is required",
            ),
        ] {
            assert_eq!(
                refusal(form, &public()),
                ("invalid_request", description.to_string()),
                "{form}"
            );
        }
    }

    #[test]
    fn unknown_and_unregistered_grants_are_refused_before_their_parameters() {
        for grant in ["password", "client_credentials", "AUTHORIZATION_CODE"] {
            assert_eq!(
                refusal(&format!("grant_type={grant}&code=a"), &public()).0,
                "unsupported_grant_type",
                "{grant}"
            );
        }
        // A client that registered only the code grant may not refresh, and is told so even
        // when the request lacks the refresh token.
        let code_only = client(&["authorization_code"], Registration::Dynamic, false);
        for form in [
            "grant_type=refresh_token",
            "grant_type=refresh_token&refresh_token=f.s",
        ] {
            assert_eq!(
                refusal(form, &code_only),
                (
                    "unauthorized_client",
                    "this client did not register that grant type".to_string()
                ),
                "{form}"
            );
        }
        assert!(
            parse(
                "grant_type=authorization_code&code=a&redirect_uri=r&code_verifier=v",
                &code_only
            )
            .is_ok()
        );
        // An unknown grant stays unsupported for a client that registered few grants.
        assert_eq!(
            refusal("grant_type=password", &code_only).0,
            "unsupported_grant_type"
        );
    }

    #[test]
    fn an_introspection_only_client_is_refused_every_grant() {
        let introspector = client(&[], Registration::Provisioned, true);
        for form in [
            "grant_type=authorization_code&code=a&redirect_uri=r&code_verifier=v",
            "grant_type=refresh_token",
            "grant_type=password",
        ] {
            assert_eq!(
                refusal(form, &introspector).0,
                "unauthorized_client",
                "{form}"
            );
        }
        // The missing grant_type is still the first thing said.
        assert_eq!(refusal("", &introspector).0, "invalid_request");
        // A provisioned client without grants and without a secret is no introspector: its
        // requests are refused for the grant it did not register.
        let no_grants = client(&[], Registration::Provisioned, false);
        assert_eq!(
            refusal("grant_type=password", &no_grants).0,
            "unsupported_grant_type"
        );
        assert_eq!(
            refusal("grant_type=refresh_token", &no_grants),
            (
                "unauthorized_client",
                "this client did not register that grant type".to_string()
            )
        );
    }
}
