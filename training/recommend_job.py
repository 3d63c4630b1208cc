"""Two-stage recommender training and one evaluation protocol for every model.

1. An outer temporal split (per user, or a global cut-off) holds out the test set.
2. Inside the training part, the same split again gives a *fit* period and a
   *label* period: candidate generators (ALS, item-kNN, popular in the user's top
   category, and in "all" mode the user's own history) are fitted on the fit period,
   their candidates get behavioural features from the fit period only, labels are
   the label period's items, and a LightGBM LambdaRank reranker learns on that.
   ALS hyper-parameters are tuned on the same inner split (a seeded random search).
3. Generators are refitted on the whole training part; test users' candidates are
   featured from it and reranked; every single model is scored on the same users
   with the same metrics, so the numbers compare.

The run's configuration is :mod:`training.recommend_config`; the models it fits (the
generators, the baselines, ALS's tuning, the reranker) are built by
:mod:`training.recommend_models`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.errors import InputError, JobFailed
from features.progress import Progress
from models.candidates import (
    Index,
    interaction_matrix,
    item_categories,
    item_prices,
    labels_for,
    own_history_candidates,
    pair_features,
    ranked_lists,
    recent_history,
)
from models.pipeline import RecommenderPipeline
from models.recommender import Recommender
from models.reranker import LambdaRankReranker
from training.metrics import RankingReport, ranking_metrics
from training.recommend_config import RecommenderJobConfig, resolve_label_events
from training.recommend_models import (
    _baselines,
    _candidates,
    _fit_reranker,
    _generators,
    _tune_als,
)
from training.splits import global_split, per_user_split

logger = logging.getLogger(__name__)


@dataclass
class Holdout:
    """The outer split the run was judged on, kept so another model (the current
    champion) can be scored on exactly the same users, history and relevant items."""

    train_log: pd.DataFrame
    as_of: pd.Timestamp
    test_users: np.ndarray
    """Rows of the run's index with at least one relevant held-out item."""
    relevant: sp.csr_matrix
    """Users × items of the run's index: relevant held-out items."""
    train: sp.csr_matrix
    """The run's training matrix (novelty and the 'new' mode's exclusions)."""


@dataclass
class JobResult:
    """Metrics of every model on the same test users, and the fitted pipeline."""

    reports: dict[str, dict[int, RankingReport]]
    als_params: dict[str, Any]
    tuning: list[dict[str, Any]]
    generators: dict[str, Recommender]
    reranker: LambdaRankReranker | None
    index: Index
    categories: np.ndarray
    prices: np.ndarray | None
    config: RecommenderJobConfig
    feature_importance: dict[str, float] = field(default_factory=dict)
    slices: dict[str, dict[str, RankingReport]] = field(default_factory=dict)
    test_users: int = 0
    seconds: float = 0.0
    holdout: Holdout | None = None

    def pipeline(self) -> RecommenderPipeline:
        """The fitted two-stage model as one artifact."""
        return RecommenderPipeline(
            generators=dict(self.generators),
            reranker=self.reranker,
            index=self.index,
            categories=self.categories,
            prices=self.prices,
            settings={
                "mode": self.config.mode,
                "candidates_per_generator": self.config.candidates_per_generator,
                "half_life_days": self.config.half_life_days,
                "decay": self.config.decay,
                "als": self.als_params,
            },
        )

    def table(self, k: int) -> pd.DataFrame:
        """One row per model at cut-off ``k``."""
        rows = {name: vars(r[k]) for name, r in self.reports.items() if k in r}
        return pd.DataFrame.from_dict(rows, orient="index").drop(columns=["k"])

    def slice_table(self) -> pd.DataFrame:
        """NDCG at the first k per user slice (rows) and model (columns), with user counts."""
        rows = {
            name: {"users": next(iter(models.values())).users}
            | {model: report.ndcg for model, report in models.items()}
            for name, models in self.slices.items()
        }
        return pd.DataFrame.from_dict(rows, orient="index")


def run_recommender_job(
    log: pd.DataFrame,
    items: pd.DataFrame | None,
    config: RecommenderJobConfig,
    *,
    progress: Progress | None = None,
) -> JobResult:
    """Split, tune, train the two stages and evaluate every model (see module doc).

    Parameters
    ----------
    log : pandas.DataFrame
        ``user_id, item_id, ts`` (UTC), ``event_type``.
    items : pandas.DataFrame, optional
        ``item_id, category, price`` where known.
    config : RecommenderJobConfig
        The run's configuration.
    progress : callable, optional
        Called with a message at each stage.
    """
    started = time.perf_counter()

    def step(message: str) -> None:
        logger.debug(message)
        if progress is not None:
            progress(f"{message} ({time.perf_counter() - started:.1f} s)")

    for column in ("user_id", "item_id", "ts", "event_type"):
        if column not in log.columns:
            raise InputError("log", list(log.columns), f"missing column {column!r}")
    label_types = resolve_label_events(log, config.label_events)
    config = config.model_copy(update={"label_events": label_types})
    step(f"labels: {', '.join(label_types) if label_types else 'every event'}")
    index = Index.build(log, items)
    categories = item_categories(items, index)
    prices = item_prices(items, index)

    train_log, test_log = _split(log, config, outer=True)
    fit_log, label_log = _split(train_log, config, outer=False)
    step(
        f"split: {len(train_log):,} training and {len(test_log):,} test interactions; "
        f"inner {len(fit_log):,} / {len(label_log):,}"
    )

    # ---- inner stage: tune ALS, fit the reranker on the label period
    fit_as_of = _as_of(fit_log)
    fit_matrix = interaction_matrix(
        fit_log, index, as_of=fit_as_of, half_life_days=config.half_life_days, decay=config.decay
    )
    label_relevant = _relevant(label_log, fit_matrix, index, config)
    label_users = np.flatnonzero(np.diff(label_relevant.indptr) > 0)
    als_params, tuning = _tune_als(fit_matrix, label_relevant, label_users, config)
    step(f"ALS tuned on the inner split: {als_params}")

    inner = _generators(als_params, config).copy()
    for model in inner.values():
        model.fit(fit_matrix)
    fit_recent = recent_history(fit_log, index, as_of=fit_as_of)
    inner_candidates = _candidates(inner, label_users, fit_matrix, fit_recent, categories, config)
    inner_features = pair_features(
        inner_candidates,
        fit_log,
        index,
        categories,
        as_of=fit_as_of,
        prices=prices,
        half_life_days=config.half_life_days,
        decay=config.decay,
    )
    if len(label_users) == 0:
        raise JobFailed(
            f"no user has a relevant interaction ({_labels_text(config)}) in the reranker's "
            f"label period ({len(label_log):,} interactions): nothing to learn the ranking "
            "from. Set the label events to what the log holds (--label-events or "
            "recommender.label_events), or train on a longer log."
        )
    labels = labels_for(inner_features, label_relevant)
    reranker = _fit_reranker(inner_features, labels, config)
    if reranker is None:
        raise JobFailed(
            f"none of the {len(label_users):,} label-period users' relevant items is among "
            f"their candidates ({len(inner_features):,} pairs): no reranker can be trained. "
            "Raise candidates_per_generator, or check the label events."
        )
    step(
        f"reranker trained on {len(inner_features):,} candidates of {len(label_users):,} users "
        f"({labels.mean():.2%} relevant)"
    )

    # ---- outer stage: refit on all training data, evaluate on the test users
    train_as_of = _as_of(train_log)
    train_matrix = interaction_matrix(
        train_log,
        index,
        as_of=train_as_of,
        half_life_days=config.half_life_days,
        decay=config.decay,
    )
    relevant = _relevant(test_log, train_matrix, index, config)
    test_users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    if len(test_users) == 0:
        raise JobFailed(
            f"0 test users: no held-out interaction ({_labels_text(config)}) is relevant "
            f"under mode {config.mode!r} ({len(test_log):,} held-out interactions). Set the "
            "label events to what the log holds (--label-events), use --mode all when "
            "customers mostly return to items they know, or train on a longer log."
        )
    generators = _generators(als_params, config)
    for model in generators.values():
        model.fit(train_matrix, user_ids=index.user_ids, item_ids=index.item_ids)
    exclude = train_matrix if config.mode == "new" else None
    max_k = max(config.ks)
    reports: dict[str, dict[int, RankingReport]] = {}
    lists: dict[str, np.ndarray] = {}
    for name, model in _baselines(config, index, generators).items():
        if model is not generators.get(name):
            try:
                model.fit(train_matrix)
            except InputError as exc:  # e.g. EASE on a catalogue too large for it
                logger.warning("%s skipped: %s", name, exc)
                continue
        ids, _ = model.recommend(
            test_users,
            train_matrix[test_users],
            n=max_k,
            exclude=exclude[test_users] if exclude is not None else None,
        )
        reports[name] = _report(ids, relevant[test_users], config, train_matrix)
        lists[name] = ids
    if config.mode == "all":
        own = own_history_candidates(test_users, train_matrix, k=max_k)
        ids = ranked_lists(own, own["own_score"].to_numpy(), test_users, max_k)
        reports["own_history"] = _report(ids, relevant[test_users], config, train_matrix)
        lists["own_history"] = ids
    step(f"single models evaluated on {len(test_users):,} test users")

    train_recent = recent_history(train_log, index, as_of=train_as_of)
    candidates = _candidates(generators, test_users, train_matrix, train_recent, categories, config)
    featured = pair_features(
        candidates,
        train_log,
        index,
        categories,
        as_of=train_as_of,
        prices=prices,
        half_life_days=config.half_life_days,
        decay=config.decay,
    )
    scores = reranker.predict(featured)
    ids = ranked_lists(featured, scores, test_users, max_k)
    reports["reranker"] = _report(ids, relevant[test_users], config, train_matrix)
    lists["reranker"] = ids
    step("reranker evaluated")
    _check_finite(reports)
    slices = _slices(lists, test_users, relevant, train_matrix, config)
    return JobResult(
        reports=reports,
        als_params=als_params,
        tuning=tuning,
        generators=generators,
        reranker=reranker,
        index=index,
        categories=categories,
        prices=prices,
        config=config,
        feature_importance=reranker.feature_importance() if reranker is not None else {},
        slices=slices,
        test_users=len(test_users),
        seconds=time.perf_counter() - started,
        holdout=Holdout(train_log, train_as_of, test_users, relevant, train_matrix),
    )


def score_on_holdout(
    result: JobResult, model: RecommenderPipeline | Recommender
) -> dict[int, RankingReport]:
    """Metrics of another fitted model (e.g. the current champion) on this run's split.

    The model ranks this run's test users from this run's training history alone:
    every user is scored as one unseen at its fit time (factor models solve the
    user's factors from the history), so a model fitted on a later or larger window
    cannot recall held-out items from its own user factors. Items the model does not
    know cannot be recommended by it; the relevant items are this run's.
    """
    holdout = result.holdout
    if holdout is None:
        raise InputError("result", "holdout", "the run kept no holdout to score on")
    config = result.config
    max_k = max(config.ks)
    user_ids = result.index.user_ids[holdout.test_users]
    if isinstance(model, RecommenderPipeline):
        item_ids = model.index.item_ids.astype(str)
        # Every training user stays in the index: the item features of the pair
        # features count everyone's events, as when the model was fitted. (Test
        # users of a global cut-off may have no training rows: they are cold.)
        users = np.union1d(holdout.train_log["user_id"].astype(str), user_ids.astype(str))
        index = Index(users, item_ids)
        rows = np.searchsorted(index.user_ids, user_ids.astype(str))
        history = interaction_matrix(
            holdout.train_log,
            index,
            as_of=holdout.as_of,
            half_life_days=float(model.settings.get("half_life_days", config.half_life_days)),
            decay=model.decay,
        )
        recent = recent_history(holdout.train_log, index, as_of=holdout.as_of)
        evaluated = replace(model, index=index)
        ids, _ = evaluated.rank(
            rows,
            history,
            recent,
            holdout.train_log,
            as_of=holdout.as_of,
            n=max_k,
            model_users=np.full(len(rows), -1),
        )
    else:
        if model.item_ids_ is None:
            raise InputError("model", type(model).__name__, "has no item ids to map")
        item_ids = np.asarray(model.item_ids_).astype(str)
        index = Index(result.index.user_ids, item_ids)
        history = interaction_matrix(
            holdout.train_log,
            index,
            as_of=holdout.as_of,
            half_life_days=config.half_life_days,
            decay=config.decay,
        )[holdout.test_users]
        exclude = history if config.mode == "new" else None
        ids, _ = model.recommend(np.full(len(user_ids), -1), history, n=max_k, exclude=exclude)
    # The model's item columns → this run's columns (an item this run lacks is a miss).
    columns = np.searchsorted(result.index.item_ids, item_ids)
    columns = np.minimum(columns, len(result.index.item_ids) - 1)
    known = result.index.item_ids[columns] == item_ids
    mapped = np.where(known, columns, -1)
    ids = np.where(ids >= 0, mapped[np.maximum(ids, 0)], -1)
    return _report(ids, holdout.relevant[holdout.test_users], config, holdout.train)


# ----------------------------------------------------------------------------- pieces
def _labels_text(config: RecommenderJobConfig) -> str:
    labels = config.label_events
    return "label events " + (", ".join(labels) if isinstance(labels, tuple) else "all")


def _check_finite(reports: dict[str, dict[int, RankingReport]]) -> None:
    """A NaN metric means nothing was measured: fail, naming the model and metric."""
    for model, by_k in reports.items():
        for report in by_k.values():
            for name, value in report.as_dict().items():
                if not np.isfinite(value):
                    raise JobFailed(
                        f"{model} {name} is {value}: the evaluation measured nothing; check "
                        "the test users and label events of the split"
                    )


def _split(
    log: pd.DataFrame, config: RecommenderJobConfig, *, outer: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if config.protocol == "per_user":
        return per_user_split(log, test_share=config.test_share)
    cutoff = config.cutoff if outer else config.inner_cutoff
    if cutoff is None:
        # Default: the same share of time at the end of the window.
        start, end = log["ts"].min(), log["ts"].max()
        cutoff = (start + (end - start) * (1 - config.test_share)).to_pydatetime()
    return global_split(log, cutoff=cutoff)


def _as_of(log: pd.DataFrame) -> pd.Timestamp:
    return pd.Timestamp(log["ts"].max()) + pd.Timedelta(microseconds=1)


def _relevant(
    test_log: pd.DataFrame, seen: sp.csr_matrix, index: Index, config: RecommenderJobConfig
) -> sp.csr_matrix:
    if config.label_events is not None:
        test_log = test_log[test_log["event_type"].isin(config.label_events)]
    coded = index.encode(test_log)
    relevant = sp.csr_matrix(
        (np.ones(len(coded), np.float32), (coded["u"].to_numpy(), coded["i"].to_numpy())),
        shape=seen.shape,
    )
    relevant.sum_duplicates()
    relevant.data[:] = 1.0
    if config.mode == "new":
        relevant = (relevant - relevant.multiply(seen > 0)).tocsr()
        relevant.eliminate_zeros()
    return relevant


# Users by how much history they had at training time.
SLICES: dict[str, tuple[int, float]] = {
    "cold": (0, 0),
    "new": (1, 4),
    "returning": (5, float("inf")),
}


def _slices(
    lists: dict[str, np.ndarray],
    users: np.ndarray,
    relevant: sp.csr_matrix,
    train: sp.csr_matrix,
    config: RecommenderJobConfig,
) -> dict[str, dict[str, RankingReport]]:
    """Metrics at the first k for cold (no history), new (1–4 items) and returning users."""
    k = config.ks[0]
    history = np.diff(train.indptr)[users]
    out: dict[str, dict[str, RankingReport]] = {}
    for name, (low, high) in SLICES.items():
        rows = np.flatnonzero((history >= low) & (history <= high))
        if len(rows) == 0:
            continue
        out[name] = {
            model: ranking_metrics(ids[rows], relevant[users[rows]], k, train=train)
            for model, ids in lists.items()
        }
    return out


def _report(
    ids: np.ndarray, relevant: sp.csr_matrix, config: RecommenderJobConfig, train: sp.csr_matrix
) -> dict[int, RankingReport]:
    return {k: ranking_metrics(ids, relevant, k, train=train) for k in config.ks}
