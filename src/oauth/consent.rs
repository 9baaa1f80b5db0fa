//! Consent tickets: the signed, expiring, single-use token that carries an authorization
//! request from the consent page back to the server (CSRF protection, MCP security best
//! practices "confused deputy").
//!
//! The ticket holds the whole validated request and the user it was shown to, so the form
//! needs no other fields and a ticket cannot be replayed by, or for, another user.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::authorize::PendingAuthorization;
use crate::secrets::{constant_time_eq, hmac_raw, random_token};

/// How long the consent page stays valid, in seconds.
pub const TICKET_SECONDS: u64 = 600;

/// A validated authorization request awaiting the user's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentTicket {
    /// The user the page was shown to.
    pub sub: String,
    /// The request.
    pub request: PendingAuthorization,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Single-use marker.
    pub nonce: String,
}

impl ConsentTicket {
    /// A fresh nonce for a new ticket.
    pub fn new_nonce() -> String {
        random_token(16)
    }

    /// Serialises and signs the ticket: `base64url(json).base64url(hmac)`.
    pub fn seal(&self, key: &[u8]) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default());
        let mac = URL_SAFE_NO_PAD.encode(hmac_raw(key, body.as_bytes()));
        format!("{body}.{mac}")
    }

    /// Verifies the signature and expiry of a sealed ticket.
    pub fn open(sealed: &str, key: &[u8], now: u64) -> Result<Self, &'static str> {
        Self::open_with_any(sealed, [key], now)
    }

    /// Like [`Self::open`], accepting a signature by any of `keys`: the current key, then
    /// those derived from `previousJwtSecrets`, so that a page served before a `jwtSecret`
    /// rotation can still be answered after it (the nonce guard still makes it single use).
    pub fn open_with_any<'k>(
        sealed: &str,
        keys: impl IntoIterator<Item = &'k [u8]>,
        now: u64,
    ) -> Result<Self, &'static str> {
        let (body, mac) = sealed.split_once('.').ok_or("malformed consent ticket")?;
        let is_signed = keys.into_iter().any(|key| {
            let expected = URL_SAFE_NO_PAD.encode(hmac_raw(key, body.as_bytes()));
            constant_time_eq(expected.as_bytes(), mac.as_bytes())
        });
        if !is_signed {
            return Err("consent ticket signature is invalid");
        }
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| "malformed consent ticket")?;
        let ticket: Self = serde_json::from_slice(&json).map_err(|_| "malformed consent ticket")?;
        if now >= ticket.exp {
            return Err("the consent page has expired; start the sign-in again from your client");
        }
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> ConsentTicket {
        ConsentTicket {
            sub: "alice".into(),
            request: PendingAuthorization {
                client_id: "c".into(),
                redirect_uri: "http://127.0.0.1/cb".into(),
                state: Some("s".into()),
                scope: String::new(),
                resource: "https://r/mcp".into(),
                code_challenge: "x".into(),
                issuer: "https://r".into(),
            },
            exp: 100,
            nonce: ConsentTicket::new_nonce(),
        }
    }

    #[test]
    fn sealed_tickets_open_until_they_expire() {
        let sealed = ticket().seal(b"key");
        assert_eq!(
            ConsentTicket::open(&sealed, b"key", 99).unwrap(),
            ticket_with_nonce(&sealed)
        );
        assert!(ConsentTicket::open(&sealed, b"key", 100).is_err());
        assert!(ConsentTicket::open(&sealed, b"other", 50).is_err());
    }

    fn ticket_with_nonce(sealed: &str) -> ConsentTicket {
        ConsentTicket::open(sealed, b"key", 0).unwrap()
    }

    #[test]
    fn tampered_tickets_are_refused() {
        let sealed = ticket().seal(b"key");
        let mut forged = ticket();
        forged.sub = "mallory".into();
        let forged_body = forged.seal(b"attacker-key");
        let (_, mac) = sealed.split_once('.').unwrap();
        let (body, _) = forged_body.split_once('.').unwrap();
        assert!(ConsentTicket::open(&format!("{body}.{mac}"), b"key", 1).is_err());
    }

    #[test]
    fn tickets_signed_by_a_previous_key_open_and_others_do_not() {
        let sealed = ticket().seal(b"old key");
        let keys: [&[u8]; 2] = [b"new key", b"old key"];
        assert!(ConsentTicket::open_with_any(&sealed, keys, 1).is_ok());
        assert!(ConsentTicket::open_with_any(&sealed, [b"new key".as_slice()], 1).is_err());
        assert!(ConsentTicket::open_with_any(&sealed, [], 1).is_err());
        // Expiry still applies to a ticket signed by a previous key.
        assert!(ConsentTicket::open_with_any(&sealed, keys, 100).is_err());
    }
}
