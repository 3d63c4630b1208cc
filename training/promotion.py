"""The promotion gate: whether a registered candidate becomes the ``champion``.

:func:`promote` compares a candidate version with the current champion on one metric
and moves the ``champion`` alias only when the candidate passes a floor and beats the
champion; every decision is tagged on the version. Metric names go through the same
MLflow-safe mapping as logging (:func:`training.tracking.mlflow_metric_name`), so
callers keep using ``ndcg@10``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from features.errors import InputError, NotFoundError
from models.registry import CHAMPION, champion_version
from training.tracking import TAG_PREFIX, mlflow_metric_name

logger = logging.getLogger(__name__)


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
