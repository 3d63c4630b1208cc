"""Deadlines that hold: work past its deadline is given up and does not pile up."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from serving.deadline import DeadlineExceeded, DeadlinePool
from serving.schemas import RecommendRequest
from tests.serving.conftest import posted_event
from tests.serving.test_core import _core, _quiet_customer


def test_a_slow_call_is_given_up_at_its_deadline():
    pool = DeadlinePool(max_workers=2)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="50 ms passed"):
        pool.run(0.05, time.sleep, 0.5)
    assert time.monotonic() - started < 0.3
    assert pool.run(1.0, lambda: 42) == 42


def test_stale_work_never_queues_ahead_of_new_work():
    pool = DeadlinePool(max_workers=4)
    release = threading.Event()
    # Twenty callers give up on work that blocks: at most four threads are taken,
    # the other sixteen are refused at once instead of queueing behind them.
    outcomes = []
    for _ in range(20):
        started = time.monotonic()
        try:
            pool.run(0.02, release.wait, 5)
        except DeadlineExceeded as error:
            outcomes.append((str(error), time.monotonic() - started))
    assert len(outcomes) == 20
    assert sum("busy" in text for text, _ in outcomes) == 16
    assert all(took < 0.2 for _, took in outcomes)
    assert pool.busy() == 4
    release.set()
    deadline = time.monotonic() + 5
    while pool.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    # Nothing stale is left to run: the next call runs at once.
    started = time.monotonic()
    assert pool.run(0.5, lambda: "fresh") == "fresh"
    assert time.monotonic() - started < 0.1


def test_work_not_started_before_its_deadline_is_skipped():
    pool = DeadlinePool(max_workers=1)
    ran = []
    blocker = threading.Event()

    def first() -> None:
        with pytest.raises(DeadlineExceeded):
            pool.run(0.05, blocker.wait, 5)

    first()
    with pytest.raises(DeadlineExceeded, match="busy"):
        pool.run(0.05, ran.append, 1)
    blocker.set()
    time.sleep(0.1)
    assert ran == []


def test_a_slow_model_answers_the_fallback_with_reason_deadline(home: Path, monkeypatch):
    core = _core(home, deadline_ms=30.0)
    customer = _quiet_customer(home)
    # A view posted now: the customer is scored live, not from the rankings cached at load.
    view = posted_event("deadline-view", customer)
    assert core.ingest_events([view]).accepted == 1
    assert core.recommend(RecommendRequest(customer_id=customer)).strategy == "model"

    def slow_score(*args, **kwargs):
        time.sleep(0.4)
        raise AssertionError("never used: past the deadline")

    monkeypatch.setattr(core, "_score", slow_score)
    with ThreadPoolExecutor(8) as callers:
        answers = list(
            callers.map(lambda _: core.recommend(RecommendRequest(customer_id=customer)), range(12))
        )
    assert {a.strategy for a in answers} == {"fallback:popular"}
    assert {a.fallback_reason for a in answers} == {"deadline"}
    assert all(len(a.items) == 10 for a in answers), "the fallback still fills the list"
    monkeypatch.undo()
    waited = time.monotonic() + 5
    while core._pool.busy() and time.monotonic() < waited:  # the abandoned calls finish
        time.sleep(0.05)
    assert core._pool.busy() == 0, "nothing abandoned is left running or queued"
    again = [core.recommend(RecommendRequest(customer_id=customer)).strategy for _ in range(3)]
    assert "model" in again, again
