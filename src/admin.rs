//! Administrative changes to the state: pre-provisioned clients and offboarding.
//!
//! The same commands run in two places. When no server holds the state, the CLI opens the
//! state itself and executes them. When a server is running (it holds the state lock), the CLI
//! sends them over a Unix socket beside the state file (`auth_server.json.sock`, mode 0600, so
//! only the account that owns the state can use it), and the server executes them on its live
//! store. Either way, a command's effect is durable before its reply.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::oauth::register;
use crate::store::Store;

/// A change an administrator asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminCommand {
    /// Pre-provision a confidential client.
    AddClient {
        /// Display name.
        name: String,
        /// Redirect URIs.
        redirect_uris: Vec<String>,
    },
    /// Remove a client with its consents and refresh tokens.
    RemoveClient {
        /// The client.
        client_id: String,
    },
    /// Revoke every refresh token of a user.
    RevokeUser {
        /// The user.
        sub: String,
    },
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
    /// The user's refresh tokens were revoked.
    UserRevoked {
        /// How many sign-ins (refresh-token families) were revoked.
        families: usize,
    },
    /// The command failed.
    Failed {
        /// Why.
        message: String,
    },
}

/// Runs `command` against `store`.
pub async fn execute(store: &dyn Store, command: AdminCommand, now: u64) -> AdminReply {
    let unavailable = || AdminReply::Failed {
        message: "the state could not be written".into(),
    };
    match command {
        AdminCommand::AddClient {
            name,
            redirect_uris,
        } => {
            let new = match register::provision(&name, redirect_uris, now) {
                Ok(new) => new,
                Err(e) => {
                    return AdminReply::Failed {
                        message: e.description.into_owned(),
                    };
                }
            };
            let client_id = new.client.client_id.clone();
            let client_secret = new.secret.clone().unwrap_or_default();
            match store.put_client(new.client).await {
                Ok(()) => {
                    tracing::info!(target: "audit", client_id = %client_id, "client pre-provisioned");
                    AdminReply::ClientAdded {
                        client_id,
                        client_secret,
                    }
                }
                Err(_) => unavailable(),
            }
        }
        AdminCommand::RemoveClient { client_id } => match store.remove_client(&client_id).await {
            Ok(true) => {
                tracing::info!(target: "audit", client_id = %client_id, "client removed");
                AdminReply::ClientRemoved
            }
            Ok(false) => AdminReply::Failed {
                message: format!("no client {client_id}"),
            },
            Err(_) => unavailable(),
        },
        AdminCommand::RevokeUser { sub } => match store.revoke_user(&sub).await {
            Ok(families) => {
                tracing::warn!(target: "audit", user = %sub, families, "all refresh tokens of a user revoked");
                AdminReply::UserRevoked { families }
            }
            Err(_) => unavailable(),
        },
    }
}

/// The admin socket that belongs to a state file.
pub fn socket_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

/// Serves admin commands on the socket for `state` until the task is dropped: one JSON command
/// per line in, one JSON reply per line out.
#[cfg(unix)]
pub async fn serve_socket(
    state: &Path,
    store: std::sync::Arc<dyn Store>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = socket_path(state);
    // A socket left by a killed server: we hold the state lock, so nobody else serves it.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (store, clock) = (store.clone(), clock.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            if BufReader::new(read).read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match serde_json::from_str::<AdminCommand>(&line) {
                Ok(command) => execute(store.as_ref(), command, clock.now()).await,
                Err(e) => AdminReply::Failed {
                    message: format!("malformed admin command: {e}"),
                },
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
    write.write_all(&out).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}
