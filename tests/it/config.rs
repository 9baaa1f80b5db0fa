//! `servers.json` as the server reads it (`Config::parse`, in process): what is refused at
//! boot and how entries are normalised (catalogue section G, wildcard trusted sources), and,
//! as properties over generated documents, that the loader never panics and always refuses
//! a short secret or a wildcard source. What the binary prints for the same refusals is in
//! `cli.rs`.

use mcp_authd::config::Config;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::identity_headers::cidr_entry;

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

fn valid_section() -> Value {
    json!({
        "issuerUrl": "https://mcp.example.com",
        "jwtSecret": "0123456789abcdef0123456789abcdef",
        "trustedSourceCidrs": ["10.0.0.0/8"],
        "redirectUriAllowlist": ["https://claude.ai/api/mcp/auth_callback", "http://127.0.0.1:*"]
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
        "\\$\\{[A-Z_]{0,8}\\}".prop_map(Value::from),
        "(https?|ftp)://[a-z0-9.:\\[\\]*/]{0,30}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KEYS: [&str; 17] = [
    "issuerUrl",
    "jwtSecret",
    "previousJwtSecrets",
    "trustedUserHeader",
    "trustedGroupsHeader",
    "trustedSourceCidrs",
    "accessTokenTtlSeconds",
    "refreshTokenTtlSeconds",
    "authorizationCodeTtlSeconds",
    "scopesSupported",
    "redirectUriAllowlist",
    "injectedRoles",
    "resourceUrl",
    "consent",
    "rateLimits",
    "maxDynamicClients",
    "unusedClientTtlSeconds",
];

fn env(name: &str) -> Option<String> {
    match name {
        "LONG" => Some("0123456789abcdef0123456789abcdef".into()),
        "SHORT" => Some("short".into()),
        _ => None,
    }
}

proptest! {
    #![proptest_config(proptest_cases(512))]

    #[test]
    fn the_config_loader_never_panics(
        changes in prop::collection::vec((prop::sample::select(KEYS.to_vec()), json_value()), 0..4),
        text in ".{0,200}",
    ) {
        let mut section = valid_section();
        for (key, value) in changes {
            section[key] = value;
        }
        let doc = json!({"serverAuth": {"oauthAs": section}}).to_string();
        if let Ok(config) = Config::parse(&doc, env) {
            prop_assert!(config.jwt_secret.expose().len() >= 32);
        }
        let _ = Config::parse(&text, env);
    }

    #[test]
    fn a_short_secret_or_a_wildcard_source_is_always_refused(
        short in "[ -~]{0,31}",
        wildcard in prop::sample::select(vec![
            "0.0.0.0/0", "::/0", "::ffff:0.0.0.0/96", "::ffff:0:0/96", "0.0.0.0/0 ",
        ]),
        others in prop::collection::vec(cidr_entry(), 0..3),
    ) {
        let mut section = valid_section();
        section["jwtSecret"] = Value::from(short.clone());
        let doc = json!({"serverAuth": {"oauthAs": section}}).to_string();
        prop_assert!(Config::parse(&doc, env).is_err(), "secret {:?} accepted", short);

        let mut section = valid_section();
        let mut sources = others;
        sources.push(wildcard.to_string());
        section["trustedSourceCidrs"] = json!(sources);
        let doc = json!({"serverAuth": {"oauthAs": section}}).to_string();
        prop_assert!(Config::parse(&doc, env).is_err(), "{:?} accepted", sources);
    }
}
