//! The trusted reverse proxy and the identity it sends (catalogue section G, SPEC §16).
//!
//! Which peer is the proxy: `trustedSourceCidrs` judges an IPv4 peer and its IPv4-mapped IPv6
//! form alike (on a real dual-stack `[::]` socket, and as a property over generated entries).
//!
//! What it says: the user and groups headers are taken exactly as the proxy sent them (only
//! the HTTP layer's spaces and tabs are trimmed). A value that could make one user look like
//! another, that is too long, or that is a placeholder the proxy never filled in, gets a 400
//! page at `/oauth/authorize` and at the consent POST, never a code; look-alike header names
//! change nothing, and identity headers sent to the server-to-server endpoints are ignored.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use mcp_authd::proxy_trust::TrustedSources;
use proptest::prelude::*;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::helpers::*;

/// Unicode whitespace that `str::trim` removes but HTTP does not.
const UNICODE_SPACES: [char; 9] = [
    '\u{a0}', '\u{85}', '\u{2028}', '\u{2029}', '\u{3000}', '\u{1680}', '\u{2007}', '\u{202f}',
    '\u{205f}',
];

/// Zero-width, bidi and other invisible characters.
const INVISIBLE: [char; 11] = [
    '\u{200b}', '\u{200c}', '\u{200d}', '\u{2060}', '\u{feff}', '\u{200e}', '\u{200f}', '\u{202e}',
    '\u{2066}', '\u{ad}', '\u{3164}',
];

/// Placeholders real proxies leave in a header when their configuration is wrong or the
/// variable is unset: Caddy v2 (`reverse_proxy` and request placeholders) and v1, nginx
/// variables, a shell variable, Apache `mod_headers` (and its `(null)` for an unset
/// variable), HAProxy.
const PLACEHOLDERS: [&str; 11] = [
    "{http.reverse_proxy.header.X-Forwarded-User}",
    "{http.request.header.X-Forwarded-User}",
    "{http.auth.user.id}",
    "{>X-Forwarded-User}",
    "$remote_user",
    "$upstream_http_x_auth_request_user",
    "${REMOTE_USER}",
    "%{REMOTE_USER}e",
    "%{REMOTE_USER}s",
    "%[var(txn.auth_user)]",
    "(null)",
];

/// The header value for raw bytes.
fn value(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(bytes).unwrap()
}

/// GET /oauth/authorize with exactly these user and groups header lines.
async fn authorize_with(
    app: &TestApp,
    params: &[(String, String)],
    users: &[&[u8]],
    groups: &[&[u8]],
) -> reqwest::Response {
    let mut request = app.http.get(app.url("/oauth/authorize")).query(params);
    for user in users {
        request = request.header("X-Forwarded-User", value(user));
    }
    for line in groups {
        request = request.header("X-Forwarded-Groups", value(line));
    }
    request.send().await.unwrap()
}

/// POST the consent form approving `page`'s ticket with exactly these header lines.
async fn approve_with(
    app: &TestApp,
    page: &str,
    users: &[&[u8]],
    groups: &[&[u8]],
) -> reqwest::Response {
    let ticket = consent_ticket(page);
    let mut request = app
        .http
        .post(app.url("/oauth/authorize/consent"))
        .form(&[("ticket", ticket.as_str()), ("decision", "approve")]);
    for user in users {
        request = request.header("X-Forwarded-User", value(user));
    }
    for line in groups {
        request = request.header("X-Forwarded-Groups", value(line));
    }
    request.send().await.unwrap()
}

/// The claims of the access token a code redirect yields.
async fn claims_for(app: &TestApp, client_id: &str, response: &reqwest::Response) -> Value {
    let code = query_of(&location(response))["code"].clone();
    let response = app.exchange(client_id, &code, REDIRECT).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let claims =
        mcp_authd::verify_access_token(body["access_token"].as_str().unwrap(), &app.expectations())
            .unwrap();
    serde_json::to_value(claims).unwrap()
}

/// A server on a dual-stack `[::]` socket, where IPv4 peers appear as `::ffff:a.b.c.d`,
/// trusting `trusted` as its proxies.
async fn dual_stack(trusted: &[&str]) -> TestApp {
    let trusted = json!(trusted);
    TestApp::spawn_with(Options {
        configure: &|c| c["trustedSourceCidrs"] = trusted.clone(),
        addr: Some("[::]:0".parse().unwrap()),
        ..Default::default()
    })
    .await
}

/// GET /oauth/authorize on `app`'s port through `host` (`127.0.0.1` or `[::1]`) from `http`,
/// as the proxy would send it; the status.
async fn authorize_via(app: &TestApp, http: &reqwest::Client, host: &str, client_id: &str) -> u16 {
    http.get(format!("http://{host}:{}/oauth/authorize", app.addr.port()))
        .query(&TestApp::authorize_params(client_id, REDIRECT))
        .header("X-Forwarded-User", USER)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Row 66: on a dual-stack listener the proxy's IPv4 address arrives as an IPv4-mapped IPv6
/// peer and still matches an IPv4 `trustedSourceCidrs` entry (and a mapped-form entry);
/// other IPv4 peers and `::1` do not, and an IPv6-only entry does not admit IPv4 peers.
#[tokio::test]
async fn ipv4_mapped_peers_on_a_dual_stack_listener_are_judged_as_ipv4() {
    // The premise: an IPv4 connection to a [::] socket reports a mapped peer.
    let Ok(probe) = std::net::TcpListener::bind("[::]:0") else {
        eprintln!("no IPv6 on this host: dual-stack peers are covered by proxy_trust unit tests");
        return;
    };
    let probe_port = probe.local_addr().unwrap().port();
    let _conn = std::net::TcpStream::connect(("127.0.0.1", probe_port)).unwrap();
    let (_, peer) = probe.accept().unwrap();
    match peer {
        SocketAddr::V6(v6) => assert_eq!(v6.ip().to_ipv4_mapped(), Some([127, 0, 0, 1].into())),
        SocketAddr::V4(_) => panic!("a [::] listener reported an IPv4 peer: {peer}"),
    }

    let v4_proxy = client(None);
    let v4_other = client(Some("127.0.0.2".parse().unwrap()));
    for trusted in [
        &["127.0.0.1/32"][..],
        &["::ffff:127.0.0.1"][..],
        &["::ffff:127.0.0.1/128"][..],
    ] {
        let server = dual_stack(trusted).await;
        let client_id = server.register_uris(&[REDIRECT]).await;
        assert_eq!(
            authorize_via(&server, &v4_proxy, "127.0.0.1", &client_id).await,
            200,
            "{trusted:?}"
        );
        assert_eq!(
            authorize_via(&server, &v4_other, "127.0.0.1", &client_id).await,
            403,
            "{trusted:?}"
        );
        assert_eq!(
            authorize_via(&server, &v4_proxy, "[::1]", &client_id).await,
            403,
            "{trusted:?}"
        );
        assert!(
            !server
                .state
                .store
                .has_consent(USER, &client_id)
                .await
                .unwrap()
        );
        server.stop().await;
    }
    // Trusting only ::1 admits the IPv6 loopback peer, never an IPv4 one.
    let server = dual_stack(&["::1"]).await;
    let client_id = server.register_uris(&[REDIRECT]).await;
    assert_eq!(
        authorize_via(&server, &v4_proxy, "[::1]", &client_id).await,
        200
    );
    assert_eq!(
        authorize_via(&server, &v4_proxy, "127.0.0.1", &client_id).await,
        403
    );
    server.stop().await;
}

pub(crate) fn cidr_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>(), 1u8..=32).prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a))),
        (any::<[u8; 4]>(), 96u8..=128)
            .prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a).to_ipv6_mapped())),
        any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_string()),
        any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_ipv6_mapped().to_string()),
        (any::<u128>(), 1u8..=128)
            .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv6Addr::from(a))),
        Just("0.0.0.0/0".to_string()),
        Just("::/0".to_string()),
        Just("::ffff:0.0.0.0/96".to_string()),
        "[0-9a-f:./]{0,20}",
    ]
}

/// Whether `peer` is in `entry`, computed by hand for IPv4 peers: IPv4 networks by mask, and
/// IPv4-mapped IPv6 networks by their IPv4 equivalent. Other IPv6 networks hold no IPv4 peer.
fn reference_contains(entry: &str, peer: Ipv4Addr) -> bool {
    let (addr, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, p.parse::<u32>().ok()),
        None => (entry, None),
    };
    let (base, prefix) = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => (v4, prefix.unwrap_or(32)),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) if prefix.unwrap_or(128) >= 96 => (v4, prefix.unwrap_or(128) - 96),
            _ => return false,
        },
        Err(_) => return false,
    };
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(base) & mask == u32::from(peer) & mask
}

proptest! {
    #![proptest_config(proptest_cases(1024))]

    #[test]
    fn an_ipv4_peer_and_its_mapped_form_are_the_same_peer(
        entries in prop::collection::vec(cidr_entry(), 1..4),
        peer in any::<[u8; 4]>(),
        inside in any::<prop::sample::Index>(),
    ) {
        let Ok((trusted, _)) = TrustedSources::parse(&entries) else {
            return Ok(());
        };
        // A peer inside one of the entries as often as a random one.
        let random = Ipv4Addr::from(peer);
        let near = entries[inside.index(entries.len())]
            .split('/')
            .next()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .map(|a| match a.to_canonical() {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => random,
            })
            .unwrap_or(random);
        for v4 in [random, near] {
            let direct = trusted.contains(IpAddr::V4(v4));
            prop_assert_eq!(direct, trusted.contains(IpAddr::V6(v4.to_ipv6_mapped())));
            let expected = entries.iter().any(|e| reference_contains(e, v4));
            prop_assert_eq!(direct, expected, "{} under {:?}", v4, entries);
        }
        // No accepted entry is a wildcard (the rule is per entry, see fuzz/proxy_trust.rs).
        let shown = trusted.to_string();
        prop_assert!(!shown.split(", ").any(|n| n.ends_with("/0")), "{}", shown);
    }
}

/// Issue 8 item 2: `alice` followed or preceded by Unicode whitespace was trimmed to `alice`,
/// reused her consent and got `sub=alice`. Now it is a 400 page, at authorize and at the
/// consent POST; the spaces and tabs HTTP itself trims still do not matter.
#[tokio::test]
async fn unicode_whitespace_around_the_user_is_refused_not_trimmed() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    // Alice has approved the client: a look-alike would get a code straight away.
    app.code_for(&client_id, REDIRECT).await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    for c in UNICODE_SPACES {
        for user in [format!("{USER}{c}"), format!("{c}{USER}")] {
            let response = authorize_with(&app, &params, &[user.as_bytes()], &[b"eng"]).await;
            let page = assert_page(response, 400).await;
            assert!(page.contains("without whitespace"), "{user:?}: {page}");
        }
    }

    // What HTTP trims (spaces and tabs) is the same user.
    let spaced = format!(" {USER}\t");
    let response = authorize_with(&app, &params, &[spaced.as_bytes()], &[b"eng"]).await;
    assert_eq!(response.status(), 302);
    assert_eq!(claims_for(&app, &client_id, &response).await["sub"], USER);

    // The consent POST reads the headers by the same rule.
    let other = app.register_public(REDIRECT).await;
    let response = app
        .authorize_as(Some(USER), &TestApp::authorize_params(&other, REDIRECT))
        .await;
    let page = response.text().await.unwrap();
    let nbsp = format!("{USER}\u{a0}");
    assert_page(
        approve_with(&app, &page, &[nbsp.as_bytes()], &[]).await,
        400,
    )
    .await;
    app.stop().await;
}

/// Issue 8 item 2: zero-width, bidi and other invisible characters anywhere in the user name
/// are refused (a name holding one displays as another user's).
#[tokio::test]
async fn zero_width_and_bidi_characters_anywhere_in_the_user_are_refused() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    for c in INVISIBLE {
        for user in [
            format!("{c}{USER}"),
            format!("ali{c}ce@example.com"),
            format!("{USER}{c}"),
        ] {
            let response = authorize_with(&app, &params, &[user.as_bytes()], &[]).await;
            assert_page(response, 400).await;
        }
    }
    app.stop().await;
}

/// Row 69: look-alike header names sent next to the proxy's real header change nothing.
#[tokio::test]
async fn underscore_variants_never_override_the_proxys_headers() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    app.code_for(&client_id, REDIRECT).await;
    let response = app
        .http
        .get(app.url("/oauth/authorize"))
        .query(&TestApp::authorize_params(&client_id, REDIRECT))
        .header("X_Forwarded_User", "admin@example.com")
        .header("X-Forwarded-User", USER)
        .header("X-Forwarded_User", "root@example.com")
        .header("X_Forwarded_Groups", "admins")
        .header("X-Forwarded-Groups", "eng")
        .header("X-Forwarded-Groups_", "root")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let claims = claims_for(&app, &client_id, &response).await;
    assert_eq!(claims["sub"], USER);
    assert_eq!(claims["groups"], json!(["eng"]));
    app.stop().await;
}

/// Row 70: the user header's limits: 256 bytes pass and 257 do not; tabs, non-breaking
/// spaces, bidi overrides and invalid UTF-8 are refused; valid non-ASCII names are accepted.
#[tokio::test]
async fn user_header_values_outside_the_rules_are_400_pages() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    let send = |value: Vec<u8>| {
        let request = app
            .http
            .get(app.url("/oauth/authorize"))
            .query(&params)
            .header(
                "X-Forwarded-User",
                reqwest::header::HeaderValue::from_bytes(&value).unwrap(),
            );
        async move { request.send().await.unwrap() }
    };
    let longest = format!("{}@example.com", "a".repeat(256 - 12));
    assert_eq!(send(longest.clone().into_bytes()).await.status(), 200);
    assert_eq!(
        send("josé@example.com".as_bytes().to_vec()).await.status(),
        200
    );
    for bad in [
        format!("{longest}a").into_bytes(),
        b"al\tice".to_vec(),
        "al\u{a0}ice".as_bytes().to_vec(),
        "ecila\u{202E}@example.com".as_bytes().to_vec(),
        b"\xff\xfealice".to_vec(),
        b"alice, bob".to_vec(),
    ] {
        assert_page(send(bad).await, 400).await;
    }
    app.stop().await;
}

/// Issue 8 item 2: a placeholder the proxy never substituted would make every user the same
/// user; as the user or among the groups it is a 400 page naming the cause.
#[tokio::test]
async fn unsubstituted_proxy_placeholders_are_refused_as_user_and_as_groups() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    for placeholder in PLACEHOLDERS {
        let response = authorize_with(&app, &params, &[placeholder.as_bytes()], &[]).await;
        let page = assert_page(response, 400).await;
        assert!(page.contains("placeholder"), "{placeholder}: {page}");
    }
    for groups in [
        "{http.reverse_proxy.header.X-Forwarded-Groups}",
        "{http.request.header.X-Forwarded-Groups}",
        "$upstream_http_x_auth_request_groups",
        "eng, %{GROUPS}e",
        "(null)",
    ] {
        let response =
            authorize_with(&app, &params, &[USER.as_bytes()], &[groups.as_bytes()]).await;
        let page = assert_page(response, 400).await;
        assert!(page.contains("x-forwarded-groups"), "{groups}: {page}");
        assert!(page.contains("placeholder"), "{groups}: {page}");
    }
    app.stop().await;
}

/// Issue 8 item 2: the groups header, like the user header, must be one line; two lines were
/// merged, so a second proxy hop (or an injected line) could add groups.
#[tokio::test]
async fn a_repeated_groups_header_is_refused_like_a_repeated_user_header() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    let response = authorize_with(&app, &params, &[USER.as_bytes()], &[b"eng", b"admins"]).await;
    let page = assert_page(response, 400).await;
    assert!(page.contains("more than once"), "{page}");
    let response = authorize_with(&app, &params, &[USER.as_bytes(), b"bob"], &[b"eng"]).await;
    assert_page(response, 400).await;

    let response = authorize_with(&app, &params, &[USER.as_bytes()], &[b"eng"]).await;
    let page = response.text().await.unwrap();
    let response = approve_with(&app, &page, &[USER.as_bytes()], &[b"eng", b"admins"]).await;
    assert_page(response, 400).await;
    app.stop().await;
}

/// Row 72: identity headers sent to the server-to-server endpoints (which the proxy does not
/// put behind SSO) are ignored: tokens carry the user of the authorization.
#[tokio::test]
async fn identity_headers_on_token_and_registration_requests_are_ignored() {
    let (app, _dir) = TestApp::spawn().await;
    let response = app
        .http
        .post(app.url("/oauth/register"))
        .header("X-Forwarded-User", "mallory@example.com")
        .json(&json!({"client_name": "C", "redirect_uris": [REDIRECT]}))
        .send()
        .await
        .unwrap();
    let client_id = string(&response.json().await.unwrap(), "client_id");
    let code = app.code_for(&client_id, REDIRECT).await;
    let forged = |form: Vec<(&'static str, String)>| {
        let request = app
            .http
            .post(app.url("/oauth/token"))
            .header("X-Forwarded-User", "mallory@example.com")
            .header("X-Forwarded-Groups", "admins")
            .form(&form);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let tokens = forged(vec![
        ("grant_type", "authorization_code".into()),
        ("client_id", client_id.clone()),
        ("code", code),
        ("redirect_uri", REDIRECT.into()),
        ("code_verifier", VERIFIER.into()),
    ])
    .await;
    let refreshed = forged(vec![
        ("grant_type", "refresh_token".into()),
        ("client_id", client_id.clone()),
        ("refresh_token", string(&tokens, "refresh_token")),
    ])
    .await;
    for body in [tokens, refreshed] {
        let claims = app.claims(&body);
        assert_eq!(claims.sub, USER);
        assert_eq!(claims.groups, vec!["eng", "ops"]);
    }
    app.stop().await;
}

/// Issue 8 items 2 and 4, catalogue row 71: at most 64 distinct groups and 4096 bytes; groups
/// with Unicode whitespace or invisible characters are refused, inner spaces are kept, empty
/// items and repeats are dropped, the order is kept.
#[tokio::test]
async fn groups_are_bounded_clean_and_parsed_without_surprises() {
    let (app, _dir) = TestApp::spawn_configured(&|c| c["consent"] = "never".into()).await;
    let client_id = app.register_public(REDIRECT).await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    let send = |groups: String| {
        let params = params.clone();
        let app = &app;
        async move { authorize_with(app, &params, &[USER.as_bytes()], &[groups.as_bytes()]).await }
    };
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("g{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };

    let response = send(format!("{},g0,g1", list(64))).await;
    assert_eq!(response.status(), 302);
    let claims = claims_for(&app, &client_id, &response).await;
    assert_eq!(claims["groups"].as_array().unwrap().len(), 64);
    let page = assert_page(send(list(65)).await, 400).await;
    assert!(page.contains("more than 64 groups"), "{page}");

    let response = send("a".repeat(4096)).await;
    assert_eq!(response.status(), 302);
    assert_page(send("a".repeat(4097)).await, 400).await;

    let response = send(" eng ,,ops, ,Domain Users,eng,".into()).await;
    let claims = claims_for(&app, &client_id, &response).await;
    assert_eq!(claims["groups"], json!(["eng", "ops", "Domain Users"]));
    // Catalogue row 71: the same parse every time: one line split on commas, items trimmed,
    // empty ones dropped, repeats dropped, first occurrence first.
    let response = send(" eng , ops,,eng, admins,ops".into()).await;
    let claims = claims_for(&app, &client_id, &response).await;
    assert_eq!(claims["groups"], json!(["eng", "ops", "admins"]));

    for c in UNICODE_SPACES.iter().chain(INVISIBLE.iter()) {
        for groups in [
            format!("eng,ops{c}"),
            format!("{c}eng"),
            format!("Domain{c}Users"),
        ] {
            assert_page(send(groups).await, 400).await;
        }
    }
    app.stop().await;
}

/// Issue 8 item 2: a consent POST with bad identity headers is refused before its ticket is
/// looked at, so the ticket still works when the proxy sends the right headers.
#[tokio::test]
async fn a_refused_consent_post_does_not_spend_the_ticket() {
    let (app, _dir) = TestApp::spawn().await;
    let client_id = app.register_public(REDIRECT).await;
    let params = TestApp::authorize_params(&client_id, REDIRECT);
    let response = authorize_with(&app, &params, &[USER.as_bytes()], &[b"eng"]).await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    let look_alike = format!("{USER}\u{3000}");
    for (users, groups) in [
        (vec![look_alike.as_bytes()], vec![&b"eng"[..]]),
        (vec![USER.as_bytes()], vec!["eng\u{200b}".as_bytes()]),
        (vec![b"$remote_user"], vec![]),
    ] {
        assert_page(approve_with(&app, &page, &users, &groups).await, 400).await;
    }
    let response = approve_with(&app, &page, &[USER.as_bytes()], &[b"eng"]).await;
    assert_eq!(response.status(), 303);
    let claims = claims_for(&app, &client_id, &response).await;
    assert_eq!(claims["sub"], USER);
    assert_eq!(claims["groups"], json!(["eng"]));
    app.stop().await;
}
