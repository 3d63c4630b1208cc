"""Writing a simulated store: the four tables and ``truth.json``, same store, same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.errors import InputError
from simulation.columns import _iso_text
from simulation.store import SimulatedStore

__all__ = ["write_store"]


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
