"""The canary: a challenger alias served to its share of the customers (stable by
customer, apart from the holdout), its versions logged with each decision, and gone
when the alias is cleared."""

from __future__ import annotations

from pathlib import Path

from features.data.decision_log import DecisionLog
from features.snapshot import latest_snapshot, load_snapshot
from serving.core import DecisionCore
from serving.deciding import in_challenger
from serving.schemas import ChooseRequest, RecommendBatchRequest
from tests.serving.conftest import settings_for
from training.promotion import clear_challenger, set_challenger
from training.tracking import configure


def _copy_of_champion(client, name: str) -> str:
    """A second version of ``name`` (the champion's artifacts): a challenger to route."""
    champion = client.get_model_version_by_alias(name, "champion")
    second = client.create_model_version(name, champion.source, run_id=champion.run_id)
    return str(second.version)


def test_the_challenger_serves_its_share_and_its_decisions_say_so(home: Path):
    client = configure(home)
    recommender = _copy_of_champion(client, "tailor-recommender")
    offer = _copy_of_champion(client, "tailor-selector-offer")
    set_challenger(client, "tailor-recommender", recommender)
    set_challenger(client, "tailor-selector-offer", offer)
    share = 0.4
    core = DecisionCore(settings_for(home, challenger_share=share))
    status = core.reload()
    champion_subject = status.models["tailor-selector-subject"]
    assert status.challenger == {
        "tailor-recommender": recommender,
        "tailor-selector-offer": offer,
        "tailor-selector-subject": champion_subject,  # no challenger: the champion's
    }

    snapshot = load_snapshot(latest_snapshot(home / "features"))
    with_history = set(snapshot.user_ids)
    people = [c for c in snapshot.customers["customer_id"] if c in with_history][:200]
    batch = core.recommend_batch(RecommendBatchRequest(customer_ids=people, n=3))
    chosen = {c for c in people if in_challenger(c, share)}
    assert 0.25 < len(chosen) / len(people) < 0.55
    for person, result in zip(people, batch.results, strict=True):
        if result.strategy != "model":
            continue
        expected = recommender if person in chosen else status.models["tailor-recommender"]
        assert result.model_version == expected, person
    # Stable by customer: the same split on the next call, and for content choices.
    again = core.recommend_batch(RecommendBatchRequest(customer_ids=people, n=3))
    assert [r.model_version for r in again.results] == [r.model_version for r in batch.results]
    for person in people[:40]:
        core.choose(ChooseRequest(customer_id=person, slot="offer"))
    logged = DecisionLog(home / "online" / "decisions.db").read()
    offers = logged[logged["slot"] == "offer"]
    for person, versions in zip(offers["customer_id"], offers["versions"], strict=True):
        if person in chosen:
            assert versions["selector"] == offer and versions["arm"] == "challenger"
        else:
            assert versions["selector"] != offer and "arm" not in versions

    # Cleared: everyone is the champion's again.
    assert clear_challenger(client, "tailor-recommender") == int(recommender)
    assert clear_challenger(client, "tailor-selector-offer") == int(offer)
    assert core.reload().challenger is None


def test_no_share_no_challenger(home: Path):
    client = configure(home)
    set_challenger(client, "tailor-recommender", _copy_of_champion(client, "tailor-recommender"))
    core = DecisionCore(settings_for(home))
    assert core.reload().challenger is None
