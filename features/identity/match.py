"""Probabilistic record matching: Fellegi-Sunter match weights, trained without labels.

Customer records that share no exact key may still be one person: the same name,
date of birth and address under a new e-mail. This module scores pairs of records
with `Splink <https://moj-analytical-services.github.io/splink/>`_ on its DuckDB
backend: a comparison per field a record carries (names by Jaro-Winkler similarity,
date of birth and postcode by edit distance, address and city by similarity, e-mail
and phone exactly), the u probabilities estimated from random pairs, the m
probabilities by expectation maximisation (no labels), and candidate pairs from
blocking rules built from the fields present.

The fields come from the customer record's ``attributes`` (JSON), under the common
names of :data:`FIELD_ALIASES`, plus any ``extra_fields`` of the settings. Only
scores leave this module: a pair's match probability, its match weight and, per
comparison, the level it fell in and that level's weight — never a field's value.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from features.errors import JobFailed
from features.pii.masking import NOT_FEATURES
from features.settings import IdentityConfig

# The field a comparison reads, and the attribute names it is found under (first wins).
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "first_name": ("first_name", "given_name", "firstname", "forename", "fname"),
    "last_name": ("last_name", "surname", "family_name", "lastname", "lname"),
    "date_of_birth": ("date_of_birth", "dob", "birth_date", "birthdate", "birthday"),
    "postcode": ("postcode", "postal_code", "zip", "zip_code", "zipcode"),
    "address": ("address", "address_1", "address_line_1", "street", "street_address"),
    "city": ("city", "suburb", "town", "locality"),
}
# Of the compared fields, postcode and city describe a customer as well as identify
# them: where a customer lives is what regional campaigns target (and a public log's
# "zip_code" may be a region type, as in Hillstrom's), so they stay features. The
# others (names, date of birth, street address) are personal data and never features.
LOCATION_FIELDS = ("postcode", "city")


def personal_keys(extra_fields: tuple[str, ...] = ()) -> frozenset[str]:
    """Lower-cased attribute names holding personal data: every alias of a compared
    field but postcode and city, the extra fields and
    :data:`~features.pii.masking.NOT_FEATURES`."""
    names = {
        a
        for field, aliases in FIELD_ALIASES.items()
        if field not in LOCATION_FIELDS
        for a in aliases
    }
    return frozenset(n.lower() for n in (*names, *extra_fields, *NOT_FEATURES))


# Share of records that must carry a field for it to be compared.
MIN_FIELD_SHARE = 0.1
KEY_FIELDS = ("email", "phone")
# Random pairs drawn to estimate u, and blocked pairs per EM session (at most).
U_PAIRS = 2e6
EM_PAIRS = 2e6
# The exact level of an extra field's comparison (exact 2, one edit 1, else 0).
EXTRA_EXACT_LEVEL = 2
# Candidate pairs one blocking rule may make: 20 per record, at least a million.
PAIRS_PER_RECORD = 20
PAIR_BUDGET_FLOOR = 1e6


@dataclass
class MatchResult:
    """Scored pairs of records above the match threshold, and how the model was made.

    Attributes
    ----------
    pairs : pandas.DataFrame
        ``customer_a`` < ``customer_b``, ``match_probability``, ``match_weight`` and
        ``evidence`` (JSON: per comparison, its level's label and match weight).
    refused : pandas.DataFrame
        ``customer_a``, ``customer_b``, ``match_probability``: pairs above the threshold
        kept apart because first names and dates of birth disagree (a household).
    ran : bool
        Whether matching ran; when not, ``reason`` says why.
    reason : str
        What was compared, or why nothing was.
    model : dict
        The trained model (comparison levels with their m and u probabilities; no data).
    """

    pairs: pd.DataFrame
    ran: bool
    reason: str
    refused: pd.DataFrame = field(default_factory=pd.DataFrame)
    fields: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def skipped(cls, reason: str) -> MatchResult:
        """Nothing compared, for ``reason``."""
        return cls(pairs=_empty_pairs(), ran=False, reason=reason)


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_a": pd.Series(dtype=str),
            "customer_b": pd.Series(dtype=str),
            "match_probability": pd.Series(dtype=float),
            "match_weight": pd.Series(dtype=float),
            "evidence": pd.Series(dtype=str),
        }
    )


def field_sql(extra_fields: tuple[str, ...]) -> str:
    """SQL select list extracting the comparison fields from ``attributes`` (JSON text),
    normalised: names, address and city lower-cased with single spaces, letters and
    digits only; date of birth as its digits; postcode upper-case without spaces."""

    def pick(names: tuple[str, ...]) -> str:
        parts = ", ".join(f"json_extract_string(attributes, '$.\"{n}\"')" for n in names)
        return f"CASE WHEN json_valid(attributes) THEN coalesce({parts}, NULL) END"

    def text(expr: str) -> str:
        cleaned = f"trim(regexp_replace(lower({expr}), '[^a-z0-9]+', ' ', 'g'))"
        return f"nullif({cleaned}, '')"

    columns = []
    for name, aliases in FIELD_ALIASES.items():
        raw = pick(aliases)
        if name == "date_of_birth":
            expr = f"nullif(regexp_replace({raw}, '[^0-9]', '', 'g'), '')"
        elif name == "postcode":
            expr = f"nullif(upper(regexp_replace({raw}, '\\s', '', 'g')), '')"
        else:
            expr = text(raw)
        columns.append(f"{expr} AS {name}")
    for name in extra_fields:
        columns.append(f"{text(pick((name,)))} AS {extra_column(name)}")
    return ", ".join(columns)


def extra_column(name: str) -> str:
    """The column an extra field is compared in (``attr_`` and the name, SQL-safe)."""
    return "attr_" + re.sub(r"\W", "_", name)


def present_fields(records: pd.DataFrame, extra_fields: tuple[str, ...]) -> list[str]:
    """The comparison fields carried by at least :data:`MIN_FIELD_SHARE` of records."""
    names = [*FIELD_ALIASES, *(extra_column(f) for f in extra_fields)]
    n = max(len(records), 1)
    return [c for c in names if c in records and records[c].notna().sum() / n >= MIN_FIELD_SHARE]


def _comparisons(fields: list[str]) -> list[Any]:
    import splink.comparison_library as cl

    out: list[Any] = []
    for name in fields:
        if name in ("first_name", "last_name"):
            out.append(cl.NameComparison(name))
        elif name == "date_of_birth":
            out.append(cl.LevenshteinAtThresholds(name, [1, 2]))
        elif name == "postcode":
            out.append(cl.LevenshteinAtThresholds(name, [1]))
        elif name in ("address", "city"):
            out.append(cl.JaroWinklerAtThresholds(name, [0.9, 0.7]))
        elif name in KEY_FIELDS:
            out.append(cl.ExactMatch(name))
        else:  # extra fields: identifiers, exact or one edit apart
            out.append(cl.LevenshteinAtThresholds(name, [1]))
    return out


def _blocking(fields: list[str], records: pd.DataFrame) -> list[tuple[str, ...]]:
    """Candidate pairs: records agreeing on one of these field groups — the present
    ones whose pairs fit :func:`pair_budget` (a single common field, such as a first
    name among a million records, would compare billions of pairs)."""
    groups: list[tuple[str, ...]] = [
        ("first_name", "last_name"),
        ("date_of_birth", "postcode"),
        ("date_of_birth", "first_name"),
        ("date_of_birth", "last_name"),
        ("postcode", "last_name"),
        ("postcode", "first_name"),
        ("address", "postcode"),
        ("email",),
        ("phone",),
    ]
    groups += [(f,) for f in fields if f.startswith("attr_")]
    groups += [(f,) for f in FIELD_ALIASES]
    have = set(fields)
    present = [g for g in groups if set(g) <= have]
    budget = pair_budget(len(records))
    return [g for g in present if _pairs_blocked(records, g) <= budget]


def pair_budget(n_records: int) -> float:
    """Most candidate pairs one blocking rule may make."""
    return max(PAIR_BUDGET_FLOOR, PAIRS_PER_RECORD * n_records)


def _pairs_blocked(records: pd.DataFrame, fields: tuple[str, ...]) -> float:
    """Pairs of records agreeing on every one of ``fields`` (none missing)."""
    sizes = records.dropna(subset=list(fields)).groupby(list(fields)).size()
    n = sizes.to_numpy(dtype=np.float64)
    return float((n * (n - 1) / 2).sum())


# Rules whose pairs are mostly one person: the EM sessions and the prior come from
# them (a broad rule, such as a first and last name among a million records, has so
# few matches that EM converges on "same name and area" instead of "same person").
TIGHT_RULES: tuple[tuple[str, ...], ...] = (
    ("first_name", "last_name", "date_of_birth"),
    ("postcode", "address"),
    ("email",),
    ("phone",),
    ("date_of_birth", "postcode"),
    ("first_name", "last_name", "postcode"),
    ("first_name", "last_name"),
    ("date_of_birth",),
    ("postcode",),
)


def _tight(fields: list[str]) -> list[tuple[str, ...]]:
    extras = [(f,) for f in fields if f.startswith("attr_")]
    return [r for r in (*extras, *TIGHT_RULES) if set(r) <= set(fields)]


def _training_sessions(fields: list[str]) -> list[tuple[str, ...]]:
    """EM sessions, tightest rules first, until every comparison is estimated at least
    once (a session estimates the comparisons its rule does not block on)."""
    sessions: list[tuple[str, ...]] = []
    todo = set(fields)
    for rule in _tight(fields):
        if not todo:
            break
        if todo - set(rule):
            sessions.append(rule)
            todo &= set(rule)
    return sessions if not todo else []


class TrainedMatchers:
    """Matchers trained once and reused by the later builds of one job.

    A job that builds many snapshots of one store (the selector's, one per campaign)
    passes one of these to every build: the first trains the matcher (u, m and the
    prior, the costly part) and the others only score their records with it. A build
    without one trains its own, so a lone build never depends on an earlier one.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, ...], dict[str, Any]] = {}

    def get(self, key: tuple[str, ...]) -> dict[str, Any] | None:
        return self._models.get(key)

    def put(self, key: tuple[str, ...], model: dict[str, Any]) -> None:
        self._models[key] = model


def match_records(
    records: pd.DataFrame, config: IdentityConfig, matchers: TrainedMatchers | None = None
) -> MatchResult:
    """Score pairs of customer records and keep those above the match threshold.

    Parameters
    ----------
    records : pandas.DataFrame
        ``customer_id`` (unique), the fields of :func:`field_sql`, and ``email`` /
        ``phone`` already normalised, with placeholders and over-shared keys removed.
    config : IdentityConfig
        ``probabilistic`` (auto / on), ``match_threshold``, ``min_records``,
        ``extra_fields``.

    Raises
    ------
    JobFailed
        With ``probabilistic = "on"``, when the records cannot be matched (too few
        fields, or training failed).
    """
    fields = present_fields(records, config.extra_fields)
    described = ", ".join(fields) or "none"
    if len(fields) < 2:
        return _skip(
            config,
            f"the customer records carry too few fields to compare (found: {described}; "
            f"need two of {', '.join(FIELD_ALIASES)} in attributes)",
        )
    if len(records) < config.min_records and config.probabilistic == "auto":
        return _skip(
            config,
            f"{len(records):,} customer records, fewer than identity.min_records "
            f"({config.min_records:,}) to train a matcher on",
        )
    keys = [k for k in KEY_FIELDS if records[k].notna().any()]
    compared = fields + keys
    rules = _blocking(compared, records)
    sessions = _training_sessions(compared)
    if not sessions:
        return _skip(config, f"no blocking rules can train every comparison ({described})")
    from splink.internals.exceptions import SplinkException

    try:
        return _train_and_predict(
            records[["customer_id", *compared]], compared, rules, sessions, config, matchers
        )
    except (duckdb.Error, SplinkException, ZeroDivisionError) as error:
        return _skip(config, f"training the matcher failed: {type(error).__name__}: {error}")


def _skip(config: IdentityConfig, reason: str) -> MatchResult:
    if config.probabilistic == "on":
        raise JobFailed(
            f"probabilistic identity matching cannot run: {reason}. Set "
            "features.identity.probabilistic to 'auto' or 'off', or add the fields."
        )
    return MatchResult.skipped(reason)


def _train_and_predict(
    records: pd.DataFrame,
    fields: list[str],
    rules: list[tuple[str, ...]],
    sessions: list[tuple[str, ...]],
    config: IdentityConfig,
    matchers: TrainedMatchers | None,
) -> MatchResult:
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    for name in ("splink", "splink.internals"):
        logging.getLogger(name).setLevel(logging.ERROR)
    frame = records.rename(columns={"customer_id": "unique_id"})
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=_comparisons(fields),
        blocking_rules_to_generate_predictions=[block_on(*r) for r in rules],
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        max_iterations=20,
    )
    con = duckdb.connect()
    try:
        db = DuckDBAPI(connection=con)
        key = (*fields, config.model_dump_json())
        trained = matchers.get(key) if matchers is not None else None
        if trained is not None:
            linker = Linker(db.register(frame), trained, log_level=logging.ERROR)
        else:
            linker = Linker(db.register(frame), settings, log_level=logging.ERROR)
            _train(linker, rules, sessions)
        model = linker.misc.save_model_to_json()
        if matchers is not None and trained is None:
            matchers.put(key, model)
        scored = linker.inference.predict(threshold_match_probability=config.match_threshold)
        predicted = scored.as_pandas_dataframe()
    finally:
        con.close()
    apart = _different_people(predicted)
    pairs = _pairs(predicted[~apart], fields, model)
    refused = _pairs(predicted[apart], fields, model)
    return MatchResult(
        pairs=pairs,
        refused=refused[["customer_a", "customer_b", "match_probability"]],
        ran=True,
        reason=(
            f"compared {', '.join(fields)} over {len(records):,} records; candidate pairs "
            f"agree on {' or '.join('+'.join(r) for r in rules)}"
        ),
        fields=fields,
        model=_strip_model(model),
    )


def _train(linker: Any, rules: list[tuple[str, ...]], sessions: list[tuple[str, ...]]) -> None:
    """The prior from the tightest rules, u from random pairs, m by EM per session."""
    from splink import block_on

    fields = sorted({f for r in rules for f in r})
    tight = [r for r in _tight(fields) if len(r) >= 3 or r[0] in KEY_FIELDS or "attr_" in r[0]]
    linker.training.estimate_probability_two_random_records_match(
        [block_on(*r) for r in (tight or [rules[0]])], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=U_PAIRS, seed=0)
    for rule in sessions:
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on(*rule), max_pairs=EM_PAIRS
        )


def _different_people(predicted: pd.DataFrame) -> np.ndarray:
    """Pairs that agree on where a person lives but not on who they are: first names
    below the 0.88 similarity level and dates of birth more than two edits apart
    (or one missing), and no extra identifier equal. A household shares a surname, an
    address and a landline, which outweigh two different first names under the
    independence the model assumes; this rule keeps them apart, where typos in one
    person's records (one or two edits in a date) still link."""
    if "gamma_first_name" not in predicted or "gamma_date_of_birth" not in predicted:
        return np.zeros(len(predicted), dtype=bool)
    first = predicted["gamma_first_name"].to_numpy()
    birth = predicted["gamma_date_of_birth"].to_numpy()
    # NameComparison levels: -1 missing, 0 else, 1 >= 0.7, 2 >= 0.88, 3 >= 0.92, 4 exact;
    # date of birth: -1 missing, 0 more than two edits, 1 two, 2 one, 3 exact.
    apart = (first >= 0) & (first <= 1) & (birth <= 0)
    # An identifier of the person (an extra field: a national id, a loyalty card)
    # agreeing exactly says one person whatever the names; a household shares none.
    for column in predicted.columns:
        if column.startswith("gamma_attr_"):
            apart &= predicted[column].to_numpy() != EXTRA_EXACT_LEVEL
    return np.asarray(apart, dtype=bool)


def _level_labels(model: dict[str, Any]) -> dict[str, dict[int, str]]:
    """Per comparison, its levels' labels by comparison vector value (gamma):
    -1 for the null level, then counting down from the first non-null level to 0."""
    labels: dict[str, dict[int, str]] = {}
    for comparison in model["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        table = {-1: "missing"}
        for i, level in enumerate(levels):
            table[len(levels) - 1 - i] = str(level.get("label_for_charts", level["sql_condition"]))
        labels[comparison["output_column_name"]] = table
    return labels


def _pairs(predicted: pd.DataFrame, fields: list[str], model: dict[str, Any]) -> pd.DataFrame:
    if predicted.empty:
        return _empty_pairs()
    labels = _level_labels(model)
    a = predicted["unique_id_l"].astype(str).to_numpy()
    b = predicted["unique_id_r"].astype(str).to_numpy()
    swap = a > b
    first = pd.Series(a).where(~swap, pd.Series(b))
    second = pd.Series(b).where(~swap, pd.Series(a))
    evidence = []
    gammas = {f: predicted[f"gamma_{f}"].to_numpy() for f in fields}
    weights = {
        f: predicted[f"mw_{f}"].to_numpy(dtype=float)
        + (
            predicted[f"mw_tf_adj_{f}"].to_numpy(dtype=float)
            if f"mw_tf_adj_{f}" in predicted
            else 0.0
        )
        for f in fields
    }
    for row in range(len(predicted)):
        evidence.append(
            json.dumps(
                {
                    f: {
                        "level": labels[f].get(int(gammas[f][row]), str(gammas[f][row])),
                        "weight": _finite(weights[f][row]),
                    }
                    for f in fields
                },
                separators=(",", ":"),
            )
        )
    return pd.DataFrame(
        {
            "customer_a": first.to_numpy(),
            "customer_b": second.to_numpy(),
            "match_probability": predicted["match_probability"].to_numpy(dtype=float),
            "match_weight": predicted["match_weight"].to_numpy(dtype=float),
            "evidence": evidence,
        }
    )


def _finite(value: float) -> float:
    # log2 of a zero m or u probability is infinite; JSON has no infinity.
    return round(float(value), 3) if math.isfinite(value) else (99.0 if value > 0 else -99.0)


def _strip_model(model: dict[str, Any]) -> dict[str, Any]:
    """The trained parameters only (no SQL of the input tables, no data)."""
    return {
        "probability_two_random_records_match": model.get("probability_two_random_records_match"),
        "comparisons": [
            {
                "field": c["output_column_name"],
                "levels": [
                    {
                        "label": lv.get("label_for_charts", lv["sql_condition"]),
                        "m_probability": lv.get("m_probability"),
                        "u_probability": lv.get("u_probability"),
                    }
                    for lv in c["comparison_levels"]
                    if not lv.get("is_null_level")
                ],
            }
            for c in model["comparisons"]
        ],
        "blocking_rules": [
            r.get("blocking_rule", str(r)) if isinstance(r, dict) else str(r)
            for r in model.get("blocking_rules_to_generate_predictions", [])
        ],
    }
