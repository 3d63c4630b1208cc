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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bench.results import record, table
from features.data.store import INGESTED_AT, EventStore, connect, fetch_frame
from features.identity.resolution import resolve_identities
from features.pii.hashing import KeyedHasher
from features.segments import load_segments
from features.settings import FeatureConfig
from features.snapshot import behaviour_feature_names, build_snapshot

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 9, 1, tzinfo=UTC)
# Identity keys are keyed hashes; any fixed key times the same work.
HASHER = KeyedHasher("bench", b"bench-identity-key-0123456789abcdef")
ANALYSIS = """

Where the time goes. The snapshot reads the store three times: the login links, one
selective pass over purchases and stock changes (the type filter is pushed into the
Parquet scan; identity resolution runs on a thread beside it), and one pass that
resolves every event to a person number and keeps it narrow and integer-coded in
memory ("events resolved"). Every aggregate after that reads that in-memory table:
(person, event type) window counts, (person, hour) send-hour counts, (person, item)
decayed weights and recent product views, (item, type, recency) counts, and the
trigger candidates. The customer table is one SQL statement for
what is keyed by person (orders, spend, send hour, price indices, top category) plus
a numpy scatter of the (person, event type) aggregates into the count columns and
what derives from them; each table is written on a background thread as soon as it
is computed, so only the last files are waited for.

The floor table is measured, not argued: the events resolved to people and
aggregated the four ways the features need (in DuckDB, nothing fetched), identity
resolution over the customer records, and writing the finished customer table —
each timed alone — already come to more than 3x the reference scan. What the snapshot
spends above that floor is the rest of what the issue asks for, each a few tenths of
the scan: the selective pass for orders and stock changes, consent and unsubscribes,
item features, category affinity and the interaction matrix, the customer-keyed
SQL, triggers and segments. So on this 2-core machine the target of
3x is below the floor plus anything else the snapshot must compute; the remaining
gap is not one slow step. Note that the reference itself spends a third to a half
of its time fetching its ~1.3 M result rows into Python (second row). Timings on
this shared 2-core machine vary by up to 1.5x between runs; the ratios come from one
run."""


def prepare(folder: Path, customers: int, days: int) -> None:
    """Simulate a store and ingest it (run in a child process)."""
    from features.data.ingest import ingest_file
    from simulation import SimulationConfig, simulate, write_store

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


def best_of(times: int, run: Callable[[], object]) -> float:
    """The shortest of ``times`` runs, in seconds."""
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def grouped_scan(store: EventStore, *, fetch: bool = True) -> float:
    """Best of three: count by customer and event type over the event Parquet.

    ``fetch``: the result rows (~1.3 M) are fetched into Python, as the target's
    reference has it; without it, the result stays in DuckDB (the scan itself)."""
    con = connect()
    store.register(con, "events", "events")
    query = "SELECT customer_id, event_type, count(*) FROM events GROUP BY ALL"
    if fetch:
        best = best_of(3, lambda: con.execute(query).fetchall())
    else:
        best = best_of(3, lambda: con.execute(f"CREATE OR REPLACE TEMP TABLE scan AS {query}"))
    con.close()
    return best


FLOOR_STEPS = {
    "ids resolved (events joined to the id mapping)": """
        CREATE OR REPLACE TEMP TABLE r AS
        SELECT m.person, e.event_type, e.ts, e.item_id FROM events e
        JOIN idmap m ON m.source_id = coalesce(e.customer_id, e.anonymous_id)
        WHERE e.ts < $as_of""",
    "person × event type, four windows": """
        CREATE OR REPLACE TEMP TABLE by_type AS
        SELECT person, event_type,
               count(*) FILTER (WHERE ts >= $as_of - INTERVAL 1 DAY) AS n1,
               count(*) FILTER (WHERE ts >= $as_of - INTERVAL 7 DAY) AS n7,
               count(*) FILTER (WHERE ts >= $as_of - INTERVAL 30 DAY) AS n30,
               count(*) AS n90
        FROM r WHERE ts >= $as_of - INTERVAL 90 DAY GROUP BY ALL""",
    "person × send hour": """
        CREATE OR REPLACE TEMP TABLE by_hour AS
        SELECT person, ((epoch_us(ts) % 86400000000 + 86400000000) % 86400000000)
                       // 3600000000 AS h, count(*) AS n FROM r
        WHERE event_type IN ('email_open', 'email_click') GROUP BY ALL""",
    "person × item, decayed weights": """
        CREATE OR REPLACE TEMP TABLE by_item AS
        SELECT person, item_id,
               sum(exp(-(epoch_us($as_of) - epoch_us(ts)) / (14 * 86400e6))) AS w
        FROM r WHERE item_id IS NOT NULL GROUP BY ALL""",
    "item × event type × recency (windowed popularity)": """
        CREATE OR REPLACE TEMP TABLE by_item_type AS
        SELECT item_id, event_type,
               (ts >= $as_of - INTERVAL 7 DAY)::INTEGER
                   + (ts >= $as_of - INTERVAL 30 DAY)::INTEGER AS recency,
               count(*) AS n
        FROM r WHERE item_id IS NOT NULL GROUP BY ALL""",
}


def floor_steps(store: EventStore, mapping: Any, as_of: datetime) -> dict[str, float]:
    """The least any snapshot with these features does, timed in DuckDB with nothing
    fetched: every event resolved to a person, then the four differently keyed
    aggregations the feature list needs. Best of two, per step."""
    con = connect()
    store.register(con, "events", "events")
    people = mapping[mapping["source_type"].isin(["customer", "anonymous"])]
    con.register("mapping", people[["source_id", "canonical_id"]])
    con.execute(
        "CREATE TEMP TABLE idmap AS SELECT source_id, "
        "(dense_rank() OVER (ORDER BY canonical_id))::INTEGER AS person FROM mapping"
    )
    moment = f"TIMESTAMPTZ '{as_of.isoformat()}'"
    out = {
        name: best_of(2, partial(con.execute, sql.replace("$as_of", moment)))
        for name, sql in FLOOR_STEPS.items()
    }
    con.close()
    return out


def floor_outside_duckdb(store: EventStore, snapshot: Any, as_of: datetime) -> dict[str, float]:
    """The two pieces of the floor that are not passes over the events, each timed
    alone (best of two): identity resolution over the customer records and login
    links, and writing the finished customer table to Parquet."""
    con = connect()
    store.register(con, "customers", "customers_history")
    store.register(con, "events", "events")
    customers = fetch_frame(
        con,
        f"SELECT customer_id, email, phone FROM customers_history QUALIFY row_number() OVER "
        f"(PARTITION BY customer_id ORDER BY {INGESTED_AT} DESC) = 1",
    )
    links = fetch_frame(
        con,
        "SELECT DISTINCT customer_id, anonymous_id FROM events "
        "WHERE ts < $as_of AND event_type IN ('login', 'identify') "
        "AND customer_id IS NOT NULL AND anonymous_id IS NOT NULL",
        {"as_of": as_of},
    )
    con.close()
    rows, columns = snapshot.customers.shape
    with tempfile.TemporaryDirectory() as tmp:
        return {
            f"identity resolution ({len(customers) / 1e3:,.0f} k records, no event read)": (
                best_of(2, lambda: resolve_identities(customers, links, hasher=HASHER))
            ),
            f"customer table written ({rows / 1e3:,.0f} k × {columns} Parquet)": best_of(
                2,
                lambda: snapshot.customers.to_parquet(Path(tmp) / "customers.parquet", index=False),
            ),
        }


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
        segments = load_segments(None, behaviour_feature_names(config))
        as_of = START + timedelta(days=args.days)

        def progress(message: str) -> None:
            print(message, flush=True)

        # Best of two, as the reference is best of three (the second run replaces
        # the first one's folder).
        seconds = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            run = build_snapshot(
                store,
                as_of=as_of,
                config=config,
                segments=segments,
                progress=progress,
                write_to=folder / "features",
            )
            if time.perf_counter() - started < seconds:
                seconds, snapshot = time.perf_counter() - started, run
        path = Path(snapshot.manifest["path"])
        # Tables are written in the background as they are computed; what is left
        # after the last stage is the wait for the last files.
        written = seconds - float(snapshot.manifest["seconds"])
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        size_mb = sum(f.stat().st_size for f in path.iterdir()) / 1e6
        # The reference again after the snapshot: the ratio uses the better of the two,
        # so a busy moment on a shared machine does not flatter the snapshot.
        scan = min(scan, grouped_scan(store))
        floor = floor_steps(store, snapshot.identity.mapping, as_of)
        floor_duckdb = sum(floor.values())
        floor |= floor_outside_duckdb(store, snapshot, as_of)

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
            ["full feature snapshot, written (best of two)", events, seconds, seconds / scan],
        ],
    )
    stages = [
        *snapshot.manifest["stage_seconds"].items(),
        ("last files written (the rest overlaps the stages)", written),
    ]
    body += "\n\nPer stage of the snapshot:\n\n" + table(
        ["stage", "seconds", "× scan"],
        [[name, float(s), float(s) / scan] for name, s in stages],
    )
    body += (
        "\n\nThe floor: the least a snapshot with these features does, each step timed "
        "alone: the events resolved to people and aggregated the four ways the "
        "features need, in DuckDB, nothing fetched; identity resolution; writing the "
        "customer table (no segments, triggers, items or other tables):\n\n"
        + table(
            ["step", "seconds", "× scan"],
            [[name, s, s / scan] for name, s in floor.items()]
            + [
                ["floor, the passes over the events", floor_duckdb, floor_duckdb / scan],
                ["floor, in all", sum(floor.values()), sum(floor.values()) / scan],
            ],
        )
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
