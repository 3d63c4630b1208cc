"""Retention: history older than the ``[privacy]`` periods goes.

:func:`run_retention` drops

- events stamped (``ts``) more than ``retention_days_events`` before ``now``: from
  the event store (a file entirely older is dropped whole, so a whole date
  partition goes with its folder; a file partly older is rewritten with its newer
  rows) and from the posted-event log;
- decisions logged more than ``retention_days_decisions`` before ``now``;
- quarantined rows (the store's and the posted-event log's) quarantined more than
  ``retention_days_quarantine`` before ``now``.

A period of ``None`` keeps that kind. Customer records are state, not history:
they stay (erasure removes a person's). The event store's files are replaced in
one batch, atomically, as erasure replaces them: a reader sees the store before or
after, never between. Which files are old is read from the Parquet statistics
(the time column's minimum and maximum per row group), so an untouched file is
not read.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.data.decision_log import DecisionLog
from features.data.online_log import OnlineEventLog
from features.data.store import MANIFEST, Batch, EventStore
from features.errors import InputError
from features.privacy.erasure import DECISIONS_LOG, EVENTS_LOG
from features.settings import TailorSettings

logger = logging.getLogger(__name__)

# What run_retention counts, in this order.
KINDS = ("events", "posted_events", "decisions", "quarantine", "posted_quarantine")


def run_retention(settings: TailorSettings, *, now: datetime) -> dict[str, int]:
    """Drop what is older than the retention periods; rows dropped per kind.

    Parameters
    ----------
    now : datetime
        Timezone-aware; the periods count back from it.

    Returns
    -------
    dict of str to int
        ``events`` (event store), ``posted_events``, ``decisions``, ``quarantine``
        (event store) and ``posted_quarantine``; zero where nothing was old or the
        period is ``None``.

    Raises
    ------
    InputError
        ``now`` has no time zone.
    JobFailed
        Another writer held the store past ``lock_timeout``
        (:class:`~features.errors.WriteFailed`: a file could not be written).
    """
    if now.tzinfo is None:
        raise InputError("now", now, "must be timezone-aware (UTC)")
    privacy = settings.privacy
    events = _cut(now, privacy.retention_days_events)
    decisions = _cut(now, privacy.retention_days_decisions)
    quarantine = _cut(now, privacy.retention_days_quarantine)
    counts = dict.fromkeys(KINDS, 0)
    store = EventStore(settings.store_dir, lock_timeout=settings.lock_timeout)
    if (store.root / MANIFEST).exists() and (events is not None or quarantine is not None):
        with store.writer(now) as batch:
            if events is not None:
                counts["events"] = _drop_older(store, batch, "events", "ts", events)
            if quarantine is not None:
                counts["quarantine"] = sum(
                    _drop_older(store, batch, table, "quarantined_at", quarantine)
                    for table in sorted(store.manifest())
                    if table.startswith("quarantine/")
                )
    log_path = settings.online_dir / EVENTS_LOG
    if log_path.exists() and (events is not None or quarantine is not None):
        log = OnlineEventLog(log_path)
        try:
            counts["posted_events"], counts["posted_quarantine"] = log.drop_before(
                events=events, quarantine=quarantine
            )
        finally:
            log.close()
    decisions_path = settings.online_dir / DECISIONS_LOG
    if decisions is not None and decisions_path.exists():
        counts["decisions"] = DecisionLog(decisions_path).drop_before(decisions.timestamp())
    logger.info("retention as of %s: %s", now.isoformat(), counts)
    return counts


def _cut(now: datetime, days: float | None) -> datetime | None:
    return None if days is None else now.astimezone(UTC) - timedelta(days=days)


def _drop_older(store: EventStore, batch: Batch, table: str, column: str, cut: datetime) -> int:
    """Replace, in ``batch``, the files of ``table`` holding rows whose ``column`` is
    before ``cut``: dropped whole when every row is, else rewritten; rows dropped."""
    dropped = 0
    for path in store.files(table):
        parquet = pq.ParquetFile(path)
        span = _span(parquet, column)
        if span is not None and span[0] >= cut:
            continue  # nothing old: not read
        rel = str(Path(path).relative_to(store.root))
        if span is not None and span[1] < cut:
            store.replace_part(batch, table, rel, None)
            dropped += parquet.metadata.num_rows
            continue
        data = parquet.read()
        old = np.asarray(
            pc.fill_null(
                pc.less(data.column(column), pa.scalar(cut, data.schema.field(column).type)), False
            ),
            dtype=bool,
        )
        if old.any():
            store.replace_part(batch, table, rel, data.filter(pa.array(~old)))
            dropped += int(old.sum())
    return dropped


def _span(parquet: pq.ParquetFile, column: str) -> tuple[datetime, datetime] | None:
    """Earliest and latest ``column`` of the file, from its statistics (``None``:
    not recorded, or a null among the values; the file is then read)."""
    metadata = parquet.metadata
    names = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    if column not in names:
        return None
    index = names.index(column)
    lows: list[datetime] = []
    highs: list[datetime] = []
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max or stats.null_count:
            return None
        low, high = stats.min, stats.max
        if not isinstance(low, datetime) or not isinstance(high, datetime):
            return None
        lows.append(low if low.tzinfo else low.replace(tzinfo=UTC))
        highs.append(high if high.tzinfo else high.replace(tzinfo=UTC))
    if not lows:
        return None
    return min(lows), max(highs)
