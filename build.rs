//! Stamps the commit into the binary for `mcp-authd --version` and the start-up log line.
//! Taken from `MCP_AUTHD_COMMIT` when set (a container build without `.git`), else from git,
//! else "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=MCP_AUTHD_COMMIT");
    let commit = std::env::var("MCP_AUTHD_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: HEAD itself, the branch it names, and packed refs.
            if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
                println!("cargo:rerun-if-changed={git_dir}/HEAD");
            }
            if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
                println!("cargo:rerun-if-changed={common}/packed-refs");
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    println!("cargo:rerun-if-changed={common}/{branch}");
                }
            }
            let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
            Some(if dirty { format!("{hash}-dirty") } else { hash })
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MCP_AUTHD_COMMIT={commit}");
}
