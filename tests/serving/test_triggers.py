"""Live triggers (request time, Python) agree with the feature job's SQL triggers."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features.settings import TriggerConfig
from serving.triggers import active_triggers
from tests.features.test_snapshot import AS_OF, events, snap

KINDS = ("product_view", "add_to_cart", "remove_from_cart", "purchase")

timeline = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.sampled_from(("i1", "i2", "i3")),
        st.integers(min_value=1, max_value=12 * 24 * 60),  # minutes before as_of
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(timeline)
def test_live_cart_and_browse_triggers_match_the_snapshot(rows):
    frame = events(
        *[
            {
                "ts": AS_OF - timedelta(minutes=minutes),
                "event_type": kind,
                "customer_id": "c1",
                "item_id": item,
            }
            for kind, item, minutes in rows
        ]
    )
    batch = snap(frame).triggers
    batch = batch[batch["trigger"].isin(["cart_abandoned", "browse_abandoned"])]
    expected = {
        (t, i, pd.Timestamp(f).timestamp(), pd.Timestamp(e).timestamp())
        for t, i, f, e in zip(
            batch["trigger"], batch["item_id"], batch["fired_at"], batch["expires_at"], strict=True
        )
    }
    recent = [
        (pd.Timestamp(ts).timestamp(), k, i)
        for ts, k, i in zip(frame["ts"], frame["event_type"], frame["item_id"], strict=True)
    ]
    live = active_triggers(recent, [], now=AS_OF.timestamp(), config=TriggerConfig())
    assert {(t.trigger, t.item_id, t.fired_at, t.expires_at) for t in live} == expected


def test_snapshot_lapsing_is_answered_by_a_later_purchase():
    lapsing = [{"trigger": "lapsing", "item_id": None, "fired_at": 100.0, "expires_at": 10_000.0}]
    config = TriggerConfig()
    assert active_triggers([], lapsing, now=500.0, config=config, snapshot_last_purchase=50.0)
    bought = [(300.0, "purchase", "i1")]
    assert not active_triggers(
        bought, lapsing, now=500.0, config=config, snapshot_last_purchase=50.0
    )
