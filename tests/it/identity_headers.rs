//! SPEC §16: the user and groups headers are taken exactly as the proxy sent them (only the
//! HTTP layer's spaces and tabs are trimmed). A value that could make one user look like
//! another, or that is a placeholder the proxy never filled in, gets a 400 page at
//! `/oauth/authorize` and at the consent POST, never a code.

use reqwest::header::HeaderValue;
use serde_json::Value;

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

/// Issue 8 items 2 and 4: at most 64 distinct groups and 4096 bytes; groups with Unicode
/// whitespace or invisible characters are refused, inner spaces are kept, empty items and
/// repeats are dropped.
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
    assert_eq!(
        claims["groups"],
        serde_json::json!(["eng", "ops", "Domain Users"])
    );

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
    assert_eq!(claims["groups"], serde_json::json!(["eng"]));
    app.stop().await;
}
