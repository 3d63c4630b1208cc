"""Read CSV, JSONL and Parquet files (gzip too) as chunks of raw, untyped rows.

Readers do no validation: every value comes out as it was written (strings for
CSV, JSON types for JSONL, Arrow types for Parquet) together with its line or row
number, and a line that cannot even be split into fields is reported as a
:class:`BadLine` rather than dropped, so ingest can quarantine it with its reason.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.errors import InputError

FileFormat = Literal["csv", "tsv", "jsonl", "parquet"]

_SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".data": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class BadLine:
    """A line that could not be split into the expected fields."""

    line_number: int
    reason: str
    text: str


@dataclass
class RawChunk:
    """A chunk of raw rows.

    Attributes
    ----------
    frame : pandas.DataFrame
        Raw values, one row per input record, columns as named in the file.
    line_numbers : numpy.ndarray of int64, shape (len(frame),)
        1-based line number (text formats) or row number (Parquet) of each row.
    bad_lines : list of BadLine
        Lines in this chunk that could not be parsed at all.
    """

    frame: pd.DataFrame
    line_numbers: np.ndarray
    bad_lines: list[BadLine] = field(default_factory=list)


def detect_format(path: Path, fmt: str | None = None) -> FileFormat:
    """Return the file format from ``fmt`` or the file's suffix (``.gz`` ignored)."""
    if fmt is not None:
        if fmt not in ("csv", "tsv", "jsonl", "parquet"):
            raise InputError("format", fmt, "expected csv, tsv, jsonl or parquet")
        return fmt  # type: ignore[return-value]
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise InputError(
        "path", str(path), "cannot tell the format from the suffix; pass --format csv|jsonl|parquet"
    )


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def iter_chunks(
    path: Path,
    *,
    fmt: FileFormat,
    chunk_rows: int,
    column_names: list[str] | None = None,
    delimiter: str | None = None,
    encoding: str = "utf8",
    quoting: bool = True,
) -> Iterator[RawChunk]:
    """Yield the file as raw chunks of about ``chunk_rows`` rows.

    Parameters
    ----------
    path : Path
        The file; a ``.gz`` suffix means gzip.
    fmt : FileFormat
        ``csv`` / ``tsv`` (all values read as strings), ``jsonl`` or ``parquet``.
    chunk_rows : int
        Target rows per chunk.
    column_names : list of str, optional
        For headerless text files: the column names.
    delimiter : str, optional
        Overrides the format's delimiter.
    encoding : str
        Text encoding of CSV / TSV files.
    quoting : bool
        Whether ``"`` quotes fields in CSV / TSV files.
    """
    if not path.exists():
        raise InputError("path", str(path), "no such file")
    if fmt in ("csv", "tsv"):
        yield from _iter_delimited(
            path,
            delimiter=delimiter or ("," if fmt == "csv" else "\t"),
            chunk_rows=chunk_rows,
            column_names=column_names,
            encoding=encoding,
            quoting=quoting,
        )
    elif fmt == "jsonl":
        yield from _iter_jsonl(path, chunk_rows=chunk_rows)
    else:
        yield from _iter_parquet(path, chunk_rows=chunk_rows)


def _iter_delimited(
    path: Path,
    *,
    delimiter: str,
    chunk_rows: int,
    column_names: list[str] | None,
    encoding: str,
    quoting: bool,
) -> Iterator[RawChunk]:
    with _open_binary(path) as fh:
        if column_names is None:
            header = fh.readline().decode(encoding).rstrip("\r\n")
            if not header:
                return
            fields = (
                next(csv.reader([header], delimiter=delimiter))
                if quoting
                else header.split(delimiter)
            )
            names = [n.strip() for n in fields]
            first_line = 2
        else:
            names = list(column_names)
            first_line = 1
        bad: list[BadLine] = []

        def on_invalid(row: pacsv.InvalidRow) -> str:
            bad.append(
                BadLine(
                    line_number=int(row.number) + first_line - 1,
                    reason=(
                        f"line has {row.actual_columns} fields, expected {row.expected_columns}"
                    ),
                    text=row.text,
                )
            )
            return "skip"

        # ~120 bytes a row is a fair guess for event logs; a block is one chunk.
        block = max(1 << 20, min(chunk_rows * 120, 1 << 28))
        reader = pacsv.open_csv(
            fh,
            read_options=pacsv.ReadOptions(
                column_names=names, block_size=block, use_threads=False, encoding=encoding
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"' if quoting else False,
                invalid_row_handler=on_invalid,
                newlines_in_values=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        # Good rows' line numbers are the consecutive numbers from the first
        # data line, skipping those of bad lines (reported while parsing).
        next_line = first_line
        for batch in reader:
            n = batch.num_rows
            pending = sorted(b.line_number for b in bad)
            candidates = np.arange(next_line, next_line + n + len(pending), dtype=np.int64)
            lines = candidates[~np.isin(candidates, pending)][:n]
            last = int(lines[-1]) if n else next_line - 1
            chunk_bad = [b for b in bad if b.line_number <= last]
            bad[:] = [b for b in bad if b.line_number > last]
            next_line = last + 1
            yield RawChunk(batch.to_pandas(), lines, chunk_bad)
        if bad:
            empty = pd.DataFrame({n: pd.Series([], dtype=object) for n in names})
            yield RawChunk(empty, np.empty(0, np.int64), list(bad))


def _iter_jsonl(path: Path, *, chunk_rows: int) -> Iterator[RawChunk]:
    with _open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf8")
        records: list[dict[str, object]] = []
        lines: list[int] = []
        bad: list[BadLine] = []
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                bad.append(BadLine(number, f"not valid JSON: {exc.msg}", line.rstrip("\n")))
                continue
            if not isinstance(obj, dict):
                bad.append(BadLine(number, "a JSONL line must be a JSON object", line.rstrip()))
                continue
            records.append(obj)
            lines.append(number)
            if len(records) >= chunk_rows:
                yield RawChunk(_records_frame(records), np.asarray(lines, np.int64), bad)
                records, lines, bad = [], [], []
        if records or bad:
            yield RawChunk(_records_frame(records), np.asarray(lines, np.int64), bad)


def _records_frame(records: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records)
    # Nested objects (e.g. properties given as a JSON object) stay JSON text.
    for name in frame.columns:
        col = frame[name]
        if col.dtype == object and col.map(lambda v: isinstance(v, dict | list)).any():
            frame[name] = col.map(
                lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
            )
    return frame


def _iter_parquet(path: Path, *, chunk_rows: int) -> Iterator[RawChunk]:
    pf = pq.ParquetFile(path)
    start = 1
    for batch in pf.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        yield RawChunk(frame, np.arange(start, start + len(frame), dtype=np.int64))
        start += len(frame)
