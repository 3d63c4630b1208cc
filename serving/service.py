"""The BentoML service: HTTP glue over :class:`serving.core.DecisionCore`.

``tailor serve`` runs ``bentoml serve serving.service:Tailor``. Configuration comes
from the one settings object (``TAILOR_*`` variables and the TOML file named by
``TAILOR_CONFIG``, which ``tailor serve`` passes on from ``--config``). Every route is
a FastAPI route (:mod:`serving.api`: strict JSON, one error shape, one OpenAPI
document) mounted on the BentoML service, behind :class:`serving.gateway.Gateway`
(request ids, keys, scopes, rate limits, body limits). BentoML runs the processes and
owns ``/healthz``, ``/livez`` and ``/metrics``; the gateway answers ``/readyz``.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections import Counter
from typing import Annotated

import bentoml
from fastapi import Path, Request, Response
from threadpoolctl import threadpool_limits

from serving import metrics
from serving.api import ERRORS, build_app, json_response, openapi_document
from serving.core import DecisionCore
from serving.errors import ErrorBody
from serving.events import StoreUnavailable
from serving.gateway import AnyKeys, Gateway, StaticKeys
from serving.keys import KeyStore
from serving.schemas import (
    Choice,
    ChooseRequest,
    ConsentRequest,
    ConsentView,
    CustomerView,
    ErasureReceipt,
    EventsRequest,
    EventsResponse,
    Recommendation,
    RecommendBatchRequest,
    RecommendBatchResponse,
    RecommendRequest,
    SimilarItemsRequest,
    SimilarItemsResponse,
    Status,
)
from serving.settings import ServiceSettings

logger = logging.getLogger(__name__)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
SETTINGS = ServiceSettings()
app = build_app()

strategy_counter = bentoml.metrics.Counter(
    name="tailor_decisions",
    documentation="Decisions answered, by endpoint and strategy family",
    labelnames=["endpoint", "strategy"],
)
snapshot_age = bentoml.metrics.Gauge(
    name="tailor_snapshot_age_hours", documentation="Age of the loaded feature snapshot"
)
model_age = bentoml.metrics.Gauge(
    name="tailor_model_age_hours",
    documentation="Hours since the loaded champion was registered",
    labelnames=["model"],
)


class Readiness:
    """What ``/readyz`` reports, filled in once the service instance exists."""

    core: DecisionCore | None = None

    def __call__(self) -> tuple[bool, list[str]]:
        if self.core is None:
            return False, ["starting: models and the snapshot are loading"]
        return self.core.readiness()


READINESS = Readiness()
CONFLICT = {
    "model": ErrorBody,
    "description": "The change's time is one the event log refuses (in the future, or "
    "before 1970): nothing was changed.",
}
Decision = Recommendation | RecommendBatchResponse | SimilarItemsResponse | Choice
"""An answer of a decision route."""


@bentoml.service(
    name="tailor",
    workers=SETTINGS.serving.workers,
    traffic={"timeout": 120},
)
@bentoml.asgi_app(app, path="/")
class Tailor:
    """Recommendations and content decisions for personalised email."""

    def __init__(self) -> None:
        # One worker process per core: native thread pools would only contend.
        threadpool_limits(1)
        try:
            self.core = DecisionCore(SETTINGS)
        except StoreUnavailable as error:  # say why before the worker goes
            logger.error("the service cannot start: %s", error)
            raise
        self.core.reload()
        if self.core.bundle.rules_error is not None:
            # Not ready (/readyz 503) and decisions answer 503 until a reload loads
            # valid rules; `tailor serve` checks the rules before it starts this.
            logger.error("decisions refused: %s", self.core.bundle.rules_error)
        self.core.start_polling()
        READINESS.core = self.core
        # What was loaded lives as long as the process: moved out of the collector's
        # way, and collections made rarer — a campaign batch allocates tens of
        # thousands of short-lived, acyclic objects, and full collections walking
        # the loaded models showed up as slow batches.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)

    def _observed(self, endpoint: str, result: Decision) -> Response:
        """``result`` as JSON, its strategies counted and the model ages set."""
        if isinstance(result, RecommendBatchResponse):
            strategies = [r.strategy for r in result.results]
        else:
            strategies = [result.strategy]
        for family, count in Counter(s.split(":")[0] for s in strategies).items():
            strategy_counter.labels(endpoint=endpoint, strategy=family).inc(count)
        bundle = self.core.bundle
        now = time.time()
        if bundle.as_of is not None:
            snapshot_age.set((now - bundle.as_of.timestamp()) / 3600.0)
        for name, registered in bundle.registered_at.items():
            model_age.labels(model=name).set((now - registered) / 3600.0)
        return json_response(result)

    @app.post("/recommend", response_model=Recommendation, responses=ERRORS, tags=["decisions"])
    def recommend(self, body: RecommendRequest) -> Response:
        """Ranked items for one customer, within the deadline (else its fallback)."""
        return self._observed("recommend", self.core.recommend(body))

    @app.post(
        "/recommend_batch",
        response_model=RecommendBatchResponse,
        responses=ERRORS,
        tags=["decisions"],
    )
    def recommend_batch(self, body: RecommendBatchRequest) -> Response:
        """Ranked items for many customers (a campaign send), up to the batch limit."""
        return self._observed("recommend_batch", self.core.recommend_batch(body))

    @app.post(
        "/similar_items", response_model=SimilarItemsResponse, responses=ERRORS, tags=["decisions"]
    )
    def similar_items(self, body: SimilarItemsRequest) -> Response:
        """Items similar to one item."""
        return self._observed("similar_items", self.core.similar_items(body))

    @app.post("/choose", response_model=Choice, responses=ERRORS, tags=["decisions"])
    def choose(self, body: ChooseRequest) -> Response:
        """One content variant for a slot (subject, offer …), with its propensity."""
        return self._observed("choose", self.core.choose(body))

    @app.post("/events", response_model=EventsResponse, responses=ERRORS, tags=["events"])
    def events(self, body: EventsRequest) -> Response:
        """Validate and store events durably, then update profiles and triggers.

        Answers once the accepted rows are on disk. Each row stands alone: bad rows
        come back in `rejected` with their reasons (and are quarantined)."""
        return json_response(self.core.ingest_events(body.events))

    @app.post("/admin/reload", response_model=Status, responses=ERRORS, tags=["admin"])
    def reload(self, request: Request) -> Response:
        """Load new champions and the newest snapshot now; requests keep being served.

        A load that fails keeps what was serving and answers 503 with the reasons.
        Audited under the API key's id."""
        return json_response(self.core.reload_or_raise(actor=_actor(request)))

    @app.get("/status", response_model=Status, responses=ERRORS, tags=["operations"])
    def status(self) -> Response:
        """ready or degraded, with the reasons, model versions and snapshot age."""
        return json_response(self.core.status())

    @app.get(
        "/customers/{customer_id}",
        response_model=CustomerView,
        responses=ERRORS,
        tags=["customers"],
    )
    def customer(self, customer_id: str) -> Response:
        """Features, segments, active triggers and consent of one customer."""
        return json_response(self.core.customer(customer_id))

    @app.put(
        "/customers/{customer_id}/consent",
        response_model=ConsentView,
        responses={**ERRORS, 409: CONFLICT},
        tags=["customers"],
    )
    def consent(
        self,
        customer_id: Annotated[str, Path(min_length=1, max_length=256)],
        body: ConsentRequest,
        request: Request,
    ) -> Response:
        """Change a customer's consent (a preference centre): written durably as a
        `consent_change` event, in effect from the next request, and audited under
        the API key's id. Answers the customer's consent state after it."""
        return json_response(self.core.set_consent(customer_id, body, actor=_actor(request)))

    @app.delete(
        "/customers/{customer_id}",
        response_model=ErasureReceipt,
        responses=ERRORS,
        tags=["customers"],
    )
    def erase(
        self,
        customer_id: Annotated[str, Path(min_length=1, max_length=256)],
        request: Request,
    ) -> Response:
        """Erase the person (every id linked to them) from every store, the registered
        models and the models served, at once; requests keep being served. Answers the
        receipt (no personal data: the person as a keyed hash), also kept in the
        privacy ledger and the audit log. Admin scope; 404 when no store knows the id."""
        return json_response(self.core.erase(customer_id, actor=_actor(request)))


def _actor(request: Request) -> str:
    """Who is calling, for the audit log: the API key's id (never the key)."""
    state = request.scope.get("state") or {}
    return str(state.get("api_key") or "unauthenticated")


metrics.install(
    lambda: [*openapi_document(app)["paths"], "/docs", "/docs/assets/{name}", "/openapi.json"]
)
Tailor.add_asgi_middleware(  # type: ignore[attr-defined]
    Gateway,
    # The key store (hashed, `tailor keys`; re-read when it changes, so keys are added
    # and revoked without a restart), then any keys given in the settings.
    keys=AnyKeys(KeyStore(SETTINGS.keys_file), StaticKeys(SETTINGS.serving.api_keys)),
    max_body_bytes=SETTINGS.serving.max_body_bytes,
    rate_limit=SETTINGS.serving.rate_limit,
    rate_burst=SETTINGS.serving.rate_burst,
    rate_file=SETTINGS.online_dir / "ratelimit.db",
    readiness=READINESS,
)
