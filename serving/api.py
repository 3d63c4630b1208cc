"""The service's HTTP application: strict JSON bodies, errors mapped in one place, one
OpenAPI document and offline API docs.

Routes are declared on the BentoML service class (``serving/service.py``) against the
:data:`app` built here; this module owns what is common to all of them:

* bodies are parsed by pydantic's JSON parser with NaN and Infinity refused and
  nesting bounded, then validated against the request models, which refuse unknown
  fields;
* every exception becomes the one error shape (:mod:`serving.errors`): validation
  errors 400 naming the field, the core's errors by :func:`serving.errors.from_exception`,
  anything else 500 with its traceback in the log (and no detail in the answer);
* ``/openapi.json`` covers every route, BentoML's health routes included, with the
  bearer scheme and the project version; ``/docs`` is Swagger UI from the assets
  packaged with BentoML (no CDN, works offline).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Coroutine
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic_core import from_json
from starlette.exceptions import HTTPException as StarletteHTTPException

from features.errors import TailorError
from serving.errors import ApiError, ErrorBody, code_for, error_body, from_exception

logger = logging.getLogger("tailor.http")

try:
    VERSION = metadata.version("tailor")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    VERSION = "0+unknown"

DESCRIPTION = """\
Tailor answers, per e-mail recipient at send time, which products to show
(`/recommend`, `/recommend_batch`), which content to use for a slot (`/choose`: subject
line, offer), and takes the events that close the loop (`/events`).

**Authentication**: `Authorization: Bearer <key>`. Scopes: `decide` for decisions and
reading `/customers`, `ingest` for `/events` and `PUT /customers/{id}/consent`, `admin`
for `/admin/*` and `DELETE /customers/{id}`. Health, readiness, metrics and these docs
are open.

**Sending**: every decision says whether the customer may be e-mailed (`sendable`)
and, if not, why (`not_sendable_reason`): consent, unsubscribes, hard bounces and
complaints, the suppression list, the frequency caps. A consent change (posted as an
event or by `PUT /customers/{id}/consent`) holds from the next request.

**Errors** always have one shape, `{"error": {"code", "message", "field"?, "request_id"}}`;
the request id is also in the `X-Request-ID` header (send your own to correlate).
Bodies must be JSON (`Content-Type: application/json`, else 415), no larger than the
configured limit (413); unknown fields are refused (400). Rate limits answer 429 with
`Retry-After`.
"""

ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-light-32x32.png": "image/png",
}
DOCS_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"><title>Tailor API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-light-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
<script src="/docs/assets/swagger-init.js"></script>
</body>
</html>
"""
DOCS_INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
  });
};
"""
OPEN_ROUTES = {
    "/healthz": "The process is up.",
    "/livez": "The process is alive.",
    "/readyz": "Ready to decide (200), or not (503, with the reasons).",
    "/metrics": "Prometheus metrics (route templates as labels).",
}


def _assets_dir() -> Path:
    from bentoml._internal import server

    return Path(server.__file__).parent / "static_content"


class StrictJSONRequest(Request):
    """Bodies parsed by pydantic's parser: NaN / Infinity refused, nesting bounded,
    invalid UTF-8 refused, each a 400 naming the position."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = from_json(body, allow_inf_nan=False)
            except ValueError as error:
                raise json.JSONDecodeError(f"invalid JSON: {error}", "", 0) from None
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


def request_id(request: Request) -> str:
    state = request.scope.get("state") or {}
    return str(state.get("request_id") or "-")


def error_response(request: Request, error: ApiError) -> Response:
    body = error_body(
        error.status,
        error.message,
        request_id=request_id(request),
        code=error.code,
        field=error.field,
    )
    return Response(
        body, status_code=error.status, media_type="application/json", headers=error.headers
    )


def _field(loc: Any) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or None


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
    first: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid", "type": ""}
    field = _field(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        message = str(ctx.get("error") or "invalid JSON")
        field = None
    elif first.get("type") == "extra_forbidden":
        unknown = sorted(
            {_field(e.get("loc", ())) or "?" for e in errors if e.get("type") == "extra_forbidden"}
        )
        message = f"unknown field(s): {', '.join(unknown)}"
        field = unknown[0]
    elif first.get("type") == "missing" and field is None:
        message = "a JSON body is required"
    else:
        message = f"{field or 'body'}: {first.get('msg', 'invalid')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
    return error_response(request, ApiError(400, "invalid_request", message, field=field))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.url.path}"
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    error = ApiError(exc.status_code, code_for(exc.status_code), message)
    return error_response(request, error)


async def _api_error(request: Request, exc: Exception) -> Response:
    mapped = from_exception(exc)
    if mapped is None:
        logger.exception(
            "%s %s failed [request %s]", request.method, request.url.path, request_id(request)
        )
        mapped = ApiError(500, "internal", "an unexpected error; the server log has the request id")
    return error_response(request, mapped)


def json_response(model: BaseModel) -> Response:
    """A validated response model as JSON, without FastAPI validating it again."""
    return Response(model.model_dump_json(), media_type="application/json")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "The body is not valid: a field is missing, of the wrong type, or unknown.",
        401: "No or an invalid API key.",
        403: "The key lacks the route's scope.",
        404: "No such customer, item, content, slot or route.",
        413: "The body, or a list in it, is over its limit.",
        415: "The body is not JSON.",
        422: "Valid JSON that cannot be acted on.",
        429: "The key's rate limit is exceeded; see `Retry-After`.",
        500: "A server error; the log has the request id.",
        503: "Not ready: no valid rules loaded, or a store cannot be written.",
    }.items()
}


def build_app() -> FastAPI:
    app = FastAPI(
        title="Tailor",
        version=VERSION,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.router.route_class = StrictJSONRoute
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # The core's errors by class (answered here); anything else reaches Starlette's
    # server-error middleware, which answers 500 through the same handler.
    for known in (ApiError, TailorError, sqlite3.OperationalError, Exception):
        app.add_exception_handler(known, _api_error)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response:
        return Response(json.dumps(openapi_document(app)), media_type="application/json")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_HTML)

    @app.get("/docs/assets/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name == "swagger-init.js":
            return Response(DOCS_INIT, media_type="text/javascript")
        if name not in ASSETS:
            raise ApiError(404, "not_found", f"no asset {name!r}")
        return FileResponse(_assets_dir() / name, media_type=ASSETS[name])

    return app


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """Every route (the service's and BentoML's), the bearer scheme, the version."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `tailor keys add`.",
    }
    document["security"] = [{"bearer": []}]
    paths = document.setdefault("paths", {})
    for path, summary in OPEN_ROUTES.items():
        content = {"/metrics": "text/plain; version=0.0.4", "/readyz": "application/json"}.get(
            path, "text/plain"
        )
        responses: dict[str, Any] = {"200": {"description": summary, "content": {content: {}}}}
        if path == "/readyz":
            responses["503"] = {
                "description": "Not ready, with the reasons.",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                },
            }
        paths[path] = {
            "get": {
                "summary": summary,
                "operationId": path.strip("/"),
                "security": [],
                "tags": ["operations"],
                "responses": responses,
            }
        }
    app.openapi_schema = document
    return document
