//! The state loaders: `parse_document` (a snapshot, or inline `MCP_AUTH_SERVER_CONFIG`) and
//! `read_state` (snapshot plus journal replay, as at boot). Arbitrary bytes give `Ok` or
//! `Err`, never a panic; a parsed document survives a save/load round trip; the journal is
//! replayed from real files.
//!
//! Input: the snapshot text, a NUL byte, then the journal bytes (no NUL: snapshot only).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_authd::store::document::STATE_VERSION;
use mcp_authd::store::file::{journal_path, parse_document, read_state};

/// One state path per fuzzing process (libFuzzer runs inputs one at a time), under
/// `MCP_AUTHD_FUZZ_SCRATCH` when set (smoke.sh points it at a tmpfs), else the temp directory.
/// The directory is left behind: libFuzzer exits without running destructors.
fn state_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let base = std::env::var_os("MCP_AUTHD_FUZZ_SCRATCH")
            .map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = base.join(format!("mcp-authd-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        // The loader refuses a state directory others can write to (whatever the umask).
        let owner_only =
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700);
        std::fs::set_permissions(&dir, owner_only).expect("an owner-only scratch directory");
        dir.join("auth_server.json")
    })
}

fuzz_target!(|data: &[u8]| {
    let (snapshot, journal) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let origin = std::path::Path::new("fuzz");
    let parsed = std::str::from_utf8(snapshot)
        .ok()
        .map(|text| parse_document(text, origin));
    if let Some(Ok(doc)) = &parsed {
        let saved = serde_json::to_string(doc).expect("a document serialises");
        let again = parse_document(&saved, origin).expect("a saved document loads");
        assert_eq!(&again, doc, "save/load changed the document");
    }

    let Some(journal) = journal else {
        return;
    };
    let path = state_path();
    std::fs::write(path, snapshot).expect("write the snapshot");
    std::fs::write(journal_path(path), journal).expect("write the journal");
    let loaded = read_state(path);
    match (&parsed, &loaded) {
        // A snapshot that does not parse cannot load, whatever the journal says.
        (None | Some(Err(_)), Ok(_)) => panic!("an invalid snapshot loaded"),
        // Replay never goes backwards or loses the snapshot's own sequence number.
        (Some(Ok(doc)), Ok((state, _))) => assert!(state.seq >= doc.seq),
        _ => {}
    }
    if journal.is_empty()
        && let (Some(Ok(doc)), Ok((state, needs_snapshot))) = (&parsed, &loaded)
    {
        assert_eq!(state, doc);
        // Without a journal, only an older format makes the store rewrite the snapshot.
        let written_version = serde_json::from_slice::<serde_json::Value>(snapshot)
            .ok()
            .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64))
            .unwrap_or(u64::from(STATE_VERSION));
        assert_eq!(*needs_snapshot, written_version < u64::from(STATE_VERSION));
    }
});
