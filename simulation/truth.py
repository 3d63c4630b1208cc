"""The planted truth of a simulated store, as a documented type.

:func:`simulation.simulate` records every parameter it planted in
``SimulatedStore.truth``, a :class:`Truth`, and :func:`simulation.write_store` writes
it as ``truth.json`` (keys in the order :func:`simulate` builds them). Downstream code
and tests read it to check what they recovered.

Conventions of every value: JSON only (strings, numbers, booleans, lists, objects,
``null``); ids are the tables' strings (``c0000001``, ``i000001``, ``anon_0000001``,
``cmp_001``, ``subj_01``, ``offer_pct20``); times are ISO 8601 UTC text with a ``Z``
suffix, whole seconds; probabilities lie in [0, 1]; effects on the open logit are in
logit units; prices and values are in the catalog's currency units. "Per customer id"
maps every customer id, and both records of one person carry the person's value.

These are type declarations only: at run time a :class:`Truth` is a plain ``dict``.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = [
    "Counts",
    "Funnel",
    "HeavyBuyerMultiplier",
    "IdentityTruth",
    "LoggingPolicy",
    "MalformedRow",
    "OpenModel",
    "RealisedFunnel",
    "SharedDevice",
    "SharedPhone",
    "StockOutage",
    "Truth",
    "ValueModel",
    "Window",
]


class Window(TypedDict):
    """The simulated window ``[start, end)``: nothing is logged at or after ``end``."""

    start: str
    """``config.start``, ISO 8601 UTC."""
    end: str
    """``start`` plus ``config.days`` days, ISO 8601 UTC (excluded)."""


class Counts(TypedDict):
    """How much was simulated."""

    events: int
    """Rows of the events table, the planted malformed rows included."""
    malformed: int
    """Planted malformed rows (the length of ``malformed``)."""
    customers: int
    """Customer records (``config.customers``)."""
    persons: int
    """Persons behind the records: ``customers - len(identity_links)``."""
    items: int
    """Catalog items (``config.n_items``)."""
    campaigns: int
    """Email campaigns started in the window."""
    sends: int
    """Emails sent over all campaigns: one per mailed record and campaign, logged as two
    ``email_sent`` rows (subject and offer)."""


class SharedPhone(TypedDict):
    """A phone number held by the records of more than one person."""

    phone: str
    """The number in E.164 (``+12125550123``)."""
    kind: str
    """``household`` (a household's landline) or ``store`` (the shop's own number, typed
    on strangers' records)."""
    customer_ids: list[str]
    """Sorted ids of every record whose phone normalises to the number: records of at
    least two persons, and for a household also a member's second record where it
    carries the landline."""


class IdentityTruth(TypedDict):
    """Keys shared by the records of different persons, which identity resolution must not
    merge on (planted by :mod:`simulation.identities`)."""

    placeholder_emails: list[str]
    """The distinct placeholder emails planted (``noemail@example.com``, ...), normalised
    (trimmed, lower-cased); sorted."""
    placeholder_email_records: list[str]
    """Sorted ids of the records carrying a placeholder email, each the only record of
    its person. They are no addresses: these records are never mailed."""
    shared_phones: list[SharedPhone]
    """One entry per shared number, sorted by ``kind``, then ``phone``."""
    households: list[list[str]]
    """Each household (two or three persons with one last name, address, postcode, city
    and landline) as the sorted ids of its members' first records; sorted."""


class SharedDevice(TypedDict):
    """An anonymous id two different persons browsed under (a shared device)."""

    anonymous_id: str
    """The anonymous id."""
    customer_ids: list[str]
    """The two records that logged in under it: the one whose session first had the id,
    then the other person's."""


class StockOutage(TypedDict):
    """An item that is out of stock at some time in the window."""

    item_id: str
    """The item."""
    out_ts: str | None
    """When it went out of stock, ISO 8601 UTC; ``None`` (``null``): already out at the
    window start (its catalog ``in_stock`` is false)."""
    back_ts: str | None
    """When it came back in stock, ISO 8601 UTC; ``None``: not within the window."""


class HeavyBuyerMultiplier(TypedDict):
    """What sets heavy buyers apart (``heavy_buyers``)."""

    cart_and_purchase: float
    """Factor on their P(add_to_cart | view) and P(purchase | kept cart)."""
    activity: float
    """Factor on their browse sessions per day."""


class RealisedFunnel(TypedDict):
    """The funnel's rates as realised in the events table (malformed copies included)."""

    cart_per_view: float | None
    """``add_to_cart`` rows per ``product_view`` row; ``None`` without views."""
    organic_purchase_per_cart: float | None
    """``purchase`` rows without a campaign per ``add_to_cart`` row; ``None`` without
    carts."""


class Funnel(TypedDict):
    """The browse model's parameters and its realised rates."""

    cart_given_view: float
    """P(add_to_cart | product_view) of an in-stock item outside the person's preferred
    category."""
    cart_preferred_category_multiplier: float
    """Factor on ``cart_given_view`` in the person's preferred category."""
    wishlist_given_view_without_cart: float
    """P(add_to_wishlist | a product view that did not go to the cart)."""
    remove_given_cart: float
    """P(remove_from_cart | add_to_cart)."""
    purchase_given_kept_cart: float
    """P(purchase | a kept cart) at a price at or below ``reference_price``."""
    price_effect: str
    """The formula of P(purchase | kept cart) at any price, as text."""
    reference_price: float
    """The catalog's median list price, currency units."""
    viewed_item: str
    """How a product view's item is drawn (cheapest or priciest of a listing), as text."""
    heavy_buyer_multiplier: HeavyBuyerMultiplier
    """Heavy buyers' factors."""
    product_views_per_session: str
    """The distribution of product views per session, as text (``1 + Poisson(3.5)``)."""
    realised: RealisedFunnel
    """The rates as realised."""


class OpenModel(TypedDict):
    """The email open model: a logistic model of subject-line traits and engagement."""

    base_logit: float
    """Open logit of a subject line without traits, for mean engagement (logit units)."""
    engagement_sd: float
    """Standard deviation of ``email_engagement`` across persons (normal, mean 0; logit
    units)."""
    lapsed_penalty: float
    """Subtracted from the open logit of a send at or after the person's ``lapse_ts``
    (logit units)."""
    formula: str
    """P(open) as text."""


class ValueModel(TypedDict):
    """How an offer's value per open is computed (``offer_value``)."""

    margin_rate: float
    """Gross margin as a share of list price (the product's default margin rate)."""
    expected_order_value: dict[str, float]
    """Customer type -> expected list price of a campaign purchase, currency units: the
    persons' category preferences over the mean price of the items campaign purchases
    are drawn from."""
    formula: str
    """How a send converts, what the purchase costs, and ``offer_value``, as text."""
    unsubscribe_given_open_without_click: float
    """P(unsubscribe | opened, not clicked)."""


class LoggingPolicy(TypedDict):
    """The randomised policy that chose each send's subject line and offer."""

    groups: list[str]
    """The policy's groups, in index order (``US/personalization``, ...)."""
    group_rule: str
    """Which group a send falls in, as text."""
    rules: str
    """How the probability tables are made, as text."""
    subject: dict[str, dict[str, dict[str, float]]]
    """Campaign id -> group -> active subject id -> the probability the policy chose it
    (0: ineligible)."""
    offer: dict[str, dict[str, dict[str, float]]]
    """Campaign id -> group -> offer id -> the probability the policy chose it."""


class MalformedRow(TypedDict):
    """A planted malformed row of the events table."""

    event_id: str | None
    """Its ``event_id``; ``None`` for a ``missing_event_id`` row."""
    kind: str
    """Its one defect, one of ``MALFORMED_KINDS`` (``bad_timestamp``, ...)."""
    row_index: int
    """Its 0-based position among the events table's rows."""


class Truth(IdentityTruth):
    """Every parameter a simulated store planted (``truth.json``).

    The identity keys (``placeholder_emails``, ``placeholder_email_records``,
    ``shared_phones``, ``households``) are :class:`IdentityTruth`'s; in the JSON they
    follow ``identity_link_via``.
    """

    generator: str
    """What simulated the store, with a version: ``tailor.features.simulator/1`` (the
    simulator's first home, kept so that the same config still gives the same bytes)."""
    config: dict[str, Any]
    """The :class:`~simulation.config.SimulationConfig` as JSON (``model_dump(mode="json")``):
    enough to simulate the same store again."""
    window: Window
    """The simulated window."""
    counts: Counts
    """Sizes of what was simulated."""
    categories: list[str]
    """Category names, in index order (the order of ``category_preference``)."""
    preferred_category: dict[str, str]
    """Per customer id: the person's clearly preferred category."""
    category_preference: dict[str, list[float]]
    """Per customer id: the person's probability of browsing each category, in
    ``categories`` order (sums to 1; 6 decimals)."""
    customer_type: dict[str, str]
    """Per customer id: one of ``CUSTOMER_TYPES`` (``bargain_hunter``,
    ``convenience_seeker``, ``brand_loyal``)."""
    price_sensitivity: dict[str, float]
    """Per customer id, in [0, 1]: the probability a product view opens the cheapest item
    of its listing (else the priciest), and the strength of price in buying (see
    ``funnel.price_effect``); 6 decimals."""
    activity_rate: dict[str, float]
    """Per customer id: browse sessions per day while active; 6 decimals."""
    email_engagement: dict[str, float]
    """Per customer id: the person's offset on the open logit (logit units; see
    ``open_model``); 6 decimals."""
    preferred_hour_utc: dict[str, int]
    """Per customer id: the hour of day (0-23, UTC) the person's sessions start around."""
    heavy_buyers: list[str]
    """Sorted ids of the records of persons who visit and buy far more often (see
    ``funnel.heavy_buyer_multiplier``)."""
    lapsing_customers: list[str]
    """Sorted ids of the records of persons who stop being active mid-window."""
    lapse_ts: dict[str, str]
    """Id of a lapsing customer -> when the person stopped, ISO 8601 UTC."""
    identity_links: list[list[str]]
    """``[id_a, id_b]`` per person with two records, ``id_a`` the first record; fuzzy
    duplicates included."""
    identity_link_via: list[str]
    """Aligned with ``identity_links``: the keys the pair shares, ``email``, ``phone`` or
    ``email+phone``, or ``fuzzy`` (neither: only name, date of birth and address)."""
    anonymous_links: dict[str, str]
    """Anonymous id -> the customer id a ``login`` event linked it to (shared devices left
    out)."""
    unlinked_anonymous: dict[str, str]
    """Anonymous id that never logs in -> the customer id that browsed under it."""
    shared_devices: list[SharedDevice]
    """Anonymous ids used by two different persons."""
    inventory_anonymous_id: str
    """``INVENTORY_ID`` (``inventory``): the ``anonymous_id`` of the ``stock_change`` rows,
    which carry no customer."""
    stock_outages: list[StockOutage]
    """Every item out of stock at some time in the window, in item order."""
    funnel: Funnel
    """The browse model."""
    subject_traits: dict[str, dict[str, bool]]
    """Active subject id -> its traits (:func:`simulation.subject_traits`)."""
    subject_trait_effects: dict[str, float]
    """Trait -> its effect on the open logit when a subject line has it (logit units)."""
    best_subject_trait: str
    """The trait with the largest effect."""
    open_model: OpenModel
    """The open model."""
    subject_open: dict[str, float]
    """Active subject id -> P(open), the mean over persons before any lapse."""
    best_subject: str
    """The active subject id with the largest summed trait effect (highest P(open))."""
    offer_click: dict[str, dict[str, float]]
    """Customer type -> offer id -> P(click | open)."""
    offer_conversion: dict[str, dict[str, float]]
    """Customer type -> offer id -> P(purchase within the attribution window | open)."""
    best_offer: dict[str, str]
    """Customer type -> the offer id of the highest conversion."""
    offer_value: dict[str, dict[str, float]]
    """Customer type -> offer id -> expected margin per open, currency units (see
    ``value_model``)."""
    best_offer_by_value: dict[str, str]
    """Customer type -> the offer id of the highest value."""
    value_model: ValueModel
    """How ``offer_value`` is computed."""
    logging_policy: LoggingPolicy
    """The logging policy, with its full probability tables."""
    campaigns: dict[str, str]
    """Campaign id -> when its sends start, ISO 8601 UTC (each send within the hour)."""
    attribution_hours: int
    """Hours after a send in which a purchase counts for it."""
    unsubscribed: dict[str, str]
    """Customer id -> when the record unsubscribed, ISO 8601 UTC (mailed no more)."""
    malformed: list[MalformedRow]
    """Every planted malformed row, in row order."""
