//! Writing a snapshot durably (temporary file, fsync, rename, directory fsync), and the
//! small file steps around it.

use super::*;

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
pub(super) fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(dir_of(path))?.sync_all()
}

pub(super) fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Warns when the state file can be read or written by other users: it holds client secret
/// hashes and refresh-token hashes. (Files this store writes are created 0600; a file the
/// operator copied in keeps its mode until the next snapshot replaces it.)
pub(super) fn warn_if_exposed(path: &Path) {
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
