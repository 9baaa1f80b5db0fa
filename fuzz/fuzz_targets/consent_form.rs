//! The consent form, read as `POST /oauth/authorize/consent` reads it: the body through
//! `Params::parse`, its `ticket` through `ConsentTicket::open`, its `decision`. Without the key
//! no ticket opens; a sealed ticket opens to itself until it expires, and not once any byte of
//! it is changed; a body signed with the key but holding arbitrary bytes is refused cleanly.
//!
//! Input: the first byte selects a mode. Mode 0: the rest is the form body. Mode 1: the rest,
//! split on `\n`, gives a ticket's user, client, redirect URI, state, scope and challenge and
//! a suffix appended to the body; the ticket is sealed with the key, and one byte of it,
//! chosen from the input, is then changed. Otherwise: the rest is signed with the key as a
//! ticket body.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use mcp_authd::oauth::authorize::PendingAuthorization;
use mcp_authd::oauth::consent::ConsentTicket;
use mcp_authd::oauth::params::Params;
use mcp_authd::secrets::hmac_raw;

const KEY: &[u8] = b"fuzz-consent-key-fuzz-consent-key";
const NOW: u64 = 1_800_000_000;

/// What the handler does with a body: the ticket it opens and the decision it reads.
fn read(body: &[u8]) -> Option<(Result<ConsentTicket, &'static str>, Option<String>)> {
    let form = Params::parse(body).ok()?;
    let opened = ConsentTicket::open(form.get("ticket").unwrap_or_default(), KEY, NOW);
    if let Err(why) = &opened {
        assert!(!why.chars().any(char::is_control));
    }
    Some((opened, form.get("decision").map(str::to_string)))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            if let Some((opened, _)) = read(rest) {
                assert!(opened.is_err(), "a ticket opened without the key");
            }
        }
        1 => {
            let text = String::from_utf8_lossy(rest);
            let mut parts = text.split('\n').map(str::to_string);
            let mut next = || parts.next().unwrap_or_default();
            let ticket = ConsentTicket {
                sub: next(),
                request: PendingAuthorization {
                    client_id: next(),
                    redirect_uri: next(),
                    state: Some(next()).filter(|s| !s.is_empty()),
                    scope: next(),
                    resource: "https://as.example.com/mcp".into(),
                    code_challenge: next(),
                    issuer: "https://as.example.com".into(),
                },
                exp: NOW + u64::from(rest.first().copied().unwrap_or(0)) % 3,
                nonce: ConsentTicket::new_nonce(),
            };
            let suffix = next();
            let sealed = ticket.seal(KEY);
            let body = |ticket: &str| {
                let mut body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("ticket", ticket)
                    .append_pair("decision", "approve")
                    .finish();
                if !suffix.is_empty() {
                    body.push('&');
                    body.push_str(&suffix);
                }
                body
            };
            // The suffix may repeat a field or break the encoding: the form is then refused.
            let Some((opened, decision)) = read(body(&sealed).as_bytes()) else {
                return;
            };
            assert_eq!(decision.as_deref(), Some("approve"));
            match opened {
                Ok(opened) => {
                    assert!(ticket.exp > NOW);
                    assert_eq!(opened, ticket);
                }
                Err(_) => assert!(ticket.exp <= NOW, "a sealed, unexpired ticket was refused"),
            }
            let mut bytes = sealed.into_bytes();
            let at = rest.len() % bytes.len();
            let replacement = rest.last().copied().unwrap_or(b'A');
            if bytes[at] == replacement {
                return;
            }
            bytes[at] = replacement;
            let changed = String::from_utf8_lossy(&bytes);
            if let Some((opened, _)) = read(body(&changed).as_bytes()) {
                assert!(opened.is_err(), "a ticket changed at byte {at} still opens");
            }
        }
        _ => {
            let body = URL_SAFE_NO_PAD.encode(rest);
            let mac = URL_SAFE_NO_PAD.encode(hmac_raw(KEY, body.as_bytes()));
            let sealed = format!("{body}.{mac}");
            if let Ok(ticket) = ConsentTicket::open(&sealed, KEY, NOW) {
                // Whatever JSON it was, it is now a ticket that round-trips.
                let resealed = ticket.seal(KEY);
                assert_eq!(ConsentTicket::open(&resealed, KEY, NOW), Ok(ticket));
            }
        }
    }
});
