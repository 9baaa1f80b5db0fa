//! Refresh tokens: their format, successor derivation and the rotation rule (SPEC §6).
//!
//! A refresh token is `<family id>.<secret>`. The family id (128 random bits) names the chain
//! of rotations that started with one authorization; the secret is 256 random bits for the
//! first token, and for every later one the HMAC of the token it replaces under a key derived
//! from `jwtSecret`. That derivation is what lets a client that lost a response present the
//! old token again and receive the same successor, while only hashes are stored.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::secrets::{HmacKey, constant_time_eq, random_token, sha256_b64};
use crate::store::{RefreshFamily, RotationAnswer};

/// How long, in seconds, a rotated token may be presented again while its successor is unused.
pub const GRACE_SECONDS: u64 = 30;

/// A new family's first token: `(family_id, token)`.
pub fn new_family_token() -> (String, String) {
    let family_id = random_token(16);
    let token = format!("{family_id}.{}", random_token(32));
    (family_id, token)
}

/// The successor of `token` in its family.
pub fn successor(token: &str, family_id: &str, key: &[u8]) -> String {
    successor_with(token, family_id, &HmacKey::new(key))
}

/// [`successor`] with a prepared key (the refresh path's, [`crate::secrets::Keys`]).
pub fn successor_with(token: &str, family_id: &str, key: &HmacKey) -> String {
    let mut next = String::with_capacity(family_id.len() + 44);
    next.push_str(family_id);
    next.push('.');
    URL_SAFE_NO_PAD.encode_string(key.sign(token.as_bytes()), &mut next);
    next
}

/// The `jti` of the access token answering the rotation of `token` (SPEC §17): a keyed hash
/// of the refresh token the rotation consumed, so that a retry of that token inside the grace
/// window re-signs the very same access token instead of minting another, while the `jti`
/// stays unique (each token is consumed by one rotation) and unguessable without the key.
/// 128 bits, the length of a random `jti`.
pub fn access_token_id(token: &str, key: &[u8]) -> String {
    access_token_id_with(token, &HmacKey::new(key))
}

/// [`access_token_id`] with a prepared key.
pub fn access_token_id_with(token: &str, key: &HmacKey) -> String {
    let mut id = key.sign_b64(token.as_bytes());
    id.truncate(22);
    id
}

/// The family id of a well-formed token.
pub fn family_of(token: &str) -> Option<&str> {
    let (family, secret) = token.split_once('.')?;
    let is_b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (family.len() == 22 && secret.len() == 43 && is_b64(family) && is_b64(secret)).then_some(family)
}

/// The key a family is stored under (the SHA-256 of its family id), defined with the records
/// because the state document re-keys old files with it.
pub use crate::model::family_key;

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    sha256_b64(token.as_bytes())
}

/// What presenting a token of a known family means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// The live token: rotate.
    Rotate,
    /// The token just replaced, inside the grace window, successor unused: hand out the same
    /// successor again.
    Grace,
    /// Anything else from this family: it has leaked or been replayed; revoke the family.
    Reuse,
    /// The live token has expired.
    Expired,
}

/// Decides what presenting the token hashed as `presented_hash` means for `family` at `now`.
pub fn decide(family: &RefreshFamily, presented_hash: &str, now: u64) -> RefreshDecision {
    let is_current = constant_time_eq(family.current_hash.as_bytes(), presented_hash.as_bytes());
    let is_previous = family
        .previous_hash
        .as_deref()
        .is_some_and(|p| constant_time_eq(p.as_bytes(), presented_hash.as_bytes()));
    let is_expired = now >= family.expires_at;
    if is_current {
        return if is_expired {
            RefreshDecision::Expired
        } else {
            RefreshDecision::Rotate
        };
    }
    // While the previous token's successor is still the live token, it has not been used
    // (using it would have rotated it into `previous`).
    let is_in_grace = family
        .rotated_at
        .is_some_and(|at| now <= at.saturating_add(GRACE_SECONDS));
    if is_previous && is_in_grace && !is_expired {
        return RefreshDecision::Grace;
    }
    RefreshDecision::Reuse
}

/// The grace answer for a family whose last rotation was made by a build that did not record
/// its access token: one derived from what is stored (the rotation time, the grant's scope,
/// today's lifetime, taken from `requested`), so every retry still gets the same token, though
/// not the rotation's.
pub fn answer_before_recording(
    family: &RefreshFamily,
    requested: &RotationAnswer,
) -> RotationAnswer {
    let iat = family.rotated_at.unwrap_or(family.created_at);
    RotationAnswer {
        iat,
        exp: iat.saturating_add(requested.exp.saturating_sub(requested.iat)),
        scope: family.grant.scope.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Grant;

    fn family(current: &str, previous: Option<&str>, rotated_at: Option<u64>) -> RefreshFamily {
        RefreshFamily {
            grant: Grant {
                client_id: "c".into(),
                sub: "u".into(),
                groups: vec![],
                scope: String::new(),
                resource: "https://r".into(),
                issuer: String::new(),
            },
            current_hash: current.into(),
            previous_hash: previous.map(Into::into),
            rotated_at,
            created_at: 0,
            expires_at: 1000,
            rotation_answer: None,
        }
    }

    #[test]
    fn token_format_and_successor_are_stable() {
        let (family_id, token) = new_family_token();
        assert_eq!(family_of(&token), Some(family_id.as_str()));
        let next = successor(&token, &family_id, b"k");
        assert_eq!(next, successor(&token, &family_id, b"k"));
        assert_ne!(next, successor(&token, &family_id, b"other key"));
        assert_eq!(family_of(&next), Some(family_id.as_str()));
        assert_eq!(family_of("garbage"), None);
        assert_eq!(family_of(&format!("{family_id}.short")), None);
        let jti = access_token_id(&token, b"k");
        assert_eq!(jti, access_token_id(&token, b"k"));
        assert_eq!(jti.len(), 22);
        assert_ne!(jti, access_token_id(&next, b"k"));
        assert_ne!(jti, access_token_id(&token, b"other key"));
        // The prepared keys derive the same values, byte for byte.
        let prepared = HmacKey::new(b"k");
        assert_eq!(successor_with(&token, &family_id, &prepared), next);
        assert_eq!(access_token_id_with(&token, &prepared), jti);
        assert_eq!(
            next,
            format!(
                "{family_id}.{}",
                crate::secrets::hmac_b64(b"k", token.as_bytes())
            )
        );
    }

    #[test]
    fn rotation_grace_and_reuse() {
        let f = family("cur", Some("prev"), Some(100));
        assert_eq!(decide(&f, "cur", 101), RefreshDecision::Rotate);
        assert_eq!(
            decide(&f, "prev", 100 + GRACE_SECONDS),
            RefreshDecision::Grace
        );
        assert_eq!(
            decide(&f, "prev", 101 + GRACE_SECONDS),
            RefreshDecision::Reuse
        );
        assert_eq!(decide(&f, "older", 101), RefreshDecision::Reuse);
        assert_eq!(decide(&f, "cur", 1000), RefreshDecision::Expired);
        assert_eq!(decide(&f, "prev", 1000), RefreshDecision::Reuse);
    }
}
