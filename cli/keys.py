"""``tailor keys``: add, list and revoke the decision service's API keys.

The keys live in the key store of ``serving.keys`` (``Settings.keys_file``): ids,
names, scopes and SHA-256 digests, never a key. Each command runs
``python -m serving.keys`` (the store's own JSON interface) in a process of its own,
as ``tailor rules check`` runs the service's preflight. A key is printed once, when
it is added.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import TailorError

if TYPE_CHECKING:
    from cli.settings import Settings


def add_parser(sub: Any) -> None:
    """The ``keys`` subcommand and its own subcommands."""
    keys = sub.add_parser("keys", help="the decision service's API keys (stored as hashes)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    add = keys_sub.add_parser("add", help="make a key and print it, once")
    add.add_argument(
        "--scopes",
        required=True,
        help="comma-separated, of decide, ingest, admin (required)",
    )
    add.add_argument("--name", default="", help="who or what the key is for (default: none)")
    keys_sub.add_parser("list", help="the keys: id, name, scopes, created (never a key)")
    revoke = keys_sub.add_parser(
        "revoke", help="remove a key; a service reading the store refuses it within a second"
    )
    revoke.add_argument("id", help="the key's id (k_…, from tailor keys list)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.keys_file
    command = args.keys_command
    if command == "add":
        made = _store(path, "add", "--scopes", args.scopes, "--name", args.name)
        print(f"added API key {_describe(made)} to {path}")
        print("The key, shown only this once (send it as 'Authorization: Bearer <key>'):")
        print(f"   {made['token']}")
        return 0
    if command == "revoke":
        revoked = _store(path, "revoke", args.id)
        print(f"revoked API key {_describe(revoked)}")
        return 0
    listed = _store(path, "list")
    if not listed:
        print(f"no API keys in {path} (tailor keys add --scopes decide)")
        return 0
    rows = [["id", "name", "scopes", "created"]] + [
        [k["id"], k["name"] or "-", ",".join(k["scopes"]), k["created"]] for k in listed
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for *cells, created in rows:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        print("  ".join(padded), created)
    return 0


def ensure_key(path: Path, *, name: str, scopes: str) -> dict[str, Any] | None:
    """Add a key to the store at ``path`` if it holds none: the new key, with its
    token (id, name, scopes, created, token); ``None`` when it holds one already."""
    made: dict[str, Any] | None = _store(path, "ensure", "--scopes", scopes, "--name", name)
    return made


def _describe(key: dict[str, Any]) -> str:
    name = f" {key['name']!r}" if key["name"] else ""
    return f"{key['id']}{name} (scopes {','.join(key['scopes'])})"


def _store(path: Path, *args: str) -> Any:
    """The JSON answer of ``python -m serving.keys PATH ARGS``.

    Raises
    ------
    TailorError
        With the store's own message when it refuses.
    """
    done = subprocess.run(
        [sys.executable, "-m", "serving.keys", str(path), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        message = done.stderr.strip().removeprefix("tailor: ")
        raise TailorError(message or f"the key store exited {done.returncode}")
    return json.loads(done.stdout)
