//! The two HTML pages: errors on browser endpoints and the consent page.
//!
//! Every value shown is escaped; the pages forbid framing (RFC 9700 §4.16) and send no
//! referrer, so a code or ticket never leaks through `Referer` (RFC 9700 §4.2).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Headers every page carries.
fn page_headers() -> [(header::HeaderName, HeaderValue); 5] {
    [
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1f2328}\
h1{font-size:1.3rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem}dt{color:#59636e}\
dd{margin:0;word-break:break-all}.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.6rem;border-radius:6px}\
button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.6rem;border-radius:6px;border:1px solid #8c959f;cursor:pointer}\
button.approve{background:#1f883d;color:#fff;border-color:#1f883d}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// An error page for the browser endpoints.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!("<h1>Sign-in failed</h1><p>{}</p>", escape(message));
    (
        status,
        page_headers(),
        Html(document("Sign-in failed", &body)),
    )
        .into_response()
}

/// What the consent page shows.
pub struct ConsentView<'a> {
    /// The client's self-asserted name.
    pub client_name: &'a str,
    /// Whether the client registered itself (its name is unverified).
    pub is_unverified: bool,
    /// For a client metadata document client: the host its document was fetched from, which
    /// is the client's verified origin (its name is as stated by that host).
    pub verified_origin: Option<&'a str>,
    /// Where the user will be sent.
    pub redirect_host: &'a str,
    /// The scope requested.
    pub scope: &'a str,
    /// The requested scopes beyond an earlier approval, marked as new (SPEC §13 step-up);
    /// empty on a first approval.
    pub new_scopes: &'a [String],
    /// The signed-in user.
    pub user: &'a str,
    /// Where the form posts.
    pub action: &'a str,
    /// The sealed consent ticket.
    pub ticket: &'a str,
}

/// The consent page.
pub fn consent_page(view: &ConsentView<'_>) -> Response {
    let warning = if view.is_unverified {
        "<p class=\"warn\">This application registered itself; its name is <strong>unverified</strong>. \
Only approve if you just started signing in to it.</p>"
            .to_string()
    } else if let Some(origin) = view.verified_origin {
        format!(
            "<p class=\"warn\">This application is identified by a metadata document published at \
<strong>https://{origin}</strong>: <strong>{origin}</strong> is its verified origin. Its name is as stated by \
{origin}. Only approve if you just started signing in to an application from {origin}.</p>",
            origin = escape(origin)
        )
    } else {
        String::new()
    };
    let name_note = match (view.is_unverified, view.verified_origin) {
        (true, _) => " <em>(unverified)</em>".to_string(),
        (false, Some(origin)) => format!(" <em>(as stated by {})</em>", escape(origin)),
        (false, None) => String::new(),
    };
    let origin_row = match view.verified_origin {
        Some(origin) => format!("<dt>Verified origin</dt><dd>{}</dd>", escape(origin)),
        None => String::new(),
    };
    let scope = if view.scope.is_empty() {
        "(none requested)".to_string()
    } else {
        view.scope
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(|t| {
                if view.new_scopes.iter().any(|n| n == t) {
                    format!("<strong>{}</strong> <em>(new)</em>", escape(t))
                } else {
                    escape(t)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let step_up = if view.new_scopes.is_empty() {
        String::new()
    } else {
        format!(
            "<p>You approved this application before. It now asks for more: <strong>{}</strong>.</p>",
            escape(&view.new_scopes.join(" "))
        )
    };
    let body = format!(
        "<h1>Allow {name} to access your MCP servers?</h1>{warning}{step_up}<dl>\
<dt>Application</dt><dd>{name}{name_note}</dd>{origin_row}<dt>Redirects to</dt><dd>{host}</dd>\
<dt>Permissions</dt><dd>{scope}</dd><dt>Signed in as</dt><dd>{user}</dd></dl>\
<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">\
<button class=\"approve\" type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        name = escape(view.client_name),
        host = escape(view.redirect_host),
        user = escape(view.user),
        action = escape(view.action),
        ticket = escape(view.ticket),
    );
    (
        StatusCode::OK,
        page_headers(),
        Html(document("Approve access", &body)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
    }
}
