//! The `mcp-authd` binary: parse the command line and run it.

use clap::Parser as _;

/// mimalloc instead of the system allocator: with glibc malloc, allocation was about 15% of
/// the server's CPU time under load (see ARCHITECTURE.md, "Performance").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mcp_authd::cli::run(mcp_authd::cli::Cli::parse())
}
