"""The ASGI middleware in front of every route: what a request must pass before a
route sees it, and the one error shape on the way out.

In order, for each HTTP request:

1. a **request id** (the caller's ``X-Request-ID`` when it is short and plain, else a
   new one), echoed in the response header and in every error body;
2. the **open paths** (health, readiness, metrics, the API docs) pass without a key;
   ``/`` redirects to ``/docs`` and BentoML's ``/docs.json`` is the service's own
   OpenAPI document;
3. **authentication** (``Authorization: Bearer <key>``, 401) and the route's
   **scope** (403, :func:`required_scope`): ``/admin/*`` and ``DELETE /customers/…``
   need ``admin``, ``/events`` and ``PUT /customers/{id}/consent`` need ``ingest``,
   every other route ``decide``;
4. a **rate limit** per key, shared by the service's workers (token bucket; 429 with
   ``Retry-After``);
5. POST bodies: **JSON only** (415), **bounded** (413, ``serving.max_body_bytes``),
   read here in full so no route reads an unbounded body;
6. on the way out, an error from anything below that is not in the one shape
   (BentoML's own routes, a framework 404 / 405) is rewritten into it, and every
   client error is logged as one line.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from serving.errors import ErrorDetail, code_for, error_body, log_client_error
from serving.keys import ApiKey

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset(
    {"/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/openapi.json", "/"}
)
OPEN_PREFIXES = ("/static_content/", "/docs/")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def required_scope(path: str, method: str = "GET") -> str | None:
    """The scope a request needs (``None``: open). Writes about customers are not
    decisions: a preference centre posts consent changes as it posts events
    (``ingest``), and erasing a customer is an administrative act (``admin``)."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    if path.startswith("/admin"):
        return "admin"
    if path == "/events":
        return "ingest"
    if path.startswith("/customers/"):
        if method.upper() == "DELETE":
            return "admin"
        if method.upper() == "PUT" and path.endswith("/consent"):
            return "ingest"
    return "decide"


class KeyLookup(Protocol):
    def lookup(self, token: bytes) -> ApiKey | None: ...


class StaticKeys:
    """Keys given in the settings (``serving.api_keys``): plaintext, for development
    and tests (production keys live hashed in the key store, ``tailor keys``);
    compared in constant time."""

    def __init__(self, keys: Mapping[str, Sequence[str]]) -> None:
        self._keys = [
            (
                key.encode(),
                ApiKey(
                    id=f"settings-{i}", name="settings", scopes=frozenset(scopes), created=_EPOCH
                ),
            )
            for i, (key, scopes) in enumerate(sorted(keys.items()))
        ]

    def lookup(self, token: bytes) -> ApiKey | None:
        found = None
        for key, record in self._keys:
            if hmac.compare_digest(key, token):  # every key compared: constant time
                found = record
        return found


class AnyKeys:
    """The first of several lookups that knows the token."""

    def __init__(self, *lookups: KeyLookup) -> None:
        self.lookups = lookups

    def lookup(self, token: bytes) -> ApiKey | None:
        for lookup in self.lookups:
            found = lookup.lookup(token)
            if found is not None:
                return found
        return None


class RateLimiter:
    """Token buckets per key id: ``rate`` requests a second, bursts of ``burst``.

    The buckets live in a SQLite file (``path``) that every worker of the service
    shares, so the limit holds for the service, not per worker: one statement
    refills, takes a token and answers, atomically. Without a path they live in this
    process only (tests). Should the file fail (a read-only home), requests are
    admitted and the failure logged, at most once a minute: a broken limiter must not
    take the service down.
    """

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL NOT NULL, "
        "ts REAL NOT NULL, admitted INTEGER NOT NULL)"
    )
    # All SET expressions read the old row: refill, then take a token if one is whole.
    _TAKE = """
        INSERT INTO buckets (key, tokens, ts, admitted) VALUES (:key, :burst - 1, :now, 1)
        ON CONFLICT (key) DO UPDATE SET
            tokens = min(:burst, tokens + max(0, :now - ts) * :rate)
                     - (min(:burst, tokens + max(0, :now - ts) * :rate) >= 1),
            admitted = (min(:burst, tokens + max(0, :now - ts) * :rate) >= 1),
            ts = max(ts, :now)
        RETURNING tokens, admitted
    """

    def __init__(
        self,
        rate: float | None,
        burst: float,
        clock: Callable[[], float],
        path: Path | None = None,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.path = path
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._failed_at = -math.inf

    def admit(self, key: ApiKey) -> float | None:
        """``None`` when admitted, else the seconds to wait before retrying."""
        rate = self.rate
        if rate is None or rate <= 0:
            return None
        now = self.clock()
        params = {"key": key.id, "burst": max(self.burst, 1.0), "now": now, "rate": rate}
        with self._lock:
            try:
                tokens, admitted = self._connection().execute(self._TAKE, params).fetchone()
            except (sqlite3.Error, OSError) as error:
                if now - self._failed_at >= 60:
                    self._failed_at = now
                    logger.error("rate limiter %s failed, admitting: %s", self.path, error)
                return None
        return None if admitted else (1.0 - float(tokens)) / rate

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(
                ":memory:" if self.path is None else self.path,
                timeout=5.0,
                isolation_level=None,
                check_same_thread=False,
            )
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=OFF")  # counts, not records: no fsync
            con.execute(self._SCHEMA)
            self._con = con
        return self._con


class Gateway:
    """See the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyLookup,
        *,
        max_body_bytes: int = 4 << 20,
        rate_limit: float | None = None,
        rate_burst: float = 20.0,
        rate_file: Path | None = None,
        readiness: Callable[[], tuple[bool, list[str]]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.keys = keys
        self.readiness = readiness
        self.max_body_bytes = max_body_bytes
        self.limiter = RateLimiter(rate_limit, rate_burst, clock, rate_file)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        method = str(scope.get("method", ""))
        path = str(scope["path"])
        send = _shaped(send, rid, method, path)

        async def refuse(
            status: int,
            message: str,
            *,
            code: str | None = None,
            extra: dict[str, str] | None = None,
        ) -> None:
            await _reply(
                send, status, error_body(status, message, request_id=rid, code=code), extra
            )

        if path == "/":
            await _redirect(send, "/docs")
            return
        if path == "/readyz" and self.readiness is not None:
            ready, reasons = self.readiness()
            if ready:
                body = json.dumps({"ready": True, "reasons": reasons}).encode()
                await _reply(send, 200, body, None)
            else:
                await refuse(503, "not ready: " + "; ".join(reasons), code="not_ready")
            return
        if path == "/docs.json":  # BentoML's route: the service's own document instead
            scope["path"] = "/openapi.json"
        needed = required_scope(path, method)
        if needed is not None:
            key = self._key(headers.get(b"authorization", b""))
            if key is None:
                await refuse(
                    401,
                    "missing or invalid API key: send `Authorization: Bearer <key>`",
                    extra={"www-authenticate": "Bearer"},
                )
                return
            if needed not in key.scopes:
                await refuse(403, f"this API key ({key.id}) lacks the {needed!r} scope")
                return
            scope["state"]["api_key"] = key.id
            wait = self.limiter.admit(key)
            if wait is not None:
                await refuse(
                    429,
                    f"rate limit of API key {key.id} exceeded: retry in {wait:.2f} s",
                    extra={"retry-after": str(max(1, int(wait + 0.999)))},
                )
                return
        if method in ("POST", "PUT", "PATCH"):
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                await refuse(413, self._too_large(int(length)))
                return
            chunks = bytearray()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks += message.get("body", b"")
                if len(chunks) > self.max_body_bytes:
                    await refuse(413, self._too_large(None))
                    return
                if not message.get("more_body", False):
                    break
            if chunks:
                media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
                if media != b"application/json":
                    shown = media.decode("latin-1")[:60] or "none"
                    await refuse(
                        415, f"Content-Type {shown!r}: send JSON (Content-Type: application/json)"
                    )
                    return
            replayed = _replay(bytes(chunks))
            await self.app(scope, replayed, send)
            return
        await self.app(scope, receive, send)

    def _key(self, header: bytes) -> ApiKey | None:
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token or len(token) > 512:
            return None
        return self.keys.lookup(token)

    def _too_large(self, length: int | None) -> str:
        size = f"{length} bytes" if length is not None else "the body"
        return f"{size} over the limit of {self.max_body_bytes} bytes (serving.max_body_bytes)"


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def _shaped(send: Send, rid: str, method: str, path: str) -> Send:
    """``send`` that adds the request id header, rewrites error bodies not in the one
    shape, and logs client errors as one line."""
    status = 0
    held: dict[str, Any] | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal status, held
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers = [
                (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
            ]
            headers.append((b"x-request-id", rid.encode()))
            message = {**message, "headers": headers}
            if status < 400:
                await send(message)
                return
            held = dict(message)
            return
        if message["type"] == "http.response.body" and held is not None:
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body, code, text = _one_shape(b"".join(chunks), status, rid)
            if status < 500:
                log_client_error(method, path, status, code, text, rid)
            headers = [
                (k, v)
                for k, v in held.get("headers", [])
                if k.lower() not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return wrapped


def _one_shape(body: bytes, status: int, rid: str) -> tuple[bytes, str, str]:
    """The body in the one error shape (as it is when it already is), its code and
    message."""
    try:
        decoded = json.loads(body) if body else None
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        try:
            detail = ErrorDetail.model_validate(decoded["error"])
            return body, detail.code, detail.message
        except ValueError:
            pass
    if isinstance(decoded, list) and decoded and isinstance(decoded[0], dict):
        decoded = decoded[0]
    if isinstance(decoded, dict):
        text = str(decoded.get("error") or decoded.get("detail") or decoded)
    elif decoded is not None:
        text = str(decoded)
    else:
        text = body.decode("utf-8", errors="replace").strip() or _phrase(status)
    code = code_for(status)
    return error_body(status, text, request_id=rid, code=code), code, text


def _phrase(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


async def _reply(send: Send, status: int, body: bytes, extra: dict[str, str] | None) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 307,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})
