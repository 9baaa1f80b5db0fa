//! Outbound HTTPS for the documents a client points this server at: client metadata documents
//! and their JWKS (SPEC §12).
//!
//! Whoever sends a `client_id` chooses the URL, so every fetch is treated as hostile:
//!
//! - https only, `GET`, no cookies, no proxy (a proxy would resolve the name itself, out of
//!   the guard's sight), no redirect followed (a redirect could point anywhere);
//! - the body is read chunk by chunk and cut at `maxBytes`; the whole exchange must finish
//!   within `timeoutMs`; nothing is decompressed;
//! - SSRF guard: a name is resolved once, by [`PublicResolver`], which drops every address
//!   that is not public ([`is_public`]) and hands only the vetted ones to the connector, so
//!   there is no second resolution an attacker could race (DNS rebinding). reqwest skips the
//!   resolver for IP-literal hosts, so those are checked before the request; and the address
//!   the response actually came from is checked again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// What one fetch may cost, and whether private addresses are reachable (tests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// The largest body accepted, in bytes.
    pub max_bytes: usize,
    /// The whole exchange (resolution, connection, TLS, headers, body) must finish within this.
    pub timeout: Duration,
    /// Whether loopback and private addresses may be fetched (test servers only).
    pub allow_private_addresses: bool,
}

/// Why a fetch failed. Every message is safe to show: none carries a response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL is not `https`.
    #[error("only https URLs are fetched")]
    NotHttps,
    /// The URL's host, or the address connected to, is not a public address.
    #[error("{0} is not a public address")]
    NotPublic(IpAddr),
    /// The host name resolves only to addresses that are not public.
    #[error("{0} resolves to no public address")]
    NoPublicAddress(String),
    /// The host name does not resolve.
    #[error("{0} could not be resolved")]
    Unresolvable(String),
    /// No complete answer in time.
    #[error("no complete answer within {0} ms")]
    Timeout(u128),
    /// The server answered with a redirect, which is never followed.
    #[error("the server answered {0} (a redirect, which is not followed)")]
    Redirect(u16),
    /// The server answered with another status than 200.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// The body is larger than allowed.
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    /// The connection or the exchange failed.
    #[error("the request failed: {0}")]
    Transport(String),
}

impl FetchError {
    /// Whether the failure says something about the document itself (a policy refusal, a
    /// redirect away from its URL, an oversized answer), rather than that it could not be
    /// reached this time. Only a failure to reach it lets a cached copy serve while stale.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::NotHttps
                | Self::NotPublic(_)
                | Self::NoPublicAddress(_)
                | Self::Redirect(_)
                | Self::TooLarge(_)
        )
    }
}

/// A fetched document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The body, at most `max_bytes`.
    pub body: Vec<u8>,
    /// Every `Cache-Control` header value, joined with `, `.
    pub cache_control: Option<String>,
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, CGNAT
/// (100.64.0.0/10), multicast, unspecified, broadcast, documentation, benchmarking, reserved,
/// unique-local (fc00::/7), site-local, or an IPv4-mapped, -compatible, NAT64 or 6to4 form of
/// one of those.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0 // "this network", including 0.0.0.0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // CGNAT, RFC 6598
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast, reserved, broadcast
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Forms that carry an IPv4 address: judge the address they lead to.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 well-known prefix (RFC 6052).
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 6to4 (RFC 3056).
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    // Only global unicast (2000::/3) is public; that also excludes ::/96 (unspecified,
    // loopback, the deprecated IPv4-compatible form), fc00::/7, fe80::/10, fec0::/10 and
    // ff00::/8.
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    // 2001::/23 (IETF protocol assignments, Teredo), 2001:db8::/32 and 3fff::/20
    // (documentation, RFC 3849 and RFC 9637).
    let special =
        (s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8)) || (s[0] == 0x3fff && s[1] < 0x1000);
    !special
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Why [`PublicResolver`] refused a name; found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
enum ResolveRefusal {
    #[error("{0} resolves to no public address")]
    NoPublicAddress(String),
    #[error("{0} could not be resolved")]
    Unresolvable(String),
}

/// Resolves a host name once and keeps only the public addresses; the connector connects to
/// exactly these, so the check covers the address actually connected to.
#[derive(Debug, Clone, Copy)]
pub struct PublicResolver {
    allow_private_addresses: bool,
}

impl PublicResolver {
    /// A resolver that drops non-public addresses unless `allow_private_addresses`.
    pub fn new(allow_private_addresses: bool) -> Self {
        Self {
            allow_private_addresses,
        }
    }

    /// The addresses of `resolved` this resolver hands to the connector.
    pub fn vet(&self, resolved: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
        resolved
            .into_iter()
            .filter(|a| self.allow_private_addresses || is_public(a.ip()))
            .collect()
    }
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = *self;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Box::new(ResolveRefusal::Unresolvable(host.clone())))?;
            let vetted = resolver.vet(resolved);
            if vetted.is_empty() {
                return Err(Box::new(ResolveRefusal::NoPublicAddress(host)) as _);
            }
            Ok(Box::new(vetted.into_iter()) as Addrs)
        })
    }
}

/// The one HTTP client for documents clients point at.
pub struct Fetcher {
    /// `Err` when the TLS client could not be built (then every fetch fails with it).
    client: Result<reqwest::Client, String>,
    limits: FetchLimits,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("limits", &self.limits)
            .field("ready", &self.client.is_ok())
            .finish()
    }
}

impl Fetcher {
    /// A fetcher with `limits` that trusts the built-in web PKI roots plus the certificates
    /// in `extra_roots_pem` (the test-only `caFile`, already checked by the configuration).
    pub fn new(limits: FetchLimits, extra_roots_pem: Option<&[u8]>) -> Self {
        let client = build_client(&limits, extra_roots_pem);
        if let Err(e) = &client {
            tracing::error!("the HTTPS client for client metadata documents cannot be built: {e}");
        }
        Self { client, limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> FetchLimits {
        self.limits
    }

    /// `GET url`: the body of a 200 answer, within the limits and from a public address.
    pub async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        if url.scheme() != "https" {
            return Err(FetchError::NotHttps);
        }
        // reqwest connects to an IP-literal host without asking the resolver.
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => None,
            None => return Err(FetchError::NotHttps),
        };
        if let Some(ip) = literal
            && !self.limits.allow_private_addresses
            && !is_public(ip)
        {
            return Err(FetchError::NotPublic(ip));
        }
        let client = self
            .client
            .as_ref()
            .map_err(|e| FetchError::Transport(e.clone()))?;
        let timeout = self.limits.timeout;
        tokio::time::timeout(timeout, self.exchange(client, url))
            .await
            .map_err(|_| FetchError::Timeout(timeout.as_millis()))?
    }

    async fn exchange(&self, client: &reqwest::Client, url: &Url) -> Result<Fetched, FetchError> {
        let timeout = self.limits.timeout;
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| classify(&e, timeout))?;
        if let Some(remote) = response.remote_addr()
            && !self.limits.allow_private_addresses
            && !is_public(remote.ip())
        {
            return Err(FetchError::NotPublic(remote.ip()));
        }
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status.as_u16()));
        }
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }
        let max = self.limits.max_bytes;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(FetchError::TooLarge(max));
        }
        let cache_control = {
            let values: Vec<&str> = response
                .headers()
                .get_all(reqwest::header::CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, timeout))? {
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            body,
            cache_control,
        })
    }
}

fn build_client(
    limits: &FetchLimits,
    extra_roots_pem: Option<&[u8]>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .http1_only()
        .timeout(limits.timeout)
        .connect_timeout(limits.timeout)
        .dns_resolver(Arc::new(PublicResolver::new(
            limits.allow_private_addresses,
        )))
        .user_agent(concat!("mcp-authd/", env!("CARGO_PKG_VERSION")))
        .tls_built_in_root_certs(true);
    if let Some(pem) = extra_roots_pem {
        let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())?;
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// Names a reqwest failure without the URL (the caller already knows it).
fn classify(error: &reqwest::Error, timeout: Duration) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<ResolveRefusal>() {
            return match refusal {
                ResolveRefusal::NoPublicAddress(host) => FetchError::NoPublicAddress(host.clone()),
                ResolveRefusal::Unresolvable(host) => FetchError::Unresolvable(host.clone()),
            };
        }
        source = e.source();
    }
    if error.is_timeout() {
        return FetchError::Timeout(timeout.as_millis());
    }
    // The innermost cause says what went wrong (refused, reset, certificate unknown …).
    let mut root: &dyn std::error::Error = error;
    while let Some(next) = root.source() {
        root = next;
    }
    let what = if error.is_connect() {
        "could not connect"
    } else {
        "the exchange failed"
    };
    FetchError::Transport(format!("{what}: {root}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_ipv4_ranges_are_refused() {
        for addr in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(ip(addr)), "{addr} must not be public");
        }
    }

    #[test]
    fn public_ipv4_addresses_pass() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.254",
        ] {
            assert!(is_public(ip(addr)), "{addr} is public");
        }
    }

    #[test]
    fn non_public_ipv6_ranges_and_embedded_ipv4_forms_are_refused() {
        for addr in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::10.0.0.1",
            "64:ff9b::7f00:1",
            "2002:c0a8:0101::1",
            "2002:7f00:1::",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "100::1",
        ] {
            assert!(!is_public(ip(addr)), "{addr} must not be public");
        }
    }

    #[test]
    fn public_ipv6_addresses_and_forms_pass() {
        for addr in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
            "3fff:1000::1",
            "3ff0::1",
        ] {
            assert!(is_public(ip(addr)), "{addr} is public");
        }
    }

    #[test]
    fn the_resolver_hands_on_only_vetted_addresses() {
        let resolved: Vec<SocketAddr> = ["127.0.0.1:0", "[::1]:0", "10.1.2.3:0", "93.184.215.14:0"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(
            PublicResolver::new(false).vet(resolved.clone()),
            vec!["93.184.215.14:0".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(PublicResolver::new(true).vet(resolved.clone()), resolved);
    }

    #[tokio::test]
    async fn loopback_names_and_literals_are_refused_before_any_connection() {
        let fetcher = Fetcher::new(
            FetchLimits {
                max_bytes: 1024,
                timeout: Duration::from_secs(3),
                allow_private_addresses: false,
            },
            None,
        );
        let get = |u: &str| {
            let url = Url::parse(u).unwrap();
            let fetcher = &fetcher;
            async move { fetcher.get(&url).await }
        };
        assert_eq!(
            get("https://127.0.0.1:9/x").await,
            Err(FetchError::NotPublic(ip("127.0.0.1")))
        );
        assert_eq!(
            get("https://[::ffff:127.0.0.1]:9/x").await,
            Err(FetchError::NotPublic(ip("::ffff:127.0.0.1")))
        );
        assert_eq!(
            get("https://localhost:9/x").await,
            Err(FetchError::NoPublicAddress("localhost".into()))
        );
        assert_eq!(get("http://example.com/x").await, Err(FetchError::NotHttps));
    }
}
