"""A soak run's figures and verdict, and its Markdown report.

:func:`summarise` turns what every request did, the server's RSS and CPU samples, the
event ids found in the online event log and the server log's errors into per-bucket and
whole-run figures, least-squares RSS trends and one verdict line; :func:`report` writes
the result as Markdown tables and that line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.load_generator import FAMILIES, Outcome
from bench.results import table


def _ms(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if len(values) else None


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(x, y)`` points, or None with fewer than two."""
    if len(points) < 2:
        return None
    x, y = np.asarray(points, dtype=float).T
    return float(np.polyfit(x, y, 1)[0])


def summarise(
    outcomes: Sequence[Outcome],
    reloaded: dict[str, Any] | None,
    *,
    samples: Sequence[tuple[float, int, float]],
    logged: set[str],
    server_log: dict[str, Any],
    rate: float,
    seconds: float,
    bucket_seconds: float = 60.0,
    client_cpu: float = 0.0,
    max_rss_slope_mib: float = 2.0,
    max_p99_ms: float = 1000.0,
) -> dict[str, Any]:
    """Per-bucket and whole-run figures, the RSS trend and the verdict.

    ``samples`` are ``(seconds after the start, RSS bytes, CPU seconds)``; a bucket
    counts the requests *due* in it. The RSS trend is in MiB per minute.
    """
    buckets = max(1, int(np.ceil(seconds / bucket_seconds)))
    rows: list[dict[str, Any]] = []
    for b in range(buckets):
        lo, hi = b * bucket_seconds, (b + 1) * bucket_seconds
        inside = [o for o in outcomes if lo <= o.at < hi]
        row: dict[str, Any] = {
            "bucket": b,
            "from_s": lo,
            "requests": len(inside),
            "failures": sum(not o.ok for o in inside),
        }
        for family in FAMILIES:
            lat = [o.latency for o in inside if o.family == family and o.ok]
            row[family] = {"n": len(lat), "p50_ms": _ms(lat, 50), "p99_ms": _ms(lat, 99)}
        window = [(rss, cpu) for t, rss, cpu in samples if lo <= t < hi]
        row["rss_mib"] = float(np.mean([r for r, _ in window])) / 2**20 if window else None
        row["rss_end_mib"] = window[-1][0] / 2**20 if window else None
        before = [cpu for t, _, cpu in samples if t < lo]
        if window:
            first = before[-1] if before else window[0][1]
            span = min(hi, seconds) - lo
            row["server_cpu_pct"] = 100.0 * (window[-1][1] - first) / span if span > 0 else None
        else:
            row["server_cpu_pct"] = None
        row["versions"] = dict(Counter(o.version for o in inside if o.version is not None))
        rows.append(row)

    failures = [o for o in outcomes if not o.ok]
    acked = [e for o in outcomes for e in o.acked_ids]
    missing = sorted(set(acked) - logged)
    by_family = {}
    for family in FAMILIES:
        mine = [o for o in outcomes if o.family == family]
        lat = [o.latency for o in mine if o.ok]
        by_family[family] = {
            "requests": len(mine),
            "failures": sum(not o.ok for o in mine),
            "p50_ms": _ms(lat, 50),
            "p99_ms": _ms(lat, 99),
            "max_ms": _ms(lat, 100),
        }

    def trend(of: list[dict[str, Any]]) -> float | None:
        mid = bucket_seconds / 2
        return _slope([((r["from_s"] + mid) / 60.0, r["rss_mib"]) for r in of if r["rss_mib"]])

    trend_all = trend(rows)
    reload_bucket = None if reloaded is None else int(reloaded["at"] // bucket_seconds)
    after = [r for r in rows if reload_bucket is not None and r["bucket"] > reload_bucket]
    trend_after = trend(after)
    # Growth is judged on the steady part: the buckets after the reload (a reload
    # loads new models beside the old for a while), or after the first (warm-up)
    # without one; with fewer than three such buckets the run is too short to judge.
    steady = after if reloaded is not None else rows[1:]
    judged: float | None = trend(steady) if len(steady) >= 3 else None
    judged_on = "after the reload" if reloaded is not None else "after the first bucket"
    errors_by_kind = Counter(
        (o.error or "").split(" ")[0].split(":")[0] or str(o.status) for o in failures
    )

    problems: list[str] = []
    if failures:
        problems.append(f"{len(failures):,} failed requests ({dict(errors_by_kind)})")
    rejected = sum(o.rejected for o in outcomes)
    if rejected:
        problems.append(f"{rejected:,} events rejected")
    if missing:
        problems.append(f"{len(missing):,} acknowledged events missing from the online log")
    if server_log["lines"]:
        problems.append(f"{server_log['lines']:,} ERROR/Traceback lines in the server log")
    if reloaded is not None and reloaded.get("status") != 200:
        problems.append(f"reload failed: {reloaded.get('error')}")
    if reloaded is not None and reloaded.get("promoted"):
        new = reloaded["promoted"].get("tailor-recommender")
        later = [o.version for o in outcomes if o.version is not None and o.at > reloaded["at"]]
        if new is not None and new not in later:
            problems.append(f"recommender version {new} never answered after the reload")
    if judged is not None and judged > max_rss_slope_mib:
        problems.append(
            f"RSS grows {judged:+.1f} MiB/min ({judged_on}; limit {max_rss_slope_mib:.1f})"
        )
    # A service that answers everything but ever later is failing too: each bucket's
    # p99 is held to the limit, but for the reload's own bucket.
    slow = [
        f"{family} {r[family]['p99_ms']:.0f} ms in bucket {r['bucket']}"
        for r in rows
        if r["bucket"] != reload_bucket
        for family in FAMILIES
        if r[family]["p99_ms"] is not None and r[family]["p99_ms"] > max_p99_ms
    ]
    if slow:
        problems.append(
            f"p99 over {max_p99_ms:g} ms in {len(slow)} bucket-families (first: {slow[0]})"
        )
    lags = [o.lag for o in outcomes]
    reload_text = "no reload"
    if reloaded is not None:
        reload_text = (
            f"reload at {reloaded['at']:.0f} s answered {reloaded.get('status')} in "
            f"{reloaded.get('seconds', 0):.1f} s"
        )
    trend_text = "too short to judge" if judged is None else f"{judged:+.2f} MiB/min ({judged_on})"
    verdict = (
        ("PASS" if not problems else "FAIL: " + "; ".join(problems))
        + f" — {len(outcomes):,} requests at {rate:g}/s, {len(failures):,} failed; "
        f"{len(acked):,} events acknowledged, {len(acked) - len(missing):,} in the online log; "
        f"{reload_text}; RSS trend {trend_text}"
    )
    return {
        "rate": rate,
        "seconds": seconds,
        "bucket_seconds": bucket_seconds,
        "requests": len(outcomes),
        "failures": len(failures),
        "failure_kinds": dict(errors_by_kind),
        "failure_examples": [o.error for o in failures[:5]],
        "families": by_family,
        "events": {
            "sent": sum(o.events_sent for o in outcomes),
            "acknowledged": len(acked),
            "rejected": rejected,
            "missing_from_log": len(missing),
            "missing_examples": missing[:5],
        },
        "reload": reloaded,
        "buckets": rows,
        "rss_trend_mib_per_min": {
            "whole_run": trend_all,
            "after_reload": trend_after,
            "judged": judged,
            "judged_on": None if judged is None else judged_on,
        },
        "peak_rss_mib": max((s[1] for s in samples), default=0) / 2**20,
        "generator": {
            "lag_p99_ms": _ms(lags, 99),
            "lag_max_ms": _ms(lags, 100),
            "cpu_pct": 100.0 * client_cpu,
        },
        "server_log": server_log,
        "ok": not problems,
        "verdict": verdict,
    }


def report(result: dict[str, Any]) -> str:
    """The result as Markdown tables and the verdict line."""

    def pair(cell: dict[str, Any]) -> str:
        if not cell["n"]:
            return ""
        return f"{cell['p50_ms']:.1f} / {cell['p99_ms']:.1f}"

    unit = "minute" if result["bucket_seconds"] == 60 else f"{result['bucket_seconds']:g} s"
    rows = [
        [
            r["bucket"] + 1,
            r["requests"],
            r["failures"],
            *(pair(r[f]) for f in FAMILIES),
            "" if r["rss_mib"] is None else round(r["rss_mib"], 1),
            "" if r["server_cpu_pct"] is None else f"{r['server_cpu_pct']:.0f} %",
            ", ".join(f"v{v}: {n:,}" for v, n in sorted(r["versions"].items())),
        ]
        for r in result["buckets"]
    ]
    per_bucket = table(
        [
            unit,
            "requests",
            "failures",
            *(f"{f} p50 / p99 ms" for f in FAMILIES),
            "server RSS MiB",
            "server CPU",
            "recommender versions",
        ],
        rows,
    )
    fam = result["families"]
    whole = table(
        ["family", "requests", "failures", "p50 ms", "p99 ms", "max ms"],
        [
            [
                f,
                fam[f]["requests"],
                fam[f]["failures"],
                *(
                    "" if fam[f][k] is None else round(fam[f][k], 2)
                    for k in ("p50_ms", "p99_ms", "max_ms")
                ),
            ]
            for f in FAMILIES
        ],
    )
    trend = result["rss_trend_mib_per_min"]
    events = result["events"]
    reloaded = result["reload"]
    gen = result["generator"]
    lines = [
        per_bucket,
        "",
        whole,
        "",
        f"events: {events['sent']:,} sent, {events['acknowledged']:,} acknowledged, "
        f"{events['rejected']:,} rejected, {events['missing_from_log']:,} acknowledged but "
        "missing from the online log",
    ]
    if reloaded is not None:
        lines.append(
            f"reload at {reloaded['at']:.1f} s: promoted {reloaded.get('promoted') or 'nothing'}; "
            f"POST /admin/reload → {reloaded.get('status')} in {reloaded.get('seconds', 0):.2f} s, "
            f"state {reloaded.get('state')}, models {reloaded.get('models')}"
        )

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.2f}"

    lines += [
        f"RSS trend: {fmt(trend['whole_run'])} MiB/min over the run, "
        f"{fmt(trend['after_reload'])} MiB/min after the reload; "
        f"peak {result['peak_rss_mib']:,.0f} MiB",
        f"load generator: lag p99 {gen['lag_p99_ms']:.1f} ms, max {gen['lag_max_ms']:.1f} ms; "
        f"CPU {gen['cpu_pct']:.0f} % of a core",
        f"server log: {result['server_log']['lines']} ERROR/Traceback lines"
        + "".join(f"\n  {line}" for line in result["server_log"]["first"]),
        "",
        f"verdict: {result['verdict']}",
    ]
    return "\n".join(lines)
