#!/usr/bin/env bash
# Checks the deployment files that run no service here: the Kubernetes manifests (schema,
# shape, and `mcp-authd check` on the file-store configuration), the systemd unit
# (systemd-analyze when available, a static check of its hardening always), and the
# Dockerfile (static: no container engine here). The nginx and Caddy recipes run for real
# in `cargo test` (tests/it/deploy.rs). Run by .ci/run after the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== kubernetes: kubernetes-validate --strict (deploy/requirements.txt)"
venv=deploy/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r deploy/requirements.txt
# The oldest Kubernetes release still common in production, and the newest the pinned
# validator knows; its schemas ship in the package, so nothing is fetched.
for version in 1.29.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" deploy/kubernetes/*.yaml
done
"$venv/bin/python" deploy/kubernetes/check_shape.py "$work" deploy/kubernetes/*.yaml

echo "== kubernetes: the file-store servers.json passes 'mcp-authd check'"
# The PostgreSQL one is only shape-checked: `check` would need its database.
MCP_AUTH_JWT_SECRET=$(cargo run --locked -q -- gen-secret) \
  MCP_AUTH_SERVER_PATH="$work/auth_server.json" \
  cargo run --locked -q -- check --config "$work/file-store.servers.json" >/dev/null

echo "== systemd: deploy/systemd/mcp-authd.service"
unit=deploy/systemd/mcp-authd.service
for line in \
  "User=mcp-authd" "StateDirectory=mcp-authd" "ProtectSystem=strict" "ProtectHome=yes" \
  "NoNewPrivileges=yes" "PrivateTmp=yes" "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" \
  "SystemCallFilter=@system-service" "CapabilityBoundingSet=" "UMask=0077" \
  'ExecReload=/bin/kill -HUP $MAINPID'; do
  grep -qxF "$line" "$unit" || fail "$unit lacks the line $line"
done
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\?$/\1/p' "$unit")
[ -n "$stop" ] && [ "$stop" -gt 30 ] || fail "$unit: TimeoutStopSec must exceed the 30 s drain"
if command -v systemd-analyze >/dev/null; then
  # verify insists that ExecStart exists: point a copy at the binary just built (the only
  # change).
  cargo build --locked -q --bin mcp-authd
  sed "s#/usr/local/bin/mcp-authd#$PWD/target/debug/mcp-authd#g" "$unit" >"$work/mcp-authd.service"
  # verify reports an unknown or misspelt directive as a warning with exit 0: any output fails.
  out=$(systemd-analyze verify "$work/mcp-authd.service" 2>&1) || fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
  # Exposure 0-10 in tenths: at most 2.0 ("OK").
  systemd-analyze security --offline=yes --threshold=20 "$work/mcp-authd.service" >/dev/null ||
    fail "systemd-analyze security: $(systemd-analyze security --offline=yes "$work/mcp-authd.service" 2>&1 | tail -1)"
  systemd-analyze security --offline=yes "$work/mcp-authd.service" 2>&1 | tail -1
  if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers --dry-run --root="$work" "$PWD/deploy/systemd/mcp-authd.sysusers" >/dev/null 2>&1 ||
      fail "systemd-sysusers rejects deploy/systemd/mcp-authd.sysusers"
  fi
else
  echo "SKIP: systemd-analyze is not installed; only the static check of the unit ran"
fi

echo "== Dockerfile (static: no container engine here)"
! grep -q 'servers.example.json' Dockerfile || fail "the Dockerfile bakes in the example configuration"
grep -qF 'CMD ["mcp-authd", "health"]' Dockerfile || fail "the Dockerfile has no HEALTHCHECK with mcp-authd health"

echo "deploy checks passed"
