"""The gateway and the HTTP application, in process (ASGI): keys, scopes, rate limits,
body limits, strict JSON and the one error shape, without starting a server."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from features.errors import InputError, NotFoundError
from serving.api import ERRORS, build_app, openapi_document
from serving.gateway import AnyKeys, Gateway, RateLimiter, StaticKeys
from serving.keys import ApiKey, KeyStore

KEYS = {"admin-key-123": ["decide", "ingest", "admin"], "decide-key-123": ["decide"]}
ADMIN = {"Authorization": "Bearer admin-key-123"}
DECIDE = {"Authorization": "Bearer decide-key-123"}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: str = Field(min_length=1)
    n: int | None = Field(None, ge=1)
    context: dict[str, Any] = Field(default_factory=dict)


def _app(**gateway: Any) -> Gateway:
    app = build_app()

    @app.post("/recommend", responses=ERRORS)
    def recommend(body: Body) -> Response:
        if body.customer_id == "unprocessable":
            raise InputError("customer_id", body.customer_id, "cannot be acted on")
        if body.customer_id == "missing":
            raise NotFoundError("no such thing")
        if body.customer_id == "boom":
            raise RuntimeError("a bug")
        return Response(json.dumps({"ok": body.customer_id, "n": body.n}))

    @app.get("/customers/{customer_id}")
    def customer(customer_id: str) -> dict[str, str]:
        return {"customer_id": customer_id}

    @app.post("/events")
    def events(body: Body) -> dict[str, str]:
        return {"ok": "yes"}

    options: dict[str, Any] = {"keys": StaticKeys(KEYS), "max_body_bytes": 2048} | gateway
    return Gateway(app, **options)


def _call(app: Gateway, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def _error(response: httpx.Response) -> dict[str, Any]:
    """The one error shape, with the request id of the header."""
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert (
        {"code", "message", "request_id"}
        <= set(error)
        <= {
            "code",
            "message",
            "field",
            "request_id",
        }
    )
    assert error["request_id"] == response.headers["x-request-id"]
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


@pytest.fixture(scope="module")
def app() -> Gateway:
    return _app()


def test_a_valid_request_passes_with_a_request_id(app):
    answer = _call(app, "POST", "/recommend", json={"customer_id": "c1", "n": 3}, headers=ADMIN)
    assert answer.status_code == 200 and answer.json() == {"ok": "c1", "n": 3}
    assert len(answer.headers["x-request-id"]) == 32
    mine = _call(
        app,
        "POST",
        "/recommend",
        json={"customer_id": "c1"},
        headers={**ADMIN, "X-Request-ID": "send-42"},
    )
    assert mine.headers["x-request-id"] == "send-42"
    odd = _call(
        app,
        "POST",
        "/recommend",
        json={"customer_id": "c1"},
        headers={**ADMIN, "X-Request-ID": "a b\tc"},
    )
    assert odd.headers["x-request-id"] != "a b\tc"  # not echoed: a fresh one


def test_keys_and_scopes(app):
    body = {"customer_id": "c1"}
    none = _call(app, "POST", "/recommend", json=body)
    assert none.status_code == 401 and _error(none)["code"] == "unauthorized"
    assert none.headers["www-authenticate"] == "Bearer"
    wrong = _call(app, "POST", "/recommend", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    basic = _call(app, "POST", "/recommend", json=body, headers={"Authorization": "Basic x"})
    assert basic.status_code == 401
    refused = _call(app, "POST", "/events", json=body, headers=DECIDE)
    assert refused.status_code == 403 and "'ingest'" in _error(refused)["message"]
    assert _call(app, "POST", "/events", json=body, headers=ADMIN).status_code == 200
    assert _call(app, "GET", "/customers/c1").status_code == 401
    for open_path in ("/openapi.json", "/docs", "/docs.json"):
        assert _call(app, "GET", open_path).status_code == 200, open_path


def test_bodies_must_be_json_and_bounded(app):
    text = _call(
        app,
        "POST",
        "/recommend",
        content=b"customer_id=1",
        headers={**ADMIN, "Content-Type": "text/plain"},
    )
    assert text.status_code == 415 and _error(text)["code"] == "unsupported_media_type"
    bare = _call(app, "POST", "/recommend", content=b'{"customer_id": "c1"}', headers=ADMIN)
    assert bare.status_code == 415, "a body without Content-Type is refused"
    big = {"customer_id": "c1", "context": {"pad": "x" * 4000}}
    large = _call(app, "POST", "/recommend", json=big, headers=ADMIN)
    assert large.status_code == 413 and "2048" in _error(large)["message"]

    async def chunked() -> Any:
        for _ in range(5):
            yield b" " * 1000

    streamed = _call(
        app,
        "POST",
        "/recommend",
        content=chunked(),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413, "a body without Content-Length is bounded too"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"customer_id": ', "invalid JSON"),
        (b'{"customer_id": "c1", "n": NaN}', "invalid JSON"),
        (b'{"customer_id": "c1", "context": {"x": Infinity}}', "invalid JSON"),
        (b'{"customer_id": "\xff\xfe"}', "invalid JSON"),
        (b'{"customer_id": "c1", "context": ' + b"[" * 300 + b"]" * 300 + b"}", "recursion"),
        (b"[1, 2]", "body"),
        (b'"c1"', "body"),
    ],
)
def test_malformed_json_is_a_400(app, content, expected):
    answer = _call(
        app,
        "POST",
        "/recommend",
        content=content,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    error = _error(answer)
    assert error["code"] == "invalid_request" and expected in error["message"]


def test_validation_errors_name_the_field(app):
    unknown = _call(
        app, "POST", "/recommend", json={"customer_id": "c1", "bogus": 1, "zap": 2}, headers=ADMIN
    )
    error = _error(unknown)
    assert unknown.status_code == 400 and error["field"] == "bogus"
    assert "bogus" in error["message"] and "zap" in error["message"]
    bad = _call(app, "POST", "/recommend", json={"customer_id": "c1", "n": 0}, headers=ADMIN)
    assert bad.status_code == 400 and _error(bad)["field"] == "n"
    empty = _call(app, "POST", "/recommend", json={"customer_id": ""}, headers=ADMIN)
    assert empty.status_code == 400 and _error(empty)["field"] == "customer_id"
    none = _call(app, "POST", "/recommend", headers={**ADMIN, "Content-Type": "application/json"})
    assert none.status_code == 400 and "body is required" in _error(none)["message"]


def test_errors_of_the_core_and_the_framework_have_the_one_shape(app, caplog):
    caplog.set_level(logging.INFO, logger="tailor.http")
    cases = {
        ("POST", "/recommend", "unprocessable"): (422, "unprocessable"),
        ("POST", "/recommend", "missing"): (404, "not_found"),
        ("POST", "/recommend", "boom"): (500, "internal"),
    }
    for (method, path, customer), (status, code) in cases.items():
        answer = _call(app, method, path, json={"customer_id": customer}, headers=ADMIN)
        assert answer.status_code == status
        error = _error(answer)
        assert error["code"] == code
    assert "a bug" not in answer.text, "a server error tells the caller nothing internal"
    unprocessable = _call(
        app, "POST", "/recommend", json={"customer_id": "unprocessable"}, headers=ADMIN
    )
    assert _error(unprocessable)["field"] == "customer_id"
    route = _call(app, "GET", "/no/such/route", headers=ADMIN)
    assert route.status_code == 404 and _error(route)["code"] == "not_found"
    method = _call(app, "GET", "/recommend", headers=ADMIN)
    assert method.status_code == 405 and _error(method)["code"] == "method_not_allowed"
    # Client errors are one line each; the server error has its traceback.
    client_lines = [r for r in caplog.records if r.levelno == logging.INFO and "->" in r.message]
    assert client_lines and all(r.exc_info is None for r in client_lines)
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


def test_rate_limit_answers_429_with_retry_after():
    now = [0.0]
    app = _app(rate_limit=2.0, rate_burst=3, clock=lambda: now[0])
    body = {"customer_id": "c1"}
    codes = [
        _call(app, "POST", "/recommend", json=body, headers=ADMIN).status_code for _ in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    limited = _call(app, "POST", "/recommend", json=body, headers=ADMIN)
    assert _error(limited)["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    # Another key has its own bucket; time refills this one.
    assert _call(app, "POST", "/recommend", json=body, headers=DECIDE).status_code == 200
    now[0] += 1.0
    assert _call(app, "POST", "/recommend", json=body, headers=ADMIN).status_code == 200


def test_rate_limiter_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(10.0, 1.0, lambda: now[0])
    key = ApiKey(id="k", name="k", scopes=frozenset(), created=datetime.now(UTC))
    assert limiter.admit(key) is None
    wait = limiter.admit(key)
    assert wait == pytest.approx(0.1)
    now[0] += 0.1
    assert limiter.admit(key) is None
    assert RateLimiter(None, 1.0, lambda: 0.0).admit(key) is None


def test_workers_share_one_bucket_per_key(tmp_path):
    """Two workers (two limiters on one file) together admit the burst, not twice it."""
    now = [1_000.0]
    path = tmp_path / "online" / "ratelimit.db"
    workers = [RateLimiter(10.0, 3.0, lambda: now[0], path) for _ in range(2)]
    key = ApiKey(id="k", name="k", scopes=frozenset(), created=datetime.now(UTC))
    other = ApiKey(id="other", name="o", scopes=frozenset(), created=datetime.now(UTC))
    answers = [workers[i % 2].admit(key) for i in range(5)]
    assert answers[:3] == [None, None, None]
    assert answers[3] == pytest.approx(0.1) and answers[4] == pytest.approx(0.1)
    assert workers[1].admit(other) is None  # each key its own bucket
    now[0] += 0.1
    assert workers[1].admit(key) is None
    assert workers[0].admit(key) is not None


def test_a_limiter_whose_file_fails_admits_and_says_so(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    limiter = RateLimiter(1.0, 1.0, lambda: 0.0, blocked / "ratelimit.db")
    key = ApiKey(id="k", name="k", scopes=frozenset(), created=datetime.now(UTC))
    with caplog.at_level("ERROR", logger="serving.gateway"):
        assert [limiter.admit(key) for _ in range(3)] == [None, None, None]
    assert len([r for r in caplog.records if "rate limiter" in r.getMessage()]) == 1


def test_keys_from_the_key_store_work_and_revoking_takes_effect_without_restart(tmp_path):
    store = KeyStore(tmp_path / "keys.json", check_every=0.0)
    made = store.add(name="renderer", scopes="decide")
    app = _app(keys=AnyKeys(store, StaticKeys(KEYS)))
    auth = {"Authorization": f"Bearer {made.token}"}
    assert (
        _call(app, "POST", "/recommend", json={"customer_id": "c1"}, headers=auth).status_code
        == 200
    )
    assert (
        _call(app, "POST", "/events", json={"customer_id": "c1"}, headers=auth).status_code == 403
    )
    KeyStore(tmp_path / "keys.json").revoke(made.key.id)  # as `tailor keys revoke` does
    refused = _call(app, "POST", "/recommend", json={"customer_id": "c1"}, headers=auth)
    assert refused.status_code == 401


def test_key_lookups_chain():
    first = StaticKeys({"aaaaaaaa1": ["decide"]})
    second = StaticKeys({"bbbbbbbb2": ["admin"]})
    keys = AnyKeys(first, second)
    found = keys.lookup(b"bbbbbbbb2")
    assert found is not None and found.scopes == {"admin"}
    assert keys.lookup(b"cccccccc3") is None


def test_readiness_is_answered_with_its_reasons():
    state = {"ready": False}

    def readiness() -> tuple[bool, list[str]]:
        return (True, []) if state["ready"] else (False, ["the online folder is read-only"])

    app = _app(readiness=readiness)
    down = _call(app, "GET", "/readyz")
    assert down.status_code == 503 and "read-only" in _error(down)["message"]
    state["ready"] = True
    up = _call(app, "GET", "/readyz")
    assert up.status_code == 200 and up.json() == {"ready": True, "reasons": []}


def test_the_openapi_document_and_offline_docs(app):
    document = _call(app, "GET", "/openapi.json").json()
    assert document["info"]["version"] not in ("", "None")
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {"/recommend", "/healthz", "/readyz", "/metrics"} <= set(document["paths"])
    assert document["paths"]["/healthz"]["get"]["security"] == []
    assert _call(app, "GET", "/docs.json").json() == document
    page = _call(app, "GET", "/docs")
    assert page.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "http" not in page.text.replace("http-equiv", ""), "no asset from another host"
    bundle = _call(app, "GET", "/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    init = _call(app, "GET", "/docs/assets/swagger-init.js")
    assert '"/openapi.json"' in init.text and "validatorUrl: null" in init.text
    assert _call(app, "GET", "/docs/assets/..%2Fetc%2Fpasswd").status_code == 404
    root = _call(app, "GET", "/")
    assert root.status_code == 307 and root.headers["location"] == "/docs"
    assert openapi_document(build_app())["openapi"].startswith("3.")
