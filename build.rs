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
            // Rebuild when HEAD moves: HEAD itself, the branch it names, and packed refs. Only
            // files that exist are named: a missing one would make cargo rerun this script,
            // and so rebuild the crate, on every build.
            let mut watch = Vec::new();
            if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
                watch.push(format!("{git_dir}/HEAD"));
            }
            if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
                watch.push(format!("{common}/packed-refs"));
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watch.push(format!("{common}/{branch}"));
                }
            }
            for path in watch.iter().filter(|p| std::path::Path::new(p).exists()) {
                println!("cargo:rerun-if-changed={path}");
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MCP_AUTHD_COMMIT={commit}");
}
