//! Why a state file could not be opened, and the I/O error wrapper every file step uses.

use super::*;

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

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}
