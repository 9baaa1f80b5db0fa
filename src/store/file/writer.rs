//! The single writer thread: group commit of journal lines, compaction beside it, and the
//! fold of the journal into the snapshot at a clean close.

use super::*;

/// The single thread that writes the journal and snapshots.
pub(super) struct Writer {
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) durable: Arc<watch::Sender<Durability>>,
    pub(super) path: PathBuf,
    pub(super) journal: File,
    pub(super) journal_entries: u64,
    /// The journal's length up to its last durable (acknowledged) entry.
    pub(super) journal_len: u64,
    pub(super) snapshot_seq: u64,
    /// The compaction in progress, if any.
    pub(super) compaction: Option<Compaction>,
    /// [`COMPACT_EVERY_ENV`]: a fixed compaction threshold, for tests.
    pub(super) compact_every: Option<u64>,
    /// See [`StateStore::fold_on_close`].
    pub(super) fold_on_close: Arc<AtomicBool>,
}

/// A snapshot being written by a helper thread while the writer goes on journaling.
pub(super) struct Compaction {
    /// The sequence number the snapshot holds.
    pub(super) seq: u64,
    /// The helper writing it.
    pub(super) snapshot: std::thread::JoinHandle<std::io::Result<()>>,
    /// The durable journal entries after `seq`: the journal that replaces the current one.
    pub(super) kept: Vec<u8>,
    pub(super) kept_entries: u64,
}

/// How often the writer looks at a compaction in progress while no batch arrives.
pub(super) const COMPACTION_POLL: std::time::Duration = std::time::Duration::from_millis(5);

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<(u64, Vec<u8>)>) {
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
            // The store is gone: a compaction in progress completes first.
            self.fail(&e);
        } else if self.fold_on_close.load(Ordering::SeqCst)
            && let Err(e) = self.fold_at_close()
        {
            // Nothing is lost: the journal still holds it, and the next open folds it in.
            tracing::warn!(
                state_path = %self.path.display(),
                "could not fold the journal into the state file at close ({e}); the next start will"
            );
        }
    }

    /// At a clean close (the queue is closed and everything in it is durable), makes the state
    /// file alone the whole state (SPEC §10): a snapshot of the document, written like every
    /// snapshot (temporary file, fsync, rename, directory fsync), then the journal removed and
    /// the directory fsynced. A copy of `auth_server.json` taken after a clean shutdown or a
    /// command such as `clients add` then misses nothing. A crash in between leaves a new
    /// snapshot with the old journal, whose entries the next load skips as already included.
    pub(super) fn fold_at_close(&mut self) -> std::io::Result<()> {
        if self.journal_entries > 0 {
            // Exactly the state, unpruned: the server's clock may not be the system's (tests
            // run on a manual one), and compactions prune anyway.
            let doc = self
                .shared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .doc
                .clone();
            write_snapshot(&self.path, &doc)?;
            self.snapshot_seq = doc.seq;
            self.journal_entries = 0;
        }
        // Every entry is in the snapshot now; the next open creates the journal again.
        remove_if_present(&journal_path(&self.path))?;
        sync_dir(&self.path)
    }

    /// Appends one batch to the journal and makes it durable; `false` if that failed (the
    /// store is then failed and the writer must stop).
    pub(super) fn commit(
        &mut self,
        batch: impl Iterator<Item = (u64, Vec<u8>)>,
        buf: &mut Vec<u8>,
    ) -> bool {
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
    pub(super) fn maybe_compact(&mut self) -> std::io::Result<()> {
        if self.compaction.is_some() {
            return Ok(());
        }
        let (doc, seq) = {
            let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            let records = (shared.doc.refresh_tokens.len() + shared.doc.clients.len()) as u64;
            let threshold = self
                .compact_every
                .unwrap_or_else(|| COMPACT_MIN_ENTRIES.max(2 * records));
            if self.journal_entries < threshold {
                return Ok(());
            }
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
    pub(super) fn finish_compaction(&mut self, wait: bool) -> std::io::Result<()> {
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

    pub(super) fn fail(&self, error: &std::io::Error) {
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
    pub(super) fn drop_unacknowledged_tail(&mut self) {
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
