//! `servers.json` as the server reads it (`Config::parse`, in process): what is refused at
//! boot and how entries are normalised (catalogue section G, wildcard trusted sources), and,
//! as properties over generated documents, that the loader never panics and always refuses
//! a short secret or a wildcard source. What the binary prints for the same refusals is in
//! `cli.rs`.

use mcp_authd::config::Config;
use serde_json::{Value, json};

use crate::helpers::*;

/// Row 67: wildcards are refused at boot, including one written as an IPv4-mapped network;
/// host bits and mapped forms are normalised with a warning.
#[tokio::test]
async fn wildcard_trusted_sources_are_refused_at_boot() {
    let parse = |cidrs: Value| {
        let mut section = oauth_as("https://mcp.example.com");
        section["trustedSourceCidrs"] = cidrs;
        Config::parse(
            &json!({"serverAuth": {"oauthAs": section}}).to_string(),
            |_| None,
        )
    };
    for wildcard in [
        json!(["0.0.0.0/0"]),
        json!(["::/0"]),
        json!(["::ffff:0.0.0.0/96"]),
        json!(["127.0.0.1/32", "0.0.0.0/0"]),
        json!([]),
        json!(["*"]),
        json!(["10.0.0.0/33"]),
        json!(["localhost"]),
    ] {
        let errors = parse(wildcard.clone()).unwrap_err().0;
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("oauthAs.trustedSourceCidrs")),
            "{wildcard}: {errors:?}"
        );
    }
    for (entry, shown) in [
        ("10.0.0.1/8", "10.0.0.0/8"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ] {
        let config = parse(json!([entry])).unwrap();
        assert_eq!(config.trusted_sources_display(), shown);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    }
}
