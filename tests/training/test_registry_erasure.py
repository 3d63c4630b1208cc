"""Erasing customers from the MLflow store: every registered version and logged table
rewritten without them (no byte of their id left in the store), the rest still served;
and nothing training logs holds a customer id anywhere else."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from features.data.store import EventStore
from features.errors import InputError
from models.candidates import interaction_matrix
from models.erasure import erase_from_registry
from models.pipeline import RecommenderPipeline
from models.recommender import Recommender
from models.registry import load_version
from tests.models.test_erasure import ERASED, FACTORIES, fit_pipeline, rank_by_id, synthetic_log
from training.tracking import configure, ensure_experiment, log_recommender_run

NAME = "tailor-recommender"
GONE, KEPT = ERASED  # erased here / left in the store: proof the scan can see an id


def occurrences(folder: Path, value: str) -> list[Path]:
    """Files under ``folder`` holding ``value`` as a whole id (not inside a longer
    one) in any encoding a file may hold a string in: UTF-8 (text, JSON, SQLite),
    UTF-16 and UTF-32 (numpy's string arrays)."""
    # In text a neighbouring letter or digit means a longer id; numpy's fixed-width
    # arrays put ids side by side, so there any occurrence counts (the ids of these
    # tests all have one length and start with "c": none can straddle two).
    whole = re.compile(b"(?<![A-Za-z0-9_])" + re.escape(value.encode()) + b"(?![A-Za-z0-9_])")
    wide = [value.encode("utf-16-le"), value.encode("utf-32-le")]
    return [
        path
        for path in sorted(p for p in folder.rglob("*") if p.is_file())
        if whole.search(data := path.read_bytes()) or any(w in data for w in wide)
    ]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_log()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, data) -> Iterator[tuple[Path, MlflowClient]]:
    """A store with two recommender versions (a pipeline, then a plain ALS model),
    and a run that logged three customer-level tables (CSV, MLflow's JSON table, and
    Parquet indexed by customer)."""
    log, items = data
    home = tmp_path_factory.mktemp("erasure_home")
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    client = configure(home)
    pipeline = fit_pipeline(log, items)
    log_recommender_run(client, pipeline, registered_name=NAME, metrics={"ndcg@10": 0.3})
    as_of = log["ts"].max() + pd.Timedelta(seconds=1)
    als = FACTORIES["als"]().fit(
        interaction_matrix(log, pipeline.index, as_of=as_of),
        user_ids=pipeline.index.user_ids,
        item_ids=pipeline.index.item_ids,
    )
    log_recommender_run(client, als, registered_name=NAME, metrics={"ndcg@10": 0.2})
    people = pd.DataFrame(
        {"customer_id": [GONE, KEPT, "c0000003"], "segment": ["a", "b", "a"], "n": [7, 42, 3]}
    )
    with mlflow.start_run(experiment_id=ensure_experiment(client, "evaluation")) as run:
        client.log_text(run.info.run_id, people.to_csv(index=False), "slices/customers.csv")
        client.log_table(run.info.run_id, data=people, artifact_file="slices/customers.json")
        indexed = home / "customers.parquet"
        people.set_index("customer_id").to_parquet(indexed)
        client.log_artifact(run.info.run_id, str(indexed), "slices")
        indexed.unlink()
    yield home, client
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


def test_no_byte_of_an_erased_id_is_left_and_the_rest_still_serves(store, data):
    home, client = store
    log, _ = data
    rest = log[log["user_id"] != GONE]
    others = sorted(set(rest["user_id"]))
    before = load_version(client, NAME, 1)
    assert isinstance(before, RecommenderPipeline)
    ranked_before = rank_by_id(before, rest, others)
    mlflow_folder = home / "mlflow"
    assert occurrences(mlflow_folder, GONE), "the scan finds the id before the erasure"
    index = next(mlflow_folder.rglob("index.npz"))
    reader = open(index, "rb")  # a load in flight: it keeps reading the old file whole

    counts = erase_from_registry(client, {GONE})

    assert counts == {"versions": 2, "models": 2, "tables": 3, "rows": 3, "users": 1}
    assert occurrences(mlflow_folder, GONE) == []
    assert occurrences(mlflow_folder, KEPT), "others stay: the scan can still see an id"
    with reader, np.load(reader, allow_pickle=False) as old:
        assert GONE in old["user_ids"], "the file was replaced, not written over"
    pipeline = load_version(client, NAME, 1)
    assert isinstance(pipeline, RecommenderPipeline)
    assert GONE not in set(pipeline.index.user_ids)
    assert rank_by_id(pipeline, rest, others) == ranked_before
    als = load_version(client, NAME, 2)
    assert isinstance(als, Recommender)
    assert als.user_rows([GONE])[0] == -1 and als.user_rows([KEPT])[0] >= 0
    table = pd.read_csv(next(mlflow_folder.rglob("customers.csv")), dtype=str)
    assert table["customer_id"].tolist() == [KEPT, "c0000003"]
    assert table["n"].tolist() == ["42", "3"], "the other rows are kept as they were"
    indexed = pd.read_parquet(next(mlflow_folder.rglob("customers.parquet")))
    assert indexed.index.tolist() == [KEPT, "c0000003"] and indexed["n"].tolist() == [42, 3]
    # Erasing again finds nothing and rewrites nothing.
    assert erase_from_registry(client, [GONE])["users"] == 0


def test_only_the_named_models_are_rewritten(store):
    home, client = store
    counts = erase_from_registry(client, ["c0000003"], names=[NAME])
    assert counts["versions"] == 2 and counts["tables"] == 0
    # The run's tables are not the named models': they keep the customer.
    left = occurrences(home / "mlflow", "c0000003")
    assert {p.name for p in left} == {"customers.csv", "customers.json", "customers.parquet"}


def test_a_store_whose_artifacts_are_not_local_files_is_refused_by_name(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_experiment("remote", artifact_location="s3://tailor-artifacts/remote")
    with pytest.raises(InputError, match="s3://tailor-artifacts/remote"):
        erase_from_registry(client, [GONE])


def test_what_training_logs_holds_customer_ids_only_in_model_folders(trained_home):
    """Everything ``tailor demo`` logs (recommender, selectors, figures, reports):
    the only files naming a customer are the recommender's id arrays, which
    :func:`erase_from_registry` rewrites."""
    store = EventStore(trained_home / "store")
    events = store.read("events")
    ids = set(store.read("customers")["customer_id"].astype(str))
    ids |= set(events["customer_id"].dropna().astype(str))
    ids |= set(events["anonymous_id"].dropna().astype(str))
    assert all(len(i) >= 8 for i in ids), "distinctive ids: a byte scan cannot match by chance"
    folder = trained_home / "mlflow"
    blobs = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    holding: set[Path] = set()
    for path, data in blobs.items():
        if any(i.encode() in data or i.encode("utf-32-le") in data for i in ids):
            holding.add(path)
    assert holding, "the recommender's own ids are found: the scan works"
    allowed = {"index.npz", "model.npz"}
    assert {p.name for p in holding} <= allowed, sorted(str(p) for p in holding)
    for path in holding:  # and each is in a recommender artifact erase_from_registry reads
        assert "recommender" in path.relative_to(folder).parts, path
    with sqlite3.connect(folder / "mlflow.db") as con:
        dumped = "\n".join(con.iterdump()).encode()
    assert not any(i.encode() in dumped for i in ids)
