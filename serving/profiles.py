"""What a decision reads about one customer (:class:`Profile`), which recent events it
reads (:class:`RecentSelection`), and the customer's consent and deliverability state
(:class:`ConsentState`, with the rules consent events follow); the online store
(:mod:`serving.online`) fills them."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from features.data.contracts import EVENT_TYPES

PROFILE_EVENTS = tuple(e for e in EVENT_TYPES if e not in ("login", "identify", "stock_change"))


@dataclass
class Profile:
    """Everything a decision reads about one customer.

    ``known`` is false for an id the snapshot never saw (a cold-start visitor);
    ``personalised`` false means no behavioural data may be used (consent).
    ``consent_personalization``: the person's own consent to profiling where known
    (false: withdrawn — answered ``consent``, not as a cold start).
    ``not_sendable_reason``: why ``sendable`` is false (:data:`NOT_SENDABLE_REASONS`).
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
    consent_personalization: bool | None = None
    not_sendable_reason: str | None = None

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


NOT_SENDABLE_REASONS = (
    "no_email_consent",
    "unsubscribed",
    "hard_bounce",
    "complaint",
    "suppressed:<reason>",
    "frequency_cap:<channel>:<max>/<days>d",
    "unknown_customer",
)
"""Why a customer is not sendable, the first that applies in this order."""


@dataclass(frozen=True)
class ConsentState:
    """One person's consent and deliverability (a row of the online store's
    ``consent`` table). Times are epoch seconds; ``None``: not known.

    Each consent holds from its time (``consent_email_ts``,
    ``consent_personalization_ts``) until a later statement: a statement at the
    same time wins only when it withdraws. ``unsubscribed``: the e-mail consent in
    effect was withdrawn by an ``unsubscribe``. A hard bounce or a complaint at or
    after the last e-mail consent given (``email_granted_ts``) makes the address
    unsendable until consent is given again. The snapshot job applies the same rules
    up to as_of (:func:`features.snapshot.people._apply_consent_events`).
    """

    consent_email: bool | None = None
    consent_email_ts: float | None = None
    consent_personalization: bool | None = None
    consent_personalization_ts: float | None = None
    unsubscribed: bool = False
    email_granted_ts: float | None = None
    bounced_ts: float | None = None
    complained_ts: float | None = None

    @property
    def hard_bounced(self) -> bool:
        return _since(self.bounced_ts, self.email_granted_ts)

    @property
    def complained(self) -> bool:
        return _since(self.complained_ts, self.email_granted_ts)

    def reason(self) -> str | None:
        """Why this state is not sendable (``None``: nothing here forbids it; an
        unknown e-mail consent forbids nothing here either)."""
        if self.consent_email is False:
            return "unsubscribed" if self.unsubscribed else "no_email_consent"
        if self.hard_bounced:
            return "hard_bounce"
        if self.complained:
            return "complaint"
        return None

    def applied(self, kind: str, ts: float, properties: Any) -> ConsentState:
        """The state after one consent event (``kind`` in
        :data:`features.data.contracts.CONSENT_EVENTS`) at ``ts``; any other kind, or
        a statement older than the one in effect, leaves it as it is."""
        state = self
        if kind == "consent_change":
            given = _properties(properties)
            email = _flag(given.get("consent_email"))
            if email is not None:
                state = state._email(email, ts, unsubscribe=False)
            profiling = _flag(given.get("consent_personalization"))
            if profiling is not None and _newer(ts, state.consent_personalization_ts, profiling):
                state = replace(
                    state, consent_personalization=profiling, consent_personalization_ts=ts
                )
        elif kind == "unsubscribe":
            state = state._email(False, ts, unsubscribe=True)
        elif kind == "resubscribe":
            state = state._email(True, ts, unsubscribe=False)
        elif kind == "bounce":
            bounce_type = str(_properties(properties).get("bounce_type") or "hard").lower()
            if bounce_type != "soft":
                state = replace(state, bounced_ts=_latest(state.bounced_ts, ts))
        elif kind == "complaint":
            state = replace(state, complained_ts=_latest(state.complained_ts, ts))
        return state

    def _email(self, value: bool, ts: float, *, unsubscribe: bool) -> ConsentState:
        if not _newer(ts, self.consent_email_ts, value):
            return self
        return replace(
            self,
            consent_email=value,
            consent_email_ts=ts,
            unsubscribed=unsubscribe,
            email_granted_ts=_latest(self.email_granted_ts, ts) if value else self.email_granted_ts,
        )


def _newer(ts: float, current: float | None, value: bool) -> bool:
    """Whether a statement of ``value`` at ``ts`` replaces the one in effect since
    ``current``: later, or at the same time and a withdrawal."""
    return current is None or ts > current or (ts == current and not value)


def _since(event: float | None, granted: float | None) -> bool:
    return event is not None and (granted is None or event >= granted)


def _latest(current: float | None, ts: float) -> float:
    return ts if current is None else max(current, ts)


def _properties(value: Any) -> Mapping[str, Any]:
    """An event's properties as a mapping (stored as JSON text)."""
    if isinstance(value, Mapping):
        return value
    if value is None or not isinstance(value, str | bytes):
        return {}
    try:
        decoded = json.loads(value)
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _flag(value: Any) -> bool | None:
    """A consent value: JSON true / false, or the text true, false, 1, 0 (any case);
    ``None`` for anything else (as the snapshot job reads them)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    return None
