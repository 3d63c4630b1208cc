"""The ``tailor train recommender`` job: snapshot → two-stage model → MLflow → registry → gate.

I/O lives here (the store, the snapshot folder, MLflow); the modelling is
:func:`training.recommend_job.run_recommender_job`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from features.data.store import EventStore
from features.errors import JobFailed, TailorError
from features.snapshot import latest_snapshot, load_snapshot
from models.candidates import interaction_log_from_store
from models.pipeline import RecommenderPipeline
from models.recommender import Recommender
from training.metrics import RankingReport
from training.promotion import PromotionDecision, promote
from training.recommend_config import RecommenderJobConfig
from training.recommend_job import (
    JobResult,
    run_recommender_job,
    score_on_holdout,
)
from training.tracking import (
    LoggedRecommender,
    champion_version,
    configure,
    ensure_experiment,
    load_version,
    log_recommender_run,
    mlflow_metric_name,
    parent_tags,
)

logger = logging.getLogger(__name__)
REGISTERED_NAME = "tailor-recommender"
EXPERIMENT = "recommenders"


@dataclass
class TrainOutcome:
    """What one training run produced and decided."""

    result: JobResult
    logged: LoggedRecommender
    decision: PromotionDecision
    floor: float
    floor_basis: str
    champion_reports: dict[int, RankingReport] | None = None
    """The champion before this run, scored on this run's split (None: there was none)."""


def train_recommender(
    *,
    home: Path,
    store: EventStore,
    features_dir: Path,
    config: RecommenderJobConfig,
    registered_name: str = REGISTERED_NAME,
    metric: str = "ndcg@10",
    floor: float | None = None,
    min_relative_gain: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train on the latest snapshot's data, log everything, register, and run the gate.

    The gate: the candidate must reach ``floor`` (default: the popularity baseline's
    ``metric`` on the same split) and beat the current champion, which is re-scored on
    this run's split first (:func:`training.recommend_job.score_on_holdout`), so the
    two numbers come from the same users, history and held-out items.

    Raises
    ------
    JobFailed
        When the log is empty, or the job evaluates nobody or measures NaN.
    """
    say = progress or (lambda message: None)
    snapshot = load_snapshot(latest_snapshot(features_dir))
    log, items = interaction_log_from_store(store, snapshot)
    if log.empty:
        raise JobFailed(
            f"no product interactions of consenting customers before "
            f"{snapshot.as_of.isoformat()} in the snapshot {snapshot.manifest.get('path')}: "
            "ingest product events (views, carts, purchases) and customers with "
            "personalisation consent, then build the features again"
        )
    say(
        f"{len(log):,} interactions of {log['user_id'].nunique():,} consenting customers "
        f"before {snapshot.as_of.isoformat()}"
    )
    result = run_recommender_job(log, items, config, progress=progress)
    k = int(metric.split("@")[1]) if "@" in metric else result.config.ks[0]
    name_only = metric.split("@")[0]
    if floor is None:
        floor = float(getattr(result.reports["popularity"][k], name_only))
        floor_basis = "popularity on the same split"
    else:
        floor_basis = "set by --floor / recommender.floor"

    client = configure(home)
    champion_reports = _rescore_champion(client, registered_name, result, say)
    experiment_id = ensure_experiment(client, EXPERIMENT)
    reports = result.reports
    metrics = {
        f"{model}.{name}": value
        for model, by_k in reports.items()
        for report in by_k.values()
        for name, value in report.as_dict().items()
    }
    metrics.update(
        {
            f"slice.{slice_name}.{model}.{name}": value
            for slice_name, models in result.slices.items()
            for model, report in models.items()
            for name, value in report.as_dict().items()
            if name.startswith(("ndcg", "recall"))
        }
    )
    for cut in result.config.ks:  # the registered model's own
        metrics.update(reports["reranker"][cut].as_dict())
    if champion_reports is not None:
        for report in champion_reports.values():
            metrics.update({f"champion.{n}": v for n, v in report.as_dict().items()})
    comparison = {
        metric_name: {
            model: {k: getattr(report, metric_name) for k, report in by_k.items()}
            for model, by_k in reports.items()
        }
        for metric_name in ("ndcg", "recall", "precision", "map", "coverage")
    }
    with mlflow.start_run(experiment_id=experiment_id, tags=parent_tags(), run_name="recommender"):
        for i, trial in enumerate(result.tuning):
            # Nested runs go to the default experiment unless told the parent's.
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=f"als-trial-{i}", nested=True
            ):
                mlflow.log_params({k: v for k, v in trial.items() if k != "ndcg@10"})
                mlflow.log_metric(mlflow_metric_name("ndcg@10"), trial["ndcg@10"])
        logged = log_recommender_run(
            client,
            result.pipeline(),
            registered_name=registered_name,
            experiment=EXPERIMENT,
            config=result.config.model_dump(mode="json"),
            data_window={
                "as_of": snapshot.as_of.isoformat(),
                "first_event": str(log["ts"].min()),
                "interactions": len(log),
                "customers": int(log["user_id"].nunique()),
                "test_users": result.test_users,
            },
            metrics=metrics,
            comparison=comparison,
            feature_importance=result.feature_importance,
        )
    decision = promote(
        client,
        registered_name,
        logged.version,
        metric=metric,
        floor=floor,
        min_relative_gain=min_relative_gain,
        champion_value=(
            None if champion_reports is None else float(getattr(champion_reports[k], name_only))
        ),
        champion_basis="re-scored on this run's split",
        floor_basis=floor_basis,
    )
    return TrainOutcome(result, logged, decision, floor, floor_basis, champion_reports)


def _rescore_champion(
    client: MlflowClient,
    name: str,
    result: JobResult,
    say: Callable[[str], None],
) -> dict[int, RankingReport] | None:
    """The current champion's metrics on this run's split, or None without a champion.

    A champion that cannot be scored here stops the run: comparing with a number its
    own run measured on other data would not say which model is better.
    """
    current = champion_version(client, name)
    if current is None:
        return None
    try:
        loaded = load_version(client, name, current.version)
        if not isinstance(loaded, RecommenderPipeline | Recommender):
            raise TailorError(f"{type(loaded).__name__} is not a recommender")
        reports = score_on_holdout(result, loaded)
    except TailorError as error:
        raise JobFailed(
            f"the champion, {name} version {current.version}, could not be scored on this "
            f"run's split ({error}); nothing was registered. Fix or remove the champion "
            f"alias (tailor promote) and train again"
        ) from error
    first = next(iter(reports.values()))
    say(
        f"champion version {current.version} re-scored on this split: "
        f"ndcg@{first.k}={first.ndcg:.4f}"
    )
    return reports
