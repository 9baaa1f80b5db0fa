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
                    tracing::info!(target: "audit", event = "client_registered", client_id = %client_id, registration = "provisioned", "client pre-provisioned");
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
                tracing::info!(target: "audit", event = "client_removed", client_id = %client_id, "client removed");
                AdminReply::ClientRemoved
            }
            Ok(false) => AdminReply::Failed {
                message: format!("no client {client_id}"),
            },
            Err(_) => unavailable(),
        },
        AdminCommand::RevokeUser { sub } => match store.revoke_user(&sub).await {
            Ok(families) => {
                tracing::warn!(target: "audit", event = "user_revoked", sub = %sub, families, "all refresh tokens of a user revoked");
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
