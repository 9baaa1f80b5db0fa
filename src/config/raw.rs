//! `serverAuth.oauthAs` exactly as written: the serde types, and the first pass that names the
//! field of every wrongly typed value and every unknown key. Nothing here judges a value;
//! that is [`super::validate`].

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigErrors, ConsentMode};

/// The `serverAuth.oauthAs` object exactly as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawOauthAs {
    pub(super) issuer_url: Option<String>,
    pub(super) jwt_secret: Option<String>,
    pub(super) previous_jwt_secrets: Option<Vec<String>>,
    pub(super) trusted_user_header: Option<String>,
    pub(super) trusted_groups_header: Option<String>,
    pub(super) trusted_source_cidrs: Option<Vec<String>>,
    pub(super) access_token_ttl_seconds: Option<u64>,
    pub(super) refresh_token_ttl_seconds: Option<u64>,
    pub(super) authorization_code_ttl_seconds: Option<u64>,
    pub(super) scopes_supported: Option<Vec<String>>,
    pub(super) redirect_uri_allowlist: Option<Vec<String>>,
    pub(super) injected_roles: Option<Vec<String>>,
    pub(super) resource_url: Option<String>,
    pub(super) consent: Option<ConsentMode>,
    pub(super) rate_limits: Option<RawRateLimits>,
    pub(super) max_dynamic_clients: Option<usize>,
    pub(super) unused_client_ttl_seconds: Option<u64>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_pending_codes_per_user: Option<usize>,
    pub(super) max_pending_codes: Option<usize>,
    pub(super) store: Option<RawStore>,
    pub(super) signing: Option<crate::signing::RawSigning>,
    pub(super) client_metadata_documents: Option<RawClientMetadataDocuments>,
    pub(super) additional_issuers: Option<Vec<RawIssuer>>,
}

/// An entry of `oauthAs.additionalIssuers` exactly as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawIssuer {
    pub(super) issuer_url: Option<String>,
    pub(super) resource_url: Option<String>,
}

/// `oauthAs.clientMetadataDocuments` exactly as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawClientMetadataDocuments {
    pub(super) enabled: Option<bool>,
    pub(super) allowed_hosts: Option<Vec<String>>,
    pub(super) max_bytes: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) max_cache_seconds: Option<u64>,
    pub(super) stale_seconds: Option<u64>,
    pub(super) allow_private_addresses: Option<bool>,
    pub(super) ca_file: Option<PathBuf>,
}

/// `oauthAs.store` exactly as written. The PostgreSQL members are read so that a
/// configuration written for that backend gets one clear line rather than "unknown field".
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawStore {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) path: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) pool_size: Option<u64>,
    pub(super) schema: Option<String>,
}

/// `oauthAs.rateLimits` exactly as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawRateLimits {
    pub(super) register_per_minute: Option<u32>,
    pub(super) register_global_per_minute: Option<u32>,
    pub(super) token_per_minute: Option<u32>,
    pub(super) authorize_per_minute: Option<u32>,
}

/// Deserialises `serverAuth.oauthAs`, naming the field of every wrongly typed value and
/// every unknown key, not only the first: each key is read on its own first.
pub(super) fn parse_section(section: &serde_json::Value) -> Result<RawOauthAs, ConfigErrors> {
    let Some(fields) = section.as_object() else {
        return Err(ConfigErrors(vec![format!(
            "serverAuth.oauthAs: expected an object, found {}",
            json_kind(section)
        )]));
    };
    let mut errors = Vec::new();
    for (key, value) in fields {
        let alone =
            serde_json::Value::Object(std::iter::once((key.clone(), value.clone())).collect());
        if let Err(e) = serde_path_to_error::deserialize::<_, RawOauthAs>(&alone) {
            errors.push(describe_field_error(key, &e));
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    serde_json::from_value(section.clone()).map_err(|e| ConfigErrors(vec![format!("oauthAs: {e}")]))
}

/// One line for a value serde refused: `oauthAs.<path>: expected a number`.
fn describe_field_error(key: &str, e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let message = e.inner().to_string();
    if message.starts_with("unknown field") {
        return format!("oauthAs: {message}");
    }
    let path = match e.path().to_string() {
        p if p.is_empty() || p == "." => key.to_string(),
        p => p,
    };
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, what)| what)
        .unwrap_or("");
    let integer_max = match expected {
        "u8" => Some(u64::from(u8::MAX)),
        "u16" => Some(u64::from(u16::MAX)),
        "u32" => Some(u64::from(u32::MAX)),
        "u64" | "usize" => Some(u64::MAX),
        _ => None,
    };
    let wanted = if let Some(max) = integer_max {
        if message.starts_with("invalid value") {
            format!("a whole number from 0 to {max}")
        } else {
            "a number".to_string()
        }
    } else if expected == "a sequence" {
        "a list".to_string()
    } else if matches!(expected, "a string" | "a borrowed string" | "string or map") {
        "a string".to_string()
    } else if expected.starts_with("struct ") || expected == "a map" {
        "an object".to_string()
    } else if expected == "a boolean" {
        "true or false".to_string()
    } else {
        return format!("oauthAs.{path}: {message}");
    };
    format!("oauthAs.{path}: expected {wanted}")
}

/// How a JSON value is called in an error line.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}
