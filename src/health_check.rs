//! `mcp-authd health`: asks a running server's `/readyz` whether it is ready, for container
//! health checks (Docker `HEALTHCHECK`, a Kubernetes exec probe) where no curl is installed.

use std::time::Duration;

/// The default server to ask: `serve`'s default listen address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// How long the whole check may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The most of the answer shown (a readiness answer is a few dozen bytes).
const MAX_BODY_BYTES: usize = 4096;

/// Where to send the check: `url` as given when it names `/readyz`, `/healthz` or `/livez`,
/// otherwise that server's `/readyz`. Only `http` (the check runs beside the server, on
/// loopback or inside the pod).
pub fn readiness_url(url: &str) -> Result<url::Url, String> {
    let mut parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "{url:?}: health checks use http to the server's own listen address"
        ));
    }
    let path = parsed.path().trim_end_matches('/');
    if !["/readyz", "/healthz", "/livez"]
        .iter()
        .any(|p| path.ends_with(p))
    {
        let joined = format!("{path}/readyz");
        parsed.set_path(&joined);
    }
    Ok(parsed)
}

/// Asks `url` once; `Ok` with the status and the body (as text) when it answered at all.
pub async fn probe(url: &url::Url) -> Result<(u16, String), String> {
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let response = http
        .get(url.as_str())
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    let shown = &body[..body.len().min(MAX_BODY_BYTES)];
    Ok((status, String::from_utf8_lossy(shown).trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_url_gets_readyz_and_a_probe_url_is_kept() {
        let url = |s: &str| readiness_url(s).map(|u| u.to_string());
        assert_eq!(
            url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/readyz"
        );
        assert_eq!(
            url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080/readyz"
        );
        assert_eq!(
            url("http://10.0.0.1:9/livez").unwrap(),
            "http://10.0.0.1:9/livez"
        );
        assert_eq!(
            url("http://h/auth/healthz").unwrap(),
            "http://h/auth/healthz"
        );
        assert!(url("https://mcp.example.com").is_err());
        assert!(url("not a url").is_err());
    }
}
