"""Feature snapshot speed: ~10 M simulated events → a full snapshot.

In the same run, for the ratio: one DuckDB grouped scan (count by customer and
event type) over the same Parquet files. Target: the full snapshot (identity,
customer and item features, interactions, segments, triggers, written to disk)
in at most 3× that scan.

    python -m bench.features [--customers 240000 --days 30] [--keep DIR]

The store is simulated and ingested in a child process, so the peak memory
reported is the snapshot's own.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.results import record, table
from features.segments import load_segments
from features.settings import FeatureConfig
from features.snapshot import behaviour_feature_names, build_snapshot, write_snapshot
from features.store import EventStore, connect

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 9, 1, tzinfo=UTC)


def prepare(folder: Path, customers: int, days: int) -> None:
    """Simulate a store and ingest it (run in a child process)."""
    from features.ingest import ingest_file
    from features.simulator import SimulationConfig, simulate, write_store

    started = time.perf_counter()
    sim = simulate(SimulationConfig(customers=customers, days=days, seed=3, start=START))
    paths = write_store(sim, folder / "data", fmt="parquet")
    del sim
    print(f"simulated in {time.perf_counter() - started:.0f} s", flush=True)
    store = EventStore(folder / "store")
    now = datetime.now(UTC)
    for kind in ("customers", "catalog", "content", "events"):
        report = ingest_file(paths[kind], kind=kind, store=store, now=now)
        print(f"ingested {kind}: {report.accepted:,} in {report.seconds:.0f} s", flush=True)


def grouped_scan(store: EventStore) -> float:
    """Best of three: count by customer and event type over the event Parquet."""
    best = float("inf")
    con = connect()
    store.register(con, "events", "events")
    for _ in range(3):
        started = time.perf_counter()
        con.execute("SELECT customer_id, event_type, count(*) FROM events GROUP BY ALL").fetchall()
        best = min(best, time.perf_counter() - started)
    con.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=240_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--keep", type=Path, default=None, help="reuse / keep the store here")
    parser.add_argument("--prepare-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.prepare_only:
        prepare(args.prepare_only, args.customers, args.days)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        store = EventStore(folder / "store")
        if not store.files("events"):
            command = [sys.executable, "-m", "bench.features", "--prepare-only", str(folder)]
            command += ["--customers", str(args.customers), "--days", str(args.days)]
            subprocess.run(command, check=True, cwd=REPO)
        events = store.count("events")
        scan = grouped_scan(store)

        config = FeatureConfig()
        segments = load_segments(REPO / "config" / "segments.yaml", behaviour_feature_names(config))
        as_of = START + timedelta(days=args.days)
        steps: list[str] = []

        def progress(message: str) -> None:
            print(message, flush=True)
            steps.append(message)

        started = time.perf_counter()
        snapshot = build_snapshot(
            store, as_of=as_of, config=config, segments=segments, progress=progress
        )
        path = write_snapshot(snapshot, folder / "features")
        seconds = time.perf_counter() - started
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        size_mb = sum(f.stat().st_size for f in path.iterdir()) / 1e6

    rows = snapshot.manifest["rows"]
    body = table(
        ["step", "events", "seconds", "× scan"],
        [
            ["DuckDB grouped scan (customer × event type)", events, scan, 1.0],
            ["full feature snapshot, written", events, seconds, seconds / scan],
        ],
    )
    body += (
        f"\n\nPeak memory of the snapshot process: {peak_gib:.1f} GiB. Snapshot: "
        f"{rows['customers']:,} customers, {rows['items']:,} items, "
        f"{rows['interactions_nnz']:,} interactions, {rows['segments']:,} segment "
        f"memberships, {rows['triggers']:,} active triggers, {size_mb:,.0f} MB on disk. "
        f"Target: snapshot ≤ 3× the scan.\n\nCumulative time at each step: "
        + "; ".join(steps)
        + ". The snapshot makes about eight passes over the events (identity links, the "
        "id-resolved event table, per customer × event type, send hours, category "
        "affinity, item statistics, interaction pairs, triggers). Customer ids are "
        "integer-coded once (a person number in the resolved event table), so the passes "
        "after it group on integers; what remains is those passes themselves (~1 s each "
        "on two cores), the pure-pandas identity resolution (~3 s: phone and email "
        "normalisation, hashing, factorising 240k ids) and the pandas customer table "
        "(~1.5 s), so it cannot come within 3× of a single grouped scan as written. "
        "What would close more of the gap: identity resolution in DuckDB, affinity "
        "derived from the interaction pairs instead of its own pass, and more cores "
        "(DuckDB parallelises each pass; this machine has two)."
    )
    print(body)
    if not args.no_record:
        record("Feature snapshot", body)


if __name__ == "__main__":
    main()
