#!/usr/bin/env bash
# Tests the token-verification snippets (Python and TypeScript) against real mcp-authd tokens.
#
# Builds mcp-authd, starts it on a free loopback port with a throwaway configuration, signs
# "alice@example.com" in through the authorization-code flow with PKCE (as the SSO proxy would),
# and checks that each snippet accepts the real access token and refuses forged ones: HS256
# tokens with the shared secret, then EdDSA and ES256 tokens with the JWKS (one more mcp-authd
# per algorithm, with a key from `gen-key`). Every process started here is stopped on exit.
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
# start_authd DIR PORT [SIGNING_JSON]: writes DIR/servers.json for an issuer on PORT (with
# "signing": SIGNING_JSON if given; its key file paths are relative to DIR), provisions a client
# in DIR/client.txt and starts mcp-authd.
start_authd() {
  local dir=$1 port=$2
  "$py" - "$dir/servers.json" "$port" "$secret" "${3:-}" <<'EOF' || die "cannot write $dir/servers.json"
import json, sys
path, port, secret, signing = sys.argv[1:]
oauth_as = {
    "issuerUrl": f"http://127.0.0.1:{port}",
    "jwtSecret": secret,
    "trustedSourceCidrs": ["127.0.0.1/32"],
    "redirectUriAllowlist": ["http://127.0.0.1:*"],
}
if signing:
    oauth_as["signing"] = json.loads(signing)
json.dump({"serverAuth": {"oauthAs": oauth_as}}, open(path, "w"), indent=2)
EOF
  "$authd" clients add --config "$dir/servers.json" --name snippets --redirect-uri "$redirect_uri" \
    >"$dir/client.txt" 2>"$dir/client.err" || { cat "$dir/client.err" >&2; die "clients add failed"; }
  RUST_LOG=warn "$authd" serve --config "$dir/servers.json" --listen "127.0.0.1:$port" \
    >"$dir/authd.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/healthz" || { cat "$dir/authd.log" >&2; die "mcp-authd did not start"; }
}

# sign_in DIR ISSUER: authorization code + PKCE as the client in DIR/client.txt, signed in by
# the "proxy" as alice@example.com; prints the access token (empty if there is none).
sign_in() {
  local dir=$1 issuer=$2 client_id client_secret verifier challenge location code
  client_id=$(sed -n 's/^client_id: //p' "$dir/client.txt")
  client_secret=$(sed -n 's/^client_secret: //p' "$dir/client.txt")
  [ -n "$client_id" ] && [ -n "$client_secret" ] || return 1
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
  [ -n "$code" ] || { echo "no code in the authorize redirect: '$location'" >&2; return 1; }
  curl -s -u "$client_id:$client_secret" "$issuer/oauth/token" \
    --data-urlencode grant_type=authorization_code --data-urlencode "code=$code" \
    --data-urlencode "redirect_uri=$redirect_uri" --data-urlencode "code_verifier=$verifier" \
    >"$dir/token.json"
  "$py" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("access_token", ""))' "$dir/token.json"
}

port=$(free_port)
issuer=http://127.0.0.1:$port
resource=$issuer/mcp
secret=$("$authd" gen-secret) || die "gen-secret failed"
redirect_uri=http://127.0.0.1:9/cb
echo "== starting mcp-authd on $issuer"
start_authd "$work" "$port"
token=$(sign_in "$work" "$issuer")
[ -n "$token" ] || die "no access token: $(cat "$work/token.json" 2>/dev/null)"
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

# --- signing keys: EdDSA and ES256 tokens, verified with the JWKS ----------------------------
# For each algorithm: a key from `gen-key`, an mcp-authd that signs with it (the key file path
# relative to its servers.json), a real token, and forgeries that must be refused, among them
# the algorithm confusion (an HS256 token keyed with the public key) and the jwtSecret (which
# no longer signs access tokens).
for alg in EdDSA ES256; do
  dir=$work/$alg
  mkdir -p "$dir"
  "$authd" gen-key --algorithm "$alg" --output "$dir/signing.pem" >"$dir/gen-key.txt" 2>"$dir/gen-key.err" ||
    { cat "$dir/gen-key.err" >&2; die "gen-key failed"; }
  kid=$(sed -n 's/^kid: //p' "$dir/gen-key.txt")
  alg_port=$(free_port)
  alg_issuer=http://127.0.0.1:$alg_port
  jwks_url=$alg_issuer/.well-known/jwks.json
  echo "== $alg: mcp-authd on $alg_issuer"
  start_authd "$dir" "$alg_port" "{\"algorithm\": \"$alg\", \"privateKeyFile\": \"signing.pem\"}"
  alg_token=$(sign_in "$dir" "$alg_issuer")
  [ -n "$alg_token" ] || die "$alg: no access token: $(cat "$dir/token.json" 2>/dev/null)"

  # The published kid is the RFC 7638 thumbprint, as jose computes it.
  if out=$(cd "$snippets" && node --input-type=module -e '
import { calculateJwkThumbprint } from "jose";
const [url, kid] = process.argv.slice(1);
const { keys } = await (await fetch(url)).json();
const thumbprint = await calculateJwkThumbprint(keys[0], "sha256");
if (keys.length !== 1 || keys[0].kid !== kid || thumbprint !== kid) {
  console.log(`kid ${kid}, thumbprint ${thumbprint}, keys ${JSON.stringify(keys)}`);
  process.exit(1);
}' "$jwks_url" "$kid" 2>&1); then
    ok "$alg: the JWKS kid is jose's RFC 7638 thumbprint"
  else
    not_ok "$alg: JWKS kid: $out"
  fi

  "$py" - "$alg_token" "$dir" "$alg" "$secret" <<'EOF' || die "$alg: could not forge tokens"
import base64, hashlib, hmac, json, sys, time
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

token, work, alg, secret = sys.argv[1:]
private = serialization.load_pem_private_key(open(f"{work}/signing.pem", "rb").read(), None)
public_pem = open(f"{work}/signing.pem.pub", "rb").read()
kid = jwt.get_unverified_header(token)["kid"]
header_b64, payload_b64, signature = token.split(".")
claims = jwt.decode(token, options={"verify_signature": False})
other = ed25519.Ed25519PrivateKey.generate() if alg == "EdDSA" else ec.generate_private_key(ec.SECP256R1())
now = int(time.time())

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

def hs256(header, key):
    # By hand: PyJWT itself refuses to use a PEM key as an HMAC secret.
    signing_input = f"{b64(json.dumps(header).encode())}.{payload_b64}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"

def signed(payload, key=private, headers=None):
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "at+jwt", **(headers or {})})

forged = {
    "tampered": f"{header_b64}.{b64(json.dumps({**claims, 'sub': 'mallory@example.com'}).encode())}.{signature}",
    "alg_none": f"{b64(json.dumps({'alg': 'none', 'typ': 'at+jwt', 'kid': kid}).encode())}.{payload_b64}.",
    # RFC 8725 §2.1: the public key as an HMAC secret, under the published kid.
    "hs256_public_key": hs256({"alg": "HS256", "typ": "at+jwt", "kid": kid}, public_pem),
    "hs256_jwt_secret": hs256({"alg": "HS256", "typ": "at+jwt"}, secret.encode()),
    "no_typ": signed(claims, headers={"typ": None}),
    "typ_jwt": signed(claims, headers={"typ": "JWT"}),
    "wrong_key": signed(claims, key=other),
    "unknown_kid": signed(claims, key=other, headers={"kid": "not-published"}),
    "expired": signed({**claims, "iat": now - 7200, "exp": now - 3600}),
    "no_sub": signed({k: v for k, v in claims.items() if k != "sub"}),
    "other_aud": signed({**claims, "aud": "https://other.example.com/mcp"}),
    "garbage": "not-a-jwt",
}
for name, value in forged.items():
    with open(f"{work}/forged.{name}", "w") as f:
        f.write(value)
EOF
  # The forgeries signed with the real key isolate the checks: they must be the only difference.
  jwks_bad=(tampered alg_none hs256_public_key hs256_jwt_secret no_typ typ_jwt wrong_key unknown_kid expired no_sub other_aud garbage)
  jwks_env=("MCP_AUTH_ISSUER=$alg_issuer" "MCP_AUTH_RESOURCE=$alg_issuer/mcp" "MCP_AUTH_JWKS_URL=$jwks_url")
  for lang in python node; do
    if [ $lang = python ]; then cmd=("$py" "$snippets/verify_jwks.py"); else cmd=(node "$snippets/verify_jwks.mjs"); fi
    echo "== $lang: verify_jwks, $alg"
    expect_cli "$lang accepts the real $alg token" 0 "${jwks_env[@]}" -- "${cmd[@]}" "$alg_token"
    expect_cli "$lang refuses the $alg token for another audience" 1 "${jwks_env[@]}" \
      MCP_AUTH_RESOURCE=https://other.example.com/mcp -- "${cmd[@]}" "$alg_token"
    expect_cli "$lang refuses the $alg token from another issuer" 1 "${jwks_env[@]}" \
      MCP_AUTH_ISSUER=https://other.example.com -- "${cmd[@]}" "$alg_token"
    for bad in "${jwks_bad[@]}"; do
      expect_cli "$lang refuses $alg $bad" 1 "${jwks_env[@]}" -- "${cmd[@]}" "$(cat "$dir/forged.$bad")"
    done
  done
  # The HS256 snippets (jwtSecret) have no business accepting a key-pair token.
  expect_cli "python verify_token refuses the $alg token" 1 MCP_AUTH_ISSUER="$alg_issuer" \
    MCP_AUTH_RESOURCE="$alg_issuer/mcp" -- "$py" "$snippets/verify_token.py" "$alg_token"
done

# --- the README's copies ---------------------------------------------------------------------
# Every code block under "### Python" / "### TypeScript" must be an exact excerpt of a snippet.
echo "== README code blocks are exact excerpts of the snippets"
for doc in "$root/README.md" "$snippets/README-section.md"; do
  [ -f "$doc" ] || continue
  if out=$("$py" - "$doc" "$snippets" <<'EOF'
import pathlib, re, sys

doc, snippets = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
names = ("verify_token.py", "server.py", "verify_jwks.py", "verify_token.mjs", "server.mjs", "verify_jwks.mjs")
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
