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
//! [`StoreError`]) rather than hand out anything that might not survive a restart.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::codes::CodeTable;
use super::document::{OLDEST_READABLE_VERSION, STATE_VERSION};
use super::state_files::{self, dir_of};
use super::tickets::UsedTickets;
use super::{
    Client, ClientStore, CodeGrant, CodeLimitReached, CodeLimits, CodeState, CodeStore, Consent,
    ConsentEntry, ConsentStore, DenyList, DynamicAdmission, EVICTABLE_AFTER_SECONDS, Exchange,
    FamilyStore, ImportError, Mutation, RefreshFamily, RevokedAccess, Rotation, StateDocument,
    StateTransfer, StoreError, StoreResult, TicketStore,
};
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

pub(in crate::store) mod error;
mod load;
mod operations;
mod paths;
mod snapshot;
mod writer;

pub use error::StateError;
use error::io_err;
pub use load::{parse_document, read_state};
use paths::lock_path;
pub use paths::{journal_path, journal_tmp_path, tmp_path};
pub use snapshot::write_snapshot;
use snapshot::{remove_if_present, sync_dir, warn_if_exposed};
use writer::Writer;

#[derive(Debug, Clone, Copy)]
struct Durability {
    seq: u64,
    has_failed: bool,
}

struct Shared {
    doc: StateDocument,
    /// Authorization codes: in memory only (SPEC §9), under the same lock as the families
    /// so that spending a code and creating its family are one step.
    codes: CodeTable,
    /// Consent tickets already used: in memory only, like codes.
    tickets: UsedTickets,
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
    /// Whether the writer folds the journal into the snapshot when the store closes (cleared
    /// only by [`StateStore::close_without_folding`], for tests).
    fold_on_close: Arc<AtomicBool>,
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
            fold_on_close: store.fold_on_close.clone(),
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
            shared: Arc::new(Mutex::new(Shared {
                doc,
                codes: CodeTable::default(),
                tickets: UsedTickets::default(),
            })),
            durable: rx,
            durable_tx: Arc::new(tx),
            writer: None,
            fold_on_close: Arc::new(AtomicBool::new(true)),
            _lock: lock,
        }
    }

    /// Test-only: closes the store the way a process killed right after its last acknowledged
    /// write leaves it, with the journal not folded into the snapshot, so tests can work on
    /// the journal a crash leaves behind. Not for production use: a clean close (drop) leaves
    /// the state file alone holding the whole state.
    #[doc(hidden)]
    pub fn close_without_folding(self) {
        self.fold_on_close.store(false, Ordering::SeqCst);
        drop(self);
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave the document half-changed (apply only
        // inserts and removes whole values), so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the whole document (for tests; commands use [`StateTransfer::export_state`]).
    pub fn snapshot(&self) -> StateDocument {
        self.lock().doc.clone()
    }

    /// Reads under the lock, then waits until everything the read could have seen is durable:
    /// a read never reveals a change that could still be lost (a rotation whose journal line
    /// is not yet on disk must not be handed out again by a grace retry). Once a write has
    /// failed, reads still answer from memory (every change is refused from then on, so
    /// sign-ins that need no change, such as an authorization, keep working until the
    /// restart that `/readyz` asks for).
    async fn read<T>(&self, f: impl FnOnce(&Shared) -> T) -> StoreResult<T> {
        let (value, seq) = {
            let shared = self.lock();
            (f(&shared), shared.doc.seq)
        };
        if !self.durable.borrow().has_failed {
            self.wait(seq).await?;
        }
        Ok(value)
    }

    /// Applies `mutations` under the lock already held and queues them; returns the last
    /// sequence number to wait for. Refuses (changing nothing) once a write has failed, and
    /// when a mutation cannot be serialised: each line is made before anything is applied.
    fn commit(&self, shared: &mut Shared, mutations: &[Mutation]) -> StoreResult<u64> {
        if self.durable.borrow().has_failed {
            return Err(StoreError::failed_writer());
        }
        let mut lines = Vec::with_capacity(mutations.len());
        if self.queue.is_some() {
            for (i, mutation) in mutations.iter().enumerate() {
                let seq = shared.doc.seq + 1 + i as u64;
                let mut line = serde_json::to_vec(&EntryOut { seq, m: mutation })
                    .map_err(|e| StoreError::with_source("a change could not be serialised", e))?;
                line.push(b'\n');
                lines.push((seq, line));
            }
        }
        for mutation in mutations {
            shared.doc.apply(mutation);
            shared.doc.seq += 1;
        }
        if let Some(queue) = &self.queue {
            for entry in lines {
                // A send error means the writer is gone; waiting will then report failure.
                let _ = queue.send(entry);
            }
        }
        Ok(shared.doc.seq)
    }

    /// Waits until `seq` is durable.
    async fn wait(&self, seq: u64) -> StoreResult<()> {
        if !self.is_persistent {
            // Nothing is written, so a change is as durable as it will ever be.
            return Ok(());
        }
        let mut rx = self.durable.clone();
        match rx.wait_for(|d| d.seq >= seq || d.has_failed).await {
            Ok(d) if d.seq >= seq => Ok(()),
            Ok(_) => Err(StoreError::failed_writer()),
            Err(e) => Err(StoreError::with_source("the state writer stopped", e)),
        }
    }

    async fn mutate(&self, mutations: &[Mutation]) -> StoreResult<()> {
        let seq = self.commit(&mut self.lock(), mutations)?;
        self.wait(seq).await
    }

    /// Commits what `decide` returns (nothing when it returns no mutations) under one lock,
    /// then waits for it: a check and its change are one step.
    async fn mutate_if<T>(
        &self,
        decide: impl FnOnce(&mut Shared) -> (T, Vec<Mutation>),
    ) -> StoreResult<T> {
        let (value, seq) = {
            let mut shared = self.lock();
            let (value, mutations) = decide(&mut shared);
            let seq = if mutations.is_empty() {
                // Whatever the decision read must be durable too.
                shared.doc.seq
            } else {
                self.commit(&mut shared, &mutations)?
            };
            (value, seq)
        };
        self.wait(seq).await?;
        Ok(value)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Grant, ImportError, Registration};

    fn client(id: &str) -> Client {
        Client {
            client_id: id.into(),
            client_name: id.into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            token_endpoint_auth_method: crate::store::AuthMethod::ClientSecretBasic,
            grant_types: vec!["authorization_code".into()],
            response_types: vec!["code".into()],
            scope: String::new(),
            secret_hash: Some("old-hash".into()),
            client_id_issued_at: 1,
            registration: Registration::Provisioned,
            application_type: None,
        }
    }

    fn family(client_id: &str) -> RefreshFamily {
        RefreshFamily {
            grant: Grant {
                client_id: client_id.into(),
                sub: "alice".into(),
                groups: vec![],
                scope: String::new(),
                resource: "https://mcp.example.com/mcp".into(),
                issuer: String::new(),
            },
            current_hash: "h".into(),
            previous_hash: None,
            rotated_at: None,
            created_at: 1,
            // Long expired by the system clock: the fold at close keeps it all the same.
            expires_at: 10_000,
            rotation_answer: None,
        }
    }

    /// Puts one client and one family.
    async fn populate(store: &StateStore) {
        store.put_client(client("c")).await.unwrap();
        let code = CodeGrant {
            grant: family("c").grant,
            redirect_uri: "http://127.0.0.1/cb".into(),
            code_challenge: "x".into(),
            expires_at: 60,
        };
        store
            .insert_code("h", code, CodeLimits::default(), 1)
            .await
            .unwrap()
            .unwrap();
        let exchanged = store.exchange_code("h", 1, "k", family("c")).await.unwrap();
        assert_eq!(exchanged, Exchange::Exchanged);
    }

    #[tokio::test]
    async fn a_clean_close_leaves_the_state_file_alone_holding_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth_server.json");
        let store = StateStore::open(&path).unwrap();
        populate(&store).await;
        assert!(journal_path(&path).exists());
        let expected = store.snapshot();
        drop(store);
        assert!(!journal_path(&path).exists(), "the journal is folded in");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(parse_document(&text, &path).unwrap(), expected);
        // It opens again and the journal comes back empty.
        let store = StateStore::open(&path).unwrap();
        assert_eq!(store.snapshot(), expected);
        drop(store);
    }

    #[tokio::test]
    async fn a_close_without_folding_leaves_the_journal_as_a_crash_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth_server.json");
        let store = StateStore::open(&path).unwrap();
        populate(&store).await;
        let expected = store.snapshot();
        store.close_without_folding();
        let journal = std::fs::read_to_string(journal_path(&path)).unwrap();
        assert_eq!(journal.lines().count(), 2, "{journal}");
        let (doc, needs_snapshot) = read_state(&path).unwrap();
        assert!(needs_snapshot);
        assert_eq!(doc, expected);
    }

    #[tokio::test]
    async fn an_import_needs_an_empty_store_and_only_a_secret_is_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let source = StateStore::in_memory(StateDocument::default());
        populate(&source).await;
        let exported = source.export_state().await.unwrap();

        let path = dir.path().join("auth_server.json");
        let store = StateStore::open(&path).unwrap();
        store.import_state(exported.clone()).await.unwrap();
        match store.import_state(exported.clone()).await {
            Err(ImportError::NotEmpty {
                clients: 1,
                consents: 0,
                families: 1,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(store.set_client_secret("c", "new-hash").await.unwrap());
        assert!(!store.set_client_secret("missing", "x").await.unwrap());
        let mut public = client("p");
        public.secret_hash = None;
        store.put_client(public).await.unwrap();
        assert!(!store.set_client_secret("p", "x").await.unwrap());
        assert_eq!(store.client("p").await.unwrap().unwrap().secret_hash, None);
        drop(store);

        let (doc, _) = read_state(&path).unwrap();
        assert_eq!(doc.clients["c"].secret_hash.as_deref(), Some("new-hash"));
        assert_eq!(doc.refresh_tokens, exported.refresh_tokens);
    }
}
