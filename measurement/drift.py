"""Drift between two snapshots: has the population the models learned from moved?

Per numeric feature, the population stability index (PSI) of the newer distribution
against the older one's deciles, and the two-sample Kolmogorov–Smirnov test
(``scipy.stats.ks_2samp``). A PSI above the threshold (0.2 by default: the usual
"significant shift"; 0.1–0.2 is "some shift") flags the feature. With samples of
hundreds of thousands of customers the KS test finds every shift "significant", so
the flag follows the PSI, an effect size; the KS statistic is shown beside it.

The same applies to scores: the scores the service gave under one snapshot against
those under the next (:func:`drift_table` on any two frames of numeric columns).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from features.errors import InputError

PSI_THRESHOLD = 0.2
BINS = 10
# An empty bin would make the index infinite: each share is at least this.
_FLOOR = 1e-4


def population_stability(reference: np.ndarray, current: np.ndarray, bins: int = BINS) -> float:
    """PSI of ``current`` against ``reference``, over ``reference``'s quantile bins.

    ``Σ (c − r) · ln(c / r)`` over the bins' shares ``r`` (reference) and ``c``
    (current); missing values are left out. 0: the same distribution.
    """
    reference = reference[np.isfinite(reference)]
    current = current[np.isfinite(current)]
    if len(reference) == 0 or len(current) == 0:
        raise InputError("values", 0, "a distribution with no finite value has no PSI")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # one value only: two bins, that value and the rest
        edges = np.array([edges[0], np.nextafter(edges[0], np.inf)])
    inner = edges[1:-1]
    r = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(edges) - 1)
    c = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(edges) - 1)
    r_share = np.maximum(r / r.sum(), _FLOOR)
    c_share = np.maximum(c / c.sum(), _FLOOR)
    return float(np.sum((c_share - r_share) * np.log(c_share / r_share)))


def drift_table(
    reference: pd.DataFrame, current: pd.DataFrame, *, threshold: float = PSI_THRESHOLD
) -> pd.DataFrame:
    """Per numeric column both frames share: PSI, KS statistic and p-value, the means,
    and ``drifted`` (PSI above ``threshold``); the most drifted first."""
    if not threshold > 0:
        raise InputError("threshold", threshold, "must be positive")
    shared = [
        c
        for c in reference.columns
        if c in current.columns
        and pd.api.types.is_numeric_dtype(reference[c])
        and pd.api.types.is_numeric_dtype(current[c])
        and not pd.api.types.is_bool_dtype(reference[c])
    ]
    rows = []
    for column in shared:
        r = reference[column].to_numpy(float)
        c = current[column].to_numpy(float)
        r, c = r[np.isfinite(r)], c[np.isfinite(c)]
        if len(r) == 0 or len(c) == 0:
            continue
        ks = stats.ks_2samp(r, c)
        psi = population_stability(r, c)
        rows.append(
            {
                "feature": column,
                "psi": psi,
                "ks_statistic": float(ks.statistic),
                "ks_p_value": float(ks.pvalue),
                "mean_before": float(r.mean()),
                "mean_now": float(c.mean()),
                "drifted": psi > threshold,
            }
        )
    columns = ["feature", "psi", "ks_statistic", "ks_p_value", "mean_before", "mean_now"]
    table = pd.DataFrame(rows, columns=[*columns, "drifted"])
    return table.sort_values("psi", ascending=False, ignore_index=True)


def decision_scores(decisions: pd.DataFrame) -> pd.DataFrame:
    """The score behind each logged decision: ``snapshot``, ``slot``, ``score``, ``ts``.

    A recommendation's is its top item's model score; a content choice's the highest
    candidate score. Decisions without a model score (rules, fallbacks) are left out.
    """
    rows = []
    for snapshot_versions, slot, candidates, ts in zip(
        decisions["versions"],
        decisions["slot"],
        decisions["candidates"],
        decisions["ts"],
        strict=True,
    ):
        score = _top_score(candidates)
        if score is None:
            continue
        snapshot = (
            snapshot_versions.get("snapshot") if isinstance(snapshot_versions, dict) else None
        )
        rows.append({"snapshot": snapshot, "slot": slot, "score": score, "ts": ts})
    return pd.DataFrame(rows, columns=["snapshot", "slot", "score", "ts"])


def score_drift(
    decisions: pd.DataFrame, *, threshold: float = PSI_THRESHOLD
) -> tuple[pd.DataFrame | None, str]:
    """Drift of each slot's scores between the two latest snapshots the service used,
    and a sentence saying which two (or why there is nothing to compare)."""
    scores = decision_scores(decisions).dropna(subset=["snapshot"])
    order = scores.groupby("snapshot")["ts"].min().sort_values()
    if len(order) < 2:
        return None, "Scores: the service answered from one snapshot only; no drift to show."
    before, now = order.index[-2], order.index[-1]
    table = drift_table(
        _by_slot(scores[scores["snapshot"] == before]),
        _by_slot(scores[scores["snapshot"] == now]),
        threshold=threshold,
    )
    return table, f"Scores: snapshot {before} against {now}."


def _by_slot(scores: pd.DataFrame) -> pd.DataFrame:
    """A column of scores per slot (unequal lengths padded with NaN, which is skipped)."""
    return pd.DataFrame(
        {
            f"score:{slot}": pd.Series(rows["score"].to_numpy())
            for slot, rows in scores.groupby("slot")
        }
    )


def _top_score(candidates: object) -> float | None:
    if not isinstance(candidates, list):
        return None
    scores = []
    for c in candidates:
        value = c[1] if isinstance(c, list) and len(c) == 3 else c
        if isinstance(value, int | float) and np.isfinite(value):
            scores.append(float(value))
    if not scores:
        return None
    return scores[0] if not isinstance(candidates[0], list) else max(scores)
