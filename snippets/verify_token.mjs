// Verify an mcp-authd access token in a TypeScript/JavaScript MCP server, with jose.
//
// Run: node verify_token.mjs <access token>, with MCP_AUTH_ISSUER, MCP_AUTH_RESOURCE and
// MCP_AUTH_JWT_SECRET set (the issuerUrl, resourceUrl and jwtSecret of mcp-authd).
import { pathToFileURL } from 'node:url';
import { errors, jwtVerify } from 'jose';
import { InvalidTokenError } from '@modelcontextprotocol/sdk/server/auth/errors.js';

/** Resolves to the claims of a valid access token; rejects with a jose error otherwise. */
export async function verifyAccessToken(token, { issuer, audience, secret }) {
  const { payload } = await jwtVerify(token, new TextEncoder().encode(secret), {
    algorithms: ['HS256'], // pinned: refuses alg "none", HS512, RS256 key confusion
    typ: 'at+jwt', // RFC 9068: only an access token, never another JWT signed with the same key
    issuer,
    audience, // this MCP server's URL (mcp-authd's resourceUrl)
    requiredClaims: ['exp', 'iss', 'aud', 'sub'],
    clockTolerance: 30,
  });
  return payload;
}

/** An OAuthTokenVerifier for the MCP TypeScript SDK's requireBearerAuth. */
export function mcpAuthdVerifier({ issuer, audience, secret }) {
  return {
    async verifyAccessToken(token) {
      let claims;
      try {
        claims = await verifyAccessToken(token, { issuer, audience, secret });
      } catch (e) {
        // requireBearerAuth answers 401 only for InvalidTokenError; anything else is a 500.
        if (e instanceof errors.JOSEError) throw new InvalidTokenError(e.message);
        throw e;
      }
      return {
        token,
        clientId: claims.client_id,
        scopes: (claims.scope ?? '').split(' ').filter(Boolean),
        expiresAt: claims.exp,
        resource: new URL(claims.aud),
        extra: { sub: claims.sub, groups: claims.groups, roles: claims.roles },
      };
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const claims = await verifyAccessToken(process.argv[2], {
      issuer: process.env.MCP_AUTH_ISSUER,
      audience: process.env.MCP_AUTH_RESOURCE,
      secret: process.env.MCP_AUTH_JWT_SECRET,
    });
    console.log(claims.sub);
  } catch (e) {
    console.error(`rejected: ${e.message}`);
    process.exit(1);
  }
}
