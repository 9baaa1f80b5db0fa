//! Opening state files safely (SPEC §17). Every state file (snapshot, journal, lock and their
//! temporary files) is opened without following a symbolic link and, once open, must be a
//! regular file owned by the account this process runs as; the directory holding them must not
//! be writable by group or others, since whoever can write there can replace any of them.
//!
//! The checks run on the opened handle (`fstat`), not on the path beforehand, so nothing can be
//! swapped in between the check and the use.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::file::error::StateError;

/// The effective uid of this process: the owner every state file must have, and the only peer
/// the admin socket serves.
#[cfg(unix)]
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Options for opening a state file: created 0600, and never through a symbolic link
/// (`O_NOFOLLOW`: the open fails if the last path component is a link, so a link planted as the
/// journal cannot make the store truncate or create its target).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Opens the state file at `path` with `options` (from [`options`]) and checks what was
/// opened: a regular file owned by this process's effective uid.
pub fn open(path: &Path, options: &OpenOptions) -> Result<File, StateError> {
    let file = options.open(path).map_err(|e| open_error(path, e))?;
    check_opened(path, &file)?;
    Ok(file)
}

/// Opens an existing state file for reading; `None` when there is none.
pub fn open_existing(path: &Path) -> Result<Option<File>, StateError> {
    match options().read(true).open(path) {
        Ok(file) => {
            check_opened(path, &file)?;
            Ok(Some(file))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(open_error(path, e)),
    }
}

/// An open error, named as a symbolic link when that is what it is (`O_NOFOLLOW` reports a
/// link as ELOOP, "too many levels of symbolic links", which would not tell the operator why).
fn open_error(path: &Path, source: std::io::Error) -> StateError {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        unsafe_file(
            path,
            format!(
                "{} is a symbolic link; state files are never opened through one: replace it with the file itself",
                path.display()
            ),
        )
    } else {
        StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn unsafe_file(path: &Path, message: String) -> StateError {
    StateError::Unsafe {
        path: path.to_path_buf(),
        message,
    }
}

/// Checks an opened state file: a regular file, owned by this process's effective uid.
fn check_opened(path: &Path, file: &File) -> Result<(), StateError> {
    let meta = file.metadata().map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(unsafe_file(
            path,
            format!("{} is not a regular file", path.display()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let (owner, me) = (meta.uid(), euid());
        if owner != me {
            return Err(unsafe_file(
                path,
                format!(
                    "{} belongs to uid {owner}, but mcp-authd runs as uid {me}: run it as the owner of its state (or chown the file)",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The directory holding the state file.
pub fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Refuses a state directory that group or others can write to: they could replace the state,
/// or plant a link where the next snapshot or journal goes.
pub fn check_dir(state: &Path) -> Result<(), StateError> {
    let dir = dir_of(state);
    let meta = std::fs::metadata(dir).map_err(|source| StateError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(unsafe_file(
                dir,
                format!(
                    "refusing the state directory {}: it is writable by group or others (mode {mode:o}); run chmod go-w on it or choose another directory",
                    dir.display()
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// Whether this process can create files in the state directory (for `check`): `faccessat`
/// with the effective uid, which also reports a read-only file system (EROFS) for root.
pub fn check_dir_writable(state: &Path) -> Result<(), StateError> {
    let dir = dir_of(state);
    let is_dir = std::fs::metadata(dir).map_err(|source| StateError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let not_writable = |detail: String| {
        unsafe_file(
            dir,
            format!(
                "the state directory {} is not writable by this user ({detail}); the server could not save its state",
                dir.display()
            ),
        )
    };
    if !is_dir.is_dir() {
        return Err(not_writable("not a directory".into()));
    }
    #[cfg(unix)]
    {
        use rustix::fs::{Access, AtFlags, CWD, accessat};
        accessat(
            CWD,
            dir,
            Access::WRITE_OK | Access::EXEC_OK,
            AtFlags::EACCESS,
        )
        .map_err(|e| not_writable(std::io::Error::from(e).to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn message(e: StateError) -> String {
        match e {
            StateError::Unsafe { message, .. } => message,
            other => panic!("expected a refusal, got {other}"),
        }
    }

    #[test]
    fn a_symbolic_link_is_refused_and_its_target_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let link = dir.path().join("auth_server.json.journal");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let write = open(&link, options().append(true).create(true)).unwrap_err();
        assert!(message(write).contains("is a symbolic link"));
        let read = open_existing(&link).unwrap_err();
        assert!(message(read).contains("is a symbolic link"));
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");

        // A dangling link is not followed to create its target either.
        let missing = dir.path().join("missing");
        let lock = dir.path().join("auth_server.json.lock");
        std::os::unix::fs::symlink(&missing, &lock).unwrap();
        assert!(open(&lock, options().write(true).create(true)).is_err());
        assert!(!missing.exists());
    }

    #[test]
    fn only_regular_files_are_state_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("auth_server.json");
        std::fs::create_dir(&sub).unwrap();
        assert!(message(open_existing(&sub).unwrap_err()).contains("not a regular file"));
        assert!(open_existing(&dir.path().join("absent")).unwrap().is_none());
        let file = dir.path().join("present");
        std::fs::write(&file, b"{}").unwrap();
        assert!(open_existing(&file).unwrap().is_some());
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        if euid() != 0 {
            eprintln!("SKIPPED a_file_of_another_user_is_refused: needs root to chown a file");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth_server.json");
        std::fs::write(&file, b"{}").unwrap();
        std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
        let e = message(open_existing(&file).unwrap_err());
        assert!(e.contains("belongs to uid 65534"), "{e}");
        assert!(e.contains("runs as uid 0"), "{e}");
    }

    #[test]
    fn a_directory_writable_by_group_or_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("auth_server.json");
        for ok in [0o700, 0o750, 0o755, 0o711] {
            chmod(dir.path(), ok);
            assert!(check_dir(&state).is_ok(), "{ok:o}");
        }
        for bad in [0o777, 0o770, 0o702, 0o1777, 0o2775] {
            chmod(dir.path(), bad);
            let e = message(check_dir(&state).unwrap_err());
            assert!(
                e.contains("writable by group or others") && e.contains(&format!("{bad:o}")),
                "{e}"
            );
        }
        chmod(dir.path(), 0o700);
    }

    #[test]
    fn writability_of_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_dir_writable(&dir.path().join("auth_server.json")).is_ok());
        // A relative state path lives in the working directory.
        assert!(check_dir_writable(Path::new("auth_server.json")).is_ok());
        let missing = dir.path().join("gone").join("auth_server.json");
        assert!(check_dir_writable(&missing).is_err());
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let e = message(check_dir_writable(&file.join("auth_server.json")).unwrap_err());
        assert!(e.contains("not a directory"), "{e}");
        // Without write permission only root may still write (it bypasses the mode).
        let read_only = dir.path().join("ro");
        std::fs::create_dir(&read_only).unwrap();
        chmod(&read_only, 0o500);
        let result = check_dir_writable(&read_only.join("auth_server.json"));
        assert_eq!(result.is_ok(), euid() == 0, "{result:?}");
        chmod(&read_only, 0o700);
    }
}
