"""Item recommendations: ``recommend``, ``recommend_batch`` and ``similar_items``.

A recommend call, for each recipient in order: **holdout**, **consent** and cold
start → **rules** (matched once per distinct segments and triggers in a batch) →
segment default → **model**: the two-stage ranking computed at load, or the
recommender scored live within the deadline for customers moved by events posted
since → **fallbacks** (popular items). The request's business filters (stock,
categories, exclusions) are applied before the items are taken, and a short list is
topped up with popular items (how each recipient's list is drawn:
:mod:`serving.item_lists`). Every answer names its strategy and is appended to the
decision log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from features.data.decision_log import DecisionRecord
from features.errors import NotFoundError
from serving.bundle_data import Bundle, Catalog
from serving.deadline import DeadlineExceeded
from serving.deciding import (
    DecisionRoom,
    in_challenger,
    in_holdout,
    new_id,
    new_ids,
    rule_variables,
)
from serving.errors import BatchTooLarge
from serving.item_lists import (
    Scored,
    _Batch,
    _from_ranking,
    _picked,
    _popular,
    _short_reason,
    _top_up,
)
from serving.profiles import Profile
from serving.rules import BUILTIN_NAMES, Match
from serving.schemas import (
    Filters,
    Recommendation,
    RecommendBatchRequest,
    RecommendBatchResponse,
    RecommendRequest,
    SimilarItemsRequest,
    SimilarItemsResponse,
)
from serving.triggers import ActiveTrigger, profile_triggers, trigger_events

# The decision core's logger, as before the core was split: one name to filter on.
logger = logging.getLogger("serving.core")

MEMO_NAMES = frozenset({"segments", "triggers", "known", "slot", "context"})
"""Rules reading only these are matched once per distinct value of them in a batch."""

Plan = tuple[str, str | None, str | None]
"""One recipient's strategy before scoring: (strategy, rule, reason)."""


@dataclass(eq=False)
class Recommendations(DecisionRoom):
    """Answers ``recommend``, ``recommend_batch`` and ``similar_items`` on the bundle
    the loader serves."""

    # The snapshot's stock with the stock changes posted since, per stock version.
    _stock_seen: tuple[int, float] = field(default=(0, 0.0), init=False)
    _stock_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stock_mask: np.ndarray | None = field(default=None, init=False)

    def recommend(self, request: RecommendRequest) -> Recommendation:
        batch = RecommendBatchRequest(
            customer_ids=[request.customer_id],
            n=request.n,
            filters=request.filters,
            context=request.context,
        )
        decision_ids = [request.decision_id or new_id()]
        deadline = self.config.deadline_ms / 1000.0
        return Recommendation(**self._recommend(batch, decision_ids, "recommend", deadline)[0])

    def recommend_batch(self, request: RecommendBatchRequest) -> RecommendBatchResponse:
        if len(request.customer_ids) > self.config.batch_limit:
            raise BatchTooLarge(
                "customer_ids",
                len(request.customer_ids),
                f"at most {self.config.batch_limit} recipients per call (batch_limit)",
            )
        ids = new_ids(len(request.customer_ids))
        deadline = self.config.batch_deadline_ms / 1000.0
        results = self._recommend(request, ids, "recommend_batch", deadline)
        return RecommendBatchResponse.model_validate(  # one validation for the whole batch
            {"results": results, "strategies": Counter(r["strategy"] for r in results)}
        )

    def _recommend(
        self,
        request: RecommendBatchRequest,
        decision_ids: list[str],
        endpoint: str,
        deadline: float,
    ) -> list[dict[str, Any]]:
        """Recommendation fields per recipient (dicts: the caller validates them once)."""
        started = time.monotonic()
        batch = self._resolve(request)
        results: list[dict[str, Any]] = [{} for _ in batch.asked]
        records: list[DecisionRecord] = []
        for rows, part in self._arms(batch):
            ids = [decision_ids[i] for i in rows]
            answers, logged = self._recommend_part(part, ids, endpoint, started, deadline)
            for i, answer in zip(rows, answers, strict=True):
                results[i] = answer
            records += logged
        self.counters.update(r["strategy"].split(":")[0] for r in results)
        self.decisions.append(records)
        return results

    def _recommend_part(
        self,
        batch: _Batch,
        decision_ids: list[str],
        endpoint: str,
        started: float,
        deadline: float,
    ) -> tuple[list[dict[str, Any]], list[DecisionRecord]]:
        """The answers of the recipients of one bundle (champion or challenger)."""
        plans, model_rows, trigger_items = self._plan(batch)
        scored, model_rows = _from_ranking(batch, model_rows, trigger_items)
        model_rows, no_history = self._with_history(batch, model_rows)
        model_error = self._score_live(batch, model_rows, scored, endpoint, started, deadline)
        return self._answers(
            batch, plans, scored, trigger_items, no_history, model_error, decision_ids, endpoint
        )

    def _arms(self, batch: _Batch) -> list[tuple[list[int], _Batch]]:
        """The recipients (positions in the call) of each bundle: everyone the
        champion's, unless a challenger serves its share."""
        challenger = batch.bundle.challenger
        share = self.config.challenger_share
        if challenger is None:
            return [(list(range(len(batch.asked))), batch)]
        on = [in_challenger(person, share) for person in batch.people]
        arms = []
        for bundle, wanted in ((batch.bundle, False), (challenger, True)):
            rows = [i for i, flag in enumerate(on) if flag is wanted]
            if rows:
                part = replace(
                    batch,
                    bundle=bundle,
                    asked=[batch.asked[i] for i in rows],
                    people=[batch.people[i] for i in rows],
                    allowed=(
                        batch.allowed
                        if bundle is batch.bundle
                        else self._allowed(bundle, batch.request.filters)
                    ),
                )
                arms.append((rows, part))
        return arms

    def _resolve(self, request: RecommendBatchRequest) -> _Batch:
        """The bundle to decide with, the recipients' canonical ids and profiles, their
        purchases (when excluded) and the items the filters allow."""
        asked = request.customer_ids
        bundle = self.loader.decide_with(asked)
        n = request.n or self.config.default_n
        now = self.clock()
        canonical = self.loader.online.resolve(asked)
        people = [canonical[c] for c in asked]
        as_of = bundle.as_of.timestamp() if bundle.as_of is not None else 0.0
        needed = bundle.rules.names("recommend")
        profiles = self.loader.online.profiles(
            sorted(set(people)),
            recent=trigger_events(
                now, as_of, self.settings.features.triggers, bundle.back_in_stock_hours
            ),
            responses=False,
            features=bool(needed - BUILTIN_NAMES),
            now=now,
        )
        # What a customer bought is their data: read only with consent to profiling.
        personal = sorted(p for p, profile in profiles.items() if profile.personalised)
        purchased = (
            self.loader.online.purchased(personal)
            if request.filters.exclude_purchased and personal
            else {}
        )
        allowed = self._allowed(bundle, request.filters)
        return _Batch(
            request=request,
            bundle=bundle,
            n=n,
            now=now,
            as_of=as_of,
            needed=needed,
            asked=asked,
            people=people,
            profiles=profiles,
            purchased=purchased,
            allowed=allowed,
            exclude_items=set(request.filters.exclude_items),
        )

    def _plan(self, batch: _Batch) -> tuple[list[Plan], list[int], dict[int, list[str]]]:
        """Each recipient's strategy before scoring (holdout, consent, cold start,
        rules, segment default, else the model), the rows the model is to score, and
        the trigger items of rows whose rule puts them first."""
        bundle, needed = batch.bundle, batch.needed
        plans: list[Plan] = []
        # Rules over segments and trigger names alone are matched once per distinct
        # combination: a campaign batch has few of them.
        memo: dict[tuple[Any, ...], Match | None] | None = {} if needed <= MEMO_NAMES else None
        model_rows: list[int] = []
        trigger_items: dict[int, list[str]] = {}
        holdout = self.config.holdout_share > 0
        for i, person in enumerate(batch.people):
            profile = batch.profiles[person]
            if holdout and in_holdout(person, self.config.holdout_share):
                plans.append(("holdout", None, None))
                continue
            if not profile.personalised:
                if profile.known or profile.consent_personalization is False:
                    plans.append(("consent", None, "no personalisation consent"))
                else:
                    plans.append(("fallback:cold_start", None, "customer not in the snapshot"))
                continue
            triggers = (
                profile_triggers(profile, batch.now, self.settings.features.triggers)
                if needed
                else []
            )
            match = _rule_match(batch, profile, triggers, memo) if needed else None
            if match is not None and match.strategy == "popular":
                plans.append((f"rule:{match.rule.name}", match.rule.name, None))
                continue
            if match is not None and match.strategy == "trigger_items":
                trigger_items[i] = [t.item_id for t in triggers if t.item_id is not None]
                plans.append((f"rule:{match.rule.name}", match.rule.name, None))
                model_rows.append(i)
                continue
            default = bundle.rules.segment_default("recommend", profile.segments)
            if default is not None and default[1] == "popular" and match is None:
                plans.append((f"fallback:segment:{default[0]}", None, "segment default"))
                continue
            plans.append(("model", match.rule.name if match else None, None))
            model_rows.append(i)
        return plans, model_rows, trigger_items

    def _with_history(self, batch: _Batch, model_rows: list[int]) -> tuple[list[int], set[int]]:
        """The rows with product history to personalise from (in the snapshot, or live
        events on catalog items), and those without."""
        bundle = batch.bundle
        no_history: set[int] = set()
        if model_rows and bundle.catalog is not None:
            # Without product history the model has nothing personal to say: its
            # scores would be the same for everyone (e.g. customers with e-mails only).
            weights = self.settings.features.interaction_weights
            columns = bundle.catalog.position
            usable = [
                row
                for row in model_rows
                if batch.people[row] in bundle.history_rows
                or any(
                    ts >= batch.as_of and item in columns and weights.get(kind, 0.0) > 0
                    for ts, kind, item in batch.profiles[batch.people[row]].recent
                )
            ]
            no_history = set(model_rows).difference(usable)
            model_rows = usable
        return model_rows, no_history

    def _score_live(
        self,
        batch: _Batch,
        model_rows: list[int],
        scored: Scored,
        endpoint: str,
        started: float,
        deadline: float,
    ) -> str | None:
        """Score ``model_rows`` with the recommender within what is left of the
        deadline, into ``scored``; why not, when the model did not answer."""
        bundle = batch.bundle
        if not model_rows:
            return None
        if bundle.recommender is None or bundle.catalog is None:
            return "no recommender loaded"
        remaining = max(deadline - (time.monotonic() - started), 0.001)
        people = batch.people
        try:
            ids, scores = self.pool.run(
                remaining,
                self.score,
                bundle,
                [people[i] for i in model_rows],
                [batch.profiles[people[i]] for i in model_rows],
                batch.purchased,
                batch.allowed,
                batch.n,
                batch.request.filters.exclude_items,
                batch.now,
            )
            scored.update(
                {row: (ids[k].tolist(), scores[k].tolist()) for k, row in enumerate(model_rows)}
            )
        except DeadlineExceeded as error:
            logger.info("%s past its deadline: %s", endpoint, error)
            return "deadline"
        except Exception as error:  # a model bug must not fail the request
            logger.exception("recommender failed")
            return f"model error: {type(error).__name__}"
        return None

    def _answers(
        self,
        batch: _Batch,
        plans: list[Plan],
        scored: Scored,
        trigger_items: dict[int, list[str]],
        no_history: set[int],
        model_error: str | None,
        decision_ids: list[str],
        endpoint: str,
    ) -> tuple[list[dict[str, Any]], list[DecisionRecord]]:
        """Each recipient's items (trigger items first, then the model's, topped up
        with popular items), strategy and reasons, and its decision record."""
        bundle, n, request = batch.bundle, batch.n, batch.request
        results: list[dict[str, Any]] = []
        records: list[DecisionRecord] = []
        popular: list[str] | None = None
        versions = bundle.versions("recommend")
        names = bundle.catalog.item_list if bundle.catalog is not None else []
        for i, (person, (strategy, _rule, reason)) in enumerate(
            zip(batch.people, plans, strict=True)
        ):
            bought = batch.purchased.get(person)
            exclude = batch.exclude_items.union(bought) if bought else batch.exclude_items
            chosen, chosen_scores = _picked(
                batch, trigger_items.get(i), scored.get(i), names, exclude
            )
            if i not in scored and (strategy == "model" or i in trigger_items):
                if i in no_history:
                    reason = "no product history to personalise from"
                else:
                    reason = model_error or "no model"
                if strategy == "model":
                    strategy = "fallback:popular"
            if len(chosen) < n:
                if bundle.catalog is None:
                    if not chosen:
                        reason = reason or "no feature snapshot loaded"
                else:
                    if popular is None:  # once per batch
                        popular = _popular(bundle.catalog, batch.allowed)
                    extra = _top_up(popular, chosen, exclude, n)
                    chosen += extra
                    chosen_scores += [None] * len(extra)
            results.append(
                {
                    "customer_id": batch.asked[i],
                    "decision_id": decision_ids[i],
                    "items": chosen,
                    "scores": chosen_scores,
                    "strategy": strategy,
                    "model_version": bundle.recommender_version if i in scored else None,
                    "snapshot": bundle.snapshot_id,
                    "fallback_reason": reason if strategy.startswith("fallback") else None,
                    "sendable": batch.profiles[person].sendable,
                    "not_sendable_reason": batch.profiles[person].not_sendable_reason,
                    "reason": None
                    if len(chosen) >= n
                    else (reason or _short_reason(bundle, request.filters, batch.allowed)),
                }
            )
            records.append(
                DecisionRecord(
                    decision_ids[i],
                    endpoint,
                    person,
                    "recommend",
                    strategy,
                    chosen,
                    1.0,
                    chosen_scores,
                    versions,
                    request.context,
                )
            )
        return results, records

    def score(
        self,
        bundle: Bundle,
        people: list[str],
        profiles: list[Profile],
        purchased: dict[str, list[str]],
        allowed: np.ndarray,
        n: int,
        exclude_items: list[str],
        now: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top n per person from the recommender, history = snapshot row + live events."""
        model, catalog = bundle.recommender, bundle.catalog
        assert model is not None and catalog is not None and bundle.history is not None
        n_items = len(catalog.item_ids)
        weights = self.settings.features.interaction_weights
        as_of = bundle.as_of.timestamp() if bundle.as_of else 0.0
        rows, cols, vals = [], [], []
        exclude_rows, exclude_cols = [], []
        users = np.full(len(people), -1, dtype=np.int64)
        known_rows = model.user_rows(people) if model.user_ids_ is not None else users
        blocked = {catalog.position[i] for i in exclude_items if i in catalog.position}
        for k, (person, profile) in enumerate(zip(people, profiles, strict=True)):
            live = False
            for ts, kind, item in profile.recent:
                if ts >= as_of and item is not None and item in catalog.position:
                    weight = weights.get(kind, 0.0)
                    if weight > 0:
                        rows.append(k)
                        cols.append(catalog.position[item])
                        vals.append(weight)
                        live = True
            # Known users keep their trained factors unless live events moved them.
            users[k] = -1 if live else known_rows[k]
            for item in purchased.get(person, []):
                if item in catalog.position:
                    exclude_rows.append(k)
                    exclude_cols.append(catalog.position[item])
            for position in blocked:
                exclude_rows.append(k)
                exclude_cols.append(position)
        live_matrix = sp.csr_matrix(
            (np.asarray(vals, np.float32), (rows, cols)), shape=(len(people), n_items)
        )
        snapshot_rows = np.array([bundle.history_rows.get(p, -1) for p in people])
        base = bundle.history[np.maximum(snapshot_rows, 0)]
        base = sp.diags((snapshot_rows >= 0).astype(np.float32)) @ base
        history = (base + live_matrix).tocsr()
        exclude = sp.csr_matrix(
            (np.ones(len(exclude_rows), np.float32), (exclude_rows, exclude_cols)),
            shape=(len(people), n_items),
        )
        exclude.data[:] = 1.0
        return model.recommend(users, history, n=n, exclude=exclude, allowed=allowed, num_threads=1)

    # ================================================================== similar items
    def similar_items(self, request: SimilarItemsRequest) -> SimilarItemsResponse:
        bundle = self.loader.bundle
        n = request.n or self.config.default_n
        catalog = bundle.catalog
        if catalog is None or request.item_id not in catalog.position:
            raise NotFoundError(f"item_id {request.item_id!r} is not in the catalog")
        allowed = self._allowed(bundle, request.filters)
        exclude = set(request.filters.exclude_items) | {request.item_id}
        model = bundle.recommender
        items: list[tuple[str, float | None]] = []
        strategy = "fallback:category_popular"
        if model is not None:
            position = catalog.position[request.item_id]
            ids, scores = model.similar_items(np.array([position]), n=n + len(exclude) + 50)
            for idx, score in zip(ids[0], scores[0], strict=True):
                if idx < 0 or len(items) >= n:
                    continue
                item = str(catalog.item_ids[idx])
                if allowed[idx] and item not in exclude:
                    items.append((item, float(score)))
            strategy = "model"
        if len(items) < n:
            same = allowed & (
                catalog.categories == catalog.categories[catalog.position[request.item_id]]
            )
            have = [x[0] for x in items]
            items += [(item, None) for item in _top_up(_popular(catalog, same), have, exclude, n)]
        return SimilarItemsResponse(
            item_id=request.item_id,
            items=[x[0] for x in items],
            scores=[x[1] for x in items],
            strategy=strategy,
            model_version=bundle.recommender_version if strategy == "model" else None,
        )

    # ================================================================== filters
    def _allowed(self, bundle: Bundle, filters: Filters) -> np.ndarray:
        catalog = bundle.catalog
        if catalog is None:
            return np.zeros(0, dtype=bool)
        mask = np.ones(len(catalog.item_ids), dtype=bool)
        if filters.in_stock_only:
            mask &= self._in_stock(catalog)
        if filters.categories is not None:
            mask &= np.isin(catalog.categories, filters.categories)
        return mask

    def _in_stock(self, catalog: Catalog) -> np.ndarray:
        """The snapshot's stock, updated by stock_change events posted since."""
        version = self.loader.online.stock_version()
        if version == (0, 0.0):
            return catalog.in_stock
        with self._stock_lock:
            if version != self._stock_seen or self._stock_mask is None:
                mask = catalog.in_stock.copy()
                for item, flag in self.loader.online.stock_changes().items():
                    if item in catalog.position:
                        mask[catalog.position[item]] = flag
                self._stock_mask = mask
                self._stock_seen = version
            return self._stock_mask


# ====================================================================== module helpers
def _rule_match(
    batch: _Batch,
    profile: Profile,
    triggers: list[ActiveTrigger],
    memo: dict[tuple[Any, ...], Match | None] | None,
) -> Match | None:
    """The recommend rule one profile matches, from ``memo`` when the rules read only
    what its key holds."""
    key = (
        tuple(profile.segments),
        tuple(sorted({t.trigger for t in triggers})),
        profile.known,
    )
    if memo is not None and key in memo:
        return memo[key]
    variables = rule_variables(
        profile, triggers, "recommend", batch.request.context, batch.now, batch.needed
    )
    match = batch.bundle.rules.match("recommend", variables)
    if memo is not None:
        memo[key] = match
    return match
