"""The simulated catalog: items, prices, popularity and stock-outs, and draws from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from features.data.contracts import CATALOG
from simulation.columns import _col, _ids, _take, _to_pandas
from simulation.config import SimulationConfig
from simulation.parameters import (
    _ADJECTIVES,
    _ALWAYS,
    _BRAND_HEADS,
    _BRAND_TAILS,
    _CATEGORY_NAMES,
    _DAY,
    _ETYPE,
    _NEVER,
    _P_BACK,
    _P_OUT,
)


@dataclass(frozen=True)
class _Catalog:
    category: np.ndarray  # (n_items,) int64 category index
    price: np.ndarray  # (n_items,) float64 list price
    popularity: np.ndarray  # (n_items,) float64 view weight within its category
    brand: np.ndarray  # (n_items,) int64 brand index
    created: np.ndarray  # (n_items,) int64 epoch seconds
    out: np.ndarray  # (n_items,) int64 out-of-stock start (_NEVER: never out)
    back: np.ndarray  # (n_items,) int64 back-in-stock time (_NEVER: not in window)
    names: tuple[str, ...]  # category names
    brands: tuple[str, ...]
    medians: np.ndarray  # (n_categories,) median list price per category


@dataclass(frozen=True)
class _Sampler:
    """Draws items from per-category weights: items sorted by category, cumulated."""

    order: np.ndarray  # item index in category-sorted order
    cum: np.ndarray  # cumulative weight along ``order``
    lo: np.ndarray  # (n_categories,) first position of each category
    hi: np.ndarray  # (n_categories,) one past the last position
    before: np.ndarray  # (n_categories,) cumulative weight before the category
    total: np.ndarray  # (n_categories,) total weight of the category


def _make_catalog(cfg: SimulationConfig, rng: np.random.Generator) -> _Catalog:
    n, k = cfg.n_items, cfg.n_categories
    start = int(cfg.start.timestamp())
    end = start + cfg.days * _DAY
    names = tuple(
        _CATEGORY_NAMES[i] if k <= len(_CATEGORY_NAMES) else f"cat_{i:02d}" for i in range(k)
    )
    brands = tuple(h + t for h in _BRAND_HEADS for t in _BRAND_TAILS)[: cfg.n_brands]
    category = rng.permutation(np.arange(n) % k)
    medians = np.round(np.exp(rng.uniform(np.log(12.0), np.log(150.0), k)), 2)
    price = np.maximum(np.floor(medians[category] * rng.lognormal(0.0, 0.45, n)) + 0.99, 1.99)
    popularity = rng.lognormal(0.0, 1.0, n)
    brand = rng.integers(0, len(brands), n)
    created = start - rng.integers(_DAY, 720 * _DAY, n)

    out = np.full(n, _NEVER, np.int64)
    back = np.full(n, _NEVER, np.int64)
    n_out = int(round(cfg.stock_out_share * n))
    chosen = rng.choice(n, n_out, replace=False)
    initially = rng.random(n_out) < 0.25
    span = end - start
    out_at = start + (rng.uniform(0.05, 0.9, n_out) * span).astype(np.int64)
    comes_back = rng.random(n_out) < 0.7
    back_at = out_at + rng.integers(_DAY, 7 * _DAY, n_out)
    out[chosen] = np.where(initially, _ALWAYS, out_at)
    back_initial = start + (rng.uniform(0.1, 0.6, n_out) * span).astype(np.int64)
    back[chosen] = np.where(
        initially, back_initial, np.where(comes_back & (back_at < end), back_at, _NEVER)
    )
    return _Catalog(category, price, popularity, brand, created, out, back, names, brands, medians)


def _sampler(category: np.ndarray, weights: np.ndarray, k: int) -> _Sampler:
    order = np.argsort(category, kind="stable")
    w = weights[order]
    cum = np.cumsum(w)
    counts = np.bincount(category, minlength=k)
    hi = np.cumsum(counts)
    lo = hi - counts
    before = cum[lo] - w[lo]
    total = np.bincount(category, weights=weights, minlength=k)
    return _Sampler(order, cum, lo, hi, before, total)


def _sample_items(s: _Sampler, cats: np.ndarray, u: np.ndarray) -> np.ndarray:
    target = s.before[cats] + u * s.total[cats]
    pos = np.searchsorted(s.cum, target, side="right")
    return s.order[np.clip(pos, s.lo[cats], s.hi[cats] - 1)]


def _price_shopped(cat: _Catalog, shown: np.ndarray, cheapest: np.ndarray) -> np.ndarray:
    """The item a shopper opens from a listing: ``shown`` (k, n) holds k items drawn
    from the category per view; the cheapest where ``cheapest`` (drawn with the
    person's price sensitivity), else the priciest.

    Price-sensitive shoppers sort by price and open sale items; the others trade up.
    So a bargain hunter's views sit below the category's typical price and a
    convenience seeker's above it -- the trace a price-sensitivity feature can read.
    """
    prices = cat.price[shown]
    columns = np.arange(shown.shape[1])
    low = shown[prices.argmin(axis=0), columns]
    high = shown[prices.argmax(axis=0), columns]
    return np.where(cheapest, low, high)


def _sample_categories(pref: np.ndarray, person: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One category per event from its person's preference row (flat searchsorted)."""
    n_persons, k = pref.shape
    cdf = np.cumsum(pref, axis=1)
    cdf[:, -1] = 1.0
    flat = (np.arange(n_persons)[:, None] + cdf).ravel()
    pos = np.searchsorted(flat, person + u, side="right")
    return np.minimum(pos - person * k, k - 1)


def _in_stock(cat: _Catalog, item: np.ndarray, t: np.ndarray, horizon: int) -> np.ndarray:
    """Whether ``item`` is in stock throughout ``[t, t + horizon)`` (epoch seconds)."""
    out = cat.out[item]
    return ~((t + horizon > out) & (t < cat.back[item]))


def _stock_rows(cfg: SimulationConfig, cat: _Catalog, inventory: int) -> dict[str, np.ndarray]:
    start = int(cfg.start.timestamp())
    end = start + cfg.days * _DAY
    goes = np.flatnonzero((cat.out >= start) & (cat.out < end))
    comes = np.flatnonzero((cat.back >= start) & (cat.back < end))
    item = np.concatenate([goes, comes])
    return _col(
        len(item),
        ts=np.concatenate([cat.out[goes], cat.back[comes]]),
        etype=_ETYPE["stock_change"],
        anon=inventory,
        item=item,
        props=np.concatenate([np.full(len(goes), _P_OUT), np.full(len(comes), _P_BACK)]),
    )


def _catalog_frame(cat: _Catalog, rng: np.random.Generator) -> pd.DataFrame:
    n = len(cat.price)
    brand = np.array(cat.brands, dtype=object)[cat.brand]
    adjective = np.array(_ADJECTIVES, dtype=object)[rng.integers(0, len(_ADJECTIVES), n)]
    noun = pd.Series(np.array(cat.names, dtype=object)[cat.category]).str.replace("_", " ")
    title = pd.Series(brand) + " " + pd.Series(adjective) + " " + noun.str.title()
    table = pa.table(
        {
            "item_id": _ids("i", np.arange(n), 6),
            "title": pa.array(title.to_numpy(dtype=object), pa.string()),
            "category": _take(cat.names, cat.category),
            "brand": pa.array(brand, pa.string()),
            "price": pa.array(cat.price),
            "in_stock": pa.array(cat.out != _ALWAYS),
            "created_ts": pa.array(cat.created).cast(pa.timestamp("s", tz="UTC")),
            "properties": pa.nulls(n, pa.string()),
        }
    )
    frame = _to_pandas(table.select(CATALOG.names))
    frame["created_ts"] = frame["created_ts"].astype("datetime64[us, UTC]")
    return frame
