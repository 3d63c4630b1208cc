"""What both decision rooms (:mod:`serving.recommendations`, :mod:`serving.choices`)
decide with and share about a customer.

:class:`DecisionRoom` holds the bundle loader, the settings, the deadline pool, the
decision log and the strategy counters; the functions say what a rule's expression
sees (:func:`rule_variables`, :func:`live_features`), who is held out
(:func:`in_holdout`), who gets the challenger (:func:`for_person`) and make
decision ids (:func:`new_ids`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.data.decision_log import DecisionLog
from serving.deadline import DeadlinePool
from serving.profiles import Profile
from serving.rules import BUILTIN_NAMES
from serving.settings import ServiceSettings, ServingConfig
from serving.triggers import ActiveTrigger

if TYPE_CHECKING:  # the loader builds bundles from the rooms' layouts: a runtime import cycles
    from serving.bundle_data import Bundle
    from serving.bundles import BundleLoader


@dataclass(eq=False)
class DecisionRoom:
    """What a decision room (:class:`Choices`, and the recommendations) decides with.

    Attributes
    ----------
    loader : BundleLoader
        The bundle to decide with, and the online store of the customers.
    settings : ServiceSettings
        ``serving`` (deadlines, limits, holdout, fallback epsilon), the interaction
        weights and the trigger settings.
    pool : DeadlinePool
        Runs the models within the deadline (one pool for every room).
    decisions : DecisionLog
        Where every answer is appended.
    counters : Counter
        Answers per strategy family (one counter for every room).
    clock : callable
        Seconds since the epoch.
    """

    loader: BundleLoader
    settings: ServiceSettings
    pool: DeadlinePool
    decisions: DecisionLog
    counters: Counter[str]
    clock: Callable[[], float]

    @property
    def config(self) -> ServingConfig:
        return self.settings.serving


def new_id() -> str:
    return new_ids(1)[0]


def new_ids(count: int) -> list[str]:
    """Decision ids: 16 hex digits of time (ns), then 16 random ones — unique across
    workers, and in time order, so the decision log's id index grows at one end."""
    stamp = f"{time.time_ns():016x}"
    noise = os.urandom(8 * count).hex()
    return [stamp + noise[16 * k : 16 * k + 16] for k in range(count)]


def in_holdout(person: str, share: float) -> bool:
    """Whether ``person`` is in the stable ``share`` of customers that always gets the
    default (so lift can be measured)."""
    return _in_share(person, share, "holdout")


def in_challenger(person: str, share: float) -> bool:
    """Whether ``person`` is in the stable ``share`` of customers served by the
    challenger (a hash of its own, independent of the holdout's)."""
    return _in_share(person, share, "challenger")


def for_person(bundle: Bundle, person: str, share: float) -> Bundle:
    """The bundle that decides for ``person``: the challenger's for its share."""
    if bundle.challenger is not None and in_challenger(person, share):
        return bundle.challenger
    return bundle


def _in_share(person: str, share: float, salt: str) -> bool:
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{salt}:{person}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def rule_variables(
    profile: Profile,
    triggers: list[ActiveTrigger],
    slot: str,
    context: dict[str, Any],
    now: float,
    names: frozenset[str] | None = None,
) -> dict[str, Any]:
    """What a rule's expression sees (features only when ``names`` asks for some)."""
    needs_features = names is None or bool(names - BUILTIN_NAMES)
    variables = live_features(profile, now) if needs_features else {}
    variables.update(
        segments=list(profile.segments),
        triggers=sorted({t.trigger for t in triggers}),
        trigger_items=[t.item_id for t in triggers if t.item_id is not None],
        known=profile.known,
        slot=slot,
        context=dict(context),
    )
    return variables


def live_features(profile: Profile, now: float) -> dict[str, Any]:
    """The snapshot's features with recency brought up to ``now`` from live events."""
    features = dict(profile.features)
    last_event = _later(features.get("last_event_ts"), profile.last_event_ts)
    last_purchase = _later(features.get("last_purchase_ts"), profile.last_purchase_ts)
    if last_event is not None:
        features["last_event_ts"] = iso(last_event)
        features["days_since_last_event"] = (now - last_event) / 86400.0
    if last_purchase is not None:
        features["last_purchase_ts"] = iso(last_purchase)
        features["recency_days"] = (now - last_purchase) / 86400.0
    return features


def _later(snapshot_value: Any, live_value: float | None) -> float | None:
    values = [live_value] if live_value is not None else []
    if snapshot_value is not None:
        values.append(pd.Timestamp(snapshot_value).timestamp())
    return max(values) if values else None


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
