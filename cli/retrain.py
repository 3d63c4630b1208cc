"""``tailor retrain``: the one command a scheduler calls.

New inbox files (``retrain.inbox``) and events posted to the service → ingest →
features as of now → the recommender and the selectors trained and evaluated (offline
metrics, off-policy estimates, each against the champion re-scored on the same data)
→ each promoted only when better → the running service told to reload
(``retrain.service_url``, ``retrain.service_key``). One run at a time (a second one
stops at once); every step is logged under one parent MLflow run (experiment
``retrain``), the jobs' own runs as its children.

Exit codes: 0 promoted (at least one new champion), 3 nothing new (no new file, no
posted event; nothing was run), 4 kept (trained, nothing better than the champions),
2 failed (the reason printed; a model promoted before the failure stays champion, and
the parent run's tags say which), 1 crashed.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli import data, train

if TYPE_CHECKING:
    from cli.settings import Settings

EXPERIMENT = "retrain"


def add_parser(sub: Any) -> None:
    retrain = sub.add_parser(
        "retrain",
        help="new data → ingest → features → train → promote what is better → reload",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    retrain.add_argument(
        "--inbox", type=Path, default=None, help="folder of new files (default: retrain.inbox)"
    )
    retrain.add_argument("--force", action="store_true", help="train even when no new data arrived")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from features.data.locks import exclusive_lock
    from training.retrain import NOTHING_NEW, Ledger, new_files

    inbox = args.inbox or settings.retrain.inbox
    with exclusive_lock(settings.home / "retrain", what="tailor retrain", timeout=0):
        ledger = Ledger(settings.home / "retrain" / "ledger.json")
        files = new_files(inbox, ledger) if inbox is not None else []
        posted = _posted_events(settings)
        if not files and not posted and not args.force:
            where = f"no new file in {inbox}" if inbox is not None else "no inbox set"
            print(f"nothing new: {where}, no event posted to the service since the last run")
            return NOTHING_NEW
        print(f"new: {len(files)} file(s), {posted:,} posted event(s)")
        return _retrain(settings, files, ledger)


def _retrain(settings: Settings, files: list[Any], ledger: Any) -> int:
    from training.retrain import KEPT, PROMOTED
    from training.tracking import child_runs_of, configure, ensure_experiment

    client = configure(settings.home)
    parent = client.create_run(
        ensure_experiment(client, EXPERIMENT),
        run_name=f"retrain-{datetime.now(UTC):%Y%m%dT%H%M%S}",
    ).info.run_id
    promoted: list[str] = []
    try:
        with child_runs_of(parent):
            for i, file in enumerate(files, 1):
                print(f"\n== ingest {i}/{len(files)}: {file.path} ({file.table})")
                source = settings.retrain.sources.get(file.table, "contract")
                report = data.ingest_one(file.path, file.table, settings, source=source)
                print(report.summary())
                ledger.record(file, rows=report.accepted)
                client.log_metric(parent, f"ingested_rows.{file.table}", report.accepted, step=i)
            print("\n== features as of now")
            data.build_features(datetime.now(UTC), settings)
            print("\n== recommender")
            outcome = train.train_and_report_recommender(train.recommender_args(), settings)
            client.set_tag(parent, "recommender", _verdict(outcome.decision.promoted))
            if outcome.decision.promoted:
                promoted.append(f"recommender version {outcome.logged.version}")
            for slot in settings.retrain.slots:
                if not _has_sends(settings, slot):
                    print(f"\n== {slot} selector: no send logged for this slot; not trained")
                    client.set_tag(parent, f"selector.{slot}", "no data")
                    continue
                print(f"\n== {slot} selector")
                chosen = train.train_and_report_selector(argparse.Namespace(slot=slot), settings)
                client.set_tag(parent, f"selector.{slot}", _verdict(chosen.promoted))
                if chosen.promoted:
                    promoted.append(f"{slot} selector version {chosen.version}")
    except BaseException:
        client.set_terminated(parent, status="FAILED")
        raise
    client.log_param(parent, "files", len(files))
    client.log_param(parent, "promoted", ", ".join(promoted) or "none")
    if promoted:
        client.set_tag(parent, "reload", _reload(settings))
    client.set_terminated(parent)
    print(
        "\npromoted: " + ", ".join(promoted)
        if promoted
        else "\nkept: no candidate beat its champion"
    )
    return PROMOTED if promoted else KEPT


def _verdict(promoted: bool) -> str:
    return "promoted" if promoted else "kept"


def _posted_events(settings: Settings) -> int:
    """Events posted to the service and not yet moved into the event store."""
    from features.data.online_log import OnlineEventLog

    path = settings.online_dir / "events.db"
    if not path.exists():
        return 0
    log = OnlineEventLog(path)
    try:
        return log.count(pending_only=True)
    finally:
        log.close()


def _has_sends(settings: Settings, slot: str) -> bool:
    import duckdb

    from features.data.store import EventStore

    con = duckdb.connect()
    try:
        relation = EventStore(settings.store_dir).relation(con, "events")
        if "slot" not in relation.columns:
            return False
        literal = "'" + slot.replace("'", "''") + "'"
        found = relation.filter(f"event_type = 'email_sent' AND slot = {literal}").limit(1)
        return len(found.fetchall()) > 0
    finally:
        con.close()


def _reload(settings: Settings) -> str:
    """Ask the running service to load the new champions now; what happened, in words."""
    url, key = settings.retrain.service_url, settings.retrain.service_key
    if url is None:
        return "no service_url: the service loads the champions at its next registry poll"
    request = urllib.request.Request(
        url.rstrip("/") + "/admin/reload",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {key}"} if key else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            models = json.loads(answer.read() or b"{}").get("models")
        print(f"service at {url} reloaded: {models}")
        return f"reloaded: {models}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        # The champions are promoted; the service's own poll picks them up.
        print(
            f"warning: the service at {url} did not reload ({error}); it loads the new "
            "champions at its next registry poll",
            file=sys.stderr,
        )
        return f"reload failed: {error}"
