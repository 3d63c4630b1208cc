"""Simulated browsing: sessions, the view -> cart -> purchase funnel, anonymous visits.

Sessions start at each person's usual hour while they are active; views follow the
person's category preferences and price sensitivity; anonymous sessions log in (or
not), and a few devices are shared by two persons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulation.catalog import (
    _Catalog,
    _in_stock,
    _price_shopped,
    _sample_categories,
    _sample_items,
    _sampler,
)
from simulation.columns import _col, _concat, _pick
from simulation.config import SimulationConfig
from simulation.parameters import (
    _BUY_BASE,
    _CART_BASE,
    _CART_PREFERRED_MULT,
    _CHANNEL,
    _DAY,
    _ETYPE,
    _HEAVY_BUY_MULT,
    _HOUR,
    _LISTING_ITEMS,
    _P_HOME,
    _P_LOGIN,
    _REMOVE_P,
    _VIEWS_MEAN,
    _WISHLIST_P,
)
from simulation.people import _People


@dataclass(frozen=True)
class _Browse:
    rows: dict[str, np.ndarray]
    anon_owner: np.ndarray  # (A,) record of each anonymous session id
    anon_login: np.ndarray  # (A,) bool: the session logged in
    shared: list[tuple[int, int, int]]  # (anon code, record a, record b)
    n_orders: int


def _simulate_sessions(
    cfg: SimulationConfig, rng: np.random.Generator, people: _People, cat: _Catalog
) -> _Browse:
    start = int(cfg.start.timestamp())
    end = start + cfg.days * _DAY
    n_per = people.n_persons
    signup_p = people.signup[:n_per]
    active_from = np.maximum(start, signup_p)
    active_to = np.minimum(end, people.lapse) - _HOUR
    span = np.maximum(active_to - active_from, 0)
    n_sess = rng.poisson(people.rate * span / _DAY)

    # session start: a uniform day in the active span, at the person's usual hour
    sp = np.repeat(np.arange(n_per), n_sess)
    t = active_from[sp] + (rng.random(len(sp)) * span[sp]).astype(np.int64)
    tod = ((people.hour_utc[sp] + rng.normal(0.0, 2.5, len(sp))) * _HOUR).astype(np.int64)
    t = t - t % _DAY + tod % _DAY
    keep = (t >= active_from[sp]) & (t < active_to[sp])
    sp, t0 = sp[keep], t[keep]
    n_s = len(sp)

    dup = people.dup_record[sp]
    to_dup = (dup >= 0) & (rng.random(n_s) < 0.4)
    to_dup &= t0 >= people.signup[np.maximum(dup, 0)]
    record = np.where(to_dup, dup, sp)
    anonymous = rng.random(n_s) < cfg.anonymous_session_share
    app = ~anonymous & (rng.random(n_s) < 0.35)
    channel = np.where(app, _CHANNEL["app"], _CHANNEL["web"])
    device = np.where(
        app,
        3 + (rng.random(n_s) < 0.45),
        _pick(rng, np.tile([0.5, 0.42, 0.08], (n_s, 1))),
    )
    n_pages = 1 + rng.binomial(2, 0.3, n_s)
    n_views = 1 + rng.poisson(_VIEWS_MEAN, n_s)

    # product views and the funnel, one row per view
    vs = np.repeat(np.arange(n_s), n_views)
    n_v = len(vs)
    first_view = np.cumsum(n_views) - n_views
    j = np.arange(n_v) - first_view[vs]
    person_v = sp[vs]
    vcat = _sample_categories(people.pref, person_v, rng.random(n_v))
    popular = _sampler(cat.category, cat.popularity, len(cat.names))
    shown = np.stack([_sample_items(popular, vcat, rng.random(n_v)) for _ in range(_LISTING_ITEMS)])
    item = _price_shopped(cat, shown, rng.random(n_v) < people.sensitivity[person_v])
    heavy_v = people.heavy[person_v]
    p_cart = _CART_BASE * np.where(vcat == people.preferred[person_v], _CART_PREFERRED_MULT, 1.0)
    p_cart = p_cart * np.where(heavy_v, _HEAVY_BUY_MULT, 1.0)
    available = _in_stock(cat, item, t0[vs], 6 * _HOUR)  # a session lasts minutes
    cart = (rng.random(n_v) < p_cart) & available
    wish = ~cart & (rng.random(n_v) < _WISHLIST_P)
    removed = cart & (rng.random(n_v) < _REMOVE_P)
    reference = float(np.median(cat.price))
    expensive = np.maximum(np.log(cat.price[item] / reference), 0.0)
    p_buy = _BUY_BASE * np.exp(-2.0 * people.sensitivity[person_v] * expensive)
    p_buy = np.minimum(p_buy * np.where(heavy_v, _HEAVY_BUY_MULT, 1.0), 1.0)
    bought = cart & ~removed & (rng.random(n_v) < p_buy)
    qty = 1 + (rng.random(n_v) < 0.15) + (rng.random(n_v) < 0.05)

    has_purchase = np.bincount(vs, weights=bought, minlength=n_s) > 0
    order_code = np.cumsum(has_purchase) - 1
    login = anonymous & (has_purchase | (rng.random(n_s) < cfg.anonymous_login_share))
    login_at = rng.integers(0, n_views + 1)  # before this view (n_views: after all)
    anon_code = np.cumsum(anonymous) - 1

    # rows: (session, order key within session)
    parts: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray | float]]] = []
    ps = np.repeat(np.arange(n_s), n_pages)
    pk = np.arange(len(ps)) - (np.cumsum(n_pages) - n_pages)[ps]
    page = _pick(rng, np.tile([0.5, 0.35, 0.15], (len(ps), 1)))
    parts.append((ps, pk.astype(float), {"etype": _ETYPE["page_view"], "props": _P_HOME + page}))
    vkey = (n_pages[vs] + 3 * j).astype(float)
    parts.append((vs, vkey, {"etype": _ETYPE["product_view"], "item": item}))
    unit = cat.price[item]
    for mask, etype, shift in (
        (cart, "add_to_cart", 1.0),
        (wish, "add_to_wishlist", 1.0),
        (removed, "remove_from_cart", 2.0),
    ):
        cols: dict[str, np.ndarray | float] = {"etype": _ETYPE[etype], "item": item[mask]}
        if etype != "add_to_wishlist":
            cols |= {"qty": qty[mask], "price": unit[mask]}
        parts.append((vs[mask], vkey[mask] + shift, cols))
    ls = np.flatnonzero(login)
    login_key = (n_pages + 3 * login_at - 0.5).astype(float)
    parts.append((ls, login_key[ls], {"etype": _ETYPE["login"], "props": _P_LOGIN}))
    cs = np.flatnonzero(has_purchase)
    end_key = (n_pages + 3 * n_views).astype(float)
    parts.append((cs, end_key[cs] + 1, {"etype": _ETYPE["checkout"], "order": order_code[cs]}))
    bs = vs[bought]
    parts.append(
        (
            bs,
            end_key[bs] + 2 + j[bought],
            {
                "etype": _ETYPE["purchase"],
                "item": item[bought],
                "qty": qty[bought],
                "price": unit[bought],
                "order": order_code[bs],
            },
        )
    )

    session = np.concatenate([p[0] for p in parts])
    key = np.concatenate([p[1] for p in parts])
    blocks = [_col(len(p[0]), **p[2]) for p in parts]
    rows = _concat(blocks)
    srt = np.lexsort((key, session))
    rows = {name: col[srt] for name, col in rows.items()}
    session, key = session[srt], key[srt]

    # time: session start plus cumulated gaps of 2 s + Exp(35 s)
    gaps = 2 + rng.exponential(35.0, len(session)).astype(np.int64)
    cum = np.cumsum(gaps)
    first_cum = cum[np.searchsorted(session, np.arange(n_s))]  # every session has rows
    rows["ts"] = t0[session] + cum - first_cum[session]
    known = ~anonymous[session] | (login[session] & (key >= login_key[session]))
    rows["cust"] = np.where(known, record[session], -1)
    rows["channel"] = channel[session]
    rows["device"] = device[session]

    # shared devices: a logged-in session re-uses another person's anonymous id
    code = anon_code.copy()
    shared: list[tuple[int, int, int]] = []
    logged = np.flatnonzero(login)
    if cfg.shared_devices and len(logged) >= 2:
        pool = rng.permutation(logged)
        pairs = pool[: len(pool) // 2 * 2].reshape(-1, 2)
        pairs = pairs[sp[pairs[:, 0]] != sp[pairs[:, 1]]][: cfg.shared_devices]
        code[pairs[:, 1]] = anon_code[pairs[:, 0]]
        shared = [(int(anon_code[a]), int(record[a]), int(record[b])) for a, b in pairs.tolist()]
    rows["anon"] = np.where(anonymous[session], code[session], -1)
    # per anonymous id: its owner, or -1 for ids overwritten by a shared device
    anon_owner = record[anonymous].copy()
    anon_login = login[anonymous].copy()
    if shared:
        gone = anon_code[pairs[:, 1]]
        anon_owner[gone] = -1
        anon_login[gone] = False
    inside = rows["ts"] < end
    return _Browse(
        rows={name: col[inside] for name, col in rows.items()},
        anon_owner=anon_owner,
        anon_login=anon_login,
        shared=shared,
        n_orders=int(has_purchase.sum()),
    )
