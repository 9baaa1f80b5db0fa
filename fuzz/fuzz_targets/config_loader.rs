//! `Config::parse`, the boot-time loader of `servers.json`: arbitrary bytes give `Ok` or a
//! list of errors, never a panic, and whatever is accepted keeps the safety rules (a secret of
//! at least 32 bytes, no wildcard trusted source).
//!
//! Input: the text of a `servers.json`. `${NAME}` references resolve to a fixed long secret
//! when NAME starts with `LONG` or is `MCP_AUTH_JWT_SECRET`, to a short one when it starts
//! with `SHORT`, else to nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_authd::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| {
        if name.starts_with("LONG") || name == "MCP_AUTH_JWT_SECRET" {
            Some("0123456789abcdef0123456789abcdef0123".to_string())
        } else if name.starts_with("SHORT") {
            Some("short".to_string())
        } else {
            None
        }
    };
    match Config::parse(text, env) {
        Ok(config) => {
            assert!(
                config.jwt_secret.expose().len() >= 32,
                "short secret accepted"
            );
            let shown = config.trusted_sources_display();
            assert!(!shown.split(", ").any(|n| n.ends_with("/0")), "{shown}");
            assert!(!config.issuer.ends_with('/'), "{}", config.issuer);
            // (An empty redirectUriAllowlist is accepted: only pre-provisioned clients then.)
        }
        Err(errors) => assert!(!errors.0.is_empty(), "an error with no message"),
    }
});
