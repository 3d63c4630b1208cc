"""The decision core: every answer of the service, in plain Python (no HTTP).

For each request, in order: **consent gate** (no personalisation consent: the
non-personalised default) → **holdout** (a stable share of customers always gets
the default, so lift can be measured) → **rules** (highest priority wins) →
**business filters and eligibility** (applied to the candidates *before* scoring,
so a logged propensity is the true probability among what could be shown) →
**model** (the registry's champions, within a deadline) with **exploration** (the
selector's policy; without a selector, epsilon around the default) →
**fallbacks** (segment default → popular items / default content). Every answer
names its strategy, the versions behind it and a ``decision_id``, and is appended to
the decision log.

:class:`DecisionCore` is the facade the service, the benchmarks and the tests hold:
it opens the stores and hands each job to its room —

* :mod:`serving.bundles`: loads the state served (one immutable bundle,
  :mod:`serving.bundle_data`, swapped whole on reload, so a request in flight
  finishes on the bundle it started with);
* :mod:`serving.recommendations`: ``recommend``, ``recommend_batch``,
  ``similar_items`` (each recipient's item list: :mod:`serving.item_lists`);
* :mod:`serving.choices`: ``choose``;

and answers status, readiness, posted events, customer views and consent changes
itself. Whether a customer may be e-mailed (``sendable``, and why not) comes with
every answer: consent and deliverability, the privacy ledger's suppression list and
the frequency caps (:meth:`serving.online.OnlineStore.profiles`).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from features.data.decision_log import DecisionLog
from features.data.online_log import OnlineEventLog
from features.errors import NotFoundError
from features.privacy.ledger import PrivacyLedger
from models.registry import tracking_uri
from serving.bundle_data import Bundle
from serving.bundles import (
    RECOMMENDER_NAME,
    SELECTOR_PREFIX,
    SLOTS,
    BundleLoader,
    online_store,
)
from serving.choices import Choices
from serving.deadline import DeadlinePool
from serving.deciding import in_holdout, iso, live_features
from serving.erasure import erase_person
from serving.errors import ApiError, BatchTooLarge, ReloadFailed
from serving.events import EventWriter, StoreUnavailable
from serving.online import OnlineStore
from serving.recommendations import Recommendations
from serving.schemas import (
    Choice,
    ChooseRequest,
    ConsentRequest,
    ConsentView,
    CustomerView,
    ErasureReceipt,
    EventsResponse,
    Recommendation,
    RecommendBatchRequest,
    RecommendBatchResponse,
    RecommendRequest,
    SimilarItemsRequest,
    SimilarItemsResponse,
    Status,
    TriggerView,
)
from serving.settings import ServiceSettings
from serving.triggers import profile_triggers

Scorer = Callable[..., tuple[np.ndarray, np.ndarray]]


class DecisionCore:
    """Loads champions and the snapshot, answers requests, logs decisions.

    Parameters
    ----------
    settings : ServiceSettings
        ``home`` holds the event store, snapshots, MLflow and the online stores.
    tracking : str, optional
        MLflow tracking URI (default: the embedded store under ``home``).
    clock : callable, optional
        Seconds since the epoch (tests move time with it).
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        tracking: str | None = None,
        clock: Any = time.time,
    ) -> None:
        self.settings = settings
        self.config = settings.serving
        self.clock = clock
        tracking = tracking or tracking_uri(settings.home)
        online = settings.online_dir
        try:
            self.events_log = OnlineEventLog(online / "events.db")
            # One ledger: its suppression list applies to every online store, consent
            # changes by API are audited in it, and erased ids stay out of the logs.
            self.ledger = PrivacyLedger.for_settings(settings)
            self.decisions = DecisionLog(online / "decisions.db", ledger=self.ledger)
            live = online_store(settings, online / "profiles" / "live.db", ledger=self.ledger)
        except (OSError, sqlite3.Error) as error:
            # Serve nothing rather than die without a word: readiness says why.
            raise StoreUnavailable(
                f"the online folder {online} cannot be written: {error}; "
                "make it writable (TAILOR_HOME) and restart"
            ) from error
        self.loader = BundleLoader(
            settings,
            tracking=tracking,
            events_log=self.events_log,
            live=live,
            ledger=self.ledger,
        )
        self._pool = DeadlinePool(max_workers=4)
        self.writer = EventWriter(
            self.events_log,
            lambda: self.online,
            max_future_skew=settings.max_future_skew,
            swap_lock=self.loader.swap_lock,
            limits=settings.row_limits,
            ledger=self.ledger,
        )
        self.counters: Counter[str] = Counter()
        room = (self.loader, settings, self._pool, self.decisions, self.counters, clock)
        self.recommendations = Recommendations(*room)
        self.choices = Choices(*room)

    # ================================================================== loaded state
    @property
    def bundle(self) -> Bundle:
        """The bundle being served (:class:`serving.bundle_data.Bundle`)."""
        return self.loader.bundle

    @property
    def online(self) -> OnlineStore:
        """The online store of the bundle being served."""
        return self.loader.online

    @property
    def tracking(self) -> str:
        """The MLflow tracking URI the champions are loaded from."""
        return self.loader.tracking

    @tracking.setter
    def tracking(self, uri: str) -> None:
        self.loader.tracking = uri

    @property
    def _score(self) -> Scorer:
        """The recommender's scoring step, run under the deadline (tests slow it)."""
        return self.recommendations.score

    @_score.setter
    def _score(self, score: Scorer) -> None:
        self.recommendations.score = score  # type: ignore[method-assign]

    def reload(self, *, force: bool = False) -> Status:
        """Load new champions and the newest snapshot where they changed.

        Anything that fails keeps what was loaded before and is reported in the
        status reasons; nothing here raises to a caller.
        """
        return self._status(self.loader.reload(force=force))

    def reload_or_raise(self, *, actor: str | None = None) -> Status:
        """:meth:`reload`, raising :class:`ReloadFailed` when something did not load;
        audited under ``actor`` (the API key id) when one is given."""
        status = self.reload()
        if actor is not None:
            self.ledger.audit(
                actor,
                "reload",
                None,
                {"models": _models(self.bundle), "errors": list(self.bundle.load_errors)},
            )
        if self.bundle.load_errors:
            raise ReloadFailed("; ".join(self.bundle.load_errors))
        return status

    def start_polling(self) -> None:
        """Reload and check the online folder in the background
        (:meth:`serving.bundles.BundleLoader.start_polling`)."""
        self.loader.start_polling()

    def status(self) -> Status:
        return self._status(self.bundle)

    def _status(self, bundle: Bundle) -> Status:
        age = None
        if bundle.as_of is not None:
            age = (datetime.now(UTC) - bundle.as_of).total_seconds() / 3600.0
        stores = [e for e in (self.loader.store_error, self.writer.error) if e is not None]
        reasons = stores + list(bundle.reasons)
        return Status(
            state="degraded" if reasons else "ready",
            reasons=reasons,
            models=_models(bundle),
            challenger=None if bundle.challenger is None else _models(bundle.challenger),
            snapshot=bundle.snapshot_id,
            snapshot_age_hours=age,
            model_age_hours={
                name: (time.time() - registered) / 3600.0
                for name, registered in bundle.registered_at.items()
            },
            loaded_at=None if bundle.loaded_at is None else bundle.loaded_at.isoformat(),
        )

    def ready(self) -> bool:
        return self.readiness()[0]

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready when something can be served (popular items or default content) under
        rules that loaded, and the stores the service writes can be written; with the
        reasons it is not (or is degraded)."""
        bundle = self.bundle
        problems = [e for e in (self.loader.store_error, self.writer.error) if e is not None]
        if bundle.rules_error is not None:
            problems.append(f"the rules did not load: {bundle.rules_error}")
        if bundle.catalog is None and len(bundle.content) == 0:
            problems.append("nothing to serve: no feature snapshot and no active content")
        if problems:
            return False, problems
        return True, list(bundle.reasons)

    # ================================================================== decisions
    def recommend(self, request: RecommendRequest) -> Recommendation:
        return self.recommendations.recommend(request)

    def recommend_batch(self, request: RecommendBatchRequest) -> RecommendBatchResponse:
        return self.recommendations.recommend_batch(request)

    def similar_items(self, request: SimilarItemsRequest) -> SimilarItemsResponse:
        return self.recommendations.similar_items(request)

    def choose(self, request: ChooseRequest) -> Choice:
        return self.choices.choose(request)

    # ================================================================== events
    def ingest_events(self, records: list[dict[str, Any]]) -> EventsResponse:
        """Store posted events durably (group commit, :mod:`serving.events`) and apply
        them to the online store. Each row stands alone: bad ones come back rejected
        with their reasons (and are quarantined), even when every row is bad."""
        if len(records) > self.config.max_events_per_call:
            raise BatchTooLarge(
                "events",
                len(records),
                f"at most {self.config.max_events_per_call} events per call",
            )
        return self.writer.post(records)

    # ================================================================== customers
    def customer(self, customer_id: str) -> CustomerView:
        person = self.online.resolve([customer_id])[customer_id]
        now = self.clock()
        profile = self.online.profiles([person], now=now)[person]
        if not profile.known and not profile.recent:
            raise NotFoundError(f"customer {customer_id!r} is not known")
        triggers = (
            profile_triggers(profile, now, self.settings.features.triggers)
            if profile.personalised
            else []
        )
        return CustomerView(
            customer_id=customer_id,
            canonical_id=person,
            known=profile.known,
            personalised=profile.personalised,
            sendable=profile.sendable,
            not_sendable_reason=profile.not_sendable_reason,
            features=live_features(profile, now) if profile.personalised else {},
            segments=profile.segments,
            triggers=[
                TriggerView(
                    trigger=t.trigger,
                    item_id=t.item_id,
                    fired_at=iso(t.fired_at),
                    expires_at=iso(t.expires_at),
                )
                for t in triggers
            ],
            holdout=self._in_holdout(person),
        )

    def set_consent(self, customer_id: str, request: ConsentRequest, *, actor: str) -> ConsentView:
        """Write the change as a ``consent_change`` event to the durable online log, as
        ``POST /events`` would (in effect from the next request), audit it in the
        privacy ledger (``actor``: the API key id; the customer only as the keyed hash
        of their canonical id), and answer their consent state after it.

        Raises
        ------
        ApiError
            409 when the event log refuses its time (later than now plus the allowed
            clock skew, or before ``min_event_ts``): no change is made.
        NotFoundError
            When the log refuses the id (no customer can have it) or drops the event
            (the id belongs to an erased person).
        """
        changes = request.changes()
        at = request.ts or datetime.fromtimestamp(self.clock(), UTC)
        event_id = f"consent-{uuid.uuid4().hex}"
        answer = self.ingest_events(
            [
                {
                    "event_id": event_id,
                    "ts": at.isoformat(),
                    "event_type": "consent_change",
                    "customer_id": customer_id,
                    "properties": changes,
                }
            ]
        )
        if answer.rejected:
            reason = answer.rejected[0].reason
            if reason.startswith("ts"):
                # The request is well formed; its time conflicts with the server's clock.
                raise ApiError(409, "conflict", f"consent change refused: {reason}", field="ts")
            raise NotFoundError(f"customer_id {customer_id!r} cannot be recorded: {reason}")
        if answer.accepted == 0:
            raise NotFoundError(f"customer {customer_id!r}: the consent change was not kept")
        person = self.online.resolve([customer_id])[customer_id]
        self.ledger.audit(
            actor,
            "consent_change",
            self.ledger.key("id", person),
            {**changes, "ts": at.isoformat(), "event_id": event_id},
        )
        profile = self.online.profiles([person], now=self.clock(), features=False)[person]
        state = self.online.consent([person])[person]
        return ConsentView(
            customer_id=customer_id,
            canonical_id=person,
            known=profile.known,
            consent_email=state.consent_email,
            consent_personalization=state.consent_personalization,
            personalised=profile.personalised,
            sendable=profile.sendable,
            not_sendable_reason=profile.not_sendable_reason,
            event_id=event_id,
        )

    def erase(self, customer_id: str, *, actor: str) -> ErasureReceipt:
        """Erase the person ``customer_id`` belongs to from every store, the registry
        and the models served (:func:`serving.erasure.erase_person`); the receipt."""
        receipt = erase_person(
            self.settings,
            customer_id,
            actor=actor,
            loader=self.loader,
            tracking=self.loader.tracking,
            ledger=self.ledger,
        )
        return ErasureReceipt.model_validate(receipt)

    def _in_holdout(self, person: str) -> bool:
        return in_holdout(person, self.config.holdout_share)

    def close(self) -> None:
        self.loader.stop()
        self.writer.close()
        self._pool.shutdown()
        self.events_log.close()
        self.ledger.close()


def _models(bundle: Bundle) -> dict[str, str | None]:
    """The registered name and version of each model ``bundle`` serves."""
    return {
        RECOMMENDER_NAME: bundle.recommender_version,
        **{SELECTOR_PREFIX + s: bundle.selector_versions.get(s) for s in SLOTS},
    }
