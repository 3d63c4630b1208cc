"""Temporal splits: by hand on a tiny log."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from features.errors import InputError
from training.splits import build_split, global_split, per_user_split


def log() -> pd.DataFrame:
    rows = [
        ("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4), ("u1", "a", 5),
        ("u2", "a", 1), ("u2", "e", 9),
        ("u3", "b", 2),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "day"])
    frame["ts"] = pd.to_datetime("2026-11-01", utc=True) + pd.to_timedelta(frame["day"], "D")
    return frame.drop(columns="day").sample(frac=1.0, random_state=3)  # order must not matter


def test_per_user_split_takes_each_users_latest_share():
    train, test = per_user_split(log(), test_share=0.2)
    # u1: 5 interactions → last 1; u2: 2 → last 1; u3: 1 → none.
    assert sorted(zip(test["user_id"], test["item_id"], strict=True)) == [("u1", "a"), ("u2", "e")]
    assert len(train) == 6
    last_train = train.groupby("user_id")["ts"].max()
    first_test = test.groupby("user_id")["ts"].min()
    assert (last_train.reindex(first_test.index) <= first_test).all()
    _, test40 = per_user_split(log(), test_share=0.4)
    assert sorted(test40.loc[test40["user_id"] == "u1", "item_id"]) == ["a", "d"]


def test_global_split_at_the_cutoff():
    cutoff = datetime(2026, 11, 5, tzinfo=UTC)
    train, test = global_split(log(), cutoff=cutoff)
    assert (train["ts"] < cutoff).all() and (test["ts"] >= cutoff).all()
    assert len(train) + len(test) == len(log())
    assert sorted(test["item_id"]) == ["a", "d", "e"]  # "d" (day 4) is exactly at the cut-off


def test_modes_new_and_all():
    train, test = per_user_split(log(), test_share=0.2)
    new = build_split(train, test, mode="new")
    every = build_split(train, test, mode="all")
    users = {u: i for i, u in enumerate(new.user_ids)}
    items = {v: i for i, v in enumerate(new.item_ids)}
    # u1's test item "a" was seen in training: relevant only in "all" mode.
    assert new.relevant[users["u1"], items["a"]] == 0
    assert every.relevant[users["u1"], items["a"]] == 1
    assert new.relevant[users["u2"], items["e"]] == 1
    assert list(new.test_users) == [users["u2"]]
    assert sorted(every.test_users) == [users["u1"], users["u2"]]
    assert new.exclude is not None and every.exclude is None
    assert new.train.shape == (3, 5) and new.train.dtype == np.float32


def test_cold_users_under_a_global_split():
    train, test = global_split(log(), cutoff=datetime(2026, 11, 4, tzinfo=UTC))
    extra = pd.DataFrame(
        {"user_id": ["u9"], "item_id": ["a"], "ts": [pd.Timestamp("2026-11-20", tz="UTC")]}
    )
    split = build_split(train, pd.concat([test, extra]), mode="all")
    assert split.user_ids[split.cold_users()].tolist() == ["u9"]


def test_bad_arguments_name_the_field():
    with pytest.raises(InputError, match="test_share"):
        per_user_split(log(), test_share=1.5)
    with pytest.raises(InputError, match="missing columns"):
        per_user_split(log().drop(columns="ts"))
    with pytest.raises(InputError, match="mode='seen'"):
        build_split(log(), log(), mode="seen")  # type: ignore[arg-type]
