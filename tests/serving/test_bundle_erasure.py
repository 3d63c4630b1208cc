"""Erasing customers from what the service has loaded: at once, for the next request,
without breaking the one in flight, and everyone else answered exactly as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.snapshot import latest_snapshot, load_snapshot
from serving.core import DecisionCore
from serving.schemas import Filters, Recommendation, RecommendRequest
from tests.serving.conftest import settings_for
from training.promotion import set_challenger
from training.tracking import configure

UNFILTERED = Filters(in_stock_only=False, exclude_purchased=False)


def _quiet_ranked(home: Path, core: DecisionCore, count: int) -> list[str]:
    """Personalised customers with a cached ranking, no trigger and no segment default:
    the model answers them."""
    snapshot = load_snapshot(latest_snapshot(home / "features"))
    people = snapshot.customers[snapshot.customers["personalised"].astype(bool)]
    busy = set(snapshot.triggers["customer_id"]) | set(
        snapshot.segments.loc[snapshot.segments["segment"] == "new_subscriber", "customer_id"]
    )
    ranked = core.bundle.ranked.rows
    chosen = [str(c) for c in people["customer_id"] if c not in busy and c in ranked]
    assert len(chosen) >= count
    return chosen[:count]


def _ask(core: DecisionCore, customer: str) -> Recommendation:
    return core.recommend(RecommendRequest(customer_id=customer, n=10, filters=UNFILTERED))


def test_an_erased_customer_is_unknown_to_the_served_models_at_once(home):
    core = DecisionCore(settings_for(home))
    core.reload()
    person, *others = _quiet_ranked(home, core, 8)
    before = {c: _ask(core, c) for c in [person, *others]}
    assert {r.strategy for r in before.values()} == {"model"}
    in_flight = core.bundle

    assert core.loader.erase({person}) == 1

    answer = _ask(core, person)
    assert answer.strategy != "model" and answer.model_version is None
    bundle = core.bundle
    assert bundle is not in_flight, "a new bundle was swapped in"
    assert bundle.ranked.get(person) is None
    assert person not in bundle.history_rows
    assert bundle.pipeline is not None and person not in set(bundle.pipeline.index.user_ids)
    assert bundle.recommender is not None and bundle.recommender.user_rows([person])[0] == -1
    assert bundle.recommender is bundle.pipeline.generators["als"], "still one model"
    # Everyone else: the same items, scores and strategy.
    for customer in others:
        assert _ask(core, customer).model_dump(exclude={"decision_id"}) == before[
            customer
        ].model_dump(exclude={"decision_id"})
    # The bundle a request already held is untouched: that request finishes with it.
    assert in_flight.ranked.get(person) is not None
    assert in_flight.recommender is not None and in_flight.recommender.user_rows([person])[0] >= 0
    # Their history row is emptied; every other row is as it was.
    row = in_flight.history_rows[person]
    assert in_flight.history is not None and bundle.history is not None
    assert in_flight.history[row].nnz > 0 and bundle.history[row].nnz == 0
    assert (bundle.history != in_flight.history).nnz == in_flight.history[row].nnz
    rows = np.array([in_flight.ranked.rows[c] for c in others])
    np.testing.assert_array_equal(bundle.ranked.ids[rows], in_flight.ranked.ids[rows])


def test_a_reload_does_not_bring_them_back(home):
    core = DecisionCore(settings_for(home))
    core.reload()
    (person,) = _quiet_ranked(home, core, 1)
    assert core.loader.erase([person]) == 1
    # Forced: the model is read again from registry files that (in this test) still
    # hold them, and the ranking and history are rebuilt from the snapshot.
    core.reload(force=True)
    assert core.bundle.ranked.get(person) is None
    assert core.bundle.recommender is not None
    assert core.bundle.recommender.user_rows([person])[0] == -1
    assert _ask(core, person).strategy != "model"


def test_an_id_no_one_holds_changes_nothing(home):
    core = DecisionCore(settings_for(home))
    core.reload()
    served = core.bundle
    assert core.loader.erase(["c9999999"]) == 0
    assert core.bundle is served


def test_the_challenger_forgets_them_too(home):
    client = configure(home)
    champion = client.get_model_version_by_alias("tailor-recommender", "champion")
    assert champion.source is not None
    second = client.create_model_version(
        "tailor-recommender", champion.source, run_id=champion.run_id
    )
    set_challenger(client, "tailor-recommender", str(second.version))
    core = DecisionCore(settings_for(home, challenger_share=0.5))
    core.reload()
    challenger = core.bundle.challenger
    assert challenger is not None and challenger.recommender_version == str(second.version)
    assert challenger.pipeline is not core.bundle.pipeline, "loaded on its own"
    (person,) = _quiet_ranked(home, core, 1)
    assert challenger.recommender is not None
    assert challenger.recommender.user_rows([person])[0] >= 0

    assert core.loader.erase({person}) == 1

    for bundle in (core.bundle, core.bundle.challenger):
        assert bundle is not None
        assert bundle.recommender is not None and bundle.recommender.user_rows([person])[0] == -1
        assert bundle.pipeline is not None and person not in set(bundle.pipeline.index.user_ids)
        assert bundle.ranked.get(person) is None and person not in bundle.history_rows
    assert _ask(core, person).strategy != "model"
