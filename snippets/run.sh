#!/usr/bin/env bash
# Tests the token-verification snippets (Python and TypeScript) against real mcp-authd tokens.
#
# Builds mcp-authd, starts it on a free loopback port with a throwaway configuration, signs
# "alice@example.com" in through the authorization-code flow with PKCE (as the SSO proxy would),
# and checks that each snippet accepts the real access token and refuses forged ones. Every
# process started here is stopped on exit.
#
#   bash snippets/run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
snippets=$root/snippets
export NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

work=$(mktemp -d)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
not_ok() { failed=$((failed + 1)); echo "FAIL $*"; }
die() {
  echo "snippets: $*" >&2
  echo "$passed passed, $((failed + 1)) failed"
  exit 1
}

# --- tools ----------------------------------------------------------------------------------
echo "== building mcp-authd"
cargo build --locked -q --bin mcp-authd || die "cargo build failed"
authd=$root/target/debug/mcp-authd

echo "== Python venv (snippets/.venv)"
[ -x "$snippets/.venv/bin/python" ] || python3 -m venv "$snippets/.venv" || die "python3 -m venv failed"
py=$snippets/.venv/bin/python
"$py" -m pip install -q -r "$snippets/requirements.txt" || die "pip install failed"

echo "== npm ci (snippets/node_modules)"
(cd "$snippets" && npm ci --silent >"$work/npm.log" 2>&1) || { cat "$work/npm.log" >&2; die "npm ci failed"; }

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # url: any HTTP answer within 30 s
  local deadline=$((SECONDS + 30))
  until curl -s -o /dev/null "$1"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

# --- mcp-authd ------------------------------------------------------------------------------
port=$(free_port)
issuer=http://127.0.0.1:$port
resource=$issuer/mcp
secret=$("$authd" gen-secret) || die "gen-secret failed"
cat >"$work/servers.json" <<EOF
{
  "serverAuth": {
    "oauthAs": {
      "issuerUrl": "$issuer",
      "jwtSecret": "$secret",
      "trustedSourceCidrs": ["127.0.0.1/32"],
      "redirectUriAllowlist": ["http://127.0.0.1:*"]
    }
  }
}
EOF
redirect_uri=http://127.0.0.1:9/cb
"$authd" clients add --config "$work/servers.json" --name snippets --redirect-uri "$redirect_uri" \
  >"$work/client.txt" 2>"$work/client.err" || { cat "$work/client.err" >&2; die "clients add failed"; }
client_id=$(sed -n 's/^client_id: //p' "$work/client.txt")
client_secret=$(sed -n 's/^client_secret: //p' "$work/client.txt")
[ -n "$client_id" ] && [ -n "$client_secret" ] || die "clients add printed no credentials"

echo "== starting mcp-authd on $issuer"
RUST_LOG=warn "$authd" serve --config "$work/servers.json" --listen "127.0.0.1:$port" \
  >"$work/authd.log" 2>&1 &
pids+=($!)
wait_http "$issuer/healthz" || { cat "$work/authd.log" >&2; die "mcp-authd did not start"; }

# --- a real access token: authorization code + PKCE, signed in by the "proxy" -----------------
verifier=$("$py" -c 'import secrets; print(secrets.token_urlsafe(48))')
challenge=$("$py" -c 'import base64, hashlib, sys
print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).rstrip(b"=").decode())' "$verifier")
location=$(curl -s -o /dev/null -w '%{redirect_url}' -G "$issuer/oauth/authorize" \
  -H 'X-Forwarded-User: alice@example.com' \
  --data-urlencode response_type=code --data-urlencode "client_id=$client_id" \
  --data-urlencode "redirect_uri=$redirect_uri" --data-urlencode "code_challenge=$challenge" \
  --data-urlencode code_challenge_method=S256 --data-urlencode state=xyz)
code=$("$py" -c 'import sys, urllib.parse as u
print(u.parse_qs(u.urlparse(sys.argv[1]).query).get("code", [""])[0])' "$location")
[ -n "$code" ] || die "no code in the authorize redirect: '$location'"
curl -s -u "$client_id:$client_secret" "$issuer/oauth/token" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$code" \
  --data-urlencode "redirect_uri=$redirect_uri" --data-urlencode "code_verifier=$verifier" \
  >"$work/token.json"
token=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("access_token", ""))' "$work/token.json")
[ -n "$token" ] || die "no access token: $(cat "$work/token.json")"
echo "== got an access token for alice@example.com"

# --- forged tokens --------------------------------------------------------------------------
# Each is refused for one reason; the ones signed with the real secret isolate the header checks.
MCP_AUTH_JWT_SECRET=$secret "$py" - "$token" "$work" <<'EOF'
import base64, json, sys, time, warnings
import jwt

warnings.simplefilter("ignore")  # PyJWT warns that the key is short for HS512: that is the point

token, work = sys.argv[1], sys.argv[2]
secret = __import__("os").environ["MCP_AUTH_JWT_SECRET"]
header_b64, payload_b64, signature = token.split(".")
claims = jwt.decode(token, options={"verify_signature": False})

def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

forged = {
    # the payload changed (another user), the signature kept
    "tampered": f"{header_b64}.{b64({**claims, 'sub': 'mallory@example.com'})}.{signature}",
    # RFC 8725 §2.1: an unsigned token
    "alg_none": f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{payload_b64}.",
    "hs512": jwt.encode(claims, secret, algorithm="HS512", headers={"typ": "at+jwt"}),
    "no_typ": jwt.encode(claims, secret, algorithm="HS256", headers={"typ": None}),
    "typ_jwt": jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "JWT"}),
    "wrong_key": jwt.encode(claims, "x" * 43, algorithm="HS256", headers={"typ": "at+jwt"}),
    "expired": jwt.encode(
        {**claims, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
        secret, algorithm="HS256", headers={"typ": "at+jwt"},
    ),
    "no_sub": jwt.encode(
        {k: v for k, v in claims.items() if k != "sub"}, secret, algorithm="HS256",
        headers={"typ": "at+jwt"},
    ),
    "other_aud": jwt.encode(
        {**claims, "aud": "https://other.example.com/mcp"}, secret, algorithm="HS256",
        headers={"typ": "at+jwt"},
    ),
    "garbage": "not-a-jwt",
}
for name, value in forged.items():
    with open(f"{work}/forged.{name}", "w") as f:
        f.write(value)
EOF
[ $? -eq 0 ] || die "could not forge tokens"
bad_tokens=(tampered alg_none hs512 no_typ typ_jwt wrong_key expired no_sub other_aud garbage)

export MCP_AUTH_ISSUER=$issuer MCP_AUTH_RESOURCE=$resource MCP_AUTH_JWT_SECRET=$secret

# expect_cli NAME EXPECTED_EXIT [ENV=VALUE …] -- COMMAND …
expect_cli() {
  local name=$1 want=$2 out rc
  shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  out=$(env "${envs[@]}" timeout 30 "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    not_ok "$name: exit $rc, expected $want: $out"
  elif [ "$want" -eq 0 ] && [ "$out" != "alice@example.com" ]; then
    not_ok "$name: printed '$out', expected alice@example.com"
  else
    ok "$name${out:+ ($out)}"
  fi
}

for lang in python node; do
  if [ $lang = python ]; then cmd=("$py" "$snippets/verify_token.py"); else cmd=(node "$snippets/verify_token.mjs"); fi
  echo "== $lang: verify_token"
  expect_cli "$lang accepts the real token" 0 -- "${cmd[@]}" "$token"
  expect_cli "$lang refuses it for another audience" 1 MCP_AUTH_RESOURCE=https://other.example.com/mcp -- "${cmd[@]}" "$token"
  expect_cli "$lang refuses it from another issuer" 1 MCP_AUTH_ISSUER=https://other.example.com -- "${cmd[@]}" "$token"
  for bad in "${bad_tokens[@]}"; do
    expect_cli "$lang refuses $bad" 1 -- "${cmd[@]}" "$(cat "$work/forged.$bad")"
  done
done

# --- the servers: TypeScript SDK's requireBearerAuth, Python SDK's MCPServer ----------------
# expect_http NAME EXPECTED_STATUS BODY_GREP|"" TOKEN|"" URL [curl args …]
expect_http() {
  local name=$1 want=$2 grep_body=$3 bearer=$4 url=$5 status
  shift 5
  local auth=()
  [ -n "$bearer" ] && auth=(-H "Authorization: Bearer $bearer")
  status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' --max-time 10 "${auth[@]}" "$@" "$url")
  if [ "$status" != "$want" ]; then
    not_ok "$name: HTTP $status, expected $want: $(head -c 300 "$work/body")"
  elif [ "$want" = 401 ] && ! grep -qi "^www-authenticate: Bearer .*resource_metadata=\"$issuer/.well-known/oauth-protected-resource/mcp\"" "$work/headers"; then
    not_ok "$name: 401 without WWW-Authenticate: Bearer … resource_metadata=\"…\" ($(grep -i '^www-authenticate' "$work/headers"))"
  elif [ -n "$grep_body" ] && ! grep -q "$grep_body" "$work/body"; then
    not_ok "$name: body lacks '$grep_body': $(head -c 300 "$work/body")"
  else
    ok "$name (HTTP $status)"
  fi
}

check_server() { # LABEL URL [curl args …]: the real token passes, none and forged ones get 401
  local label=$1 url=$2
  shift 2
  expect_http "$label: no token -> 401" 401 "" "" "$url" "$@"
  for bad in "${bad_tokens[@]}"; do
    expect_http "$label: $bad -> 401" 401 "" "$(cat "$work/forged.$bad")" "$url" "$@"
  done
}

echo "== node: server.mjs (requireBearerAuth)"
node_port=$(free_port)
PORT=$node_port node "$snippets/server.mjs" >"$work/node.log" 2>&1 &
pids+=($!)
if wait_http "http://127.0.0.1:$node_port/mcp"; then
  expect_http "node server: real token -> 200 with the subject" 200 '"sub":"alice@example.com"' "$token" \
    "http://127.0.0.1:$node_port/mcp" -X POST
  check_server "node server" "http://127.0.0.1:$node_port/mcp" -X POST
else
  not_ok "server.mjs did not start: $(cat "$work/node.log")"
fi

echo "== python: server.py (MCPServer with the TokenVerifier)"
py_port=$(free_port)
mcp_headers=(-X POST -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream')
init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"run.sh","version":"1"}}}'
(cd "$snippets" && PORT=$py_port exec "$py" server.py) >"$work/py.log" 2>&1 &
pids+=($!)
if wait_http "http://127.0.0.1:$py_port/mcp"; then
  url=http://127.0.0.1:$py_port/mcp
  expect_http "python server: real token -> initialize 200" 200 '"serverInfo"' "$token" \
    "$url" "${mcp_headers[@]}" --data "$init"
  session=(-H "$(grep -i '^mcp-session-id:' "$work/headers" | tr -d '\r')" -H 'MCP-Protocol-Version: 2025-06-18')
  expect_http "python server: notifications/initialized -> 202" 202 "" "$token" "$url" \
    "${mcp_headers[@]}" "${session[@]}" --data '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  expect_http "python server: the whoami tool sees the subject" 200 'alice@example.com' "$token" "$url" \
    "${mcp_headers[@]}" "${session[@]}" \
    --data '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
  check_server "python server" "http://127.0.0.1:$py_port/mcp" "${mcp_headers[@]}" --data "$init"
else
  not_ok "server.py did not start: $(cat "$work/py.log")"
fi

# --- the README's copies ---------------------------------------------------------------------
# Every code block under "### Python" / "### TypeScript" must be an exact excerpt of a snippet.
echo "== README code blocks are exact excerpts of the snippets"
for doc in "$root/README.md" "$snippets/README-section.md"; do
  [ -f "$doc" ] || continue
  if out=$("$py" - "$doc" "$snippets" <<'EOF'
import pathlib, re, sys

doc, snippets = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
names = ("verify_token.py", "server.py", "verify_token.mjs", "server.mjs")
sources = [(snippets / name).read_text() for name in names]
text = doc.read_text()
sections = re.findall(r"^### (?:Python|TypeScript)\n(.*?)(?=^#{1,3} |\Z)", text, re.M | re.S)
blocks = [b for sec in sections for b in re.findall(r"^```\w*\n(.*?)^```", sec, re.M | re.S)]
stale = [b.splitlines()[0] for b in blocks if not any(b in s for s in sources)]
print("not in any snippet: " + "; ".join(stale) if stale else f"{len(blocks)} code blocks")
sys.exit(1 if stale else 0 if blocks else 2)
EOF
  ); then
    ok "${doc#"$root"/}: $out"
  elif [ $? -eq 1 ]; then
    not_ok "${doc#"$root"/}: $out"
  fi # 2: no such sections (yet)
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
