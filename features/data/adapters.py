"""Adapters from real public log formats to the Tailor data contracts.

Each adapter says how to read its files and maps a raw chunk to contract
columns; the result then goes through the same validation as any other input,
so an adapter never drops a row: a value it cannot map is passed on as it was
and the row is quarantined with the reason. Columns the contract does not have
(``category_id``, ``user_session``, ``rating`` ...) are kept by validation in
``properties``.

Mappings (also in the README):

* ``taobao`` — Alibaba UserBehavior CSV, no header:
  ``user_id,item_id,category_id,behavior_type,timestamp``. ``pv`` → product_view,
  ``cart`` → add_to_cart, ``fav`` → add_to_wishlist, ``buy`` → purchase; user_id →
  customer_id; unix seconds → UTC; category_id → properties. The log has no event
  id: ``event_id`` is ``tb-`` + a hash of the row + its occurrence number among
  identical rows, so re-ingesting the same file stores nothing twice while genuinely
  repeated rows are kept. ``--kind catalog`` derives (item_id, category) rows.
* ``rees46`` — REES46 multi-category store CSV with header
  ``event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session``.
  view → product_view, cart → add_to_cart, remove_from_cart, purchase; product_id →
  item_id; user_id → customer_id; ``event_id`` as for Taobao (``rs-``). ``--kind catalog``
  gives item_id, category (category_code, else category_id), brand, price.
* ``movielens`` — MovieLens ``u.data`` (tab-separated ``user_id item_id rating
  timestamp``): each rating is a ``product_view`` of the movie (a rating implies the
  user watched it) with the rating in properties; ``event_id`` is
  ``ml-<user>-<item>``. ``--kind catalog`` reads ``u.item`` (latin-1, ``|``-separated):
  title and the first listed genre as category.
* ``hillstrom`` — the MineThatData e-mail campaign (Hillstrom, 2008) CSV with header
  ``recency,history_segment,history,mens,womens,zip_code,newbie,channel,segment,visit,
  conversion,spend``: one customer per row, randomly sent one of three arms (p = 1/3).
  The row's customer is ``hs-<n>``, n its 0-based position among the data rows (line
  number - 2). ``--kind customers``: consent true (email and personalisation), country
  US, the pre-campaign columns as ``attributes``. ``--kind content``: the arms as
  ``offer`` content (``mens_email``, ``womens_email``, ``no_email``, with an
  ``offer_type`` attribute). ``--kind events``, up to four per row: the last purchase
  before the campaign (``purchase`` of item ``history``, ``recency`` × 30 days before
  the send, price = ``history``, last year's spend), the logged decision
  (``email_sent`` at :data:`HILLSTROM_SEND`, campaign ``hillstrom-2008-03``, slot
  ``offer``, the arm's content id, decision id ``hs-<n>-offer``, propensity 1/3), a
  visit as ``email_click`` one hour after the send and a conversion as ``purchase`` of
  item ``order`` (price = ``spend``) two hours after it, both carrying the decision
  id. The file has no times beyond "within two weeks": these stamps keep the
  outcomes inside the attribution window. The no_email arm mailed nothing: its
  decision is still an ``email_sent`` row (the logged choice "send nothing", which a
  selector must be able to pick and be judged on), with no channel and properties
  ``{"mailed": false}``; its visit is a site visit, logged as an ``email_click`` on
  channel ``web`` so every arm is judged on the same outcome. The conventions are
  those of ``prepare_campaign`` in the acceptance harness.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.data.readers import FileFormat
from features.data.validation import MAPPING_ERROR
from features.errors import InputError


@dataclass(frozen=True)
class Adapter:
    """How to read one source's files and map them to a contract.

    Attributes
    ----------
    name : str
        The ``--source`` name.
    kinds : tuple of str
        Table kinds this source can produce.
    fmt : FileFormat or None
        Forced file format (None: from the suffix).
    column_names : dict of kind to list of str, or None
        Column names of headerless files, per kind.
    delimiter : dict of kind to str, or None
        Field delimiter per kind, where not the format's default.
    encoding : dict of kind to str, or None
        Text encoding per kind, where not UTF-8.
    quoting : bool
        Whether ``"`` quotes fields in this source's text files.
    to_contract : callable (raw frame, kind) -> frame
        Maps raw columns to contract columns (extra columns are kept). The raw frame's
        index is each row's line number; every output row keeps the index label of
        the row it came from (a row may give several records, or be marked
        unmappable in a :data:`~features.data.validation.MAPPING_ERROR` column — never
        dropped).
    """

    name: str
    kinds: tuple[str, ...]
    to_contract: Callable[[pd.DataFrame, str], pd.DataFrame]
    fmt: FileFormat | None = None
    column_names: dict[str, list[str]] | None = None
    delimiter: dict[str, str] | None = None
    encoding: dict[str, str] | None = None
    quoting: bool = True


def _identity(raw: pd.DataFrame, kind: str) -> pd.DataFrame:
    return raw


def content_event_ids(raw: pd.DataFrame, columns: list[str], prefix: str) -> pd.Series:
    """Deterministic event ids for logs that have none.

    ``prefix`` + a 64-bit hash of the row's values + the row's occurrence number
    among identical rows, so the same file always yields the same ids and
    repeated identical rows stay distinct events.
    """
    hashes = pd.util.hash_pandas_object(raw[columns].astype("string"), index=False).to_numpy()
    occurrence = pd.Series(hashes).groupby(hashes).cumcount().to_numpy()
    hex_hashes = np.char.zfill(np.char.mod("%x", hashes), 16)
    return pd.Series(
        np.char.add(np.char.add(prefix + "-", hex_hashes), np.char.mod("-%d", occurrence)),
        index=raw.index,
        dtype="string",
    )


def _unix_seconds_to_iso(values: pd.Series) -> pd.Series:
    """Unix seconds as ISO-8601 UTC text; values that are not numbers pass unchanged."""
    seconds = pd.to_numeric(values, errors="coerce")
    stamps = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce")
    iso = stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype("string")
    return iso.where(stamps.notna(), values.astype("string"))


def _map_values(values: pd.Series, mapping: dict[str, str]) -> pd.Series:
    """Map known codes; unknown codes pass unchanged (validation names them)."""
    text = values.astype("string")
    return text.map(mapping).fillna(text).astype("string")


TAOBAO_COLUMNS = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
TAOBAO_TYPES = {
    "pv": "product_view",
    "cart": "add_to_cart",
    "fav": "add_to_wishlist",
    "buy": "purchase",
}


def _taobao(raw: pd.DataFrame, kind: str) -> pd.DataFrame:
    if kind == "catalog":
        return pd.DataFrame({"item_id": raw["item_id"], "category": raw["category_id"]})
    return pd.DataFrame(
        {
            "event_id": content_event_ids(raw, TAOBAO_COLUMNS, "tb"),
            "ts": _unix_seconds_to_iso(raw["timestamp"]),
            "event_type": _map_values(raw["behavior_type"], TAOBAO_TYPES),
            "customer_id": raw["user_id"],
            "item_id": raw["item_id"],
            "category_id": raw["category_id"],
        }
    )


REES46_TYPES = {
    "view": "product_view",
    "cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "purchase": "purchase",
}


def _rees46(raw: pd.DataFrame, kind: str) -> pd.DataFrame:
    if kind == "catalog":
        code = raw["category_code"].astype("string")
        return pd.DataFrame(
            {
                "item_id": raw["product_id"],
                "category": code.mask(code.str.strip() == "").fillna(raw["category_id"]),
                "brand": raw["brand"],
                "price": raw["price"],
                "category_id": raw["category_id"],
            }
        )
    columns = [c for c in raw.columns]
    mapped = pd.DataFrame(
        {
            "event_id": content_event_ids(raw, columns, "rs"),
            "ts": raw["event_time"],
            "event_type": _map_values(raw["event_type"], REES46_TYPES),
            "customer_id": raw["user_id"],
            "item_id": raw["product_id"],
            "price": raw["price"],
        }
    )
    for extra in ("category_id", "category_code", "brand", "user_session"):
        mapped[extra] = raw[extra]
    return mapped


MOVIELENS_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
MOVIELENS_ITEM_COLUMNS = [
    "item_id",
    "title",
    "release_date",
    "video_release_date",
    "imdb_url",
    *[f"genre_{i}" for i in range(len(MOVIELENS_GENRES))],
]


def _movielens(raw: pd.DataFrame, kind: str) -> pd.DataFrame:
    if kind == "catalog":
        flags = raw[[f"genre_{i}" for i in range(len(MOVIELENS_GENRES))]]
        flags = flags.apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy()
        first = np.where(flags.any(axis=1), flags.argmax(axis=1), 0)
        release = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce", utc=True)
        return pd.DataFrame(
            {
                "item_id": raw["item_id"],
                "title": raw["title"],
                "category": np.asarray(MOVIELENS_GENRES, dtype=object)[first],
                "created_ts": release.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    user = raw["user_id"].astype("string")
    item = raw["item_id"].astype("string")
    return pd.DataFrame(
        {
            "event_id": "ml-" + user + "-" + item,
            "ts": _unix_seconds_to_iso(raw["timestamp"]),
            "event_type": "product_view",
            "customer_id": user,
            "item_id": item,
            "rating": raw["rating"],
        }
    )


HILLSTROM_COLUMNS = [
    "recency",
    "history_segment",
    "history",
    "mens",
    "womens",
    "zip_code",
    "newbie",
    "channel",
    "segment",
    "visit",
    "conversion",
    "spend",
]
HILLSTROM_ARMS = {
    "Mens E-Mail": ("mens_email", "Men's merchandise e-mail", "mens"),
    "Womens E-Mail": ("womens_email", "Women's merchandise e-mail", "womens"),
    "No E-Mail": ("no_email", "(no e-mail)", "none"),
}
"""Arm → (content id, text, offer_type)."""
HILLSTROM_SEND = pd.Timestamp("2008-03-01T10:00:00Z")
"""When the campaign is taken to have been sent (the file gives no time)."""
HILLSTROM_CAMPAIGN = "hillstrom-2008-03"
_ISO = "%Y-%m-%dT%H:%M:%SZ"


def _hillstrom(raw: pd.DataFrame, kind: str) -> pd.DataFrame:
    missing = [c for c in HILLSTROM_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError("columns", missing, f"the hillstrom source needs {HILLSTROM_COLUMNS}")
    line = raw.index.to_numpy(dtype=np.int64)
    row_id = pd.Series(np.char.mod("hs-%d", line - 2), index=raw.index, dtype="string")
    checks = _HillstromChecks(raw)
    if kind == "customers":
        return pd.DataFrame(
            {
                "customer_id": row_id,
                "country": "US",
                "consent_email": True,
                "consent_personalization": True,
                "attributes": _hillstrom_attributes(raw, checks),
                MAPPING_ERROR: checks.reasons("recency", "history", "mens", "womens", "newbie"),
            },
            index=raw.index,
        )
    arm = raw["segment"].astype("string").str.strip()
    content_id = arm.map({a: v[0] for a, v in HILLSTROM_ARMS.items()}).fillna(arm)
    if kind == "content":
        return pd.DataFrame(
            {
                "content_id": content_id,
                "slot": "offer",
                "text": arm.map({a: v[1] for a, v in HILLSTROM_ARMS.items()}),
                "attributes": arm.map(
                    {a: json.dumps({"offer_type": v[2]}) for a, v in HILLSTROM_ARMS.items()}
                ),
                "active": True,
                MAPPING_ERROR: checks.reasons("segment"),
            },
            index=raw.index,
        )
    error = checks.reasons("recency", "history", "segment", "visit", "conversion", "spend")
    decision = row_id + "-offer"
    mailed = (content_id != "no_email").fillna(True)
    months = checks.numbers["recency"]
    history_ts = HILLSTROM_SEND - pd.to_timedelta(months.fillna(0) * 30, unit="D")
    frames = [
        pd.DataFrame(
            {
                "event_id": row_id + "-history",
                "ts": history_ts.dt.strftime(_ISO),
                "event_type": "purchase",
                "customer_id": row_id,
                "item_id": "history",
                "quantity": 1,
                "price": raw["history"],
                "channel": raw["channel"].astype("string").str.strip().map({"Web": "web"}),
            },
            index=raw.index,
        ),
        pd.DataFrame(
            {
                "event_id": row_id + "-sent",
                "ts": HILLSTROM_SEND.strftime(_ISO),
                "event_type": "email_sent",
                "customer_id": row_id,
                "campaign_id": HILLSTROM_CAMPAIGN,
                "slot": "offer",
                "content_id": content_id,
                "decision_id": decision,
                "propensity": 1 / 3,
                "channel": pd.Series("email", index=raw.index).where(mailed),
                "properties": pd.Series('{"mailed": false}', index=raw.index).where(~mailed),
            },
            index=raw.index,
        ),
    ]
    # A value that is neither 0 nor 1 gives the event too, so the row is quarantined whole.
    visited = checks.flag("visit")
    frames.append(
        pd.DataFrame(
            {
                "event_id": row_id + "-visit",
                "ts": (HILLSTROM_SEND + pd.Timedelta(hours=1)).strftime(_ISO),
                "event_type": "email_click",
                "customer_id": row_id,
                "campaign_id": HILLSTROM_CAMPAIGN,
                "slot": "offer",
                "content_id": content_id,
                "decision_id": decision,
                "channel": pd.Series("email", index=raw.index).where(mailed, "web"),
            },
            index=raw.index,
        )[visited]
    )
    converted = checks.flag("conversion")
    frames.append(
        pd.DataFrame(
            {
                "event_id": row_id + "-conversion",
                "ts": (HILLSTROM_SEND + pd.Timedelta(hours=2)).strftime(_ISO),
                "event_type": "purchase",
                "customer_id": row_id,
                "item_id": "order",
                "quantity": 1,
                "price": raw["spend"],
                "campaign_id": HILLSTROM_CAMPAIGN,
                "decision_id": decision,
                "channel": "web",
            },
            index=raw.index,
        )[converted]
    )
    events = pd.concat(frames)
    events[MAPPING_ERROR] = error.reindex(events.index)
    # Row by row, in the order of the file.
    order = np.argsort(events.index.to_numpy(), kind="stable")
    return events.iloc[order]


class _HillstromChecks:
    """The numeric columns of a Hillstrom chunk, parsed, and why a value is wrong."""

    def __init__(self, raw: pd.DataFrame) -> None:
        self.raw = raw
        self.numbers = {
            c: pd.to_numeric(raw[c].astype("string").str.strip(), errors="coerce")
            for c in (
                "recency",
                "history",
                "mens",
                "womens",
                "newbie",
                "visit",
                "conversion",
                "spend",
            )
        }
        # column → (bad mask, what was expected)
        self.problems: dict[str, tuple[pd.Series, str]] = {}
        for column in ("recency",):
            value = self.numbers[column]
            self.problems[column] = (
                ~((value >= 0) & (value % 1 == 0)).fillna(False),
                "is not a whole number of months",
            )
        for column in ("history", "spend"):
            value = self.numbers[column]
            self.problems[column] = (~(value >= 0).fillna(False), "is not an amount >= 0")
        for column in ("mens", "womens", "newbie", "visit", "conversion"):
            value = self.numbers[column]
            self.problems[column] = (~value.isin([0, 1]).fillna(False), "is not 0 or 1")
        arm = raw["segment"].astype("string").str.strip()
        self.problems["segment"] = (
            ~arm.isin(list(HILLSTROM_ARMS)).fillna(False),
            f"is not one of: {', '.join(HILLSTROM_ARMS)}",
        )

    def flag(self, column: str) -> np.ndarray:
        """Rows whose 0/1 column is not 0 (1, or a wrong value)."""
        return (self.numbers[column] != 0).fillna(True).to_numpy(dtype=bool)

    def reasons(self, *columns: str) -> pd.Series:
        """Why each row cannot be mapped ("; "-joined), null where it can."""
        out = pd.Series("", index=self.raw.index, dtype="string")
        for column in columns:
            bad, expected = self.problems[column]
            text = self.raw[column].astype("string").fillna("")
            message = column + ": " + text.map(lambda v: repr(str(v)[:80])) + " " + expected
            out = out.mask(bad, out + "; " + message)
        out = out.str.removeprefix("; ")
        return out.mask(out == "")


def _hillstrom_attributes(raw: pd.DataFrame, checks: _HillstromChecks) -> pd.Series:
    """The pre-campaign columns as a JSON object per row: numbers as numbers where
    they parse, as given where not (such a row is quarantined)."""
    columns: dict[str, pd.Series] = {}
    for column in HILLSTROM_COLUMNS[:8]:  # recency … channel: known before the send
        given = raw[column].astype(object).where(raw[column].notna(), None)
        if column in checks.numbers:
            number = checks.numbers[column]
            ok = number.notna() & ((number % 1 == 0) | (column == "history"))
            parsed = number[ok].map(float if column == "history" else int)
            given = given.astype(object)
            given[ok] = parsed
        columns[column] = given
    lines = pd.DataFrame(columns).to_json(orient="records", lines=True, force_ascii=False)
    return pd.Series(lines.rstrip("\n").split("\n"), index=raw.index, dtype="string")


ADAPTERS: dict[str, Adapter] = {
    "contract": Adapter(
        name="contract", kinds=("events", "customers", "catalog", "content"), to_contract=_identity
    ),
    "taobao": Adapter(
        name="taobao",
        kinds=("events", "catalog"),
        to_contract=_taobao,
        fmt="csv",
        column_names={"events": TAOBAO_COLUMNS, "catalog": TAOBAO_COLUMNS},
    ),
    "rees46": Adapter(name="rees46", kinds=("events", "catalog"), to_contract=_rees46, fmt="csv"),
    "movielens": Adapter(
        name="movielens",
        kinds=("events", "catalog"),
        to_contract=_movielens,
        fmt="tsv",
        column_names={
            "events": ["user_id", "item_id", "rating", "timestamp"],
            "catalog": MOVIELENS_ITEM_COLUMNS,
        },
        delimiter={"catalog": "|"},
        encoding={"catalog": "latin-1"},
        quoting=False,
    ),
    "hillstrom": Adapter(
        name="hillstrom",
        kinds=("events", "customers", "content"),
        to_contract=_hillstrom,
        fmt="csv",
    ),
}


def adapter_for(source: str, kind: str) -> Adapter:
    """Return the adapter for ``source``, checking that it produces ``kind``."""
    if source not in ADAPTERS:
        raise InputError("source", source, f"expected one of {sorted(ADAPTERS)}")
    adapter = ADAPTERS[source]
    if kind not in adapter.kinds:
        raise InputError("kind", kind, f"source {source!r} provides {', '.join(adapter.kinds)}")
    return adapter
