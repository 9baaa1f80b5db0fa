//! Rate limits for the endpoints anyone can call without signing in: registration, the token
//! endpoint, introspection and revocation (`oauthAs.rateLimits`); and, per signed-in user, the
//! authorization endpoint (`authorizePerMinute`, [`RateLimiter::check_user`]), where every
//! request may store a code.
//!
//! Introspection and revocation are held to `tokenPerMinute` like token requests, each in a
//! bucket of its own, so an MCP server introspecting from an address shared with clients
//! (one NAT, one proxy hop) never uses up their refreshes.
//!
//! Each limit is a token bucket holding up to one minute's allowance and refilling
//! continuously, kept per client address in one map under a mutex; buckets that have
//! refilled completely carry no information and are pruned once a minute. Registration also
//! has one bucket shared by every address, which bounds how fast the client table can grow
//! whatever the number of addresses.
//!
//! The client address is the TCP peer, unless the peer is one of `trustedSourceCidrs`: then
//! it is the right-most `X-Forwarded-For` entry that is not itself a trusted address (the one
//! the nearest trusted proxy saw), never the left-most, which the client writes. IPv6
//! addresses are grouped by /64, the block a single host usually controls.
//!
//! A request that comes from a trusted source itself (the peer is trusted and every forwarded
//! hop is too, or there are none) has no per-address limit: such a host may already assert any
//! user's identity at `/oauth/authorize`, so a per-address allowance would protect nothing,
//! and counting it would throttle the proxy's own traffic, or a load test on the host, as one
//! client. The global registration limit and the client cap still apply to it.
//!
//! A refused request gets 429 with `Retry-After` (seconds) and
//! `{"error": "temporarily_unavailable", …}`: the code RFC 6749 defines for "try again later".

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::json_error;
use crate::clock::Clock;
use crate::config::RateLimits;
use crate::oauth::ErrorCode;
use crate::proxy_trust::TrustedSources;

/// Buckets are dropped once they have been idle this long: by then they are full again.
const PRUNE_AFTER_SECONDS: u64 = 60;

/// Past this many tracked addresses, pruning also runs between the minutely passes.
const MAX_TRACKED: usize = 100_000;

/// Which limit a route is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /oauth/register`, `POST /register`.
    Register,
    /// `POST /oauth/token`, `POST /token`.
    Token,
    /// `POST /oauth/introspect`: under `tokenPerMinute`, in a bucket of its own.
    Introspect,
    /// `POST /oauth/revoke`: under `tokenPerMinute`, in a bucket of its own.
    Revoke,
}

impl Endpoint {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Token => "token",
            Self::Introspect => "introspect",
            Self::Revoke => "revoke",
        }
    }
}

/// A token bucket whose capacity is its per-minute rate.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: u64,
    /// Whether the last request was refused (so only the first refusal is logged).
    is_limited: bool,
}

impl Bucket {
    fn full(per_minute: u32, now: u64) -> Self {
        Self {
            tokens: f64::from(per_minute),
            updated: now,
            is_limited: false,
        }
    }

    fn refill(&mut self, per_minute: u32, now: u64) {
        // A clock that stepped back refills nothing (and never drains).
        let elapsed = now.saturating_sub(self.updated);
        let capacity = f64::from(per_minute);
        self.tokens = (self.tokens + elapsed as f64 * capacity / 60.0).min(capacity);
        self.updated = self.updated.max(now);
    }

    /// Seconds until one whole token is back.
    fn retry_after(&self, per_minute: u32) -> u64 {
        let missing = (1.0 - self.tokens).max(0.0);
        // At most 60 s (an empty bucket refills one token in 60 / rate seconds).
        (missing * 60.0 / f64::from(per_minute))
            .ceil()
            .clamp(1.0, 60.0) as u64
    }
}

#[derive(Debug)]
struct Buckets {
    per_address: HashMap<(Endpoint, IpAddr), Bucket>,
    /// `/oauth/authorize`, per signed-in user.
    per_user: HashMap<String, Bucket>,
    global_register: Bucket,
    last_prune: u64,
}

/// The limiter shared by every rate-limited route.
pub struct RateLimiter {
    limits: RateLimits,
    trusted: TrustedSources,
    clock: Arc<dyn Clock>,
    /// Shared with the limiter a reload replaces this one with ([`Self::reconfigured`]).
    buckets: Arc<Mutex<Buckets>>,
}

impl RateLimiter {
    /// A limiter for `limits`, reading client addresses behind `trusted` proxies.
    pub fn new(limits: RateLimits, trusted: TrustedSources, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        Self {
            buckets: Arc::new(Mutex::new(Buckets {
                per_address: HashMap::new(),
                per_user: HashMap::new(),
                global_register: Bucket::full(limits.register_global_per_minute, now),
                last_prune: now,
            })),
            limits,
            trusted,
            clock,
        }
    }

    /// A limiter for new `limits` and `trusted` proxies (a configuration reload) that keeps
    /// this one's buckets: what each address and user has used goes on counting, so a reload
    /// is not a way around a limit. Buckets are not tied to a rate: a lowered limit caps a
    /// fuller bucket at its next request, a raised one refills at the new rate.
    pub fn reconfigured(&self, limits: RateLimits, trusted: TrustedSources) -> Self {
        Self {
            limits,
            trusted,
            clock: self.clock.clone(),
            buckets: self.buckets.clone(),
        }
    }

    /// Takes one request from `key`'s allowance for `endpoint` (`None`: a trusted source,
    /// only the global limit applies); `Err` holds the seconds to wait (for `Retry-After`).
    pub fn check(&self, endpoint: Endpoint, key: Option<IpAddr>) -> Result<(), u64> {
        let now = self.clock.now();
        let per_address = match endpoint {
            Endpoint::Register => self.limits.register_per_minute,
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => {
                self.limits.token_per_minute
            }
        };
        let global = match endpoint {
            Endpoint::Register => self.limits.register_global_per_minute,
            Endpoint::Token | Endpoint::Introspect | Endpoint::Revoke => 0,
        };
        // The map is only ever changed whole-entry, so a poisoned lock is still consistent.
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = &mut *guard;
        buckets.prune(now);

        let mut own = key.filter(|_| per_address != 0).map(|key| {
            let bucket = buckets
                .per_address
                .entry((endpoint, key))
                .or_insert_with(|| Bucket::full(per_address, now));
            bucket.refill(per_address, now);
            (key, bucket)
        });
        if let Some((key, bucket)) = own.as_mut()
            && bucket.tokens < 1.0
        {
            if !bucket.is_limited {
                bucket.is_limited = true;
                tracing::warn!(target: "audit", client = %key, endpoint = endpoint.as_str(), per_minute = per_address, "rate limit reached");
            }
            return Err(bucket.retry_after(per_address));
        }
        if global != 0 {
            let shared = &mut buckets.global_register;
            shared.refill(global, now);
            if shared.tokens < 1.0 {
                if !shared.is_limited {
                    shared.is_limited = true;
                    tracing::warn!(target: "audit", endpoint = endpoint.as_str(), per_minute = global, "global registration rate limit reached");
                }
                return Err(shared.retry_after(global));
            }
            shared.tokens -= 1.0;
            shared.is_limited = false;
        }
        if let Some((_, bucket)) = own {
            bucket.tokens -= 1.0;
            bucket.is_limited = false;
        }
        Ok(())
    }

    /// Takes one `/oauth/authorize` request from `user`'s allowance (`authorizePerMinute`);
    /// `Err` holds the seconds to wait. Users are counted whatever address they come from: the
    /// proxy asserts them, and every request from one may store a code for them.
    pub fn check_user(&self, user: &str) -> Result<(), u64> {
        let per_minute = self.limits.authorize_per_minute;
        if per_minute == 0 {
            return Ok(());
        }
        let now = self.clock.now();
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = &mut *guard;
        buckets.prune(now);
        let bucket = match buckets.per_user.get_mut(user) {
            Some(bucket) => bucket,
            None => buckets
                .per_user
                .entry(user.to_string())
                .or_insert_with(|| Bucket::full(per_minute, now)),
        };
        bucket.refill(per_minute, now);
        if bucket.tokens < 1.0 {
            if !bucket.is_limited {
                bucket.is_limited = true;
                tracing::warn!(target: "audit", sub = %user, endpoint = "authorize", per_minute, "rate limit reached");
            }
            return Err(bucket.retry_after(per_minute));
        }
        bucket.tokens -= 1.0;
        bucket.is_limited = false;
        Ok(())
    }

    /// The address a request is counted against, `None` for a trusted source (see the module
    /// documentation).
    pub fn key_for(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        client_key(peer, headers, &self.trusted)
    }
}

impl Buckets {
    fn prune(&mut self, now: u64) {
        let is_due = now.saturating_sub(self.last_prune) >= PRUNE_AFTER_SECONDS
            || ((self.per_address.len() > MAX_TRACKED || self.per_user.len() > MAX_TRACKED)
                && now != self.last_prune);
        if is_due {
            self.per_address
                .retain(|_, b| now.saturating_sub(b.updated) < PRUNE_AFTER_SECONDS);
            self.per_user
                .retain(|_, b| now.saturating_sub(b.updated) < PRUNE_AFTER_SECONDS);
            self.last_prune = now;
        }
    }
}

/// The address a request from `peer` is counted against: the peer itself, or, when the peer
/// is a trusted proxy, the right-most `X-Forwarded-For` entry that is not a trusted address;
/// `None` when there is no such entry, as the request then comes from a trusted source. A
/// header that cannot be read counts against the proxy's own address, so malformed requests
/// share one bucket instead of choosing their own or escaping the limit.
pub fn client_key(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedSources) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return Some(group(peer));
    }
    // Repeated header lines form one list, in order (RFC 9110 §5.3).
    let mut entries = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return Some(group(peer));
        };
        entries.extend(text.split(',').map(str::trim));
    }
    for entry in entries.iter().rev() {
        let Some(address) = parse_entry(entry) else {
            return Some(group(peer));
        };
        let address = address.to_canonical();
        if !trusted.contains(address) {
            return Some(group(address));
        }
    }
    None
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse::<Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })
}

/// IPv4 addresses stand alone; IPv6 addresses count by their /64.
fn group(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// The 429 answer.
fn too_many_requests(retry_after: u64) -> Response {
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::TemporarilyUnavailable,
        &format!("too many requests from this address; retry after {retry_after} seconds"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// Middleware: counts the request against its limit before the handler runs.
pub async fn enforce(
    State((limiter, endpoint)): State<(Arc<RateLimiter>, Endpoint)>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let key = limiter.key_for(peer, request.headers());
    match limiter.check(endpoint, key) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => {
            crate::metrics::Metrics::new().rate_limited(endpoint.as_str());
            too_many_requests(retry_after)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn trusted(entries: &[&str]) -> TrustedSources {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        TrustedSources::parse(&entries).map(|(t, _)| t).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A request counted against the address `s`.
    fn at(s: &str) -> Option<IpAddr> {
        Some(ip(s))
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    #[test]
    fn an_untrusted_peer_is_its_own_key_whatever_it_forwards() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let headers = xff(&["1.2.3.4"]);
        assert_eq!(
            client_key(ip("192.0.2.7"), &headers, &proxies),
            at("192.0.2.7")
        );
        assert_eq!(
            client_key(ip("::ffff:192.0.2.7"), &headers, &proxies),
            at("192.0.2.7")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_entry_counts() {
        let proxies = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        let peer = ip("10.0.0.2");
        // The client wrote the left-most entries; the proxies appended the rest.
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["203.0.113.9"], Some("203.0.113.9")),
            (&["6.6.6.6, 203.0.113.9"], Some("203.0.113.9")),
            (&["6.6.6.6, 203.0.113.9, 10.0.0.1"], Some("203.0.113.9")),
            (&["6.6.6.6", "203.0.113.9, 10.1.1.1"], Some("203.0.113.9")),
            (&["203.0.113.9:4711"], Some("203.0.113.9")),
            (&["[2001:db8::1]:4711"], Some("2001:db8::")),
            (&["[2001:db8::1]"], Some("2001:db8::")),
            (&["::ffff:203.0.113.9"], Some("203.0.113.9")),
            // Only trusted hops, or none: a trusted source, under no per-address limit.
            (&["10.9.9.9, 10.0.0.1"], None),
            (&["::ffff:127.0.0.1"], None),
            (&[], None),
            // Unreadable entries count against the proxy's own address.
            (&["6.6.6.6, unknown"], Some("10.0.0.2")),
            (&["203.0.113.9, "], Some("10.0.0.2")),
            (&["203.0.113.9 10.0.0.1"], Some("10.0.0.2")),
            (&["unknown, 10.0.0.1"], Some("10.0.0.2")),
        ];
        for (lines, expected) in cases {
            assert_eq!(
                client_key(peer, &xff(lines), &proxies),
                expected.map(ip),
                "{lines:?}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.9, \xff").unwrap(),
        );
        assert_eq!(client_key(peer, &headers, &proxies), Some(peer));
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_their_64() {
        let proxies = trusted(&["127.0.0.1"]);
        let a = client_key(ip("2001:db8:1:2::1"), &HeaderMap::new(), &proxies);
        assert!(a.is_some());
        let b = client_key(ip("2001:db8:1:2:ffff::9"), &HeaderMap::new(), &proxies);
        let c = client_key(ip("2001:db8:1:3::1"), &HeaderMap::new(), &proxies);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    fn limiter(limits: RateLimits) -> (RateLimiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_000));
        (
            RateLimiter::new(limits, trusted(&["127.0.0.1"]), clock.clone()),
            clock,
        )
    }

    #[test]
    fn a_bucket_allows_a_minute_of_burst_then_refills_continuously() {
        let limits = RateLimits {
            register_per_minute: 3,
            register_global_per_minute: 0,
            token_per_minute: 60,
            authorize_per_minute: 0,
        };
        let (limiter, clock) = limiter(limits);
        let me = at("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(limiter.check(Endpoint::Register, me), Ok(()));
        }
        assert_eq!(limiter.check(Endpoint::Register, me), Err(20));
        // Others and the other endpoint are unaffected.
        assert_eq!(limiter.check(Endpoint::Register, at("192.0.2.2")), Ok(()));
        assert_eq!(limiter.check(Endpoint::Token, me), Ok(()));
        clock.advance(19);
        assert!(limiter.check(Endpoint::Register, me).is_err());
        clock.advance(1);
        assert_eq!(limiter.check(Endpoint::Register, me), Ok(()));
        assert_eq!(limiter.check(Endpoint::Register, me), Err(20));
    }

    #[test]
    fn a_reconfigured_limiter_keeps_the_buckets_under_the_new_rates() {
        let limits = RateLimits {
            register_per_minute: 2,
            register_global_per_minute: 0,
            token_per_minute: 0,
            authorize_per_minute: 0,
        };
        let (limiter, clock) = limiter(limits);
        let me = at("192.0.2.1");
        assert_eq!(limiter.check(Endpoint::Register, me), Ok(()));
        assert_eq!(limiter.check(Endpoint::Register, me), Ok(()));
        // Same rate after the reload: the used allowance stays used.
        let same = limiter.reconfigured(limits, trusted(&["127.0.0.1"]));
        assert_eq!(same.check(Endpoint::Register, me), Err(30));
        // A raised rate refills faster; a limit turned on starts full.
        let raised = limiter.reconfigured(
            RateLimits {
                register_per_minute: 60,
                token_per_minute: 1,
                ..limits
            },
            trusted(&["127.0.0.1"]),
        );
        clock.advance(1);
        assert_eq!(raised.check(Endpoint::Register, me), Ok(()));
        assert_eq!(raised.check(Endpoint::Token, me), Ok(()));
        assert!(raised.check(Endpoint::Token, me).is_err());
        // A lowered rate caps what a bucket holds (59 left under the raised rate).
        clock.advance(60);
        assert_eq!(raised.check(Endpoint::Register, me), Ok(()));
        let lowered = limiter.reconfigured(
            RateLimits {
                register_per_minute: 1,
                ..limits
            },
            trusted(&["127.0.0.1"]),
        );
        assert_eq!(lowered.check(Endpoint::Register, me), Ok(()));
        assert_eq!(lowered.check(Endpoint::Register, me), Err(60));
    }

    #[test]
    fn the_global_registration_bucket_is_shared_and_zero_disables() {
        let limits = RateLimits {
            register_per_minute: 0,
            register_global_per_minute: 2,
            token_per_minute: 0,
            authorize_per_minute: 0,
        };
        let (limiter, clock) = limiter(limits);
        assert_eq!(limiter.check(Endpoint::Register, at("192.0.2.1")), Ok(()));
        assert_eq!(limiter.check(Endpoint::Register, at("192.0.2.2")), Ok(()));
        assert_eq!(limiter.check(Endpoint::Register, at("192.0.2.3")), Err(30));
        for _ in 0..1000 {
            assert_eq!(limiter.check(Endpoint::Token, at("192.0.2.1")), Ok(()));
        }
        clock.advance(30);
        assert_eq!(limiter.check(Endpoint::Register, at("192.0.2.3")), Ok(()));
    }

    #[test]
    fn a_refusal_by_the_global_bucket_does_not_spend_the_address_allowance() {
        let limits = RateLimits {
            register_per_minute: 1,
            register_global_per_minute: 1,
            token_per_minute: 0,
            authorize_per_minute: 0,
        };
        let (limiter, clock) = limiter(limits);
        assert_eq!(limiter.check(Endpoint::Register, at("192.0.2.1")), Ok(()));
        assert!(limiter.check(Endpoint::Register, at("192.0.2.2")).is_err());
        clock.advance(60);
        assert_eq!(limiter.check(Endpoint::Register, at("192.0.2.2")), Ok(()));
    }

    #[test]
    fn a_trusted_source_has_no_per_address_limit_but_the_global_one_holds() {
        let limits = RateLimits {
            register_per_minute: 1,
            register_global_per_minute: 3,
            token_per_minute: 1,
            authorize_per_minute: 0,
        };
        let (limiter, _clock) = limiter(limits);
        for _ in 0..10_000 {
            assert_eq!(limiter.check(Endpoint::Token, None), Ok(()));
        }
        for _ in 0..3 {
            assert_eq!(limiter.check(Endpoint::Register, None), Ok(()));
        }
        assert_eq!(limiter.check(Endpoint::Register, None), Err(20));
        assert!(limiter.buckets.lock().unwrap().per_address.is_empty());
    }

    #[test]
    fn authorize_is_limited_per_user_and_zero_disables() {
        let limits = RateLimits {
            authorize_per_minute: 2,
            ..RateLimits::default()
        };
        let (limiter, clock) = limiter(limits);
        assert_eq!(limiter.check_user("alice"), Ok(()));
        assert_eq!(limiter.check_user("alice"), Ok(()));
        assert_eq!(limiter.check_user("alice"), Err(30));
        assert_eq!(limiter.check_user("bob"), Ok(()));
        // Addresses and users are separate allowances.
        assert_eq!(limiter.check(Endpoint::Token, at("192.0.2.1")), Ok(()));
        clock.advance(30);
        assert_eq!(limiter.check_user("alice"), Ok(()));
        clock.advance(PRUNE_AFTER_SECONDS);
        assert_eq!(limiter.check_user("carol"), Ok(()));
        assert_eq!(limiter.buckets.lock().unwrap().per_user.len(), 1);

        let limits = RateLimits {
            authorize_per_minute: 0,
            ..RateLimits::default()
        };
        let (unlimited, _clock) = self::limiter(limits);
        for _ in 0..1000 {
            assert_eq!(unlimited.check_user("alice"), Ok(()));
        }
        assert!(unlimited.buckets.lock().unwrap().per_user.is_empty());
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let (limiter, clock) = limiter(RateLimits::default());
        for i in 0..50u8 {
            limiter
                .check(
                    Endpoint::Token,
                    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))),
                )
                .unwrap();
        }
        assert_eq!(limiter.buckets.lock().unwrap().per_address.len(), 50);
        clock.advance(PRUNE_AFTER_SECONDS);
        limiter.check(Endpoint::Token, at("198.51.100.1")).unwrap();
        assert_eq!(limiter.buckets.lock().unwrap().per_address.len(), 1);
    }
}
