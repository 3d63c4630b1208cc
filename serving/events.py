"""Posted events, written off the request path with group commit.

``POST /events`` hands its rows to one writer thread and waits. The writer takes
every call queued since its last write, validates them together, appends them to
the online event log in **one** transaction (one fsync, ``synchronous=FULL``) and
applies them to the online store, then answers each call with its own counts. Under
load many calls share one write, so events cost decisions little; a call is
acknowledged only once its rows are on disk.

A write that fails (a read-only or full disk) fails the calls in it with
:class:`StoreUnavailable` (503) and is remembered for readiness until a later write
succeeds.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from features.data.contracts import RowLimits
from features.data.online_log import Appended, OnlineEventLog
from features.data.validation import DEFAULT_LIMITS
from features.errors import TailorError
from features.pii.hashing import ErasedIds
from serving.online import OnlineStore
from serving.schemas import EventsResponse, RejectedEvent

logger = logging.getLogger(__name__)

MAX_GROUP_ROWS = 20_000
"""Most rows one group write takes (a bound on the writer's memory and latency)."""


class StoreUnavailable(TailorError):
    """A store the service writes cannot be written (HTTP 503)."""


@dataclass
class _Call:
    records: list[dict[str, Any]]
    done: Future[EventsResponse] = field(default_factory=Future)


class EventWriter:
    """One thread that writes posted events in groups (see the module docstring)."""

    def __init__(
        self,
        log: OnlineEventLog,
        online: Callable[[], OnlineStore],
        *,
        max_future_skew: timedelta,
        swap_lock: threading.Lock | None = None,
        limits: RowLimits = DEFAULT_LIMITS,
        ledger: ErasedIds | None = None,
    ) -> None:
        self.limits = limits
        # The privacy ledger: an erased person's events are dropped, never stored.
        self.ledger = ledger
        self.log = log
        self.online = online
        self.max_future_skew = max_future_skew
        # Held from the log append to the online apply: a swap of online stores
        # waits, so it replays every logged event into the new store.
        self.swap_lock = swap_lock or threading.Lock()
        self.error: str | None = None
        self.groups = 0
        self._queue: queue.Queue[_Call | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tailor-events", daemon=True)
        self._thread.start()

    def post(self, records: list[dict[str, Any]], timeout: float = 60.0) -> EventsResponse:
        """Store ``records`` durably; returns once they are on disk."""
        call = _Call(records)
        self._queue.put(call)
        return call.done.result(timeout=timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            calls = [first]
            rows = len(first.records)
            stop = False
            while rows < MAX_GROUP_ROWS:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                calls.append(more)
                rows += len(more.records)
            self._write(calls)
            if stop:
                return

    def _write(self, calls: list[_Call]) -> None:
        try:
            self._write_group(calls)
        except StoreUnavailable as error:
            for call in calls:
                call.done.set_exception(error)
        except Exception as error:
            if len(calls) == 1:
                logger.exception("writing posted events failed")
                calls[0].done.set_exception(error)
                return
            # One call's rows must not fail the others: write them one by one.
            for call in calls:
                self._write([call])

    def _write_group(self, calls: list[_Call]) -> None:
        records = [record for call in calls for record in call.records]
        with self.swap_lock:
            try:
                appended = self.log.append(
                    records,
                    now=datetime.now(UTC),
                    max_future_skew=self.max_future_skew,
                    limits=self.limits,
                    ledger=self.ledger,
                )
            except (OSError, sqlite3.Error) as error:  # read-only, disk full …
                raise self._unavailable(error) from None
            self.error = None
            self.groups += 1
            try:
                self.online().apply_events(appended.accepted)
            except Exception:
                # Durable in the log already; the online store catches up at its next load.
                logger.exception("applying posted events to the online store failed")
        rejected = [
            (int(i), str(reason))
            for i, reason in zip(
                appended.rejected["index"], appended.rejected["reason"], strict=True
            )
        ]
        start = 0
        for call in calls:
            end = start + len(call.records)
            call.done.set_result(_slice(appended, rejected, start, end))
            start = end

    def _unavailable(self, error: Exception) -> StoreUnavailable:
        self.error = f"the online event log cannot be written ({self.log.path}): {error}"
        logger.error("%s", self.error)
        return StoreUnavailable(self.error)


def _slice(
    appended: Appended, rejected: list[tuple[int, str]], start: int, end: int
) -> EventsResponse:
    def within(index: np.ndarray) -> int:
        return int(((index >= start) & (index < end)).sum())

    return EventsResponse(
        accepted=within(appended.accepted_index),
        duplicates=within(appended.duplicate_index),
        rejected=[
            RejectedEvent(index=i - start, reason=reason)
            for i, reason in rejected
            if start <= i < end
        ],
    )
