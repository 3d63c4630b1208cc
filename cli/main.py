"""The ``tailor`` command line: one entry point, one settings object, subcommands.

Subcommands: ``simulate``, ``ingest``, ``features build`` (``cli/data.py``), ``train
recommender``, ``train selector``, ``promote``, ``rollback``, ``challenger`` (``cli/train.py``),
``retrain`` (``cli/retrain.py``), ``serve``, ``rules check`` (``cli/serve.py``),
``identity`` (``cli/identity.py``), ``keys`` (``cli/keys.py``), ``ab-report``,
``report`` (``cli/measure.py``), ``erase``, ``retention``, ``suppress``, ``audit``
(``cli/privacy.py``), ``demo`` (``cli/demo.py``). Each builds the settings
once, configures logging, and passes what it needs down. ``serve`` runs the BentoML
service (``serving.service``) in its own process.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli import data, demo, identity, keys, measure, privacy, retrain, serve, train

# Only the standard library and the command modules (themselves importing no more than
# the standard library and light ``features`` modules) are imported above: building
# the parser and printing help must not load pandas, MLflow or BentoML (seconds of
# start-up). Each command imports what it needs.

logger = logging.getLogger("tailor")


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
    data.add_parsers(sub)  # simulate, ingest, features
    train.add_parsers(sub)  # train, promote
    serve.add_parsers(sub)  # serve, rules
    identity.add_parser(sub)
    keys.add_parser(sub)
    measure.add_parser(sub)
    measure.add_report_parser(sub)
    retrain.add_parser(sub)
    privacy.add_parsers(sub)  # erase, retention, suppress, audit
    demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Long jobs report through cli.progress; MLflow's own chatter is for --verbose.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from pydantic import ValidationError

    from cli.settings import Settings
    from features.errors import TailorError

    try:
        settings = Settings() if args.config is None else Settings(config=args.config)
        if args.command == "simulate":
            return data.run_simulate(args)
        if args.command == "ingest":
            return data.run_ingest(args, settings)
        if args.command == "features":
            return data.build_features(args.as_of or datetime.now(UTC), settings)
        if args.command == "train" and args.train_command == "selector":
            return train.run_selector(args, settings)
        if args.command == "train":
            return train.run_recommender(args, settings)
        if args.command == "promote":
            return train.run_promote(args, settings)
        if args.command == "retrain":
            return retrain.run(args, settings)
        if args.command == "challenger":
            return train.run_challenger(args, settings)
        if args.command == "rollback":
            return train.run_rollback(args, settings)
        if args.command == "serve":
            return serve.serve(settings, host=args.host, port=args.port)
        if args.command == "rules":
            return serve.check_rules(serve.service_environment(settings))
        if args.command == "identity":
            return identity.run(args, settings)
        if args.command == "keys":
            return keys.run(args, settings)
        if args.command == "report":
            return measure.run_report(args, settings)
        if args.command == "ab-report":
            return measure.run_ab_report(args, settings)
        if args.command == "demo":
            return demo.run(args, settings)
        if args.command in privacy.COMMANDS:
            return privacy.run(args, settings)
    except ValidationError as exc:
        print(f"tailor: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except TailorError as exc:
        print(f"tailor: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())
