"""MLflow tracking and registry for recommenders: runs, params, metrics, artifacts.

The embedded default is a SQLite backend with a local artifact folder, both under
``TAILOR_HOME/mlflow`` (MLflow refuses the plain file store since 3.13). Every
experiment is created with an ``artifact_location`` beside the database, so
artifacts never land in the working directory (the ``Default`` experiment of a
SQLite store points at ``./mlruns``: it is never used here).

A training job calls :func:`log_recommender_run` once: params, data window,
metrics, figures, the full config as JSON, and the model as a "models from code"
pyfunc (``training/recommender_pyfunc.py``) whose artifact is the recommender's own
``model.npz`` + ``manifest.json`` (no pickle), registered under a name. The figures
come from :mod:`training.figures`. The gate, :func:`training.promotion.promote`, moves
the ``champion`` alias only when the candidate beats the current champion and passes a
floor; serving loads the raw recommender back with :func:`load_champion`.

MLflow metric names may not contain ``@``: a metric ``ndcg@10`` is stored as
``ndcg_at_10`` (:func:`mlflow_metric_name`); :func:`training.promotion.promote` applies
the same mapping, so callers keep using ``ndcg@10``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

from features.errors import InputError, TailorError
from models.pipeline import RecommenderPipeline
from models.recommender import Recommender
from models.registry import (
    CHAMPION,
    RECOMMENDER_KEY,
    champion_version,
    load_champion,
    load_version,
    tracking_uri,
)
from training.figures import plot_feature_importance, plot_metric_curves, plot_run_curves

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "recommenders"
PYFUNC_CODE = Path(__file__).with_name("recommender_pyfunc.py")
MODEL_NAME = "recommender"
"""Name of the logged model inside the run (``name=`` of ``log_model``)."""
ARTIFACT_KEY = RECOMMENDER_KEY
"""Key of the recommender directory in the pyfunc's artifacts (see recommender_pyfunc)."""
REQUIREMENTS = ("tailor", "mlflow", "numpy", "scipy", "pandas", "threadpoolctl", "implicit")
"""Distributions pinned in the logged model's ``requirements.txt`` (when installed)."""
TAG_PREFIX = "tailor."

_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
_BAD_NAME_CHARS = re.compile(r"[^/\w.\- :]")


# ---------------------------------------------------------------------- store
def artifact_root(uri: str) -> str | None:
    """Artifact folder (``file://`` URI) that goes with a SQLite tracking URI.

    ``<folder of the database>/artifacts``; ``None`` for other backends, whose
    server decides where artifacts go.
    """
    if not uri.startswith("sqlite:///"):
        return None
    database = uri.removeprefix("sqlite:///")
    if not database or database.startswith(":memory:"):
        return None
    folder = Path(database).expanduser().resolve().parent / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder.as_uri()


def configure(home_or_uri: Path | str) -> MlflowClient:
    """Point MLflow (tracking and registry) at a store and return a client for it.

    Parameters
    ----------
    home_or_uri : pathlib.Path or str
        ``TAILOR_HOME`` (a path: the embedded SQLite store of :func:`tracking_uri`)
        or a tracking URI (``sqlite:///…``, ``postgresql://…``, ``http://…``).

    Returns
    -------
    mlflow.tracking.MlflowClient
        Bound to that URI for tracking and registry. The process-wide fluent URIs
        are set too, because ``mlflow.pyfunc.log_model`` only uses those.
    """
    if isinstance(home_or_uri, Path) or not _URI_SCHEME.match(home_or_uri):
        uri = tracking_uri(Path(home_or_uri))
    else:
        uri = home_or_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, name: str = DEFAULT_EXPERIMENT) -> str:
    """Id of experiment ``name``, created (artifacts beside a SQLite store) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        root = artifact_root(client.tracking_uri)
        location = f"{root}/{_folder_name(name)}" if root is not None else None
        return client.create_experiment(name, artifact_location=location)
    if experiment.lifecycle_stage != "active":
        raise InputError("experiment", name, "is deleted; restore it or choose another name")
    return str(experiment.experiment_id)


def _folder_name(name: str) -> str:
    """A file-system-safe folder name for an experiment name."""
    return re.sub(r"[^\w.\-]", "_", name).strip(".") or "experiment"


# ---------------------------------------------------------------------- names and values
def mlflow_metric_name(name: str) -> str:
    """The MLflow-safe form of a metric or param name: ``ndcg@10`` → ``ndcg_at_10``.

    MLflow accepts only alphanumerics, ``_ - . / :`` and spaces; ``@`` becomes
    ``_at_`` and any other character ``_``.
    """
    return _BAD_NAME_CHARS.sub("_", name.replace("@", "_at_"))


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to one level with dotted keys: ``{"als": {"factors": 64}}`` →
    ``{"als.factors": 64}``. Other values are kept as they are."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def curve_metrics(curves: Mapping[str, Mapping[int, float]]) -> dict[str, float]:
    """Per-k curves ``{"ndcg": {10: 0.3, 20: 0.35}}`` → ``{"ndcg@10": 0.3, "ndcg@20": 0.35}``."""
    return {
        f"{metric}@{k}": float(value)
        for metric, by_k in curves.items()
        for k, value in by_k.items()
    }


def _param_value(value: Any) -> str:
    """A param / tag string: containers as JSON, timestamps as ISO 8601, else ``str``."""
    if isinstance(value, Mapping | list | tuple):
        text = json.dumps(value, default=_json_default, sort_keys=True)
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value)
    if len(text) > MAX_PARAM_VAL_LENGTH:
        text = text[: MAX_PARAM_VAL_LENGTH - 3] + "..."
    return text


def _json_default(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else str(value)


def _safe_names(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Map keys to MLflow-safe names; two keys that map to one name are an error."""
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in values.items():
        safe = mlflow_metric_name(str(key))
        if safe in origin and origin[safe] != key:
            raise InputError(what, key, f"collides with {origin[safe]!r} as MLflow name {safe!r}")
        origin[safe] = key
        out[safe] = value
    return out


# ---------------------------------------------------------------------- logging
@dataclass(frozen=True)
class LoggedRecommender:
    """What :func:`log_recommender_run` logged and registered."""

    run_id: str
    name: str
    """Registered model name."""
    version: int
    """New registry version number."""
    model_uri: str
    """``models:/<name>/<version>``."""


def default_pip_requirements(names: Iterable[str] = REQUIREMENTS) -> list[str]:
    """``name==version`` for each installed distribution of ``names`` (others skipped)."""
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            logger.debug("%s is not installed; left out of pip_requirements", name)
    return pins


def _signature() -> ModelSignature:
    inputs = Schema(
        [
            ColSpec(DataType.long, "user"),
            ColSpec(DataType.long, "n", required=False),
            ColSpec(Array(DataType.long), "history", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec(DataType.long, "request"),
            ColSpec(DataType.long, "user"),
            ColSpec(DataType.long, "rank"),
            ColSpec(DataType.long, "item"),
            ColSpec(DataType.float, "score"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def log_recommender_run(
    client: MlflowClient,
    model: Recommender | RecommenderPipeline,
    *,
    registered_name: str,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    config: Mapping[str, Any] | None = None,
    data_window: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    curves: Mapping[str, Mapping[int, float]] | None = None,
    comparison: Mapping[str, Mapping[str, Mapping[int, float]]] | None = None,
    feature_importance: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    pip_requirements: Sequence[str] | None = None,
) -> LoggedRecommender:
    """Log one fitted recommender with everything about its run, and register it.

    Logs into the active run when there is one, otherwise into a new run of
    ``experiment`` (created with its artifacts under the store, ended on return).

    Parameters
    ----------
    client : mlflow.tracking.MlflowClient
        From :func:`configure`; the fluent tracking URI must be the same.
    model : Recommender or RecommenderPipeline
        A fitted recommender, or the two-stage pipeline.
    registered_name : str
        Registered model to add a version to (created if missing).
    experiment : str
        Experiment of a new run.
    run_name : str, optional
        Name of a new run.
    config : mapping, optional
        The job's full configuration: flattened into ``config.*`` params and
        logged whole as ``config.json``.
    data_window : mapping, optional
        E.g. ``{"as_of": …, "train_start": …, "test_end": …}``: params and tags
        ``data.*``.
    metrics : mapping of str to float, optional
        Final metrics (``ndcg@10`` is stored as ``ndcg_at_10``).
    curves : mapping of str to mapping of int to float, optional
        This model's per-k curves ``{"ndcg": {5: …, 10: …}}``: logged as
        ``ndcg@5``, ``ndcg@10``… and drawn as ``figures/curves.png``.
    comparison : mapping, optional
        ``{metric: {model_name: {k: value}}}``: one figure per metric,
        ``figures/<metric>_vs_k.png``, a line per model (e.g. every generator
        and the reranker scored on the same users).
    feature_importance : mapping of str to float, optional
        Drawn as ``figures/feature_importance.png`` and logged as
        ``feature_importance.json``.
    tags : mapping of str to str, optional
        Extra run tags.
    pip_requirements : sequence of str, optional
        Requirements of the logged model; default :func:`default_pip_requirements`
        (explicit, so MLflow does not infer them in a slow subprocess).

    Returns
    -------
    LoggedRecommender
        Run id, registered name, new version number and its ``models:/`` URI.

    Raises
    ------
    TailorError
        If the fluent tracking URI differs from the client's (call :func:`configure`).
    InputError
        If two param or metric names collide once made MLflow-safe.
    """
    if mlflow.get_tracking_uri() != client.tracking_uri:
        raise TailorError(
            f"MLflow's tracking URI is {mlflow.get_tracking_uri()!r} but the client's is "
            f"{client.tracking_uri!r}; build the client with training.tracking.configure()"
        )
    if not isinstance(model, RecommenderPipeline) and not hasattr(model, "n_items_"):
        raise InputError("model", type(model).__name__, "is not fitted")
    all_metrics = dict(metrics or {})
    all_metrics.update(curve_metrics(curves or {}))
    params = {"model.class": model.name, **flatten(model.get_params(), "model.")}
    params.update(flatten(config or {}, "config."))
    window = flatten(data_window or {}, "data.")
    params.update(window)
    run_tags = {f"{TAG_PREFIX}model_class": model.name}
    run_tags.update({key: _param_value(value) for key, value in window.items()})
    run_tags.update(tags or {})
    safe_params = _safe_names(params, "param")
    safe_metrics = _safe_names(all_metrics, "metric")
    requirements = (
        list(pip_requirements) if pip_requirements is not None else default_pip_requirements()
    )

    now_ms = int(time.time() * 1000)
    with _run(client, experiment, run_name) as run_id:
        client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), now_ms, 0) for key, value in safe_metrics.items()],
            params=[Param(key, _param_value(value)) for key, value in safe_params.items()],
            tags=[RunTag(key, str(value)[:MAX_TAG_VAL_LENGTH]) for key, value in run_tags.items()],
        )
        if config is not None:
            client.log_dict(
                run_id, json.loads(json.dumps(config, default=_json_default)), "config.json"
            )
        _log_figures(client, run_id, curves, comparison, feature_importance)
        with tempfile.TemporaryDirectory() as tmp:
            # The pyfunc stores each artifact under its folder's basename.
            saved = model.save(Path(tmp) / ARTIFACT_KEY)
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(PYFUNC_CODE),
                artifacts={ARTIFACT_KEY: str(saved)},
                pip_requirements=requirements,
                signature=_signature(),
                # With the signature, no warning and a serving example in the model.
                input_example=pd.DataFrame({"user": [0], "n": [3]}),
                registered_model_name=registered_name,
            )
    if info.registered_model_version is None:
        raise TailorError(f"MLflow did not register {registered_name!r} (run {run_id})")
    version = int(info.registered_model_version)
    client.set_model_version_tag(
        registered_name, str(version), f"{TAG_PREFIX}model_class", model.name
    )
    logger.info("logged %s as %s version %d (run %s)", model.name, registered_name, version, run_id)
    return LoggedRecommender(
        run_id=run_id,
        name=registered_name,
        version=version,
        model_uri=f"models:/{registered_name}/{version}",
    )


_PARENT_RUN: ContextVar[str | None] = ContextVar("tailor_parent_run", default=None)


@contextmanager
def child_runs_of(run_id: str) -> Iterator[None]:
    """Within the block, every training run is tagged as a child of ``run_id`` (the
    parent run of ``tailor retrain``)."""
    token = _PARENT_RUN.set(run_id)
    try:
        yield
    finally:
        _PARENT_RUN.reset(token)


def parent_tags() -> dict[str, str]:
    """The tags that make a new run a child of the parent set by :func:`child_runs_of`."""
    parent = _PARENT_RUN.get()
    return {} if parent is None else {"mlflow.parentRunId": parent}


@contextmanager
def _run(client: MlflowClient, experiment: str, run_name: str | None) -> Iterator[str]:
    """Yield the active run's id, or start (and end) a run of ``experiment``."""
    active = mlflow.active_run()
    if active is not None:
        yield active.info.run_id
        return
    experiment_id = ensure_experiment(client, experiment)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, tags=parent_tags()
    ) as run:
        yield run.info.run_id


def _log_figures(
    client: MlflowClient,
    run_id: str,
    curves: Mapping[str, Mapping[int, float]] | None,
    comparison: Mapping[str, Mapping[str, Mapping[int, float]]] | None,
    feature_importance: Mapping[str, float] | None,
) -> None:
    if curves:
        client.log_figure(run_id, plot_run_curves(curves), "figures/curves.png")
    for metric, by_model in (comparison or {}).items():
        figure = plot_metric_curves(by_model, metric)
        client.log_figure(run_id, figure, f"figures/{mlflow_metric_name(metric)}_vs_k.png")
    if feature_importance:
        figure = plot_feature_importance(feature_importance)
        client.log_figure(run_id, figure, "figures/feature_importance.png")
        importance = {name: float(value) for name, value in feature_importance.items()}
        client.log_dict(run_id, importance, "feature_importance.json")


__all__ = [
    "CHAMPION",
    "champion_version",
    "configure",
    "ensure_experiment",
    "load_champion",
    "load_version",
    "log_recommender_run",
    "tracking_uri",
]
