"""``tailor demo``: simulate a store and run the pipeline end to end — ingest, features,
the recommender and both selectors trained, registered and promoted — then serve."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cli import data, serve, train

if TYPE_CHECKING:
    from cli.settings import Settings


def add_parser(sub: Any) -> None:
    """The ``demo`` subcommand."""
    demo = sub.add_parser("demo", help="simulate a store and run the pipeline end to end")
    demo.add_argument("--customers", type=int, default=3000, help="customers simulated")
    demo.add_argument("--days", type=int, default=30, help="days of events, up to today")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulation")
    demo.add_argument("--tune-budget", type=int, default=4, help="ALS configurations tried")
    demo.add_argument(
        "--no-serve", action="store_true", help="stop after training instead of serving"
    )
    demo.add_argument(
        "--port", type=int, default=None, help="port served on (default: serving.port, 3000)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from features.data.store import EventStore, connect
    from simulation import DEMO_RULES_FILE, SimulationConfig, simulate, write_store

    if settings.serving.rules_file is None:
        # The simulated store's content ids are the demo's own: so are its rules.
        serving = settings.serving.model_copy(update={"rules_file": DEMO_RULES_FILE})
        settings = settings.model_copy(update={"serving": serving})

    if not args.no_serve:  # a busy port stops the demo now, not after training
        serve.check_port_free(settings.serving.host, args.port or settings.serving.port)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    config = SimulationConfig(
        customers=args.customers,
        days=args.days,
        seed=args.seed,
        start=today - timedelta(days=args.days),
    )
    print(f"== 1/4 simulate: {config.customers:,} customers over {config.days} days")
    simulated = simulate(config)
    data_dir = settings.home / "demo" / "data"
    paths = write_store(simulated, data_dir, fmt="csv")
    print(f"   wrote {len(simulated.events):,} events to {data_dir}")

    print(f"== 2/4 ingest into {settings.store_dir}")
    for kind in ("customers", "catalog", "content", "events"):
        report = data.ingest_one(paths[kind], kind, settings)
        print(report.summary())

    store = EventStore(settings.store_dir)
    print("\n== event store")
    con = connect()
    store.register(con, "events", "events")
    store.register(con, "quarantine/events", "quarantine")
    counts = con.execute(
        "SELECT event_type, count(*) FROM events GROUP BY event_type ORDER BY event_type"
    ).fetchall()
    for event_type, count in counts:
        print(f"   {event_type:18s} {count:>10,}")
    print(f"   {'total':18s} {sum(n for _, n in counts):>10,}")
    # Reasons grouped with their quoted values elided: "ts: … is not a timestamp".
    reasons = con.execute(
        "SELECT regexp_replace(reason, '''[^'']*''', '…', 'g') AS r, count(*) AS n "
        "FROM quarantine GROUP BY r ORDER BY n DESC LIMIT 10"
    ).fetchall()
    if reasons:
        print("\n== quarantined events by reason (values elided)")
        for reason, count in reasons:
            print(f"   {count:>6,}  {reason}")

    print("\n== 3/4 features")
    data.build_features(today, settings)

    print("\n== 4/4 train, register and promote the recommender and the selectors")
    train.run_recommender(train.recommender_args("--tune-budget", str(args.tune_budget)), settings)
    for slot in ("subject", "offer"):
        print(f"\n== train the {slot} selector")
        train.run_selector(argparse.Namespace(slot=slot), settings)
    if args.no_serve:
        return 0
    print("\n== serve")
    return serve.serve(settings, host=None, port=args.port, examples=True)
