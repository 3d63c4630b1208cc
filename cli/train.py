"""``tailor train recommender``, ``tailor train selector`` and ``tailor promote``:
train on the home's store and snapshots, register in MLflow, move the champion."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.progress import progress

if TYPE_CHECKING:
    from cli.settings import Settings
    from training.settings import SelectorConfig


def add_parsers(sub: Any) -> None:
    """The ``train`` subcommand (``recommender``, ``selector``) and ``promote``."""
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

    back = sub.add_parser(
        "rollback",
        help="put the previous champion back (a running service loads it at its next poll)",
    )
    back.add_argument(
        "model",
        help="recommender, subject, offer, or a registered model name",
    )

    canary = sub.add_parser(
        "challenger",
        help="serve a version to serving.challenger_share of the customers (a canary)",
    )
    canary.add_argument("model", help="recommender, subject, offer, or a registered model name")
    canary.add_argument("version", nargs="?", default=None, help="the version (not with --clear)")
    canary.add_argument("--clear", action="store_true", help="stop the canary")


#: Short names of the registered models, as ``tailor rollback`` takes them.
MODEL_NAMES = {
    "recommender": "tailor-recommender",
    "subject": "tailor-selector-subject",
    "offer": "tailor-selector-offer",
}


def audit(settings: Settings, action: str, target: str, details: dict[str, Any]) -> None:
    """Record an administrative action of this command in the audit log."""
    from features.privacy.ledger import PrivacyLedger, cli_actor

    PrivacyLedger.for_settings(settings).audit(cli_actor(), action, target, details)


def run_rollback(args: argparse.Namespace, settings: Settings) -> int:
    from training.promotion import rollback
    from training.tracking import configure

    name = MODEL_NAMES.get(args.model, args.model)
    done = rollback(configure(settings.home), name)
    audit(
        settings,
        "rollback",
        done.name,
        {"from_version": done.from_version, "to_version": done.to_version},
    )
    print(
        f"{done.name}: champion rolled back from version {done.from_version} to "
        f"{done.to_version}; a running service loads it within serving.registry_poll_seconds "
        f"({settings.serving.registry_poll_seconds:g} s)"
    )
    return 0


def run_challenger(args: argparse.Namespace, settings: Settings) -> int:
    from features.errors import InputError
    from training.promotion import clear_challenger, set_challenger
    from training.tracking import configure

    name = MODEL_NAMES.get(args.model, args.model)
    client = configure(settings.home)
    share = settings.serving.challenger_share
    if args.clear:
        cleared = clear_challenger(client, name)
        audit(settings, "challenger_clear", name, {"version": cleared})
        print(f"{name}: " + (f"challenger {cleared} cleared" if cleared else "no challenger"))
        return 0
    if args.version is None:
        raise InputError("version", None, "name the version to serve as challenger, or --clear")
    set_challenger(client, name, args.version)
    audit(settings, "challenger_set", name, {"version": args.version})
    print(
        f"{name} version {args.version} is the challenger: served to {share:.0%} of the "
        "customers (serving.challenger_share)"
        + ("; set it above 0 to start the canary" if share <= 0 else "")
        + ". Compare: tailor ab-report --by version"
    )
    return 0


def recommender_args(*argv: str) -> argparse.Namespace:
    """``tailor train recommender ARGV`` as parsed: the options given, every other
    flag at its default (``tailor demo`` trains with these)."""
    parser = argparse.ArgumentParser(prog="tailor")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["train", "recommender", *argv])


def run_recommender(args: argparse.Namespace, settings: Settings) -> int:
    train_and_report_recommender(args, settings)
    return 0


def train_and_report_recommender(args: argparse.Namespace, settings: Settings) -> Any:
    """Train, gate and print; the job's ``TrainOutcome``."""
    from features.data.store import EventStore
    from training.recommend_config import RecommenderJobConfig
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
        progress=progress,
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
    if outcome.decision.promoted:
        audit(
            settings,
            "promote",
            outcome.logged.name,
            {"version": outcome.logged.version, "by": "train", "reason": outcome.decision.reason},
        )
    print(f"MLflow UI: mlflow ui --backend-store-uri {tracking_uri(settings.home)}")
    return outcome


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
    from training.settings import SelectorConfig

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


def run_selector(args: argparse.Namespace, settings: Settings) -> int:
    train_and_report_selector(args, settings)
    return 0


def train_and_report_selector(args: argparse.Namespace, settings: Settings) -> Any:
    """Train, evaluate off-policy, gate and print; the job's ``SelectorOutcome``."""
    from features.data.store import EventStore
    from training.train_selector import registered_name, train_selector

    outcome = train_selector(
        home=settings.home,
        store=EventStore(settings.store_dir),
        config=settings.features,
        slot=args.slot,
        selectors=_selector_settings(args, settings),
        defaults=_rule_defaults(settings),
        progress=progress,
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
    if outcome.promoted:
        audit(
            settings,
            "promote",
            registered_name(args.slot),
            {"version": outcome.version, "by": "train", "reason": outcome.reason},
        )
    return outcome


def run_promote(args: argparse.Namespace, settings: Settings) -> int:
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
    if decision.promoted:
        audit(
            settings,
            "promote",
            args.name,
            {"version": args.version, "by": "promote", "reason": decision.reason},
        )
    return 0 if decision.promoted else 1
