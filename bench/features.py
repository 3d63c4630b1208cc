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
ANALYSIS = """

Where the time goes. The snapshot reads the store twice: one selective pass (logins,
purchases, stock changes; the type filter is pushed into the Parquet scan, "identity"
above) and one pass that resolves every event to a person number and keeps it narrow
and integer-coded in memory ("events resolved"). Every aggregate after that reads
the in-memory table: (person, event type) window counts, (person, hour) send-hour
counts, (person, item) decayed weights, (item, type, recency) counts, and a small
trigger table. The rest scales with customers, not events: identity resolution over
240 k records (Arrow string kernels, SQL, one connected-components call; 755 k
mapping rows with SHA-256 digests), the 233 k × 101 customer table in pandas (70
nullable count columns), CEL segments, and writing ~80 MB.

The floor, on two cores: the id-resolving pass is a string-keyed hash join over every
event (about the cost of the reference scan's own grouping), and the feature list
needs at least three differently keyed aggregations of the resolved events
(per person × type, person × hour, person × item; DuckDB builds one hash table for
each even when folded into one GROUPING SETS query), each 0.5-1× the scan here. That
is ~3× the scan before any per-customer work, so 3× is out of reach on this machine
as the features are defined; what is left above the floor is mostly the pandas
customer table (merge, nullable dtypes, consent masking: ~1 s) and identity (~1.5 s).
Note that the reference itself spends about a third of its time fetching its ~1.5 M
result rows into Python (second row). Timings on this shared 2-core machine vary by
2× between runs; the ratios come from one run."""


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


def grouped_scan(store: EventStore, *, fetch: bool = True) -> float:
    """Best of three: count by customer and event type over the event Parquet.

    ``fetch``: the result rows (~1.5 M) are fetched into Python, as the target's
    reference has it; without it, the result stays in DuckDB (the scan itself)."""
    best = float("inf")
    con = connect()
    store.register(con, "events", "events")
    query = "SELECT customer_id, event_type, count(*) FROM events GROUP BY ALL"
    for _ in range(3):
        started = time.perf_counter()
        if fetch:
            con.execute(query).fetchall()
        else:
            con.execute(f"CREATE OR REPLACE TEMP TABLE scan AS {query}")
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
        scan_only = grouped_scan(store, fetch=False)

        config = FeatureConfig()
        segments = load_segments(REPO / "config" / "segments.yaml", behaviour_feature_names(config))
        as_of = START + timedelta(days=args.days)

        def progress(message: str) -> None:
            print(message, flush=True)

        started = time.perf_counter()
        snapshot = build_snapshot(
            store, as_of=as_of, config=config, segments=segments, progress=progress
        )
        built = time.perf_counter()
        path = write_snapshot(snapshot, folder / "features")
        seconds = time.perf_counter() - started
        written = time.perf_counter() - built
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        size_mb = sum(f.stat().st_size for f in path.iterdir()) / 1e6
        # The reference again after the snapshot: the ratio uses the better of the two,
        # so a busy moment on a shared machine does not flatter the snapshot.
        scan = min(scan, grouped_scan(store))

    rows = snapshot.manifest["rows"]
    body = table(
        ["step", "events", "seconds", "× scan"],
        [
            ["DuckDB grouped scan (customer × event type)", events, scan, 1.0],
            [
                "the same scan, result left in DuckDB (not fetched)",
                events,
                scan_only,
                scan_only / scan,
            ],
            ["full feature snapshot, written", events, seconds, seconds / scan],
        ],
    )
    stages = [*snapshot.manifest["stage_seconds"].items(), ("written to disk", written)]
    body += "\n\nPer stage of the snapshot:\n\n" + table(
        ["stage", "seconds", "× scan"],
        [[name, float(s), float(s) / scan] for name, s in stages],
    )
    body += (
        f"\n\nPeak memory of the snapshot process: {peak_gib:.1f} GiB. Snapshot: "
        f"{rows['customers']:,} customers, {rows['items']:,} items, "
        f"{rows['interactions_nnz']:,} interactions, {rows['segments']:,} segment "
        f"memberships, {rows['triggers']:,} active triggers, {size_mb:,.0f} MB on disk. "
        f"Target: snapshot ≤ 3× the scan." + ANALYSIS
    )
    print(body)
    if not args.no_record:
        record("Feature snapshot", body)


if __name__ == "__main__":
    main()
