//! The configuration's tests: every documented line, default and refusal, through
//! [`Config::parse`] as `check` and `serve` call it.

use super::*;

fn config(oauth_as: serde_json::Value) -> Result<Config, ConfigErrors> {
    let doc =
        serde_json::json!({"mcpServers": {}, "serverAuth": {"bearer": {}, "oauthAs": oauth_as}});
    Config::parse(&doc.to_string(), |name| {
        (name == "JWT").then(|| "0123456789abcdefghijklmnopqrstuvwxyz".to_string())
    })
}

fn minimal() -> serde_json::Value {
    serde_json::json!({
        "issuerUrl": "https://mcp.example.com",
        "jwtSecret": "${JWT}",
        "trustedSourceCidrs": ["10.0.0.0/8"],
        "redirectUriAllowlist": ["http://localhost:*"]
    })
}

#[test]
fn defaults_are_applied() {
    let c = config(minimal()).unwrap();
    assert_eq!(c.access_token_ttl, 3600);
    assert_eq!(c.refresh_token_ttl, 2_592_000);
    assert_eq!(c.code_ttl, 60);
    assert_eq!(c.resource, "https://mcp.example.com/mcp");
    assert_eq!(c.user_header, "x-forwarded-user");
    assert_eq!(c.consent, ConsentMode::Dynamic);
    assert_eq!(c.jwt_secret.expose().len(), 36);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn short_secret_and_empty_cidrs_give_the_documented_lines() {
    let mut raw = minimal();
    raw["jwtSecret"] = "short".into();
    raw["trustedSourceCidrs"] = serde_json::json!([]);
    let errors = config(raw).unwrap_err().0;
    assert!(
        errors.contains(&"oauthAs.jwtSecret must be at least 32 bytes".to_string()),
        "{errors:?}"
    );
    assert!(
        errors.contains(&"oauthAs.trustedSourceCidrs must list at least one CIDR".to_string()),
        "{errors:?}"
    );
}

#[test]
fn unknown_keys_inside_oauth_as_are_errors() {
    let mut raw = minimal();
    raw["issuerURL"] = "x".into();
    let errors = config(raw).unwrap_err().0;
    assert!(
        errors[0].contains("unknown field `issuerURL`"),
        "{errors:?}"
    );
}

#[test]
fn issuer_must_be_canonical_without_trailing_slash() {
    for bad in [
        "https://mcp.example.com/",
        "ftp://x.example",
        "http://mcp.example.com",
        "HTTPS://MCP.example.com",
    ] {
        let mut raw = minimal();
        raw["issuerUrl"] = bad.into();
        assert!(config(raw).is_err(), "{bad}");
    }
    let mut raw = minimal();
    raw["issuerUrl"] = "http://127.0.0.1:8080".into();
    assert_eq!(config(raw).unwrap().warnings.len(), 1);
}

#[test]
fn an_empty_redirect_allowlist_boots_with_a_warning() {
    let mut raw = minimal();
    raw["redirectUriAllowlist"] = serde_json::json!([]);
    let warnings = config(raw).unwrap().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("redirectUriAllowlist is empty")),
        "{warnings:?}"
    );
}

#[test]
fn unset_env_secret_is_named() {
    let mut raw = minimal();
    raw["jwtSecret"] = "${NOPE}".into();
    let errors = config(raw).unwrap_err().0;
    assert_eq!(
        errors,
        vec!["oauthAs.jwtSecret refers to ${NOPE}, which is not set".to_string()]
    );
}

#[test]
fn abuse_limits_have_safe_defaults_and_can_be_disabled() {
    let c = config(minimal()).unwrap();
    assert_eq!(c.rate_limits, RateLimits::default());
    assert_eq!(c.rate_limits.register_per_minute, 20);
    assert_eq!(c.rate_limits.register_global_per_minute, 200);
    assert_eq!(c.rate_limits.token_per_minute, 600);
    assert_eq!(c.max_dynamic_clients, 10_000);
    assert_eq!(c.unused_client_ttl, 86_400);
    assert_eq!(c.rate_limits.authorize_per_minute, 60);
    assert_eq!(c.max_pending_codes_per_user, 32);
    assert_eq!(c.max_pending_codes, 100_000);

    let mut raw = minimal();
    raw["rateLimits"] =
        serde_json::json!({"registerPerMinute": 0, "tokenPerMinute": 5, "authorizePerMinute": 0});
    raw["maxDynamicClients"] = 0.into();
    raw["unusedClientTtlSeconds"] = 0.into();
    raw["maxPendingCodesPerUser"] = 4.into();
    raw["maxPendingCodes"] = 0.into();
    let c = config(raw).unwrap();
    assert_eq!(c.rate_limits.authorize_per_minute, 0);
    assert_eq!((c.max_pending_codes_per_user, c.max_pending_codes), (4, 0));
    assert_eq!(c.rate_limits.register_per_minute, 0);
    assert_eq!(c.rate_limits.register_global_per_minute, 200);
    assert_eq!(c.rate_limits.token_per_minute, 5);
    assert_eq!((c.max_dynamic_clients, c.unused_client_ttl), (0, 0));
}

#[test]
fn abuse_limit_mistakes_are_named() {
    let mut raw = minimal();
    raw["rateLimits"] = serde_json::json!({"registerPerHour": 5});
    let errors = config(raw).unwrap_err().0;
    assert!(errors[0].contains("registerPerHour"), "{errors:?}");
    for bad in [
        serde_json::json!({"tokenPerMinute": -1}),
        serde_json::json!({"tokenPerMinute": "600"}),
        serde_json::json!({"authorizePerMinute": -1}),
    ] {
        let mut raw = minimal();
        raw["rateLimits"] = bad.clone();
        assert!(config(raw).is_err(), "{bad}");
    }
    for (key, bad) in [
        ("maxPendingCodesPerUser", serde_json::json!(-1)),
        ("maxPendingCodes", serde_json::json!("many")),
    ] {
        let mut raw = minimal();
        raw[key] = bad.clone();
        assert!(config(raw).is_err(), "{key}: {bad}");
    }
    let mut raw = minimal();
    raw["unusedClientTtlSeconds"] = 60.into();
    let errors = config(raw).unwrap_err().0;
    assert!(
        errors[0].starts_with("oauthAs.unusedClientTtlSeconds"),
        "{errors:?}"
    );
}

#[test]
fn max_connections_defaults_to_4096_and_must_be_positive() {
    assert_eq!(config(minimal()).unwrap().max_connections, 4096);
    let mut raw = minimal();
    raw["maxConnections"] = 64.into();
    assert_eq!(config(raw).unwrap().max_connections, 64);
    let mut raw = minimal();
    raw["maxConnections"] = 0.into();
    let errors = config(raw).unwrap_err().0;
    assert_eq!(
        errors,
        vec!["oauthAs.maxConnections must be greater than 0".to_string()]
    );
    let mut raw = minimal();
    raw["maxConnections"] = (-1).into();
    assert!(config(raw).is_err());
}

#[test]
fn signing_defaults_to_hs256_and_reads_key_files_beside_the_config() {
    let c = config(minimal()).unwrap();
    assert_eq!(c.signing.algorithm, crate::signing::SigningAlgorithm::HS256);
    assert!(c.signing.public_keys().is_empty());
    assert_eq!(
        c.signer().key_id(),
        crate::jwt::key_id(c.jwt_secret.expose())
    );

    let dir = tempfile::tempdir().unwrap();
    let key =
        crate::signing::PrivateKey::generate(crate::signing::SigningAlgorithm::ES256).unwrap();
    std::fs::write(
        dir.path().join("signing.pem"),
        key.to_pem().unwrap().as_bytes(),
    )
    .unwrap();
    let mut raw = minimal();
    raw["jwtSecret"] = "e".repeat(40).into();
    raw["signing"] = serde_json::json!({"algorithm": "ES256", "privateKeyFile": "signing.pem"});
    let path = dir.path().join("servers.json");
    let doc = serde_json::json!({"serverAuth": {"oauthAs": raw}});
    std::fs::write(&path, doc.to_string()).unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.signer().key_id(), key.public_key().thumbprint());
    assert_eq!(c.verifier().key_ids(), [key.public_key().thumbprint()]);
    // jwtSecret stays required: it keys refresh tokens and consent tickets.
    let mut raw = raw.clone();
    raw.as_object_mut().unwrap().remove("jwtSecret");
    std::fs::write(
        &path,
        serde_json::json!({"serverAuth": {"oauthAs": raw}}).to_string(),
    )
    .unwrap();
    let errors = Config::load(&path).unwrap_err().0;
    assert!(
        errors[0].starts_with("oauthAs.jwtSecret is required"),
        "{errors:?}"
    );
    let mut raw = minimal();
    raw["signing"] = serde_json::json!({"algorithm": "EdDSA", "privateKey": "x"});
    let errors = config(raw).unwrap_err().0;
    assert!(
        errors[0].contains("unknown field `privateKey`"),
        "{errors:?}"
    );
}

#[test]
fn client_metadata_documents_have_the_documented_defaults() {
    let c = config(minimal()).unwrap().client_metadata_documents;
    assert_eq!(c, ClientMetadataDocuments::default());
    assert!(c.enabled);
    assert!(c.allowed_hosts.is_empty());
    assert_eq!(c.max_bytes, 5120);
    assert_eq!(c.timeout_ms, 3000);
    assert_eq!(c.max_cache_seconds, 86_400);
    assert_eq!(c.stale_seconds, 86_400);
    assert!(!c.allow_private_addresses);
    assert_eq!(c.ca_pem, None);
    assert!(config(minimal()).unwrap().warnings.is_empty());
}

#[test]
fn client_metadata_documents_are_configurable_and_test_options_warn() {
    let mut raw = minimal();
    raw["clientMetadataDocuments"] = serde_json::json!({
        "enabled": false, "allowedHosts": ["claude.ai", "*.openai.com"], "maxBytes": 2048,
        "timeoutMs": 500, "maxCacheSeconds": 60, "staleSeconds": 0, "allowPrivateAddresses": true
    });
    let c = config(raw).unwrap();
    let d = &c.client_metadata_documents;
    assert!(!d.enabled);
    assert_eq!(
        d.allowed_hosts,
        vec![
            HostPattern::Exact("claude.ai".into()),
            HostPattern::Subdomains(".openai.com".into())
        ]
    );
    assert_eq!((d.max_bytes, d.timeout_ms), (2048, 500));
    assert_eq!((d.max_cache_seconds, d.stale_seconds), (60, 0));
    assert!(d.allow_private_addresses);
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("allowPrivateAddresses")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn client_metadata_document_mistakes_are_named() {
    let missing_ca = std::env::temp_dir().join("mcp-authd-no-such-ca.pem");
    for (value, expected) in [
        (
            serde_json::json!({"allowedHosts": ["https://claude.ai"]}),
            "allowedHosts",
        ),
        (
            serde_json::json!({"allowedHosts": ["*.com"]}),
            "allowedHosts",
        ),
        (serde_json::json!({"maxBytes": 0}), "maxBytes"),
        (serde_json::json!({"timeoutMs": 600000}), "timeoutMs"),
        (serde_json::json!({"caFile": missing_ca}), "caFile"),
        (serde_json::json!({"maxbytes": 1}), "maxbytes"),
    ] {
        let mut raw = minimal();
        raw["clientMetadataDocuments"] = value.clone();
        let errors = config(raw).unwrap_err().0;
        assert!(errors[0].contains(expected), "{value}: {errors:?}");
    }
}

#[test]
fn additional_issuers_default_their_resource_and_come_after_the_primary() {
    let c = config(minimal()).unwrap();
    assert_eq!(c.issuers().count(), 1);
    assert_eq!(c.primary_issuer().url, "https://mcp.example.com");
    assert_eq!(c.primary_issuer().resource, "https://mcp.example.com/mcp");
    let mut raw = minimal();
    raw["additionalIssuers"] = serde_json::json!([
        {"issuerUrl": "https://mcp.internal.example"},
        {"issuerUrl": "https://sso.example.org/auth", "resourceUrl": "https://tools.example.org/mcp"},
        {"issuerUrl": "https://mcp.example.com:8443"}
    ]);
    let c = config(raw).unwrap();
    let issuers: Vec<(&str, &str, &str)> = c
        .issuers()
        .map(|i| (i.url.as_str(), i.path.as_str(), i.resource.as_str()))
        .collect();
    assert_eq!(
        issuers,
        [
            ("https://mcp.example.com", "", "https://mcp.example.com/mcp"),
            (
                "https://mcp.internal.example",
                "",
                "https://mcp.internal.example/mcp"
            ),
            (
                "https://sso.example.org/auth",
                "/auth",
                "https://tools.example.org/mcp"
            ),
            (
                "https://mcp.example.com:8443",
                "",
                "https://mcp.example.com:8443/mcp"
            ),
        ]
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // The verifier takes every issuer's tokens, each for its own resource.
    let verifier = c.verifier();
    let accepted: Vec<(&str, &str)> = verifier.accepted_issuers().collect();
    assert_eq!(accepted.len(), 4);
    assert_eq!(
        accepted[2],
        (
            "https://sso.example.org/auth",
            "https://tools.example.org/mcp"
        )
    );
}

#[test]
fn additional_issuers_are_validated_like_the_primary_and_must_be_distinct() {
    for (entries, expected) in [
        (
            serde_json::json!([{"issuerUrl": "https://mcp.internal.example/"}]),
            vec![
                "oauthAs.additionalIssuers[0].issuerUrl must not end with a slash (clients compare it byte for byte)",
            ],
        ),
        (
            serde_json::json!([{"issuerUrl": "http://mcp.internal.example"}]),
            vec![
                "oauthAs.additionalIssuers[0].issuerUrl must use https (http is only allowed for localhost)",
            ],
        ),
        (
            serde_json::json!([{"issuerUrl": "not a url"}]),
            vec!["oauthAs.additionalIssuers[0].issuerUrl: \"not a url\" is not an absolute URL"],
        ),
        (
            serde_json::json!([{"issuerUrl": "https://a.example", "resourceUrl": "https://A.example/mcp"}]),
            vec![
                "oauthAs.additionalIssuers[0].resourceUrl must be written in canonical form: https://a.example/mcp",
            ],
        ),
        (
            serde_json::json!([{"resourceUrl": "https://a.example/mcp"}]),
            vec![
                "oauthAs.additionalIssuers[0].issuerUrl is required (the URL clients reach on that host, e.g. https://mcp.internal.example)",
            ],
        ),
        (
            serde_json::json!([{"issuerUrl": "https://mcp.example.com"}]),
            vec![
                "oauthAs.additionalIssuers[0].issuerUrl: https://mcp.example.com is already issuerUrl; every issuer must be distinct",
            ],
        ),
        (
            serde_json::json!([{"issuerUrl": "https://a.example"}, {"issuerUrl": "https://a.example"}]),
            vec![
                "oauthAs.additionalIssuers[1].issuerUrl: https://a.example is already additionalIssuers[0].issuerUrl; every issuer must be distinct",
            ],
        ),
        (
            serde_json::json!([{"issuerUrl": "https://mcp.example.com:443/other"}]),
            vec![
                "oauthAs.additionalIssuers[0].issuerUrl must be written in canonical form: https://mcp.example.com/other",
            ],
        ),
        (
            serde_json::json!([{"issuerUrl": "https://mcp.example.com/other"}]),
            vec![
                "oauthAs.additionalIssuers[0].issuerUrl: its host mcp.example.com:443 is already that of issuerUrl; requests choose their issuer by host, so each issuer needs a host (or port) of its own",
            ],
        ),
        (
            serde_json::json!([{"issuerUrl": "https://a.example", "issuer": "x"}]),
            vec!["oauthAs: unknown field `issuer`, expected `issuerUrl` or `resourceUrl`"],
        ),
        (
            serde_json::json!({"issuerUrl": "https://a.example"}),
            vec!["oauthAs.additionalIssuers: expected a list"],
        ),
        (
            serde_json::json!([{"issuerUrl": 5}]),
            vec!["oauthAs.additionalIssuers[0].issuerUrl: expected a string"],
        ),
    ] {
        let mut raw = minimal();
        raw["additionalIssuers"] = entries.clone();
        let errors = config(raw).unwrap_err().0;
        assert_eq!(errors, expected, "{entries}");
    }
    // Every bad entry is named, not only the first.
    let mut raw = minimal();
    raw["additionalIssuers"] = serde_json::json!([
        {"issuerUrl": "ftp://a.example"}, {"issuerUrl": "https://b.example"}, {"issuerUrl": "https://b.example"}
    ]);
    assert_eq!(config(raw).unwrap_err().0.len(), 2);
    // http on loopback is allowed with the same warning as the primary's.
    let mut raw = minimal();
    raw["additionalIssuers"] = serde_json::json!([{"issuerUrl": "http://localhost:8080"}]);
    let warnings = config(raw).unwrap().warnings;
    assert_eq!(
        warnings,
        ["oauthAs.additionalIssuers[0].issuerUrl uses http on loopback: fine for development only"]
    );
}

#[test]
fn store_is_the_file_store_with_an_optional_path() {
    assert_eq!(config(minimal()).unwrap().store, StoreSettings::default());
    let mut raw = minimal();
    raw["store"] = serde_json::json!({"type": "file", "path": "state/auth.json"});
    assert_eq!(
        config(raw).unwrap().store.path,
        Some(Path::new(".").join("state/auth.json"))
    );
    let mut raw = minimal();
    raw["store"] = serde_json::json!({"type": "postgres", "url": "${DB}"});
    assert_eq!(
        config(raw).unwrap_err().0,
        [
            "oauthAs.store.type \"postgres\" is not available in this build; use \"file\" (the default)"
        ]
    );
    let mut raw = minimal();
    raw["store"] = serde_json::json!({"type": "sqlite", "poolSize": 4, "path": ""});
    assert_eq!(
        config(raw).unwrap_err().0,
        [
            "oauthAs.store.type: \"sqlite\" is not a store type (use \"file\")",
            "oauthAs.store.poolSize applies to the postgres store only",
            "oauthAs.store.path must not be empty",
        ]
    );
}

#[test]
fn the_issuer_of_a_request_follows_its_host_and_trusted_forwarded_host() {
    use ::http::{HeaderMap, HeaderValue};
    let mut raw = minimal();
    raw["additionalIssuers"] = serde_json::json!([{"issuerUrl": "https://mcp.internal.example"}]);
    let c = config(raw).unwrap();
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    };
    let proxy = Some("10.1.2.3".parse().unwrap());
    let stranger = Some("192.0.2.7".parse().unwrap());
    let pick = |peer, map: &HeaderMap, uri: Option<&str>| c.issuer_for(peer, map, uri).url.clone();
    let internal = "https://mcp.internal.example";
    let public = "https://mcp.example.com";
    assert_eq!(
        pick(
            stranger,
            &headers(&[("host", "MCP.internal.example")]),
            None
        ),
        internal
    );
    assert_eq!(
        pick(
            stranger,
            &headers(&[
                ("host", "mcp.internal.example"),
                ("x-forwarded-host", "mcp.example.com")
            ]),
            None
        ),
        internal
    );
    assert_eq!(
        pick(
            proxy,
            &headers(&[
                ("host", "127.0.0.1:8080"),
                ("x-forwarded-host", "mcp.internal.example")
            ]),
            None
        ),
        internal
    );
    assert_eq!(
        pick(
            proxy,
            &headers(&[
                ("host", "mcp.internal.example"),
                ("x-forwarded-host", "mcp.example.com")
            ]),
            None
        ),
        public
    );
    // A proxy that appends: its own value is the last one.
    assert_eq!(
        pick(
            proxy,
            &headers(&[("x-forwarded-host", "mcp.example.com, mcp.internal.example")]),
            None
        ),
        internal
    );
    assert_eq!(
        pick(
            proxy,
            &headers(&[
                ("x-forwarded-host", "mcp.internal.example"),
                ("x-forwarded-host", "mcp.example.com")
            ]),
            None
        ),
        public
    );
    assert_eq!(
        pick(
            None,
            &headers(&[("x-forwarded-host", "mcp.internal.example")]),
            None
        ),
        public
    );
    assert_eq!(
        pick(proxy, &headers(&[("host", "unknown.example")]), None),
        public
    );
    assert_eq!(pick(proxy, &HeaderMap::new(), None), public);
    // HTTP/2: the authority is in the request target.
    assert_eq!(
        pick(
            stranger,
            &HeaderMap::new(),
            Some("mcp.internal.example:443")
        ),
        internal
    );
}

#[test]
fn peek_store_reads_the_path_without_the_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("servers.json");
    std::fs::write(
        &file,
        r#"{"serverAuth": {"oauthAs": {"jwtSecret": "${UNSET}", "store": {"path": "s/a.json"}}}}"#,
    )
    .unwrap();
    assert_eq!(
        Config::peek_store(&file).path,
        Some(dir.path().join("s/a.json"))
    );
    std::fs::write(&file, "not json").unwrap();
    assert_eq!(Config::peek_store(&file), StoreSettings::default());
}

#[test]
fn issuer_path_is_kept() {
    let mut raw = minimal();
    raw["issuerUrl"] = "https://sso.example.com/mcp-auth".into();
    let c = config(raw).unwrap();
    assert_eq!(c.issuer_path, "/mcp-auth");
    assert_eq!(
        c.endpoint("/oauth/token"),
        "https://sso.example.com/mcp-auth/oauth/token"
    );
}

#[test]
fn wrongly_typed_values_name_their_field_every_one() {
    let mut raw = minimal();
    raw["accessTokenTtlSeconds"] = "3600".into();
    raw["scopesSupported"] = "read".into();
    raw["rateLimits"] = serde_json::json!({"tokenPerMinute": "600"});
    raw["maxDynamicClients"] = (-1).into();
    raw["consent"] = true.into();
    let mut errors = config(raw).unwrap_err().0;
    errors.sort();
    assert_eq!(
        errors,
        vec![
            "oauthAs.accessTokenTtlSeconds: expected a number",
            "oauthAs.consent: expected a string",
            "oauthAs.maxDynamicClients: expected a whole number from 0 to 18446744073709551615",
            "oauthAs.rateLimits.tokenPerMinute: expected a number",
            "oauthAs.scopesSupported: expected a list",
        ]
    );
    let doc = serde_json::json!({"serverAuth": {"oauthAs": []}});
    let errors = Config::parse(&doc.to_string(), |_| None).unwrap_err().0;
    assert_eq!(
        errors,
        vec!["serverAuth.oauthAs: expected an object, found a list"]
    );
}

#[test]
fn match_every_host_patterns_are_refused_and_dead_ones_warned() {
    let mut raw = minimal();
    raw["redirectUriAllowlist"] = serde_json::json!(["https://*", "http://localhost:*"]);
    let errors = config(raw).unwrap_err().0;
    assert!(
        errors[0].starts_with("oauthAs.redirectUriAllowlist: \"https://*\" would allow any host"),
        "{errors:?}"
    );
    let mut raw = minimal();
    raw["redirectUriAllowlist"] = serde_json::json!(["http://localhost"]);
    let warnings = config(raw).unwrap().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w
                .starts_with("oauthAs.redirectUriAllowlist: \"http://localhost\" can never match")),
        "{warnings:?}"
    );
}

#[test]
fn secrets_that_look_like_mistakes_are_warned_about() {
    let warn_for = |secret: &str| {
        let mut raw = minimal();
        raw["jwtSecret"] = secret.into();
        config(raw).unwrap().warnings
    };
    let unexpanded = warn_for("$MCP_AUTH_JWT_SECRET_FOR_THE_PRODUCTION_HOST");
    assert!(
        unexpanded.iter().any(|w| w.contains("unexpanded variable")
            && w.contains("${MCP_AUTH_JWT_SECRET_FOR_THE_PRODUCTION_HOST}")),
        "{unexpanded:?}"
    );
    let repetitive = warn_for(&"ab".repeat(20));
    assert!(
        repetitive
            .iter()
            .any(|w| w.contains("only 2 distinct bytes")),
        "{repetitive:?}"
    );
    assert!(warn_for("kX8vQ2mN9pL4rT7wY1zB5cF3hJ6dG0sA").is_empty());
}

#[test]
fn loopback_in_trusted_sources_is_warned_about() {
    for cidrs in [
        serde_json::json!(["127.0.0.1/32"]),
        serde_json::json!(["::1/128"]),
        serde_json::json!(["10.0.0.0/8", "127.0.0.0/8"]),
    ] {
        let mut raw = minimal();
        raw["trustedSourceCidrs"] = cidrs.clone();
        let warnings = config(raw).unwrap().warnings;
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("includes loopback") && w.contains("assert any user")),
            "{cidrs}: {warnings:?}"
        );
    }
}

#[test]
fn host_patterns() {
    let exact = HostPattern::parse("Claude.AI").unwrap();
    assert!(exact.matches("claude.ai"));
    assert!(!exact.matches("evil-claude.ai"));
    let wildcard = HostPattern::parse("*.example.com").unwrap();
    assert!(wildcard.matches("a.example.com"));
    assert!(wildcard.matches("a.b.example.com"));
    assert!(!wildcard.matches("example.com"));
    assert!(!wildcard.matches("badexample.com"));
    for bad in [
        "",
        "*",
        "*.com",
        "https://claude.ai",
        "claude.ai:443",
        "claude.ai/x",
        "a..b",
        "*.*.example.com",
    ] {
        assert!(HostPattern::parse(bad).is_err(), "{bad}");
    }
}
