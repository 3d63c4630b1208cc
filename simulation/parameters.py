"""The planted parameters of the simulated store: every constant its parts draw from.

The browse funnel, the customer-type mix, the subject lines and their trait effects,
the offers and their conversion, the logging policy's weights: each is set once here,
read by the module that draws with it and reported in the planted truth
(:mod:`simulation.truth`). The names with a leading underscore are the package's
own, shared by its modules; the others are part of its API.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.data.contracts import CHANNELS, EVENT_TYPES
from features.settings import MARGIN_RATE

__all__ = [
    "CUSTOMER_TYPES",
    "DEMO_RULES_FILE",
    "INVENTORY_ID",
    "MALFORMED_KINDS",
    "SUBJECT_TRAITS",
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
# truth.json's ``generator``: named when the simulator lived in features/simulator.py,
# and kept as it was so that the same config still gives the same bytes.
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
