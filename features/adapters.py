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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.errors import InputError
from features.readers import FileFormat


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
        Maps raw columns to contract columns (extra columns are kept).
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
}


def adapter_for(source: str, kind: str) -> Adapter:
    """Return the adapter for ``source``, checking that it produces ``kind``."""
    if source not in ADAPTERS:
        raise InputError("source", source, f"expected one of {sorted(ADAPTERS)}")
    adapter = ADAPTERS[source]
    if kind not in adapter.kinds:
        raise InputError("kind", kind, f"source {source!r} provides {', '.join(adapter.kinds)}")
    return adapter
