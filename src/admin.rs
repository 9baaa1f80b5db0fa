//! Administrative changes to the state: pre-provisioned clients and offboarding.
//!
//! The same commands run in two places. When no server holds the state, the CLI opens the
//! state itself and executes them. When a server is running (it holds the state lock), the CLI
//! sends them over a Unix socket beside the state file (`auth_server.json.sock`, mode 0600 from
//! the moment it exists, and every connection's peer uid is checked, so only the account the
//! server runs as can use it), and the server executes them on its live store. Either way, a
//! command's effect is durable before its reply.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::oauth::register;
use crate::secrets::{random_token, sha256_b64};
use crate::store::{
    ApplicationType, AuthMethod, Client, Registration, StateDocument, Store, StoreResult,
};

/// What an administrator asks for: a change, a listing or an export. Sent over the admin
/// socket as one JSON object per line, tagged by `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminCommand {
    /// Pre-provision a confidential client.
    AddClient {
        /// Display name.
        name: String,
        /// Redirect URIs (none for an introspection-only client).
        redirect_uris: Vec<String>,
        /// A client that may only call introspection and revocation: no redirect URI, no
        /// grant.
        #[serde(default)]
        introspection_only: bool,
    },
    /// Remove a client with its consents and refresh tokens.
    RemoveClient {
        /// The client.
        client_id: String,
    },
    /// Replace a confidential client's secret; the old one stops working at once.
    RotateSecret {
        /// The client.
        client_id: String,
    },
    /// Revoke every refresh token of a user.
    RevokeUser {
        /// The user.
        sub: String,
    },
    /// Revoke every refresh token of a client (its sign-ins end; the client stays).
    RevokeClientTokens {
        /// The client.
        client_id: String,
    },
    /// Withdraw a user's consents (to one client, or to all) and end the sign-ins made with
    /// them.
    RevokeConsents {
        /// The user.
        sub: String,
        /// The client; every client when absent.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// List the registered clients.
    ListClients,
    /// List the live sign-ins (refresh-token families).
    ListTokens {
        /// Only this user's.
        #[serde(default)]
        user: Option<String>,
    },
    /// List the users' consents.
    ListConsents {
        /// Only this user's.
        #[serde(default)]
        user: Option<String>,
    },
    /// The whole state as one document (`mcp-authd state export`).
    ExportState,
}

impl AdminCommand {
    /// Whether the command only reads the state. Without a running server, such commands read
    /// the state files as they are and change nothing (no lock is taken, no snapshot written).
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Self::ListClients
                | Self::ListTokens { .. }
                | Self::ListConsents { .. }
                | Self::ExportState
        )
    }
}

/// A registered client as `clients list --json` shows it. Never its secret or secret hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The client's id.
    pub client_id: String,
    /// Its display name.
    pub client_name: String,
    /// `dynamic` (self-registered) or `provisioned` (`clients add`).
    pub registration: Registration,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub token_endpoint_auth_method: AuthMethod,
    /// Whether it may only call introspection and revocation.
    pub introspection_only: bool,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// The registered scope (empty: none).
    pub scope: String,
    /// `native`, `web`, or null when not known.
    pub application_type: Option<ApplicationType>,
    /// When it was registered, seconds since the epoch.
    pub client_id_issued_at: u64,
}

impl From<&Client> for ClientInfo {
    fn from(c: &Client) -> Self {
        Self {
            client_id: c.client_id.clone(),
            client_name: c.client_name.clone(),
            registration: c.registration,
            token_endpoint_auth_method: c.token_endpoint_auth_method,
            introspection_only: c.is_introspection_only(),
            redirect_uris: c.redirect_uris.clone(),
            grant_types: c.grant_types.clone(),
            scope: c.scope.clone(),
            application_type: c.application_type,
            client_id_issued_at: c.client_id_issued_at,
        }
    }
}

/// A live sign-in (refresh-token family) as `tokens list --json` shows it. Never a token or
/// a token hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInInfo {
    /// The user.
    pub sub: String,
    /// The client.
    pub client_id: String,
    /// The client's name (null if the client is gone).
    pub client_name: Option<String>,
    /// The granted scope, space-separated.
    pub scope: String,
    /// The resource (the access tokens' audience).
    pub resource: String,
    /// The user's groups when they signed in.
    pub groups: Vec<String>,
    /// When the user signed in, seconds since the epoch.
    pub created_at: u64,
    /// When the live refresh token was issued by a rotation (null before the first).
    pub rotated_at: Option<u64>,
    /// When the live refresh token expires.
    pub expires_at: u64,
    /// The sign-in's id as access tokens (`sid`) and audit events carry it: a hash of the
    /// family id, not usable as a credential.
    pub sid: String,
}

/// A user's consent as `consents list --json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentInfo {
    /// The user.
    pub sub: String,
    /// The client.
    pub client_id: String,
    /// The client's name (null if the client is gone).
    pub client_name: Option<String>,
    /// The approved scopes, space-separated (empty: requests naming no scope).
    pub scope: String,
    /// When the user last approved, seconds since the epoch.
    pub approved_at: u64,
}

/// The outcome of an [`AdminCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AdminReply {
    /// A client was added; the secret is shown this once.
    ClientAdded {
        /// The new client's id.
        client_id: String,
        /// Its secret.
        client_secret: String,
    },
    /// The client was removed.
    ClientRemoved,
    /// The client's secret was replaced; the new one is shown this once.
    SecretRotated {
        /// The client.
        client_id: String,
        /// Its new secret.
        client_secret: String,
    },
    /// The user's refresh tokens were revoked.
    UserRevoked {
        /// How many sign-ins (refresh-token families) were revoked.
        families: usize,
    },
    /// The client's refresh tokens were revoked.
    ClientTokensRevoked {
        /// How many sign-ins (refresh-token families) were revoked.
        families: usize,
    },
    /// Consents were withdrawn, and the sign-ins made under them revoked.
    ConsentsRevoked {
        /// How many consents were withdrawn.
        consents: usize,
        /// How many sign-ins (refresh-token families) were revoked.
        families: usize,
    },
    /// The registered clients, in id order.
    Clients {
        /// The clients.
        clients: Vec<ClientInfo>,
    },
    /// The live sign-ins, by user, then time.
    Tokens {
        /// The sign-ins.
        sign_ins: Vec<SignInInfo>,
    },
    /// The consents, by user, then client.
    Consents {
        /// The consents.
        consents: Vec<ConsentInfo>,
    },
    /// The whole state.
    State {
        /// The document, in the state file format.
        document: Box<StateDocument>,
    },
    /// The command failed.
    Failed {
        /// Why.
        message: String,
    },
}

/// The reply for a client id the store does not know.
fn no_client(client_id: &str) -> AdminReply {
    AdminReply::Failed {
        message: format!("no client {client_id} (see `mcp-authd clients list`)"),
    }
}

/// Runs `command` against `store`.
pub async fn execute(store: &dyn Store, command: AdminCommand, now: u64) -> AdminReply {
    let is_export = matches!(command, AdminCommand::ExportState);
    match run(store, command, now).await {
        Ok(reply) => reply,
        Err(e) => {
            // The message names what failed in the store, never a record's content.
            tracing::error!("admin command failed: {e}");
            AdminReply::Failed {
                message: if is_export {
                    format!("the state cannot be exported: {e}")
                } else {
                    format!("the state could not be changed: {e}")
                },
            }
        }
    }
}

/// [`execute`], with the store's failures as errors.
async fn run(store: &dyn Store, command: AdminCommand, now: u64) -> StoreResult<AdminReply> {
    Ok(match command {
        AdminCommand::AddClient {
            name,
            redirect_uris,
            introspection_only,
        } => {
            let provisioned = if introspection_only {
                register::provision_introspection_client(&name, now)
            } else {
                register::provision(&name, redirect_uris, now)
            };
            let new = match provisioned {
                Ok(new) => new,
                Err(e) => {
                    return Ok(AdminReply::Failed {
                        message: e.description.into_owned(),
                    });
                }
            };
            let client_id = new.client.client_id.clone();
            let client_secret = new.secret.clone().unwrap_or_default();
            store.put_client(new.client).await?;
            tracing::info!(target: "audit", event = "client_registered", client_id = %client_id, registration = "provisioned", introspection_only, "client pre-provisioned");
            AdminReply::ClientAdded {
                client_id,
                client_secret,
            }
        }
        AdminCommand::RemoveClient { client_id } => {
            if !store.remove_client(&client_id).await? {
                return Ok(no_client(&client_id));
            }
            tracing::info!(target: "audit", event = "client_removed", client_id = %client_id, "client removed");
            AdminReply::ClientRemoved
        }
        AdminCommand::RotateSecret { client_id } => {
            let Some(client) = store.client(&client_id).await? else {
                return Ok(no_client(&client_id));
            };
            if client.secret_hash.is_none() {
                return Ok(AdminReply::Failed {
                    message: format!(
                        "client {client_id} is a public client (token_endpoint_auth_method {}): it has no secret to rotate",
                        client.token_endpoint_auth_method.as_str()
                    ),
                });
            }
            let secret = random_token(32);
            if !store
                .set_client_secret(&client_id, &sha256_b64(secret.as_bytes()))
                .await?
            {
                // Removed between the two reads.
                return Ok(no_client(&client_id));
            }
            // SPEC §15 names no event for this; the audit trail still records it.
            tracing::info!(target: "audit", event = "client_secret_rotated", client_id = %client_id, "client secret rotated; the old one no longer works");
            AdminReply::SecretRotated {
                client_id,
                client_secret: secret,
            }
        }
        AdminCommand::RevokeUser { sub } => {
            let families = store.revoke_user(&sub).await?;
            tracing::warn!(target: "audit", event = "user_revoked", sub = %sub, families, "all refresh tokens of a user revoked");
            AdminReply::UserRevoked { families }
        }
        AdminCommand::RevokeClientTokens { client_id } => {
            if store.client(&client_id).await?.is_none() {
                return Ok(no_client(&client_id));
            }
            let families = store.revoke_client_families(&client_id).await?;
            tracing::warn!(target: "audit", event = "token_revoked", token_type = "refresh_token", client_id = %client_id, families, "all refresh tokens of a client revoked");
            AdminReply::ClientTokensRevoked { families }
        }
        AdminCommand::RevokeConsents { sub, client_id } => {
            if let Some(id) = &client_id
                && store.client(id).await?.is_none()
            {
                return Ok(no_client(id));
            }
            let revoked = store.revoke_consents(&sub, client_id.as_deref()).await?;
            // No `client_id` field when every client's consent was withdrawn.
            tracing::warn!(target: "audit", event = "user_revoked", sub = %sub, client_id = client_id.as_deref(), consents = revoked.consents, families = revoked.families, "consents withdrawn and the sign-ins made with them revoked");
            AdminReply::ConsentsRevoked {
                consents: revoked.consents,
                families: revoked.families,
            }
        }
        AdminCommand::ListClients => AdminReply::Clients {
            clients: store
                .clients()
                .await?
                .iter()
                .map(ClientInfo::from)
                .collect(),
        },
        AdminCommand::ListTokens { user } => {
            let names = client_names(store).await?;
            let sign_ins = store
                .families()
                .await?
                .into_iter()
                .filter(|(_, f)| user.as_deref().is_none_or(|u| f.grant.sub == u))
                .map(|(sid, f)| SignInInfo {
                    client_name: names.get(&f.grant.client_id).cloned(),
                    sub: f.grant.sub,
                    client_id: f.grant.client_id,
                    scope: f.grant.scope,
                    resource: f.grant.resource,
                    groups: f.grant.groups,
                    created_at: f.created_at,
                    rotated_at: f.rotated_at,
                    expires_at: f.expires_at,
                    sid,
                })
                .collect();
            AdminReply::Tokens { sign_ins }
        }
        AdminCommand::ListConsents { user } => {
            let names = client_names(store).await?;
            let consents = store
                .consents()
                .await?
                .into_iter()
                .filter(|c| user.as_deref().is_none_or(|u| c.sub == u))
                .map(|c| ConsentInfo {
                    client_name: names.get(&c.client_id).cloned(),
                    sub: c.sub,
                    client_id: c.client_id,
                    scope: c.consent.scope,
                    approved_at: c.consent.at,
                })
                .collect();
            AdminReply::Consents { consents }
        }
        AdminCommand::ExportState => AdminReply::State {
            document: Box::new(store.export_state().await?),
        },
    })
}

/// Client id → name, for the listings.
async fn client_names(store: &dyn Store) -> StoreResult<std::collections::HashMap<String, String>> {
    Ok(store
        .clients()
        .await?
        .into_iter()
        .map(|c| (c.client_id, c.client_name))
        .collect())
}

/// The admin socket that belongs to a state file.
pub fn socket_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

/// The private directory the admin socket is bound in before it is moved to
/// [`socket_path`] (see [`bind_owner_only`]).
#[cfg(unix)]
fn bind_dir(state: &Path) -> PathBuf {
    let mut name = socket_path(state).into_os_string();
    name.push(".new");
    PathBuf::from(name)
}

/// Binds the admin socket for `state` so that it is never reachable with wider permissions
/// than 0600, not even for an instant: the socket is bound inside a fresh directory of mode
/// 0700 (connecting needs search permission on every directory of the path, so nobody else
/// can reach it there whatever mode `bind` gave it under the process umask), set to 0600, and
/// only then renamed to [`socket_path`]. A umask of 077 around `bind` would do the same, but
/// the umask is shared by every thread of the process, and the state writer creates files at
/// any moment. `after_bind` sees the socket's path right after `bind` (tests check the modes
/// there).
#[cfg(unix)]
pub fn bind_owner_only(
    state: &Path,
    after_bind: impl FnOnce(&Path),
) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let dir = bind_dir(state);
    // Left by a killed server: we hold the state lock, so nobody else uses it. The state
    // directory is writable by this account only (checked when the state was opened).
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // `mkdir` never follows a link and fails if anything is there already.
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    // The umask can only have removed bits; make it exactly owner-only.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let bound = dir.join("s");
    let result = tokio::net::UnixListener::bind(&bound).and_then(|listener| {
        after_bind(&bound);
        std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))?;
        // Replaces a socket left by a killed server in one step.
        std::fs::rename(&bound, socket_path(state))?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Whether a peer with uid `peer` may use the admin socket of a server running as `server`:
/// only the same account (SPEC §17), checked on every connection rather than trusting the
/// socket's file mode alone.
pub fn peer_allowed(peer: u32, server: u32) -> bool {
    peer == server
}

/// How long the socket waits after a failed `accept` (too many open files, say) before it
/// tries again.
#[cfg(unix)]
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves admin commands on the socket for `state` until the task is dropped: one JSON command
/// per line in, one JSON reply per line out. Only connections from this process's own uid are
/// served; a failed `accept` is logged and retried, it never ends the socket.
#[cfg(unix)]
pub async fn serve_socket(
    state: &Path,
    store: std::sync::Arc<dyn Store>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> std::io::Result<()> {
    let listener = bind_owner_only(state, |_| {})?;
    serve_accepted(|| listener.accept(), store, clock).await;
    Ok(())
}

/// The admin socket's accept loop over `accept` (a listener's, or a test's).
#[cfg(unix)]
async fn serve_accepted<A, F, Addr>(
    mut accept: A,
    store: std::sync::Arc<dyn Store>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) where
    A: FnMut() -> F,
    F: std::future::Future<Output = std::io::Result<(tokio::net::UnixStream, Addr)>>,
{
    let server_uid = crate::store::state_files::euid();
    loop {
        let stream = match accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("admin socket: accept failed ({e}); retrying");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (store, clock) = (store.clone(), clock.clone());
        tokio::spawn(async move {
            let cred = stream.peer_cred();
            let (read, mut write) = stream.into_split();
            let reply = match cred {
                Ok(cred) if peer_allowed(cred.uid(), server_uid) => {
                    let mut line = String::new();
                    if BufReader::new(read).read_line(&mut line).await.is_err() {
                        return;
                    }
                    match serde_json::from_str::<AdminCommand>(&line) {
                        Ok(command) => execute(store.as_ref(), command, clock.now()).await,
                        Err(e) => AdminReply::Failed {
                            message: format!("malformed admin command: {e}"),
                        },
                    }
                }
                refused => {
                    let peer = match &refused {
                        Ok(cred) => format!("uid {} (pid {:?})", cred.uid(), cred.pid()),
                        Err(e) => format!("unknown ({e})"),
                    };
                    tracing::warn!(
                        target: "audit",
                        "admin socket: refused a connection from {peer}: only uid {server_uid} may use it"
                    );
                    AdminReply::Failed {
                        message: format!(
                            "the admin socket serves only uid {server_uid}, the account the server runs as; run this command as that user"
                        ),
                    }
                }
            };
            let mut out = serde_json::to_vec(&reply).unwrap_or_default();
            out.push(b'\n');
            let _ = write.write_all(&out).await;
        });
    }
}

/// Sends `command` to the server running on `state` and returns its reply.
#[cfg(unix)]
pub async fn send(state: &Path, command: &AdminCommand) -> std::io::Result<AdminReply> {
    let stream = tokio::net::UnixStream::connect(socket_path(state)).await?;
    let (read, mut write) = stream.into_split();
    let mut out = serde_json::to_vec(command).map_err(std::io::Error::other)?;
    out.push(b'\n');
    // A server that refuses this account answers without reading the command and closes, so
    // the write may fail while its reply (which says why) is waiting to be read.
    let written = write.write_all(&out).await;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    match serde_json::from_str(&line) {
        Ok(reply) => Ok(reply),
        Err(e) => Err(written.err().unwrap_or_else(|| std::io::Error::other(e))),
    }
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
    use std::sync::Arc;

    use super::*;
    use crate::store::{StateDocument, StateStore};

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn only_the_servers_own_uid_is_served() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(0, 1000), "not even root");
        assert!(!peer_allowed(1001, 1000));
    }

    #[tokio::test]
    async fn the_socket_is_owner_only_from_the_moment_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("auth_server.json");
        // Leftovers of a killed server: a stale socket file and a half-made bind directory.
        std::fs::write(socket_path(&state), b"").unwrap();
        std::fs::create_dir(bind_dir(&state)).unwrap();
        std::fs::write(bind_dir(&state).join("s"), b"").unwrap();
        let mut seen = None;
        let listener = bind_owner_only(&state, |bound| {
            // Right after bind, before any chmod: reachable only through a directory that
            // only this account may enter, and not yet at the public path.
            let parent = bound.parent().unwrap();
            let meta = std::fs::metadata(parent).unwrap();
            seen = Some((
                mode(parent),
                meta.uid(),
                std::fs::metadata(socket_path(&state))
                    .unwrap()
                    .file_type()
                    .is_socket(),
            ));
        })
        .unwrap();
        assert_eq!(
            seen,
            Some((0o700, crate::store::state_files::euid(), false)),
            "(bind directory mode, its owner, socket already at the public path)"
        );
        let path = socket_path(&state);
        assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
        assert_eq!(mode(&path), 0o600);
        assert!(!bind_dir(&state).exists(), "the bind directory is removed");
        // The listener answers at the public path.
        let (_client, accepted) =
            tokio::join!(tokio::net::UnixStream::connect(&path), listener.accept());
        accepted.unwrap();
    }

    #[tokio::test]
    async fn a_failed_accept_does_not_end_the_socket() {
        let store: Arc<dyn Store> = Arc::new(StateStore::in_memory(StateDocument::default()));
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        let mut attempts = vec![
            Ok((theirs, ())),
            Err(std::io::Error::from_raw_os_error(libc::EMFILE)),
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionAborted)),
        ];
        let accept = move || {
            let next = attempts.pop();
            async move {
                match next {
                    Some(result) => result,
                    None => std::future::pending().await,
                }
            }
        };
        let serving = tokio::spawn(serve_accepted(accept, store, clock));
        let (read, mut write) = ours.into_split();
        let mut command =
            serde_json::to_vec(&AdminCommand::RevokeUser { sub: "bob".into() }).unwrap();
        command.push(b'\n');
        write.write_all(&command).await.unwrap();
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await.unwrap();
        assert_eq!(
            serde_json::from_str::<AdminReply>(&line).unwrap(),
            AdminReply::UserRevoked { families: 0 }
        );
        assert!(!serving.is_finished());
        serving.abort();
    }
}
