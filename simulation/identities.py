"""Who is who in the simulated store: the persons behind the customer records.

A real CRM export holds what an identity resolver must get right and what it must not
merge. :func:`make_contacts` plants all of it, and :func:`identity_truth` records the
truth of who is who. The simulator calls both while it builds its persons
(:mod:`simulation.people`). What a name, an email, a phone, an address or a birth
date looks like, and how each is misspelt, is :mod:`simulation.contact_details`.

- Every person has a first and last name, a date of birth (aged 18 to 85 at the
  window start), a street address, a postcode and a city (in the customer record's
  ``attributes``; see :func:`customer_attributes`). First name, last name, date of
  birth and postcode tell any two persons apart. The city follows the phone's area
  code in North America; GB, DE and AU persons live in London, Berlin and Sydney.
- Second records of one person (``duplicate_person_share``): email re-cased /
  padded, phone re-formatted. On top of that a share of second records
  (``name_typo_share``) has a one-character edit (substitution, deletion or
  transposition, never of the first letter) in the first or the last name; a share
  (``moved_share``) has a new address and postcode (and a new city where the
  person's timezone holds several); and a share (``fuzzy_duplicate_share``) is a
  *fuzzy* duplicate: a different email (a new local part or a new domain, never a
  re-casing) and no phone, linkable only by name, date of birth and address. Fuzzy
  duplicates never move. The date of birth is the same on both records.
- Placeholder emails (``placeholder_email_share`` of records): one of
  :data:`~simulation.contact_details.PLACEHOLDER_EMAILS`, written with a little case / padding noise
  (``"NOEMAIL@EXAMPLE.COM"``, ``" Test@test.com "``), on the only record of
  different persons outside households. They are not real addresses: the store
  never mails them.
- Households (``household_share`` of persons): two or three persons of one
  timezone with one last name, address, postcode, city and landline (each writes it
  in their own format), each with their own first name, date of birth and email.
- A store phone (``store_phone_share`` of records): the shop's fictional New York
  number, ``+1 212 555 01xx``, typed in any format on the only record of US
  persons outside households and placeholder records.

Everything is vectorised with numpy / pandas string methods; Python loops run over
the timezones and countries only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from simulation.columns import _large
from simulation.config import SimulationConfig
from simulation.contact_details import (
    _CITY_NAMES,
    _EMAIL_DOMAINS,
    _FIRST_NAMES,
    _INTL_PHONE,
    _LAST_NAMES,
    _MAX_AGE_DAYS,
    _MIN_AGE_DAYS,
    _NANP,
    _distinct_birth_dates,
    _draw_places,
    _home_city,
    _moved_city,
    _one_edit,
    _other_email,
    _pad,
    _placeholder_text,
    _store_phone,
)
from simulation.parameters import _DAY
from simulation.truth import IdentityTruth

__all__ = [
    "Contacts",
    "customer_attributes",
    "identity_truth",
    "make_contacts",
]


@dataclass(frozen=True)
class Contacts:
    """Contact data of persons (P) and customer records (R = P + second records).

    Records ``0 .. P-1`` are the persons' first records, in person order; the
    second records follow, in the order of ``dup_persons``.
    """

    # persons (P)
    dup_persons: np.ndarray  # (D,) sorted persons with a second record
    dup_record: np.ndarray  # (P,) second record index or -1
    household: np.ndarray  # (P,) the household's first person, or -1 outside households
    # records (R)
    person: np.ndarray  # (R,) person of each record
    signup: np.ndarray  # (R,) epoch seconds
    email: np.ndarray  # (R,) object, None where absent
    phone: np.ndarray  # (R,) object, None where absent
    has_email: np.ndarray  # (R,) bool: a real address (placeholders are not)
    placeholder: np.ndarray  # (R,) bool: the email is a placeholder
    first_name: np.ndarray  # (R,) object
    last_name: np.ndarray  # (R,) object
    birth_date: np.ndarray  # (R,) datetime64[D]
    address: np.ndarray  # (R,) object
    postcode: np.ndarray  # (R,) object
    city: np.ndarray  # (R,) object
    link_via: list[str]  # (D,) email / phone / email+phone / fuzzy
    # shared numbers: (E.164, "household" | "store", records carrying it)
    shared_phones: list[tuple[str, str, np.ndarray]]


def make_contacts(
    cfg: SimulationConfig,
    rng: np.random.Generator,
    identity_rng: np.random.Generator,
    *,
    country: np.ndarray,
    tz: np.ndarray,
    area_codes: list[tuple[int, ...]],
    signup: np.ndarray,
    n_dup: int,
    start: int,
    end: int,
) -> Contacts:
    """Draw every record's contact data and plant the identity noise of a real CRM.

    Parameters
    ----------
    cfg : SimulationConfig
        Its identity shares (``household_share``, ``placeholder_email_share``, ...).
    rng : numpy.random.Generator
        The simulator's generator of persons: names, emails, phones, second records.
    identity_rng : numpy.random.Generator
        Everything else here: birth dates, addresses, households, typos, moves, fuzzy
        duplicates, placeholders, the store phone (so ``rng``'s draws stay as they were).
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
    idx = np.arange(n_per)
    first_i = rng.integers(0, len(_FIRST_NAMES), n_per)
    last_i = rng.integers(0, len(_LAST_NAMES), n_per)
    domain_i = rng.integers(0, len(_EMAIL_DOMAINS), n_per)
    number = pd.Series(rng.permutation(n_per) + 1).astype(str)
    # households: one last name, the first person's; first names all different
    household, rank = _households(identity_rng, cfg.household_share, tz)
    member = household >= 0
    owner = np.where(member, household, idx)  # whose address and phone a person has
    step = identity_rng.integers(1, len(_FIRST_NAMES) // 2, n_per)[owner]
    first_i = np.where(member, (first_i[owner] + rank * step) % len(_FIRST_NAMES), first_i)
    last_i = last_i[owner]
    first = np.array(_FIRST_NAMES, dtype=object)[first_i]
    last = np.array(_LAST_NAMES, dtype=object)[last_i]
    domain = np.array(_EMAIL_DOMAINS, dtype=object)[domain_i]
    email = (
        pd.Series(first).str.lower() + "." + pd.Series(last).str.lower() + number + "@" + domain
    ).to_numpy(dtype=object)

    # central-office codes 200-999 without the N11 service codes (211, ..., 911)
    exchanges = np.array([x for x in range(200, 1000) if x % 100 != 11])
    subscriber = rng.choice(len(exchanges) * 10_000, n_per, replace=False)
    nanp = np.isin(country, _NANP)
    has_phone = (rng.random(n_per) < np.where(nanp, 0.8, 0.5)) | member
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
            ("+1" + a + e + ln).to_numpy(dtype=object),  # E.164
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
            (compact_head + sub8).to_numpy(dtype=object),  # E.164
        ]
    )
    fmt = rng.integers(0, 5, n_per)
    phone = np.where(nanp, nanp_formats[fmt, owner], intl_formats[fmt % 2, owner])
    phone[~has_phone] = None

    # where persons live; a household at its first person's address
    city = _home_city(country, area)
    address, postcode = _draw_places(identity_rng, city)
    city, address, postcode = city[owner], address[owner], postcode[owner]
    age = identity_rng.integers(_MIN_AGE_DAYS, _MAX_AGE_DAYS, n_per).astype("timedelta64[D]")
    today = np.datetime64(start, "s").astype("datetime64[D]")
    postcode_code = pd.factorize(postcode)[0]
    name_code = first_i * len(_LAST_NAMES) + last_i
    birth = _distinct_birth_dates(
        today - age,
        [
            name_code * (postcode_code.max() + 1) + postcode_code,
            np.where(member, household, n_per + idx),
        ],
    )

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
    dup_owner = owner[dup_persons]
    dup_phone = np.where(
        nanp[dup_persons],
        nanp_formats[other_fmt, dup_owner],
        intl_formats[(fmt[dup_persons] + 1) % 2, dup_owner],
    )
    dup_phone[~keep_phone] = None
    has_dup_email = variant != 3
    link_via = np.where(
        has_dup_email & keep_phone, "email+phone", np.where(has_dup_email, "email", "phone")
    )
    dup_signup = signup[dup_persons] + (
        rng.random(n_dup) * (end - np.maximum(signup[dup_persons], start - 365 * _DAY))
    ).astype(np.int64)

    # noise on second records: fuzzy duplicates, moves (never fuzzy), name typos
    fuzzy = _chosen(identity_rng, n_dup, cfg.fuzzy_duplicate_share * n_dup)
    dup_email[fuzzy] = _other_email(
        identity_rng, first[dup_persons], last[dup_persons], number, domain_i, dup_persons
    )[fuzzy]
    dup_phone[fuzzy] = None
    link_via[fuzzy] = "fuzzy"
    dup_city, dup_address, dup_postcode = (
        city[dup_persons],
        address[dup_persons],
        postcode[dup_persons],
    )
    movable = np.flatnonzero(~fuzzy)
    moved = movable[_chosen(identity_rng, len(movable), cfg.moved_share * n_dup)]
    dup_city[moved] = _moved_city(identity_rng, dup_city[moved], tz[dup_persons[moved]], area_codes)
    new_address, new_postcode = _draw_places(identity_rng, dup_city[moved])
    while True:  # a move changes the postcode and the address
        same = (new_postcode == dup_postcode[moved]) | (new_address == dup_address[moved])
        if not same.any():
            break
        redrawn = _draw_places(identity_rng, dup_city[moved][same])
        new_address[same], new_postcode[same] = redrawn
    dup_address[moved], dup_postcode[moved] = new_address, new_postcode
    dup_first, dup_last = first[dup_persons].copy(), last[dup_persons].copy()
    typo = np.flatnonzero(_chosen(identity_rng, n_dup, cfg.name_typo_share * n_dup))
    in_first = identity_rng.random(len(typo)) < 0.5
    dup_first[typo[in_first]] = _one_edit(identity_rng, dup_first[typo[in_first]])
    dup_last[typo[~in_first]] = _one_edit(identity_rng, dup_last[typo[~in_first]])

    person = np.concatenate([idx, dup_persons])
    rec_email = np.concatenate([email, dup_email])
    rec_phone = np.concatenate([phone, dup_phone])

    # placeholder emails and the store phone, on the only record of persons outside
    # households (so no person's link and no household hangs on them)
    single = (dup_record < 0) & ~member
    placeholder = np.zeros(len(person), bool)
    n_placeholder = min(int(single.sum()), round(cfg.placeholder_email_share * len(person)))
    chosen = identity_rng.choice(np.flatnonzero(single), n_placeholder, replace=False)
    placeholder[chosen] = True
    rec_email[chosen] = _placeholder_text(identity_rng, n_placeholder)
    store_ok = single & ~placeholder[:n_per] & (country == "US")
    n_store = min(int(store_ok.sum()), round(cfg.store_phone_share * len(person)))
    n_store = n_store if n_store >= 2 else 0  # one record shares nothing
    store_records = np.sort(identity_rng.choice(np.flatnonzero(store_ok), n_store, replace=False))
    store_e164, store_text = _store_phone(
        identity_rng, area, exchanges[subscriber // 10_000], subscriber % 10_000, n_store
    )
    rec_phone[store_records] = store_text

    # the shared numbers: household landlines (every record carrying one) and the store's
    carriers = np.flatnonzero(member[person] & pd.notna(rec_phone))
    house = household[person[carriers]]
    order = np.argsort(house, kind="stable")
    carriers, house = carriers[order], house[order]
    starts = np.flatnonzero(np.diff(house, prepend=-1))
    numbers = np.where(nanp, nanp_formats[4], intl_formats[1])[house[starts]]
    groups = np.split(carriers, starts[1:]) if len(starts) else []
    shared_phones = [(str(n), "household", rows) for n, rows in zip(numbers, groups, strict=True)]
    if n_store:
        shared_phones.append((store_e164, "store", store_records))

    return Contacts(
        dup_persons=dup_persons,
        dup_record=dup_record,
        household=household,
        person=person,
        signup=np.concatenate([signup, dup_signup]),
        email=rec_email,
        phone=rec_phone,
        has_email=pd.notna(rec_email) & ~placeholder,
        placeholder=placeholder,
        first_name=np.concatenate([first, dup_first]),
        last_name=np.concatenate([last, dup_last]),
        birth_date=birth[person],
        address=np.concatenate([address, dup_address]),
        postcode=np.concatenate([postcode, dup_postcode]),
        city=_CITY_NAMES[np.concatenate([city, dup_city])],
        link_via=link_via.tolist(),
        shared_phones=sorted(shared_phones, key=lambda s: (s[1], s[0])),
    )


def customer_attributes(contacts: Contacts, timezone: np.ndarray) -> pa.Array:
    """The ``attributes`` JSON of every record.

    Parameters
    ----------
    contacts : Contacts
        Output of :func:`make_contacts`.
    timezone : numpy.ndarray of str, shape (R,)
        IANA timezone of each record.

    Returns
    -------
    pyarrow.Array of large_string, shape (R,)
        ``{"first_name", "last_name", "date_of_birth" (YYYY-MM-DD), "address",
        "postcode", "city", "timezone"}``; every value is plain text from the lists
        of :mod:`simulation.contact_details` (no quote or backslash), so concatenation
        is valid JSON.
    """
    parts = {
        "first_name": pa.array(contacts.first_name, pa.large_string()),
        "last_name": pa.array(contacts.last_name, pa.large_string()),
        "date_of_birth": pa.array(contacts.birth_date).cast(pa.large_string()),
        "address": pa.array(contacts.address, pa.large_string()),
        "postcode": pa.array(contacts.postcode, pa.large_string()),
        "city": pa.array(contacts.city, pa.large_string()),
        "timezone": pa.array(timezone, pa.large_string()),
    }
    pieces: list[pa.Array | pa.Scalar] = []
    for i, (key, values) in enumerate(parts.items()):
        pieces += [_large(('{"' if i == 0 else '", "') + key + '": "'), values]
    return pc.binary_join_element_wise(*pieces, _large('"}'), _large(""))


def identity_truth(contacts: Contacts, ids: np.ndarray) -> IdentityTruth:
    """The planted identity truth, by customer id (JSON-serialisable).

    Returns
    -------
    IdentityTruth
        ``placeholder_emails``, ``placeholder_email_records``, ``shared_phones`` and
        ``households``: :class:`~simulation.truth.IdentityTruth` documents each key.
    """
    placeholder = np.flatnonzero(contacts.placeholder)
    values = pd.Series(contacts.email[placeholder], dtype=object).str.strip().str.lower()
    members = np.flatnonzero(contacts.household >= 0)
    shared = contacts.shared_phones
    carriers = np.concatenate([records for _, _, records in shared] + [members[:0]])
    entry = np.repeat(np.arange(len(shared)), [len(records) for _, _, records in shared])
    return {
        "placeholder_emails": sorted(set(values)),
        "placeholder_email_records": sorted(ids[placeholder].tolist()),
        "shared_phones": [
            {"phone": number, "kind": kind, "customer_ids": customer_ids}
            for (number, kind, _), customer_ids in zip(
                shared, _sorted_groups(entry, ids[carriers]), strict=True
            )
        ],
        "households": sorted(_sorted_groups(contacts.household[members], ids[members])),
    }


def _sorted_groups(group: np.ndarray, ids: np.ndarray) -> list[list[str]]:
    """The sorted ids of each group, in the order of the group codes."""
    frame = pd.DataFrame({"group": group, "id": ids}).sort_values(["group", "id"])
    codes = frame["group"].to_numpy()
    if not len(codes):
        return []
    starts = np.flatnonzero(np.diff(codes, prepend=codes[0] - 1))
    return [chunk.tolist() for chunk in np.split(frame["id"].to_numpy(dtype=object), starts[1:])]


def _chosen(rng: np.random.Generator, n: int, count: float) -> np.ndarray:
    """A mask of ``round(count)`` of ``n`` rows (at most ``n``), drawn without replacement."""
    mask = np.zeros(n, bool)
    mask[rng.choice(n, min(n, round(count)), replace=False)] = True
    return mask


def _households(
    rng: np.random.Generator, share: float, tz: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Households of 2-3 persons of one timezone.

    Returns
    -------
    household : numpy.ndarray of int, shape (P,)
        The household's first person, -1 outside households.
    rank : numpy.ndarray of int, shape (P,)
        Position in the household (0 for its first person, and outside households).
    """
    n = len(tz)
    household = np.full(n, -1, np.int64)
    rank = np.zeros(n, np.int64)
    pool = rng.permutation(n)[: round(share * n)]
    for z in np.unique(tz[pool]):  # loop over the timezones
        rows = pool[tz[pool] == z]
        sizes = rng.choice((2, 3), len(rows) // 2 + 1, p=(0.6, 0.4))
        sizes = sizes[np.cumsum(sizes) <= len(rows)]
        if len(rows) - sizes.sum() >= 2:  # the rest, two persons, as one more household
            sizes = np.append(sizes, len(rows) - sizes.sum())
        if not len(sizes):
            continue
        starts = np.cumsum(sizes) - sizes
        members = rows[: sizes.sum()]
        household[members] = np.repeat(members[starts], sizes)
        rank[members] = np.arange(len(members)) - np.repeat(starts, sizes)
    return household, rank
