"""The SQL vocabulary every stage of the snapshot job shares: event type codes, the
predicate on them, UTC timestamp literals, and hour and age expressions over ``ts``."""

from __future__ import annotations

from datetime import UTC, datetime

from features.data.contracts import EVENT_TYPES

# The resolved event table stores an event type as its position in EVENT_TYPES (a
# one-byte code instead of a string); the SQL names types through ``_is``.
TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}


def _is(*event_types: str) -> str:
    """SQL predicate on the type code ``et``: ``_is("purchase")`` → ``et = 6``."""
    codes = ", ".join(str(TYPE_CODES[t]) for t in event_types)
    return f"et IN ({codes})"


def _timestamp(moment: datetime) -> str:
    """A UTC timestamp literal (microsecond precision)."""
    return f"TIMESTAMPTZ '{moment.astimezone(UTC).isoformat()}'"


# Hour of the day of a UTC timestamp, by integer arithmetic on microseconds (exact,
# and far cheaper than calendar functions on ten million rows).
_UTC_HOUR = "((epoch_us(ts) % 86400000000 + 86400000000) % 86400000000) // 3600000000"
_AS_OF_US = "epoch_us($as_of)"
_AGE_DAYS = f"({_AS_OF_US} - epoch_us(ts)) / 86400e6"
