"""Shared pieces for the web tests: an httpx 'browser' over ASGI that keeps cookies and fills
in the CSRF token like a form would, and logging in as an operator."""

from __future__ import annotations

import re
from typing import Any

import httpx

from api.app import create_app
from ocs.runtime import ServeContext

TOKEN = re.compile(r'name="_csrf_token" value="([^"]+)"')


class RecordingControl:
    """Stands in for the charging engine's kill/RAR interface (records kills)."""

    def __init__(self) -> None:
        self.killed: list[str] = []

    async def kill(self, session_id: str) -> int:
        self.killed.append(session_id)
        return 2001

    async def reauthorise(self, session_id: str) -> int:
        return 2001


class Browser:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.token = ""

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        r = await self.client.get(path, **kw)
        match = TOKEN.search(r.text)
        if match:
            self.token = match.group(1)
        return r

    async def post(self, path: str, data: dict[str, Any] | None = None,
                   **kw: Any) -> httpx.Response:
        if not self.token:
            await self.get("/login")
        form = {"_csrf_token": self.token, **(data or {})}
        return await self.client.post(path, data=form, **kw)

    async def login(self, username: str, password: str, next: str = "/users") -> httpx.Response:
        await self.get("/login")
        return await self.post("/login", {"username": username, "password": password,
                                          "next": next})


def asgi_client(ctx: ServeContext, *, extra_routes: list[Any] | None = None,
                client: tuple[str, int] = ("127.0.0.1", 50000)) -> httpx.AsyncClient:
    app = create_app(ctx, extra_routes=extra_routes)
    transport = httpx.ASGITransport(app=app, client=client)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def flash_text(html: str) -> str:
    return " ".join(re.findall(r'class="flash [a-z]+"[^>]*>([^<]*)<', html))
