"""Content choice: which variant of a slot (subject line, offer …) one customer gets.

Owns ``choose``: the candidates (the slot's active content, or those asked for), then
consent and holdout, the slot's rules, the selector's policy within the deadline, and
the fallbacks (segment default, slot default with epsilon exploration); every answer
carries its propensity and is appended to the decision log. :class:`SelectorLayout`
lays a selector's design matrix out once per load, so one decision costs a few array
writes and the boosters' predict.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.data.decision_log import DecisionRecord
from features.errors import InputError
from models.policy import choose, default_content
from models.selector import Selector
from serving.deadline import DeadlineExceeded
from serving.deciding import DecisionRoom, for_person, in_holdout, new_id, rule_variables
from serving.errors import UnknownCandidates
from serving.profiles import Profile
from serving.schemas import CandidateScore, Choice, ChooseRequest
from serving.triggers import profile_triggers

if TYPE_CHECKING:  # a bundle holds the layouts below: a runtime import would cycle
    from serving.bundle_data import Bundle

# The decision core's logger, as before the core was split: one name to filter on.
logger = logging.getLogger("serving.core")


@dataclass(frozen=True)
class SelectorLayout:
    """A selector's design matrix laid out once per load, so one decision costs a few
    array writes and the boosters' predict — not a pandas frame per request.

    Builds the same columns as the selector's :class:`models.selector.CustomerDesign`
    (numbers, attribute categories with the stored levels, country, past responses)
    followed by the content features, in the model's own feature order.
    """

    selector: Selector
    content_ids: dict[str, int]
    content: np.ndarray  # active content × model features (content columns filled)
    customer_columns: tuple[tuple[int, str], ...]  # (position, feature) read from a profile
    country_columns: tuple[tuple[int, str], ...]  # (position, country code)
    category_columns: tuple[tuple[int, str, str], ...] = ()  # (position, feature, level)

    @classmethod
    def build(cls, selector: Selector, content_features: pd.DataFrame) -> SelectorLayout:
        names = list(selector.model.feature_names_ or [])
        # Content columns are the selector's own (a content feature of a variant no
        # longer active is 0 for every active one).
        content = content_features.reindex(columns=list(selector.content.columns), fill_value=0.0)
        levels = {
            f"{column}#{i}": (column, level)
            for column, values in (selector.design.categories if selector.design else ())
            for i, level in enumerate(values)
        }
        matrix = np.zeros((len(content), len(names)))
        customer: list[tuple[int, str]] = []
        country: list[tuple[int, str]] = []
        category: list[tuple[int, str, str]] = []
        for j, name in enumerate(names):
            if name in content.columns:
                matrix[:, j] = content[name].to_numpy(dtype=float)
            elif name in levels:
                category.append((j, *levels[name]))
            elif name.startswith("country_"):
                country.append((j, name.removeprefix("country_")))
            else:
                customer.append((j, name))
        return cls(
            selector,
            {str(c): i for i, c in enumerate(content.index)},
            matrix,
            tuple(customer),
            tuple(country),
            tuple(category),
        )

    def design(self, profile: Profile, candidates: list[str]) -> np.ndarray:
        """The model's design rows of one customer × ``candidates``: (k, n_features)."""
        rows = [self.content_ids[c] for c in candidates]
        design = self.content[rows].copy()
        features = profile.features
        for j, name in self.customer_columns:
            if name.startswith("prior_sends_"):
                value: Any = profile.responses.get(name.removeprefix("prior_sends_"), (0, 0))[0]
            elif name.startswith("prior_clicks_"):
                value = profile.responses.get(name.removeprefix("prior_clicks_"), (0, 0))[1]
            else:
                value = features.get(name)
            design[:, j] = _number(value)
        for j, name, level in self.category_columns:
            value = features.get(name)
            design[:, j] = np.nan if value is None else float(str(value) == level)
        country = features.get("country")
        for j, code in self.country_columns:
            design[:, j] = 1.0 if country == code else 0.0
        return design

    def scores(self, profile: Profile, candidates: list[str]) -> np.ndarray:
        """Predicted reward per ensemble member and candidate: (members, 1, k)."""
        design = self.design(profile, candidates)
        members = [b.predict(design, num_threads=1) for b in self.selector.model.boosters_]
        return np.vstack(members)[:, None, :]


def _number(value: Any) -> float:
    """As ``pandas.to_numeric(errors="coerce")``: numbers and booleans, else NaN."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return float("nan")
    return float("nan")


class Choices(DecisionRoom):
    """Answers ``choose`` on the bundle the loader serves."""

    def choose(self, request: ChooseRequest) -> Choice:
        started = time.monotonic()
        served = self.loader.decide_with([request.customer_id])
        person = self.loader.online.resolve([request.customer_id])[request.customer_id]
        bundle = for_person(served, person, self.config.challenger_share)
        slot = request.slot
        candidates = _candidates(bundle, slot, request.candidates)
        decision_id = request.decision_id or new_id()
        now = self.clock()
        profile = self.loader.online.profiles([person], now=now)[person]
        default, default_note = _slot_default(bundle.rules.defaults.get(slot), slot, candidates)
        k = len(candidates)
        probabilities = np.zeros(k)
        scores: np.ndarray | None = None
        reason: str | None = None
        model_version: str | None = None
        if in_holdout(person, self.config.holdout_share):
            strategy = "holdout"
        elif not profile.personalised:
            refused = profile.known or profile.consent_personalization is False
            strategy = "consent" if refused else "fallback:cold_start"
            reason = None if refused else "customer not in the snapshot"
        else:
            needed = bundle.rules.names(slot)
            triggers = profile_triggers(profile, now, self.settings.features.triggers)
            variables = rule_variables(profile, triggers, slot, request.context, now, needed)
            match = bundle.rules.match(slot, variables, candidates=candidates)
            if match is not None and match.content_id is not None:
                default = match.content_id
                strategy = f"rule:{match.rule.name}"
            else:
                strategy, scores, probabilities, reason = self._model_choice(
                    bundle, slot, profile, candidates, decision_id, started
                )
                if strategy == "model":
                    model_version = bundle.selector_versions.get(slot)
                else:
                    segment = bundle.rules.segment_default(slot, profile.segments)
                    if segment is not None and segment[1] in candidates:
                        default = segment[1]
                        strategy = f"fallback:segment:{segment[0]}"
                        default_note = None
        if strategy == "model" or strategy.startswith("rule:"):
            default_note = None
        if default_note is not None:  # the slot default answered, chosen by sort order
            reason = default_note if reason is None else f"{reason}; {default_note}"
        if strategy != "model":
            probabilities = np.zeros(k)
            probabilities[candidates.index(default)] = 1.0
            if strategy.startswith("fallback") and self.config.fallback_epsilon > 0 and k > 1:
                # Explore around the default so the log can train a first selector.
                eps = self.config.fallback_epsilon
                probabilities = (1 - eps) * probabilities + eps / k
        chosen = int(choose(probabilities[None, :], [decision_id])[0])
        result = Choice(
            customer_id=request.customer_id,
            slot=slot,
            decision_id=decision_id,
            content_id=candidates[chosen],
            propensity=float(probabilities[chosen]),
            candidates=[
                CandidateScore(
                    content_id=c,
                    score=None if scores is None else float(scores[j]),
                    probability=float(probabilities[j]),
                )
                for j, c in enumerate(candidates)
            ],
            strategy=strategy,
            model_version=model_version,
            snapshot=bundle.snapshot_id,
            fallback_reason=(
                reason if strategy.startswith("fallback") or default_note is not None else None
            ),
            sendable=profile.sendable,
            not_sendable_reason=profile.not_sendable_reason,
        )
        self.counters[strategy.split(":")[0]] += 1
        self.decisions.append(
            [
                DecisionRecord(
                    decision_id=decision_id,
                    endpoint="choose",
                    customer_id=person,
                    slot=slot,
                    strategy=strategy,
                    chosen=result.content_id,
                    propensity=result.propensity,
                    candidates=[[c.content_id, c.score, c.probability] for c in result.candidates],
                    versions=bundle.versions(slot),
                    context=request.context,
                )
            ]
        )
        return result

    def _model_choice(
        self,
        bundle: Bundle,
        slot: str,
        profile: Profile,
        candidates: list[str],
        decision_id: str,
        started: float,
    ) -> tuple[str, np.ndarray | None, np.ndarray, str | None]:
        selector = bundle.selectors.get(slot)
        k = len(candidates)
        if selector is None:
            return "fallback:default", None, np.zeros(k), "no selector loaded"
        layout = bundle.layouts.get(slot)
        if layout is None:
            return "fallback:default", None, np.zeros(k), "selector has no content layout"
        try:
            remaining = self.config.deadline_ms / 1000.0 - (time.monotonic() - started)
            members = self.pool.run(max(remaining, 0.001), layout.scores, profile, candidates)
        except DeadlineExceeded as error:
            logger.info("choose past its deadline: %s", error)
            return "fallback:default", None, np.zeros(k), "deadline"
        except Exception as error:
            logger.exception("selector %s failed", slot)
            return "fallback:default", None, np.zeros(k), f"model error: {type(error).__name__}"
        probabilities = selector.policy.probabilities(members, candidates)[0]
        return "model", members.mean(axis=0)[0], probabilities, None


def _candidates(bundle: Bundle, slot: str, asked: list[str] | None) -> list[str]:
    """The candidates of one choice: the slot's active content, or those ``asked``
    for (each must be active content of the slot), in order, without repeats."""
    content = bundle.content
    slot_content = content[content["slot"] == slot] if len(content) else content
    active = [str(c) for c in slot_content["content_id"]] if len(slot_content) else []
    if asked is None:
        candidates = active
        if not candidates:
            raise UnknownCandidates("slot", slot, "has no active content; pass candidates")
    else:
        candidates = list(dict.fromkeys(asked))
        unknown = [c for c in candidates if c not in set(active)]
        if unknown:
            raise UnknownCandidates("candidates", unknown, f"not active content of slot {slot!r}")
        if not candidates:
            raise InputError("candidates", [], "give at least one candidate")
    return candidates


def _slot_default(
    configured: str | None, slot: str, candidates: list[str]
) -> tuple[str, str | None]:
    """The default content of ``slot`` among ``candidates``, and, when it is not the
    configured one, a note saying how it was chosen: the candidate id first in sort
    order (the same answer whatever order the content or the request lists them in)."""
    chosen = default_content({} if configured is None else {slot: configured}, slot, candidates)
    if chosen == configured:
        return chosen, None
    why = (
        f"no default content for slot {slot!r}"
        if configured is None
        else f"default {configured!r} of slot {slot!r} is not a candidate"
    )
    return chosen, f"{why}: {chosen!r}, the first candidate id in sort order"
