// The MCP TypeScript SDK client signing in with a Client ID Metadata Document (SEP-991,
// MCP 2025-11-25) instead of registering: the provider names its document URL in
// `clientMetadataUrl`; the SDK uses it as the client_id because mcp-authd advertises
// `client_id_metadata_document_supported`. The document is served here over HTTPS (a CA made
// by run.sh, trusted by mcp-authd through `caFile`, fetched from loopback thanks to
// `allowPrivateAddresses`). Then: consent naming the verified origin → token (`none`) →
// tools/call echo → a forced refresh.
//
// usage: node ts_sdk_cimd.mjs <MCP URL>   (env CIMD_CERT, CIMD_KEY: the document server's PEM)

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { signIn, callbackParams, USER } from './lib/browser.mjs';

const mcpUrl = new URL(process.argv[2]);
const log = (line) => console.error(`[ts-sdk-cimd] ${line}`);

// The document server: one document, its hits counted.
let documentUrl;
let documentHits = 0;
const documentServer = createServer(
  { cert: readFileSync(process.env.CIMD_CERT), key: readFileSync(process.env.CIMD_KEY) },
  (request, response) => {
    if (request.url !== '/oauth/client-metadata.json') {
      response.writeHead(404).end();
      return;
    }
    documentHits += 1;
    response.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'max-age=300' });
    response.end(JSON.stringify({
      client_id: documentUrl,
      client_name: 'mcp-authd e2e (TypeScript SDK, metadata document)',
      // Listed without a port, as Claude Code does; the client listens on another.
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }));
  },
);
await new Promise((resolve) => documentServer.listen(0, '127.0.0.1', resolve));
documentUrl = `https://localhost:${documentServer.address().port}/oauth/client-metadata.json`;
log(`document at ${documentUrl}`);

class DocumentClientProvider {
  constructor() {
    this.redirects = 0;
    this.pendingCode = null;
    this._tokens = undefined;
    this._client = undefined;
    this._verifier = undefined;
  }
  get redirectUrl() { return 'http://127.0.0.1:8977/callback'; }
  get clientMetadataUrl() { return documentUrl; }
  get clientMetadata() {
    return { client_name: 'unused: the document is the registration', redirect_uris: [this.redirectUrl] };
  }
  state() { return 'ts-sdk-cimd-state'; }
  clientInformation() { return this._client; }
  saveClientInformation(info) { log(`client information ${info.client_id}`); this._client = info; }
  tokens() { return this._tokens; }
  saveTokens(tokens) { this._tokens = tokens; }
  saveCodeVerifier(v) { this._verifier = v; }
  codeVerifier() { return this._verifier; }
  async redirectToAuthorization(url) {
    this.redirects += 1;
    assert.equal(url.searchParams.get('client_id'), documentUrl, 'the document URL is the client_id');
    // What the user sees: the document's host as the verified origin.
    const page = await (await fetch(url, { redirect: 'manual', headers: { 'X-Forwarded-User': USER } })).text();
    assert.match(page, /<dt>Verified origin<\/dt><dd>localhost<\/dd>/, 'the consent page names the verified origin');
    assert.match(page, /\(as stated by localhost\)/);
    const location = await signIn(url, { log });
    const params = callbackParams(location);
    assert.equal(params.state, 'ts-sdk-cimd-state');
    assert.ok(params.iss, 'iss is sent (RFC 9207)');
    this.pendingCode = params.code;
  }
}

async function connect(provider) {
  let transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
  let client = new Client({ name: 'mcp-authd-e2e-ts-cimd', version: '1.0.0' });
  try {
    await client.connect(transport);
    return client;
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
    await transport.finishAuth(provider.pendingCode);
    transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
    client = new Client({ name: 'mcp-authd-e2e-ts-cimd', version: '1.0.0' });
    await client.connect(transport);
    return client;
  }
}

const text = (result) => result.content.map((c) => c.text).join('');
try {
  const provider = new DocumentClientProvider();
  const client = await connect(provider);
  assert.equal(provider.redirects, 1, 'one browser round trip');
  assert.equal(provider._client.client_id, documentUrl, 'no registration: the URL is the client_id');
  assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'hello via cimd' } })), 'hello via cimd');
  log('echo works');
  assert.ok(documentHits >= 1, 'mcp-authd fetched the document');

  const firstRefresh = provider._tokens.refresh_token;
  provider._tokens = { ...provider._tokens, access_token: 'spoiled' };
  const second = await connect(provider);
  assert.equal(provider.redirects, 1, 'the refresh needed no browser');
  assert.notEqual(provider._tokens.refresh_token, firstRefresh, 'the refresh token rotated');
  assert.equal(text(await second.callTool({ name: 'echo', arguments: { text: 'after refresh' } })), 'after refresh');
  log(`refresh works; the document was fetched ${documentHits} time(s) (cached for 300 s)`);
  assert.equal(documentHits, 1, 'Cache-Control: max-age=300 kept one copy');
} finally {
  documentServer.close();
}
