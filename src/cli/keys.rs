//! `mcp-authd gen-key`: a new signing key pair, written owner-only and never over a file.

use super::*;

pub(super) fn parse_key_algorithm(name: &str) -> Result<SigningAlgorithm, String> {
    match SigningAlgorithm::parse(name) {
        Some(a) if a.is_asymmetric() => Ok(a),
        Some(_) => Err("HS256 uses jwtSecret, not a key pair: run `mcp-authd gen-secret`".into()),
        None => Err(format!("{name:?} is not EdDSA or ES256")),
    }
}

/// `gen-key`: both files are created exclusively (an existing file is never replaced), the
/// private one with mode 0600 from its first byte.
pub(super) fn gen_key(
    algorithm: SigningAlgorithm,
    output: &Path,
    public_output: Option<PathBuf>,
) -> ExitCode {
    let public_path = public_output.unwrap_or_else(|| {
        let mut name = output.as_os_str().to_owned();
        name.push(".pub");
        PathBuf::from(name)
    });
    if public_path == output {
        return fail(["--public-output must differ from --output".to_string()]);
    }
    let encoded = PrivateKey::generate(algorithm).and_then(|key| {
        let private = key.to_pem()?;
        let public = key.public_key().to_pem()?;
        Ok((key.public_key().kid().to_string(), private, public))
    });
    let (kid, private_pem, public_pem) = match encoded {
        Ok(parts) => parts,
        Err(e) => return fail([e.to_string()]),
    };
    if let Err(e) = write_new(output, private_pem.as_bytes(), 0o600) {
        return fail([e]);
    }
    if let Err(e) = write_new(&public_path, public_pem.as_bytes(), 0o644) {
        // Leave no half-made pair behind, so that the command can simply be run again.
        let _ = std::fs::remove_file(output);
        return fail([e]);
    }
    println!("kid: {kid}");
    println!("private key: {} (mode 0600)", output.display());
    println!("public key: {}", public_path.display());
    eprintln!(
        "Use it with \"signing\": {{\"algorithm\": \"{algorithm}\", \"privateKeyFile\": \"{}\"}} in serverAuth.oauthAs.",
        output.display()
    );
    ExitCode::SUCCESS
}

/// Creates `path` (refusing an existing one) with `mode`, writes `bytes` and syncs them.
pub(super) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            format!(
                "refusing to overwrite {}: it already exists",
                path.display()
            )
        }
        _ => format!("cannot create {}: {e}", path.display()),
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            // The file is ours (just created): a truncated key must not stay behind.
            let _ = std::fs::remove_file(path);
            format!("cannot write {}: {e}", path.display())
        })
}
