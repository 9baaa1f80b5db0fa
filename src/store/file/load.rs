//! Loading: the snapshot parsed (with its version checked), the journal replayed on top.

use super::*;

/// Parses a state document's text (a snapshot, or inline `MCP_AUTH_SERVER_CONFIG`) and
/// upgrades it to the current version.
pub fn parse_document(text: &str, origin: &Path) -> Result<StateDocument, StateError> {
    let mut doc = parse_as_written(text, origin)?;
    doc.upgrade();
    Ok(doc)
}

/// Parses a state document in the version it was written in (which its journal matches).
pub(super) fn parse_as_written(text: &str, origin: &Path) -> Result<StateDocument, StateError> {
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
pub(super) fn replay(
    doc: &mut StateDocument,
    bytes: &[u8],
    journal: &Path,
) -> Result<(), StateError> {
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
