"""Candidates and reranker features for (user, item) pairs, from an interaction log.

Pure (DataFrame / CSR in, DataFrame out), so training and serving share it.

The log is any table of ``user_id, item_id, ts, event_type`` (plus ``price`` when
known); ``items`` gives ``item_id, category, price`` where known. Users and items
are addressed by their row / column in one shared index (sorted ids), so every
join here is on integers.

Features are computed from the log *before* ``as_of`` only — in training, the
reranker's labels come from after it, so no feature sees the label period.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.data.store import EventStore, connect
from features.errors import InputError
from features.snapshot import Snapshot
from models.recommender import Recommender, mask_rows, top_k

EVENT_WEIGHTS: dict[str, float] = {
    "product_view": 1.0,
    "add_to_wishlist": 2.0,
    "add_to_cart": 3.0,
    "checkout": 3.0,
    "purchase": 5.0,
}
MISSING_RANK = 1000.0

Decay = Literal["last_activity", "as_of", "none"]
"""Where an interaction's age is measured from: the user's own last interaction in the
log (a customer inactive for a year keeps the shape of their history), the cut-off
``as_of`` (recent users dominate; long-inactive histories fade towards zero), or no
decay at all."""
DECAYS: tuple[str, ...] = ("last_activity", "as_of", "none")


@dataclass(frozen=True)
class Index:
    """Shared user and item ids (sorted); rows and columns of every matrix."""

    user_ids: np.ndarray
    item_ids: np.ndarray

    @classmethod
    def build(cls, log: pd.DataFrame, items: pd.DataFrame | None = None) -> Index:
        item_values = [log["item_id"].astype(str).to_numpy()]
        if items is not None:
            item_values.append(items["item_id"].astype(str).to_numpy())
        return cls(
            np.unique(log["user_id"].astype(str).to_numpy()),
            np.unique(np.concatenate(item_values)),
        )

    def encode(self, log: pd.DataFrame) -> pd.DataFrame:
        """The log with integer ``u`` and ``i`` columns (rows of unknown ids dropped)."""
        u, known_user = _positions(self.user_ids, log["user_id"])
        i, known_item = _positions(self.item_ids, log["item_id"])
        return log.assign(u=u, i=i)[known_user & known_item]


def _positions(sorted_ids: np.ndarray, ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Position of each id in ``sorted_ids``, and whether it is there at all."""
    values = ids.astype(str).to_numpy()
    positions = np.minimum(np.searchsorted(sorted_ids, values), max(len(sorted_ids) - 1, 0))
    return positions, sorted_ids[positions] == values


def _item_attribute(
    items: pd.DataFrame | None, index: Index, column: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """(item column, value) of every item with a known ``column`` (last row wins)."""
    if items is None or column not in items.columns:
        return None
    known = items.dropna(subset=[column]).drop_duplicates("item_id", keep="last")
    cols, match = _positions(index.item_ids, known["item_id"])
    return cols[match], known[column].to_numpy()[match]


def decay_factor(
    coded: pd.DataFrame, *, as_of: pd.Timestamp, half_life_days: float, decay: Decay
) -> np.ndarray:
    """0.5^(age / half-life) per row of an encoded log (``u``, ``ts``), float64.

    ``decay`` says where age is measured from (:data:`Decay`). Measured from the
    user's last activity, every user's most recent interaction weighs 1 however long
    ago it was, so no history underflows to zero; the reranker still sees how long
    ago that was through its recency features.
    """
    if decay not in DECAYS:
        raise InputError("decay", decay, f"expected one of {DECAYS}")
    if decay == "none" or coded.empty:
        return np.ones(len(coded))
    if decay == "as_of":
        reference = pd.Series(as_of, index=coded.index)
    else:
        reference = coded.groupby("u")["ts"].transform("max")
    age = (reference - coded["ts"]).dt.total_seconds().to_numpy() / 86400.0
    return np.power(0.5, age / half_life_days)


def interaction_matrix(
    log: pd.DataFrame,
    index: Index,
    *,
    as_of: pd.Timestamp,
    weights: dict[str, float] | None = None,
    half_life_days: float = 14.0,
    decay: Decay = "last_activity",
) -> sp.csr_matrix:
    """float32 users × items: Σ event weight × 0.5^(age / half-life), events before as_of
    (age as :func:`decay_factor` measures it)."""
    weights = weights or EVENT_WEIGHTS
    coded = index.encode(log[log["ts"] < as_of])
    w = coded["event_type"].map(weights).fillna(0.0).to_numpy(dtype=np.float64)
    values = w * decay_factor(coded, as_of=as_of, half_life_days=half_life_days, decay=decay)
    keep = values > 0
    matrix = sp.csr_matrix(
        (
            values[keep].astype(np.float32),
            (coded["u"].to_numpy()[keep], coded["i"].to_numpy()[keep]),
        ),
        shape=(len(index.user_ids), len(index.item_ids)),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


def item_categories(items: pd.DataFrame | None, index: Index) -> np.ndarray:
    """Category code per item column (-1 unknown)."""
    codes = np.full(len(index.item_ids), -1, dtype=np.int64)
    known = _item_attribute(items, index, "category")
    if known is not None:
        cols, categories = known
        codes[cols] = pd.factorize(pd.Series(categories).astype(str))[0]
    return codes


def item_prices(items: pd.DataFrame | None, index: Index) -> np.ndarray | None:
    """Price per item column (NaN unknown), or None without a price column."""
    known = _item_attribute(items, index, "price")
    if known is None:
        return None
    prices = np.full(len(index.item_ids), np.nan)
    cols, values = known
    prices[cols] = values.astype(float)
    return prices


# ----------------------------------------------------------------------------- candidates
def generator_candidates(
    name: str,
    model: Recommender,
    users: np.ndarray,
    history: sp.csr_matrix,
    *,
    k: int,
    exclude: sp.csr_matrix | None,
    model_users: np.ndarray | None = None,
) -> pd.DataFrame:
    """Long rows ``u, i, <name>_score, <name>_rank`` of one generator's top k.

    ``history`` is what the generator scores from: the full interaction matrix, or
    e.g. :func:`recent_history` to ask item-kNN for neighbours of recent items.
    ``model_users`` are the model's own rows of ``users`` (default: the same;
    ``-1``: a user the model scores from the history alone, as unseen at fit time).
    """
    ids, scores = model.recommend(
        users if model_users is None else model_users,
        history[users],
        n=k,
        exclude=exclude[users] if exclude is not None else None,
    )
    return _long(name, users, ids, scores)


def recent_history(
    log: pd.DataFrame, index: Index, *, as_of: pd.Timestamp, last: int = 5
) -> sp.csr_matrix:
    """Each user's ``last`` most recent items before ``as_of`` (weight 1, most recent
    first counts most: weight 1/rank), users × items."""
    coded = index.encode(log[log["ts"] < as_of]).sort_values(["u", "ts"], kind="stable")
    coded = coded.drop_duplicates(["u", "i"], keep="last")
    rank = coded.groupby("u").cumcount(ascending=False).to_numpy()
    keep = rank < last
    matrix = sp.csr_matrix(
        (
            (1.0 / (1.0 + rank[keep])).astype(np.float32),
            (coded["u"].to_numpy()[keep], coded["i"].to_numpy()[keep]),
        ),
        shape=(len(index.user_ids), len(index.item_ids)),
        dtype=np.float32,
    )
    matrix.sort_indices()
    return matrix


def category_popularity_candidates(
    users: np.ndarray,
    history: sp.csr_matrix,
    categories: np.ndarray,
    *,
    k: int,
    exclude: sp.csr_matrix | None,
) -> pd.DataFrame:
    """Most popular items of each user's top category (by their own history)."""
    popularity = np.asarray(history.sum(axis=0)).ravel().astype(np.float32)
    known = categories >= 0
    n_categories = int(categories.max()) + 1 if known.any() else 0
    if n_categories == 0:
        return _long(
            "catpop", users, np.empty((len(users), 0), np.int64), np.empty((len(users), 0))
        )
    onehot = sp.csr_matrix(
        (np.ones(known.sum(), np.float32), (np.flatnonzero(known), categories[known])),
        shape=(len(categories), n_categories),
    )
    per_category = np.asarray((history[users] @ onehot).todense())
    top_category = np.where(per_category.max(axis=1) > 0, per_category.argmax(axis=1), -1)
    block = np.where(
        categories[None, :] == top_category[:, None], popularity[None, :], -np.inf
    ).astype(np.float32)
    block[block <= 0] = -np.inf
    if exclude is not None:
        mask_rows(block, exclude[users])
    top = top_k(block, min(k, block.shape[1]))
    scores = np.take_along_axis(block, top, axis=1)
    ids = np.where(np.isfinite(scores), top, -1)
    return _long("catpop", users, ids, scores)


def own_history_candidates(users: np.ndarray, history: sp.csr_matrix, *, k: int) -> pd.DataFrame:
    """The user's own items ranked by their decayed, weighted interaction."""
    block = np.asarray(history[users].todense(), dtype=np.float32)
    block[block <= 0] = -np.inf
    top = top_k(block, min(k, block.shape[1]))
    scores = np.take_along_axis(block, top, axis=1)
    return _long("own", users, np.where(np.isfinite(scores), top, -1), scores)


def _long(name: str, users: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    n = ids.shape[1]
    valid = ids.ravel() >= 0
    return pd.DataFrame(
        {
            "u": np.repeat(users, n)[valid],
            "i": ids.ravel()[valid],
            f"{name}_score": scores.ravel()[valid].astype(np.float64),
            f"{name}_rank": np.tile(np.arange(1, n + 1), len(users))[valid].astype(np.float64),
        }
    )


def union_candidates(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Union of generators' rows, one row per (u, i); a generator that did not
    propose the item has NaN score and rank ``MISSING_RANK``."""
    merged: pd.DataFrame | None = None
    for part in parts:
        merged = part if merged is None else merged.merge(part, on=["u", "i"], how="outer")
    if merged is None:
        return pd.DataFrame({"u": [], "i": []})
    rank_columns = [c for c in merged.columns if c.endswith("_rank")]
    merged[rank_columns] = merged[rank_columns].fillna(MISSING_RANK)
    return merged.sort_values(["u", "i"], ignore_index=True)


# ----------------------------------------------------------------------------- features
def pair_features(
    candidates: pd.DataFrame,
    log: pd.DataFrame,
    index: Index,
    categories: np.ndarray,
    *,
    as_of: pd.Timestamp,
    prices: np.ndarray | None = None,
    half_life_days: float = 14.0,
    decay: Decay = "last_activity",
) -> pd.DataFrame:
    """Candidates with behavioural features from the log before ``as_of``.

    Per (user, item): views, carts, purchases, days since the last interaction,
    decayed weighted strength. Per (user, item category): events, affinity share,
    days since. Per item: distinct users and events in the last 7 / 30 days,
    conversion (purchases per view, smoothed), price and price / user's average
    order value. Per user: events, distinct items.
    """
    past = index.encode(log[log["ts"] < as_of])
    age = (as_of - past["ts"]).dt.total_seconds().to_numpy() / 86400.0
    weight = past["event_type"].map(EVENT_WEIGHTS).fillna(0.0).to_numpy()
    past = past.assign(
        age=age,
        decayed=weight
        * decay_factor(past, as_of=as_of, half_life_days=half_life_days, decay=decay),
        view=(past["event_type"] == "product_view").to_numpy(),
        cart=(past["event_type"] == "add_to_cart").to_numpy(),
        buy=(past["event_type"] == "purchase").to_numpy(),
        c=categories[past["i"].to_numpy()],
    )
    out = candidates.copy()

    pair = past.groupby(["u", "i"]).agg(
        ui_events=("age", "size"),
        ui_views=("view", "sum"),
        ui_carts=("cart", "sum"),
        ui_purchases=("buy", "sum"),
        ui_days_since=("age", "min"),
        ui_strength=("decayed", "sum"),
    )
    out = out.join(pair, on=["u", "i"])
    for column in ("ui_events", "ui_views", "ui_carts", "ui_purchases", "ui_strength"):
        out[column] = out[column].fillna(0.0)

    categorised = past[past["c"] >= 0]
    user_category = categorised.groupby(["u", "c"]).agg(
        uc_events=("age", "size"), uc_strength=("decayed", "sum"), uc_days_since=("age", "min")
    )
    user_total = categorised.groupby("u")["decayed"].sum().rename("u_strength")
    out["c"] = categories[out["i"].to_numpy()]
    out = out.join(user_category, on=["u", "c"]).join(user_total, on="u")
    out["uc_affinity"] = out["uc_strength"] / out["u_strength"]
    out["uc_events"] = out["uc_events"].fillna(0.0)

    recent = past[past["age"] <= 30]
    item_stats = pd.DataFrame(
        {
            "item_users_30d": recent.groupby("i")["u"].nunique(),
            "item_events_7d": past[past["age"] <= 7].groupby("i").size(),
            "item_events_30d": recent.groupby("i").size(),
            "item_views_30d": recent.groupby("i")["view"].sum(),
            "item_purchases_30d": recent.groupby("i")["buy"].sum(),
        }
    ).fillna(0.0)
    out = out.join(item_stats, on="i")
    for column in item_stats.columns:
        out[column] = out[column].fillna(0.0)
    store_rate = (item_stats["item_purchases_30d"].sum() + 1) / (
        item_stats["item_views_30d"].sum() + 1
    )
    out["item_conversion"] = (out["item_purchases_30d"] + 20 * store_rate) / (
        out["item_views_30d"] + 20
    )

    user_stats = past.groupby("u").agg(
        u_events=("age", "size"), u_items=("i", "nunique"), u_days_since=("age", "min")
    )
    out = out.join(user_stats, on="u")
    out["item_users_all"] = out["i"].map(past.groupby("i")["u"].nunique()).fillna(0.0)
    # Item popularity around the user's own last activity, not the store's latest:
    # users of a long log were active at different times.
    user_last = out["u_days_since"].to_numpy()
    for days in (7, 30):
        out[f"item_events_near_user_{days}d"] = _events_in_window(
            past["i"].to_numpy(), past["age"].to_numpy(), out["i"].to_numpy(), user_last, days
        )
    first_seen = past.groupby("i")["age"].max()
    out["item_age_at_user_days"] = out["i"].map(first_seen).to_numpy() - user_last
    if prices is not None:
        out["item_price"] = prices[out["i"].to_numpy()]
        bought = past[past["buy"]]
        aov = (
            pd.Series(prices[bought["i"].to_numpy()], index=bought.index)
            .groupby(bought["u"])
            .mean()
        )
        out["price_vs_aov"] = out["item_price"] / out["u"].map(aov)
    return out.drop(columns=["c", "u_strength", "uc_strength"])


def _events_in_window(
    item: np.ndarray, age: np.ndarray, query_item: np.ndarray, query_age: np.ndarray, days: float
) -> np.ndarray:
    """Events of ``query_item`` with age in [query_age, query_age + days], vectorised:
    one sorted (item, age) key array and two binary searches per query."""
    span = float(np.nanmax(age) if len(age) else 0.0) + days + 1.0
    keys = np.sort(item.astype(np.float64) * span + age)
    base = query_item.astype(np.float64) * span
    ages = np.nan_to_num(query_age, nan=0.0)
    upper = np.searchsorted(keys, base + ages + days, side="right")
    lower = np.searchsorted(keys, base + ages, side="left")
    return (upper - lower).astype(np.float64)


def labels_for(candidates: pd.DataFrame, relevant: sp.csr_matrix) -> np.ndarray:
    """1 where the candidate (u, i) is relevant, else 0."""
    if candidates.empty:
        return np.zeros(0, dtype=np.int64)
    values = relevant[candidates["u"].to_numpy(), candidates["i"].to_numpy()]
    return (np.asarray(values).ravel() > 0).astype(np.int64)


def ranked_lists(
    candidates: pd.DataFrame, scores: np.ndarray, users: np.ndarray, n: int
) -> np.ndarray:
    """(len(users), n) item columns by descending score per user, ``-1`` padded."""
    frame = pd.DataFrame(
        {"u": candidates["u"].to_numpy(), "i": candidates["i"].to_numpy(), "s": scores}
    )
    frame = frame.sort_values(["u", "s", "i"], ascending=[True, False, True], kind="stable")
    frame["rank"] = frame.groupby("u").cumcount()
    frame = frame[frame["rank"] < n]
    out = np.full((len(users), n), -1, dtype=np.int64)
    position = pd.Series(np.arange(len(users)), index=users)
    rows = position.reindex(frame["u"].to_numpy()).to_numpy()
    known = ~np.isnan(rows)
    out[rows[known].astype(np.int64), frame["rank"].to_numpy()[known]] = frame["i"].to_numpy()[
        known
    ]
    return out


# ----------------------------------------------------------------------------- the log
def interaction_log_from_store(
    store: EventStore, snapshot: Snapshot
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The interaction log a recommender trains on, from the event store.

    Events are put on canonical customer ids with the snapshot's identity table,
    restricted to customers with personalisation consent and to product events
    before the snapshot's ``as_of``; items carry the snapshot's category and price.
    """
    con = connect()
    try:
        store.register(con, "events", "events")
        mapping = snapshot.identity.mapping
        ids = mapping[mapping["source_type"].isin(["customer", "anonymous"])]
        personal = snapshot.customers.loc[snapshot.customers["personalised"], ["customer_id"]]
        con.register("ids", ids)
        con.register("personal", personal)
        log = con.execute(
            """
            SELECT m.canonical_id AS user_id, e.item_id, e.ts, e.event_type
            FROM events e
            JOIN ids m ON m.source_id = coalesce(e.customer_id, e.anonymous_id)
                      AND m.source_type = CASE WHEN e.customer_id IS NULL
                                               THEN 'anonymous' ELSE 'customer' END
            JOIN personal p ON p.customer_id = m.canonical_id
            WHERE e.ts < $as_of AND e.item_id IS NOT NULL AND e.event_type IN (
                'product_view', 'add_to_wishlist', 'add_to_cart', 'checkout', 'purchase')
            ORDER BY e.ts
            """,
            {"as_of": snapshot.as_of},
        ).df()
    finally:
        con.close()
    items = snapshot.items[["item_id", "category", "price"]]
    return log, items
