//! `serverAuth.oauthAs` as a resource server reads it: the same typed parse as mcp-authd's, then
//! only the fields a resource server uses.

use std::path::Path;

use super::raw::parse_section;
use super::validate::secret_field;
use super::{ConfigErrors, Secret};

/// What an MCP server (the resource side, [`crate::resource`]) takes from
/// `serverAuth.oauthAs`: see [`parse_resource_section`].
pub(crate) struct ResourceSection {
    /// Every (issuer, resource) whose tokens are accepted: `issuerUrl` and `resourceUrl` first,
    /// then `additionalIssuers`; a resource defaults to its issuer + `/mcp`.
    pub(crate) issuers: Vec<(String, String)>,
    /// `scopesSupported`.
    pub(crate) scopes_supported: Vec<String>,
    /// Where the verification keys come from (`signing`).
    pub(crate) keys: crate::signing::ResourceKeys,
    /// Under HS256 only: `jwtSecret` and `previousJwtSecrets`, resolved.
    pub(crate) secrets: Option<(Secret, Vec<Secret>)>,
}

/// `serverAuth.oauthAs` as a resource server reads it. The section goes through the same
/// typed parse as for [`Config`], so a wrongly typed or unknown field is an error here too;
/// then only the fields a resource server uses are checked. The others (`trustedSourceCidrs`,
/// `redirectUriAllowlist`, the private key of an asymmetric `signing`, …) are mcp-authd's to
/// require, and the URLs are taken as written: mcp-authd validates them, and a token names
/// them byte for byte.
pub(crate) fn parse_resource_section(
    section: &serde_json::Value,
    base_dir: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ResourceSection, ConfigErrors> {
    let raw = parse_section(section)?;
    let Some(issuer) = raw.issuer_url else {
        return Err(ConfigErrors(vec![
            "serverAuth.oauthAs.issuerUrl is required".into(),
        ]));
    };
    let mut errors = Vec::new();
    let resource = raw.resource_url.unwrap_or_else(|| format!("{issuer}/mcp"));
    let mut issuers = vec![(issuer, resource)];
    for (i, entry) in raw
        .additional_issuers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match entry.issuer_url {
            Some(url) => {
                let resource = entry.resource_url.unwrap_or_else(|| format!("{url}/mcp"));
                issuers.push((url, resource));
            }
            None => errors.push(format!(
                "serverAuth.oauthAs.additionalIssuers[{i}].issuerUrl is required"
            )),
        }
    }
    let keys = crate::signing::load_resource_keys(raw.signing, base_dir, &mut errors);
    let secrets = match (&keys, raw.jwt_secret.as_deref()) {
        (crate::signing::ResourceKeys::Secret, None) => {
            errors.push("serverAuth.oauthAs.jwtSecret is required".into());
            None
        }
        (crate::signing::ResourceKeys::Secret, Some(value)) => {
            let secret = secret_field("oauthAs.jwtSecret", value, &env, &mut errors);
            let previous = raw
                .previous_jwt_secrets
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, value)| {
                    let field = format!("oauthAs.previousJwtSecrets[{i}]");
                    secret_field(&field, value, &env, &mut errors)
                })
                .collect();
            Some((secret, previous))
        }
        _ => None,
    };
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(ResourceSection {
        issuers,
        scopes_supported: raw.scopes_supported.unwrap_or_default(),
        keys,
        secrets,
    })
}
