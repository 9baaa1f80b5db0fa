// mcp-remote as desktop clients use it: its stdio bridge (proxy.js) started as an MCP server
// over stdio, here by the TypeScript SDK's StdioClientTransport, then tools/call echo.
//
// usage: node mcp_remote_stdio.mjs <MCP URL> <callback port>
// (BROWSER and MCP_REMOTE_CONFIG_DIR are passed through from the environment.)

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';

const [mcpUrl, callbackPort] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const bridge = join(require.resolve('mcp-remote/package.json'), '..', 'dist', 'proxy.js');

const transport = new StdioClientTransport({
  command: process.execPath,
  args: [bridge, mcpUrl, callbackPort],
  env: {
    ...getDefaultEnvironment(),
    BROWSER: process.env.BROWSER,
    MCP_REMOTE_CONFIG_DIR: process.env.MCP_REMOTE_CONFIG_DIR,
  },
  stderr: 'inherit',
});
const client = new Client({ name: 'mcp-authd-e2e-mcp-remote', version: '1.0.0' });
await client.connect(transport);
const result = await client.callTool({ name: 'echo', arguments: { text: 'hello through mcp-remote' } });
assert.equal(result.content.map((c) => c.text).join(''), 'hello through mcp-remote');
await client.close();
console.log('mcp-remote stdio bridge: echo OK');
