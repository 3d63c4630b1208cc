"""Identity resolution quality on the simulator's planted duplicates.

Simulates a store, runs the feature job's identity resolution and compares the
merged customer pairs with the planted ones (precision, recall), and the
anonymous-id attributions with the planted logins.

    python -m bench.identity [--customers 20000 --days 30]
"""

from __future__ import annotations

import argparse
import itertools
import time

import pandas as pd

from bench.results import record, table
from features.identity import resolve_identities
from features.simulator import SimulationConfig, simulate


def merged_pairs(canonical: pd.Series) -> set[frozenset[str]]:
    pairs: set[frozenset[str]] = set()
    for _, members in canonical.groupby(canonical.to_numpy()):
        pairs.update(frozenset(p) for p in itertools.combinations(sorted(members.index), 2))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    sim = simulate(SimulationConfig(customers=args.customers, days=args.days, seed=5))
    events = sim.events
    links = events.loc[events["event_type"] == "login", ["customer_id", "anonymous_id"]]
    started = time.perf_counter()
    identity = resolve_identities(
        sim.customers, links.dropna(), extra_customer_ids=events["customer_id"].dropna()
    )
    seconds = time.perf_counter() - started

    canonical = identity.canonical("customer")
    truth = {frozenset(p) for p in sim.truth["identity_links"]}
    found = merged_pairs(canonical)
    hits = len(found & truth)

    shared = {d["anonymous_id"] for d in sim.truth["shared_devices"]}
    planted = {a: c for a, c in sim.truth["anonymous_links"].items() if a not in shared}
    anonymous = identity.canonical("anonymous")
    right = sum(anonymous.get(a) == canonical[c] for a, c in planted.items())
    conflicts = set(identity.conflicts["anonymous_id"])

    body = table(
        ["what", "planted", "found", "correct", "precision", "recall"],
        [
            [
                "duplicate customer records (pairs)",
                len(truth),
                len(found),
                hits,
                hits / max(len(found), 1),
                hits / max(len(truth), 1),
            ],
            [
                "anonymous ids attributed by login",
                len(planted),
                len(anonymous),
                right,
                right / max(len(anonymous), 1),
                right / max(len(planted), 1),
            ],
            [
                "shared devices left unmerged",
                len(shared),
                len(conflicts),
                len(conflicts & shared),
                len(conflicts & shared) / max(len(conflicts), 1),
                len(conflicts & shared) / max(len(shared), 1),
            ],
        ],
    )
    body += (
        f"\n\n{len(sim.customers):,} customer records, {len(links):,} login events; "
        f"resolved in {seconds:.2f} s."
    )
    print(body)
    if not args.no_record:
        record("Identity resolution", body)


if __name__ == "__main__":
    main()
