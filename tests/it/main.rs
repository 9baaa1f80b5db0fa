//! Integration tests: the real router on a loopback port, driven over HTTP, and the real
//! binary for the command line. One test binary (every file under `tests/` would be linked
//! separately).

// Tests may panic on unexpected values; that is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_commands;
mod admin_socket;
mod authorize;
mod bench;
mod cimd;
mod cli;
mod clients;
mod config;
mod connections;
mod deploy;
mod discovery;
mod doc_server;
mod durability;
mod example_server;
mod flow;
mod helpers;
mod identity_headers;
mod layering;
mod limits;
mod operations;
mod process;
mod register;
mod reload;
mod request_bounds;
mod resource;
mod rmcp_client;
mod signing;
mod state;
mod state_files;
mod store_contract;
mod token;
mod token_lifecycle;
mod two_hosts;
