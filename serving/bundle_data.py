"""What a bundle holds, and how its parts are built from a snapshot.

:class:`Bundle` is everything loaded for serving, swapped whole on reload (see
:mod:`serving.bundles`): the champions, the snapshot's :class:`Catalog` (item arrays
in the recommender's item order) and interaction history, the two-stage
:class:`Ranked` lists computed at load, the active content, the selectors' layouts
and the rules. The functions here build those parts from a snapshot, a loaded model
and the event store; loading, reloading and swapping stay with the loader.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.data.store import EventStore
from features.errors import InputError
from features.snapshot import Snapshot
from models.candidates import interaction_log_from_store, interaction_matrix, recent_history
from models.erasure import erased_copy
from models.pipeline import RecommenderPipeline
from models.recommender import Recommender
from models.selector import Selector
from serving.choices import SelectorLayout
from serving.online import OnlineStore
from serving.rules import RuleSet
from serving.settings import ServiceSettings

# The decision core's logger, as before the core was split: one name to filter on.
logger = logging.getLogger("serving.core")

RANKED_DEPTH = 100
"""Items kept per customer from the two-stage ranking computed at load."""


@dataclass(frozen=True)
class Catalog:
    """Item arrays in the recommender's item order (or the snapshot's without one)."""

    item_ids: np.ndarray
    position: dict[str, int]
    categories: np.ndarray
    in_stock: np.ndarray
    popularity_order: np.ndarray  # item positions, most popular first
    item_list: list[str]  # item_ids as Python strings (indexing numpy strings is slow)


@dataclass(frozen=True)
class Ranked:
    """The champion's two-stage ranking of every customer with history, computed at
    load: row ``rows[customer]`` of ``ids`` (item positions, -1 padded) and ``scores``."""

    ids: np.ndarray  # customers × RANKED_DEPTH, int32
    scores: np.ndarray  # customers × RANKED_DEPTH, float32
    rows: dict[str, int]

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, customer: str) -> tuple[np.ndarray, np.ndarray] | None:
        row = self.rows.get(customer)
        return None if row is None else (self.ids[row], self.scores[row])


NO_RANKING = Ranked(np.zeros((0, 0), np.int32), np.zeros((0, 0), np.float32), {})


@dataclass
class Bundle:
    """Everything loaded for serving, swapped as a whole on reload."""

    snapshot_id: str | None = None
    as_of: datetime | None = None
    recommender: Recommender | None = None
    recommender_version: str | None = None
    pipeline: RecommenderPipeline | None = None
    ranked: Ranked = NO_RANKING
    selectors: dict[str, Selector] = field(default_factory=dict)
    selector_versions: dict[str, str] = field(default_factory=dict)
    catalog: Catalog | None = None
    history: sp.csr_matrix | None = None  # snapshot users × catalog items
    history_rows: dict[str, int] = field(default_factory=dict)
    content: pd.DataFrame = field(default_factory=pd.DataFrame)
    content_features: pd.DataFrame = field(default_factory=pd.DataFrame)
    layouts: dict[str, SelectorLayout] = field(default_factory=dict)
    rules: RuleSet = field(default_factory=RuleSet)
    rules_error: str | None = None  # no valid rules loaded yet: decisions are refused
    feature_names: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)
    loaded_at: datetime | None = None
    registered_at: dict[str, float] = field(default_factory=dict)  # name → epoch seconds
    back_in_stock_hours: float = 0.0  # the longest a snapshot back-in-stock trigger lives
    online: OnlineStore | None = None  # the online store built for this snapshot
    load_errors: list[str] = field(default_factory=list)  # what this load could not load
    # The canary: the models of the ``challenger`` alias (the champion's where a model
    # has none) on the same snapshot, content and rules, for serving.challenger_share.
    challenger: Bundle | None = None
    arm: str = "champion"

    def versions(self, slot: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"snapshot": self.snapshot_id}
        if slot is None or slot == "recommend":
            out["recommender"] = self.recommender_version
        if slot is not None and slot != "recommend":
            out["selector"] = self.selector_versions.get(slot)
        if self.arm != "champion":
            out["arm"] = self.arm
        return out


# ====================================================================== erasure
def erase_from_bundle(
    bundle: Bundle, ids: Iterable[str], *, memo: dict[int, tuple[Any, Any]] | None = None
) -> int:
    """Drop customers from everything ``bundle`` holds per customer: the recommender and
    pipeline (:func:`models.erasure.erased_copy`), the cached two-stage rankings, the
    snapshot history (rows emptied, row map entries removed), and its challenger's.

    Fields are reassigned, never written into: the models, arrays and dicts a request
    in flight may be reading stay as they were. Pass a copy of a bundle that is being
    served (``dataclasses.replace(bundle)``) and swap it in, as reloads do.

    Parameters
    ----------
    bundle : Bundle
        The bundle to change (a copy of the one served).
    ids : iterable of str
        Customer and anonymous ids, matched whole.
    memo : dict, optional
        ``id(original) → (original, replacement)`` of the parts already erased in this
        pass, so a part two bundles share (champion and challenger) stays shared;
        :func:`erased_parts` of a bundle already erased marks its parts as clean.

    Returns
    -------
    int
        How many of ``ids`` the bundle (or its challenger) held anywhere.
    """
    wanted = sorted({str(i) for i in ids})
    return len(_erase(bundle, wanted, {} if memo is None else memo)) if wanted else 0


def bundle_user_ids(bundle: Bundle) -> set[str]:
    """Every customer id ``bundle`` (and its challenger) holds per customer: the
    models' users, the cached rankings' rows and the history's rows."""
    ids: set[str] = set()
    for held in (bundle, bundle.challenger):
        if held is None:
            continue
        ids |= set(held.ranked.rows) | set(held.history_rows)
        models: list[Any] = [held.recommender]
        if held.pipeline is not None:
            ids |= {str(u) for u in held.pipeline.index.user_ids}
            models += list(held.pipeline.generators.values())
        for model in models:
            users = getattr(model, "user_ids_", None)
            if users is not None:
                ids |= {str(u) for u in users}
    return ids


def erased_parts(bundle: Bundle) -> dict[int, tuple[Any, Any]]:
    """A memo for :func:`erase_from_bundle` that maps each per-customer part of
    ``bundle`` (and of its challenger) to itself: parts known to hold no erased id,
    so a reload that keeps them does not check them again."""
    memo: dict[int, tuple[Any, Any]] = {}
    for held in (bundle, bundle.challenger):
        if held is None:
            continue
        parts: list[Any] = [held.pipeline, held.recommender, held.ranked]
        if held.pipeline is not None:
            parts += list(held.pipeline.generators.values())
        for part in parts:
            if part is not None:
                memo[id(part)] = (part, part)
        if held.history is not None:
            pair = (held.history, held.history_rows)
            memo[id(held.history)] = (pair, pair)
    return memo


def _erase(bundle: Bundle, wanted: list[str], memo: dict[int, tuple[Any, Any]]) -> set[str]:
    """:func:`erase_from_bundle`, returning the ids found (a part met again through the
    memo was counted where it was first met)."""
    found: set[str] = set()
    if bundle.pipeline is not None:
        bundle.pipeline, known = erased_copy(bundle.pipeline, wanted, memo=memo)
        found |= known
    if bundle.recommender is not None:
        # The pipeline's own generator is in the memo by now: it stays that object.
        bundle.recommender, known = erased_copy(bundle.recommender, wanted, memo=memo)
        found |= known
    ranked = bundle.ranked
    if memo.get(id(ranked), (None,))[0] is not ranked:
        memo[id(ranked)] = (ranked, _erase_ranked(ranked, wanted, found))
    bundle.ranked = memo[id(ranked)][1]
    if bundle.history is not None:
        pair = (bundle.history, bundle.history_rows)
        seen = memo.get(id(bundle.history))
        if seen is None or seen[0][0] is not pair[0] or seen[0][1] is not pair[1]:
            memo[id(bundle.history)] = (pair, _erase_history(*pair, wanted, found))
        bundle.history, bundle.history_rows = memo[id(bundle.history)][1]
    challenger = bundle.challenger
    if challenger is not None:
        if memo.get(id(challenger), (None,))[0] is not challenger:
            copied = replace(challenger)
            found |= _erase(copied, wanted, memo)
            memo[id(challenger)] = (challenger, copied)
        bundle.challenger = memo[id(challenger)][1]
    return found


def _erase_ranked(ranked: Ranked, wanted: list[str], found: set[str]) -> Ranked:
    """``ranked`` without the rows of ``wanted`` (a new object; blanked rows)."""
    rows = [ranked.rows[c] for c in wanted if c in ranked.rows]
    if not rows:
        return ranked
    found.update(c for c in wanted if c in ranked.rows)
    ids, scores = ranked.ids.copy(), ranked.scores.copy()
    ids[rows] = -1
    scores[rows] = 0.0
    kept = {c: r for c, r in ranked.rows.items() if c not in set(wanted)}
    return Ranked(ids=ids, scores=scores, rows=kept)


def _erase_history(
    history: sp.csr_matrix, rows: dict[str, int], wanted: list[str], found: set[str]
) -> tuple[sp.csr_matrix, dict[str, int]]:
    """The history with the rows of ``wanted`` emptied (other rows keep their place)
    and the row map without them."""
    drop = [rows[c] for c in wanted if c in rows]
    if not drop:
        return history, rows
    found.update(c for c in wanted if c in rows)
    empty = np.zeros(history.shape[0], dtype=bool)
    empty[drop] = True
    counts = np.diff(history.indptr)
    keep = ~np.repeat(empty, counts)
    indptr = np.concatenate([[0], np.cumsum(np.where(empty, 0, counts))]).astype(
        history.indptr.dtype
    )
    emptied = sp.csr_matrix(
        (history.data[keep], history.indices[keep], indptr), shape=history.shape
    )
    gone = set(wanted)
    return emptied, {c: r for c, r in rows.items() if c not in gone}


# ====================================================================== building
def _longest_back_in_stock(snapshot: Snapshot) -> float:
    """Hours the longest-lived back-in-stock trigger of the snapshot lives (it may
    have been built under another time to live than the one configured now)."""
    triggers = snapshot.triggers
    rows = triggers[triggers["trigger"] == "back_in_stock"]
    if rows.empty:
        return 0.0
    lives = pd.to_datetime(rows["expires_at"]) - pd.to_datetime(rows["fired_at"])
    return float(lives.max().total_seconds()) / 3600.0


def _scorer(model: Any) -> Recommender:
    """The recommender that scores at request time: a plain recommender, or the
    pipeline's collaborative-filtering generator (ALS first)."""
    if isinstance(model, Recommender):
        return model
    if isinstance(model, RecommenderPipeline):
        for name in ("als", "bpr", "item_knn"):
            if name in model.generators:
                return model.generators[name]
        return next(iter(model.generators.values()))
    raise InputError("model", type(model).__name__, "is not a recommender")


def _catalog_and_history(
    snapshot: Snapshot, model: Recommender | None, settings: ServiceSettings
) -> tuple[Catalog, sp.csr_matrix, dict[str, int]]:
    """Item arrays in the model's item order and the snapshot's interactions in it."""
    items = snapshot.items.drop_duplicates("item_id").set_index("item_id")
    if model is not None and model.item_ids_ is not None:
        item_ids = np.asarray(model.item_ids_).astype(str)
    else:
        item_ids = snapshot.item_ids.astype(str)
    position = {item: i for i, item in enumerate(item_ids)}
    aligned = items.reindex(item_ids)
    categories = aligned["category"].astype(object).where(aligned["category"].notna(), "")
    in_stock = aligned["in_stock"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    popularity = aligned.get("purchases_30d", pd.Series(0, index=aligned.index)).fillna(0)
    views = aligned.get("views_30d", pd.Series(0, index=aligned.index)).fillna(0)
    order = np.lexsort((-views.to_numpy(dtype=float), -popularity.to_numpy(dtype=float)))
    catalog = Catalog(
        item_ids=item_ids,
        position=position,
        categories=categories.to_numpy(dtype=str),
        in_stock=in_stock,
        popularity_order=order,
        item_list=[str(i) for i in item_ids],
    )
    # Snapshot interactions re-indexed to the model's columns (unknown items dropped).
    matrix = snapshot.interactions.tocoo()
    column = np.array([position.get(i, -1) for i in snapshot.item_ids.astype(str)])
    mapped = column[matrix.col]
    keep = mapped >= 0
    history = sp.csr_matrix(
        (matrix.data[keep].astype(np.float32), (matrix.row[keep], mapped[keep])),
        shape=(len(snapshot.user_ids), len(item_ids)),
    )
    rows = {str(u): i for i, u in enumerate(snapshot.user_ids)}
    return catalog, history, rows


def _rank_snapshot_users(
    pipeline: RecommenderPipeline, snapshot: Snapshot, store: EventStore, *, chunk: int = 2000
) -> Ranked:
    """The pipeline's two-stage ranking of every customer it knows with history, as of
    the snapshot — the reranker's pair features need the whole log, so they are
    computed once per load, not per request."""
    log, _ = interaction_log_from_store(store, snapshot)
    index = pipeline.index
    generator = next(iter(pipeline.generators.values()))
    if generator.item_ids_ is None or not np.array_equal(
        np.asarray(generator.item_ids_).astype(str), index.item_ids.astype(str)
    ):
        raise InputError("pipeline", "index", "generators and index disagree on items")
    as_of = pd.Timestamp(snapshot.as_of)
    half_life = float(pipeline.settings.get("half_life_days", 14.0))
    history = interaction_matrix(
        log, index, as_of=as_of, half_life_days=half_life, decay=pipeline.decay
    )
    recent = recent_history(log, index, as_of=as_of)
    users = np.flatnonzero(np.diff(history.indptr) > 0)
    ids = np.full((len(users), RANKED_DEPTH), -1, dtype=np.int32)
    scores = np.zeros((len(users), RANKED_DEPTH), dtype=np.float32)
    for start in range(0, len(users), chunk):
        block = users[start : start + chunk]
        got, got_scores = pipeline.rank(block, history, recent, log, as_of=as_of, n=RANKED_DEPTH)
        width = min(got.shape[1], RANKED_DEPTH)
        ids[start : start + len(block), :width] = got[:, :width]
        scores[start : start + len(block), :width] = got_scores[:, :width]
    rows = {str(index.user_ids[u]): k for k, u in enumerate(users)}
    logger.info("two-stage ranking of %d customers at load", len(rows))
    return Ranked(ids=ids, scores=scores, rows=rows)


def content_by_slot(content: pd.DataFrame) -> dict[str, list[str]]:
    """Active content ids of each slot."""
    if content.empty:
        return {}
    return {
        str(slot): [str(c) for c in group["content_id"]]
        for slot, group in content.groupby("slot", sort=True)
    }


def active_content(store: EventStore) -> pd.DataFrame:
    content = store.read("content")
    if content.empty:
        return content
    active = content["active"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    content = content[active].reset_index(drop=True)
    return content[["content_id", "slot", "text", "attributes"]].astype(
        {"content_id": str, "slot": str}
    )
