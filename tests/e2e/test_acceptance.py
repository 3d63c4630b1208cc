"""The product end to end on real public data, as a user runs it, with default settings.

The shared acceptance protocol (``../shared/acceptance/acceptance.py``) converts a public
data set into contract CSVs, then runs ``tailor ingest``, ``tailor features build``,
``tailor train …`` and a real ``tailor serve``, asks it over HTTP and scores the answers
next to baselines computed in the same run. The Taobao sample goes through its
``--source taobao`` adapter the same way. Skipped when ``../shared`` is absent.
"""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.commands import run_tailor
from tests.conftest import SHARED_DATA

ACCEPTANCE = SHARED_DATA.parent / "acceptance" / "acceptance.py"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def acceptance() -> ModuleType:
    if not ACCEPTANCE.is_file() or not SHARED_DATA.is_dir():
        pytest.skip(f"acceptance protocol or data not found beside the repo ({ACCEPTANCE})")
    spec = importlib.util.spec_from_file_location("tailor_acceptance", ACCEPTANCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def product(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``tailor`` command of this checkout, and a free loopback port to serve on."""
    monkeypatch.setenv("TAILOR", f"{sys.executable} -m cli.main")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("ACCEPTANCE_PORT", str(s.getsockname()[1]))
    monkeypatch.chdir(Path(__file__).resolve().parents[2])


def _run(step, log: Path) -> dict:
    try:
        return step()
    except SystemExit as stop:  # a failed step: its JSON names the command and log tail
        pytest.fail(f"acceptance step failed: {stop.code}\n{log.read_text()[-4000:]}")


def test_movielens_defaults_promote_and_serve_a_model_that_beats_ease(
    acceptance: ModuleType, product: None, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    acceptance.prepare_movielens_100k(data)
    log = tmp_path / "run.log"
    out = _run(
        lambda: acceptance.run_recs(data / "train", data / "truth.json", tmp_path / "home", log),
        log,
    )
    print(json.dumps(out))
    text = log.read_text()
    assert "promoted: no champion yet" in text, text[-3000:]
    assert out["answered"] == out["users"] == 943
    assert out["strategies"].get("model", 0) >= 0.99 * out["users"], out["strategies"]
    assert out["x_ease"] >= 1.0, out
    assert out["x_popularity"] > 1.0, out


def test_hillstrom_defaults_train_the_offer_selector_and_serve_it(
    acceptance: ModuleType, product: None, tmp_path: Path
) -> None:
    import pandas as pd

    data = tmp_path / "data"
    raw = pd.read_csv(SHARED_DATA / "hillstrom-train" / "hillstrom_train.csv.gz")
    acceptance.prepare_campaign(raw, data, seed=1)
    log = tmp_path / "run.log"
    out = _run(
        lambda: acceptance.run_choose(
            data / "train", data / "eval.csv", tmp_path / "home", log, "offer"
        ),
        log,
    )
    print(json.dumps(out))
    text = log.read_text()
    assert re.search(r"registered tailor-selector-offer version \d+: ", text), text[-3000:]
    assert out["answered"] == out["customers"]
    assert out["x_best_constant_visit"] >= 0.98, out
    # The served policy keeps exploring: every arm is still shown to someone.
    assert set(out["share"]) == {"mens_email", "womens_email", "no_email"}, out["share"]


def test_taobao_through_its_adapter_promotes_a_champion_that_beats_own_history(
    product: None, tmp_path: Path
) -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    from mlflow.tracking import MlflowClient

    from models.registry import tracking_uri

    home = tmp_path / "home"
    path = SHARED_DATA / "taobao-userbehavior-sample" / "UserBehavior.csv.gz"

    def tailor(*args: str) -> str:
        # A public log has no customer records: consent is assumed for its ids, as the
        # README says to do for such logs.
        done = run_tailor(
            *args,
            home=home,
            env={"TAILOR_FEATURES__ASSUME_CONSENT_WHEN_UNKNOWN": "true"},
            timeout=1200,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout

    tailor("ingest", str(path), "--kind", "catalog", "--source", "taobao")
    tailor("ingest", str(path), "--kind", "events", "--source", "taobao")
    tailor("features", "build", "--as-of", "2017-12-04T00:00:00Z")
    printed = tailor("train", "recommender")
    print(printed)
    assert "labels: add_to_cart, purchase" in printed
    assert "promoted: " in printed, printed
    client = MlflowClient(tracking_uri(home), registry_uri=tracking_uri(home))
    champion = client.get_model_version_by_alias("tailor-recommender", "champion")
    metrics = client.get_run(champion.run_id).data.metrics
    assert metrics["reranker.ndcg_at_10"] > metrics["own_history.ndcg_at_10"], metrics
    assert metrics["reranker.ndcg_at_10"] > metrics["popularity.ndcg_at_10"], metrics
