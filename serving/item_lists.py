"""A recommend call's item lists: the call resolved once, and each recipient's items.

:class:`_Batch` is one recommend call resolved once (who is asked, their profiles,
what the request's filters allow). Each recipient's items are taken from the
two-stage ranking computed at load under the request's filters (or from the live
scores), trigger items first, skipping exclusions; a short list is topped up with
popular items, and :func:`_short_reason` says why it is still short.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.bundle_data import Bundle, Catalog, Ranked
from serving.profiles import Profile
from serving.schemas import Filters, RecommendBatchRequest

Scored = dict[int, tuple[list[int], list[float]]]
"""Item positions and their scores from the model, by recipient row."""


@dataclass(frozen=True)
class _Batch:
    """One recommend call, resolved once: who is asked, their profiles, and what the
    request's filters allow."""

    request: RecommendBatchRequest
    bundle: Bundle
    n: int
    now: float
    as_of: float  # the snapshot's time: events at or after it are live
    needed: frozenset[str]  # the names the recommend rules read
    asked: list[str]
    people: list[str]  # canonical ids, in the order asked
    profiles: dict[str, Profile]
    purchased: dict[str, list[str]]
    allowed: np.ndarray  # catalog positions the filters allow
    exclude_items: set[str]


def _from_ranking(
    batch: _Batch, model_rows: list[int], trigger_items: dict[int, list[str]]
) -> tuple[Scored, list[int]]:
    """The model's items from the two-stage ranking computed at load, under this
    request's filters, and the rows still to score live."""
    bundle = batch.bundle
    scored: Scored = {}
    if bundle.ranked and bundle.as_of is not None:
        # The two-stage ranking computed at load, unless events posted since
        # moved the customer: then the collaborative stage re-solves from them.
        still, cached_rows, ranked_rows = [], [], []
        for row in model_rows:
            at = bundle.ranked.rows.get(batch.people[row])
            if at is not None and not any(
                ts >= batch.as_of for ts, _, _ in batch.profiles[batch.people[row]].recent
            ):
                cached_rows.append(row)
                ranked_rows.append(at)
            else:
                still.append(row)
        model_rows = still
        if cached_rows:
            # This request's filters over the cached rankings, for all rows at once:
            # each row keeps its first allowed items, enough to survive its
            # exclusions and the trigger items placed before them.
            slack = [
                len(batch.purchased.get(batch.people[row], ()))
                + len(batch.exclude_items)
                + len(trigger_items.get(row, ()))
                for row in cached_rows
            ]
            scored.update(
                _filter_ranked(
                    bundle.ranked, ranked_rows, batch.allowed, batch.n, slack, cached_rows
                )
            )
    return scored, model_rows


def _filter_ranked(
    ranked: Ranked,
    at: list[int],
    allowed: np.ndarray,
    n: int,
    slack: list[int],
    keys: list[int],
) -> Scored:
    """Rows ``at`` of the cached ranking with disallowed items dropped, each cut to
    ``n`` plus its ``slack`` items; keyed by ``keys``."""
    ids = ranked.ids[at]
    scores = ranked.scores[at]
    ok = ids >= 0
    ok[ok] = allowed[ids[ok]]
    limit = n + np.asarray(slack)[:, None]
    keep = ok & (np.cumsum(ok, axis=1) <= limit)
    ends = np.cumsum(keep.sum(axis=1)).tolist()
    flat_ids = ids[keep].tolist()
    flat_scores = scores[keep].tolist()
    out: Scored = {}
    start = 0
    for key, end in zip(keys, ends, strict=True):
        out[key] = (flat_ids[start:end], flat_scores[start:end])
        start = end
    return out


def _picked(
    batch: _Batch,
    triggered: list[str] | None,
    ranked: tuple[list[int], list[float]] | None,
    names: list[str],
    exclude: set[str],
) -> tuple[list[str], list[float | None]]:
    """One recipient's items and scores: its trigger items first (when its rule puts
    them first), then the model's, up to ``n``, skipping those excluded."""
    n = batch.n
    chosen: list[str] = []
    chosen_scores: list[float | None] = []
    catalog = batch.bundle.catalog
    for item in triggered or ():
        if item in exclude or item in chosen:
            continue
        if catalog is not None and item in catalog.position:
            if not batch.allowed[catalog.position[item]]:
                continue
        chosen.append(item)
        chosen_scores.append(None)
        if len(chosen) >= n:
            break
    if ranked is not None:
        have = set(chosen)
        for position, score in zip(*ranked, strict=True):
            if position < 0 or len(chosen) >= n:
                break
            item = names[position]
            if item not in have and item not in exclude:
                chosen.append(item)
                chosen_scores.append(score)
                have.add(item)
    return chosen, chosen_scores


def _short_reason(bundle: Bundle, filters: Filters, allowed: np.ndarray) -> str:
    """Why an answer has fewer items than asked."""
    if bundle.catalog is None:
        return "no feature snapshot loaded: no catalog to recommend from"
    if filters.categories is not None:
        known = set(bundle.catalog.categories.tolist())
        unknown = sorted(set(filters.categories) - known)
        if unknown:
            return f"unknown categories {unknown[:10]}: no item of the catalog has them"
    if not allowed.any():
        return "no item passes the filters (categories, in stock)"
    return "fewer items pass the filters and exclusions than asked"


def _top_up(popular: list[str], have: list[str], exclude: set[str], n: int) -> list[str]:
    """Items of ``popular`` (in order) to add to ``have`` to reach ``n``, skipping
    those excluded or already there."""
    taken = set(have)
    out: list[str] = []
    for item in popular:
        if len(have) + len(out) >= n:
            break
        if item not in exclude and item not in taken:
            out.append(item)
            taken.add(item)
    return out


def _popular(catalog: Catalog, allowed: np.ndarray) -> list[str]:
    """Allowed items, most popular first."""
    order = catalog.popularity_order
    return [catalog.item_list[p] for p in order[allowed[order]].tolist()]
