"""Erase one person from everything Tailor keeps, at once, and keep a receipt.

``tailor erase CUSTOMER_ID`` and ``DELETE /customers/{id}`` both run
:func:`erase_person`. In order:

1. every id of the person: the one given and every id identity resolution links to
   it (customer ids, anonymous ids);
2. those ids are marked erased in the privacy ledger: from this moment every worker
   of a running service treats them as unknown (it re-reads the ledger when it
   changes, and drops them from the models it has loaded), and ingest and
   ``POST /events`` drop their events, so a late batch does not bring them back;
3. the models this process serves forget them (factors, cached rankings, history);
4. every online store on disk, the event store (affected Parquet files rewritten
   atomically), the quarantine, the feature snapshots, the posted events, the
   decision log and the identity overrides lose their rows;
5. every registered model version and MLflow artifact holding them is rewritten
   without them;
6. SQLite files are vacuumed, so deleted rows leave no bytes behind;
7. a receipt (what was removed, counts per store, when, by whom; the person only as
   a keyed hash) is kept in the ledger and written to the audit log.

Requests keep being served throughout: every rewrite is atomic, and a request that
reads a store mid-erasure sees the person either whole or gone.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.data.decision_log import DecisionLog
from features.privacy.erasure import DECISIONS_LOG, erase_data, linked_ids
from features.privacy.ledger import PrivacyLedger
from features.privacy.scrub import scrub, sqlite_files
from features.settings import TailorSettings
from models.erasure import erase_from_registry
from models.registry import registry_client, tracking_uri
from serving.online import OnlineStore

if TYPE_CHECKING:
    from serving.bundles import BundleLoader

logger = logging.getLogger("serving.erasure")


def erase_person(
    settings: TailorSettings,
    customer_id: str,
    *,
    actor: str,
    loader: BundleLoader | None = None,
    tracking: str | None = None,
    ledger: PrivacyLedger | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Erase the person ``customer_id`` belongs to; returns the receipt (no PII).

    Raises
    ------
    NotFoundError
        When no store knows ``customer_id``.
    """
    now = now or datetime.now(UTC)
    ledger = ledger or PrivacyLedger.for_settings(settings)
    person = linked_ids(settings, customer_id)
    ids = sorted(person.ids)
    subject = ledger.key("id", customer_id)
    ledger.mark_erased(ids)
    removed: dict[str, int] = {}
    if loader is not None:
        removed["served_model_users"] = loader.erase(set(ids))
    for path in online_stores(settings):
        store = OnlineStore(path)
        try:
            for table, count in store.erase(ids).items():
                key = f"online_{table}"
                removed[key] = removed.get(key, 0) + count
        finally:
            store.close()
    removed |= erase_data(settings, person, now=now)
    client = registry_client(tracking or tracking_uri(settings.home))
    removed |= {f"mlflow_{k}": v for k, v in erase_from_registry(client, set(ids)).items()}
    # A decision already in flight when the ids were marked erased may have been
    # logged under a raw id after the log was swept: sweep it once more, seconds later
    # (every decision begun after the mark is logged under the keyed hash).
    removed["decisions"] = removed.get("decisions", 0) + DecisionLog(
        settings.online_dir / DECISIONS_LOG
    ).erase(ids)
    unscrubbed = [
        str(p.relative_to(settings.home)) for p in sqlite_files(settings.home) if not scrub(p)
    ]
    body: dict[str, Any] = {
        "erased_at": now.isoformat(),
        "ids": len(ids),
        "removed": removed,
    }
    if unscrubbed:
        body["not_yet_scrubbed"] = unscrubbed
    receipt_id = ledger.add_receipt(actor=actor, subject=subject, body=body)
    ledger.audit(actor, "erase", subject, {"receipt_id": receipt_id, **body})
    logger.info("erased %s (%d ids): receipt %s", subject, len(ids), receipt_id)
    return {"receipt_id": receipt_id, "subject": subject, "actor": actor, **body}


def online_stores(settings: TailorSettings) -> list[Path]:
    """Every online store file of the home (the live one and each snapshot's)."""
    folder = settings.online_dir / "profiles"
    return sorted(folder.glob("*.db")) if folder.is_dir() else []
