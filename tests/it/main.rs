//! Integration tests: the real router on a loopback port, driven over HTTP, and the real
//! binary for the command line. One test binary (every file under `tests/` would be linked
//! separately).

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_socket;
mod attacks;
mod authorize;
mod bench;
mod cimd;
mod cli;
mod clients;
mod connections;
mod deploy;
mod discovery;
mod doc_server;
mod durability;
mod example_server;
mod flow;
mod helpers;
mod identity_headers;
mod limits;
mod operations;
mod process;
mod properties;
mod register;
mod request_bounds;
mod resource;
mod rmcp_client;
mod signing;
mod state;
mod state_files;
mod token;
