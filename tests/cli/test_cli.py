"""The ``tailor`` command line, run as a user would (a real subprocess, a real store)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.data.store import EventStore
from tests.commands import command_paths, run_tailor


def _tailor(
    *args: str, home: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_tailor(*args, home=home, cwd=cwd, env=env, timeout=300)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def test_ingest_prints_counts_and_quarantine_location(tmp_path, repo_root):
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,ts,event_type,customer_id\n"
        "a,2026-11-01T00:00:00Z,page_view,c1\n"
        "b,not-a-time,page_view,c1\n"
    )
    home = tmp_path / "home"
    result = _tailor("ingest", str(path), "--kind", "events", home=home, cwd=repo_root)
    assert result.returncode == 0, result.stderr
    assert "accepted    1" in result.stdout
    assert "quarantined 1" in result.stdout
    assert str(home / "store" / "quarantine" / "events") in result.stdout

    again = _tailor("ingest", str(path), "--kind", "events", home=home, cwd=repo_root)
    assert "nothing new" in again.stdout
    assert EventStore(home / "store").count("events") == 1


def test_bad_input_exits_2_naming_the_field(tmp_path, repo_root):
    missing = _tailor(
        "ingest", str(tmp_path / "nope.csv"), "--kind", "events", home=tmp_path, cwd=repo_root
    )
    assert missing.returncode == 2
    assert "path=" in missing.stderr and "no such file" in missing.stderr

    env_bad = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", "x.csv", "--kind", "events"],
        capture_output=True,
        text=True,
        env={**os.environ, "TAILOR_INGEST_CHUNK_ROWS": "ten"},
        cwd=repo_root,
        check=False,
    )
    assert env_bad.returncode == 2
    assert "ingest_chunk_rows" in env_bad.stderr


def test_demo_simulates_ingests_and_summarises(tmp_path, repo_root):
    result = _tailor(
        "demo",
        "--no-serve",
        "--customers",
        "300",
        "--days",
        "10",
        home=tmp_path / "home",
        cwd=repo_root,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for kind in ("customers", "catalog", "content", "events"):
        assert f"{kind} from" in out
    assert "== event store" in out and "purchase" in out
    assert "== quarantined events by reason" in out
    store = EventStore(tmp_path / "home" / "store")
    assert store.count("events") > 1000
    assert store.count("quarantine/events") > 0
    assert "segments:" in out and "active triggers:" in out and "cart_abandoned" in out
    snapshots = list((tmp_path / "home" / "features").glob("as_of=*"))
    assert len(snapshots) == 1 and (snapshots[0] / "manifest.json").exists()
    # The recommender was trained, logged to MLflow, registered and promoted.
    assert "registered tailor-recommender version 1" in out
    assert "promoted: no champion yet" in out
    assert (tmp_path / "home" / "mlflow" / "mlflow.db").exists()
    for slot in ("subject", "offer"):
        assert f"registered tailor-selector-{slot} version 1" in out
    # The registered champion selector loads as a pyfunc and decides, replayably.
    import mlflow

    from training.tracking import configure

    configure(tmp_path / "home")
    selector = mlflow.pyfunc.load_model("models:/tailor-selector-offer@champion")
    from models.selector import ALL_CUSTOMER_FEATURES

    frame = pd.DataFrame(
        {
            "decision_id": ["x-1", "x-2"],
            "country": ["US", "GB"],
            **{c: [1.0, 0.0] for c in ALL_CUSTOMER_FEATURES},
            **{
                f"prior_{kind}_{offer}": [0.0, 1.0]
                for kind in ("sends", "clicks")
                for offer in ("offer_freeship", "offer_none", "offer_pct10", "offer_pct20")
            },
        }
    )
    first, again = selector.predict(frame), selector.predict(frame)
    assert first["content_id"].str.startswith("offer_").all()
    assert ((first["propensity"] > 0) & (first["propensity"] <= 1)).all()
    pd.testing.assert_frame_equal(first, again)
    again = _tailor("promote", "--version", "1", home=tmp_path / "home", cwd=repo_root)
    assert again.returncode == 1 and "already the champion" in again.stdout


def test_features_build_as_of_and_bad_as_of(tmp_path, repo_root):
    home = tmp_path / "home"
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,ts,event_type,customer_id,item_id\n"
        "a,2026-11-01T00:00:00Z,add_to_cart,c1,i1\n"
        "b,2026-11-03T00:00:00Z,purchase,c1,i1\n"
    )
    assert (
        _tailor("ingest", str(path), "--kind", "events", home=home, cwd=repo_root).returncode == 0
    )
    env_consent = {"TAILOR_FEATURES__ASSUME_CONSENT_WHEN_UNKNOWN": "true"}
    result = _tailor(
        "features",
        "build",
        "--as-of",
        "2026-11-02T12:00:00Z",
        home=home,
        cwd=repo_root,
        env=env_consent,
    )
    assert result.returncode == 0, result.stderr
    assert "as_of=2026-11-02T12:00:00Z" in result.stdout
    # The purchase after as_of is not seen: the cart counts as abandoned.
    assert re.search(r"cart_abandoned\s+1\b", result.stdout)
    bad = _tailor("features", "build", "--as-of", "tomorrow", home=home, cwd=repo_root)
    assert bad.returncode == 2 and "not an ISO-8601 time" in bad.stderr


def test_train_recommender_fails_loudly_when_it_cannot_learn(tmp_path, repo_root):
    """A views-only log asked to learn purchases: non-zero exit, saying what to change."""
    rows = ["event_id,ts,event_type,customer_id,item_id"]
    rng = __import__("random").Random(0)
    for n in range(1500):
        user, item = rng.randrange(60), rng.randrange(40)
        rows.append(
            f"e{n},2026-10-{1 + n % 28:02d}T{n % 24:02d}:00:00Z,product_view,c{user},i{item}"
        )
    events = tmp_path / "events.csv"
    events.write_text("\n".join(rows) + "\n")
    customers = tmp_path / "customers.csv"
    customers.write_text(
        "customer_id,consent_email,consent_personalization\n"
        + "".join(f"c{u},true,true\n" for u in range(60))
    )
    home = tmp_path / "home"
    for path, kind in ((customers, "customers"), (events, "events")):
        done = _tailor("ingest", str(path), "--kind", kind, home=home, cwd=repo_root)
        assert done.returncode == 0, done.stderr
    built = _tailor(
        "features", "build", "--as-of", "2026-11-01T00:00:00Z", home=home, cwd=repo_root
    )
    assert built.returncode == 0, built.stderr
    failed = _tailor(
        "train",
        "recommender",
        "--label-events",
        "purchase",
        "--tune-budget",
        "0",
        home=home,
        cwd=repo_root,
    )
    assert failed.returncode != 0
    assert "label events purchase" in failed.stderr and "--label-events" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert "registered" not in failed.stdout  # nothing reaches the registry


def test_commands_run_from_any_folder_with_packaged_defaults_or_a_named_file(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,ts,event_type,customer_id,item_id\n"
        "a,2026-11-01T00:00:00Z,add_to_cart,c1,i1\n"
        "b,2026-11-01T01:00:00Z,product_view,c2,i1\n"
    )
    home = tmp_path / "home"
    consent = {"TAILOR_FEATURES__ASSUME_CONSENT_WHEN_UNKNOWN": "true"}
    assert (
        _tailor("ingest", str(events), "--kind", "events", home=home, cwd=elsewhere).returncode == 0
    )
    built = _tailor(
        "features",
        "build",
        "--as-of",
        "2026-11-03T00:00:00Z",
        home=home,
        cwd=elsewhere,
        env=consent,
    )
    assert built.returncode == 0, built.stderr
    assert "loyal" in built.stdout and "engaged_no_purchase" in built.stdout  # packaged

    # --config names the settings file; its relative paths resolve against its folder.
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "segments.yaml").write_text("segments:\n  carted:\n    when: add_to_cart_7d > 0\n")
    (etc / "tailor.toml").write_text(
        'home = "data"\n[features]\nsegments_file = "segments.yaml"\n'
        "assume_consent_when_unknown = true\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TAILOR_HOME"}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            capture_output=True,
            text=True,
            env={**env, **extra},
            cwd=elsewhere,
            timeout=300,
            check=False,
        )

    ingest = run("--config", str(etc / "tailor.toml"), "ingest", str(events), "--kind", "events")
    assert ingest.returncode == 0, ingest.stderr
    assert str(etc / "data" / "store") in ingest.stdout or "accepted    2" in ingest.stdout
    assert EventStore(etc / "data" / "store").count("events") == 2
    built = run(
        "features",
        "build",
        "--as-of",
        "2026-11-03T00:00:00Z",
        TAILOR_CONFIG=str(etc / "tailor.toml"),
    )
    assert built.returncode == 0, built.stderr
    assert re.search(r"carted\s+1\b", built.stdout) and "loyal" not in built.stdout
    missing = run("--config", "nope.toml", "ingest", str(events), "--kind", "events")
    assert missing.returncode == 2 and "config='nope.toml': no such settings file" in missing.stderr


def test_serve_refuses_rules_naming_unknown_content_naming_the_rule(tmp_path):
    home = tmp_path / "home"
    content = tmp_path / "content.csv"
    content.write_text(
        "content_id,slot,text,attributes,active\n"
        'mens_email,offer,Mens,"{""offer_type"": ""mens""}",true\n'
        'no_email,offer,(none),"{""offer_type"": ""none""}",true\n'
    )
    assert (
        _tailor("ingest", str(content), "--kind", "content", home=home, cwd=tmp_path).returncode
        == 0
    )
    # The packaged rules name no content: they pass against any store.
    ok = _tailor("rules", "check", home=home, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "rules: 2 from" in ok.stdout and "(packaged)" in ok.stdout
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "defaults: {offer: no_email}\n"
        "rules:\n"
        "  - {name: cart_items_first, slot: recommend, when: known, strategy: trigger_items}\n"
        "  - name: cart_abandoned_free_shipping\n"
        "    slot: offer\n"
        "    when: '\"cart_abandoned\" in triggers'\n"
        "    content_id: offer_freeship\n"
    )
    (tmp_path / "tailor.toml").write_text('[serving]\nrules_file = "rules.yaml"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    serve = _tailor(
        "--config",
        str(tmp_path / "tailor.toml"),
        "serve",
        "--port",
        "3989",
        home=home,
        cwd=elsewhere,
    )
    assert serve.returncode == 2
    assert (
        "rules[1] cart_abandoned_free_shipping: content_id 'offer_freeship' is not active "
        "content of slot 'offer' (known: mens_email, no_email)"
    ) in serve.stderr
    assert "not serving" in serve.stderr and "serving on" not in serve.stdout


# Libraries that take seconds to import: building the parser and printing any help
# must load none of them (each command imports what it needs).
HEAVY = (
    "mlflow",
    "bentoml",
    "lightgbm",
    "implicit",
    "splink",
    "duckdb",
    "sklearn",
    "pandas",
    "numpy",
    "pyarrow",
    "pydantic",
)


def test_help_of_every_command_loads_no_heavy_library(repo_root):
    script = f"""
import contextlib, io, json, sys
from cli.main import build_parser, main
from tests.commands import command_paths
printed = {{}}
for path, _ in command_paths(build_parser()):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main([*path, "--help"])
        except SystemExit as stop:
            assert stop.code == 0, (path, stop.code)
    printed[" ".join(path)] = out.getvalue()
print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules], "help": printed}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=repo_root, check=True
    )
    found = json.loads(done.stdout)
    assert found["loaded"] == []
    assert {"", "serve", "keys add", "train recommender", "identity merge"} <= set(found["help"])
    for path, text in found["help"].items():
        assert text.startswith(f"usage: tailor {path}".rstrip()), path


def test_every_option_has_help_and_shows_its_default():
    from cli.main import build_parser

    missing = []
    for path, parser in command_paths(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            name = f"tailor {' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(f"{name}: no help")
            elif action.option_strings and action.nargs != 0:
                shown = formatter._expand_help(action)
                if not ("default" in shown or "required" in shown):
                    missing.append(f"{name}: no default shown in {shown!r}")
    assert not missing, "\n".join(missing)


def test_version_is_the_installed_package_version(tmp_path, repo_root):
    from importlib.metadata import version

    done = _tailor("--version", home=tmp_path, cwd=repo_root)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"tailor {version('tailor')}\n"
