// Verify an mcp-authd access token signed with EdDSA or ES256, with jose's createRemoteJWKSet.
//
// For mcp-authd with `oauthAs.signing` set to EdDSA or ES256: the MCP server needs no secret,
// only the JWKS URL (`issuerUrl` + `/.well-known/jwks.json`).
//
// Run: node verify_jwks.mjs <access token>, with MCP_AUTH_ISSUER, MCP_AUTH_RESOURCE and
// MCP_AUTH_JWKS_URL set.
import { pathToFileURL } from 'node:url';
import { createRemoteJWKSet, jwtVerify } from 'jose';

/** One per process: caches the key set, refetches it for an unknown kid at most once a minute. */
export function mcpAuthdJwks(jwksUrl) {
  return createRemoteJWKSet(new URL(jwksUrl), {
    cacheMaxAge: 300_000,
    cooldownDuration: 60_000,
    timeoutDuration: 5_000,
  });
}

/** Resolves to the claims of a valid access token; rejects with a jose error otherwise. */
export async function verifyAccessToken(token, { issuer, audience, jwks }) {
  const { payload } = await jwtVerify(token, jwks, {
    // Public-key algorithms only: HS256 would check an HMAC keyed with the public key (RFC 8725).
    algorithms: ['EdDSA', 'ES256'],
    typ: 'at+jwt', // RFC 9068: only an access token, never another JWT signed with the same key
    issuer,
    audience, // this MCP server's URL (mcp-authd's resourceUrl)
    requiredClaims: ['exp', 'iss', 'aud', 'sub'],
    clockTolerance: 30,
  });
  return payload;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    const claims = await verifyAccessToken(process.argv[2], {
      issuer: process.env.MCP_AUTH_ISSUER,
      audience: process.env.MCP_AUTH_RESOURCE,
      jwks: mcpAuthdJwks(process.env.MCP_AUTH_JWKS_URL),
    });
    console.log(claims.sub);
  } catch (e) {
    console.error(`rejected: ${e.message}`);
    process.exit(1);
  }
}
