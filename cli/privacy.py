"""``tailor erase``, ``tailor retention``, ``tailor suppress`` and ``tailor audit``.

* ``erase CUSTOMER_ID``: remove a person (every id linked to them) from every store
  under the home and from the registered models, at once; prints the receipt (no
  personal data: the person appears as a keyed hash). A running service drops them
  from its loaded models on its next request.
* ``retention``: drop events, logged decisions and quarantined rows older than the
  ``[privacy]`` retention settings.
* ``suppress add|remove|list|import``: the suppression list (addresses and ids never
  to mail), kept as keyed hashes.
* ``audit``: the audit log of administrative actions.

Every one of them is recorded in the audit log, attributed to ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import InputError

if TYPE_CHECKING:
    from cli.settings import Settings


def add_parsers(sub: Any) -> None:
    """The ``erase``, ``retention``, ``suppress`` and ``audit`` subcommands."""
    erase = sub.add_parser(
        "erase",
        help="remove a person from every store and model now, and print the receipt",
    )
    erase.add_argument("customer_id", help="any id of the person (customer or anonymous id)")
    retention = sub.add_parser(
        "retention",
        help="drop events, decisions and quarantined rows older than [privacy] retention",
    )
    retention.add_argument(
        "--now",
        type=_utc,
        default=None,
        help="the time the retention periods count back from (default: now, UTC)",
    )
    suppress = sub.add_parser("suppress", help="the suppression list: never mail these")
    suppress_sub = suppress.add_subparsers(
        dest="suppress_command", required=True, metavar="COMMAND"
    )
    for name, text in (("add", "add addresses or ids"), ("remove", "remove them again")):
        one = suppress_sub.add_parser(name, help=text)
        one.add_argument(
            "--email",
            action="append",
            default=[],
            help="an e-mail address (repeatable; default: none)",
        )
        one.add_argument(
            "--phone",
            action="append",
            default=[],
            help="a phone number (repeatable; default: none)",
        )
        one.add_argument(
            "--customer-id",
            action="append",
            default=[],
            help="a customer id (repeatable; default: none)",
        )
        if name == "add":
            one.add_argument(
                "--reason", default="manual", help="why (shown as suppressed:<reason>)"
            )
    load = suppress_sub.add_parser(
        "import", help="add every row of a CSV with email, phone and/or customer_id columns"
    )
    load.add_argument("file", type=Path, help="the CSV file")
    load.add_argument("--reason", default="imported", help="why (shown as suppressed:<reason>)")
    suppress_sub.add_parser("list", help="the entries: kind, keyed hash, reason, when")
    audit = sub.add_parser("audit", help="the audit log of administrative actions")
    audit.add_argument("--limit", type=int, default=50, help="most recent entries shown")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")


def _utc(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or time") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def run_erase(args: argparse.Namespace, settings: Settings) -> int:
    from serving.erasure import erase_person

    receipt = erase_person(settings, args.customer_id, actor=_actor())
    print(json.dumps(receipt, indent=2, default=str))
    return 0


def run_retention(args: argparse.Namespace, settings: Settings) -> int:
    from features.privacy.ledger import PrivacyLedger
    from features.privacy.retention import run_retention

    now = args.now or datetime.now(UTC)
    removed = run_retention(settings, now=now)
    privacy = settings.privacy
    PrivacyLedger.for_settings(settings).audit(
        _actor(),
        "retention",
        None,
        {
            "now": now.isoformat(),
            "removed": removed,
            "retention_days": {
                "events": privacy.retention_days_events,
                "decisions": privacy.retention_days_decisions,
                "quarantine": privacy.retention_days_quarantine,
            },
        },
    )
    for kind, count in removed.items():
        print(f"{kind}: {count:,} removed")
    return 0


def run_suppress(args: argparse.Namespace, settings: Settings) -> int:
    from features.privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger.for_settings(settings)
    command = args.suppress_command
    if command == "list":
        listed = ledger.suppression()
        if not listed:
            print("the suppression list is empty (tailor suppress add --email ...)")
        for entry in listed:
            added = f"{entry['added_at']:%Y-%m-%d %H:%M}"
            print(f"{entry['kind']:<6} {entry['key']}  {entry['reason']}  {added}")
        return 0
    if command == "import":
        entries = _entries_of_file(args.file, settings)
    else:
        entries = _entries(settings, args.email, args.phone, args.customer_id)
    if not entries:
        raise InputError("suppress", command, "give at least one --email, --phone or --customer-id")
    if command == "remove":
        changed = ledger.unsuppress(entries)
        print(f"removed {changed:,} of {len(entries):,} entries from the suppression list")
    else:
        changed = ledger.suppress(entries, reason=args.reason)
        print(f"added {changed:,} new entries to the suppression list ({len(entries):,} given)")
    ledger.audit(
        _actor(), f"suppress_{command}", None, {"entries": len(entries), "changed": changed}
    )
    return 0


def run_audit(args: argparse.Namespace, settings: Settings) -> int:
    from features.privacy.ledger import PrivacyLedger

    entries = PrivacyLedger.for_settings(settings).audit_log(limit=args.limit)
    if not entries:
        print("the audit log is empty")
    for entry in entries:
        if args.json:
            print(
                json.dumps(
                    {
                        "seq": entry.seq,
                        "at": entry.at.isoformat(),
                        "actor": entry.actor,
                        "action": entry.action,
                        "target": entry.target,
                        "details": entry.details,
                    },
                    sort_keys=True,
                )
            )
        else:
            target = f" {entry.target}" if entry.target else ""
            details = json.dumps(entry.details, sort_keys=True) if entry.details else ""
            print(f"{entry.at:%Y-%m-%d %H:%M:%S} {entry.actor} {entry.action}{target} {details}")
    return 0


def _actor() -> str:
    from features.privacy.ledger import cli_actor

    return cli_actor()


def _entries(
    settings: Settings, emails: list[str], phones: list[str], ids: list[str]
) -> list[tuple[str, str]]:
    """``(kind, normalised value)`` of each given address or id; a value that is not
    an address of its kind fails, naming the option (not the value: it is personal)."""
    import pandas as pd

    from features.pii.contacts import normalised

    out: list[tuple[str, str]] = []
    for kind, values in (("email", emails), ("phone", phones), ("id", ids)):
        if not values:
            continue
        found = normalised(
            kind,
            pd.Series(values, dtype="string"),
            region=settings.phone_region,
            gmail=settings.features.identity.gmail_normalisation,
        )
        for position, value in enumerate(found):
            if pd.isna(value):
                option = "--customer-id" if kind == "id" else f"--{kind}"
                raise InputError(option, f"value {position + 1}", f"is not a valid {kind}")
            out.append((kind, str(value)))
    return out


def _entries_of_file(path: Path, settings: Settings) -> list[tuple[str, str]]:
    import pandas as pd

    if not path.is_file():
        raise InputError("file", str(path), "no such file")
    frame = pd.read_csv(path, dtype="string", keep_default_na=False)
    columns = {"email": "email", "phone": "phone", "customer_id": "id"}
    if not set(frame.columns) & set(columns):
        raise InputError(
            "file", str(path), f"has none of the columns {sorted(columns)}: {list(frame.columns)}"
        )
    out: list[tuple[str, str]] = []
    for column, kind in columns.items():
        if column not in frame.columns:
            continue
        values = [v for v in frame[column].str.strip() if v]
        if kind == "email":
            out += _entries(settings, values, [], [])
        elif kind == "phone":
            out += _entries(settings, [], values, [])
        else:
            out += _entries(settings, [], [], values)
    return out


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch ``erase``, ``retention``, ``suppress`` and ``audit``."""
    handlers = {
        "erase": run_erase,
        "retention": run_retention,
        "suppress": run_suppress,
        "audit": run_audit,
    }
    handler = handlers.get(args.command)
    if handler is None:  # pragma: no cover - argparse knows the commands
        print(f"tailor: unknown command {args.command}", file=sys.stderr)
        return 2
    return handler(args, settings)


COMMANDS = ("erase", "retention", "suppress", "audit")
