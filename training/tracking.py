"""MLflow tracking, registry and the promotion gate for recommenders.

The embedded default is a SQLite backend with a local artifact folder, both under
``TAILOR_HOME/mlflow`` (MLflow refuses the plain file store since 3.13). Every
experiment is created with an ``artifact_location`` beside the database, so
artifacts never land in the working directory (the ``Default`` experiment of a
SQLite store points at ``./mlruns``: it is never used here).

A training job calls :func:`log_recommender_run` once: params, data window,
metrics, figures, the full config as JSON, and the model as a "models from code"
pyfunc (``training/recommender_pyfunc.py``) whose artifact is the recommender's own
``model.npz`` + ``manifest.json`` (no pickle), registered under a name. The gate,
:func:`promote`, moves the ``champion`` alias only when the candidate beats the
current champion and passes a floor; serving loads the raw recommender back with
:func:`load_champion`.

MLflow metric names may not contain ``@``: a metric ``ndcg@10`` is stored as
``ndcg_at_10`` (:func:`mlflow_metric_name`); :func:`promote` applies the same mapping,
so callers keep using ``ndcg@10``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

from features.errors import InputError, NotFoundError, TailorError
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


# ---------------------------------------------------------------------- figures
def plot_metric_curves(curves: Mapping[str, Mapping[int, float]], metric: str) -> Figure:
    """One line per model: ``metric`` against the cut-off k.

    Parameters
    ----------
    curves : mapping of str to mapping of int to float
        ``{model_name: {k: value}}``.
    metric : str
        Axis label and title (e.g. ``"ndcg"``).

    Returns
    -------
    matplotlib.figure.Figure
        Built without pyplot (no global figure state, no GUI backend).
    """
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    for model_name, by_k in curves.items():
        ks = sorted(by_k)
        axes.plot(ks, [by_k[k] for k in ks], marker="o", label=model_name)
    axes.set_xlabel("k")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} vs k")
    axes.grid(True, alpha=0.3)
    if curves:
        axes.legend()
    return figure


def plot_feature_importance(importance: Mapping[str, float], *, top: int = 30) -> Figure:
    """Horizontal bar chart of the ``top`` most important features (largest on top)."""
    ranked = sorted(importance.items(), key=lambda item: item[1], reverse=True)[:top]
    figure = Figure(figsize=(6, 0.3 * len(ranked) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    names = [name for name, _ in reversed(ranked)]
    axes.barh(names, [value for _, value in reversed(ranked)])
    axes.set_xlabel("importance")
    axes.set_title("feature importance")
    return figure


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


@contextmanager
def _run(client: MlflowClient, experiment: str, run_name: str | None) -> Iterator[str]:
    """Yield the active run's id, or start (and end) a run of ``experiment``."""
    active = mlflow.active_run()
    if active is not None:
        yield active.info.run_id
        return
    experiment_id = ensure_experiment(client, experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        yield run.info.run_id


def _log_figures(
    client: MlflowClient,
    run_id: str,
    curves: Mapping[str, Mapping[int, float]] | None,
    comparison: Mapping[str, Mapping[str, Mapping[int, float]]] | None,
    feature_importance: Mapping[str, float] | None,
) -> None:
    if curves:
        client.log_figure(run_id, _curves_figure(curves), "figures/curves.png")
    for metric, by_model in (comparison or {}).items():
        figure = plot_metric_curves(by_model, metric)
        client.log_figure(run_id, figure, f"figures/{mlflow_metric_name(metric)}_vs_k.png")
    if feature_importance:
        figure = plot_feature_importance(feature_importance)
        client.log_figure(run_id, figure, "figures/feature_importance.png")
        importance = {name: float(value) for name, value in feature_importance.items()}
        client.log_dict(run_id, importance, "feature_importance.json")


def _curves_figure(curves: Mapping[str, Mapping[int, float]]) -> Figure:
    """This run's per-k curves, one line per metric."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    for metric, by_k in curves.items():
        ks = sorted(by_k)
        axes.plot(ks, [by_k[k] for k in ks], marker="o", label=metric)
    axes.set_xlabel("k")
    axes.set_ylabel("value")
    axes.set_title("metrics vs k")
    axes.grid(True, alpha=0.3)
    axes.legend()
    return figure


# ---------------------------------------------------------------------- loading
# ---------------------------------------------------------------------- promotion
@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of :func:`promote`."""

    promoted: bool
    reason: str
    candidate_value: float
    champion_value: float | None
    """The champion's value before the decision (``None``: no champion or no value)."""
    champion_version: int | None
    """The champion before the decision (``None``: there was none)."""
    metric: str
    candidate_version: int


def _run_metric(client: MlflowClient, run_id: str | None, metric: str) -> float | None:
    if not run_id:
        return None
    value = client.get_run(run_id).data.metrics.get(mlflow_metric_name(metric))
    return None if value is None else float(value)


def promote(
    client: MlflowClient,
    name: str,
    version: int | str,
    *,
    metric: str,
    floor: float,
    higher_is_better: bool = True,
    min_relative_gain: float = 0.0,
    candidate_metric: str | None = None,
    champion_value: float | None = None,
    champion_basis: str = "as logged by its own run",
    floor_basis: str | None = None,
) -> PromotionDecision:
    """Move the ``champion`` alias to ``version`` only if it is better.

    The candidate is promoted when it passes ``floor`` and beats the current
    champion on ``metric`` by at least ``min_relative_gain`` (relative to the
    champion's value); with no champion yet, the floor alone decides. A champion
    whose run lacks ``metric`` cannot be compared, so the floor decides then too
    (the reason says so). Either way the version is tagged with the decision
    (``tailor.promotion``, ``tailor.promotion_reason``).

    Parameters
    ----------
    client : mlflow.tracking.MlflowClient
        Bound to the store.
    name : str
        Registered model name.
    version : int or str
        Candidate version.
    metric : str
        Metric compared, as logged (``ndcg@10`` or ``ndcg_at_10``).
    floor : float
        The candidate must reach it (``>=``; ``<=`` when lower is better).
    higher_is_better : bool
        Direction of ``metric``.
    min_relative_gain : float
        Required improvement over the champion, e.g. ``0.02`` for 2 %; with the
        default 0 the candidate must still be strictly better.
    candidate_metric : str, optional
        Read the candidate's value from this metric instead (e.g. a lower
        confidence bound of ``metric``), compared with the champion's ``metric``.
    champion_value : float, optional
        The champion's value measured on the candidate's own evaluation data (see
        :func:`training.recommend_job.score_on_holdout`); without it, the value its
        own run logged, on whatever data that run had.
    champion_basis : str
        How ``champion_value`` was obtained, for the reason.
    floor_basis : str, optional
        Where the floor comes from (e.g. "popularity on the same split"), for the reason.

    Returns
    -------
    PromotionDecision

    Raises
    ------
    InputError
        When the candidate's run has no such metric, or ``min_relative_gain < 0``.
    NotFoundError
        When the version does not exist.
    """
    if min_relative_gain < 0 or math.isnan(min_relative_gain):
        raise InputError("min_relative_gain", min_relative_gain, "must be >= 0")
    try:
        candidate = client.get_model_version(name, str(version))
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise NotFoundError(f"registered model {name!r} has no version {version}") from error
    candidate_version = int(candidate.version)
    read_as = candidate_metric or metric
    candidate_value = _run_metric(client, candidate.run_id, read_as)
    if candidate_value is None:
        logged = sorted(client.get_run(candidate.run_id).data.metrics) if candidate.run_id else []
        raise InputError(
            "metric",
            read_as,
            f"not logged on the run of {name} version {candidate_version} "
            f"(as {mlflow_metric_name(read_as)!r}; logged: {logged})",
        )

    better = (lambda a, b: a > b) if higher_is_better else (lambda a, b: a < b)
    reach = (lambda a, b: a >= b) if higher_is_better else (lambda a, b: a <= b)
    direction = ">=" if higher_is_better else "<="
    champion = champion_version(client, name)
    champion_number = int(champion.version) if champion is not None else None
    if champion is None:
        champion_value = None
    elif champion_value is None:
        champion_value = _run_metric(client, champion.run_id, metric)
    shown = f"{read_as}={candidate_value:.6g}"
    floor_text = f"{direction} {floor:.6g}" + (f", {floor_basis}" if floor_basis else "")

    if champion_number == candidate_version:
        promoted, reason = False, f"version {candidate_version} is already the champion ({shown})"
    elif math.isnan(candidate_value) or not reach(candidate_value, floor):
        promoted = False
        reason = f"{shown} fails the floor ({floor_text})"
        if champion_value is not None:
            reason += f"; champion version {champion_number} has {metric}={champion_value:.6g}"
    elif champion is None:
        promoted, reason = (
            True,
            f"no champion yet; {shown} passes the floor ({floor_text})",
        )
    elif champion_value is None or math.isnan(champion_value):
        promoted = True
        reason = (
            f"champion version {champion_number} has no {metric} to compare; "
            f"{shown} passes the floor ({floor_text})"
        )
    else:
        gain = _relative_gain(candidate_value, champion_value, higher_is_better)
        beats = better(candidate_value, champion_value) and gain >= min_relative_gain
        promoted = beats
        verdict = "beats" if beats else "does not beat"
        reason = (
            f"{shown} {verdict} champion version {champion_number} with "
            f"{metric}={champion_value:.6g} {champion_basis} (relative gain {gain:+.2%}, "
            f"required {min_relative_gain:.2%}); floor {floor_text} passed"
        )

    if promoted:
        client.set_registered_model_alias(name, CHAMPION, str(candidate_version))
    client.set_model_version_tag(
        name,
        str(candidate_version),
        f"{TAG_PREFIX}promotion",
        "promoted" if promoted else "rejected",
    )
    client.set_model_version_tag(
        name, str(candidate_version), f"{TAG_PREFIX}promotion_reason", reason[:MAX_TAG_VAL_LENGTH]
    )
    logger.info("%s version %d: %s", name, candidate_version, reason)
    return PromotionDecision(
        promoted=promoted,
        reason=reason,
        candidate_value=candidate_value,
        champion_value=champion_value,
        champion_version=champion_number,
        metric=metric,
        candidate_version=candidate_version,
    )


def _relative_gain(candidate: float, champion: float, higher_is_better: bool) -> float:
    """Improvement of ``candidate`` over ``champion`` as a share of ``|champion|``."""
    delta = candidate - champion if higher_is_better else champion - candidate
    if champion == 0:
        return math.inf if delta > 0 else (0.0 if delta == 0 else -math.inf)
    return delta / abs(champion)


__all__ = [
    "CHAMPION",
    "champion_version",
    "configure",
    "ensure_experiment",
    "load_champion",
    "load_version",
    "log_recommender_run",
    "promote",
    "tracking_uri",
]
