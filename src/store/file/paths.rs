//! The files beside `auth_server.json`: journal, lock, temporary snapshot and journal.

use super::*;

/// The journal that belongs to a state file.
pub fn journal_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

pub(super) fn lock_path(state: &Path) -> PathBuf {
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
