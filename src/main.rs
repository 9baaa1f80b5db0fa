//! The `mcp-authd` binary: parse the command line and run it.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    mcp_authd::cli::run(mcp_authd::cli::Cli::parse())
}
