"""The MCP Python SDK client (`mcp` from PyPI) against mcp-authd and the example MCP server.

401 → PRM → AS metadata → DCR → authorize (the redirect handler plays the browser behind the
SSO proxy: a GET carrying X-Forwarded-User, then the consent form) → token → tools/call echo;
then the token is made to look expired so the SDK refreshes it proactively; then step-up:
admin_echo answers 403 insufficient_scope and the SDK re-authorizes with scope mcp:admin.

usage: python python_sdk.py <MCP URL>
"""

import asyncio
import html
import os
import re
import sys
import time
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl

USER = os.environ.get("E2E_USER", "alice@example.com")


def log(line: str) -> None:
    print(f"[python-sdk] {line}", file=sys.stderr, flush=True)


class MemoryStorage:
    """TokenStorage in memory; keeps every token response."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        log(f"registered client {client_info.client_id} ({client_info.token_endpoint_auth_method})")
        self.client_info = client_info


class ProxyBrowser:
    """The redirect and callback handlers: the user's browser and the SSO proxy."""

    def __init__(self) -> None:
        self.location: str | None = None
        self.opened = 0

    async def redirect_handler(self, url: str) -> None:
        self.opened += 1
        headers = {"X-Forwarded-User": USER, "X-Forwarded-Groups": "eng"}
        async with httpx2.AsyncClient(follow_redirects=False) as http:
            response = await http.get(url, headers=headers)
            if response.status_code == 200:
                log("consent page shown, approving")
                ticket = re.search(r'name="ticket" value="([^"]*)"', response.text)
                action = re.search(r'<form[^>]*action="([^"]*)"', response.text)
                assert ticket and action, f"no consent form: {response.text[:300]}"
                response = await http.post(
                    urljoin(url, html.unescape(action.group(1))),
                    data={"ticket": html.unescape(ticket.group(1)), "decision": "approve"},
                    headers=headers,
                )
            assert response.status_code in (302, 303), f"authorize answered {response.status_code}: {response.text[:300]}"
            self.location = response.headers["location"]

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self.location is not None
        query = {k: v[0] for k, v in parse_qs(urlparse(self.location).query).items()}
        assert "iss" in query, "RFC 9207 iss in the redirect"
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))


def text_of(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def main(url: str) -> None:
    storage = MemoryStorage()
    browser = ProxyBrowser()
    oauth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="mcp-authd e2e (Python SDK)",
            redirect_uris=[AnyUrl("http://localhost:3030/callback")],
        ),
        storage=storage,
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    async with httpx2.AsyncClient(auth=oauth) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            tools = await client.list_tools()
            assert sorted(t.name for t in tools.tools) == ["admin_audit", "admin_echo", "echo", "github__merge_pr", "sentry__list_issues", "sentry__resolve_issue"], tools
            result = await client.call_tool("echo", {"text": "hello from python"})
            assert text_of(result) == "hello from python", result
            assert browser.opened == 1
            assert storage.client_info and storage.client_info.token_endpoint_auth_method == "none"
            log("echo works")

            # Refresh: the SDK refreshes before expiry; pretend the token has expired.
            assert storage.tokens and storage.tokens.refresh_token
            first_refresh = storage.tokens.refresh_token
            oauth.context.token_expiry_time = time.time() - 1
            result = await client.call_tool("echo", {"text": "after refresh"})
            assert text_of(result) == "after refresh", result
            assert browser.opened == 1, "the refresh needed no browser"
            assert storage.tokens.refresh_token != first_refresh, "the refresh token rotated"
            log("refresh works")

            # Step-up: admin_echo needs mcp:admin.
            result = await client.call_tool("admin_echo", {"text": "root"})
            assert text_of(result).endswith("(admin): root"), result
            assert browser.opened == 2, "step-up went through the browser"
            assert "mcp:admin" in (storage.tokens.scope or "")
            log("step-up works")
    print("python-sdk: OK")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
