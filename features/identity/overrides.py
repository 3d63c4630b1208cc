"""Manual identity overrides: merges and splits a reviewer made, kept across rebuilds.

Kept beside the event store (``<store>/identity/overrides.json``), so every feature
build reads them: ``merge`` makes the listed customer records one person whatever
the matcher says; ``split`` takes one record out of the person it was merged into
(every automatic link of that record is dropped, and any earlier merge naming it).
Overrides apply in the order they were made; a later merge may bring a split record
back. Only customer ids are kept, never an e-mail, phone or name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from features.errors import InputError
from features.pii.redaction import redact

Action = Literal["merge", "split"]
ACTIONS: tuple[Action, ...] = ("merge", "split")


@dataclass(frozen=True)
class Override:
    """One reviewer decision."""

    action: Action
    customer_ids: tuple[str, ...]
    reason: str = ""
    at: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise InputError("action", self.action, f"must be one of {', '.join(ACTIONS)}")
        ids = [c for c in self.customer_ids if c and c.strip()]
        if len(ids) != len(self.customer_ids):
            raise InputError("customer_ids", str(list(self.customer_ids)), "an id is empty")
        if self.action == "merge" and len(set(ids)) < 2:
            raise InputError(
                "customer_ids", str(list(self.customer_ids)), "a merge needs two different ids"
            )
        if self.action == "split" and len(ids) != 1:
            raise InputError(
                "customer_ids", str(list(self.customer_ids)), "a split takes exactly one id"
            )


def overrides_path(store_root: Path) -> Path:
    return Path(store_root) / "identity" / "overrides.json"


def load_overrides(store_root: Path) -> list[Override]:
    """The overrides kept for this store, oldest first (none: an empty list)."""
    path = overrides_path(store_root)
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
        return [
            Override(
                action=row["action"],
                customer_ids=tuple(str(c) for c in row["customer_ids"]),
                reason=str(row.get("reason", "")),
                at=str(row.get("at", "")),
            )
            for row in rows
        ]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(
            "identity overrides", str(path), f"unreadable ({error}); fix or remove the file"
        ) from error


def save_overrides(store_root: Path, overrides: list[Override]) -> Path:
    """Write the whole list atomically (a temporary file renamed over the old one)."""
    path = overrides_path(store_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(
        [asdict(o) | {"customer_ids": list(o.customer_ids)} for o in overrides], indent=1
    )
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".overrides-")
    with os.fdopen(handle, "w") as out:
        out.write(text + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return path


def add_override(
    store_root: Path, action: Action, customer_ids: list[str], reason: str
) -> Override:
    """Record one override (stamped now) after those already kept."""
    override = Override(
        action=action,
        customer_ids=tuple(customer_ids),
        reason=reason,
        at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    save_overrides(store_root, [*load_overrides(store_root), override])
    return override


def erase_overrides(store_root: Path, ids: Collection[str]) -> int:
    """Take the erased ``ids`` out of every override; how many overrides changed.

    A split of an erased record goes, and so does a merge left with fewer than two
    records; a merge of others that named an erased record keeps the others (their
    reviewer's decision stands), its reason with e-mails and phones masked and the
    erased ids removed, since a reviewer may have written them there.
    """
    gone = {str(i) for i in ids}
    kept = load_overrides(store_root)
    left: list[Override] = []
    changed = 0
    for override in kept:
        others = tuple(c for c in override.customer_ids if c not in gone)
        if len(others) == len(override.customer_ids):
            left.append(override)
            continue
        changed += 1
        if override.action == "merge" and len(set(others)) >= 2:
            reason = redact(override.reason)
            for erased in sorted(gone, key=len, reverse=True):
                reason = reason.replace(erased, "<erased>")
            left.append(replace(override, customer_ids=others, reason=reason))
    if changed:
        save_overrides(store_root, left)
    return changed


def remove_overrides(store_root: Path, customer_id: str) -> int:
    """Drop every override naming ``customer_id``; how many were dropped."""
    kept = load_overrides(store_root)
    left = [o for o in kept if customer_id not in o.customer_ids]
    if len(left) != len(kept):
        save_overrides(store_root, left)
    return len(kept) - len(left)
