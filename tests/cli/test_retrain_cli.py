"""``tailor retrain`` end to end against a running service, then ``tailor rollback``:
new events arrive in the inbox, a better recommender is trained and promoted, the
service answers with it at once; a second run finds nothing new; the rollback puts the
previous champion back and the service follows."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd

from bench.server import Server
from features.snapshot import latest_snapshot, load_snapshot
from tests.commands import run_tailor
from training.promotion import set_champion
from training.retrain import KEPT, NOTHING_NEW, PROMOTED
from training.tracking import configure

KEY = "retrain-admin-key"


def _new_events(home: Path, inbox: Path, seed: int) -> Path:
    """A few days of another simulated store's events, with ids of their own: events
    the home has not seen."""
    simulated = home.parent / f"sim-{seed}"
    done = run_tailor(
        "simulate", "--customers", "400", "--days", "4", "--seed", str(seed),
        "--out", str(simulated), home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = pd.read_csv(simulated / "events.csv", dtype=str)
    events["event_id"] = events["event_id"].map(lambda v: v if pd.isna(v) else f"s{seed}-{v}")
    path = inbox / "events" / f"new-{seed}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    events.to_csv(path, index=False)
    return path


def _version(server: Server, customer: str) -> str | None:
    answer = server.client.post(
        "/recommend",
        json={"customer_id": customer, "n": 5},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]


def test_retrain_promotes_reloads_is_idempotent_and_rolls_back(trained_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "demo"))
    # A weak champion to beat: purchases only, and a memory of hours.
    weak = run_tailor(
        "train", "recommender", "--label-events", "purchase", "--half-life-days", "0.01",
        "--tune-budget", "0", home=home,
    )  # fmt: skip
    assert weak.returncode == 0, weak.stderr
    client = configure(home)
    weak_version = max(
        int(v.version) for v in client.search_model_versions("name='tailor-recommender'")
    )
    set_champion(client, "tailor-recommender", weak_version)

    snapshot = load_snapshot(latest_snapshot(home / "features"))
    customer = str(snapshot.user_ids[0])
    inbox = tmp_path / "inbox"
    _new_events(home, inbox, seed=21)
    server = Server(
        home,
        keys={KEY: ["decide", "ingest", "admin"]},
        env={"TAILOR_SERVING__REGISTRY_POLL_SECONDS": "1"},
        ready_timeout=120,
    )
    try:
        assert _version(server, customer) == str(weak_version)
        env = {"TAILOR_RETRAIN__SERVICE_URL": server.url, "TAILOR_RETRAIN__SERVICE_KEY": KEY}
        first = run_tailor("retrain", "--inbox", str(inbox), home=home, env=env)
        assert first.returncode == PROMOTED, first.stdout[-3000:] + first.stderr[-3000:]
        new_version = weak_version + 1
        assert f"promoted: recommender version {new_version}" in first.stdout
        assert "reloaded" in first.stdout
        # Reloaded by the retrain itself: the very next decision is the new champion's.
        assert _version(server, customer) == str(new_version)

        again = run_tailor("retrain", "--inbox", str(inbox), home=home, env=env)
        assert again.returncode == NOTHING_NEW, again.stdout + again.stderr
        assert "nothing new" in again.stdout

        back = run_tailor("rollback", "recommender", home=home)
        assert back.returncode == 0, back.stderr
        assert f"from version {new_version} to {weak_version}" in back.stdout
        deadline = time.monotonic() + 30  # the service's registry poll picks it up
        while _version(server, customer) != str(weak_version):
            assert time.monotonic() < deadline, "the service kept the rolled-back champion"
            time.sleep(0.5)
    finally:
        server.stop()

    # One parent run holds the retrain's steps; the jobs' runs are its children.
    runs = client.search_runs(
        [client.get_experiment_by_name("retrain").experiment_id], order_by=["start_time"]
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["recommender"] == "promoted"
    children = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.mlflow.parentRunId = '{runs[0].info.run_id}'",
    )
    assert {r.info.run_name for r in children} >= {"recommender", "selector-offer"}


def test_retrain_refuses_a_stray_file_and_a_second_run(tmp_path):
    home = tmp_path / "home"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "events.csv").write_text("event_id\n")
    done = run_tailor("retrain", "--inbox", str(inbox), home=home)
    assert done.returncode == 2
    assert "one folder per table" in done.stderr and "events.csv" in done.stderr
    (inbox / "events.csv").unlink()
    from features.data.locks import exclusive_lock

    with exclusive_lock(home / "retrain", what="tailor retrain", timeout=0):
        busy = run_tailor("retrain", "--inbox", str(inbox), home=home)
    assert busy.returncode == 2 and "tailor retrain" in busy.stderr
    idle = run_tailor("retrain", "--inbox", str(inbox), home=home)
    assert idle.returncode == NOTHING_NEW, idle.stderr
    # The codes a scheduler reads are the ones --help documents.
    shown = " ".join(run_tailor("retrain", "--help", home=home).stdout.split())
    for code, meaning in ((PROMOTED, "promoted"), (NOTHING_NEW, "nothing new"), (KEPT, "kept")):
        assert f"{code} {meaning}" in shown
