//! PKCE (RFC 7636), S256 only.
//!
//! `plain` is refused (OAuth 2.1 §4.1.1, RFC 9700 §2.1.1): a missing method means `plain`
//! (RFC 7636 §4.3), so it is refused too.

use crate::secrets::{constant_time_eq, sha256_b64};

/// Checks the `code_challenge` and `code_challenge_method` of an authorization request.
pub fn validate_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<(), &'static str> {
    let challenge = challenge.ok_or("code_challenge is required (PKCE with S256)")?;
    match method {
        Some("S256") => {}
        Some("plain") => return Err("code_challenge_method plain is not allowed; use S256"),
        None => return Err("code_challenge_method is required and must be S256"),
        Some(_) => return Err("code_challenge_method must be S256"),
    }
    // base64url(SHA-256(..)) without padding is exactly 43 characters.
    if challenge.len() != 43 || !challenge.bytes().all(is_base64url) {
        return Err("code_challenge must be 43 base64url characters (S256)");
    }
    Ok(())
}

/// Whether `verifier` has the RFC 7636 §4.1 form: 43–128 unreserved characters.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `verifier` answers `challenge` under S256, compared in constant time.
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    is_valid_verifier(verifier)
        && constant_time_eq(
            sha256_b64(verifier.as_bytes()).as_bytes(),
            challenge.as_bytes(),
        )
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector_round_trips() {
        assert!(verify_s256(VERIFIER, CHALLENGE));
        assert!(validate_challenge(Some(CHALLENGE), Some("S256")).is_ok());
    }

    #[test]
    fn any_other_verifier_fails() {
        let mut other = VERIFIER.to_string();
        other.replace_range(0..1, "e");
        assert!(!verify_s256(&other, CHALLENGE));
        assert!(!verify_s256("", CHALLENGE));
        assert!(!verify_s256(&"a".repeat(129), CHALLENGE));
    }

    #[test]
    fn plain_missing_or_malformed_challenges_are_refused() {
        assert!(validate_challenge(Some(CHALLENGE), Some("plain")).is_err());
        assert!(validate_challenge(Some(CHALLENGE), None).is_err());
        assert!(validate_challenge(None, Some("S256")).is_err());
        assert!(validate_challenge(Some(&format!("{CHALLENGE}=")), Some("S256")).is_err());
        assert!(
            validate_challenge(
                Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"),
                Some("S256")
            )
            .is_err()
        );
        assert!(validate_challenge(Some("short"), Some("S256")).is_err());
    }

    #[test]
    fn verifier_alphabet_and_length_are_enforced() {
        assert!(is_valid_verifier(&"a".repeat(43)));
        assert!(is_valid_verifier(&"~._-".repeat(32)));
        assert!(!is_valid_verifier(&"a".repeat(42)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(43))));
        assert!(!is_valid_verifier(&format!("{} ", "a".repeat(43))));
    }
}
