"""LambdaRank reranker: learns a planted ranking signal; artifacts round-trip; mismatch fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import InputError, NotFoundError
from models.reranker import LambdaRankReranker


def planted(seed: int = 0, users: int = 300, per_user: int = 20):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=users * per_user)
    noise = rng.normal(size=users * per_user)
    frame = pd.DataFrame({"signal": signal, "noise": noise})
    # Within each user, the two rows with the highest signal are relevant.
    rank = frame.groupby(np.repeat(np.arange(users), per_user))["signal"].rank(ascending=False)
    labels = (rank <= 2).astype(int).to_numpy()
    return frame, labels, np.full(users, per_user)


def test_learns_the_planted_signal_and_ignores_noise():
    features, labels, groups = planted()
    model = LambdaRankReranker(n_estimators=50, num_leaves=7, min_child_samples=20).fit(
        features, labels, groups
    )
    test, test_labels, test_groups = planted(seed=1)
    scores = model.predict(test)
    # Top-2 by model score per user equals the relevant pair for most users.
    order = pd.DataFrame({"g": np.repeat(np.arange(len(test_groups)), 20), "s": scores})
    top = order.groupby("g")["s"].rank(ascending=False) <= 2
    assert (test_labels[top.to_numpy()] == 1).mean() > 0.9
    importance = model.feature_importance()
    assert importance["signal"] > 10 * importance["noise"]


def test_save_load_identical_and_feature_check(tmp_path):
    features, labels, groups = planted()
    model = LambdaRankReranker(n_estimators=20).fit(features, labels, groups)
    loaded = LambdaRankReranker.load(model.save(tmp_path / "r"))
    np.testing.assert_array_equal(model.predict(features), loaded.predict(features))
    # Columns are matched by name, not position.
    np.testing.assert_array_equal(
        model.predict(features), loaded.predict(features[["noise", "signal"]])
    )
    with pytest.raises(InputError, match="signal"):
        loaded.predict(features[["noise"]])


def test_bad_input():
    features, labels, groups = planted()
    with pytest.raises(InputError, match="groups"):
        LambdaRankReranker().fit(features, labels, groups[:-1])
    with pytest.raises(InputError, match="no relevant row"):
        LambdaRankReranker().fit(features, np.zeros_like(labels), groups)
    with pytest.raises(NotFoundError):
        LambdaRankReranker().predict(features)
    with pytest.raises(NotFoundError):
        LambdaRankReranker.load(Path("/nonexistent"))
