"""``tailor identity``: explain a person, and the reviewer's merge / split overrides.

``explain ID`` reads the newest feature snapshot; ``merge`` and ``split`` record an
override beside the event store, which every later ``tailor features build`` applies.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from features.errors import InputError
from features.identity.overrides import add_override, load_overrides, remove_overrides

if TYPE_CHECKING:
    from cli.settings import Settings


def add_parser(sub: Any) -> None:
    """The ``identity`` subcommand and its own subcommands."""
    ident = sub.add_parser("identity", help="explain and correct identity resolution")
    ident_sub = ident.add_subparsers(dest="identity_command", required=True)
    exp = ident_sub.add_parser("explain", help="which records, keys and matches make a person")
    exp.add_argument("id", help="a customer id or an anonymous id")
    exp.add_argument("--json", action="store_true", help="print JSON instead of text")
    merge = ident_sub.add_parser(
        "merge", help="make these customer records one person (kept across rebuilds)"
    )
    merge.add_argument("ids", nargs="+", metavar="CUSTOMER_ID", help="two or more customer ids")
    merge.add_argument("--reason", default="", help="why (kept with the override)")
    split = ident_sub.add_parser(
        "split", help="take a customer record out of its person (kept across rebuilds)"
    )
    split.add_argument("id", metavar="CUSTOMER_ID", help="the customer id to take out")
    split.add_argument("--reason", default="", help="why (kept with the override)")
    over = ident_sub.add_parser("overrides", help="list the merge / split overrides")
    over.add_argument(
        "--remove",
        metavar="CUSTOMER_ID",
        help="drop the overrides naming it (default: list them, drop none)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from features.identity.explain import explain, format_explanation
    from features.snapshot import latest_snapshot, load_identity

    command = args.identity_command
    if command == "explain":
        identity = load_identity(latest_snapshot(settings.features_dir))
        found = explain(identity, args.id)
        print(json.dumps(found, indent=1) if args.json else format_explanation(found))
        return 0
    if command == "overrides":
        if args.remove:
            dropped = remove_overrides(settings.store_dir, args.remove)
            print(f"dropped {dropped} override(s) naming {args.remove}")
            return 0
        for o in load_overrides(settings.store_dir):
            reason = f"  ({o.reason})" if o.reason else ""
            print(f"{o.at}  {o.action:<5}  {' '.join(o.customer_ids)}{reason}")
        return 0
    ids = args.ids if command == "merge" else [args.id]
    _check_known(settings, ids)
    override = add_override(settings.store_dir, command, ids, args.reason)
    print(
        f"recorded: {override.action} {' '.join(override.customer_ids)}; "
        "it takes effect at the next `tailor features build`"
    )
    return 0


def _check_known(settings: Settings, ids: list[str]) -> None:
    """Every id must be a customer id of the newest snapshot."""
    from features.snapshot import latest_snapshot, load_identity

    mapping = load_identity(latest_snapshot(settings.features_dir)).mapping
    known = set(mapping.loc[mapping["source_type"] == "customer", "source_id"].astype(str))
    for customer_id in ids:
        if customer_id not in known:
            raise InputError(
                "customer_id", customer_id, "not a customer id of the newest feature snapshot"
            )
