//! Configuration reload (SPEC §15, SIGHUP): `serve` reads its `servers.json` again, with the
//! same path and the same `${NAME}` resolution, and validates it with the boot-time loader.
//!
//! - A valid file replaces the running configuration as a whole ([`LiveApp::reconfigure`]):
//!   everything derived from [`Config`] is rebuilt, and the next request, also on a keep-alive
//!   connection opened before, is served under it. The audit event `config_reloaded` names the
//!   top-level `oauthAs` settings that changed (names only, never values).
//! - An invalid file (unreadable, not JSON, failing validation) changes nothing: every problem
//!   is logged as an error line of its own, and the server keeps serving.
//! - What the process reads once at start stays as it is, with a warning that a restart is
//!   needed: `maxConnections` (the connection cap) and `store` (where the state lives). The
//!   listen addresses are command-line flags and cannot change in the file at all.
//!
//! Reloads are serialised: one runs at a time, and signals arriving meanwhile are folded into
//! the next one.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{Config, ConfigErrors};
use crate::http::LiveApp;

/// The `oauthAs` settings that only take effect at start.
pub const RESTART_ONLY: [&str; 2] = ["maxConnections", "store"];

/// Describes where a configuration puts the state, as the process would resolve it (the
/// environment variables included); compared before and after a reload.
pub type StoreLocation = Box<dyn Fn(&Config) -> String + Send + Sync>;

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Top-level `oauthAs` settings whose value changed and now apply, sorted.
    pub changed: Vec<String>,
    /// Settings that changed in the file but need a restart; one warning line each.
    pub needs_restart: Vec<String>,
}

/// Reloads the configuration of one running server.
pub struct Reloader {
    path: PathBuf,
    live: Arc<LiveApp>,
    store_location: StoreLocation,
    /// The `oauthAs` object of the configuration running now; the lock also serialises
    /// reloads.
    section: tokio::sync::Mutex<Value>,
}

impl Reloader {
    /// A reloader for the server `live`, started from the file at `path` whose `oauthAs`
    /// object was `section`.
    pub fn new(
        path: PathBuf,
        live: Arc<LiveApp>,
        section: Value,
        store_location: StoreLocation,
    ) -> Self {
        Self {
            path,
            live,
            store_location,
            section: tokio::sync::Mutex::new(section),
        }
    }

    /// Reads, validates and applies the file once, logging the outcome (see the module
    /// documentation). `Err` holds the problems of an invalid file.
    pub async fn reload(&self) -> Result<Reloaded, ConfigErrors> {
        let mut running_section = self.section.lock().await;
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load_with_section(&path))
            .await
            .unwrap_or_else(|e| {
                Err(ConfigErrors(vec![format!(
                    "reading the configuration failed: {e}"
                )]))
            });
        let (mut config, section) = match loaded {
            Ok(loaded) => loaded,
            Err(problems) => {
                for problem in &problems.0 {
                    tracing::error!("configuration reload: {problem}");
                }
                tracing::error!(
                    "configuration reload refused: {} problem(s) in {}; nothing changed, still serving the previous configuration",
                    problems.0.len(),
                    self.path.display()
                );
                return Err(problems);
            }
        };
        let running = self.live.state();
        let old = &running.config;

        let mut needs_restart = Vec::new();
        if config.max_connections != old.max_connections {
            tracing::warn!(
                "configuration reload: oauthAs.maxConnections changed from {} to {}; restart mcp-authd to apply it (the limit stays {} until then)",
                old.max_connections,
                config.max_connections,
                old.max_connections
            );
            needs_restart.push("maxConnections".to_string());
        }
        let (was, would_be) = ((self.store_location)(old), (self.store_location)(&config));
        if was != would_be {
            tracing::warn!(
                "configuration reload: oauthAs.store changed; restart mcp-authd to apply it (the state stays in {was} until then, not {would_be})"
            );
            needs_restart.push("store".to_string());
        }
        // What cannot change while running keeps the value it started with, so the running
        // configuration says what is in effect.
        config.max_connections = old.max_connections;
        config.store = old.store.clone();

        let mut changed: Vec<String> = changed_settings(&running_section, &section)
            .into_iter()
            .filter(|name| !RESTART_ONLY.contains(&name.as_str()))
            .collect();
        // Files the configuration names can change under an unchanged text.
        let mut note_changed = |name: &str, differs: bool| {
            if differs && !changed.iter().any(|c| c == name) {
                changed.push(name.to_string());
            }
        };
        note_changed("signing", old.signing.jwks() != config.signing.jwks());
        note_changed(
            "clientMetadataDocuments",
            old.client_metadata_documents != config.client_metadata_documents,
        );
        changed.sort();

        // Warnings the running configuration already raised were logged before.
        for warning in config.warnings.iter().filter(|w| !old.warnings.contains(w)) {
            tracing::warn!("{warning}");
        }
        let signer_changed = old.signer().key_id() != config.signer().key_id();
        let state = self.live.reconfigure(config);
        *running_section = section;
        if signer_changed {
            tracing::info!(algorithm = %state.signer.algorithm(), kid = %state.signer.key_id(), "signing access tokens");
        }
        let listed = if changed.is_empty() {
            "none".to_string()
        } else {
            changed.join(",")
        };
        tracing::info!(target: "audit", event = "config_reloaded", changed = %listed, "configuration reloaded from {}", self.path.display());
        Ok(Reloaded {
            changed,
            needs_restart,
        })
    }
}

/// The names of the top-level members that differ between two `oauthAs` objects (added,
/// removed or changed), sorted. Values are compared, never reported.
pub fn changed_settings(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let mut names: Vec<String> = old
        .keys()
        .chain(new.keys())
        .filter(|name| old.get(*name) != new.get(*name))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::changed_settings;
    use serde_json::json;

    #[test]
    fn changed_settings_names_added_removed_and_changed_members_once() {
        let old = json!({"jwtSecret": "a", "scopesSupported": ["x"], "consent": "dynamic", "rateLimits": {"tokenPerMinute": 1}});
        let new = json!({"jwtSecret": "b", "scopesSupported": ["x"], "previousJwtSecrets": ["a"], "rateLimits": {"tokenPerMinute": 2}});
        assert_eq!(
            changed_settings(&old, &new),
            ["consent", "jwtSecret", "previousJwtSecrets", "rateLimits"]
        );
        assert!(changed_settings(&old, &old).is_empty());
        // Member order inside an object is not a change.
        assert!(
            changed_settings(
                &json!({"rateLimits": {"a": 1, "b": 2}}),
                &json!({"rateLimits": {"b": 2, "a": 1}})
            )
            .is_empty()
        );
    }
}
