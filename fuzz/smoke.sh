#!/usr/bin/env bash
# A short libFuzzer run of every fuzz target, for CI: builds them (no sanitizer, parallel
# codegen, for build speed), runs each for FUZZ_SECONDS (default 20) from the seeds in
# fuzz/seeds/<target>, and fails on the first crash. Prints the executions per target and in
# total. See fuzz/README.md for long runs. Arguments, if any, name the targets to run.
#
# cargo-fuzz needs unstable rustc flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept
# them, so no nightly toolchain is required.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-20}
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked --version '^0.13'
fi

# The same flags for build and run, so `run` does not rebuild.
flags=(--release --sanitizer none --codegen-units 16)

echo "== building the fuzz targets"
cargo fuzz build "${flags[@]}"

work=$(mktemp -d)
# state_loader writes a snapshot and a journal per input: keep them in memory when possible.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  scratch=$(mktemp -d -p /dev/shm)
else
  scratch=$(mktemp -d)
fi
export MCP_AUTHD_FUZZ_SCRATCH="$scratch"
trap 'rm -rf "$work" "$scratch"' EXIT

total=0
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
for target in "${targets[@]}"; do
  corpus="$work/corpus/$target"
  mkdir -p "$corpus"
  log="$work/$target.log"
  # -timeout: one input may take at most 10 s; -rss_limit_mb: a leak or blow-up fails the run.
  if ! cargo fuzz run "${flags[@]}" "$target" "$corpus" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" >"$log" 2>&1; then
    tail -n 60 "$log"
    for crash in "$work"/crash-* "$work"/timeout-* "$work"/oom-*; do
      [ -e "$crash" ] || continue
      echo "-- reproducer $crash (base64):"
      base64 -w0 "$crash"
      echo
    done
    echo "fuzz target $target FAILED"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  runs=${runs:-0}
  total=$((total + runs))
  echo "fuzz $target: $runs executions in ${seconds}s, no crash"
done
echo "fuzz total: $total executions"
