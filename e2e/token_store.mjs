// Reads and edits the token stores of the command-line clients, to force a refresh:
//
//   node token_store.mjs spoil <mcp-remote|inspector> <dir>
//       replaces the stored access token with junk (the MCP server will answer 401) and
//       remembers the refresh token;
//   node token_store.mjs refreshed <mcp-remote|inspector> <dir>
//       asserts that a refresh replaced the access token and rotated the refresh token.
//
// <dir> is MCP_REMOTE_CONFIG_DIR for mcp-remote, and HOME for the Inspector (with
// MCP_INSPECTOR_SECRET_STORE=file).

import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [command, client, dir] = process.argv.slice(2);
const remembered = join(dir, 'refresh_token_before');

// Each store as { read(): tokens, write(tokens) }.
function mcpRemoteStore() {
  const configDir = join(dir, readdirSync(dir).find((d) => d.startsWith('mcp-remote-')));
  const file = join(configDir, readdirSync(configDir).find((f) => f.endsWith('_tokens.json')));
  return {
    read: () => JSON.parse(readFileSync(file, 'utf8')),
    write: (tokens) => writeFileSync(file, JSON.stringify(tokens)),
  };
}

function inspectorStore() {
  const file = join(dir, '.mcp-inspector', 'secrets.json');
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  const key = Object.keys(doc.secrets).find((k) => k.includes(':tokens:'));
  if (!key) throw new Error(`no tokens in ${file}`);
  return {
    read: () => JSON.parse(doc.secrets[key]),
    write: (tokens) => {
      doc.secrets[key] = JSON.stringify(tokens);
      writeFileSync(file, JSON.stringify(doc, null, 2));
    },
  };
}

const store = { 'mcp-remote': mcpRemoteStore, inspector: inspectorStore }[client]();
const tokens = store.read();

if (command === 'spoil') {
  if (!tokens.refresh_token) throw new Error('mcp-authd issued no refresh token');
  writeFileSync(remembered, tokens.refresh_token);
  store.write({ ...tokens, access_token: 'spoiled' });
  console.log(`${client}: access token spoiled`);
} else if (command === 'refreshed') {
  if (tokens.access_token === 'spoiled') throw new Error('the access token was not replaced');
  if (tokens.refresh_token === readFileSync(remembered, 'utf8')) throw new Error('the refresh token did not rotate');
  console.log(`${client}: refreshed (new access token, rotated refresh token)`);
} else {
  throw new Error(`unknown command ${command}`);
}
