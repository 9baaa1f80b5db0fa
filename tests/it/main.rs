//! Integration tests: the real router on a loopback port, driven over HTTP, and the real
//! binary for the command line. One test binary (every file under `tests/` would be linked
//! separately).

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attacks;
mod authorize;
mod cli;
mod clients;
mod deploy;
mod discovery;
mod durability;
mod example_server;
mod flow;
mod helpers;
mod limits;
mod process;
mod properties;
mod register;
mod resource;
mod rmcp_client;
mod state;
mod token;
