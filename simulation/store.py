"""The simulated store, assembled: :func:`simulate` and the planted truth it records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.data.contracts import CHANNELS, EVENT_TYPES, EVENTS
from simulation.browsing import _Browse, _simulate_sessions
from simulation.campaigns import (
    _active_subjects,
    _campaign_shop,
    _content_frame,
    _Email,
    _open_probability,
    _simulate_campaigns,
    _subject_effects,
    subject_traits,
)
from simulation.catalog import _Catalog, _catalog_frame, _make_catalog, _stock_rows
from simulation.columns import _concat, _ids, _iso, _iso_text, _large, _take, _to_pandas
from simulation.config import SimulationConfig
from simulation.defects import _malformed_rows
from simulation.parameters import (
    _ALWAYS,
    _BAD_TIMESTAMPS,
    _BUY_BASE,
    _CART_BASE,
    _CART_PREFERRED_MULT,
    _CLICK,
    _CONVERSION,
    _DAY,
    _DEVICES,
    _ENGAGEMENT_SD,
    _GENERATOR,
    _HEAVY_ACTIVITY_MULT,
    _HEAVY_BUY_MULT,
    _LAPSED_OPEN_PENALTY,
    _LISTING_ITEMS,
    _MARGIN_RATE,
    _NEVER,
    _OFFERS,
    _OPEN_BASE_LOGIT,
    _POLICY_GROUPS,
    _PROPERTIES,
    _REMOVE_P,
    _SUBJECTS,
    _TRAIT_EFFECTS,
    _UNKNOWN_TYPES,
    _UNSUBSCRIBE_P,
    _VIEWS_MEAN,
    _WISHLIST_P,
    CUSTOMER_TYPES,
    INVENTORY_ID,
    MALFORMED_KINDS,
)
from simulation.people import _make_people, _People
from simulation.truth import MalformedRow, Truth

__all__ = ["SimulatedStore", "simulate"]


@dataclass
class SimulatedStore:
    """A simulated store: the four contract tables and the planted truth.

    Attributes
    ----------
    customers : pandas.DataFrame
        ``CUSTOMERS.names`` columns, one row per customer record, sorted by id.
    catalog : pandas.DataFrame
        ``CATALOG.names`` columns, one row per item; ``in_stock`` as of ``start``.
    content : pandas.DataFrame
        ``CONTENT.names`` columns: subject lines and offers.
    events : pandas.DataFrame
        ``EVENTS.names`` columns, sorted by time; raw values (``ts`` is ISO 8601
        text) including the planted malformed rows.
    truth : Truth
        Every planted parameter, JSON-serialisable; :class:`~simulation.truth.Truth`
        documents each key.
    """

    customers: pd.DataFrame
    catalog: pd.DataFrame
    content: pd.DataFrame
    events: pd.DataFrame
    truth: Truth


def _events_table(
    rows: dict[str, np.ndarray],
    kind: np.ndarray,
    rng: np.random.Generator,
    customer_ids: np.ndarray,
    n_anon: int,
    campaign_ids: list[str],
    content_ids: list[str],
) -> pa.Table:
    """Internal codes -> the events contract table (strings, nulls)."""
    n = len(rows["ts"])
    ts = _iso_text(pa.array(rows["ts"]).cast(pa.timestamp("s", tz="UTC")))
    bad_ts = kind == MALFORMED_KINDS.index("bad_timestamp")
    if bad_ts.any():
        text = np.array(_BAD_TIMESTAMPS, dtype=object)[rng.integers(0, 4, int(bad_ts.sum()))]
        ts = pc.replace_with_mask(ts, pa.array(bad_ts), pa.array(text, pa.large_string()))
    position = np.arange(n)
    no_id = kind == MALFORMED_KINDS.index("missing_event_id")
    anon = rows["anon"]
    anon_ids = pc.if_else(
        pa.array(anon == n_anon),
        _large(INVENTORY_ID),
        _ids("anon_", np.where(anon == n_anon, 0, anon), 7),
    )
    columns = {
        "event_id": _ids("e", np.where(no_id, -1, position), 9),
        "ts": ts,
        "event_type": _take(EVENT_TYPES + _UNKNOWN_TYPES, rows["etype"]),
        "customer_id": _take(pa.array(customer_ids, pa.string()), rows["cust"]),
        "anonymous_id": anon_ids,
        "item_id": _ids("i", rows["item"], 6),
        "quantity": pa.array(rows["qty"], mask=rows["qty"] < 0),
        "price": pa.array(rows["price"], from_pandas=True),
        "order_id": _ids("o", rows["order"], 8),
        "campaign_id": _take(campaign_ids, rows["campaign"]),
        "slot": _take(("subject", "offer"), rows["slot"]),
        "content_id": _take(content_ids, rows["content"]),
        "decision_id": _ids("d", rows["decision"], 9),
        "propensity": pa.array(rows["propensity"], from_pandas=True),
        "channel": _take(CHANNELS, rows["channel"]),
        "device": _take(_DEVICES, rows["device"]),
        "properties": _take(_PROPERTIES, rows["props"]),
    }
    return pa.table({name: columns[name] for name in EVENTS.names})


def _world(config: SimulationConfig) -> tuple[list[np.random.Generator], _Catalog, _People]:
    """The store's random streams, catalog and persons: what :func:`simulate` draws first,
    and what :class:`~simulation.responses.Responder` draws a send's outcomes from."""
    # The identity stream (the eighth) came last: spawning it left the others as they were.
    seeds = np.random.SeedSequence(config.seed).spawn(8)
    rngs = [np.random.default_rng(s) for s in seeds]
    cat = _make_catalog(config, rngs[0])
    people = _make_people(config, rngs[1], len(cat.names), rngs[7])
    return rngs, cat, people


def simulate(config: SimulationConfig) -> SimulatedStore:
    """Simulate a store and return its tables and the planted truth.

    Parameters
    ----------
    config : SimulationConfig
        Sizes, shares and the seed; the same config gives identical output.

    Returns
    -------
    SimulatedStore
        ``customers`` (``config.customers`` rows), ``catalog`` (``config.n_items``
        rows), ``content`` (9 subject lines, one inactive, and 4 offers), ``events``
        (sorted by ``ts``; ids ``e000000001`` ...) and ``truth``, every planted
        parameter: a :class:`~simulation.truth.Truth`, which documents each key.
    """
    rngs, cat, people = _world(config)
    start = int(config.start.timestamp())
    end = start + config.days * _DAY

    browse = _simulate_sessions(config, rngs[2], people, cat)
    email = _simulate_campaigns(config, rngs[3], people, cat, browse.n_orders)
    n_anon = len(browse.anon_owner)
    clean = _concat([browse.rows, email.rows, _stock_rows(config, cat, n_anon)])
    bad, bad_kind = _malformed_rows(config, rngs[4], clean, cat)
    rows = _concat([clean, bad])
    kind = np.concatenate([np.full(len(clean["ts"]), -1), bad_kind])
    order = np.argsort(rows["ts"], kind="stable")
    rows = {name: col[order] for name, col in rows.items()}
    kind = kind[order]

    campaign_ids = [f"cmp_{c + 1:03d}" for c in range(len(email.times))]
    content = _content_frame()
    content_ids = content["content_id"].tolist()
    table = _events_table(rows, kind, rngs[5], people.ids, n_anon, campaign_ids, content_ids)
    events = _to_pandas(table)
    truth = _truth(config, people, cat, browse, email, events, kind, campaign_ids, start, end)
    return SimulatedStore(
        customers=people.table,
        catalog=_catalog_frame(cat, rngs[6]),
        content=content,
        events=events,
        truth=truth,
    )


def _per_customer(ids: list[str], values: np.ndarray) -> dict[str, Any]:
    return dict(zip(ids, values.tolist(), strict=True))


def _truth(
    cfg: SimulationConfig,
    people: _People,
    cat: _Catalog,
    browse: _Browse,
    email: _Email,
    events: pd.DataFrame,
    kind: np.ndarray,
    campaign_ids: list[str],
    start: int,
    end: int,
) -> Truth:
    ids = people.ids.tolist()
    per = people.person
    names = np.array(cat.names, dtype=object)
    types = np.array(CUSTOMER_TYPES, dtype=object)
    n_per = people.n_persons

    dups = np.flatnonzero(people.dup_record >= 0)
    identity_links = [[ids[p], ids[people.dup_record[p]]] for p in dups.tolist()]
    anon_ids = _ids("anon_", np.arange(len(browse.anon_owner)), 7).to_pylist()
    shared_codes = {a for a, _, _ in browse.shared}
    owner = browse.anon_owner
    linked = np.flatnonzero(browse.anon_login & (owner >= 0))
    unlinked = np.flatnonzero(~browse.anon_login & (owner >= 0))
    anonymous_links = {anon_ids[a]: ids[owner[a]] for a in linked.tolist() if a not in shared_codes}

    etype = events["event_type"].to_numpy(dtype=object)
    views = int((etype == "product_view").sum())
    carts = int((etype == "add_to_cart").sum())
    organic = (etype == "purchase") & events["campaign_id"].isna().to_numpy()

    bad_rows = np.flatnonzero(kind >= 0)
    event_ids = events["event_id"].to_numpy(dtype=object)
    malformed: list[MalformedRow] = [
        {
            "event_id": None if pd.isna(event_ids[r]) else str(event_ids[r]),
            "kind": MALFORMED_KINDS[kind[r]],
            "row_index": int(r),
        }
        for r in bad_rows.tolist()
    ]

    active = _active_subjects()
    subject_ids = [_SUBJECTS[i][0] for i in active]
    effects = _subject_effects()
    open_p = _open_probability(people.engagement[:, None], effects[None, :], False)
    offer_ids = [o[0] for o in _OFFERS]
    # expected list price of a campaign purchase, per customer type
    person_price = people.pref @ _campaign_shop(cat).category_price
    order_value = {
        t: float(person_price[people.ctype == i].mean()) if (people.ctype == i).any() else 0.0
        for i, t in enumerate(CUSTOMER_TYPES)
    }
    value = {
        t: {
            oid: float(_CONVERSION[i, o] * (order_value[t] * (_MARGIN_RATE - pct / 100) - cost))
            for o, (oid, _, _, pct, cost) in enumerate(_OFFERS)
        }
        for i, t in enumerate(CUSTOMER_TYPES)
    }
    conversion = {
        t: dict(zip(offer_ids, _CONVERSION[i].tolist(), strict=True))
        for i, t in enumerate(CUSTOMER_TYPES)
    }
    lapsing = np.flatnonzero(people.lapse[per] != _NEVER)

    def iso_or_none(t: int) -> str | None:
        return None if t in (_NEVER, _ALWAYS) else _iso(t)

    outages = np.flatnonzero(cat.out != _NEVER)
    return {
        "generator": _GENERATOR,
        "config": cfg.model_dump(mode="json"),
        "window": {"start": _iso(start), "end": _iso(end)},
        "counts": {
            "events": len(events),
            "malformed": len(malformed),
            "customers": len(ids),
            "persons": n_per,
            "items": len(cat.price),
            "campaigns": len(campaign_ids),
            "sends": email.n_sends,
        },
        "categories": list(cat.names),
        "preferred_category": _per_customer(ids, names[people.preferred[per]]),
        "category_preference": _per_customer(ids, np.round(people.pref[per], 6)),
        "customer_type": _per_customer(ids, types[people.ctype[per]]),
        "price_sensitivity": _per_customer(ids, np.round(people.sensitivity[per], 6)),
        "activity_rate": _per_customer(ids, np.round(people.rate[per], 6)),
        "email_engagement": _per_customer(ids, np.round(people.engagement[per], 6)),
        "preferred_hour_utc": _per_customer(ids, people.hour_utc[per]),
        "heavy_buyers": sorted(ids[r] for r in np.flatnonzero(people.heavy[per]).tolist()),
        "lapsing_customers": sorted(ids[r] for r in lapsing.tolist()),
        "lapse_ts": {ids[r]: _iso(int(people.lapse[per[r]])) for r in lapsing.tolist()},
        "identity_links": identity_links,
        "identity_link_via": people.link_via,
        **people.identity_truth,
        "anonymous_links": anonymous_links,
        "unlinked_anonymous": {anon_ids[a]: ids[owner[a]] for a in unlinked.tolist()},
        "shared_devices": [
            {"anonymous_id": anon_ids[a], "customer_ids": [ids[r1], ids[r2]]}
            for a, r1, r2 in browse.shared
        ],
        "inventory_anonymous_id": INVENTORY_ID,
        "stock_outages": [
            {
                "item_id": f"i{i + 1:06d}",
                "out_ts": iso_or_none(int(cat.out[i])),
                "back_ts": iso_or_none(int(cat.back[i])),
            }
            for i in outages.tolist()
        ],
        "funnel": {
            "cart_given_view": _CART_BASE,
            "cart_preferred_category_multiplier": _CART_PREFERRED_MULT,
            "wishlist_given_view_without_cart": _WISHLIST_P,
            "remove_given_cart": _REMOVE_P,
            "purchase_given_kept_cart": _BUY_BASE,
            "price_effect": "P(purchase | kept cart) = purchase_given_kept_cart * "
            "exp(-2 * price_sensitivity * max(0, ln(price / reference_price)))",
            "reference_price": float(np.median(cat.price)),
            "viewed_item": f"{_LISTING_ITEMS} items drawn from the category by popularity; "
            "the cheapest with probability price_sensitivity, else the priciest",
            "heavy_buyer_multiplier": {
                "cart_and_purchase": _HEAVY_BUY_MULT,
                "activity": _HEAVY_ACTIVITY_MULT,
            },
            "product_views_per_session": f"1 + Poisson({_VIEWS_MEAN})",
            "realised": {
                "cart_per_view": carts / views if views else None,
                "organic_purchase_per_cart": int(organic.sum()) / carts if carts else None,
            },
        },
        "subject_traits": {_SUBJECTS[i][0]: subject_traits(_SUBJECTS[i][1]) for i in active},
        "subject_trait_effects": dict(_TRAIT_EFFECTS),
        "best_subject_trait": max(_TRAIT_EFFECTS, key=lambda t: _TRAIT_EFFECTS[t]),
        "open_model": {
            "base_logit": _OPEN_BASE_LOGIT,
            "engagement_sd": _ENGAGEMENT_SD,
            "lapsed_penalty": _LAPSED_OPEN_PENALTY,
            "formula": "P(open) = sigmoid(base_logit + email_engagement[customer] + "
            "sum of subject_trait_effects over the subject's traits - lapsed_penalty * "
            "[send at or after lapse_ts])",
        },
        "subject_open": dict(zip(subject_ids, open_p.mean(axis=0).tolist(), strict=True)),
        "best_subject": subject_ids[int(np.argmax(effects))],
        "offer_click": {
            t: dict(zip(offer_ids, _CLICK[i].tolist(), strict=True))
            for i, t in enumerate(CUSTOMER_TYPES)
        },
        "offer_conversion": conversion,
        "best_offer": {t: max(v, key=lambda o: v[o]) for t, v in conversion.items()},
        "offer_value": value,
        "best_offer_by_value": {t: max(v, key=lambda o: v[o]) for t, v in value.items()},
        "value_model": {
            "margin_rate": _MARGIN_RATE,
            "expected_order_value": order_value,
            "formula": "a send converts with P(open) * offer_conversion[type][offer]; the "
            "purchase (quantity 1, channel web) carries campaign_id and costs list price "
            "* (1 - discount_pct / 100). offer_value = offer_conversion * (expected_order_"
            "value[type] * (margin_rate - discount_pct / 100) - cost), per open",
            "unsubscribe_given_open_without_click": _UNSUBSCRIBE_P,
        },
        "logging_policy": {
            "groups": list(_POLICY_GROUPS),
            "group_rule": "group = 2 * (country != 'US') + (not consent_personalization)",
            "rules": "subject and offer are drawn independently from the tables below; "
            "campaign c (0-based) doubles the weight of active subject c mod 8 and, when "
            "c is odd, multiplies offer_pct20's weight by 1.5; subject lines with "
            "{first_name} are ineligible without consent_personalization",
            "subject": {
                cid: {
                    g: dict(zip(subject_ids, email.subject_p[c, gi].tolist(), strict=True))
                    for gi, g in enumerate(_POLICY_GROUPS)
                }
                for c, cid in enumerate(campaign_ids)
            },
            "offer": {
                cid: {
                    g: dict(zip(offer_ids, email.offer_p[c, gi].tolist(), strict=True))
                    for gi, g in enumerate(_POLICY_GROUPS)
                }
                for c, cid in enumerate(campaign_ids)
            },
        },
        "campaigns": {cid: _iso(t) for cid, t in zip(campaign_ids, email.times, strict=True)},
        "attribution_hours": cfg.attribution_hours,
        "unsubscribed": {
            ids[r]: _iso(int(email.unsubscribed[r]))
            for r in np.flatnonzero(email.unsubscribed != _NEVER).tolist()
        },
        "malformed": malformed,
    }
