//! The default [`Store`]: the whole state in memory, made durable in `auth_server.json` plus an
//! append-only journal beside it (`auth_server.json.journal`).
//!
//! Every mutation is applied in memory under one lock, given the next sequence number, and
//! handed to a single writer thread. The writer appends whatever has queued up as one batch,
//! `fdatasync`s once, and then publishes the highest durable sequence number; each request
//! waits until its own number is durable (group commit). When the journal grows past a
//! threshold proportional to the state, the writer compacts without pausing: it clones the
//! document (at sequence number S) and a helper thread writes it to a temporary file, fsyncs
//! it, renames it over `auth_server.json` and fsyncs the directory, while the writer goes on
//! committing batches to the journal and keeps a copy of the entries after S. Once the snapshot
//! is in place, the writer writes those entries to a new journal file, fsyncs it and renames it
//! over the old journal. A crash at any point leaves a snapshot plus a journal whose entries
//! with `seq` at or below the snapshot's are skipped on load.
//!
//! If a write fails, the store stops accepting mutations (every later one fails with
//! [`StoreUnavailable`]) rather than hand out anything that might not survive a restart.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::document::{OLDEST_READABLE_VERSION, STATE_VERSION};
use super::state_files::{self, dir_of};
use super::{
    Client, Consent, DynamicAdmission, EVICTABLE_AFTER_SECONDS, Mutation, RefreshFamily,
    RefreshOutcome, RotationAnswer, StateDocument, Store, StoreUnavailable,
};
use crate::oauth::refresh::{RefreshDecision, decide};
use crate::secrets::constant_time_eq;

/// Compaction happens once the journal holds this many entries, or twice the number of
/// records in the state, whichever is larger, so its cost per mutation stays constant.
const COMPACT_MIN_ENTRIES: u64 = 20_000;

/// At most this many queued mutations go into one journal write.
const MAX_BATCH: usize = 8192;

/// Test-only: when set to a positive number, the journal is compacted every that many entries
/// instead of at the size-proportional threshold, so crash tests can land inside compactions
/// without writing 20 000 entries first. Read once, when the store is opened. Not for
/// production use: a small value rewrites the whole snapshot that often.
#[doc(hidden)]
pub const COMPACT_EVERY_ENV: &str = "MCP_AUTHD_COMPACT_EVERY";

/// Why the state could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file or journal cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The content is not a valid state document; nothing was changed.
    #[error("{path} is corrupt ({detail}); it was left untouched: fix it or move it aside")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A state file or the state directory is not safe to use (a symbolic link, not a
    /// regular file, another user's, or a directory others can write to); nothing was changed.
    #[error("{message}")]
    Unsafe {
        /// The file or directory.
        path: PathBuf,
        /// One line saying what is wrong and what to do.
        message: String,
    },
    /// Another process holds the lock.
    #[error("{path} is in use by another mcp-authd process (lock {lock} is held); stop it first")]
    Locked {
        /// The state file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
}

#[derive(Debug, Clone, Copy)]
struct Durability {
    seq: u64,
    has_failed: bool,
}

struct Shared {
    doc: StateDocument,
}

type Queue = mpsc::Sender<(u64, Vec<u8>)>;

/// The journaled JSON-file store (and, without a path, a purely in-memory one).
pub struct StateStore {
    shared: Arc<Mutex<Shared>>,
    /// The writer's queue; `None` when nothing is written (inline or in-memory state). Sent to
    /// only while `shared` is locked, so the journal order is the sequence order. Dropping the
    /// store closes it, which ends the writer thread.
    queue: Option<Queue>,
    durable: watch::Receiver<Durability>,
    durable_tx: Arc<watch::Sender<Durability>>,
    is_persistent: bool,
    /// The writer thread, joined on drop so the lock is released only after the last write.
    writer: Option<std::thread::JoinHandle<()>>,
    _lock: Option<File>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    seq: u64,
    m: &'a Mutation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryIn {
    seq: u64,
    m: Mutation,
}

/// The journal that belongs to a state file.
pub fn journal_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The temporary file a compaction writes the journal's remaining entries to before it is
/// renamed over the journal.
pub fn journal_tmp_path(state: &Path) -> PathBuf {
    let mut name = journal_path(state).into_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The temporary file a snapshot is written to before it is renamed over the state file.
pub fn tmp_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Parses a state document's text (a snapshot, or inline `MCP_AUTH_SERVER_CONFIG`) and
/// upgrades it to the current version.
pub fn parse_document(text: &str, origin: &Path) -> Result<StateDocument, StateError> {
    let mut doc = parse_as_written(text, origin)?;
    doc.upgrade();
    Ok(doc)
}

/// Parses a state document in the version it was written in (which its journal matches).
fn parse_as_written(text: &str, origin: &Path) -> Result<StateDocument, StateError> {
    let doc: StateDocument = serde_json::from_str(text).map_err(|e| StateError::Corrupt {
        path: origin.to_path_buf(),
        detail: e.to_string(),
    })?;
    let corrupt = |detail: String| StateError::Corrupt {
        path: origin.to_path_buf(),
        detail,
    };
    if !(OLDEST_READABLE_VERSION..=STATE_VERSION).contains(&doc.version) {
        return Err(corrupt(format!(
            "version {} is not supported (expected {OLDEST_READABLE_VERSION} to {STATE_VERSION})",
            doc.version
        )));
    }
    // A client filed under another id would answer to the wrong client_id; only an edit makes
    // one, and which id is meant cannot be known.
    if let Some((key, client)) = doc.clients.iter().find(|(k, c)| **k != c.client_id) {
        return Err(corrupt(format!(
            "clients[\"{key}\"] holds client_id \"{}\"",
            client.client_id
        )));
    }
    Ok(doc)
}

/// Reads the snapshot, replays the journal and upgrades the result to the current version,
/// changing nothing on disk. Refuses a state directory others can write to and any state file
/// that is a symbolic link, not a regular file, or another user's (see [`state_files`]). Returns the state and whether the files differ from a snapshot
/// of it (the journal had entries, or the format was older): the store then writes one before
/// it journals anything, so no journal ever mixes versions.
pub fn read_state(path: &Path) -> Result<(StateDocument, bool), StateError> {
    // The journal is read before the snapshot: a compaction running meanwhile renames a newer
    // snapshot into place *before* it replaces the journal with the entries after it, so this
    // order never pairs an old snapshot with an already-shortened journal.
    state_files::check_dir(path)?;
    // Only opened here to be checked (`check` reports what `serve` would refuse).
    drop(state_files::open_existing(&lock_path(path))?);
    let journal = journal_path(path);
    let mut bytes = Vec::new();
    if let Some(mut f) = state_files::open_existing(&journal)? {
        f.read_to_end(&mut bytes).map_err(io_err(&journal))?;
    }
    let mut doc = match state_files::open_existing(path)? {
        Some(mut f) => {
            let mut text = String::new();
            f.read_to_string(&mut text).map_err(io_err(path))?;
            parse_as_written(&text, path)?
        }
        None => StateDocument::default(),
    };
    let has_journal = !bytes.is_empty();
    replay(&mut doc, &bytes, &journal)?;
    let was_upgraded = doc.upgrade();
    Ok((doc, has_journal || was_upgraded))
}

/// Applies journal entries newer than the snapshot. A damaged tail (a batch that was being
/// written when the process died, never acknowledged) is ignored; damage followed by valid
/// entries is corruption.
fn replay(doc: &mut StateDocument, bytes: &[u8], journal: &Path) -> Result<(), StateError> {
    let corrupt = |detail: String| StateError::Corrupt {
        path: journal.to_path_buf(),
        detail,
    };
    let mut lines = bytes.split(|b| *b == b'\n').enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let is_last = lines.peek().is_none();
        let entry = match serde_json::from_slice::<EntryIn>(line) {
            Ok(entry) if !is_last => entry,
            // The final line has no newline: it was cut off mid-write.
            Ok(_) => break,
            Err(e) => {
                let rest_has_entries = lines
                    .any(|(_, l)| !l.is_empty() && serde_json::from_slice::<EntryIn>(l).is_ok());
                if rest_has_entries {
                    return Err(corrupt(format!("line {}: {e}", index + 1)));
                }
                break;
            }
        };
        if entry.seq <= doc.seq {
            continue;
        }
        if entry.seq != doc.seq + 1 {
            return Err(corrupt(format!(
                "line {}: sequence jumps from {} to {}",
                index + 1,
                doc.seq,
                entry.seq
            )));
        }
        doc.apply(&entry.m);
        doc.seq = entry.seq;
    }
    Ok(())
}

/// Writes `doc` to `path` atomically: a new temporary file (0600), fsync, rename, fsync
/// directory. Callers hold the state lock, so a temporary file already there is a leftover of
/// a crash: it is replaced, never reused (it could carry another mode).
pub fn write_snapshot(path: &Path, doc: &StateDocument) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(doc).map_err(std::io::Error::other)?;
    let tmp = tmp_path(path);
    remove_if_present(&tmp)?;
    let written = state_files::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        // Best effort: the next open removes it anyway.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path)
}

/// Makes the directory entries of the state's directory (a rename, a new file) durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(dir_of(path))?.sync_all()
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Warns when the state file can be read or written by other users: it holds client secret
/// hashes and refresh-token hashes. (Files this store writes are created 0600; a file the
/// operator copied in keeps its mode until the next snapshot replaces it.)
fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    state_path = %path.display(),
                    "the state file has mode {mode:o}: other users can read it; run chmod 600 on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Takes the exclusive lock, retrying for up to [`LOCK_WAIT`]. The lock (`flock`) belongs to
/// the open file description, which a child process forked by anything in this process shares
/// until its `exec` closes it: a store dropped and reopened while another thread spawns a
/// process can find its own lock still held for a moment. Another daemon holds it for good.
fn take_lock(lock: &File) -> bool {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        if lock.try_lock().is_ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// How long [`take_lock`] waits for a lock that is held.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The compaction threshold override of [`COMPACT_EVERY_ENV`], if set to a positive number.
fn compact_every_override() -> Option<u64> {
    std::env::var(COMPACT_EVERY_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
}

impl StateStore {
    /// Opens the state at `path` for reading and writing: takes the lock, loads the snapshot
    /// and journal, folds the journal into a fresh snapshot, and starts the writer.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        // Before anything is created there: a directory others can write to is refused.
        state_files::check_dir(path)?;
        let lock_file = lock_path(path);
        let lock = state_files::open(
            &lock_file,
            state_files::options()
                .write(true)
                .create(true)
                .truncate(false),
        )?;
        if !take_lock(&lock) {
            return Err(StateError::Locked {
                path: path.to_path_buf(),
                lock: lock_file,
            });
        }
        let (doc, needs_snapshot) = read_state(path)?;
        // Only now that the state is known to be good is anything on disk changed. A temporary
        // snapshot is a leftover of a crash before its rename: the journal still holds
        // everything in it, so it is dropped.
        let tmp = tmp_path(path);
        remove_if_present(&tmp).map_err(io_err(&tmp))?;
        // A journal being rewritten by a compaction: the journal it was to replace is still
        // there and complete.
        let journal_tmp = journal_tmp_path(path);
        remove_if_present(&journal_tmp).map_err(io_err(&journal_tmp))?;
        if needs_snapshot || !path.exists() {
            write_snapshot(path, &doc).map_err(io_err(path))?;
        }
        warn_if_exposed(path);
        let journal = journal_path(path);
        // Append mode, so writes after a compaction's `set_len(0)` start at the new end
        // instead of leaving a hole at the old offset.
        let journal_file =
            state_files::open(&journal, state_files::options().append(true).create(true))?;
        #[cfg(unix)]
        {
            // A journal left by an older build or copied in keeps its mode otherwise.
            use std::os::unix::fs::PermissionsExt as _;
            if let Err(e) = journal_file.set_permissions(std::fs::Permissions::from_mode(0o600)) {
                tracing::warn!(
                    journal = %journal.display(),
                    "could not make the journal owner-only ({e})"
                );
            }
        }
        journal_file.set_len(0).map_err(io_err(&journal))?;
        journal_file.sync_all().map_err(io_err(&journal))?;
        // The journal may have just been created: make its directory entry durable too.
        sync_dir(path).map_err(io_err(path))?;

        let seq = doc.seq;
        let (queue, rx) = mpsc::channel();
        let mut store = Self::build(doc, Some(queue), Some(lock));
        let writer = Writer {
            shared: store.shared.clone(),
            durable: store.durable_tx.clone(),
            path: path.to_path_buf(),
            journal: journal_file,
            journal_entries: 0,
            journal_len: 0,
            snapshot_seq: seq,
            compaction: None,
            compact_every: compact_every_override(),
        };
        let handle = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(path))?;
        store.writer = Some(handle);
        Ok(store)
    }

    /// A store whose changes live in memory only: for inline `MCP_AUTH_SERVER_CONFIG` state
    /// (nothing is ever written) and for tests.
    pub fn in_memory(doc: StateDocument) -> Self {
        Self::build(doc, None, None)
    }

    fn build(doc: StateDocument, queue: Option<Queue>, lock: Option<File>) -> Self {
        let (tx, rx) = watch::channel(Durability {
            seq: doc.seq,
            has_failed: false,
        });
        Self {
            is_persistent: queue.is_some(),
            queue,
            shared: Arc::new(Mutex::new(Shared { doc })),
            durable: rx,
            durable_tx: Arc::new(tx),
            writer: None,
            _lock: lock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave the document half-changed (apply only
        // inserts and removes whole values), so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the whole document (for `check`, `clients list` and tests).
    pub fn snapshot(&self) -> StateDocument {
        self.lock().doc.clone()
    }

    /// Applies `mutations` under the lock already held and queues them; returns the last
    /// sequence number to wait for.
    fn commit(&self, shared: &mut Shared, mutations: &[Mutation]) -> u64 {
        for mutation in mutations {
            shared.doc.apply(mutation);
            shared.doc.seq += 1;
            if let Some(queue) = &self.queue {
                // Serialising a derived type into a Vec cannot fail.
                let mut line = serde_json::to_vec(&EntryOut {
                    seq: shared.doc.seq,
                    m: mutation,
                })
                .unwrap_or_default();
                line.push(b'\n');
                // A send error means the writer is gone; waiting will then report failure.
                let _ = queue.send((shared.doc.seq, line));
            }
        }
        shared.doc.seq
    }

    /// Waits until `seq` is durable.
    async fn wait(&self, seq: u64) -> Result<(), StoreUnavailable> {
        if !self.is_persistent {
            // Nothing is written, so a change is as durable as it will ever be.
            return Ok(());
        }
        let mut rx = self.durable.clone();
        match rx.wait_for(|d| d.seq >= seq || d.has_failed).await {
            Ok(d) if d.seq >= seq => Ok(()),
            _ => Err(StoreUnavailable),
        }
    }

    async fn mutate(&self, mutations: &[Mutation]) -> Result<(), StoreUnavailable> {
        let seq = {
            let mut shared = self.lock();
            if self.durable.borrow().has_failed {
                return Err(StoreUnavailable);
            }
            self.commit(&mut shared, mutations)
        };
        self.wait(seq).await
    }
}

impl Drop for StateStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once everything queued is written; only
        // then may the lock (a later field) be released to another process or store.
        self.queue = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[async_trait]
impl Store for StateStore {
    async fn client(&self, client_id: &str) -> Option<Client> {
        self.lock().doc.clients.get(client_id).cloned()
    }

    async fn clients(&self) -> Vec<Client> {
        self.lock().doc.clients.values().cloned().collect()
    }

    async fn put_client(&self, client: Client) -> Result<(), StoreUnavailable> {
        self.mutate(&[Mutation::PutClient { client }]).await
    }

    async fn put_dynamic_client(
        &self,
        client: Client,
        max_dynamic: usize,
    ) -> Result<DynamicAdmission, StoreUnavailable> {
        let (seq, evicted) = {
            let mut shared = self.lock();
            if self.durable.borrow().has_failed {
                return Err(StoreUnavailable);
            }
            let mut evicted = None;
            if shared.doc.dynamic_clients_reach(max_dynamic) {
                let older_than = client
                    .client_id_issued_at
                    .saturating_sub(EVICTABLE_AFTER_SECONDS);
                match shared.doc.oldest_unused_dynamic_client(older_than) {
                    Some(victim) => evicted = Some(victim),
                    None => return Ok(DynamicAdmission::Full),
                }
            }
            // The eviction is journaled as a collection, whose replay re-checks the client is
            // unused: on the same state it removes the same client.
            let mut mutations = Vec::with_capacity(2);
            if let Some(victim) = &evicted {
                mutations.push(Mutation::CollectUnusedClients {
                    client_ids: vec![victim.clone()],
                });
            }
            mutations.push(Mutation::PutClient { client });
            (self.commit(&mut shared, &mutations), evicted)
        };
        self.wait(seq).await?;
        Ok(DynamicAdmission::Added { evicted })
    }

    async fn remove_unused_dynamic_clients(
        &self,
        older_than: u64,
    ) -> Result<usize, StoreUnavailable> {
        let (count, seq) = {
            let mut shared = self.lock();
            let client_ids = shared.doc.unused_dynamic_clients(older_than);
            if client_ids.is_empty() {
                return Ok(0);
            }
            if self.durable.borrow().has_failed {
                return Err(StoreUnavailable);
            }
            let count = client_ids.len();
            let seq = self.commit(
                &mut shared,
                &[Mutation::CollectUnusedClients { client_ids }],
            );
            (count, seq)
        };
        self.wait(seq).await?;
        Ok(count)
    }

    async fn remove_client(&self, client_id: &str) -> Result<bool, StoreUnavailable> {
        let existed = self.lock().doc.clients.contains_key(client_id);
        if existed {
            self.mutate(&[Mutation::RemoveClient {
                client_id: client_id.to_string(),
            }])
            .await?;
        }
        Ok(existed)
    }

    async fn has_consent(&self, sub: &str, client_id: &str) -> bool {
        self.lock()
            .doc
            .consents
            .get(client_id)
            .is_some_and(|users| users.contains_key(sub))
    }

    async fn consent(&self, sub: &str, client_id: &str) -> Option<Consent> {
        self.lock()
            .doc
            .consents
            .get(client_id)
            .and_then(|users| users.get(sub))
            .cloned()
    }

    async fn record_consent(
        &self,
        sub: &str,
        client_id: &str,
        scope: &str,
        at: u64,
    ) -> Result<(), StoreUnavailable> {
        self.mutate(&[Mutation::GrantConsent {
            client_id: client_id.to_string(),
            sub: sub.to_string(),
            at,
            scope: scope.to_string(),
        }])
        .await
    }

    async fn put_family(
        &self,
        family_key: &str,
        family: RefreshFamily,
    ) -> Result<(), StoreUnavailable> {
        self.mutate(&[Mutation::PutFamily {
            family_id: family_key.to_string(),
            family,
        }])
        .await
    }

    async fn family(&self, family_key: &str) -> Option<RefreshFamily> {
        self.lock()
            .doc
            .refresh_tokens
            .get(family_key)
            .map(|f| RefreshFamily::clone(f))
    }

    async fn use_refresh_token(
        &self,
        family_key: &str,
        presented_hash: &str,
        successor_hash: &str,
        answer: &RotationAnswer,
        now: u64,
        ttl: u64,
    ) -> Result<RefreshOutcome, StoreUnavailable> {
        let (outcome, seq) = {
            let mut shared = self.lock();
            if self.durable.borrow().has_failed {
                return Err(StoreUnavailable);
            }
            let Some(family) = shared.doc.refresh_tokens.get(family_key) else {
                return Ok(RefreshOutcome::Unknown);
            };
            let grant = family.grant.clone();
            // The grace retry hands out the successor derived from the presented token; it must
            // be the one stored (it is not if jwtSecret changed since the rotation).
            let is_successor_live =
                constant_time_eq(family.current_hash.as_bytes(), successor_hash.as_bytes());
            match decide(family, presented_hash, now) {
                RefreshDecision::Rotate => {
                    let mutation = Mutation::Rotate {
                        family_id: family_key.to_string(),
                        current_hash: successor_hash.to_string(),
                        previous_hash: presented_hash.to_string(),
                        rotated_at: now,
                        expires_at: now.saturating_add(ttl),
                        answer: Some(answer.clone()),
                    };
                    (
                        RefreshOutcome::Rotated(grant),
                        self.commit(&mut shared, &[mutation]),
                    )
                }
                // The successor handed out again must itself be durable: wait for whatever
                // is pending, which includes the rotation that created it.
                RefreshDecision::Grace if !is_successor_live => return Ok(RefreshOutcome::Unknown),
                RefreshDecision::Grace => {
                    let answer = family
                        .rotation_answer
                        .clone()
                        .unwrap_or_else(|| answer_before_recording(family, answer));
                    (RefreshOutcome::Grace(grant, answer), shared.doc.seq)
                }
                RefreshDecision::Reuse => {
                    let mutation = Mutation::RevokeFamily {
                        family_id: family_key.to_string(),
                    };
                    (
                        RefreshOutcome::Reused,
                        self.commit(&mut shared, &[mutation]),
                    )
                }
                RefreshDecision::Expired => return Ok(RefreshOutcome::Expired),
            }
        };
        self.wait(seq).await?;
        Ok(outcome)
    }

    async fn revoke_family(&self, family_key: &str) -> Result<bool, StoreUnavailable> {
        let seq = {
            let mut shared = self.lock();
            if !shared.doc.refresh_tokens.contains_key(family_key) {
                return Ok(false);
            }
            self.commit(
                &mut shared,
                &[Mutation::RevokeFamily {
                    family_id: family_key.to_string(),
                }],
            )
        };
        self.wait(seq).await?;
        Ok(true)
    }

    async fn revoke_user(&self, sub: &str) -> Result<usize, StoreUnavailable> {
        let (count, seq) = {
            let mut shared = self.lock();
            let count = shared
                .doc
                .refresh_tokens
                .values()
                .filter(|f| f.grant.sub == sub)
                .count();
            if count == 0 {
                return Ok(0);
            }
            let seq = self.commit(
                &mut shared,
                &[Mutation::RevokeUser {
                    sub: sub.to_string(),
                }],
            );
            (count, seq)
        };
        self.wait(seq).await?;
        Ok(count)
    }

    async fn families(&self) -> Vec<(String, RefreshFamily)> {
        let shared = self.lock();
        let mut families: Vec<(String, RefreshFamily)> = shared
            .doc
            .refresh_tokens
            .iter()
            .map(|(id, f)| (id.clone(), RefreshFamily::clone(f)))
            .collect();
        families.sort_by(|a, b| {
            (&a.1.grant.sub, a.1.created_at).cmp(&(&b.1.grant.sub, b.1.created_at))
        });
        families
    }

    async fn deny_access_token(&self, jti: &str, exp: u64) -> Result<(), StoreUnavailable> {
        self.mutate(&[Mutation::DenyAccessToken {
            jti: jti.to_string(),
            exp,
        }])
        .await
    }

    async fn is_access_token_denied(&self, jti: &str) -> bool {
        self.lock().doc.revoked_access_tokens.contains_key(jti)
    }

    fn is_healthy(&self) -> bool {
        !self.durable.borrow().has_failed
    }
}

/// The grace answer for a family whose last rotation was made by a build that did not record
/// its access token: one derived from what is stored (the rotation time, the grant's scope,
/// today's lifetime), so every retry still gets the same token, though not the rotation's.
fn answer_before_recording(family: &RefreshFamily, requested: &RotationAnswer) -> RotationAnswer {
    let iat = family.rotated_at.unwrap_or(family.created_at);
    RotationAnswer {
        iat,
        exp: iat.saturating_add(requested.exp.saturating_sub(requested.iat)),
        scope: family.grant.scope.clone(),
    }
}

/// The single thread that writes the journal and snapshots.
struct Writer {
    shared: Arc<Mutex<Shared>>,
    durable: Arc<watch::Sender<Durability>>,
    path: PathBuf,
    journal: File,
    journal_entries: u64,
    /// The journal's length up to its last durable (acknowledged) entry.
    journal_len: u64,
    snapshot_seq: u64,
    /// The compaction in progress, if any.
    compaction: Option<Compaction>,
    /// [`COMPACT_EVERY_ENV`]: a fixed compaction threshold, for tests.
    compact_every: Option<u64>,
}

/// A snapshot being written by a helper thread while the writer goes on journaling.
struct Compaction {
    /// The sequence number the snapshot holds.
    seq: u64,
    /// The helper writing it.
    snapshot: std::thread::JoinHandle<std::io::Result<()>>,
    /// The durable journal entries after `seq`: the journal that replaces the current one.
    kept: Vec<u8>,
    kept_entries: u64,
}

/// How often the writer looks at a compaction in progress while no batch arrives.
const COMPACTION_POLL: std::time::Duration = std::time::Duration::from_millis(5);

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<(u64, Vec<u8>)>) {
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut has_failed = false;
        loop {
            let first = if self.compaction.is_some() {
                match rx.recv_timeout(COMPACTION_POLL) {
                    Ok(first) => Some(first),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(first) => Some(first),
                    Err(_) => break,
                }
            };
            if let Some(first) = first {
                let batch = std::iter::once(first)
                    .chain(std::iter::from_fn(|| rx.try_recv().ok()))
                    .take(MAX_BATCH);
                if !self.commit(batch, &mut buf) {
                    has_failed = true;
                    break;
                }
            }
            let advanced = self
                .finish_compaction(false)
                .and_then(|()| self.maybe_compact());
            if let Err(e) = advanced {
                self.fail(&e);
                has_failed = true;
                break;
            }
        }
        if has_failed {
            // Nothing more is written, but a snapshot in progress is waited for, so that no
            // file changes once the store, and with it the lock, is gone.
            if let Some(compaction) = self.compaction.take() {
                let _ = compaction.snapshot.join();
            }
        } else if let Err(e) = self.finish_compaction(true) {
            // The store is gone: a compaction in progress completes, so shutdown leaves a
            // fresh snapshot and a short journal behind.
            self.fail(&e);
        }
    }

    /// Appends one batch to the journal and makes it durable; `false` if that failed (the
    /// store is then failed and the writer must stop).
    fn commit(&mut self, batch: impl Iterator<Item = (u64, Vec<u8>)>, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let mut last_seq = 0;
        let mut count = 0u64;
        // Where the entries after a compaction's snapshot begin in `buf`, and how many there
        // are: they also go to the journal that will replace this one. Sequence numbers rise
        // through the queue, so they are a suffix of the batch.
        let mut kept_start = None;
        let mut kept = 0u64;
        let compacted_up_to = self.compaction.as_ref().map(|c| c.seq);
        for (seq, line) in batch {
            last_seq = seq;
            // Entries already folded into a snapshot need not be journaled again.
            if seq > self.snapshot_seq {
                if compacted_up_to.is_some_and(|up_to| seq > up_to) {
                    kept_start.get_or_insert(buf.len());
                    kept += 1;
                }
                buf.extend_from_slice(&line);
                count += 1;
            }
        }
        let written = self
            .journal
            .write_all(buf)
            .and_then(|()| self.journal.sync_data());
        if let Err(e) = written {
            // Cut first, then answer: the requests of this batch learn of the failure only
            // once their entries are gone again.
            self.drop_unacknowledged_tail();
            self.fail(&e);
            return false;
        }
        self.journal_entries += count;
        self.journal_len += buf.len() as u64;
        if let (Some(c), Some(start)) = (&mut self.compaction, kept_start) {
            c.kept.extend_from_slice(&buf[start..]);
            c.kept_entries += kept;
        }
        self.durable.send_modify(|d| d.seq = d.seq.max(last_seq));
        true
    }

    /// Starts a compaction when the journal has grown past the threshold.
    fn maybe_compact(&mut self) -> std::io::Result<()> {
        if self.compaction.is_some() {
            return Ok(());
        }
        let (doc, seq) = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            let records = (shared.doc.refresh_tokens.len() + shared.doc.clients.len()) as u64;
            let threshold = self
                .compact_every
                .unwrap_or_else(|| COMPACT_MIN_ENTRIES.max(2 * records));
            if self.journal_entries < threshold {
                return Ok(());
            }
            let now = crate::clock::Clock::now(&crate::clock::SystemClock);
            shared.doc.prune_expired(now);
            (shared.doc.clone(), shared.doc.seq)
        };
        let path = self.path.clone();
        let snapshot = std::thread::Builder::new()
            .name("state-snapshot".into())
            .spawn(move || write_snapshot(&path, &doc))?;
        self.compaction = Some(Compaction {
            seq,
            snapshot,
            kept: Vec::new(),
            kept_entries: 0,
        });
        Ok(())
    }

    /// Once the compaction's snapshot is in place (or, with `wait`, after waiting for it),
    /// replaces the journal with the entries after the snapshot: written to a temporary file,
    /// fsynced, renamed over the journal, directory fsynced.
    fn finish_compaction(&mut self, wait: bool) -> std::io::Result<()> {
        let is_done = self
            .compaction
            .as_ref()
            .is_some_and(|c| wait || c.snapshot.is_finished());
        let Some(compaction) = self.compaction.take_if(|_| is_done) else {
            return Ok(());
        };
        compaction
            .snapshot
            .join()
            .map_err(|_| std::io::Error::other("the snapshot thread panicked"))??;
        let journal = journal_path(&self.path);
        let tmp = journal_tmp_path(&self.path);
        remove_if_present(&tmp)?;
        let mut next = state_files::options()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        next.write_all(&compaction.kept)?;
        next.sync_all()?;
        drop(next);
        std::fs::rename(&tmp, &journal)?;
        sync_dir(&self.path)?;
        // Append mode, as at open.
        self.journal = state_files::open(&journal, state_files::options().append(true))
            .map_err(std::io::Error::other)?;
        self.snapshot_seq = compaction.seq;
        self.journal_entries = compaction.kept_entries;
        self.journal_len = compaction.kept.len() as u64;
        self.durable
            .send_modify(|d| d.seq = d.seq.max(compaction.seq));
        Ok(())
    }

    fn fail(&self, error: &std::io::Error) {
        tracing::error!(
            target: "audit",
            state_path = %self.path.display(),
            "writing the state failed ({error}); refusing further changes until restarted"
        );
        self.durable.send_modify(|d| d.has_failed = true);
    }

    /// After a failed append (a full disk, a file size limit, an I/O error), cuts the journal
    /// back to its last acknowledged entry. Every request in the failed batch was answered
    /// with an error, so none of it may come back at the next start: a refresh-token rotation
    /// the client never received would otherwise turn its retry into reuse. Best effort: if
    /// this fails too, the partial batch stays (a torn last line is dropped at load).
    fn drop_unacknowledged_tail(&mut self) {
        let cut = self
            .journal
            .set_len(self.journal_len)
            .and_then(|()| self.journal.sync_all());
        if let Err(e) = cut {
            tracing::error!(
                target: "audit",
                state_path = %self.path.display(),
                "could not remove the unacknowledged end of the journal ({e})"
            );
        }
    }
}
