"""The simulated persons and their customer records: latent traits, activity, consent.

A person's category preferences, customer type, price sensitivity, activity and
email engagement are drawn here and appear in no table; who is who (names, contact
details, second records, households) comes from :mod:`simulation.identities`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from features.data.contracts import CUSTOMERS
from simulation.columns import _ids, _pick, _to_pandas
from simulation.config import SimulationConfig
from simulation.identities import customer_attributes, identity_truth, make_contacts
from simulation.parameters import (
    _COUNTRIES,
    _COUNTRY_P,
    _DAY,
    _ENGAGEMENT_SD,
    _HEAVY_ACTIVITY_MULT,
    _LOCAL_HOUR_P,
    _LOCAL_HOURS,
    _NEVER,
    _SENSITIVITY_BETA,
    _TIMEZONES,
    _TYPE_P,
    _TZ_P_IN_COUNTRY,
)
from simulation.truth import IdentityTruth


@dataclass(frozen=True)
class _People:
    # persons (P)
    n_persons: int
    pref: np.ndarray  # (P, K) category preference, rows sum to 1
    preferred: np.ndarray  # (P,) preferred category index
    ctype: np.ndarray  # (P,) index into CUSTOMER_TYPES
    sensitivity: np.ndarray  # (P,) price sensitivity in [0, 1]
    rate: np.ndarray  # (P,) browse sessions per day while active
    heavy: np.ndarray  # (P,) bool
    engagement: np.ndarray  # (P,) open-logit offset
    hour_utc: np.ndarray  # (P,) preferred hour of day, UTC
    lapse: np.ndarray  # (P,) lapse time, epoch s (_NEVER: does not lapse)
    intl: np.ndarray  # (P,) bool, country is not US
    dup_record: np.ndarray  # (P,) second record index or -1
    # records (R = customers)
    person: np.ndarray  # (R,) person of each record
    ids: np.ndarray  # (R,) object customer_id strings
    signup: np.ndarray  # (R,) epoch seconds
    consent_email: np.ndarray  # (R,) bool
    consent_personalization: np.ndarray  # (R,) bool
    has_email: np.ndarray  # (R,) bool: a real address (placeholders are never mailed)
    table: pd.DataFrame  # the customers contract table
    link_via: list[str]  # per duplicate person: email / phone / email+phone / fuzzy
    identity_truth: IdentityTruth  # placeholder emails, shared phones, households


def _make_people(
    cfg: SimulationConfig, rng: np.random.Generator, k: int, identity_rng: np.random.Generator
) -> _People:
    start = int(cfg.start.timestamp())
    end = start + cfg.days * _DAY
    n_dup = int(
        round(cfg.customers * cfg.duplicate_person_share / (1 + cfg.duplicate_person_share))
    )
    n_per = cfg.customers - n_dup
    n_rec = cfg.customers

    # latent preferences
    preferred = rng.integers(0, k, n_per)
    pref = 0.45 * rng.dirichlet(np.full(k, 0.4), n_per)
    pref[np.arange(n_per), preferred] += 0.55
    country = rng.choice(len(_COUNTRIES), n_per, p=_COUNTRY_P)
    intl = country != 0
    type_p = np.where(intl[:, None], _TYPE_P["intl"], _TYPE_P["US"])
    ctype = _pick(rng, type_p)
    beta = np.array(_SENSITIVITY_BETA)[ctype]
    sensitivity = rng.beta(beta[:, 0], beta[:, 1])
    heavy = rng.random(n_per) < cfg.heavy_buyer_share
    rate = (
        cfg.sessions_per_day
        * rng.gamma(1.0, 1.0, n_per)
        * np.where(heavy, _HEAVY_ACTIVITY_MULT, 1.0)
    )
    engagement = rng.normal(0.0, _ENGAGEMENT_SD, n_per)

    # country -> timezone -> offset, area code
    tz_country = np.array([_COUNTRIES.index(t[3]) for t in _TIMEZONES])
    tz_p = np.where(tz_country[None, :] == country[:, None], _TZ_P_IN_COUNTRY, 0.0)
    tz = _pick(rng, tz_p / tz_p.sum(axis=1, keepdims=True))
    offsets = np.array([t[1] for t in _TIMEZONES])[tz]
    local_hour = rng.choice(_LOCAL_HOURS, n_per, p=_LOCAL_HOUR_P)
    hour_utc = (local_hour - offsets) % 24

    signup = np.where(
        rng.random(n_per) < cfg.new_subscriber_share,
        start + rng.integers(0, end - start, n_per),
        start - rng.integers(_DAY, 730 * _DAY, n_per),
    )
    # lapsing persons: active ones who signed up before the window
    lapse = np.full(n_per, _NEVER, np.int64)
    candidates = np.flatnonzero((signup < start) & (rate >= np.median(rate)))
    n_lapse = min(len(candidates), int(round(cfg.lapsing_share * n_per)))
    lapsing = rng.choice(candidates, n_lapse, replace=False)
    lapse[lapsing] = start + (rng.uniform(0.35, 0.65, n_lapse) * (end - start)).astype(np.int64)

    contacts = make_contacts(
        cfg,
        rng,
        identity_rng,
        country=np.array(_COUNTRIES, dtype=object)[country],
        tz=tz,
        area_codes=[t[2] for t in _TIMEZONES],
        signup=signup,
        n_dup=n_dup,
        start=start,
        end=end,
    )
    person = contacts.person
    rec_signup = contacts.signup
    consent_email = rng.random(n_rec) >= cfg.no_email_consent_share
    consent_pers = rng.random(n_rec) >= cfg.no_personalization_consent_share
    updated = np.where(
        (rng.random(n_rec) < 0.5) & (rec_signup < start),
        rec_signup + (rng.random(n_rec) * (start - rec_signup)).astype(np.int64),
        rec_signup,
    )
    id_number = rng.permutation(n_rec)
    ids = _ids("c", id_number, 7).to_numpy(zero_copy_only=False)
    tz_names = np.array([t[0] for t in _TIMEZONES], dtype=object)[tz]
    attributes = customer_attributes(contacts, tz_names[person])

    order = np.argsort(id_number)
    table = pa.table(
        {
            "customer_id": pa.array(ids[order], pa.string()),
            "email": pa.array(contacts.email[order], pa.string()),
            "phone": pa.array(contacts.phone[order], pa.string()),
            "country": pa.array(np.array(_COUNTRIES, dtype=object)[country[person]][order]),
            "signup_ts": pa.array(rec_signup[order]).cast(pa.timestamp("s", tz="UTC")),
            "consent_email": pa.array(consent_email[order]),
            "consent_personalization": pa.array(consent_pers[order]),
            "consent_updated_ts": pa.array(updated[order]).cast(pa.timestamp("s", tz="UTC")),
            "attributes": attributes.take(order).cast(pa.string()),
        }
    )
    frame = _to_pandas(table.select(CUSTOMERS.names))
    for column in ("signup_ts", "consent_updated_ts"):
        frame[column] = frame[column].astype("datetime64[us, UTC]")
    return _People(
        n_persons=n_per,
        pref=pref,
        preferred=preferred,
        ctype=ctype,
        sensitivity=sensitivity,
        rate=rate,
        heavy=heavy,
        engagement=engagement,
        hour_utc=hour_utc,
        lapse=lapse,
        intl=intl,
        dup_record=contacts.dup_record,
        person=person,
        ids=ids,
        signup=rec_signup,
        consent_email=consent_email,
        consent_personalization=consent_pers,
        has_email=contacts.has_email,
        table=frame,
        link_via=contacts.link_via,
        identity_truth=identity_truth(contacts, ids),
    )
