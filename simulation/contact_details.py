"""What a simulated person's details look like, and how a second record misspells them.

Names, email addresses, phone numbers (North American and international formats),
street addresses, postcodes and cities, dates of birth; and the noise a CRM export
carries: a one-letter typo in a name, another email, a move, placeholder emails, the
shop's own phone number. :mod:`simulation.identities` decides who gets which.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from simulation.columns import _large

__all__ = ["PLACEHOLDER_EMAILS"]

PLACEHOLDER_EMAILS: tuple[str, ...] = (
    "noemail@example.com",
    "test@test.com",
    "none@none.com",
    "na@na.com",
)
"""What staff type when a customer has no email (normalised: trimmed, lower-cased)."""

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
