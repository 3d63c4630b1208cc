"""Simulated email campaigns: the logging policy's choices and the closed-form outcomes.

Each campaign mails every consenting record with a real address; the subject line
and the offer are drawn by a known randomised logging policy (propensities logged),
and opens, clicks, purchases and unsubscribes follow the models in
:mod:`simulation.parameters`, drawn by :func:`_draw_outcomes` (its rates
:func:`_response_rates`), which :mod:`simulation.responses` draws a send the decision
service chose with. The content table (subject lines and offers) is built here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.data.contracts import CONTENT
from simulation.catalog import (
    _Catalog,
    _sample_categories,
    _sample_items,
    _Sampler,
    _sampler,
)
from simulation.columns import _col, _concat, _pick, _sigmoid, _to_pandas
from simulation.config import SimulationConfig
from simulation.parameters import (
    _CHANNEL,
    _CLICK,
    _CONVERSION,
    _DAY,
    _ETYPE,
    _HOUR,
    _LAPSED_OPEN_PENALTY,
    _LONG_SUBJECT,
    _NEVER,
    _OFFER_WEIGHTS,
    _OFFERS,
    _OPEN_BASE_LOGIT,
    _SUBJECT_WEIGHTS,
    _SUBJECTS,
    _TRAIT_EFFECTS,
    _UNSUBSCRIBE_P,
    _URGENCY_WORDS,
)
from simulation.people import _People

__all__ = ["subject_traits"]


def subject_traits(text: str) -> dict[str, bool]:
    """Return the subject-line traits the simulator's open model uses.

    Parameters
    ----------
    text : str
        Subject-line template, e.g. ``"{first_name}, last chance"``.

    Returns
    -------
    dict of str to bool
        One entry per :data:`SUBJECT_TRAITS`: ``personalized`` (has the
        ``{first_name}`` token), ``urgency`` (one of "last chance", "ends tonight",
        "hurry", "today only"), ``question`` (a ``?``), ``emoji`` (a character
        above U+1F000), ``number`` (a digit or ``%``), ``long`` (more than 45
        characters of template).
    """
    lower = text.lower()
    return {
        "personalized": "{first_name}" in text,
        "urgency": any(w in lower for w in _URGENCY_WORDS),
        "question": "?" in text,
        "emoji": any(ord(ch) >= 0x1F000 for ch in text),
        "number": any(ch.isdigit() or ch == "%" for ch in text),
        "long": len(text) > _LONG_SUBJECT,
    }


@dataclass(frozen=True)
class _Email:
    rows: dict[str, np.ndarray]
    times: list[int]  # campaign start, epoch s
    subject_p: np.ndarray  # (C, 4, S) logging probabilities over active subjects
    offer_p: np.ndarray  # (C, 4, O) logging probabilities over offers
    unsubscribed: np.ndarray  # (R,) unsubscribe time or _NEVER
    n_sends: int


def _active_subjects() -> list[int]:
    return [i for i, s in enumerate(_SUBJECTS) if s[2]]


def _subject_effects() -> np.ndarray:
    """(S,) open-logit effect of each active subject line: the sum of its traits' effects."""
    traits = [subject_traits(_SUBJECTS[i][1]) for i in _active_subjects()]
    return np.array([sum(_TRAIT_EFFECTS[k] for k, v in t.items() if v) for t in traits])


def _logging_policy(n_campaigns: int) -> tuple[np.ndarray, np.ndarray]:
    """Logging probabilities, shape (C, 4, S) for subjects and (C, 4, O) for offers.

    Group ``g = 2 * international + (no consent_personalization)`` (see
    ``_POLICY_GROUPS``). Campaign ``c`` doubles the weight of active subject
    ``c % S`` and, when ``c`` is odd, multiplies ``offer_pct20`` by 1.5; personalised
    subject lines are ineligible (probability 0) without personalisation consent.
    """
    active = _active_subjects()
    personalized = np.array([subject_traits(_SUBJECTS[i][1])["personalized"] for i in active])
    subj = np.zeros((n_campaigns, 4, len(active)))
    offer = np.zeros((n_campaigns, 4, len(_OFFERS)))
    for c in range(n_campaigns):  # loop over campaigns
        for g in range(4):
            region = "intl" if g >= 2 else "US"
            w = np.array(_SUBJECT_WEIGHTS[region], dtype=float)
            w[c % len(active)] *= 2.0
            if g % 2 == 1:
                w[personalized] = 0.0
            subj[c, g] = w / w.sum()
            ow = np.array(_OFFER_WEIGHTS[region], dtype=float)
            if c % 2 == 1:
                ow[2] *= 1.5
            offer[c, g] = ow / ow.sum()
    return subj, offer


def _campaign_times(cfg: SimulationConfig) -> list[int]:
    start = int(cfg.start.timestamp())
    first = min(1, cfg.days - 1)
    return [
        start + d * _DAY + cfg.campaign_hour_utc * _HOUR
        for d in range(first, cfg.days, cfg.campaign_every_days)
    ]


@dataclass(frozen=True)
class _Shop:
    """What a campaign purchase is drawn from (:func:`_campaign_shop`)."""

    sampler: _Sampler  # items by category, weighted by popularity
    price: np.ndarray  # (n_items,) list price
    category_price: np.ndarray  # (n_categories,) expected list price of a purchase in each
    discount: np.ndarray  # (O,) each offer's discount_pct


def _campaign_shop(cat: _Catalog) -> _Shop:
    """The items a campaign purchase is drawn from: those never out of stock in the window
    (all of a category's items where none is), weighted by popularity."""
    never_out = (cat.out == _NEVER) & (cat.back == _NEVER)
    weights = cat.popularity * never_out
    k = len(cat.names)
    empty = np.bincount(cat.category, weights=weights, minlength=k) == 0
    weights = np.where(empty[cat.category], cat.popularity, weights)
    category_price = np.bincount(
        cat.category, weights=weights * cat.price, minlength=k
    ) / np.bincount(cat.category, weights=weights, minlength=k)
    discount = np.array([o[3] for o in _OFFERS], dtype=float)
    return _Shop(_sampler(cat.category, weights, k), cat.price, category_price, discount)


def _open_probability(
    engagement: np.ndarray, effect: np.ndarray, lapsed: np.ndarray | bool
) -> np.ndarray:
    """P(open) of the open model: ``sigmoid(base + engagement + subject effect - lapsed
    penalty * lapsed)``; the arguments broadcast (logit units, ``lapsed`` boolean)."""
    logit = _OPEN_BASE_LOGIT + engagement + effect
    return _sigmoid(logit - _LAPSED_OPEN_PENALTY * lapsed)


@dataclass(frozen=True)
class _Rates:
    """The planted response rates of ``n`` sends, each (n,)."""

    open: np.ndarray  # P(open)
    click: np.ndarray  # P(click | open)
    conversion: np.ndarray  # P(purchase within the attribution window | open)


def _response_rates(
    people: _People, per: np.ndarray, send: np.ndarray, effect: np.ndarray, offer: np.ndarray
) -> _Rates:
    """Rates of sends to persons ``per`` at ``send`` (epoch s) with subject-line open
    effects ``effect`` and offer indices ``offer``, all (n,)."""
    lapsed = send >= people.lapse[per]
    ctype = people.ctype[per]
    return _Rates(
        _open_probability(people.engagement[per], effect, lapsed),
        _CLICK[ctype, offer],
        _CONVERSION[ctype, offer],
    )


@dataclass(frozen=True)
class _Outcomes:
    """What ``n`` sends drew (:func:`_draw_outcomes`), each (n,)."""

    opened: np.ndarray
    clicked: np.ndarray  # implies opened
    bought: np.ndarray  # implies clicked
    left: np.ndarray  # unsubscribed: opened, not clicked
    open_t: np.ndarray  # epoch s; every time is set, meaningful where its flag is
    click_t: np.ndarray
    buy_t: np.ndarray  # purchase time; the checkout is one second before
    leave_t: np.ndarray
    item: np.ndarray  # item bought, -1 where none
    price: np.ndarray  # price paid (list price less the offer's discount, cents)


def _draw_outcomes(
    rng: np.random.Generator,
    people: _People,
    per: np.ndarray,
    send: np.ndarray,
    effect: np.ndarray,
    offer: np.ndarray,
    shop: _Shop,
    window: int,
) -> _Outcomes:
    """Draw the opens, clicks, purchases and unsubscribes of ``n`` sends (arguments as for
    :func:`_response_rates`); ``window`` is the attribution window, seconds: every
    purchase falls within it."""
    n = len(per)
    rates = _response_rates(people, per, send, effect, offer)
    opened = rng.random(n) < rates.open
    clicked = opened & (rng.random(n) < rates.click)
    bought = clicked & (rng.random(n) < rates.conversion / rates.click)
    # delays to open, click, purchase; scaled down to fit the attribution window
    delays = np.stack(
        [
            rng.lognormal(np.log(3 * _HOUR), 1.0, n),
            10 + rng.exponential(180.0, n),
            60 + rng.exponential(1800.0, n),
        ]
    )
    scale = np.minimum(1.0, (window - 60) / delays.sum(axis=0))
    delays = 2 + (delays * scale).astype(np.int64)
    open_t = send + delays[0]
    click_t = open_t + delays[1]
    buy_t = click_t + delays[2]
    n_buy = int(bought.sum())
    item = np.full(n, -1, np.int64)
    if n_buy:
        cats = _sample_categories(people.pref, per[bought], rng.random(n_buy))
        item[bought] = _sample_items(shop.sampler, cats, rng.random(n_buy))
    price = np.round(shop.price[np.maximum(item, 0)] * (1 - shop.discount[offer] / 100), 2)
    left = opened & ~clicked & (rng.random(n) < _UNSUBSCRIBE_P)
    leave_t = open_t + 30 + rng.exponential(60.0, n).astype(np.int64)
    return _Outcomes(opened, clicked, bought, left, open_t, click_t, buy_t, leave_t, item, price)


def _simulate_campaigns(
    cfg: SimulationConfig,
    rng: np.random.Generator,
    people: _People,
    cat: _Catalog,
    first_order: int,
) -> _Email:
    start = int(cfg.start.timestamp())
    end = start + cfg.days * _DAY
    times = _campaign_times(cfg)
    subj_p, offer_p = _logging_policy(len(times))
    active = np.array(_active_subjects())
    effects = _subject_effects()
    n_subjects = len(_SUBJECTS)
    shop = _campaign_shop(cat)
    window = cfg.attribution_hours * _HOUR

    unsub = np.full(len(people.person), _NEVER, np.int64)
    blocks: list[dict[str, np.ndarray]] = []
    n_dec = 0
    n_order = first_order
    n_sends = 0
    for c, base in enumerate(times):  # loop over campaigns
        rec = np.flatnonzero(
            people.consent_email & people.has_email & (people.signup <= base) & (unsub > base)
        )
        n = len(rec)
        if n == 0:
            continue
        n_sends += n
        send = base + rng.integers(0, _HOUR, n)
        per = people.person[rec]
        group = 2 * people.intl[per] + ~people.consent_personalization[rec]
        s_idx = _pick(rng, subj_p[c][group])
        o_idx = _pick(rng, offer_p[c][group])
        decision = n_dec + 2 * np.arange(n)
        n_dec += 2 * n
        common: dict[str, np.ndarray | float] = {
            "cust": rec,
            "campaign": c,
            "channel": _CHANNEL["email"],
        }
        sent = _ETYPE["email_sent"]
        blocks.append(
            _col(
                n,
                ts=send,
                etype=sent,
                slot=0,
                content=active[s_idx],
                decision=decision,
                propensity=subj_p[c, group, s_idx],
                **common,
            )
        )
        blocks.append(
            _col(
                n,
                ts=send,
                etype=sent,
                slot=1,
                content=n_subjects + o_idx,
                decision=decision + 1,
                propensity=offer_p[c, group, o_idx],
                **common,
            )
        )

        out = _draw_outcomes(rng, people, per, send, effects[s_idx], o_idx, shop, window)
        opened, clicked, bought, left = out.opened, out.clicked, out.bought, out.left
        open_t, click_t, buy_t, leave_t = out.open_t, out.click_t, out.buy_t, out.leave_t
        email = _CHANNEL["email"]

        def emit(mask: np.ndarray, ts: np.ndarray, c: int = c, **cols: Any) -> None:
            keep = mask & (ts < end)
            values = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in cols.items()}
            blocks.append(_col(int(keep.sum()), ts=ts[keep], campaign=c, **values))

        emit(opened, open_t, etype=_ETYPE["email_open"], cust=rec, channel=email)
        emit(
            clicked,
            click_t,
            etype=_ETYPE["email_click"],
            cust=rec,
            channel=email,
            slot=1,
            content=n_subjects + o_idx,
            decision=decision + 1,
        )
        n_buy = int(bought.sum())
        order = np.full(n, -1, np.int64)
        order[bought] = n_order + np.arange(n_buy)
        n_order += n_buy
        web = _CHANNEL["web"]
        emit(bought, buy_t - 1, etype=_ETYPE["checkout"], cust=rec, channel=web, order=order)
        emit(
            bought,
            buy_t,
            etype=_ETYPE["purchase"],
            cust=rec,
            channel=web,
            order=order,
            item=out.item,
            qty=1,
            price=out.price,
        )
        emit(left, leave_t, etype=_ETYPE["unsubscribe"], cust=rec, channel=email)
        gone = left & (leave_t < end)
        unsub[rec[gone]] = leave_t[gone]
    return _Email(_concat(blocks), times, subj_p, offer_p, unsub, n_sends)


def _content_frame() -> pd.DataFrame:
    rows: list[dict[str, Any]] = [
        {"content_id": cid, "slot": "subject", "text": text, "attributes": None, "active": on}
        for cid, text, on in _SUBJECTS
    ]
    rows += [
        {
            "content_id": cid,
            "slot": "offer",
            "text": text,
            "attributes": json.dumps(
                {"offer_type": kind, "discount_pct": pct, "cost": cost}, sort_keys=True
            ),
            "active": True,
        }
        for cid, text, kind, pct, cost in _OFFERS
    ]
    return _to_pandas(pa.Table.from_pylist(rows).select(CONTENT.names))
