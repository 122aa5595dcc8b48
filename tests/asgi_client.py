"""Helpers for the web tests (no tests here): call `mreg serve`'s ASGI application in-process.

This is what Starlette's TestClient does, without its HTTP client dependency (httpx2, not
among mreg's requirements): each request runs the whole application, middleware included,
with the scope a server would build (the path percent-decoded, the query string as sent).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp

HOST = "127.0.0.1:8080"  # what create_app answers by default


class Reply:
    """A response: status, headers (lower-case names), body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        return json.loads(self.body)


def call(app: ASGIApp, target: str | bytes, *, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    """One request for ``target`` (a path with an optional query string, sent as given)."""
    raw = target.encode("utf-8") if isinstance(target, str) else target
    raw_path, _, query = raw.partition(b"?")
    sent = {"host": HOST, **{k.lower(): v for k, v in (headers or {}).items()}}
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": unquote_to_bytes(raw_path).decode("utf-8", errors="replace"), "raw_path": raw_path,
        "query_string": query, "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in sent.items() if v is not None],
    }  # fmt: skip
    status, response_headers, body = 0, {}, bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in message["headers"])
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return Reply(status, response_headers, bytes(body))
