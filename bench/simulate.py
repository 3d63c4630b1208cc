"""Store simulator speed: about one million events, simulated then written.

    python -m bench.simulate [--customers N --days 30 --format csv]

Times ``simulate`` and ``write_store`` separately, prints a table and records it
in the ``Simulator`` section of bench/RESULTS.md (``--no-record`` leaves it alone).
Target: one million events in at most 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.results import record, table
from simulation import SimulationConfig, simulate, write_store

TARGET_EVENTS = 1_000_000
PILOT_CUSTOMERS = 5_000


def customers_for(target: int, *, days: int, seed: int) -> int:
    """Customers that give about ``target`` events over ``days``, from a small pilot run."""
    pilot = simulate(SimulationConfig(customers=PILOT_CUSTOMERS, days=days, seed=seed))
    return max(1, round(target * PILOT_CUSTOMERS / len(pilot.events)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=None, help="default: ~1M events")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv")
    parser.add_argument("--no-record", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)

    customers = args.customers or customers_for(TARGET_EVENTS, days=args.days, seed=args.seed)
    config = SimulationConfig(customers=customers, days=args.days, seed=args.seed)
    started = time.perf_counter()
    store = simulate(config)
    simulated = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        paths = write_store(store, args.out or Path(tmp), fmt=args.format)
        written = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in paths.values()) / 1e6

    n = len(store.events)
    steps = {"simulate": simulated, f"write ({args.format})": written}
    steps["total"] = simulated + written
    body = table(
        ["step", "events", "seconds", "events/s"],
        [[step, n, seconds, n / seconds] for step, seconds in steps.items()],
    )
    body += (
        f"\n\nStore: {customers:,} customers, {args.days} days, seed {args.seed}; "
        f"{n:,} events, {size_mb:,.1f} MB written. Target: 1 M events in ≤ 60 s."
    )
    print(body)
    if not args.no_record:
        record("Simulator", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
