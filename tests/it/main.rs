//! Integration tests: the real router on a loopback port, driven over HTTP, and the real
//! binary for the command line. One test binary (every file under `tests/` would be linked
//! separately).

mod cli;
mod discovery;
mod flow;
mod helpers;
mod register;
mod token;
mod authorize;
mod state;
