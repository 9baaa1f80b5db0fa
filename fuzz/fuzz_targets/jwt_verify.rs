//! The access-token verifier an MCP server calls: arbitrary input never panics and never
//! verifies; a token this crate signed verifies to the same claims (and one too large for the
//! verifier is never signed); and changing any single byte of it makes verification fail.
//!
//! Input: the first byte selects a mode. Mode 0: the rest is a token to verify. Otherwise: the
//! rest is used as a subject, a token is minted for it, and the byte at a position derived
//! from the input is changed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_authd::jwt::{AccessTokenClaims, MintError, mint_access_token};
use mcp_authd::{TokenExpectations, verify_access_token};

const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret-0123";
const ISSUER: &str = "https://as.example.com";
const AUDIENCE: &str = "https://as.example.com/mcp";

fn expectations() -> TokenExpectations {
    TokenExpectations {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        secret: SECRET.to_vec(),
        leeway_seconds: 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let expect = expectations();
    if mode == 0 {
        let token = String::from_utf8_lossy(rest);
        // Without the secret no input can verify (a forgery would be a real finding).
        assert!(verify_access_token(&token, &expect).is_err(), "{token}");
        return;
    }
    let sub = String::from_utf8_lossy(rest).into_owned();
    let claims = AccessTokenClaims {
        iss: ISSUER.into(),
        sub,
        aud: AUDIENCE.into(),
        client_id: "client".into(),
        scope: "mcp".into(),
        groups: vec!["eng".into()],
        roles: vec![],
        iat: 1_800_000_000,
        exp: 4_000_000_000,
        jti: "jti".into(),
        sid: Some("sid".into()),
    };
    // A token the verifier would refuse for its size is never minted; anything else is.
    let token = match mint_access_token(&claims, SECRET) {
        Ok(token) => token,
        Err(MintError::TooLarge(len)) => {
            assert!(len > mcp_authd::jwt::MAX_TOKEN_LEN);
            return;
        }
        Err(e) => panic!("signing failed: {e}"),
    };
    assert!(token.len() <= mcp_authd::jwt::MAX_TOKEN_LEN);
    assert_eq!(verify_access_token(&token, &expect), Ok(claims));
    let mut bytes = token.into_bytes();
    let at = (usize::from(mode) * 7919 + rest.len()) % bytes.len();
    let replacement = rest.first().copied().unwrap_or(b'A');
    if bytes[at] == replacement {
        return;
    }
    bytes[at] = replacement;
    let changed = String::from_utf8_lossy(&bytes);
    assert!(
        verify_access_token(&changed, &expect).is_err(),
        "a token with byte {at} changed still verifies"
    );
});
