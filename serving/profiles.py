"""What a decision reads about one customer (:class:`Profile`), and which recent events
it reads (:class:`RecentSelection`); the online store (:mod:`serving.online`) fills them."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from features.data.contracts import EVENT_TYPES

PROFILE_EVENTS = tuple(e for e in EVENT_TYPES if e not in ("login", "identify", "stock_change"))


@dataclass
class Profile:
    """Everything a decision reads about one customer.

    ``known`` is false for an id the snapshot never saw (a cold-start visitor);
    ``personalised`` false means no behavioural data may be used (consent).
    """

    customer_id: str
    known: bool
    personalised: bool
    sendable: bool
    raw_features: str | None = "{}"  # None: read without features
    segments: list[str] = field(default_factory=list)
    snapshot_triggers: list[dict[str, Any]] = field(default_factory=list)
    recent: list[tuple[float, str, str | None]] = field(default_factory=list)
    responses: dict[str, tuple[int, int]] = field(default_factory=dict)
    last_event_ts: float | None = None
    last_purchase_ts: float | None = None
    snapshot_last_purchase_ts: float | None = None

    @functools.cached_property
    def features(self) -> dict[str, Any]:
        """The snapshot's feature row (decoded on first use: most decisions never read it)."""
        if self.raw_features is None:
            raise RuntimeError(f"profile of {self.customer_id!r} was read without features")
        decoded: dict[str, Any] = json.loads(self.raw_features)
        return decoded


@dataclass(frozen=True)
class RecentSelection:
    """Which recent events a decision reads: every event from ``every_since``, and
    the ``kinds`` from ``since`` (epoch seconds). Reading fewer rows is most of what
    makes a campaign batch fast; both bounds make one index range per customer."""

    every_since: float
    since: float
    kinds: tuple[str, ...]

    def sql(self) -> tuple[str, tuple[Any, ...]]:
        kinds = ", ".join("?" for _ in self.kinds) or "NULL"
        return (
            f" AND ts >= ? AND (ts >= ? OR event_type IN ({kinds}))",
            (min(self.every_since, self.since), self.every_since, *self.kinds),
        )
