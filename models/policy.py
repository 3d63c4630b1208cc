"""Exploration policies: how a selector's scores become a choice, and the choice itself.

:class:`Policy` is the one definition of every policy a selector can serve (greedy,
epsilon-greedy, softmax, Thompson over a bootstrap ensemble, a constant variant): the
service draws from its probabilities and logs them as propensities, and the
off-policy estimates of the promotion gate evaluate the same probabilities.
:func:`choose` draws with a generator seeded by the decision id, so a replay gives
the same choice and the logged propensity is the exact probability of what was shown.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from features.errors import InputError

PolicyKind = Literal["greedy", "epsilon_greedy", "softmax", "thompson", "constant"]


@dataclass(frozen=True)
class Policy:
    """How scores become a choice: the one definition, used by serving and by the
    off-policy estimates of the promotion gate alike.

    Attributes
    ----------
    kind : PolicyKind
        ``greedy`` (best score; ties share), ``epsilon_greedy`` (best with 1 − ε,
        uniform with ε),
        ``softmax`` (∝ exp(score / temperature)), ``thompson`` (the best of one
        ensemble member drawn at random) or ``constant`` (``content_id`` with 1 − ε,
        uniform with ε).
    epsilon : float
        Exploration share of ``epsilon_greedy`` and ``constant``, spread uniformly
        over the eligible candidates.
    temperature : float
        For ``softmax``, in units of the score (reward probability).
    content_id : str, optional
        For ``constant``: the one variant chosen when eligible.
    """

    kind: PolicyKind = "epsilon_greedy"
    epsilon: float = 0.0
    temperature: float = 0.01
    content_id: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise InputError("epsilon", self.epsilon, "must be in [0, 1]")
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise InputError("temperature", self.temperature, "must be a finite number > 0")

    def probabilities(
        self,
        member_scores: np.ndarray,
        candidates: list[str] | None = None,
        eligible: np.ndarray | None = None,
        forced: np.ndarray | None = None,
    ) -> np.ndarray:
        """Action probabilities, shape (n_rows, n_candidates), rows summing to 1.

        Parameters
        ----------
        member_scores : numpy.ndarray, shape (ensemble, n_rows, n_candidates)
            Predicted rewards per ensemble member (ensemble 1 for a single model);
            ``-inf`` marks a candidate the row may not be shown.
        candidates : list of str, optional
            Candidate content ids (needed for ``constant``).
        eligible : numpy.ndarray of bool, shape (n_rows, n_candidates), optional
            Candidates each row may be shown: the others get probability 0, and
            exploration is uniform over the eligible ones.
        forced : numpy.ndarray of int, shape (n_rows,), optional
            A candidate index where something ahead of the model decides the row
            (no consent to personalisation: the default content; a rule), else -1:
            those rows get probability 1 on it, as serving gives them.
        """
        member_scores = np.asarray(member_scores, dtype=np.float64)
        if member_scores.ndim != 3 or member_scores.shape[2] == 0:
            raise InputError(
                "scores", member_scores.shape, "expected shape (ensemble, n_rows, n_candidates)"
            )
        if np.isnan(member_scores).any() or np.isposinf(member_scores).any():
            raise InputError("scores", "NaN or +inf", "scores must be finite or -inf (ineligible)")
        n_rows, n = member_scores.shape[1:]
        allowed = np.isfinite(member_scores).all(axis=0)
        if eligible is not None:
            allowed &= np.asarray(eligible, dtype=bool)
        fixed_rows = np.zeros(n_rows, dtype=bool) if forced is None else np.asarray(forced) >= 0
        empty = ~allowed.any(axis=1) & ~fixed_rows
        if empty.any():
            raise InputError("eligible", int(empty.sum()), "rows with no eligible candidate")
        # A forced row may have nothing eligible: its model answer is replaced below.
        allowed[~allowed.any(axis=1)] = True
        member_scores = np.where(allowed[None], member_scores, -np.inf)
        scores = member_scores.mean(axis=0)
        uniform = allowed / allowed.sum(axis=1, keepdims=True)
        if self.kind == "constant":
            if candidates is None or self.content_id not in candidates:
                out = uniform
            else:
                j = candidates.index(self.content_id)
                fixed = np.zeros((n_rows, n))
                fixed[:, j] = 1.0
                fixed = np.where(allowed[:, [j]], fixed, uniform)
                out = (1 - self.epsilon) * fixed + self.epsilon * uniform
        elif self.kind in ("greedy", "epsilon_greedy"):
            # The best score's share, split evenly among ties.
            best = allowed & (scores == scores.max(axis=1, keepdims=True))
            greedy = best / best.sum(axis=1, keepdims=True)
            eps = self.epsilon if self.kind == "epsilon_greedy" else 0.0
            out = (1 - eps) * greedy + eps * uniform
        elif self.kind == "softmax":
            z = (scores - scores.max(axis=1, keepdims=True)) / self.temperature
            weights = np.where(allowed, np.exp(np.where(allowed, z, 0.0)), 0.0)
            out = weights / weights.sum(axis=1, keepdims=True)
        elif self.kind == "thompson":
            winners = member_scores.argmax(axis=2)  # (ensemble, n_rows)
            counts = np.stack([(winners == a).sum(axis=0) for a in range(n)], axis=1)
            out = counts / member_scores.shape[0]
        else:
            raise InputError("policy", self.kind, "unknown policy kind")
        if forced is not None:
            forced = np.asarray(forced)
            if forced.shape != (n_rows,):
                raise InputError("forced", forced.shape, f"expected ({n_rows},)")
            rows = forced >= 0
            if (forced >= n).any():
                raise InputError("forced", int(forced.max()), f"a candidate index below {n}")
            out = np.where(rows[:, None], _one_hot(np.where(rows, forced, 0), n), out)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "epsilon": self.epsilon,
            "temperature": self.temperature,
            "content_id": self.content_id,
        }


def default_content(defaults: dict[str, str], slot: str, candidates: list[str]) -> str:
    """The content a slot falls back to (rules' ``defaults``), when it is a candidate;
    else the candidate id first in sort order (the same answer whatever order the
    content or a request lists them in). Serving gives it to customers without
    consent to personalisation, and the promotion gate evaluates them with it."""
    if not candidates:
        raise InputError("candidates", [], "a slot needs at least one candidate")
    default = defaults.get(slot)
    return default if default in candidates else min(candidates)


def choose(probabilities: np.ndarray, decision_ids: list[str]) -> np.ndarray:
    """Index of the chosen candidate per row, drawn with a generator seeded by the
    decision id: the same decision id always gives the same choice."""
    if len(decision_ids) != probabilities.shape[0]:
        raise InputError("decision_ids", len(decision_ids), f"expected {probabilities.shape[0]}")
    cumulative = np.cumsum(probabilities, axis=1)
    draws = np.array([_uniform(d) for d in decision_ids])
    chosen = (draws[:, None] >= cumulative).sum(axis=1)
    return np.minimum(chosen, probabilities.shape[1] - 1)


def _uniform(decision_id: str) -> float:
    digest = hashlib.sha256(decision_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _one_hot(index: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(index), n))
    out[np.arange(len(index)), index] = 1.0
    return out
