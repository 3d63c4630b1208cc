"""The Open Bandit Dataset sample in ``../shared/data/open-bandit``: its files and layout.

ZOZOTOWN fashion recommendations, campaigns ``men`` and ``women``, 10,000 rounds per log
(see its SOURCE.md). Each campaign ran two behaviour policies at the same time, uniform
``random`` and Bernoulli Thompson sampling ``bts``; each round shows one item in one of
three positions.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "open-bandit"
CAMPAIGNS = ("men", "women")
POSITIONS = (1, 2, 3)
USER_FEATURES = ("user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3")


def read_log(policy: str, campaign: str) -> pd.DataFrame:
    """One OBD log (plain CSV if present, else the ``.csv.gz`` copy)."""
    folder = DATA / policy / campaign
    path = folder / f"{campaign}.csv"
    if not path.exists():
        path = folder / f"{campaign}.csv.gz"
    return pd.read_csv(path, index_col=0)


def read_items(campaign: str) -> pd.DataFrame:
    """A campaign's item_context.csv: ``item_id`` and ``item_feature_0..3``, one row an item."""
    return pd.read_csv(DATA / "random" / campaign / "item_context.csv", index_col=0)


def n_items(campaign: str) -> int:
    """Catalogue size of a campaign, from its item_context.csv."""
    return len(read_items(campaign))
