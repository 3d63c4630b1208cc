"""The BentoML service: HTTP glue over :class:`serving.core.DecisionCore`.

``tailor serve`` runs ``bentoml serve serving.service:Tailor``. Configuration comes
from the one settings object (``TAILOR_*`` variables and the TOML file named by
``TAILOR_CONFIG``, which ``tailor serve`` passes on from ``--config``). POST
endpoints are ``@bentoml.api`` methods; ``GET /customers/{id}`` and ``GET /status``
come from a FastAPI app mounted on the service. BentoML owns ``/healthz``,
``/livez``, ``/readyz`` (through ``__is_ready__``) and ``/metrics``.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import Counter
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI, HTTPException
from threadpoolctl import threadpool_limits

from features.errors import InputError, NotFoundError
from features.settings import Settings
from serving.auth import ApiKeyMiddleware
from serving.core import BatchTooLarge, DecisionCore, NotReady, UnknownCandidates
from serving.schemas import (
    Choice,
    ChooseRequest,
    CustomerView,
    EventsRequest,
    EventsResponse,
    Filters,
    Recommendation,
    RecommendBatchRequest,
    RecommendBatchResponse,
    RecommendRequest,
    SimilarItemsRequest,
    SimilarItemsResponse,
    Status,
)

logger = logging.getLogger(__name__)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
SETTINGS = Settings()
app = FastAPI(title="Tailor REST routes")

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


class Unprocessable(BentoMLException):
    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


class TooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Missing(BentoMLException):
    error_code = HTTPStatus.NOT_FOUND


class Unavailable(BentoMLException):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE


def _client_error(error: Exception) -> BentoMLException:
    """Map the core's errors to 4xx; anything else stays a server error."""
    if isinstance(error, BatchTooLarge):
        return TooLarge(str(error))
    if isinstance(error, UnknownCandidates | InputError):
        return Unprocessable(str(error))
    if isinstance(error, NotFoundError):
        return Missing(str(error))
    if isinstance(error, NotReady):
        return Unavailable(str(error))
    raise error


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
        self.core = DecisionCore(SETTINGS)
        self.core.reload()
        if self.core.bundle.rules_error is not None:
            # Not ready (/readyz 503) and decisions answer 503 until a reload loads
            # valid rules; `tailor serve` checks the rules before it starts this.
            logger.error("decisions refused: %s", self.core.bundle.rules_error)
        self._lock = threading.Lock()
        # What was loaded lives as long as the process: moved out of the collector's
        # way, and collections made rarer — a campaign batch allocates tens of
        # thousands of short-lived, acyclic objects, and full collections walking
        # the loaded models showed up as slow batches.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)

    def __is_ready__(self) -> bool:
        return self.core.ready()

    def _observe(self, endpoint: str, strategies: list[str]) -> None:
        for family, count in Counter(s.split(":")[0] for s in strategies).items():
            strategy_counter.labels(endpoint=endpoint, strategy=family).inc(count)
        bundle = self.core.bundle
        now = time.time()
        if bundle.as_of is not None:
            snapshot_age.set((now - bundle.as_of.timestamp()) / 3600.0)
        for name, registered in bundle.registered_at.items():
            model_age.labels(model=name).set((now - registered) / 3600.0)
        self.core.maybe_reload()

    @bentoml.api(route="/recommend")
    def recommend(
        self,
        customer_id: str,
        n: int | None = None,
        filters: Filters | None = None,
        context: dict[str, Any] | None = None,
        decision_id: str | None = None,
    ) -> Recommendation:
        """Ranked items for one customer."""
        try:
            request = RecommendRequest(
                customer_id=customer_id,
                n=n,
                filters=filters or Filters(),
                context=context or {},
                decision_id=decision_id,
            )
            result = self.core.recommend(request)
        except (InputError, NotFoundError, NotReady) as error:
            raise _client_error(error) from None
        self._observe("recommend", [result.strategy])
        return result

    @bentoml.api(route="/recommend_batch")
    def recommend_batch(
        self,
        customer_ids: list[str],
        n: int | None = None,
        filters: Filters | None = None,
        context: dict[str, Any] | None = None,
    ) -> RecommendBatchResponse:
        """Ranked items for many customers (a campaign send), up to the batch limit."""
        try:
            request = RecommendBatchRequest(
                customer_ids=customer_ids, n=n, filters=filters or Filters(), context=context or {}
            )
            result = self.core.recommend_batch(request)
        except (InputError, NotFoundError, NotReady) as error:
            raise _client_error(error) from None
        self._observe("recommend_batch", [r.strategy for r in result.results])
        return result

    @bentoml.api(route="/similar_items")
    def similar_items(
        self, item_id: str, n: int | None = None, filters: Filters | None = None
    ) -> SimilarItemsResponse:
        """Items similar to one item."""
        try:
            request = SimilarItemsRequest(
                item_id=item_id, n=n, filters=filters or Filters(exclude_purchased=False)
            )
            result = self.core.similar_items(request)
        except (InputError, NotFoundError, NotReady) as error:
            raise _client_error(error) from None
        self._observe("similar_items", [result.strategy])
        return result

    @bentoml.api(route="/choose")
    def choose(
        self,
        customer_id: str,
        slot: str,
        candidates: list[str] | None = None,
        context: dict[str, Any] | None = None,
        decision_id: str | None = None,
    ) -> Choice:
        """One content variant for a slot (subject, offer …), with its propensity."""
        try:
            request = ChooseRequest(
                customer_id=customer_id,
                slot=slot,
                candidates=candidates,
                context=context or {},
                decision_id=decision_id,
            )
            result = self.core.choose(request)
        except (InputError, NotFoundError, NotReady) as error:
            raise _client_error(error) from None
        self._observe("choose", [result.strategy])
        return result

    @bentoml.api(route="/events")
    def events(self, events: list[dict[str, Any]]) -> EventsResponse:
        """Validate and store events durably, then update profiles and triggers."""
        try:
            if not events:
                raise InputError("events", [], "give at least one event")
            result = self.core.ingest_events(EventsRequest(events=events).events)
        except (InputError, NotFoundError, NotReady) as error:
            raise _client_error(error) from None
        if result.accepted == 0 and result.duplicates == 0 and result.rejected:
            reasons = "; ".join(f"[{r.index}] {r.reason}" for r in result.rejected[:20])
            raise Unprocessable(f"every event was rejected (quarantined): {reasons}")
        return result

    @bentoml.api(route="/admin/reload")
    def reload(self) -> Status:
        """Load new champions and the newest snapshot; requests keep being served."""
        with self._lock:
            status = self.core.reload()
        self._observe("reload", [])
        return status

    @app.get("/status")
    def status(self) -> Status:
        """ready or degraded, with the reasons, model versions and snapshot age."""
        return self.core.status()

    @app.get("/customers/{customer_id}")
    def customer(self, customer_id: str) -> CustomerView:
        """Features, segments, active triggers and consent of one customer."""
        try:
            return self.core.customer(customer_id)
        except NotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None


Tailor.add_asgi_middleware(ApiKeyMiddleware, keys=SETTINGS.serving.api_keys)  # type: ignore[attr-defined]
