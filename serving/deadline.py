"""Model work under a deadline, on a few threads, without stale work piling up.

Python cannot stop a thread, so a deadline is kept in three ways: work that has not
started by its deadline is dropped (cancelled while queued, or skipped when a thread
picks it up late); a caller past its deadline stops waiting and answers its
fallback; and work is never queued behind busy threads — when every thread is taken
(by work whose callers may have given up), new work is refused at once and the
caller answers its fallback, instead of waiting in a queue that only grows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """The work did not finish (or could not start) within its deadline."""


class DeadlinePool:
    """``run(timeout, fn, *args)``: ``fn(*args)`` on a pool thread within ``timeout``."""

    def __init__(self, max_workers: int = 4) -> None:
        self.max_workers = max_workers
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="tailor-model")
        self._taken = 0  # threads held by work in flight, abandoned or not
        self._lock = threading.Lock()
        self.refused = 0
        self.abandoned = 0

    def run(self, timeout: float, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            full = self._taken >= self.max_workers
            if not full:
                self._taken += 1
        if full:
            self.refused += 1
            raise DeadlineExceeded(f"all {self.max_workers} model threads are busy")
        deadline = time.monotonic() + timeout

        def task() -> T:
            try:
                if time.monotonic() > deadline:
                    raise DeadlineExceeded("not started before the deadline")
                return fn(*args)
            finally:
                self._free()

        future = self._executor.submit(task)
        try:
            return future.result(timeout=max(timeout, 0.0))
        except FutureTimeout:
            self.abandoned += 1
            if future.cancel():  # never started: its slot is ours to give back
                self._free()
            raise DeadlineExceeded(f"{timeout * 1000:.0f} ms passed") from None

    def _free(self) -> None:
        with self._lock:
            self._taken -= 1

    def busy(self) -> int:
        """Threads taken now (by work in flight, abandoned or not)."""
        return self._taken

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
