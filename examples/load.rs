//! Load generator: complete authorization-code flows and refreshes against a running server.
//!
//! ```sh
//! cargo run --release --example load -- http://127.0.0.1:8080 20000 64
//! ```
//! Arguments: base URL (whose config trusts 127.0.0.1 and allows `http://127.0.0.1:*`),
//! number of flows, concurrency. It registers one client, approves consent once, runs the
//! flows (GET /oauth/authorize with X-Forwarded-User → code → POST /oauth/token), then
//! refreshes every family once per round for three rounds, and prints rates and latencies
//! (median, p99, max).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let flows: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency)
        .build()?;

    let registered: serde_json::Value = http
        .post(format!("{base}/oauth/register"))
        .json(&serde_json::json!({"client_name": "load", "redirect_uris": [REDIRECT]}))
        .send()
        .await?
        .json()
        .await?;
    let client_id = registered["client_id"]
        .as_str()
        .ok_or("registration failed")?
        .to_string();
    approve_once(&http, &base, &client_id).await?;

    let started = Instant::now();
    let results = run(concurrency, flows, |_| {
        let (http, base, client_id) = (http.clone(), base.clone(), client_id.clone());
        async move { flow(&http, &base, &client_id).await }
    })
    .await;
    report("authorization-code flows", started.elapsed(), &results);
    let mut tokens: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.ok().map(|(t, _)| t))
        .collect();

    for round in 1..=3 {
        let started = Instant::now();
        let current = tokens.clone();
        let results = run(concurrency, current.len(), |i| {
            let (http, base, client_id, token) = (
                http.clone(),
                base.clone(),
                client_id.clone(),
                current[i].clone(),
            );
            async move { refresh(&http, &base, &client_id, &token).await }
        })
        .await;
        report(
            &format!("refreshes (round {round})"),
            started.elapsed(),
            &results,
        );
        tokens = results
            .into_iter()
            .filter_map(|r| r.ok().map(|(t, _)| t))
            .collect();
    }
    Ok(())
}

async fn run<F, Fut>(
    concurrency: usize,
    total: usize,
    make: F,
) -> Vec<Result<(String, Duration), Error>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<String, Error>> + Send + 'static,
{
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        let permit = semaphore.clone().acquire_owned().await;
        let job = make(i);
        handles.push(tokio::spawn(async move {
            let _permit = permit;
            let t = Instant::now();
            job.await.map(|token| (token, t.elapsed()))
        }));
    }
    let mut out = Vec::with_capacity(total);
    for h in handles {
        out.push(h.await.unwrap_or_else(|e| Err(e.into())));
    }
    out
}

fn report(what: &str, elapsed: Duration, results: &[Result<(String, Duration), Error>]) {
    let mut latencies: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(_, d)| *d))
        .collect();
    latencies.sort();
    let failures = results.len() - latencies.len();
    let median = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    let max = latencies.last().copied().unwrap_or_default();
    println!(
        "{what}: {} ok, {failures} failed, {:.0}/s, median {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

fn authorize_url(base: &str, client_id: &str) -> String {
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    format!(
        "{base}/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=s",
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    )
}

async fn approve_once(http: &reqwest::Client, base: &str, client_id: &str) -> Result<(), Error> {
    let page = http
        .get(authorize_url(base, client_id))
        .header("X-Forwarded-User", "load@example.com")
        .send()
        .await?
        .text()
        .await?;
    let marker = "name=\"ticket\" value=\"";
    let start = page.find(marker).ok_or("no consent page")? + marker.len();
    let ticket = &page[start..start + page[start..].find('"').ok_or("bad page")?];
    http.post(format!("{base}/oauth/authorize/consent"))
        .header("X-Forwarded-User", "load@example.com")
        .form(&[("ticket", ticket), ("decision", "approve")])
        .send()
        .await?;
    Ok(())
}

async fn flow(http: &reqwest::Client, base: &str, client_id: &str) -> Result<String, Error> {
    let response = http
        .get(authorize_url(base, client_id))
        .header("X-Forwarded-User", "load@example.com")
        .send()
        .await?;
    let location = response
        .headers()
        .get("location")
        .ok_or("no redirect")?
        .to_str()?
        .to_string();
    let code = url::Url::parse(&location)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or("no code")?;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    token(http, base, &form).await
}

async fn refresh(
    http: &reqwest::Client,
    base: &str,
    client_id: &str,
    token_value: &str,
) -> Result<String, Error> {
    token(
        http,
        base,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", token_value),
        ],
    )
    .await
}

async fn token(http: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> Result<String, Error> {
    let response = http
        .post(format!("{base}/oauth/token"))
        .form(form)
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(format!("token endpoint answered {}", response.status()).into());
    }
    let body: serde_json::Value = response.json().await?;
    Ok(body["refresh_token"]
        .as_str()
        .ok_or("no refresh token")?
        .to_string())
}
