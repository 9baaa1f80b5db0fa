// A minimal MCP-style endpoint guarded by the SDK's requireBearerAuth and mcp-authd tokens.
//
// Run: PORT=3000 node server.mjs, with MCP_AUTH_ISSUER, MCP_AUTH_RESOURCE and
// MCP_AUTH_JWT_SECRET set. Mount your StreamableHTTPServerTransport where this answers.
import express from 'express';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { getOAuthProtectedResourceMetadataUrl } from '@modelcontextprotocol/sdk/server/auth/router.js';
import { mcpAuthdVerifier } from './verify_token.mjs';

const resource = new URL(process.env.MCP_AUTH_RESOURCE);
const verifier = mcpAuthdVerifier({
  issuer: process.env.MCP_AUTH_ISSUER,
  audience: process.env.MCP_AUTH_RESOURCE,
  secret: process.env.MCP_AUTH_JWT_SECRET,
});

const app = express();
app.all(
  '/mcp',
  requireBearerAuth({
    verifier,
    expectedResource: resource,
    // 401 answers carry WWW-Authenticate: Bearer …, resource_metadata="…", so clients find mcp-authd.
    resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(resource),
  }),
  (req, res) => res.json({ sub: req.auth.extra.sub, clientId: req.auth.clientId }),
);

const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}/mcp`);
});
