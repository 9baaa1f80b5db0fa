#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (configuration: deny.toml; see ARCHITECTURE.md,
# "Supply chain").
#
# - licenses, bans, sources: offline, always run, and fail the build.
# - advisories (RustSec database, yanked crates): run when the advisory database can be
#   fetched; where it cannot (no route to its git host, as in this project's CI), the check is
#   reported as SKIPPED and does not fail the build. Any other advisories failure does.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
  # A release build of cargo-deny takes about 5 minutes on 2 cores; a debug build about 2.5,
  # and checks this tree in under 2 seconds.
  echo "== installing cargo-deny (cargo install, debug build)"
  cargo install cargo-deny --locked --debug --version '^0.20'
fi
cargo deny --version

echo "== cargo deny check licenses bans sources"
cargo deny --locked check --hide-inclusion-graph licenses bans sources

echo "== cargo deny check advisories"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if cargo deny --locked check advisories >"$log" 2>&1; then
  tail -n 1 "$log"
elif grep -q "failed to fetch advisory database" "$log"; then
  echo "advisories SKIPPED: the RustSec advisory database cannot be fetched from this machine"
else
  cat "$log"
  exit 1
fi
