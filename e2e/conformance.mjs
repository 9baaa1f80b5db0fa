// The MCP conformance suite's authorization-server scenarios (@modelcontextprotocol/conformance
// `authorization`: authorization-server-metadata-endpoint, authorization-code-grant) against
// mcp-authd.
//
// The suite needs a client registered for its callback, http://127.0.0.1:<port>/callback. It is
// a public client (registered here through RFC 7591): given a client secret, suite 0.2.0-alpha.12
// still authenticates with `none` whenever the server lists `none` among
// token_endpoint_auth_methods_supported, which a confidential client must refuse.
//
// The suite prints an authorization URL and waits for the callback: this script plays the
// browser behind the SSO proxy (X-Forwarded-User, then the consent form) and delivers the
// redirect to the suite's listener. Every check must pass.
//
// usage: CONFORMANCE_PORT=3000 node conformance.mjs <issuer URL> <MCP URL>

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { signIn } from './lib/browser.mjs';

const [issuer, resource] = process.argv.slice(2);
const log = (line) => console.error(`[conformance] ${line}`);
const require = createRequire(import.meta.url);
const suite = join(require.resolve('@modelcontextprotocol/conformance/package.json'), '..', 'dist', 'index.js');
const outputDir = mkdtempSync(join(tmpdir(), 'conformance-'));
const port = process.env.CONFORMANCE_PORT || '3000';

const metadata = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
const registration = await fetch(metadata.registration_endpoint, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({
    client_name: 'MCP conformance suite',
    redirect_uris: [`http://127.0.0.1:${port}/callback`],
    token_endpoint_auth_method: 'none',
  }),
});
if (registration.status !== 201) throw new Error(`registration answered ${registration.status}`);
const { client_id: clientId } = await registration.json();
log(`registered public client ${clientId}`);

const child = spawn(
  process.execPath,
  [
    suite, 'authorization',
    '--url', issuer,
    '--client-id', clientId,
    '--resource', resource,
    '--port', port,
    '--output-dir', outputDir,
  ],
  { stdio: ['ignore', 'pipe', 'pipe'] },
);

const seen = new Set();
let browsing = Promise.resolve();
function watch(chunk) {
  const text = chunk.toString();
  process.stdout.write(text);
  for (const match of text.matchAll(/https?:\/\/[^\s"'<>]+\/authorize\?[^\s"'<>]+/g)) {
    const url = match[0];
    if (seen.has(url)) continue;
    seen.add(url);
    browsing = browsing.then(async () => {
      const location = await signIn(url, { log });
      // The suite may print the URL just before its listener is up.
      for (let attempt = 1; ; attempt += 1) {
        try {
          const response = await fetch(location);
          log(`suite callback answered ${response.status}`);
          break;
        } catch (error) {
          if (attempt === 50) throw error;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }).catch((error) => log(`browser failed: ${error.stack || error}`));
  }
}
child.stdout.on('data', watch);
child.stderr.on('data', watch);

const code = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? signal)));
await browsing;

// The suite's own verdict, and every check it wrote.
function checkFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return checkFiles(path);
    return name === 'checks.json' ? [path] : [];
  });
}
const files = checkFiles(outputDir);
const checks = files.flatMap((f) => JSON.parse(readFileSync(f, 'utf8')));
const failures = checks.filter((c) => c.status === 'FAILURE');
const successes = checks.filter((c) => c.status === 'SUCCESS');
rmSync(outputDir, { recursive: true, force: true });
log(`suite exit ${code}; ${files.length} scenario(s), ${successes.length} checks passed, ${failures.length} failed`);
for (const f of failures) log(`FAILED ${f.id}: ${f.errorMessage || f.description}`);
// 2025-11-25: the metadata SHOULD advertise Client ID Metadata Documents (a WARNING otherwise).
const cimd = checks.find((c) => c.id === 'authorization-server-metadata-cimd');
if (!cimd || cimd.status !== 'SUCCESS') {
  log(`authorization-server-metadata-cimd: ${cimd ? `${cimd.status} ${cimd.errorMessage || ''}` : 'not run'}`);
  process.exit(1);
}
if (code !== 0 || failures.length > 0 || files.length < 2 || successes.length === 0) process.exit(1);
console.log('conformance: OK');
