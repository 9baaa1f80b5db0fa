"""Verify an mcp-authd access token signed with EdDSA or ES256, with PyJWT's PyJWKClient.

For mcp-authd with `oauthAs.signing` set to EdDSA or ES256: the MCP server needs no secret,
only the JWKS URL (`issuerUrl` + `/.well-known/jwks.json`).

Run: python verify_jwks.py <access token>, with MCP_AUTH_ISSUER, MCP_AUTH_RESOURCE and
MCP_AUTH_JWKS_URL set (needs PyJWT with `cryptography` installed).
"""

import os
import sys

import jwt

# Public-key algorithms only. HS256 would check an HMAC keyed with the public key, which
# anyone can compute (RFC 8725 §2.1): never list it next to a JWKS.
ALGORITHMS = ["EdDSA", "ES256"]


def jwks_client(jwks_url: str) -> jwt.PyJWKClient:
    """One client per process: it caches the key set and refetches it for an unknown kid,
    at most once a minute."""
    return jwt.PyJWKClient(jwks_url, lifespan=300, timeout=5, cooldown_duration=60)


def verify_access_token(token: str, *, issuer: str, audience: str, jwks: jwt.PyJWKClient) -> dict:
    """Return the claims of a valid access token; raise jwt.PyJWTError otherwise."""
    # RFC 9068: only an access token, never another JWT signed with the same key.
    if jwt.get_unverified_header(token).get("typ") != "at+jwt":
        raise jwt.InvalidTokenError("token type is not at+jwt")
    key = jwks.get_signing_key_from_jwt(token)  # selected by the token's kid
    if key.algorithm_name not in ALGORITHMS:
        raise jwt.InvalidTokenError(f"key algorithm {key.algorithm_name} not allowed")
    return jwt.decode(
        token,
        key.key,
        algorithms=[key.algorithm_name],  # the key's own algorithm, not the token's choice
        issuer=issuer,
        audience=audience,  # this MCP server's URL (mcp-authd's resourceUrl)
        leeway=30,
        options={"require": ["exp", "iss", "aud", "sub"]},
    )


if __name__ == "__main__":
    try:
        claims = verify_access_token(
            sys.argv[1],
            issuer=os.environ["MCP_AUTH_ISSUER"],
            audience=os.environ["MCP_AUTH_RESOURCE"],
            jwks=jwks_client(os.environ["MCP_AUTH_JWKS_URL"]),
        )
    except jwt.PyJWTError as e:  # includes PyJWKClientError: unknown kid, JWKS unreachable
        sys.exit(f"rejected: {e}")
    print(claims["sub"])
