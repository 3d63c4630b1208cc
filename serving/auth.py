"""API-key authentication with scopes, as ASGI middleware in front of every route.

``Authorization: Bearer <key>``; keys and their scopes come from the settings
(``serving.api_keys``). ``/admin/*`` needs ``admin``, ``/events`` needs ``ingest``,
every other route ``decide``. Health, readiness, metrics and the API docs are open.
POST bodies must be JSON: anything else is refused with 415 before it is read.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/"})
OPEN_PREFIXES = ("/static_content/", "/docs")


def required_scope(path: str) -> str | None:
    """The scope a path needs (``None``: open)."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    if path.startswith("/admin"):
        return "admin"
    if path == "/events":
        return "ingest"
    return "decide"


class ApiKeyMiddleware:
    """Refuses requests without a valid key (401) or the route's scope (403)."""

    def __init__(self, app: Any, keys: dict[str, list[str]]) -> None:
        self.app = app
        self.keys = {k.encode(): frozenset(v) for k, v in keys.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope["path"])
        if needed is not None:
            headers = dict(scope.get("headers") or [])
            granted = self._scopes(headers.get(b"authorization", b""))
            if granted is None:
                await _reply(send, 401, "missing or invalid API key (Authorization: Bearer <key>)")
                return
            if needed not in granted:
                await _reply(send, 403, f"this API key lacks the {needed!r} scope")
                return
            if scope.get("method") == "POST":
                media = headers.get(b"content-type", b"application/json").split(b";")[0].strip()
                if media != b"application/json":
                    await _reply(
                        send, 415, f"Content-Type {media.decode(errors='replace')!r}: send JSON"
                    )
                    return
        await self.app(scope, receive, send)

    def _scopes(self, header: bytes) -> frozenset[str] | None:
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return None
        found = None
        for key, scopes in self.keys.items():
            # Compare with every key in constant time.
            if hmac.compare_digest(key, token.strip()):
                found = scopes
        return found


async def _reply(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            + ([(b"www-authenticate", b"Bearer")] if status == 401 else []),
        }
    )
    await send({"type": "http.response.body", "body": body})
