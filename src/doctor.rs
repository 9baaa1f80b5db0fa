//! `mcp-authd doctor MCP_URL`: checks a deployment from outside, as an MCP client would
//! (SPEC §15), and says what to fix. Each check is one line: `PASS`, `WARN` or `FAIL`, its
//! name, what was seen, and for anything but a pass, the fix.
//!
//! The checks follow a client's own discovery: the MCP URL's 401 challenge (RFC 9728 §5.1),
//! the protected resource metadata, the authorization server metadata (RFC 8414), then the
//! routes that must skip SSO (registration, token, CORS preflights) and the one that must not
//! (authorize, tried with a forged identity header and no session).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

/// How long each request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The redirect URI of the throwaway client the SSO check registers (loopback: allowed by
/// every allowlist that admits local clients, and never a real listener's callback).
const DOCTOR_REDIRECT: &str = "http://127.0.0.1:1/mcp-authd-doctor/callback";

/// The user a forged identity header claims.
const FORGED_USER: &str = "mcp-authd-doctor-forged-user";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As it should be.
    Pass,
    /// Works, but not as it should be in production.
    Warn,
    /// Clients will fail (or an attacker can succeed).
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Pass, warn or fail.
    pub verdict: Verdict,
    /// A short stable name, e.g. `mcp-challenge`.
    pub check: &'static str,
    /// What was seen.
    pub detail: String,
    /// What to change; empty on a pass.
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{verdict} {}: {}", self.check, self.detail)?;
        if !self.fix.is_empty() {
            write!(f, " — fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// Collects findings in order.
#[derive(Default)]
struct Report(Vec<Finding>);

impl Report {
    fn pass(&mut self, check: &'static str, detail: impl Into<String>) {
        self.push(Verdict::Pass, check, detail.into(), String::new());
    }
    fn warn(&mut self, check: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(Verdict::Warn, check, detail.into(), fix.into());
    }
    fn fail(&mut self, check: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(Verdict::Fail, check, detail.into(), fix.into());
    }
    fn push(&mut self, verdict: Verdict, check: &'static str, detail: String, fix: String) {
        self.0.push(Finding {
            verdict,
            check,
            detail,
            fix,
        });
    }
}

/// A client for the checks: no redirects followed, no cookies, bounded time.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("mcp-authd-doctor/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Runs every check against the MCP server at `mcp_url`.
pub async fn diagnose(http: &reqwest::Client, mcp_url: &str) -> Vec<Finding> {
    let mut report = Report::default();
    let Ok(mcp) = url::Url::parse(mcp_url) else {
        report.fail(
            "mcp-url",
            format!("{mcp_url:?} is not an absolute URL"),
            "pass the URL clients are given, e.g. https://mcp.example.com/mcp",
        );
        return report.0;
    };
    let prm_url = check_challenge(http, &mcp, &mut report).await;
    let Some(issuer) = check_resource_metadata(http, &mcp, &prm_url, &mut report).await else {
        return report.0;
    };
    let Some(metadata) = check_server_metadata(http, &issuer, &mut report).await else {
        return report.0;
    };
    let endpoint = |name: &str| metadata.get(name).and_then(Value::as_str).map(String::from);
    let client_id = match endpoint("registration_endpoint") {
        Some(register) => check_registration(http, &register, &mut report).await,
        None => {
            report.warn(
                "registration-without-sso",
                "the metadata has no registration_endpoint",
                "clients without a pre-provisioned id (Claude Code, Cursor, ChatGPT) need dynamic registration or client metadata documents",
            );
            None
        }
    };
    if let Some(token) = endpoint("token_endpoint") {
        check_token_endpoint(http, &token, &mut report).await;
    }
    match endpoint("authorization_endpoint") {
        Some(authorize) => {
            check_authorize_behind_sso(http, &authorize, client_id.as_deref(), &mut report).await
        }
        None => report.fail(
            "authorize-behind-sso",
            "the metadata has no authorization_endpoint",
            "serve the mcp-authd metadata unchanged",
        ),
    }
    for (name, check) in [
        ("token_endpoint", "cors-token"),
        ("registration_endpoint", "cors-register"),
    ] {
        if let Some(url) = endpoint(name) {
            check_cors(http, &url, check, &mut report).await;
        }
    }
    report.0
}

/// The MCP URL must answer an unauthenticated request with 401 and a `resource_metadata`
/// challenge. Returns the PRM URL to read (from the challenge, else the well-known form).
async fn check_challenge(http: &reqwest::Client, mcp: &url::Url, report: &mut Report) -> String {
    let well_known = well_known_url(mcp, "oauth-protected-resource");
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "mcp-authd-doctor", "version": env!("CARGO_PKG_VERSION")}}
    });
    let response = http
        .post(mcp.as_str())
        .header("accept", "application/json, text/event-stream")
        .json(&initialize)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            report.fail(
                "mcp-challenge",
                format!("{mcp} did not answer: {}", describe(&e)),
                "check DNS, TLS and that the proxy routes the MCP path to the MCP server",
            );
            return well_known;
        }
    };
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.to_ascii_lowercase().starts_with("bearer"))
        .map(String::from);
    match (status, challenge.as_deref().and_then(resource_metadata_of)) {
        (401, Some(prm)) => {
            report.pass(
                "mcp-challenge",
                format!("401 with resource_metadata=\"{prm}\""),
            );
            prm
        }
        (401, None) => {
            report.warn(
                "mcp-challenge",
                "401 without a resource_metadata parameter in WWW-Authenticate",
                "return `WWW-Authenticate: Bearer resource_metadata=\"<PRM URL>\"` (RFC 9728 §5.1); the mcp-authd middleware does",
            );
            well_known
        }
        (status @ (301..=303 | 307 | 308), _) => {
            report.fail(
                "mcp-challenge",
                format!("{status} redirect (a login page?) instead of 401"),
                "route the MCP path around SSO: the MCP server checks the bearer token itself",
            );
            well_known
        }
        (status, _) => {
            report.fail(
                "mcp-challenge",
                format!("{status} to a request without a token; expected 401"),
                "require a bearer token on the MCP endpoint (see README: Protecting your MCP server)",
            );
            well_known
        }
    }
}

/// Reads the PRM: JSON, `resource` = the MCP URL, an authorization server. Returns the issuer.
async fn check_resource_metadata(
    http: &reqwest::Client,
    mcp: &url::Url,
    prm_url: &str,
    report: &mut Report,
) -> Option<String> {
    let prm = get_json(http, prm_url, "protected-resource-metadata", report).await?;
    let resource = prm.get("resource").and_then(Value::as_str).unwrap_or("");
    let wanted = mcp.as_str().trim_end_matches('/');
    if resource == mcp.as_str() || resource == wanted {
        report.pass(
            "protected-resource-metadata",
            format!("{prm_url}: resource {resource}"),
        );
    } else {
        report.fail(
            "protected-resource-metadata",
            format!("{prm_url}: resource is {resource:?}, not the MCP URL {wanted}"),
            "set oauthAs.resourceUrl to the URL clients are given (tokens are audience-bound to it)",
        );
    }
    let issuer = prm
        .get("authorization_servers")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(String::from);
    if issuer.is_none() {
        report.fail(
            "protected-resource-metadata",
            "no authorization_servers",
            "serve the PRM that mcp-authd generates",
        );
    }
    issuer
}

/// Reads the RFC 8414 metadata: JSON, `issuer` byte-identical, https endpoints, S256.
async fn check_server_metadata(
    http: &reqwest::Client,
    issuer: &str,
    report: &mut Report,
) -> Option<Value> {
    let Ok(issuer_url) = url::Url::parse(issuer) else {
        report.fail(
            "authorization-server-metadata",
            format!("authorization server {issuer:?} is not a URL"),
            "set oauthAs.issuerUrl",
        );
        return None;
    };
    let url = well_known_url(&issuer_url, "oauth-authorization-server");
    let metadata = get_json(http, &url, "authorization-server-metadata", report).await?;
    let advertised = metadata.get("issuer").and_then(Value::as_str).unwrap_or("");
    if advertised != issuer {
        report.fail(
            "authorization-server-metadata",
            format!("issuer is {advertised:?} but the PRM names {issuer:?}; clients compare them byte for byte"),
            "make oauthAs.issuerUrl exactly the public URL (no trailing slash) the proxy serves",
        );
        return Some(metadata);
    }
    let s256 = metadata
        .get("code_challenge_methods_supported")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|v| v == "S256"));
    if !s256 {
        report.fail(
            "authorization-server-metadata",
            "code_challenge_methods_supported lacks S256; MCP clients refuse such a server",
            "serve the metadata mcp-authd generates",
        );
        return Some(metadata);
    }
    report.pass(
        "authorization-server-metadata",
        format!("{url}: issuer {issuer}"),
    );
    let mut insecure = Vec::new();
    let mut local = Vec::new();
    for name in [
        "authorization_endpoint",
        "token_endpoint",
        "registration_endpoint",
    ] {
        let Some(endpoint) = metadata.get(name).and_then(Value::as_str) else {
            continue;
        };
        match url::Url::parse(endpoint) {
            Ok(u) if u.scheme() == "https" && !is_local_host(&u) => {}
            Ok(u) if is_local_host(&u) => local.push(name),
            _ => insecure.push(name),
        }
    }
    if !insecure.is_empty() {
        report.fail(
            "endpoints-public-https",
            format!("not https: {}", insecure.join(", ")),
            "serve mcp-authd behind TLS and set oauthAs.issuerUrl to its https URL",
        );
    } else if !local.is_empty() {
        report.warn(
            "endpoints-public-https",
            format!("on a loopback or private host: {}", local.join(", ")),
            "fine for testing; cloud clients (claude.ai, ChatGPT) need a public https issuer",
        );
    } else {
        report.pass(
            "endpoints-public-https",
            "every endpoint is https on a public host",
        );
    }
    Some(metadata)
}

/// Registration must answer without SSO, in JSON. Registers a throwaway public client for the
/// SSO check when it can (collected later as unused); returns its id.
async fn check_registration(
    http: &reqwest::Client,
    register: &str,
    report: &mut Report,
) -> Option<String> {
    let body = serde_json::json!({
        "client_name": "mcp-authd doctor (throwaway, removed when unused)",
        "redirect_uris": [DOCTOR_REDIRECT],
        "token_endpoint_auth_method": "none",
    });
    let response = match http.post(register).json(&body).send().await {
        Ok(r) => r,
        Err(e) => {
            report.fail(
                "registration-without-sso",
                format!("{register} did not answer: {}", describe(&e)),
                "route /oauth/register and /register around SSO to mcp-authd",
            );
            return None;
        }
    };
    match json_answer(response).await {
        (201, Some(client)) => {
            report.pass("registration-without-sso", format!("{register}: 201 JSON"));
            client
                .get("client_id")
                .and_then(Value::as_str)
                .map(String::from)
        }
        (status @ 400..=499, Some(error)) if error.get("error").is_some() => {
            report.pass(
                "registration-without-sso",
                format!(
                    "{register}: {status} {} (reachable; the throwaway client was refused)",
                    error["error"]
                ),
            );
            None
        }
        (status, _) => {
            report.fail(
                "registration-without-sso",
                format!("{register}: {status} without a JSON OAuth answer (a login page?)"),
                "cloud clients register from their servers with no browser session: route /oauth/register and /register around SSO",
            );
            None
        }
    }
}

/// The token endpoint must answer without SSO with a JSON OAuth error for a bogus code.
async fn check_token_endpoint(http: &reqwest::Client, token: &str, report: &mut Report) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "mcp-authd-doctor-not-a-code"),
        ("client_id", "mcp-authd-doctor-not-a-client"),
        ("redirect_uri", DOCTOR_REDIRECT),
        (
            "code_verifier",
            "mcp-authd-doctor-verifier-0123456789-abcdefghijk",
        ),
    ];
    match http.post(token).form(&form).send().await {
        Ok(response) => {
            let (status, answer) = json_answer(response).await;
            if (400..500).contains(&status) && answer.is_some_and(|a| a.get("error").is_some()) {
                report.pass(
                    "token-without-sso",
                    format!("{token}: {status} JSON error for a bogus code"),
                );
            } else {
                report.fail(
                    "token-without-sso",
                    format!("{token}: {status} without a JSON OAuth error (a login page?)"),
                    "route /oauth/token and /token around SSO to mcp-authd",
                );
            }
        }
        Err(e) => report.fail(
            "token-without-sso",
            format!("{token} did not answer: {}", describe(&e)),
            "route /oauth/token and /token around SSO to mcp-authd",
        ),
    }
}

/// `/oauth/authorize` must go through SSO: a request with a forged `X-Forwarded-User` and no
/// session must get neither a code nor a consent page.
async fn check_authorize_behind_sso(
    http: &reqwest::Client,
    authorize: &str,
    client_id: Option<&str>,
    report: &mut Report,
) {
    let Ok(mut url) = url::Url::parse(authorize) else {
        report.fail(
            "authorize-behind-sso",
            format!("{authorize:?} is not a URL"),
            "serve the metadata mcp-authd generates",
        );
        return;
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair(
            "client_id",
            client_id.unwrap_or("mcp-authd-doctor-unknown-client"),
        )
        .append_pair("redirect_uri", DOCTOR_REDIRECT)
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "mcp-authd-doctor");
    let response = http
        .get(url.as_str())
        .header("x-forwarded-user", FORGED_USER)
        .header("x-forwarded-groups", "admins")
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            report.fail(
                "authorize-behind-sso",
                format!("{authorize} did not answer: {}", describe(&e)),
                "route /oauth/authorize through SSO to mcp-authd",
            );
            return;
        }
    };
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.text().await.unwrap_or_default();
    let got_code = location.starts_with(DOCTOR_REDIRECT) && location.contains("code=");
    let got_consent =
        status == 200 && (body.contains("name=\"ticket\"") || body.contains(FORGED_USER));
    if got_code || got_consent {
        report.fail(
            "authorize-behind-sso",
            format!(
                "a forged X-Forwarded-User with no session got {}",
                if got_code { "an authorization code" } else { "a consent page" }
            ),
            "anyone can sign in as anyone: put /oauth/authorize, /authorize and /oauth/authorize/consent behind SSO, make the proxy overwrite X-Forwarded-User, and list only the proxy in trustedSourceCidrs",
        );
    } else if client_id.is_none() && status == 400 {
        report.warn(
            "authorize-behind-sso",
            "could not prove it: without a registered client the answer was 400",
            "allow http://127.0.0.1:* in redirectUriAllowlist, or check by hand that /oauth/authorize redirects to your login",
        );
    } else {
        let seen = if (301..=303).contains(&status) || status == 307 {
            format!("{status} to {}", location.split('?').next().unwrap_or(""))
        } else {
            status.to_string()
        };
        report.pass(
            "authorize-behind-sso",
            format!("a forged identity header with no session got {seen}, no code"),
        );
    }
}

/// A CORS preflight as a browser-based client sends it.
async fn check_cors(http: &reqwest::Client, url: &str, check: &'static str, report: &mut Report) {
    let response = http
        .request(reqwest::Method::OPTIONS, url)
        .header("origin", "https://claude.ai")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization, mcp-protocol-version",
        )
        .send()
        .await;
    match response {
        Ok(r) if r.headers().contains_key("access-control-allow-origin") => {
            report.pass(check, format!("{url}: preflight allowed ({})", r.status()));
        }
        Ok(r) => report.fail(
            check,
            format!("{url}: preflight answered {} without Access-Control-Allow-Origin", r.status()),
            "let OPTIONS through to mcp-authd without SSO (browser-based clients such as the Inspector need it)",
        ),
        Err(e) => report.fail(
            check,
            format!("{url}: preflight failed: {}", describe(&e)),
            "let OPTIONS through to mcp-authd without SSO",
        ),
    }
}

/// GETs a JSON document; a failure becomes a `FAIL` line under `check`.
async fn get_json(
    http: &reqwest::Client,
    url: &str,
    check: &'static str,
    report: &mut Report,
) -> Option<Value> {
    let response = match http.get(url).send().await {
        Ok(r) => r,
        Err(e) => {
            report.fail(
                check,
                format!("{url} did not answer: {}", describe(&e)),
                "route /.well-known/ around SSO to mcp-authd",
            );
            return None;
        }
    };
    let status = response.status().as_u16();
    let json = is_json(response.headers());
    match (status, json) {
        (200, true) => match response.json::<Value>().await {
            Ok(v) if v.is_object() => Some(v),
            _ => {
                report.fail(
                    check,
                    format!("{url}: not a JSON object"),
                    "serve mcp-authd's metadata unchanged",
                );
                None
            }
        },
        (status, _) => {
            report.fail(
                check,
                format!(
                    "{url}: {status} {}",
                    if json {
                        ""
                    } else {
                        "(not JSON: a login page?)"
                    }
                ),
                "route /.well-known/ around SSO to mcp-authd (clients fetch it without a session)",
            );
            None
        }
    }
}

/// `scheme://host/.well-known/<name><path>` (RFC 8414 §3.1 and RFC 9728 §3.1 path insertion).
fn well_known_url(base: &url::Url, name: &str) -> String {
    let path = base.path().trim_end_matches('/');
    format!(
        "{}/.well-known/{name}{path}",
        base.origin().ascii_serialization()
    )
}

/// The `resource_metadata` parameter of a Bearer challenge.
fn resource_metadata_of(challenge: &str) -> Option<String> {
    let at = challenge.find("resource_metadata=")? + "resource_metadata=".len();
    let rest = &challenge[at..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest.split([',', ' ']).next()?,
    };
    (!value.is_empty()).then(|| value.to_string())
}

/// The status, and the body when it is JSON (a login page in the way is HTML).
async fn json_answer(response: reqwest::Response) -> (u16, Option<Value>) {
    let status = response.status().as_u16();
    if !is_json(response.headers()) {
        return (status, None);
    }
    (status, response.json().await.ok())
}

fn is_json(headers: &HeaderMap<HeaderValue>) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"))
}

/// Loopback, private or link-local addresses and `localhost`: no cloud client reaches them.
fn is_local_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".internal")
                || d.ends_with(".local")
        }
        Some(url::Host::Ipv4(ip)) => {
            let ip = IpAddr::V4(ip);
            ip.is_loopback()
                || matches!(ip, IpAddr::V4(v4) if v4.is_private() || v4.is_link_local())
        }
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00,
        None => true,
    }
}

/// A transport error without the URL (already in the line) and with its cause.
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_metadata_is_read_quoted_or_bare() {
        assert_eq!(
            resource_metadata_of(r#"Bearer error="invalid_token", resource_metadata="https://a.example/.well-known/oauth-protected-resource/mcp""#).as_deref(),
            Some("https://a.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            resource_metadata_of("Bearer resource_metadata=https://a.example/prm, scope=x")
                .as_deref(),
            Some("https://a.example/prm")
        );
        assert_eq!(resource_metadata_of("Bearer realm=x"), None);
    }

    #[test]
    fn well_known_urls_insert_before_the_path() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            well_known_url(
                &u("https://mcp.example.com/mcp"),
                "oauth-protected-resource"
            ),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            well_known_url(&u("https://sso.example.com"), "oauth-authorization-server"),
            "https://sso.example.com/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn findings_print_one_line_with_the_fix() {
        let line = Finding {
            verdict: Verdict::Fail,
            check: "token-without-sso",
            detail: "302".into(),
            fix: "route /oauth/token around SSO".into(),
        }
        .to_string();
        assert_eq!(
            line,
            "FAIL token-without-sso: 302 — fix: route /oauth/token around SSO"
        );
        assert!(!line.contains('\n'));
    }
}
