"""Read CSV, JSONL and Parquet files (gzip too) as chunks of raw, untyped rows.

Readers do no validation: every value comes out as it was written (strings for
CSV, JSON types for JSONL, Arrow types for Parquet) together with its line or row
number, and a line that cannot even be split into fields (or is not text in the
file's encoding) is reported as a :class:`BadLine` rather than dropped, so ingest
can quarantine it with its reason. Blank lines (in CSV, also lines of nothing but
delimiters) are skipped; every other line is a row or a bad line, numbered as an
editor numbers it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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
    """pyarrow's CSV reader, and from the first chunk it cannot read or number
    right (a quoted value spanning lines, text that is not ``encoding``, a line
    longer than a block) :func:`_iter_lines`, which judges each record on its own."""
    with _open_binary(path) as fh:
        if column_names is None:
            names = _header(
                fh.readline(), path, delimiter=delimiter, encoding=encoding, quoting=quoting
            )
            if names is None:
                return
            first_line = 2
        else:
            names = list(column_names)
            first_line = 1
        next_line = first_line
        try:
            for chunk in _iter_arrow(
                fh,
                names=names,
                first_line=first_line,
                delimiter=delimiter,
                chunk_rows=chunk_rows,
                encoding=encoding,
                quoting=quoting,
            ):
                if chunk is None:
                    break
                next_line = chunk.next_line
                yield chunk.chunk
            else:
                return
        except pa.ArrowException:
            pass
    yield from _iter_lines(
        path,
        names=names,
        start_line=next_line,
        delimiter=delimiter,
        chunk_rows=chunk_rows,
        encoding=encoding,
        quoting=quoting,
    )


def _header(
    line: bytes, path: Path, *, delimiter: str, encoding: str, quoting: bool
) -> list[str] | None:
    """The column names of a header line (None: an empty file)."""
    try:
        header = line.decode(encoding).rstrip("\r\n").lstrip("\ufeff")
    except UnicodeDecodeError as error:
        raise InputError(
            "path", str(path), f"the header line is not {encoding} text ({error.reason})"
        ) from None
    if not header:
        return None
    fields = next(csv.reader([header], delimiter=delimiter)) if quoting else header.split(delimiter)
    return [n.strip() for n in fields]


@dataclass
class _ArrowChunk:
    chunk: RawChunk
    next_line: int


def _iter_arrow(
    fh: IO[bytes],
    *,
    names: list[str],
    first_line: int,
    delimiter: str,
    chunk_rows: int,
    encoding: str,
    quoting: bool,
) -> Iterator[_ArrowChunk | None]:
    """Chunks as pyarrow reads them; None where a chunk needs reading line by line
    (its rows would get the wrong line numbers). Raises what pyarrow raises."""
    bad: list[BadLine] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append(
            BadLine(
                line_number=int(row.number) + first_line - 1,
                reason=(f"line has {row.actual_columns} fields, expected {row.expected_columns}"),
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
            # Blank lines come through (as rows of empty fields) so that every
            # line is counted; they are dropped below.
            ignore_empty_lines=False,
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
        if _spans_lines(batch) or any(_LINE_BREAK.search(b.text) for b in chunk_bad):
            yield None  # a quoted value held a line break: numbering is off from here
            return
        bad[:] = [b for b in bad if b.line_number > last]
        next_line = last + 1
        blank = _blank_rows(batch)
        frame = batch.filter(pa.array(~blank)).to_pandas()
        yield _ArrowChunk(RawChunk(frame, lines[~blank], chunk_bad), next_line)
    if bad:
        empty = pd.DataFrame({n: pd.Series([], dtype=object) for n in names})
        yield _ArrowChunk(RawChunk(empty, np.empty(0, np.int64), list(bad)), next_line)


_LINE_BREAK = re.compile("[\r\n]")


def _spans_lines(batch: pa.RecordBatch) -> bool:
    """Whether any value holds a line break (a quoted field over several lines)."""
    return any(bool(pc.any(pc.match_substring(column, "\n")).as_py()) for column in batch.columns)


def _blank_rows(batch: pa.RecordBatch) -> np.ndarray:
    """Rows of a blank line: every field empty."""
    blank = np.ones(batch.num_rows, dtype=bool)
    for column in batch.columns:
        blank &= pc.equal(column, "").to_numpy(zero_copy_only=False)
    return blank


# Most lines one quoted CSV value may span; an unclosed quote then fails its line only.
MAX_VALUE_LINES = 100


def _iter_lines(
    path: Path,
    *,
    names: list[str],
    start_line: int,
    delimiter: str,
    chunk_rows: int,
    encoding: str,
    quoting: bool,
) -> Iterator[RawChunk]:
    """The file from ``start_line`` on, record by record (Python's csv module).

    A record is a line, or the lines a quoted value spans (up to
    :data:`MAX_VALUE_LINES`), numbered by its first line. A line that is not
    ``encoding`` text, a record csv cannot split (a quote left open, a field over
    csv's size limit) or with the wrong number of fields is a :class:`BadLine`, and
    reading goes on with the next line; blank lines are skipped.
    """
    records: list[list[str]] = []
    lines: list[int] = []
    bad: list[BadLine] = []
    with _open_binary(path) as fh:
        source = _Lines(fh, start_line)
        while (item := source.next()) is not None:
            number, data = item
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as error:
                shown = data.decode(encoding, errors="replace")
                where = f"byte 0x{data[error.start]:02x} at position {error.start}"
                bad.append(BadLine(number, f"line is not {encoding} text ({where})", shown))
                continue
            if not text.strip():
                continue
            if quoting:
                fields, problem, text = _record(
                    text, source, delimiter=delimiter, encoding=encoding
                )
            else:
                fields, problem = text.split(delimiter), ""
            if problem:
                bad.append(BadLine(number, f"line cannot be split into fields: {problem}", text))
                continue
            if len(fields) != len(names):
                reason = f"line has {len(fields)} fields, expected {len(names)}"
                bad.append(BadLine(number, reason, text))
                continue
            records.append(fields)
            lines.append(number)
            if len(records) >= chunk_rows:
                yield RawChunk(_text_frame(records, names), np.asarray(lines, np.int64), bad)
                records, lines, bad = [], [], []
    if records or bad:
        yield RawChunk(_text_frame(records, names), np.asarray(lines, np.int64), bad)


class _Lines:
    """Numbered lines of a binary file (line breaks stripped), from ``start``, with
    lines read ahead put back."""

    def __init__(self, fh: IO[bytes], start: int) -> None:
        self._numbered = enumerate(fh, start=1)
        self._start = start
        self._back: list[tuple[int, bytes]] = []

    def next(self) -> tuple[int, bytes] | None:
        if self._back:
            return self._back.pop()
        for number, raw in self._numbered:
            if number >= self._start:
                return number, raw.rstrip(b"\r\n")
        return None

    def put_back(self, items: list[tuple[int, bytes]]) -> None:
        self._back.extend(reversed(items))


def _record(
    first: str, source: _Lines, *, delimiter: str, encoding: str
) -> tuple[list[str], str, str]:
    """The record starting with the line ``first``: (fields, '', its text) or ([],
    what is wrong, ``first``). Lines are taken from ``source`` while a quote is
    open, and put back if it never closes."""
    taken: list[tuple[int, bytes]] = []
    text = first
    while True:
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
            return (rows[0] if rows else []), "", text
        except csv.Error as error:
            problem = str(error)
            if "unexpected end of data" not in problem or len(taken) >= MAX_VALUE_LINES - 1:
                break
        item = source.next()
        if item is None:
            break
        taken.append(item)
        try:
            text += "\n" + item[1].decode(encoding)
        except UnicodeDecodeError:
            break
    source.put_back(taken)
    if "unexpected end of data" in problem:
        problem = "a quote is left open"
    return [], problem, first


def _text_frame(records: list[list[str]], names: list[str]) -> pd.DataFrame:
    """Rows of text fields as a frame of object columns named ``names``."""
    columns = list(zip(*records, strict=True)) if records else [()] * len(names)
    frame = pd.DataFrame({j: pd.Series(list(c), dtype=object) for j, c in enumerate(columns)})
    return frame.set_axis(names, axis=1)


def _iter_jsonl(path: Path, *, chunk_rows: int) -> Iterator[RawChunk]:
    with _open_binary(path) as fh:
        records: list[dict[str, object]] = []
        lines: list[int] = []
        bad: list[BadLine] = []
        for number, raw in enumerate(fh, start=1):
            data = raw.rstrip(b"\r\n")
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as error:
                shown = data.decode("utf-8", errors="replace")
                where = f"byte 0x{data[error.start]:02x} at position {error.start}"
                bad.append(BadLine(number, f"line is not UTF-8 text ({where})", shown))
                continue
            if number == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                bad.append(BadLine(number, f"not valid JSON: {exc.msg}", line))
                continue
            except RecursionError:
                bad.append(BadLine(number, "not valid JSON: nested too deeply", line))
                continue
            if not isinstance(obj, dict):
                bad.append(BadLine(number, "a JSONL line must be a JSON object", line.rstrip()))
                continue
            records.append(obj)
            lines.append(number)
            if len(records) >= chunk_rows:
                yield RawChunk(records_frame(records), np.asarray(lines, np.int64), bad)
                records, lines, bad = [], [], []
        if records or bad:
            yield RawChunk(records_frame(records), np.asarray(lines, np.int64), bad)


def records_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """JSON records (decoded objects) as a frame for :func:`features.data.validation.validate`.

    One object column per key, in the order keys are first seen; a key a record
    lacks is ``pd.NA`` (missing, and left out of the JSON the row is kept as), an
    explicit ``null`` is ``None``. Values are kept as decoded — a nested object stays a dict, so
    ``properties`` given as an object is taken as one, and anything else in its
    place is refused rather than turned into text — except JSON's ``NaN``, given as
    the text ``"NaN"``: in a frame NaN would read as missing, and a number field
    must refuse it.
    """
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    n = len(records)
    columns: dict[str, pd.Series] = {}
    for name in names:
        values = [record.get(name, pd.NA) for record in records]
        column = pd.Series(values, dtype=object)
        nan = column.isna().to_numpy() & np.fromiter(
            (v is not None and v is not pd.NA for v in values), dtype=bool, count=n
        )
        if nan.any():
            column[nan] = "NaN"
        columns[str(name)] = column
    return pd.DataFrame(columns, index=pd.RangeIndex(n))


def _iter_parquet(path: Path, *, chunk_rows: int) -> Iterator[RawChunk]:
    pf = pq.ParquetFile(path)
    start = 1
    for batch in pf.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        yield RawChunk(frame, np.arange(start, start + len(frame), dtype=np.int64))
        start += len(frame)
