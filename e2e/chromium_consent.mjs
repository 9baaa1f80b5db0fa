// The consent page in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) behind a small header-injecting reverse proxy, as in production.
//
// The proxy listens on <proxy port>, which is mcp-authd's issuerUrl, and forwards to mcp-authd on
// <backend port>. Like oauth2-proxy in front of the SSO-protected paths, it removes any
// X-Forwarded-User the browser sent and sets its own on /oauth/authorize, /authorize and the
// consent POST. A small client callback listener stands for the MCP client's redirect URI.
//
// Run 1: open the authorize URL, see the consent page (screenshot), click Approve, land on the
// client's redirect with a code (which then buys tokens). Run 2, another client: click Deny,
// land on the redirect with error=access_denied.
//
// usage: node chromium_consent.mjs <proxy port> <backend port> <screenshot path>

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [proxyPort, backendPort, screenshotPath] = process.argv.slice(2);
const USER = process.env.E2E_USER || 'alice@example.com';
const issuer = `http://127.0.0.1:${proxyPort}`;
const log = (line) => console.error(`[chromium] ${line}`);

// --- the reverse proxy ------------------------------------------------------------------------
const SSO_PATHS = /^\/(oauth\/)?authorize(\/consent)?(\?|$)/;
const proxy = http.createServer((req, res) => {
  const headers = { ...req.headers };
  for (const name of Object.keys(headers)) {
    if (/^x[-_]forwarded[-_](user|groups)$/i.test(name)) delete headers[name];
  }
  if (SSO_PATHS.test(req.url)) {
    headers['x-forwarded-user'] = USER;
    headers['x-forwarded-groups'] = 'eng';
  }
  const upstream = http.request(
    { host: '127.0.0.1', port: backendPort, method: req.method, path: req.url, headers },
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on('error', (error) => {
    res.writeHead(502);
    res.end(String(error));
  });
  req.pipe(upstream);
});

// --- the MCP client's redirect URI ------------------------------------------------------------
const callbacks = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!doctype html><title>Signed in</title><p>You can close this window.</p>');
});

const listen = (server, port) => new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
await listen(proxy, Number(proxyPort));
await listen(callbacks, 0);
const redirectUri = `http://127.0.0.1:${callbacks.address().port}/callback`;

async function registerClient(name) {
  const response = await fetch(`${issuer}/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: name, redirect_uris: [redirectUri], token_endpoint_auth_method: 'none' }),
  });
  assert.equal(response.status, 201);
  return (await response.json()).client_id;
}

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorizeUrl(clientId, challenge, state) {
  const url = new URL(`${issuer}/oauth/authorize`);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    scope: 'mcp:tools',
  }).toString();
  return url.href;
}

const profile = mkdtempSync(join(tmpdir(), 'chromium-profile-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 760, height: 380 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());

  // Run 1: approve.
  const clientId = await registerClient('Example MCP Client');
  const { verifier, challenge } = pkce();
  await page.goto(authorizeUrl(clientId, challenge, 'approve-state'));
  assert.equal(await page.title(), 'Approve access');
  const body = await page.textContent('body');
  for (const expected of ['Example MCP Client', 'unverified', '127.0.0.1', 'mcp:tools', USER]) {
    assert.ok(body.includes(expected), `the consent page shows ${expected}`);
  }
  await page.screenshot({ path: screenshotPath });
  log(`consent page shown; screenshot saved`);
  await Promise.all([page.waitForURL((url) => url.href.startsWith(redirectUri)), page.click('button[value=approve]')]);
  const approved = new URL(page.url());
  assert.equal(approved.searchParams.get('state'), 'approve-state');
  assert.equal(approved.searchParams.get('iss'), issuer);
  const code = approved.searchParams.get('code');
  assert.ok(code, `a code in ${approved.href}`);
  log('Approve → redirected to the client with a code');
  const tokens = await fetch(`${issuer}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
      client_id: clientId,
    }).toString(),
  });
  assert.equal(tokens.status, 200, 'the code buys tokens');
  assert.ok((await tokens.json()).access_token);

  // Run 2: deny, with another client (the first one's approval is remembered).
  const otherId = await registerClient('Another MCP Client');
  await page.goto(authorizeUrl(otherId, pkce().challenge, 'deny-state'));
  assert.equal(await page.title(), 'Approve access');
  await Promise.all([page.waitForURL((url) => url.href.startsWith(redirectUri)), page.click('button[value=deny]')]);
  const denied = new URL(page.url());
  assert.equal(denied.searchParams.get('error'), 'access_denied');
  assert.equal(denied.searchParams.get('state'), 'deny-state');
  assert.equal(denied.searchParams.get('iss'), issuer);
  assert.equal(denied.searchParams.get('code'), null);
  log('Deny → redirected to the client with error=access_denied');
  console.log('chromium-consent: OK');
} finally {
  await context?.close();
  proxy.close();
  callbacks.close();
  rmSync(profile, { recursive: true, force: true });
}
