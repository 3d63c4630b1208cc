"""Who is who in the simulated store: the persons behind the customer records.

A real CRM export holds what an identity resolver must get right and what it must not
merge. :func:`make_contacts` plants all of it, and :func:`identity_truth` records the
truth of who is who. The simulator (:mod:`features.simulator`) calls both while it
builds its persons.

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
  :data:`PLACEHOLDER_EMAILS`, written with a little case / padding noise
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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from features.simulator import SimulationConfig

__all__ = [
    "PLACEHOLDER_EMAILS",
    "Contacts",
    "customer_attributes",
    "identity_truth",
    "make_contacts",
]

PLACEHOLDER_EMAILS: tuple[str, ...] = (
    "noemail@example.com",
    "test@test.com",
    "none@none.com",
    "na@na.com",
)
"""What staff type when a customer has no email (normalised: trimmed, lower-cased)."""

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

# Ages at the window start: at least 18 * 366 days (18 years and then some), under 85 years.
_MIN_AGE_DAYS = 18 * 366
_MAX_AGE_DAYS = 85 * 365
# (city, country, postcode head: ZIP prefix or Canadian FSA letter, area codes)
_CITIES: tuple[tuple[str, str, str, tuple[int, ...]], ...] = (
    ("New York", "US", "10", (212, 646, 718, 917)),
    ("Hempstead", "US", "11", (516,)),
    ("Boston", "US", "02", (617,)),
    ("Atlanta", "US", "30", (404,)),
    ("Miami", "US", "33", (305,)),
    ("Philadelphia", "US", "19", (215,)),
    ("Washington", "US", "20", (202,)),
    ("Chicago", "US", "60", (312, 773)),
    ("Dallas", "US", "75", (214,)),
    ("Houston", "US", "77", (713,)),
    ("Austin", "US", "78", (512,)),
    ("Minneapolis", "US", "55", (612,)),
    ("Denver", "US", "80", (303, 720)),
    ("Salt Lake City", "US", "84", (801,)),
    ("Albuquerque", "US", "87", (505,)),
    ("Los Angeles", "US", "90", (213, 310)),
    ("San Francisco", "US", "94", (415,)),
    ("San Jose", "US", "95", (408,)),
    ("Seattle", "US", "98", (206,)),
    ("Portland", "US", "97", (503,)),
    ("Las Vegas", "US", "89", (702,)),
    ("Toronto", "CA", "M", (416, 647)),
    ("Ottawa", "CA", "K", (613,)),
    ("Montreal", "CA", "H", (514,)),
    ("Vancouver", "CA", "V", (604, 778)),
    ("London", "GB", "", ()),
    ("Berlin", "DE", "", ()),
    ("Sydney", "AU", "", ()),
)
_CITY_NAMES = np.array([c[0] for c in _CITIES], dtype=object)
_CITY_COUNTRY = np.array([c[1] for c in _CITIES], dtype=object)
_CITY_HEAD = np.array([c[2] for c in _CITIES], dtype=object)
_AREA_CITY = np.full(1000, -1, np.int64)
for _i, _city in enumerate(_CITIES):
    _AREA_CITY[list(_city[3])] = _i
del _i, _city
_STREETS = tuple(
    "Oak Maple Pine Cedar Elm Birch Willow Chestnut Park Lake Hill Church Mill River "
    "Station High Victoria King Queen Main Sunset Spring Forest Meadow".split()
)
_STREET_KINDS = ("Street", "Avenue", "Road", "Lane", "Drive", "Court", "Place", "Way")
_DE_STREETS = tuple(
    "Hauptstrasse Bahnhofstrasse Gartenweg Lindenallee Schillerstrasse Goethestrasse "
    "Birkenweg Ringstrasse Schulstrasse Bergstrasse".split()
)
_LONDON_DISTRICTS = tuple(
    "E1 E14 E17 N1 N7 N16 NW1 NW3 NW6 SE1 SE10 SE15 SW1A SW4 SW11 SW19 W2 W11 W14 "
    "EC1A EC2M WC1N WC2H".split()
)
_CA_LETTERS = "ABCEGHJKLMNPRSTVWXYZ"  # no D, F, I, O, Q or U in Canadian postcodes
_GB_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the letters of a UK inward code
_STORE_AREA, _STORE_EXCHANGE = 212, 555  # lines 555-0100 .. 555-0199 are fictional


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


def _pad(values: np.ndarray, width: int) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=np.int64)).astype(str).str.zfill(width)


def _words(rng: np.random.Generator, words: tuple[str, ...] | str, n: int) -> pa.Array:
    """``n`` draws from ``words`` (or from the letters of a string), as Arrow text."""
    return pc.take(pa.array(list(words), pa.large_string()), rng.integers(0, len(words), n))


def _numbers(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int64)).cast(pa.large_string())


def _join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of Arrow text arrays and literals."""
    return pc.binary_join_element_wise(
        *(_large(p) if isinstance(p, str) else p for p in parts), _large("")
    )


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


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
        "postcode", "city", "timezone"}``; every value is plain text from this
        module's lists (no quote or backslash), so concatenation is valid JSON.
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


def identity_truth(contacts: Contacts, ids: np.ndarray) -> dict[str, Any]:
    """The planted identity truth, by customer id (JSON-serialisable).

    Returns
    -------
    dict
        ``placeholder_emails`` (the distinct placeholder values planted, normalised,
        sorted), ``placeholder_email_records`` (sorted ids of the records carrying
        one), ``shared_phones`` (one ``{"phone": E.164, "kind": "household" |
        "store", "customer_ids": [...]}`` per number held by records of more than
        one person: the sorted ids of every record whose phone normalises to it,
        which for a household includes a member's second record where it carries
        the landline too; sorted by kind, then phone) and ``households`` (the
        sorted ids of each household's members' first records; sorted).
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


def _home_city(country: np.ndarray, area: np.ndarray) -> np.ndarray:
    """City index of each person: by area code in North America, else the country's city."""
    city = _AREA_CITY[area]
    for code in ("GB", "DE", "AU"):  # loop over the one-city countries
        city[(city < 0) & (country == code)] = int(np.flatnonzero(_CITY_COUNTRY == code)[0])
    return city


def _draw_places(rng: np.random.Generator, city: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A street address and a postcode in each of ``city`` (city indices), as text."""
    n = len(city)
    house = _numbers(np.exp(rng.uniform(0.0, np.log(400.0), n)))
    english = _join(house, " ", _words(rng, _STREETS, n), " ", _words(rng, _STREET_KINDS, n))
    german = _join(_words(rng, _DE_STREETS, n), " ", house)
    country = _CITY_COUNTRY[city]
    address = pc.if_else(pa.array(country == "DE"), german, english)
    postcode = np.full(n, "", dtype=object)
    for code in ("US", "CA", "GB", "DE", "AU"):  # loop over the countries
        rows = np.flatnonzero(country == code)
        m = len(rows)
        if not m:
            continue
        head = pa.array(_CITY_HEAD[city[rows]], pa.large_string())
        if code == "US":  # ZIP: the city's 2-digit prefix, 3 digits
            text = _join(head, pc.utf8_lpad(_numbers(rng.integers(1, 1000, m)), 3, "0"))
        elif code == "CA":  # "M5V 2T6": the city's letter, digit, letter, digit, letter, digit
            letters = [_words(rng, _CA_LETTERS, m) for _ in range(2)]
            digits = [_numbers(rng.integers(0, 10, m)) for _ in range(3)]
            text = _join(head, digits[0], letters[0], " ", digits[1], letters[1], digits[2])
        elif code == "GB":  # "SW11 4QT": a London district, digit, two letters
            district = _words(rng, _LONDON_DISTRICTS, m)
            digit = _numbers(rng.integers(0, 10, m))
            text = _join(
                district, " ", digit, _words(rng, _GB_LETTERS, m), _words(rng, _GB_LETTERS, m)
            )
        elif code == "DE":  # Berlin: 10115-14199
            text = _numbers(rng.integers(10_115, 14_200, m))
        else:  # Sydney: 2000-2234
            text = _numbers(rng.integers(2_000, 2_235, m))
        postcode[rows] = text.to_numpy(zero_copy_only=False)
    return address.to_numpy(zero_copy_only=False).astype(object), postcode


def _moved_city(
    rng: np.random.Generator, city: np.ndarray, tz: np.ndarray, area_codes: list[tuple[int, ...]]
) -> np.ndarray:
    """Another city of the person's timezone where it has several, else the same city."""
    out = city.copy()
    for z, codes in enumerate(area_codes):  # loop over the timezones
        options = np.unique(_AREA_CITY[list(codes)]) if codes else np.array([], np.int64)
        options = options[options >= 0]
        rows = np.flatnonzero((tz == z) & np.isin(city, options))
        k = len(options)
        if k < 2 or not len(rows):
            continue
        here = np.searchsorted(options, city[rows])
        out[rows] = options[(here + 1 + rng.integers(0, k - 1, len(rows))) % k]
    return out


def _distinct_birth_dates(birth: np.ndarray, keys: list[np.ndarray]) -> np.ndarray:
    """Move birth dates a day earlier until no two persons agree on a key and a birth date.

    Parameters
    ----------
    birth : numpy.ndarray of datetime64[D], shape (P,)
    keys : list of numpy.ndarray of int, shape (P,)
        Non-negative integer codes, below 2**40.
    """
    birth = birth.copy()
    while True:
        day = birth.astype(np.int64) + 100_000  # days since 1970, made positive
        clash = np.zeros(len(birth), bool)
        for key in keys:
            _, first = np.unique(key * 1_000_000 + day, return_index=True)
            repeated = np.ones(len(birth), bool)
            repeated[first] = False
            clash |= repeated
        if not clash.any():
            return birth
        birth[clash] -= np.timedelta64(1, "D")


def _one_edit(rng: np.random.Generator, names: np.ndarray) -> np.ndarray:
    """Each name with one edit after its first letter: a substituted letter, a deleted
    letter or two neighbours swapped (a swap of two equal letters substitutes instead).

    Names are capitalised ASCII words of at least three letters.
    """
    n = len(names)
    if not n:
        return names.copy()
    text = np.array(names.tolist(), dtype=str)
    width = text.dtype.itemsize // 4
    codes = text.view(np.uint32).reshape(n, width).copy()
    length = np.char.str_len(text)
    rows = np.arange(n)
    op = rng.integers(0, 3, n)  # 0 substitute, 1 delete, 2 swap
    pos = 1 + (rng.random(n) * (length - 1)).astype(np.int64)
    swap_at = 1 + (rng.random(n) * (length - 2)).astype(np.int64)
    right = codes[rows, np.minimum(swap_at + 1, width - 1)]
    op = np.where((op == 2) & (codes[rows, swap_at] == right), 0, op)
    pos = np.where(op == 2, swap_at, pos)
    out = codes.copy()
    # substitute: another lower-case letter
    sub = op == 0
    old = codes[rows[sub], pos[sub]].astype(np.int64) - ord("a")
    out[rows[sub], pos[sub]] = ord("a") + (old + rng.integers(1, 26, int(sub.sum()))) % 26
    # delete: shift the tail left by one
    cols = np.arange(width)
    source = cols[None, :] + (cols[None, :] >= pos[:, None])
    shifted = np.where(
        source < width, np.take_along_axis(codes, np.minimum(source, width - 1), 1), 0
    )
    out[op == 1] = shifted[op == 1]
    # swap
    sw = rows[op == 2]
    out[sw, pos[sw]], out[sw, pos[sw] + 1] = codes[sw, pos[sw] + 1], codes[sw, pos[sw]]
    return out.view(f"<U{width}").reshape(n).astype(object)


def _other_email(
    rng: np.random.Generator,
    first: np.ndarray,
    last: np.ndarray,
    number: pd.Series,
    domain_i: np.ndarray,
    persons: np.ndarray,
) -> np.ndarray:
    """A second address of each person: the local part at another domain, or a new local
    part (initial, last name, the person's number) at the same domain.

    The person's number is unique, so the address is nobody else's.
    """
    n = len(persons)
    domains = np.array(_EMAIL_DOMAINS, dtype=object)
    own = domain_i[persons]
    other = domains[(own + rng.integers(1, len(domains), n)) % len(domains)]
    lower_first = pd.Series(first, dtype=object).str.lower()
    lower_last = pd.Series(last, dtype=object).str.lower()
    tail = number.iloc[persons].reset_index(drop=True)
    moved_domain = lower_first + "." + lower_last + tail + "@" + pd.Series(other)
    new_local = lower_first.str.slice(0, 1) + lower_last + tail + "@" + pd.Series(domains[own])
    return np.where(
        rng.random(n) < 0.5, moved_domain.to_numpy(dtype=object), new_local.to_numpy(dtype=object)
    )


def _placeholder_text(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` placeholder emails as typed: as is, upper case, or capitalised and padded."""
    values = pd.Series(PLACEHOLDER_EMAILS, dtype=object)
    written = np.stack(
        [
            values.to_numpy(dtype=object),
            values.str.upper().to_numpy(dtype=object),
            (" " + values.str.capitalize() + " ").to_numpy(dtype=object),
            (values.str.capitalize() + " ").to_numpy(dtype=object),
        ]
    )
    form = rng.choice(len(written), n, p=(0.55, 0.2, 0.1, 0.15))
    return written[form, rng.integers(0, len(values), n)]


def _store_phone(
    rng: np.random.Generator, area: np.ndarray, exchange: np.ndarray, line: np.ndarray, n: int
) -> tuple[str, np.ndarray]:
    """The shop's number (E.164) and ``n`` ways it was typed.

    The line is the first of 555-0100 .. 555-0199 that no person's phone holds.
    """
    held = line[(area == _STORE_AREA) & (exchange == _STORE_EXCHANGE)]
    free = np.setdiff1d(np.arange(100, 200), held)
    digits = f"{_STORE_AREA}{_STORE_EXCHANGE}{int(free[0]):04d}"
    a, e, ln = digits[:3], digits[3:6], digits[6:]
    written = np.array(
        [f"+1 {a} {e} {ln}", f"({a}) {e}-{ln}", f"{a}.{e}.{ln}", f"{a}-{e}-{ln}", f"+1{digits}"],
        dtype=object,
    )
    return f"+1{digits}", written[rng.integers(0, len(written), n)]
