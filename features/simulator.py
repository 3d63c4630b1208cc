"""Seeded synthetic store: customers, catalog, content and an event log with planted truth.

The simulator is the demo's data and the test bed of every later stage, so it plants
ground truth that downstream code must recover and records all of it in
``SimulatedStore.truth`` (JSON-serialisable, written as ``truth.json``):

- each customer's latent category preferences (one clearly preferred category),
  price sensitivity, activity level and type (``bargain_hunter``,
  ``convenience_seeker``, ``brand_loyal``), none of which appear in the tables;
- who is who, as a real CRM export has it (drawn by :mod:`features.simulated_identity`):
  name, date of birth, address, postcode and city in ``attributes``; the same person
  under two customer records (email re-cased / padded, phone re-formatted, and on
  top name typos, moves, and fuzzy duplicates that share no email or phone);
  placeholder emails, household landlines and the shop's phone shared by records of
  different persons; anonymous sessions linked by a ``login`` event, shared devices;
- a browse funnel with realistic rates (product view -> cart about 9 %, cart ->
  purchase about 35 %), price-sensitive browsing (the more price-sensitive, the more
  often a shopper opens the cheapest item of a listing rather than the priciest) and
  purchasing, abandoned carts, repeat buyers, lapsing customers and stock-outs;
- email campaigns whose subject line and offer are chosen by a known, non-uniform
  randomised logging policy with logged propensities, and whose opens, clicks and
  purchases follow closed-form models (subject-trait effects on opening, offer x
  customer-type conversion), so any policy's true value can be computed from
  ``truth``;
- a share of malformed rows, each listed with its kind and row index.

Conventions
-----------
- Time is whole UTC seconds. The simulated window is ``[start, start + days)``;
  nothing is logged at or after its end (email outcomes that would fall later are
  censored, as in a real export).
- ``events.ts`` is text (ISO 8601, ``Z`` suffix), because the log is raw input and
  a planted ``bad_timestamp`` row must be able to hold ``"yesterday"``. Events are
  sorted by time (malformed rows sit at the time of the row they were copied from)
  and ``event_id`` is ``"e"`` plus the zero-padded 1-based row number.
- Malformed rows are extra copies of real ``product_view`` (or ``page_view``) rows
  with exactly one defect, so quarantining them leaves the simulated world intact.
- ``stock_change`` rows carry no customer: ``customer_id`` is null and
  ``anonymous_id`` is the reserved id ``"inventory"`` (:data:`INVENTORY_ID`), which
  never logs in. ``properties`` is ``{"in_stock": false}`` or ``{"in_stock": true}``.
- The catalog's ``in_stock`` is the state at ``start``; the state at any later time
  is that plus the ``stock_change`` events before it.
- ``customers`` is the number of customer *records*; persons with two records
  (``duplicate_person_share``) make up the difference, so there are
  ``customers - len(truth["identity_links"])`` persons.
- Per-customer truth (``preferred_category``, ``customer_type``, ...) is keyed by
  every customer id; both records of one person carry the person's values.
- Placeholder emails are no addresses: their records receive no campaign email.

Everything is vectorised with numpy / Arrow; Python loops run over campaigns only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from features.contracts import CATALOG, CHANNELS, CONTENT, CUSTOMERS, EVENT_TYPES, EVENTS
from features.errors import InputError
from features.settings import ATTRIBUTION_WINDOW_HOURS, MARGIN_RATE
from features.simulated_identity import customer_attributes, identity_truth, make_contacts

__all__ = [
    "CUSTOMER_TYPES",
    "INVENTORY_ID",
    "MALFORMED_KINDS",
    "SUBJECT_TRAITS",
    "SimulatedStore",
    "SimulationConfig",
    "simulate",
    "subject_traits",
    "write_store",
]

CUSTOMER_TYPES: tuple[str, ...] = ("bargain_hunter", "convenience_seeker", "brand_loyal")
INVENTORY_ID = "inventory"
MALFORMED_KINDS: tuple[str, ...] = (
    "bad_timestamp",
    "unknown_event_type",
    "negative_price",
    "missing_ids",
    "missing_event_id",
)
SUBJECT_TRAITS: tuple[str, ...] = ("personalized", "urgency", "question", "emoji", "number", "long")

_DAY = 86_400
_HOUR = 3_600
_NEVER = np.iinfo(np.int64).max
_ALWAYS = np.iinfo(np.int64).min
_GENERATOR = "tailor.features.simulator/1"

# ---------------------------------------------------------------- planted parameters
_CATEGORY_NAMES = tuple(
    "apparel shoes accessories beauty home kitchen electronics sports outdoor toys books "
    "pets garden jewelry bags grocery".split()
)
_BRAND_HEADS = ("Nor", "Vel", "Ast", "Bri", "Cal", "Dun", "Eve", "Fal", "Hal", "Kin")
_BRAND_TAILS = ("ora", "ex", "wood", "line", "field", "mark")
_ADJECTIVES = ("Classic", "Everyday", "Premium", "Essential", "Modern", "Compact", "Deluxe")

_COUNTRIES = ("US", "CA", "GB", "DE", "AU")
_COUNTRY_P = (0.70, 0.10, 0.10, 0.05, 0.05)
# (timezone, UTC offset in hours during October, North American area codes, country)
_TIMEZONES: tuple[tuple[str, int, tuple[int, ...], str], ...] = (
    ("America/New_York", -4, (212, 646, 718, 917, 516, 617, 404, 305, 215, 202), "US"),
    ("America/Chicago", -5, (312, 773, 214, 713, 512, 612), "US"),
    ("America/Denver", -6, (303, 720, 801, 505), "US"),
    ("America/Los_Angeles", -7, (213, 310, 415, 408, 206, 503, 702), "US"),
    ("America/Toronto", -4, (416, 647, 613, 514), "CA"),
    ("America/Vancouver", -7, (604, 778), "CA"),
    ("Europe/London", 1, (), "GB"),
    ("Europe/Berlin", 2, (), "DE"),
    ("Australia/Sydney", 11, (), "AU"),
)
_TZ_P_IN_COUNTRY = (0.45, 0.25, 0.08, 0.22, 0.7, 0.3, 1.0, 1.0, 1.0)
_LOCAL_HOURS = np.array([7, 8, 12, 13, 18, 19, 20, 21, 22])
_LOCAL_HOUR_P = np.array([0.08, 0.12, 0.12, 0.08, 0.1, 0.14, 0.16, 0.12, 0.08])

# Customer type mix by country group (US, international).
_TYPE_P = {"US": (0.35, 0.40, 0.25), "intl": (0.55, 0.25, 0.20)}
# Price sensitivity ~ Beta(a, b) by customer type.
_SENSITIVITY_BETA = ((6.0, 2.0), (2.0, 6.0), (2.0, 4.0))

# Browse funnel.
_CART_BASE = 0.062  # P(add_to_cart | product_view) outside the preferred category
_CART_PREFERRED_MULT = 1.6
_WISHLIST_P = 0.03
_REMOVE_P = 0.12
_BUY_BASE = 0.48  # P(purchase | cart kept) for a price at or below the reference price
_HEAVY_BUY_MULT = 1.3
_HEAVY_ACTIVITY_MULT = 6.0
_VIEWS_MEAN = 3.5  # product views per session = 1 + Poisson(_VIEWS_MEAN)
_LISTING_ITEMS = 3  # items a view is chosen from: the cheapest or the priciest of them

# Email: subject lines (content_id, text, active) and offers.
_SUBJECTS: tuple[tuple[str, str, bool], ...] = (
    ("subj_01", "Your weekly picks are here", True),
    ("subj_02", "{first_name}, your weekly picks are here", True),
    ("subj_03", "Last chance: 20% off ends tonight", True),
    ("subj_04", "Have you seen what's new this week?", True),
    ("subj_05", "\U0001f525 New arrivals just landed", True),
    ("subj_06", "{first_name}, last chance to grab your favourites", True),
    ("subj_07", "3 new styles picked for you, plus what's trending this week", True),
    ("subj_08", "Ready for the weekend? \U0001f389", True),
    ("subj_09", "Summer sale: up to 50% off", False),
)
_URGENCY_WORDS = ("last chance", "ends tonight", "hurry", "today only")
_LONG_SUBJECT = 45  # characters of the template, token included
_TRAIT_EFFECTS = {
    "personalized": 0.50,
    "urgency": 0.25,
    "question": 0.15,
    "emoji": -0.10,
    "number": 0.10,
    "long": -0.25,
}
_OPEN_BASE_LOGIT = -1.0
_ENGAGEMENT_SD = 0.7
_LAPSED_OPEN_PENALTY = 2.0  # logit units, once the person has lapsed
_UNSUBSCRIBE_P = 0.015  # P(unsubscribe | opened, not clicked)

DEMO_RULES_FILE = Path(__file__).resolve().parent / "defaults" / "demo_rules.yaml"
"""The decision service's rules for the simulated store: they name its content ids
(``tailor demo`` serves with them; the packaged default rules name no content)."""

# (content_id, text, offer_type, discount_pct, cost per redemption)
_OFFERS: tuple[tuple[str, str, str, int, float], ...] = (
    ("offer_none", "Our latest picks for you", "none", 0, 0.0),
    ("offer_pct10", "10% off your next order", "percent_off", 10, 0.0),
    ("offer_pct20", "20% off everything", "percent_off", 20, 0.0),
    ("offer_freeship", "Free shipping on your order", "free_shipping", 0, 6.0),
)
# P(purchase within the attribution window | opened), rows CUSTOMER_TYPES, cols _OFFERS.
_CONVERSION = np.array(
    [
        [0.030, 0.060, 0.100, 0.040],
        [0.035, 0.040, 0.045, 0.100],
        [0.080, 0.082, 0.085, 0.080],
    ]
)
_CLICK = np.minimum(0.10 + 2.5 * _CONVERSION, 0.9)  # P(click | opened)
_MARGIN_RATE = MARGIN_RATE  # gross margin on list price: the product's default

# Logging policy weights (before campaign modulation and eligibility).
_SUBJECT_WEIGHTS = {
    "US": (3.0, 2.0, 1.5, 1.0, 1.0, 1.5, 1.0, 1.0),
    "intl": (1, 1, 2, 1.5, 1.5, 1, 2, 1),
}
_OFFER_WEIGHTS = {"US": (2.0, 1.5, 1.0, 1.0), "intl": (1.0, 1.0, 1.0, 2.0)}
_POLICY_GROUPS = (
    "US/personalization",
    "US/no_personalization",
    "intl/personalization",
    "intl/no_personalization",
)

_DEVICES = ("desktop", "mobile", "tablet", "ios", "android")
_PROPERTIES = (
    '{"page": "home"}',
    '{"page": "category"}',
    '{"page": "search"}',
    '{"method": "password"}',
    '{"in_stock": false}',
    '{"in_stock": true}',
)
_P_HOME, _P_LOGIN, _P_OUT, _P_BACK = 0, 3, 4, 5
_BAD_TIMESTAMPS = ("2026-13-45T99:00:00Z", "yesterday", "2026-02-30T10:00:00Z", "not a date")
_UNKNOWN_TYPES = ("teleport", "pageview", "buy_now")
_ETYPE = {name: i for i, name in enumerate(EVENT_TYPES)}
_CHANNEL = {name: i for i, name in enumerate(CHANNELS)}


class SimulationConfig(BaseModel):
    """Everything that shapes a simulated store; the seed is the only randomness."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customers: int = Field(
        2000, ge=1, le=5_000_000, description="customer records, duplicates included"
    )
    days: int = Field(30, ge=1, le=3660, description="length of the simulated window, days")
    seed: int = Field(0, ge=0, description="seed of the only random generator")
    start: AwareDatetime = Field(
        datetime(2026, 10, 1, tzinfo=UTC), description="start of the window (UTC)"
    )
    n_items: int = Field(500, ge=1, le=1_000_000, description="catalog size")
    n_categories: int = Field(
        12, ge=1, le=100, description="product categories (readable names up to 16)"
    )
    n_brands: int = Field(30, ge=1, le=60, description="distinct brands in the catalog")
    malformed_share: float = Field(
        0.002, ge=0.0, le=1.0, description="malformed rows added, as a share of clean events"
    )
    no_personalization_consent_share: float = Field(
        0.1, ge=0.0, le=1.0, description="share of records without consent_personalization"
    )
    no_email_consent_share: float = Field(
        0.05, ge=0.0, le=1.0, description="share of records without consent_email"
    )
    duplicate_person_share: float = Field(
        0.03, ge=0.0, le=1.0, description="share of persons with a second customer record"
    )
    name_typo_share: float = Field(
        0.3, ge=0.0, le=1.0, description="share of second records with a one-letter name typo"
    )
    moved_share: float = Field(
        0.2, ge=0.0, le=1.0, description="share of second records at a new address (moved)"
    )
    fuzzy_duplicate_share: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="share of second records with another email and no phone: linkable "
        "only by name, date of birth and address",
    )
    placeholder_email_share: float = Field(
        0.03,
        ge=0.0,
        le=1.0,
        description="share of records whose email is a placeholder (noemail@example.com, ...)",
    )
    household_share: float = Field(
        0.04,
        ge=0.0,
        le=1.0,
        description="share of persons in households of 2-3 (one last name, address, landline)",
    )
    store_phone_share: float = Field(
        0.01, ge=0.0, le=1.0, description="share of records carrying the shop's phone number"
    )
    anonymous_session_share: float = Field(
        0.2, ge=0.0, le=1.0, description="share of sessions that start anonymous (web)"
    )
    anonymous_login_share: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="share of anonymous sessions without a purchase that log in "
        "(sessions with a purchase always log in before checkout)",
    )
    shared_devices: int = Field(
        3, ge=0, description="anonymous ids that log in as two different persons"
    )
    new_subscriber_share: float = Field(
        0.15, ge=0.0, le=1.0, description="share of persons who sign up inside the window"
    )
    lapsing_share: float = Field(
        0.1, ge=0.0, le=1.0, description="share of persons who stop being active mid-window"
    )
    heavy_buyer_share: float = Field(
        0.04, ge=0.0, le=1.0, description="share of persons who visit and buy far more often"
    )
    sessions_per_day: float = Field(
        0.12, gt=0.0, le=50.0, description="mean browse sessions per person per day"
    )
    campaign_every_days: int = Field(4, ge=1, description="days between email campaigns")
    campaign_hour_utc: int = Field(15, ge=0, le=23, description="UTC hour campaigns start")
    attribution_hours: int = Field(
        int(ATTRIBUTION_WINDOW_HOURS),
        ge=1,
        le=24 * 30,
        description="window after a send in which purchases count",
    )
    stock_out_share: float = Field(
        0.06, ge=0.0, le=1.0, description="share of items that go out of stock at some point"
    )

    @field_validator("start")
    @classmethod
    def _utc_whole_seconds(cls, value: datetime) -> datetime:
        return value.astimezone(UTC).replace(microsecond=0)

    @model_validator(mode="after")
    def _items_cover_categories(self) -> SimulationConfig:
        if self.n_items < self.n_categories:
            raise ValueError(
                f"n_items={self.n_items} must be at least n_categories={self.n_categories}"
            )
        return self


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
    truth : dict
        Every planted parameter, JSON-serialisable (see :func:`simulate`).
    """

    customers: pd.DataFrame
    catalog: pd.DataFrame
    content: pd.DataFrame
    events: pd.DataFrame
    truth: dict[str, Any]


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


# ---------------------------------------------------------------- internal containers
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
    identity_truth: dict[str, Any]  # placeholder emails, shared phones, households


def _col(n: int, **cols: np.ndarray | float) -> dict[str, np.ndarray]:
    """A block of ``n`` internal event rows; unspecified columns are null."""
    block = {
        "ts": np.zeros(n, np.int64),
        "etype": np.full(n, -1, np.int64),
        "cust": np.full(n, -1, np.int64),
        "anon": np.full(n, -1, np.int64),
        "item": np.full(n, -1, np.int64),
        "qty": np.full(n, -1, np.int64),
        "price": np.full(n, np.nan),
        "order": np.full(n, -1, np.int64),
        "campaign": np.full(n, -1, np.int64),
        "slot": np.full(n, -1, np.int64),
        "content": np.full(n, -1, np.int64),
        "decision": np.full(n, -1, np.int64),
        "propensity": np.full(n, np.nan),
        "channel": np.full(n, -1, np.int64),
        "device": np.full(n, -1, np.int64),
        "props": np.full(n, -1, np.int64),
    }
    for name, values in cols.items():
        block[name][:] = values
    return block


def _concat(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not blocks:
        return _col(0)
    return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


# Text columns are built as Arrow large_string, the storage of pandas' ``str`` dtype,
# so handing them to pandas copies nothing.
def _ids(prefix: str, codes: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded ``codes + 1``; negative codes give nulls."""
    codes = np.asarray(codes, dtype=np.int64)
    numbers = pa.array(codes + 1, mask=codes < 0)
    padded = pc.utf8_lpad(numbers.cast(pa.large_string()), width, "0")
    return pc.binary_join_element_wise(_large(prefix), padded, _large(""))


def _take(strings: pa.Array | list[str] | tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """``strings[codes]`` with negative codes as nulls."""
    values = (
        strings.cast(pa.large_string())
        if isinstance(strings, pa.Array)
        else pa.array(list(strings), pa.large_string())
    )
    codes = np.asarray(codes, dtype=np.int64)
    return pc.take(values, pa.array(codes, mask=codes < 0))


def _iso_text(stamps: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """UTC timestamps (any unit, whole seconds) as ``YYYY-MM-DDTHH:MM:SSZ`` text.

    A cast plus two string kernels; about five times faster than ``strftime``.
    """
    naive = stamps.cast(pa.timestamp("s", tz="UTC"), safe=False).cast(pa.timestamp("s"))
    text = pc.utf8_replace_slice(naive.cast(pa.large_string()), 10, 11, "T")
    return pc.binary_join_element_wise(text, _large("Z"), _large(""))


def _pick(rng: np.random.Generator, p: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
    """Draw one index per row of the probability matrix ``p`` (n, k)."""
    cdf = np.cumsum(p, axis=1)
    cdf[:, -1] = 1.0
    if u is None:
        u = rng.random(len(p))
    return np.minimum((cdf <= u[:, None]).sum(axis=1), p.shape[1] - 1)


# ---------------------------------------------------------------- catalog and stock
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


# ---------------------------------------------------------------- customers
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


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


# ---------------------------------------------------------------- browsing
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


# ---------------------------------------------------------------- email campaigns
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
    discount = np.array([o[3] for o in _OFFERS], dtype=float)
    never_out = (cat.out == _NEVER) & (cat.back == _NEVER)
    weights = cat.popularity * never_out
    empty = np.bincount(cat.category, weights=weights, minlength=len(cat.names)) == 0
    weights = np.where(empty[cat.category], cat.popularity, weights)
    in_stock = _sampler(cat.category, weights, len(cat.names))
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

        lapsed = send >= people.lapse[per]
        logit = _OPEN_BASE_LOGIT + people.engagement[per] + effects[s_idx]
        opened = rng.random(n) < _sigmoid(logit - _LAPSED_OPEN_PENALTY * lapsed)
        ctype = people.ctype[per]
        clicked = opened & (rng.random(n) < _CLICK[ctype, o_idx])
        buy_given_click = _CONVERSION[ctype, o_idx] / _CLICK[ctype, o_idx]
        bought = clicked & (rng.random(n) < buy_given_click)
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
        item = np.full(n, -1, np.int64)
        cats = _sample_categories(people.pref, per[bought], rng.random(n_buy))
        item[bought] = _sample_items(in_stock, cats, rng.random(n_buy))
        price = np.round(cat.price[np.maximum(item, 0)] * (1 - discount[o_idx] / 100), 2)
        web = _CHANNEL["web"]
        emit(bought, buy_t - 1, etype=_ETYPE["checkout"], cust=rec, channel=web, order=order)
        emit(
            bought,
            buy_t,
            etype=_ETYPE["purchase"],
            cust=rec,
            channel=web,
            order=order,
            item=item,
            qty=1,
            price=price,
        )
        leave = opened & ~clicked & (rng.random(n) < _UNSUBSCRIBE_P)
        leave_t = open_t + 30 + rng.exponential(60.0, n).astype(np.int64)
        emit(leave, leave_t, etype=_ETYPE["unsubscribe"], cust=rec, channel=email)
        gone = leave & (leave_t < end)
        unsub[rec[gone]] = leave_t[gone]
    return _Email(_concat(blocks), times, subj_p, offer_p, unsub, n_sends)


# ---------------------------------------------------------------- stock, malformed rows
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


def _malformed_rows(
    cfg: SimulationConfig, rng: np.random.Generator, clean: dict[str, np.ndarray], cat: _Catalog
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Copies of real view rows with exactly one defect each, and their kind codes."""
    n_clean = len(clean["ts"])
    sources = np.flatnonzero(clean["etype"] == _ETYPE["product_view"])
    if len(sources) == 0:
        sources = np.flatnonzero(clean["etype"] == _ETYPE["page_view"])
    n_bad = int(round(cfg.malformed_share * n_clean)) if len(sources) else 0
    src = rng.choice(sources, n_bad) if n_bad else np.zeros(0, np.int64)
    rows = {name: col[src].copy() for name, col in clean.items()}
    kind = rng.permutation(np.arange(n_bad) % len(MALFORMED_KINDS))
    unknown = kind == MALFORMED_KINDS.index("unknown_event_type")
    rows["etype"][unknown] = len(EVENT_TYPES) + rng.integers(0, len(_UNKNOWN_TYPES), unknown.sum())
    negative = kind == MALFORMED_KINDS.index("negative_price")
    item = rows["item"][negative]
    rows["price"][negative] = -np.where(item >= 0, cat.price[np.maximum(item, 0)], 9.99)
    no_ids = kind == MALFORMED_KINDS.index("missing_ids")
    rows["cust"][no_ids] = -1
    rows["anon"][no_ids] = -1
    return rows, kind


# ---------------------------------------------------------------- assembly
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
        (sorted by ``ts``; ids ``e000000001`` ...) and ``truth``. Keys of ``truth``:

        - ``generator``, ``config``, ``window`` (start / end ISO), ``counts``.
        - ``categories``; per customer id: ``preferred_category``,
          ``category_preference`` (probabilities in ``categories`` order),
          ``customer_type``, ``price_sensitivity`` (0-1), ``activity_rate``
          (sessions / day while active), ``email_engagement`` (open-logit
          offset), ``preferred_hour_utc``.
        - ``heavy_buyers``, ``lapsing_customers`` (ids), ``lapse_ts`` (id -> ISO).
        - ``identity_links`` ([id_a, id_b] per person with two records, a the first
          record; fuzzy duplicates included), ``identity_link_via`` (aligned: the
          keys the pair shares, ``email`` / ``phone`` / ``email+phone``, or
          ``fuzzy``: neither, only name, date of birth and address),
          ``anonymous_links`` (anonymous id -> customer id, through a ``login``),
          ``unlinked_anonymous`` (anonymous ids that never log in -> true customer
          id), ``shared_devices`` ([{anonymous_id, customer_ids}]).
        - Keys shared by different persons: ``placeholder_emails`` (the distinct
          placeholder values planted, normalised: trimmed, lower-cased; sorted),
          ``placeholder_email_records`` (sorted ids of the records carrying one, each
          the only record of its person), ``shared_phones`` ([{phone, kind,
          customer_ids}], one per shared number, sorted by kind then phone: ``phone``
          in E.164, ``kind`` ``household`` (a household's landline) or ``store`` (the
          shop's number), ``customer_ids`` the sorted ids of every record whose
          phone normalises to it: records of at least two persons, and for a
          household also a member's second record where it carries the landline),
          ``households`` (sorted lists of the sorted ids of each household's
          members' first records). See :mod:`features.simulated_identity`.
        - ``stock_outages`` ([{item_id, out_ts, back_ts}], ``null`` = before the
          window / not within it), ``inventory_anonymous_id``.
        - ``funnel``: browse-model parameters and the realised rates.
        - ``subject_traits``, ``subject_trait_effects`` (open-logit units),
          ``best_subject_trait``, ``open_model``, ``subject_open`` (population
          mean P(open) per active subject, before any lapse), ``best_subject``.
        - ``offer_click`` and ``offer_conversion`` (type -> offer -> P(click | open)
          and P(purchase within the window | open)), ``best_offer`` (by
          conversion), ``offer_value`` (margin-aware value per open),
          ``best_offer_by_value``, ``value_model``.
        - ``logging_policy`` (groups, rules and the full probability tables per
          campaign), ``campaigns`` (id -> send start ISO), ``attribution_hours``,
          ``unsubscribed`` (id -> ISO).
        - ``malformed``: [{event_id, kind, row_index}] for every planted bad row.
    """
    # The identity stream (the eighth) came last: spawning it left the others as they were.
    seeds = np.random.SeedSequence(config.seed).spawn(8)
    rngs = [np.random.default_rng(s) for s in seeds]
    start = int(config.start.timestamp())
    end = start + config.days * _DAY

    cat = _make_catalog(config, rngs[0])
    people = _make_people(config, rngs[1], len(cat.names), rngs[7])
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
) -> dict[str, Any]:
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
    malformed = [
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
    open_p = _sigmoid(_OPEN_BASE_LOGIT + people.engagement[:, None] + effects[None, :])
    offer_ids = [o[0] for o in _OFFERS]
    # expected list price of a campaign purchase, per customer type
    never_out = (cat.out == _NEVER) & (cat.back == _NEVER)
    w = cat.popularity * never_out
    k = len(cat.names)
    tot = np.bincount(cat.category, weights=w, minlength=k)
    w = np.where((tot == 0)[cat.category], cat.popularity, w)
    cat_mean = np.bincount(cat.category, weights=w * cat.price, minlength=k) / np.bincount(
        cat.category, weights=w, minlength=k
    )
    person_price = people.pref @ cat_mean
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


# ---------------------------------------------------------------- writing
def _as_text_table(frame: pd.DataFrame, *, all_strings: bool) -> pa.Table:
    """Arrow table with timestamps as ISO ``Z`` text (and every column text if asked)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, field in enumerate(table.schema):
        column = table.column(i)
        if pa.types.is_timestamp(field.type):
            column = _iso_text(column)
        elif all_strings and not pa.types.is_large_string(field.type):
            column = column.cast(pa.large_string())
        table = table.set_column(i, field.name, column)
    return table.replace_schema_metadata(None)


def write_store(
    store: SimulatedStore,
    out_dir: Path,
    fmt: Literal["csv", "jsonl", "parquet"] = "csv",
) -> dict[str, Path]:
    """Write the store's tables and truth to ``out_dir``.

    Parameters
    ----------
    store : SimulatedStore
        Output of :func:`simulate`.
    out_dir : Path
        Created if missing; existing files of the same names are replaced.
    fmt : {"csv", "jsonl", "parquet"}
        Format of the events file. Customers, catalog and content are always CSV.

    Returns
    -------
    dict of str to Path
        ``customers``, ``catalog``, ``content``, ``events`` and ``truth`` paths.

    Notes
    -----
    Timestamps are ISO 8601 text with a ``Z`` suffix, booleans ``true`` / ``false``,
    JSON columns JSON text, nulls empty (CSV) or ``null`` (JSONL, one object per
    line, numbers as JSON numbers). In Parquet every events column is text, so
    malformed values survive as written. Same store, same bytes.
    """
    if fmt not in ("csv", "jsonl", "parquet"):
        raise InputError("fmt", fmt, "expected csv, jsonl or parquet")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "customers": out_dir / "customers.csv",
        "catalog": out_dir / "catalog.csv",
        "content": out_dir / "content.csv",
        "events": out_dir / f"events.{fmt}",
        "truth": out_dir / "truth.json",
    }
    for name in ("customers", "catalog", "content"):
        frame = getattr(store, name)
        pacsv.write_csv(_as_text_table(frame, all_strings=False), paths[name])
    if fmt == "csv":
        pacsv.write_csv(_as_text_table(store.events, all_strings=False), paths["events"])
    elif fmt == "parquet":
        pq.write_table(_as_text_table(store.events, all_strings=True), paths["events"])
    else:
        # DuckDB's JSON writer is several times faster than pandas' and keeps row order.
        con = duckdb.connect()
        try:
            con.execute("SET enable_progress_bar = false")
            con.register("simulated_events", _as_text_table(store.events, all_strings=False))
            target = str(paths["events"]).replace("'", "''")
            con.execute(f"COPY (SELECT * FROM simulated_events) TO '{target}' (FORMAT JSON)")
        finally:
            con.close()
    paths["truth"].write_text(json.dumps(store.truth, indent=1, ensure_ascii=False) + "\n")
    return paths
