"""Segments declared in YAML as CEL expressions over a customer's feature row.

CEL (``common-expression-language``) is a small, safe expression language: no
``eval``, no I/O, no loops. Each expression is compiled once at load time, and
the names it references are checked against the feature list then, so a typo
fails loudly before any customer is scored.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cel
import numpy as np
import pandas as pd
import yaml

from features.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_SEGMENTS_FILE = Path(__file__).resolve().parent / "defaults" / "segments.yaml"
"""The segments packaged with Tailor, used when ``features.segments_file`` is not set."""


@dataclass(frozen=True)
class Segment:
    """One compiled segment."""

    name: str
    expression: str
    description: str
    program: Any  # cel.Program
    variables: frozenset[str]


@dataclass(frozen=True)
class SegmentSet:
    """Compiled segments, checked against a feature list."""

    segments: tuple[Segment, ...]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.segments]

    @property
    def variables(self) -> list[str]:
        """Every feature some segment reads, sorted."""
        return sorted(set().union(*(s.variables for s in self.segments)))

    def evaluate(self, features: pd.DataFrame, *, key: str = "customer_id") -> pd.DataFrame:
        """Membership of every row of ``features`` in every segment.

        Parameters
        ----------
        features : pandas.DataFrame
            One row per customer with every referenced feature as a column.
        key : str
            The id column.

        Returns
        -------
        pandas.DataFrame
            Long format: ``customer_id``, ``segment`` — one row per membership. A
            row whose expression cannot be evaluated (e.g. a null feature) is not a
            member; such rows are counted and logged, not raised.
        """
        if features.empty or not self.segments:
            return pd.DataFrame({"customer_id": pd.Series([], dtype=object), "segment": []})
        ids = features[key].reset_index(drop=True)
        members_of: list[pd.Series] = []
        sizes: list[int] = []
        for segment in self.segments:
            # Evaluate each distinct combination of the referenced features once.
            names = sorted(segment.variables)
            if names:
                codes, uniques = _combinations(features[names])
            else:
                codes, uniques = np.zeros(len(features), dtype=np.int64), pd.DataFrame(index=[0])
            verdict = np.zeros(len(uniques), dtype=bool)
            errors = 0
            for i, record in enumerate(_records(uniques)):
                try:
                    verdict[i] = segment.program.execute(record) is True
                except (RuntimeError, ValueError, TypeError):
                    errors += 1
            if errors:
                logger.debug(
                    "segment %s: %d value combinations not evaluable", segment.name, errors
                )
            members = ids[verdict[codes]]
            members_of.append(members)
            sizes.append(len(members))
        return pd.DataFrame(
            {
                "customer_id": pd.concat(members_of, ignore_index=True),
                "segment": np.repeat(np.array(self.names, dtype=object), sizes),
            }
        )


def _combinations(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Row → code of its distinct value combination (nulls are one value), and the
    combinations, one row each."""
    combined = np.zeros(len(frame), dtype=np.int64)
    for name in frame.columns:
        codes, uniques = pd.factorize(frame[name], use_na_sentinel=False)
        # Renumbered densely after each column, so the product never overflows.
        combined = pd.factorize(combined * len(uniques) + codes)[0]
    # Codes are numbered in order of first appearance, so the first row of each code
    # is where the running maximum steps up.
    peak = np.maximum.accumulate(combined)
    first = np.flatnonzero(np.r_[True, peak[1:] > peak[:-1]])
    return combined, frame.iloc[first].reset_index(drop=True)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values (NaN/NA → None, numpy → Python)."""
    records: list[dict[str, Any]] = [
        {str(k): v for k, v in r.items()}
        for r in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]
    for record in records:
        for name, value in record.items():
            if isinstance(value, np.generic):
                record[name] = value.item()
            if isinstance(record[name], float) and math.isnan(record[name]):
                record[name] = None
    return records


def compile_segments(
    definitions: dict[str, dict[str, str]], feature_names: list[str] | set[str]
) -> SegmentSet:
    """Compile segment definitions, checking every name they use.

    Parameters
    ----------
    definitions : dict
        ``{name: {"when": CEL expression, "description": text}}``.
    feature_names : collection of str
        Features available to expressions.

    Raises
    ------
    InputError
        Naming the segment and the unknown feature, or the syntax error.
    """
    known = set(feature_names)
    compiled = []
    for name, spec in definitions.items():
        if not isinstance(spec, dict) or "when" not in spec:
            raise InputError(f"segments.{name}", spec, "expected a mapping with a 'when' key")
        expression = str(spec["when"])
        try:
            program = cel.compile(expression)
        except ValueError as exc:
            raise InputError(f"segments.{name}.when", expression, str(exc)) from None
        variables = frozenset(program.variables())
        unknown = sorted(variables - known)
        if unknown:
            raise InputError(
                f"segments.{name}.when",
                expression,
                f"unknown feature {', '.join(unknown)} (segment {name!r})",
            )
        compiled.append(
            Segment(name, expression, str(spec.get("description", "")), program, variables)
        )
    return SegmentSet(tuple(compiled))


def load_segments(path: Path | None, feature_names: list[str] | set[str]) -> SegmentSet:
    """Read a segments file and compile it (see :func:`compile_segments`).

    ``path`` None is the packaged :data:`DEFAULT_SEGMENTS_FILE`; a given path is read
    as it is (never looked up elsewhere).
    """
    path = DEFAULT_SEGMENTS_FILE if path is None else Path(path)
    if not path.is_file():
        raise InputError("segments_file", str(path), "no such file")
    data = yaml.safe_load(path.read_text()) or {}
    definitions = data.get("segments")
    if not isinstance(definitions, dict):
        raise InputError("segments_file", str(path), "expected a top-level 'segments' mapping")
    return compile_segments(definitions, feature_names)
