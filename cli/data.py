"""``tailor simulate``, ``tailor ingest`` and ``tailor features build``: the data a
home holds, from a simulated or real store to a point-in-time feature snapshot."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.progress import progress

if TYPE_CHECKING:
    from cli.settings import Settings
    from features.data.ingest import IngestReport

KINDS = ("events", "customers", "catalog", "content")


def utc_time(text: str) -> datetime:
    """Parse an ISO-8601 time for argparse; naive times are UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_parsers(sub: Any) -> None:
    """The ``simulate``, ``ingest`` and ``features`` subcommands."""
    sim = sub.add_parser("simulate", help="write a seeded synthetic store (customers, events …)")
    sim.add_argument("--customers", type=int, default=2000, help="customers simulated")
    sim.add_argument("--days", type=int, default=30, help="days of events")
    sim.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    sim.add_argument(
        "--start", type=utc_time, default=None, help="first day (UTC), ISO-8601 (default: DAYS ago)"
    )
    sim.add_argument("--out", type=Path, required=True, help="output folder (required)")
    sim.add_argument(
        "--format", choices=("csv", "jsonl", "parquet"), default="csv", help="file format written"
    )

    ing = sub.add_parser("ingest", help="validate and store a file of events or reference data")
    ing.add_argument("path", type=Path, help="CSV, TSV, JSONL or Parquet file (gzip by suffix)")
    ing.add_argument("--kind", choices=KINDS, required=True, help="what the file holds (required)")
    ing.add_argument(
        "--source",
        default="contract",
        choices=("contract", "taobao", "rees46", "movielens", "hillstrom"),
        help="input convention: Tailor's contract or an adapter for a public log",
    )
    ing.add_argument(
        "--format",
        choices=("csv", "tsv", "jsonl", "parquet"),
        default=None,
        help="file format (default: from the file's suffix)",
    )

    feats = sub.add_parser("features", help="feature snapshots")
    feats_sub = feats.add_subparsers(dest="features_command", required=True, metavar="COMMAND")
    build = feats_sub.add_parser("build", help="build a point-in-time feature snapshot")
    build.add_argument(
        "--as-of",
        type=utc_time,
        default=None,
        help="UTC time; only events before it are read (default: now)",
    )


def run_simulate(args: argparse.Namespace) -> int:
    from simulation import SimulationConfig, simulate, write_store

    options = {"customers": args.customers, "days": args.days, "seed": args.seed}
    if args.start is not None:
        options["start"] = args.start
    config = SimulationConfig(**options)
    started = time.perf_counter()
    store = simulate(config)
    paths = write_store(store, args.out, fmt=args.format)
    print(
        f"simulated {len(store.customers):,} customers, {len(store.catalog):,} items, "
        f"{len(store.events):,} events in {time.perf_counter() - started:.1f} s"
    )
    for name, path in paths.items():
        print(f"  {name:10s} {path}")
    return 0


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    report = ingest_one(args.path, args.kind, settings, source=args.source, fmt=args.format)
    print(report.summary())
    compact_online_log(settings)
    return 0


def compact_online_log(settings: Settings) -> None:
    """Move events posted to the service into the event store (deduped by id)."""
    from features.data.online_log import OnlineEventLog, compact
    from features.data.store import EventStore

    path = settings.online_dir / "events.db"
    if not path.exists():
        return
    log = OnlineEventLog(path)
    try:
        store = EventStore(settings.store_dir, lock_timeout=settings.lock_timeout)
        moved = compact(log, store, now=datetime.now(UTC))
    finally:
        log.close()
    if moved:
        print(f"compacted {moved:,} events posted to the service into the event store")


def ingest_one(
    path: Path,
    kind: str,
    settings: Settings,
    *,
    source: str = "contract",
    fmt: str | None = None,
) -> IngestReport:
    from features.data.ingest import ingest_file
    from features.data.store import EventStore
    from features.pii.hashing import KeyedHasher
    from features.privacy.erasure import erasure_ledger

    return ingest_file(
        path,
        kind=kind,
        store=EventStore(settings.store_dir, lock_timeout=settings.lock_timeout),
        now=datetime.now(UTC),
        source=source,
        fmt=fmt,
        chunk_rows=settings.ingest_chunk_rows,
        max_future_skew=settings.max_future_skew,
        limits=settings.row_limits,
        progress=progress,
        ledger=erasure_ledger(settings),
        # The configured key masks the quarantine's contacts, made only if one is met.
        hasher=partial(KeyedHasher.from_settings, settings.privacy, settings.home),
        phone_region=settings.phone_region,
    )


def build_features(as_of: datetime, settings: Settings) -> int:
    from features.data.store import EventStore
    from features.pii.hashing import KeyedHasher
    from features.segments import load_segments
    from features.snapshot import behaviour_feature_names, build_snapshot

    config = settings.features
    segments = load_segments(config.segments_file, behaviour_feature_names(config))
    compact_online_log(settings)
    snapshot = build_snapshot(
        EventStore(settings.store_dir),
        as_of=as_of,
        config=config,
        segments=segments,
        phone_region=settings.phone_region,
        progress=progress,
        write_to=settings.features_dir,
        lock_timeout=settings.lock_timeout,
        # Made only when two records share a key (a home's own key is then written).
        hasher=partial(KeyedHasher.from_settings, settings.privacy, settings.home),
    )
    path = snapshot.manifest["path"]
    rows = snapshot.manifest["rows"]
    print(f"feature snapshot as of {snapshot.as_of.isoformat()} → {path}")
    print(
        f"  {snapshot.manifest['events_read']:,} events read; {rows['customers']:,} customers "
        f"({rows['personalised_customers']:,} with personalisation consent), "
        f"{rows['items']:,} items, {rows['interactions_nnz']:,} interactions"
    )
    print(_identity_summary(snapshot.manifest.get("identity", {})))
    print("  segments:")
    sizes = snapshot.manifest["segment_sizes"]
    for name in segments.names:
        print(f"    {name:26s} {sizes.get(name, 0):>8,}")
    print("  active triggers:")
    counts = snapshot.manifest["trigger_counts"]
    for name in ("cart_abandoned", "browse_abandoned", "lapsing", "back_in_stock"):
        print(f"    {name:26s} {counts.get(name, 0):>8,}")
    return 0


def _identity_summary(report: dict[str, Any]) -> str:
    """Two lines on identity: people and links made, links refused and why."""
    links = report.get("links") or {}
    conflicts = report.get("conflicts") or {}
    matched = report.get("probabilistic") or {}
    made = ", ".join(f"{n:,} by {via}" for via, n in links.items()) or "none"
    refused = ", ".join(f"{n:,} {why}" for why, n in conflicts.items()) or "none"
    how = "ran" if matched.get("ran") else "skipped"
    return (
        f"  identity: {report.get('records', 0):,} records → {report.get('people', 0):,} people; "
        f"links {made}; refused {refused} (`tailor identity explain ID`)\n"
        f"  probabilistic matching {how}: {matched.get('reason', '')}"
    )
