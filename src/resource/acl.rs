//! Per-tool access control for MCP servers (`serverAuth.toolAccess`).
//!
//! Rules are evaluated in order; the first rule whose subjects and tools match decides. When
//! at least one rule exists, anything no rule allows is denied. With no rules, every
//! authenticated caller may call every tool. The same evaluator serves OAuth users and static
//! bearer tokens, because both are an [`Identity`] with roles and groups.

use serde::Deserialize;

use super::Identity;

/// What a matching rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The tool may be listed and called.
    Allow,
    /// The tool is hidden and refused.
    Deny,
}

/// One rule: who (any listed role or group; nobody listed means everyone), which tools
/// (patterns where `*` matches any run of characters), and the decision.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolRule {
    /// Roles this rule applies to.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Groups this rule applies to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Tool name patterns.
    pub tools: Vec<String>,
    /// Allow or deny.
    pub policy: Policy,
}

impl ToolRule {
    fn applies_to(&self, identity: &Identity) -> bool {
        let is_everyone = self.roles.is_empty() && self.groups.is_empty();
        is_everyone
            || self.roles.iter().any(|r| identity.roles.contains(r))
            || self.groups.iter().any(|g| identity.groups.contains(g))
    }

    fn covers(&self, tool: &str) -> bool {
        self.tools.iter().any(|pattern| glob_matches(pattern, tool))
    }
}

/// The ordered rule list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ToolAccess(pub Vec<ToolRule>);

impl ToolAccess {
    /// Whether `identity` may call `tool`.
    pub fn is_allowed(&self, identity: &Identity, tool: &str) -> bool {
        if self.0.is_empty() {
            return true;
        }
        self.0
            .iter()
            .find(|rule| rule.applies_to(identity) && rule.covers(tool))
            .is_some_and(|rule| rule.policy == Policy::Allow)
    }

    /// The subset of `tools` that `identity` may see, in the same order.
    pub fn visible<'a>(
        &self,
        identity: &Identity,
        tools: impl IntoIterator<Item = &'a str>,
    ) -> Vec<&'a str> {
        tools
            .into_iter()
            .filter(|t| self.is_allowed(identity, t))
            .collect()
    }
}

/// Glob matching where `*` matches any (possibly empty) run of characters and every other
/// character matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::IdentitySource;

    fn identity(roles: &[&str], groups: &[&str]) -> Identity {
        Identity {
            subject: "alice".into(),
            client_id: None,
            scopes: vec![],
            roles: roles.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            source: IdentitySource::OAuth,
        }
    }

    fn rules(json: serde_json::Value) -> ToolAccess {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob_matches("sentry__*", "sentry__issues"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*c*e", "abcde"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("sentry__*", "github__issues"));
        assert!(!glob_matches("*__admin", "sentry__admin2"));
        assert!(!glob_matches("ab*ba", "aba"));
    }

    #[test]
    fn first_match_wins_and_default_is_deny() {
        let access = rules(serde_json::json!([
            {"roles": ["admin"], "tools": ["*"], "policy": "allow"},
            {"groups": ["contractors"], "tools": ["sentry__delete*"], "policy": "deny"},
            {"roles": ["mcp-user"], "tools": ["sentry__*"], "policy": "allow"}
        ]));
        let admin = identity(&["admin"], &[]);
        let user = identity(&["mcp-user"], &[]);
        let contractor = identity(&["mcp-user"], &["contractors"]);
        assert!(access.is_allowed(&admin, "github__merge"));
        assert!(access.is_allowed(&user, "sentry__issues"));
        assert!(!access.is_allowed(&user, "github__merge"));
        assert!(access.is_allowed(&user, "sentry__delete_issue"));
        assert!(!access.is_allowed(&contractor, "sentry__delete_issue"));
        assert!(!access.is_allowed(&identity(&[], &[]), "sentry__issues"));
        assert_eq!(
            access.visible(&user, ["sentry__a", "github__b", "sentry__c"]),
            vec!["sentry__a", "sentry__c"]
        );
    }

    #[test]
    fn no_rules_allow_everything() {
        assert!(ToolAccess::default().is_allowed(&identity(&[], &[]), "x"));
    }

    #[test]
    fn unknown_rule_fields_are_refused() {
        let parsed: Result<ToolAccess, _> = serde_json::from_value(
            serde_json::json!([{"tools": ["*"], "policy": "allow", "role": ["x"]}]),
        );
        assert!(parsed.is_err());
    }
}
