"""Recommender quality: every model under one protocol on three datasets.

    python -m bench.recommenders [--only sim|movielens|taobao]

* the simulated store (per-user temporal split, carts and purchases as labels),
  in all-items mode (the e-commerce email protocol: a viewed, unbought item may
  be the right one) and in new-items mode;
* MovieLens-100K (per-user temporal split, new-items mode);
* the Taobao sample (per-user temporal split, all-items mode — seen items may be
  recommended again — with the "own history" heuristic a browse-abandonment email
  uses).

Prints NDCG@10, recall@20 and coverage@20 per model, and the reranker's gain over
the best single model (over the better of own history and the best CF model on
Taobao). Targets: ≥ +10 % NDCG@10 on each.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bench.results import record, table
from simulation import SimulationConfig, simulate
from training.recommend_config import RecommenderJobConfig
from training.recommend_job import JobResult, run_recommender_job

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def simulated(mode: str) -> tuple[pd.DataFrame, pd.DataFrame, RecommenderJobConfig]:
    sim = simulate(SimulationConfig(customers=4000, days=60, seed=21))
    events = sim.events
    events = events[events["item_id"].notna() & events["customer_id"].notna()]
    events = events[
        events["event_type"].isin(
            ["product_view", "add_to_cart", "add_to_wishlist", "checkout", "purchase"]
        )
    ]
    ts = pd.to_datetime(events["ts"], utc=True, errors="coerce", format="ISO8601")
    log = pd.DataFrame(
        {
            "user_id": events["customer_id"],
            "item_id": events["item_id"],
            "ts": ts,
            "event_type": events["event_type"],
        }
    ).dropna()
    config = RecommenderJobConfig(mode=mode, label_events=("add_to_cart", "purchase"))
    return log, sim.catalog[["item_id", "category", "price"]], config


def movielens() -> tuple[pd.DataFrame, pd.DataFrame, RecommenderJobConfig]:
    folder = DATA / "movielens-100k"
    ratings = pd.read_csv(folder / "u.data", sep="\t", names=["user_id", "item_id", "rating", "ts"])
    log = pd.DataFrame(
        {
            "user_id": ratings["user_id"].astype(str),
            "item_id": ratings["item_id"].astype(str),
            "ts": pd.to_datetime(ratings["ts"], unit="s", utc=True),
            "event_type": "product_view",
        }
    )
    movies = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1")
    genres = movies.iloc[:, 5:].to_numpy()
    items = pd.DataFrame(
        {"item_id": movies[0].astype(str), "category": genres.argmax(axis=1).astype(str)}
    )
    return log, items, RecommenderJobConfig(mode="new")


def taobao() -> tuple[pd.DataFrame, pd.DataFrame, RecommenderJobConfig]:
    path = DATA / "taobao-userbehavior-sample" / "UserBehavior.csv.gz"
    raw = pd.read_csv(
        path, names=["user_id", "item_id", "category", "behavior", "ts"], dtype=str
    ).dropna()
    types = {
        "pv": "product_view",
        "cart": "add_to_cart",
        "fav": "add_to_wishlist",
        "buy": "purchase",
    }
    log = pd.DataFrame(
        {
            "user_id": raw["user_id"],
            "item_id": raw["item_id"],
            "ts": pd.to_datetime(raw["ts"].astype("int64"), unit="s", utc=True),
            "event_type": raw["behavior"].map(types),
        }
    )
    items = raw[["item_id", "category"]].drop_duplicates("item_id")
    return log, items, RecommenderJobConfig(mode="all")


DATASETS = {
    "sim (all items)": lambda: simulated("all"),
    "sim (new items)": lambda: simulated("new"),
    "movielens": movielens,
    "taobao": taobao,
}


def summarise(name: str, result: JobResult) -> tuple[list[list[object]], str]:
    at10, at20 = result.table(10), result.table(20)
    rows = [
        [
            name,
            model,
            at10.loc[model, "ndcg"],
            at20.loc[model, "recall"],
            at20.loc[model, "coverage"],
        ]
        for model in at10.index
    ]
    singles = at10.drop(index="reranker")["ndcg"]
    best = singles.idxmax()
    gain = at10.loc["reranker", "ndcg"] / singles.max() - 1
    note = (
        f"{name}: reranker NDCG@10 {at10.loc['reranker', 'ndcg']:.4f} vs best single "
        f"({best}) {singles.max():.4f}: {gain:+.1%} (target +10 %); {result.test_users:,} "
        f"test users; tuned ALS {result.als_params}; {result.seconds:.0f} s."
    )
    if "ease" not in at10.index:
        note += f" EASE skipped: {len(result.index.item_ids):,} items > 20,000."
    return rows, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["sim", "movielens", "taobao"], default=None)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rows: list[list[object]] = []
    notes = []
    for name, load in DATASETS.items():
        if args.only and not name.startswith(args.only):
            continue
        if not name.startswith("sim") and not DATA.is_dir():
            notes.append(f"{name}: skipped, {DATA} not found")
            continue
        log, items, config = load()
        result = run_recommender_job(log, items, config, progress=print)
        dataset_rows, note = summarise(name, result)
        rows += dataset_rows
        notes.append(note)
        print(note, flush=True)
    body = table(["dataset", "model", "NDCG@10", "recall@20", "coverage@20"], rows)
    body += "\n\n" + "\n".join(f"- {n}" for n in notes)
    body += (
        "\n\nIn new-items mode on the simulated store the reranker barely beats item-kNN: "
        "a cart of a never-seen item there is driven by category preference and item "
        "popularity, which item-kNN already captures, and the inner label period holds "
        "few positives (about 1 % of candidates). What would close it: several inner "
        "folds for more labelled groups, and session-level features (items viewed in "
        "the same session as the candidate's neighbours)."
    )
    print(body)
    if not args.no_record and not args.only:
        record("Recommenders", body)


if __name__ == "__main__":
    main()
