"""The ``tailor`` command line: one entry point, one settings object, subcommands.

Subcommands: ``simulate``, ``ingest``, ``features build``, ``identity``, ``train
recommender``, ``train selector``, ``promote``, ``serve``, ``rules check``, ``keys``,
``demo``. Each builds the settings once, configures logging, and passes what it needs
down. ``serve`` (``training/serve_cli.py``) runs the BentoML service
(``serving.service``) in its own process; ``keys`` is ``training/keys_cli.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training import identity_cli, keys_cli, serve_cli

if TYPE_CHECKING:
    from features.ingest import IngestReport
    from features.settings import SelectorConfig, Settings

# Only the standard library and ``identity_cli`` are imported above: building the
# parser and printing help must not load pandas, MLflow or BentoML (seconds of
# start-up). Each command imports what it needs.

logger = logging.getLogger("tailor")

KINDS = ("events", "customers", "catalog", "content")


def _utc(text: str) -> datetime:
    """Parse an ISO-8601 time for argparse; naive times are UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless the help already says it
    (an option whose default comes from the settings names the setting itself) or
    the option is a flag (off unless given)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default is None or action.nargs == 0:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An argument parser whose subcommands share its help formatter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


class _VersionAction(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None):
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("tailor")
        except PackageNotFoundError:
            found = "unknown (the tailor package is not installed: pip install -e .)"
        print(f"tailor {found}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tailor", description="Recommendations and content decisions for personalised email."
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML settings file (default: TAILOR_CONFIG; none: defaults and TAILOR_* only)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = sub.add_parser("simulate", help="write a seeded synthetic store (customers, events …)")
    sim.add_argument("--customers", type=int, default=2000, help="customers simulated")
    sim.add_argument("--days", type=int, default=30, help="days of events")
    sim.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    sim.add_argument(
        "--start", type=_utc, default=None, help="first day (UTC), ISO-8601 (default: DAYS ago)"
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
        type=_utc,
        default=None,
        help="UTC time; only events before it are read (default: now)",
    )

    train = sub.add_parser("train", help="train models and register them in MLflow")
    train_sub = train.add_subparsers(dest="train_command", required=True, metavar="MODEL")
    rec = train_sub.add_parser(
        "recommender", help="two-stage recommender on the latest feature snapshot"
    )
    # Each flag overrides its setting under [recommender] (TAILOR_RECOMMENDER__*).
    rec.add_argument(
        "--label-events",
        default=None,
        help="comma-separated event types that count as relevant, or 'auto' (default: "
        "recommender.label_events, auto: carts/checkouts/purchases when the log has any, "
        "else every product event)",
    )
    rec.add_argument(
        "--mode",
        choices=("all", "new"),
        default=None,
        help="all: seen-but-unbought items may be recommended; new: never "
        "(default: recommender.mode, all)",
    )
    rec.add_argument(
        "--protocol",
        choices=("per_user", "global"),
        default=None,
        help="temporal split: each user's last share, or one cut-off "
        "(default: recommender.protocol, per_user)",
    )
    rec.add_argument(
        "--test-share",
        type=float,
        default=None,
        help="share held out (default: recommender.test_share, 0.2)",
    )
    rec.add_argument(
        "--half-life-days",
        type=float,
        default=None,
        help="half-life of interactions (default: recommender.half_life_days, 14)",
    )
    rec.add_argument(
        "--decay",
        choices=("last_activity", "as_of", "none"),
        default=None,
        help="age measured from the customer's last activity, as_of, or none "
        "(default: recommender.decay, last_activity)",
    )
    rec.add_argument(
        "--tune-budget",
        type=int,
        default=None,
        help="ALS configurations tried (default: recommender.tune_budget, 8)",
    )
    rec.add_argument(
        "--seed", type=int, default=None, help="seed of the run (default: recommender.seed, 0)"
    )
    rec.add_argument(
        "--floor",
        type=float,
        default=None,
        help="NDCG@10 a model needs to become champion (default: recommender.floor; none: "
        "beat popularity on the same split)",
    )

    sel = train_sub.add_parser("selector", help="subject-line or offer selector from campaigns")
    sel.add_argument(
        "--slot", choices=("subject", "offer"), required=True, help="what to select (required)"
    )
    sel.add_argument(
        "--reward",
        choices=("auto", "open", "click", "conversion", "margin"),
        default=None,
        help="what a decision is judged by (default: selectors.offer_reward / subject_reward)",
    )
    sel.add_argument(
        "--population",
        choices=("auto", "opened", "all"),
        default=None,
        help="offers learned from opened e-mails or every send "
        "(default: selectors.offer_population)",
    )
    sel.add_argument(
        "--attribution-window-hours",
        type=float,
        default=None,
        help="outcomes without a decision id count this long after a send "
        "(default: selectors.attribution_window_hours)",
    )
    sel.add_argument(
        "--margin-rate",
        type=float,
        default=None,
        help="gross margin on revenue, for the margin reward (default: selectors.margin_rate)",
    )
    sel.add_argument(
        "--split",
        choices=("auto", "campaign", "customer"),
        default=None,
        help="hold out the later campaigns or customer folds (cross-fitted) "
        "(default: selectors.split)",
    )
    sel.add_argument(
        "--holdout-share",
        type=float,
        default=None,
        help="campaigns held out (default: selectors.holdout_share)",
    )
    sel.add_argument(
        "--folds", type=int, default=None, help="customer folds (default: selectors.folds)"
    )
    sel.add_argument(
        "--policy",
        choices=("epsilon_greedy", "softmax"),
        default=None,
        help="learned policy (default: selectors.policy)",
    )
    sel.add_argument(
        "--epsilon",
        type=float,
        default=None,
        help="exploration share of the served champion (default: selectors.epsilon)",
    )
    sel.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="for --policy softmax (default: selectors.temperature)",
    )
    sel.add_argument(
        "--seed",
        type=int,
        default=None,
        help="folds, bootstraps and models (default: selectors.seed)",
    )

    prom = sub.add_parser("promote", help="move the champion alias if the candidate is better")
    prom.add_argument("--name", default="tailor-recommender", help="registered model")
    prom.add_argument("--version", required=True, help="candidate version (required)")
    prom.add_argument("--metric", default="ndcg@10", help="metric compared with the champion")
    prom.add_argument("--floor", type=float, default=0.0, help="least value of the metric")
    prom.add_argument(
        "--min-relative-gain",
        type=float,
        default=0.0,
        help="least relative gain over the champion's metric",
    )

    serve_cli.add_parser(sub)

    rules = sub.add_parser("rules", help="the decision service's rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    rules_sub.add_parser(
        "check",
        help="compile the rules and check the content they name against the active content",
    )

    identity_cli.add_parser(sub)
    keys_cli.add_parser(sub)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Long jobs report through _progress; MLflow's own chatter is for --verbose.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from pydantic import ValidationError

    from features.errors import TailorError
    from features.settings import Settings

    try:
        settings = Settings() if args.config is None else Settings(config=args.config)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "ingest":
            return _ingest(args, settings)
        if args.command == "features":
            return _features_build(args.as_of or datetime.now(UTC), settings)
        if args.command == "train" and args.train_command == "selector":
            return _train_selector(args, settings)
        if args.command == "train":
            return _train_recommender(args, settings)
        if args.command == "promote":
            return _promote(args, settings)
        if args.command == "serve":
            return serve_cli.serve(settings, host=args.host, port=args.port)
        if args.command == "rules":
            return serve_cli.check_rules(serve_cli.service_environment(settings))
        if args.command == "identity":
            return identity_cli.run(args, settings)
        if args.command == "keys":
            return keys_cli.run(args, settings)
        if args.command == "demo":
            return _demo(args, settings)
    except ValidationError as exc:
        print(f"tailor: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except TailorError as exc:
        print(f"tailor: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.command}")


def _simulate(args: argparse.Namespace) -> int:
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


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    report = _ingest_one(args.path, args.kind, settings, source=args.source, fmt=args.format)
    print(report.summary())
    _compact_online_log(settings)
    return 0


def _compact_online_log(settings: Settings) -> None:
    """Move events posted to the service into the event store (deduped by id)."""
    from features.online_log import OnlineEventLog, compact
    from features.store import EventStore

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


def _ingest_one(
    path: Path,
    kind: str,
    settings: Settings,
    *,
    source: str = "contract",
    fmt: str | None = None,
) -> IngestReport:
    from features.ingest import ingest_file
    from features.store import EventStore

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
        progress=_progress,
    )


def _features_build(as_of: datetime, settings: Settings) -> int:
    from features.segments import load_segments
    from features.snapshot import behaviour_feature_names, build_snapshot
    from features.store import EventStore

    config = settings.features
    segments = load_segments(config.segments_file, behaviour_feature_names(config))
    _compact_online_log(settings)
    snapshot = build_snapshot(
        EventStore(settings.store_dir),
        as_of=as_of,
        config=config,
        segments=segments,
        phone_region=settings.phone_region,
        progress=_progress,
        write_to=settings.features_dir,
        lock_timeout=settings.lock_timeout,
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


def _train_recommender(args: argparse.Namespace, settings: Settings) -> int:
    from features.store import EventStore
    from training.recommend_job import RecommenderJobConfig
    from training.tracking import tracking_uri
    from training.train_recommender import train_recommender

    flags = {
        "label_events": args.label_events,
        "mode": args.mode,
        "protocol": args.protocol,
        "test_share": args.test_share,
        "half_life_days": args.half_life_days,
        "decay": args.decay,
        "tune_budget": args.tune_budget,
        "seed": args.seed,
        "floor": args.floor,
    }
    chosen = settings.recommender.model_validate(
        settings.recommender.model_dump() | {k: v for k, v in flags.items() if v is not None}
    )
    config = RecommenderJobConfig(
        **chosen.model_dump(exclude={"floor"}),
    )
    outcome = train_recommender(
        home=settings.home,
        store=EventStore(settings.store_dir),
        features_dir=settings.features_dir,
        config=config,
        floor=chosen.floor,
        progress=_progress,
    )
    result = outcome.result
    labels = result.config.label_events
    at10 = result.table(10)
    print(
        f"recommender trained ({result.test_users:,} test users, {result.config.mode} items, "
        f"labels: {', '.join(labels) if isinstance(labels, tuple) else 'every event'}, "
        f"decay from {result.config.decay}):"
    )
    table = at10[["ndcg", "recall", "precision", "hit_rate", "coverage"]]
    if outcome.champion_reports is not None:
        champion = outcome.champion_reports[10]
        table.loc["champion (re-scored)"] = [
            champion.ndcg,
            champion.recall,
            champion.precision,
            champion.hit_rate,
            champion.coverage,
        ]
    print(table.round(4).to_string())
    print("NDCG@10 by user slice (history at training time: cold 0, new 1-4, returning 5+):")
    print(outcome.result.slice_table().round(4).to_string())
    print(
        f"logged run {outcome.logged.run_id}; registered {outcome.logged.name} "
        f"version {outcome.logged.version}"
    )
    print(
        ("promoted: " if outcome.decision.promoted else "not promoted: ") + outcome.decision.reason
    )
    print(f"MLflow UI: mlflow ui --backend-store-uri {tracking_uri(settings.home)}")
    return 0


SELECTOR_OPTIONS = {
    "population": "offer_population",
    "attribution_window_hours": "attribution_window_hours",
    "margin_rate": "margin_rate",
    "split": "split",
    "holdout_share": "holdout_share",
    "folds": "folds",
    "policy": "policy",
    "epsilon": "epsilon",
    "temperature": "temperature",
    "seed": "seed",
}


def _selector_settings(args: argparse.Namespace, settings: Settings) -> SelectorConfig:
    """``settings.selectors`` with the options given on the command line (validated)."""
    from features.settings import SelectorConfig

    chosen = settings.selectors.model_dump()
    for option, name in SELECTOR_OPTIONS.items():
        value = getattr(args, option, None)
        if value is not None:
            chosen[name] = value
    if getattr(args, "reward", None) is not None:
        chosen["offer_reward" if args.slot == "offer" else "subject_reward"] = args.reward
    return SelectorConfig(**chosen)


def _rule_defaults(settings: Settings) -> dict[str, str]:
    """The rules file's default content per slot (what serving falls back to)."""
    import yaml

    from features.errors import TailorError

    if settings.serving.rules_file is None:
        return {}  # the packaged rules name no content
    path = Path(settings.serving.rules_file)
    if not path.exists():
        raise TailorError(f"rules file {path} not found (serving.rules_file)")
    loaded = yaml.safe_load(path.read_text()) or {}
    defaults = loaded.get("defaults") or {}
    return {str(k): str(v) for k, v in defaults.items()}


def _train_selector(args: argparse.Namespace, settings: Settings) -> int:
    from features.store import EventStore
    from training.train_selector import registered_name, train_selector

    outcome = train_selector(
        home=settings.home,
        store=EventStore(settings.store_dir),
        config=settings.features,
        slot=args.slot,
        selectors=_selector_settings(args, settings),
        defaults=_rule_defaults(settings),
        progress=_progress,
    )
    evaluation = outcome.evaluation
    policy = outcome.selector.policy
    rows = [
        [name, f"{e.value:.4f}", f"[{e.ci_low:.4f}, {e.ci_high:.4f}]"]
        for name, e in evaluation.estimates.items()
    ]
    print(f"{args.slot} selector ({outcome.selector.reward}), hold-out: {outcome.split.reason}")
    for note in outcome.notes:
        print(f"   {note}")
    print(f"learned policy as served (epsilon {policy.epsilon:g}), {evaluation.rows:,} rows:")
    for name, value, interval in rows:
        print(f"   {name:6s} {value}  {interval}")
    print(f"   logging policy (observed)         {evaluation.logging_value:.4f}")
    for content_id, estimate in evaluation.singles.items():
        print(f"   constant {content_id:24s} DR {estimate.value:.4f}")
    if evaluation.champion_estimate is not None:
        print(f"   current champion, same rows       DR {evaluation.champion_estimate.value:.4f}")
    print(f"   calibration error (held out)      {outcome.calibration_error:.4f}")
    print(f"registered {registered_name(args.slot)} version {outcome.version}: {outcome.reason}")
    return 0


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    from training.promotion import promote
    from training.tracking import configure

    decision = promote(
        configure(settings.home),
        args.name,
        args.version,
        metric=args.metric,
        floor=args.floor,
        min_relative_gain=args.min_relative_gain,
    )
    print(("promoted: " if decision.promoted else "not promoted: ") + decision.reason)
    return 0 if decision.promoted else 1


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from features.store import EventStore, connect
    from simulation import DEMO_RULES_FILE, SimulationConfig, simulate, write_store

    if settings.serving.rules_file is None:
        # The simulated store's content ids are the demo's own: so are its rules.
        serving = settings.serving.model_copy(update={"rules_file": DEMO_RULES_FILE})
        settings = settings.model_copy(update={"serving": serving})

    if not args.no_serve:  # a busy port stops the demo now, not after training
        serve_cli.check_port_free(settings.serving.host, args.port or settings.serving.port)
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
        report = _ingest_one(paths[kind], kind, settings)
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
    _features_build(today, settings)

    print("\n== 4/4 train, register and promote the recommender and the selectors")
    train_args = build_parser().parse_args(
        ["train", "recommender", "--tune-budget", str(args.tune_budget)]
    )
    _train_recommender(train_args, settings)
    for slot in ("subject", "offer"):
        print(f"\n== train the {slot} selector")
        _train_selector(argparse.Namespace(slot=slot), settings)
    if args.no_serve:
        return 0
    print("\n== serve")
    return serve_cli.serve(settings, host=None, port=args.port, examples=True)


if __name__ == "__main__":
    raise SystemExit(main())
