"""A BentoML service that does nothing, for ``bench.serving``'s ratios: the same
server, workers, input parsing and auth middleware as the Tailor service, no work."""

from __future__ import annotations

from typing import Any

import bentoml

from features.settings import Settings
from serving.auth import ApiKeyMiddleware

SETTINGS = Settings()


@bentoml.service(name="noop", workers=SETTINGS.serving.workers)
class Noop:
    @bentoml.api(route="/recommend")
    def recommend(
        self,
        customer_id: str,
        n: int | None = None,
        filters: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {"customer_id": customer_id, "items": []}


Noop.add_asgi_middleware(ApiKeyMiddleware, keys=SETTINGS.serving.api_keys)  # type: ignore[attr-defined]
