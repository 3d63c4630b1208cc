"""Request metrics labelled by route template, not raw path.

BentoML's traffic metrics label each request with its raw path, so
``GET /customers/c0000001`` would make one time series per customer. Its middleware
is replaced (before the app is built) by one that hands it the route template
(``/customers/{customer_id}``) as the path, and the real path to the routes below.
Paths that match no route share one label.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from bentoml._internal.server.http import instruments

UNMATCHED = "/{unmatched}"
_scope: ContextVar[Any] = ContextVar("tailor_original_scope")


def install(templates: Callable[[], list[str]]) -> None:
    """Label requests by the route templates (``/customers/{customer_id}`` …) that
    ``templates`` gives, read at the first request (once every route is declared)."""
    patterns: list[tuple[re.Pattern[str], str]] = []
    exact: set[str] = set()

    def template(path: str) -> str:
        if not patterns:
            for t in templates():
                exact.add(t)
                patterns.append((re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", t) + "$"), t))
        if path in exact:
            return path
        for pattern, name in patterns:
            if pattern.match(path):
                return name
        return UNMATCHED

    base = instruments.RunnerTrafficMetricsMiddleware
    if getattr(base, "tailor_route_labels", False):
        return

    class RouteLabelled(base):  # type: ignore[misc, valid-type]
        tailor_route_labels = True

        def __init__(self, app: Any, **options: Any) -> None:
            super().__init__(self._inner, **options)
            self._app = app

        async def _inner(self, _scope_seen: Any, receive: Any, send: Any) -> None:
            await self._app(_scope.get(), receive, send)

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self._app(scope, receive, send)
                return
            token = _scope.set(scope)
            try:
                await super().__call__({**scope, "path": template(scope["path"])}, receive, send)
            finally:
                _scope.reset(token)

    instruments.RunnerTrafficMetricsMiddleware = RouteLabelled  # type: ignore[misc, assignment]
