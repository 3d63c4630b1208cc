"""Ingest rate: ~1 M simulated events, CSV → validated, deduped Parquet store.

In the same run, for the ratio: the time pyarrow alone takes to read the same
file (the floor any CSV ingest pays), and a re-ingest of the same file (every
event a duplicate).

    python -m bench.ingest [--customers 24000 --days 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.csv as pacsv

from bench.results import record, table
from features.data.ingest import ingest_file
from features.data.store import EventStore
from simulation import SimulationConfig, simulate, write_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=24_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--no-record", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = SimulationConfig(customers=args.customers, days=args.days, seed=1)
        paths = write_store(simulate(config), root / "data")
        events = paths["events"]
        size_mb = events.stat().st_size / 1e6

        started = time.perf_counter()
        rows = pacsv.read_csv(events).num_rows
        read_s = time.perf_counter() - started

        store = EventStore(root / "store")
        now = datetime.now(UTC)
        first = ingest_file(events, kind="events", store=store, now=now)
        again = ingest_file(events, kind="events", store=store, now=now)

    results = [
        ["pyarrow read_csv only (floor)", rows, read_s, rows / read_s, 1.0],
        [
            "tailor ingest (new store)",
            first.rows_read,
            first.seconds,
            first.rows_read / first.seconds,
            first.seconds / read_s,
        ],
        [
            "tailor re-ingest (all duplicates)",
            again.rows_read,
            again.seconds,
            again.rows_read / again.seconds,
            again.seconds / read_s,
        ],
    ]
    body = table(["step", "rows", "seconds", "rows/s", "× pyarrow read"], results)
    body += (
        f"\n\nFile: {size_mb:,.0f} MB CSV, {rows:,} rows; first ingest accepted "
        f"{first.accepted:,}, quarantined {first.quarantined:,}; the re-ingest stored "
        f"{again.accepted:,} and found {again.duplicates:,} duplicates."
    )
    print(body)
    if not args.no_record:
        record("Ingest", body)


if __name__ == "__main__":
    main()
