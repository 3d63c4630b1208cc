"""The promotion gate: whether a registered candidate becomes the ``champion``.

:func:`promote` compares a candidate version with the current champion on one metric
and moves the ``champion`` alias only when the candidate passes a floor and beats the
champion; every decision is tagged on the version. Metric names go through the same
MLflow-safe mapping as logging (:func:`training.tracking.mlflow_metric_name`), so
callers keep using ``ndcg@10``.

Every move of the alias goes through :func:`set_champion`, which keeps the versions
that held it before (a tag of the registered model), so :func:`rollback` puts the
previous champion back in one step; a running service picks it up at its next poll
of the registry.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from features.errors import InputError, NotFoundError
from models.registry import CHALLENGER, CHAMPION, alias_version, champion_version
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
    candidate = _model_version(client, name, version)
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
        set_champion(client, name, candidate_version)
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


HISTORY_TAG = f"{TAG_PREFIX}champion_history"
"""Tag of a registered model: the versions that held ``champion`` before the current
one, oldest first, comma-separated (the last ``HISTORY_KEPT``)."""
HISTORY_KEPT = 50


@dataclass(frozen=True)
class Rollback:
    """Outcome of :func:`rollback`: the champion before and after."""

    name: str
    from_version: int
    to_version: int


def set_champion(client: MlflowClient, name: str, version: int | str) -> None:
    """Give ``version`` the ``champion`` alias, remembering the version it replaces."""
    current = champion_version(client, name)
    if current is not None and int(current.version) != int(version):
        history = _history(client, name) + [int(current.version)]
        client.set_registered_model_tag(
            name, HISTORY_TAG, ",".join(str(v) for v in history[-HISTORY_KEPT:])
        )
    client.set_registered_model_alias(name, CHAMPION, str(version))


def rollback(client: MlflowClient, name: str) -> Rollback:
    """Put the previous champion of ``name`` back (and forget the current one's turn).

    Raises
    ------
    NotFoundError
        When ``name`` has no champion, or no earlier champion to go back to.
    """
    current = champion_version(client, name)
    if current is None:
        raise NotFoundError(f"registered model {name!r} has no champion to roll back")
    history = _history(client, name)
    if not history:
        raise NotFoundError(
            f"{name} version {current.version} is the first champion: there is no earlier "
            "one to roll back to"
        )
    previous = history.pop()
    client.set_registered_model_alias(name, CHAMPION, str(previous))
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(str(v) for v in history))
    client.set_model_version_tag(
        name, str(current.version), f"{TAG_PREFIX}promotion", f"rolled back to {previous}"
    )
    logger.info("%s: champion rolled back from version %s to %s", name, current.version, previous)
    return Rollback(name=name, from_version=int(current.version), to_version=previous)


def _history(client: MlflowClient, name: str) -> list[int]:
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(f"no registered model {name!r}") from error
        raise
    text = tags.get(HISTORY_TAG, "")
    return [int(v) for v in text.split(",") if v.strip()]


def set_challenger(client: MlflowClient, name: str, version: int | str) -> None:
    """Give ``version`` the ``challenger`` alias: the service serves it to
    ``serving.challenger_share`` of the customers beside the champion (a canary; its
    decisions log its version, for ``tailor ab-report --by version``)."""
    found = _model_version(client, name, version)
    champion = champion_version(client, name)
    if champion is not None and champion.version == found.version:
        raise InputError("version", version, f"is the champion of {name}: a challenger differs")
    client.set_registered_model_alias(name, CHALLENGER, str(found.version))


def clear_challenger(client: MlflowClient, name: str) -> int | None:
    """Remove the ``challenger`` alias of ``name``; the version it named (None: none)."""
    current = alias_version(client, name, CHALLENGER)
    if current is None:
        return None
    client.delete_registered_model_alias(name, CHALLENGER)
    return int(current.version)


def _model_version(client: MlflowClient, name: str, version: int | str) -> ModelVersion:
    """Version ``version`` of ``name``; :class:`NotFoundError` when there is none."""
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise NotFoundError(f"registered model {name!r} has no version {version}") from error
