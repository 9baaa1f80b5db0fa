"""Verify an mcp-authd access token in a Python MCP server, with PyJWT.

Run: python verify_token.py <access token>, with MCP_AUTH_ISSUER, MCP_AUTH_RESOURCE and
MCP_AUTH_JWT_SECRET set (the issuerUrl, resourceUrl and jwtSecret of mcp-authd).
"""

import os
import sys

import jwt


def verify_access_token(token: str, *, issuer: str, audience: str, secret: str) -> dict:
    """Return the claims of a valid access token; raise jwt.InvalidTokenError otherwise."""
    # RFC 9068: only an access token, never another JWT signed with the same key.
    if jwt.get_unverified_header(token).get("typ") != "at+jwt":
        raise jwt.InvalidTokenError("token type is not at+jwt")
    return jwt.decode(
        token,
        secret,
        algorithms=["HS256"],  # pinned: refuses alg "none", HS512, RS256 key confusion
        issuer=issuer,
        audience=audience,  # this MCP server's URL (mcp-authd's resourceUrl)
        leeway=30,
        options={"require": ["exp", "iss", "aud", "sub"]},
    )


class McpAuthdTokenVerifier:
    """A TokenVerifier (mcp.server.auth.provider) for the MCP Python SDK, mcp 2.x.

    Pass it to MCPServer(token_verifier=..., auth=AuthSettings(...)): see server.py.
    """

    def __init__(self, issuer: str, resource: str, secret: str):
        self.issuer, self.resource, self.secret = issuer, resource, secret

    async def verify_token(self, token: str):
        from mcp.server.auth.provider import AccessToken  # pip install mcp

        try:
            claims = verify_access_token(
                token, issuer=self.issuer, audience=self.resource, secret=self.secret
            )
        except jwt.InvalidTokenError:
            return None  # the SDK answers 401 invalid_token; an exception would be a 500
        return AccessToken(
            token=token,
            client_id=claims.get("client_id", ""),
            scopes=claims.get("scope", "").split(),
            expires_at=claims["exp"],
            resource=claims["aud"],
            subject=claims["sub"],
            claims=claims,  # iss, groups, roles, … for per-tool checks
        )


if __name__ == "__main__":
    try:
        claims = verify_access_token(
            sys.argv[1],
            issuer=os.environ["MCP_AUTH_ISSUER"],
            audience=os.environ["MCP_AUTH_RESOURCE"],
            secret=os.environ["MCP_AUTH_JWT_SECRET"],
        )
    except jwt.InvalidTokenError as e:
        sys.exit(f"rejected: {e}")
    print(claims["sub"])
