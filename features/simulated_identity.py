"""Who is who in the simulated store: names, emails and phones of the customer records.

:func:`make_contacts` draws each person's contact data and the second customer
record of the persons who have one (email re-cased / padded, phone re-formatted).
The simulator (:mod:`features.simulator`) calls it while it builds its persons.

Everything is vectorised with numpy / pandas string methods; Python loops run over
the nine timezones only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Contacts", "make_contacts"]

_DAY = 86_400
_FIRST_NAMES = tuple(
    "Ava Ben Chloe Daniel Ella Finn Grace Henry Isla Jack Kate Liam Maya Noah Olivia Paul "
    "Quinn Ruby Sam Tara Uma Victor Wendy Xavier Yara Zoe Aaron Bella Carlos Diana Ethan "
    "Fiona Gabriel Hannah Ivan Julia Kevin Laura Marco Nina".split()
)
_LAST_NAMES = tuple(
    "Smith Johnson Brown Garcia Miller Davis Wilson Moore Taylor Anderson Thomas Jackson "
    "White Harris Martin Thompson Lopez Lee Walker Hall Allen Young King Wright Scott Green "
    "Baker Adams Nelson Hill Campbell Mitchell Roberts Carter Phillips Evans".split()
)
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "inbox.example")
_NANP = ("US", "CA")
_INTL_PHONE = {"GB": ("+44 20 ", "+4420"), "DE": ("+49 30 ", "+4930"), "AU": ("+61 2 ", "+612")}


@dataclass(frozen=True)
class Contacts:
    """Contact data of persons (P) and customer records (R = P + second records).

    Records ``0 .. P-1`` are the persons' first records, in person order; the
    second records follow, in the order of ``dup_persons``.
    """

    # persons (P)
    first_name: np.ndarray  # (P,) object
    dup_persons: np.ndarray  # (D,) sorted persons with a second record
    dup_record: np.ndarray  # (P,) second record index or -1
    # records (R)
    person: np.ndarray  # (R,) person of each record
    signup: np.ndarray  # (R,) epoch seconds
    email: np.ndarray  # (R,) object, None where absent
    phone: np.ndarray  # (R,) object, None where absent
    link_via: list[str]  # (D,) email / phone / email+phone


def _pad(values: np.ndarray, width: int) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=np.int64)).astype(str).str.zfill(width)


def make_contacts(
    rng: np.random.Generator,
    *,
    country: np.ndarray,
    tz: np.ndarray,
    area_codes: list[tuple[int, ...]],
    signup: np.ndarray,
    n_dup: int,
    start: int,
    end: int,
) -> Contacts:
    """Draw names, emails and phones, and the second records of ``n_dup`` persons.

    Parameters
    ----------
    rng : numpy.random.Generator
        The simulator's generator of persons.
    country : numpy.ndarray of str, shape (P,)
        ISO country code of each person (US, CA, GB, DE, AU).
    tz : numpy.ndarray of int, shape (P,)
        Timezone index of each person, into ``area_codes``.
    area_codes : list of tuple of int
        North American area codes of each timezone (empty outside NANP).
    signup : numpy.ndarray of int, shape (P,)
        Signup time of each person, epoch seconds.
    n_dup : int
        Persons with a second record.
    start, end : int
        The simulated window, epoch seconds.
    """
    n_per = len(country)
    first = np.array(_FIRST_NAMES, dtype=object)[rng.integers(0, len(_FIRST_NAMES), n_per)]
    last = np.array(_LAST_NAMES, dtype=object)[rng.integers(0, len(_LAST_NAMES), n_per)]
    domain = np.array(_EMAIL_DOMAINS, dtype=object)[rng.integers(0, len(_EMAIL_DOMAINS), n_per)]
    number = pd.Series(rng.permutation(n_per) + 1).astype(str)
    email = (
        pd.Series(first).str.lower() + "." + pd.Series(last).str.lower() + number + "@" + domain
    ).to_numpy(dtype=object)

    # central-office codes 200-999 without the N11 service codes (211, ..., 911)
    exchanges = np.array([x for x in range(200, 1000) if x % 100 != 11])
    subscriber = rng.choice(len(exchanges) * 10_000, n_per, replace=False)
    nanp = np.isin(country, _NANP)
    has_phone = rng.random(n_per) < np.where(nanp, 0.8, 0.5)
    area = np.zeros(n_per, np.int64)
    for z, codes in enumerate(area_codes):  # loop over the timezones
        rows = np.flatnonzero(tz == z)
        if codes and len(rows):
            area[rows] = np.array(codes)[rng.integers(0, len(codes), len(rows))]
    a = _pad(area, 3)
    e = _pad(exchanges[subscriber // 10_000], 3)
    ln = _pad(subscriber % 10_000, 4)
    nanp_formats = np.stack(
        [
            ("+1 " + a + " " + e + " " + ln).to_numpy(dtype=object),
            ("(" + a + ") " + e + "-" + ln).to_numpy(dtype=object),
            (a + "." + e + "." + ln).to_numpy(dtype=object),
            (a + "-" + e + "-" + ln).to_numpy(dtype=object),
            ("+1" + a + e + ln).to_numpy(dtype=object),
        ]
    )
    sub8 = _pad(70_000_000 + subscriber, 8)
    spaced_head = np.full(n_per, "", dtype=object)
    compact_head = np.full(n_per, "", dtype=object)
    for code, (spaced, compact) in _INTL_PHONE.items():
        rows = country == code
        spaced_head[rows] = spaced
        compact_head[rows] = compact
    intl_formats = np.stack(
        [
            (spaced_head + sub8.str.slice(0, 4) + " " + sub8.str.slice(4)).to_numpy(dtype=object),
            (compact_head + sub8).to_numpy(dtype=object),
        ]
    )
    fmt = rng.integers(0, 5, n_per)
    idx = np.arange(n_per)
    phone = np.where(nanp, nanp_formats[fmt, idx], intl_formats[fmt % 2, idx])
    phone[~has_phone] = None

    # second records of duplicate persons
    dup_persons = np.sort(rng.choice(n_per, n_dup, replace=False))
    dup_record = np.full(n_per, -1, np.int64)
    dup_record[dup_persons] = n_per + np.arange(n_dup)
    variant = rng.choice(4, n_dup, p=(0.35, 0.3, 0.2, 0.15))
    dp_phone = has_phone[dup_persons]
    variant = np.where((variant == 3) & ~dp_phone, 0, variant)
    base_email = pd.Series(email[dup_persons], dtype=object).astype(str)
    email_variants = np.stack(
        [
            base_email.str.title().to_numpy(dtype=object),
            (" " + base_email.str.title() + " ").to_numpy(dtype=object),
            base_email.str.upper().to_numpy(dtype=object),
            np.full(n_dup, None, dtype=object),
        ]
    )
    dup_email = email_variants[variant, np.arange(n_dup)]
    keep_phone = dp_phone & ((variant == 3) | (rng.random(n_dup) < 0.6))
    other_fmt = (fmt[dup_persons] + 1 + rng.integers(0, 4, n_dup)) % 5
    dup_nanp = nanp[dup_persons]
    dup_phone_text = np.where(
        dup_nanp,
        nanp_formats[other_fmt, dup_persons],
        intl_formats[(fmt[dup_persons] + 1) % 2, dup_persons],
    )
    dup_phone = dup_phone_text.copy()
    dup_phone[~keep_phone] = None
    has_dup_email = variant != 3
    link_via = np.where(
        has_dup_email & keep_phone, "email+phone", np.where(has_dup_email, "email", "phone")
    ).tolist()
    dup_signup = signup[dup_persons] + (
        rng.random(n_dup) * (end - np.maximum(signup[dup_persons], start - 365 * _DAY))
    ).astype(np.int64)

    return Contacts(
        first_name=first,
        dup_persons=dup_persons,
        dup_record=dup_record,
        person=np.concatenate([np.arange(n_per), dup_persons]),
        signup=np.concatenate([signup, dup_signup]),
        email=np.concatenate([email, dup_email]),
        phone=np.concatenate([phone, dup_phone]),
        link_via=link_via,
    )
