"""A BentoML service that does nothing, for ``bench.serving``'s ratios: the same
server, workers, body parsing, gateway and error handling as the Tailor service, no
work."""

from __future__ import annotations

import bentoml
from fastapi import Response

from serving.api import build_app
from serving.gateway import Gateway, StaticKeys
from serving.schemas import RecommendRequest
from serving.settings import ServiceSettings

SETTINGS = ServiceSettings()
app = build_app()


@bentoml.service(name="noop", workers=SETTINGS.serving.workers)
@bentoml.asgi_app(app, path="/")
class Noop:
    @app.post("/recommend")
    def recommend(self, body: RecommendRequest) -> Response:
        return Response(f'{{"customer_id": "{body.customer_id}", "items": []}}')


Noop.add_asgi_middleware(  # type: ignore[attr-defined]
    Gateway,
    keys=StaticKeys(SETTINGS.serving.api_keys),
    max_body_bytes=SETTINGS.serving.max_body_bytes,
)
