//! Resource indicators (RFC 8707) and their comparison (SPEC §6).

/// The canonical form of a resource URI used for comparison: scheme and host lowercased, the
/// default port dropped, a trailing slash removed. `None` if it is not an absolute http(s) URI
/// without a fragment (RFC 8707 §2).
pub fn normalize(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "https" | "http")
        || url.host_str().is_none()
        || url.fragment().is_some()
    {
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let mut out = format!("{}://{}", url.scheme(), url.host_str()?);
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path().trim_end_matches('/'));
    if let Some(query) = url.query() {
        out.push('?');
        out.push_str(query);
    }
    Some(out)
}

/// Whether the requested `resource` names the configured one.
pub fn matches(requested: &str, configured: &str) -> bool {
    match (normalize(requested), normalize(configured)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_trailing_slash_do_not_matter() {
        let configured = "https://mcp.example.com/mcp";
        assert!(matches("https://mcp.example.com/mcp", configured));
        assert!(matches("https://mcp.example.com/mcp/", configured));
        assert!(matches("HTTPS://MCP.Example.COM/mcp", configured));
        assert!(matches("https://mcp.example.com:443/mcp", configured));
    }

    #[test]
    fn other_paths_hosts_and_fragments_do_not_match() {
        let configured = "https://mcp.example.com/mcp";
        assert!(!matches("https://mcp.example.com/MCP", configured));
        assert!(!matches("https://mcp.example.com/mcp/x", configured));
        assert!(!matches("https://evil.example.com/mcp", configured));
        assert!(!matches("https://mcp.example.com/mcp#frag", configured));
        assert!(!matches("/mcp", configured));
        assert!(!matches("http://mcp.example.com/mcp", configured));
    }

    #[test]
    fn origin_only_resources_compare_with_and_without_slash() {
        assert!(matches(
            "https://mcp.example.com/",
            "https://mcp.example.com"
        ));
    }
}
