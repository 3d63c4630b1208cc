"""Thirty seconds of steady mixed load on a real ``bentoml serve`` process, with the
champions promoted again and reloaded halfway: the short form of ``python -m bench.soak``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load_generator import KEYS, MIX, Audience, Outcome, timetable
from bench.server import Server
from bench.soak import logged_event_ids, run_soak
from bench.soak_report import report, summarise


def test_the_timetable_is_fixed_in_advance() -> None:
    plan = timetable(50, 20, MIX, seed=1)
    assert len(plan) == 1000
    assert [p.at for p in plan[:3]] == [0.0, 0.02, 0.04] and plan[-1].at == 19.98
    assert plan == timetable(50, 20, MIX, seed=1)
    shares = {f: sum(p.family == f for p in plan) / len(plan) for f in MIX}
    assert shares == pytest.approx(MIX, abs=0.05)


def _outcomes(seconds: int, *, failed_at: float | None = None) -> list[Outcome]:
    out = []
    for i in range(seconds * 10):
        at = i / 10
        ok = failed_at is None or abs(at - failed_at) > 1e-9
        out.append(
            Outcome("events" if i % 10 == 0 else "recommend", at, 0.0, 0.010, 200 if ok else 0)
        )
        if out[-1].family == "events" and ok:
            out[-1].acked_ids = [f"e{i}"]
    return out


def test_the_summary_counts_failures_lost_events_and_memory_growth() -> None:
    outcomes = _outcomes(300, failed_at=12.5)
    logged = {e for o in outcomes for e in o.acked_ids} - {"e100"}
    flat = [(t, 500 * 2**20, t * 0.1) for t in range(300)]
    result = summarise(
        outcomes,
        None,
        samples=flat,
        logged=logged,
        server_log={"lines": 0, "first": []},
        rate=10,
        seconds=300,
        bucket_seconds=60,
    )
    assert result["requests"] == 3000 and result["failures"] == 1
    assert [b["requests"] for b in result["buckets"]] == [600] * 5
    assert result["buckets"][0]["failures"] == 1
    assert result["events"]["missing_from_log"] == 1
    assert result["rss_trend_mib_per_min"]["judged"] == pytest.approx(0.0, abs=1e-6)
    assert result["buckets"][0]["server_cpu_pct"] == pytest.approx(10.0, rel=0.05)
    assert not result["ok"] and result["verdict"].startswith("FAIL: 1 failed requests")
    assert "verdict: FAIL" in report(result)

    growing = [(t, (500 + t / 6) * 2**20, 0.0) for t in range(300)]  # 10 MiB a minute
    clean = _outcomes(300)
    result = summarise(
        clean,
        None,
        samples=growing,
        logged={e for o in clean for e in o.acked_ids},
        server_log={"lines": 0, "first": []},
        rate=10,
        seconds=300,
        bucket_seconds=60,
    )
    assert result["rss_trend_mib_per_min"]["judged"] == pytest.approx(10.0, rel=0.01)
    assert result["verdict"].startswith("FAIL: RSS grows +10.0 MiB/min")


def test_the_verdict_fails_a_run_that_answers_everything_but_late() -> None:
    outcomes = _outcomes(300)
    for o in outcomes:
        if o.at >= 240:  # the last minute: every answer takes 3 s
            o.latency = 3.0
    result = summarise(
        outcomes,
        None,
        samples=[(t, 500 * 2**20, 0.0) for t in range(300)],
        logged={e for o in outcomes for e in o.acked_ids},
        server_log={"lines": 0, "first": []},
        rate=10,
        seconds=300,
        bucket_seconds=60,
        max_p99_ms=1000.0,
    )
    assert result["failures"] == 0
    assert result["verdict"].startswith("FAIL: p99 over 1000 ms in 2 bucket-families")
    assert "bucket 4" in result["verdict"]


@pytest.mark.slow
def test_half_a_minute_of_mixed_load_and_a_reload_fail_no_request(home: Path) -> None:
    audience = Audience.of_home(home)
    with Server(home, keys=KEYS, rss_interval=1.0) as server:
        # 50 requests/s (2 cores are shared with the rest of the suite): 70 %
        # /recommend, 15 % /choose, 10 % /events, 5 % /recommend_batch of 50.
        result = run_soak(server, audience, rate=50, seconds=30, bucket_seconds=10, timeout=10.0)
    print(result["verdict"])
    assert result["requests"] == 1500
    assert result["failures"] == 0, (result["failure_kinds"], result["failure_examples"])
    reloaded = result["reload"]
    assert reloaded["status"] == 200, reloaded
    promoted = reloaded["promoted"]["tailor-recommender"]
    assert reloaded["models"]["tailor-recommender"] == promoted
    later = set().union(*(bucket["versions"] for bucket in result["buckets"][2:]))
    assert promoted in later, result["buckets"]
    events = result["events"]
    assert events["acknowledged"] == events["sent"] > 0
    assert events["rejected"] == 0 and events["missing_from_log"] == 0
    # Still there once the server has stopped: acknowledged meant durable.
    run = {e for e in logged_event_ids(home) if e.startswith(result["run_id"] + "-")}
    assert len(run) == events["acknowledged"]
