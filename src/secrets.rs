//! Random values, hashing and keyed derivations.
//!
//! Only SHA-256 hashes of secrets and refresh tokens reach disk; plaintext values exist only in
//! the response that hands them out. Sub-keys for different purposes are derived from
//! `jwtSecret` with HMAC and a fixed label, so one configured secret never signs two kinds of
//! thing with the same key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// `n` bytes from the operating-system-seeded CSPRNG, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(&buf)
}

/// SHA-256 of `input`, base64url without padding: the at-rest form of every secret.
pub fn sha256_b64(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(input))
}

/// HMAC-SHA256 of `input` under `key`, base64url without padding.
pub fn hmac_b64(key: &[u8], input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(hmac_raw(key, input))
}

/// HMAC-SHA256 of `input` under `key`.
pub fn hmac_raw(key: &[u8], input: &[u8]) -> [u8; 32] {
    HmacKey::new(key).sign(input)
}

/// An HMAC-SHA256 key whose key schedule (the inner and outer padded key, two SHA-256 blocks)
/// is computed once: a key used on every request then hashes only the message.
#[derive(Clone)]
pub struct HmacKey(HmacSha256);

impl HmacKey {
    /// Prepares `key` (any length; long keys are hashed first, as HMAC says).
    pub fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        #[allow(clippy::expect_used)]
        Self(HmacSha256::new_from_slice(key).expect("HMAC accepts any key length"))
    }

    /// HMAC-SHA256 of `input`.
    pub fn sign(&self, input: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(input);
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA256 of `input`, base64url without padding.
    pub fn sign_b64(&self, input: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.sign(input))
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(<redacted>)")
    }
}

/// Constant-time equality of two byte strings (length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The keys mcp-authd derives from the configured `jwtSecret`.
#[derive(Clone)]
pub struct Keys {
    /// Signs access tokens (HS256). This is `jwtSecret` itself, because the MCP server
    /// verifies with the same configured value.
    pub jwt: Vec<u8>,
    /// Derives a refresh token's successor from the token itself (SPEC §6, grace window).
    pub refresh_successor: [u8; 32],
    /// Signs consent tickets (CSRF protection for the consent form).
    pub consent: [u8; 32],
    /// Derives the `jti` of a rotation's access token from the refresh token it consumed, so
    /// a grace-window retry gets the same access token (SPEC §17).
    pub access_token_id: [u8; 32],
    /// [`Self::refresh_successor`], prepared: every refresh derives with it.
    pub refresh_successor_mac: HmacKey,
    /// [`Self::access_token_id`], prepared: every refresh derives with it.
    pub access_token_id_mac: HmacKey,
}

impl Keys {
    /// Derives every purpose key from the configured secret.
    pub fn derive(jwt_secret: &[u8]) -> Self {
        let refresh_successor = hmac_raw(jwt_secret, b"mcp-authd/v1/refresh-successor");
        let access_token_id = hmac_raw(jwt_secret, b"mcp-authd/v1/access-token-id");
        Self {
            jwt: jwt_secret.to_vec(),
            refresh_successor,
            consent: hmac_raw(jwt_secret, b"mcp-authd/v1/consent-ticket"),
            access_token_id,
            refresh_successor_mac: HmacKey::new(&refresh_successor),
            access_token_id_mac: HmacKey::new(&access_token_id),
        }
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_have_the_requested_entropy_and_differ() {
        let a = random_token(32);
        let b = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }

    #[test]
    fn purpose_keys_differ_from_each_other_and_from_the_secret() {
        let keys = Keys::derive(&[7u8; 32]);
        assert_ne!(keys.refresh_successor, keys.consent);
        assert_ne!(keys.access_token_id, keys.refresh_successor);
        assert_ne!(keys.access_token_id, keys.consent);
        assert_ne!(keys.refresh_successor.as_slice(), keys.jwt.as_slice());
    }

    #[test]
    fn a_prepared_key_signs_like_the_one_shot_hmac_however_often_it_is_used() {
        let key = HmacKey::new(b"a key");
        for input in [&b""[..], b"message", &[7u8; 200]] {
            assert_eq!(key.sign(input), hmac_raw(b"a key", input));
            assert_eq!(key.sign(input), key.sign(input));
            assert_eq!(key.sign_b64(input), hmac_b64(b"a key", input));
        }
        // RFC 4231 test case 2.
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let mac = HmacKey::new(b"Jefe").sign(b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        let keys = Keys::derive(&[7u8; 32]);
        assert_eq!(
            keys.refresh_successor_mac.sign(b"t"),
            hmac_raw(&keys.refresh_successor, b"t")
        );
        assert_eq!(
            keys.access_token_id_mac.sign(b"t"),
            hmac_raw(&keys.access_token_id, b"t")
        );
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
