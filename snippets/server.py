"""An MCP server (MCP Python SDK, mcp 2.x) that accepts only mcp-authd access tokens.

Run: PORT=8000 python server.py, with MCP_AUTH_ISSUER, MCP_AUTH_RESOURCE and
MCP_AUTH_JWT_SECRET set.
"""

import os

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from verify_token import McpAuthdTokenVerifier

issuer, resource = os.environ["MCP_AUTH_ISSUER"], os.environ["MCP_AUTH_RESOURCE"]
server = MCPServer(
    "my-server",
    token_verifier=McpAuthdTokenVerifier(issuer, resource, os.environ["MCP_AUTH_JWT_SECRET"]),
    # /mcp answers 401 with WWW-Authenticate: Bearer …, resource_metadata="…" without a valid token.
    auth=AuthSettings(issuer_url=issuer, resource_server_url=resource, validate_token_resource=True),
)


@server.tool()
def whoami() -> str:
    """The signed-in user."""
    return get_access_token().subject


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=port)
