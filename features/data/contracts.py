"""Data contracts: the one definition of every table Tailor reads or writes.

Every reader (ingest, adapters, feature jobs) and writer (simulator, event store)
goes through these objects, so a column is named, typed and constrained in exactly
one place. See DESIGN.md "Data contracts".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa

ColumnType = Literal["string", "timestamp", "int", "float", "bool", "json"]

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "add_to_wishlist",
    "checkout",
    "purchase",
    "email_sent",
    "email_open",
    "email_click",
    "unsubscribe",
    "resubscribe",
    "consent_change",
    "bounce",
    "complaint",
    "login",
    "identify",
    "stock_change",
)

# Events about consent and deliverability: they count for every customer, consented to
# profiling or not, and never feed a behavioural profile.
#   consent_change  properties {"consent_email": bool, "consent_personalization": bool}
#                   (either or both); the state in effect from ``ts``.
#   unsubscribe / resubscribe  e-mail consent withdrawn / given again.
#   bounce          properties {"bounce_type": "hard" | "soft"}; a hard bounce (the
#                   default when no type is given) makes the address unsendable.
#   complaint       a spam complaint: unsendable.
CONSENT_EVENTS: tuple[str, ...] = (
    "consent_change",
    "unsubscribe",
    "resubscribe",
    "bounce",
    "complaint",
)

SLOTS: tuple[str, ...] = ("subject", "offer", "products", "hero", "cta")
CHANNELS: tuple[str, ...] = ("web", "app", "email", "store")

_ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "json": pa.string(),
}


@dataclass(frozen=True)
class Column:
    """One column of a table contract.

    Parameters
    ----------
    name : str
        Column name as it appears in files and in the store.
    dtype : ColumnType
        Logical type; timestamps are always stored as UTC microseconds.
    required : bool
        A null (or empty string) value sends the row to quarantine.
    enum : tuple of str, optional
        Allowed values; anything else sends the row to quarantine.
    min_value, max_value : float, optional
        Inclusive bounds for numeric columns.
    free_text : bool
        Prose (a title, a subject line): bounded by ``RowLimits.max_text_length``
        rather than ``max_field_length``, the bound of ids and codes.
    description : str
        What the column means, for documentation and error messages.
    """

    name: str
    dtype: ColumnType
    required: bool = False
    enum: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    free_text: bool = False
    description: str = ""

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.dtype]


@dataclass(frozen=True)
class RowLimits:
    """Bounds every row is held to, whatever its table (the settings of the same names).

    Parameters
    ----------
    min_event_ts : datetime
        Events stamped earlier than this (UTC) are refused: a zero date, a year
        typed wrong, a default of 0001-01-01. (Other timestamps, such as a catalog
        item's ``created_ts``, may be older, within what pandas holds: from
        1677-09-22 to 2262-04-11.)
    max_field_length : int
        Most characters of an id or other short text (emails, codes, categories).
    max_text_length : int
        Most characters of a free-text column (catalog ``title``, content ``text``).
    max_json_bytes : int
        Most bytes of a row's ``properties`` / ``attributes`` JSON (UTF-8), unknown
        columns folded in.
    """

    min_event_ts: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    max_field_length: int = 256
    max_text_length: int = 4096
    max_json_bytes: int = 65_536


@dataclass(frozen=True)
class TableContract:
    """A table's columns, its key and its row-level rules.

    Parameters
    ----------
    kind : str
        ``events``, ``customers``, ``catalog`` or ``content``.
    columns : tuple of Column
        Columns in storage order.
    key : str
        The idempotency key: a row with a key already stored is a duplicate.
    one_of : tuple of str
        At least one of these columns must be non-null in every row.
    """

    kind: str
    columns: tuple[Column, ...]
    key: str
    one_of: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.kind} has no column {name!r}")

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.arrow_type, nullable=not c.required) for c in self.columns]
        )


EVENTS = TableContract(
    kind="events",
    key="event_id",
    one_of=("customer_id", "anonymous_id"),
    columns=(
        Column("event_id", "string", required=True, description="unique idempotency key"),
        Column("ts", "timestamp", required=True, description="when it happened, UTC"),
        Column("event_type", "string", required=True, enum=EVENT_TYPES),
        Column("customer_id", "string", description="known customer"),
        Column("anonymous_id", "string", description="cookie / device id"),
        Column("item_id", "string", description="product"),
        Column("quantity", "int", min_value=0, description="units, cart and purchase events"),
        Column("price", "float", min_value=0, description="unit price"),
        Column("order_id", "string"),
        Column("campaign_id", "string", description="email campaign"),
        Column("slot", "string", description="decision slot: subject, offer, products, ..."),
        Column("content_id", "string", description="which variant was shown"),
        Column("decision_id", "string", description="Tailor decision that chose it"),
        Column(
            "propensity",
            "float",
            min_value=0.0,
            max_value=1.0,
            description="probability the logging policy gave the shown variant",
        ),
        Column("channel", "string", enum=CHANNELS),
        Column("device", "string"),
        Column("properties", "json", description="anything else, a JSON object (stored canonical)"),
    ),
)

CUSTOMERS = TableContract(
    kind="customers",
    key="customer_id",
    columns=(
        Column("customer_id", "string", required=True),
        Column("email", "string"),
        Column("phone", "string"),
        Column("country", "string", description="ISO 3166-1 alpha-2"),
        Column("signup_ts", "timestamp"),
        Column("consent_email", "bool", description="may be sent marketing email"),
        Column("consent_personalization", "bool", description="may be profiled"),
        Column("consent_updated_ts", "timestamp"),
        Column("attributes", "json"),
    ),
)

CATALOG = TableContract(
    kind="catalog",
    key="item_id",
    columns=(
        Column("item_id", "string", required=True),
        Column("title", "string", free_text=True),
        Column("category", "string"),
        Column("brand", "string"),
        Column("price", "float", min_value=0),
        Column("in_stock", "bool"),
        Column("created_ts", "timestamp"),
        Column("properties", "json", description="anything else, a JSON object (stored canonical)"),
    ),
)

CONTENT = TableContract(
    kind="content",
    key="content_id",
    columns=(
        Column("content_id", "string", required=True),
        Column("slot", "string", required=True),
        Column("text", "string", free_text=True, description="the subject line, offer copy ..."),
        Column("attributes", "json", description="offer_type, discount_pct, cost, ..."),
        Column("active", "bool"),
    ),
)

CONTRACTS: dict[str, TableContract] = {c.kind: c for c in (EVENTS, CUSTOMERS, CATALOG, CONTENT)}

# The JSON column of each table that keeps unknown input columns verbatim.
EXTRA_COLUMN: dict[str, str] = {
    "events": "properties",
    "customers": "attributes",
    "catalog": "properties",
    "content": "attributes",
}


def contract_for(kind: str) -> TableContract:
    """Return the contract of a table kind, or raise naming the bad kind."""
    from features.errors import InputError

    try:
        return CONTRACTS[kind]
    except KeyError:
        raise InputError("kind", kind, f"expected one of {sorted(CONTRACTS)}") from None
