"""Live triggers (request time, Python) agree with the feature job's SQL triggers."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from hypothesis import example, given, settings
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


# ---------------------------------------------------------------------------
# A campaign batch reads only the recent events triggers can still depend on
# (serving.triggers.trigger_events); the answer must equal reading them all.
NOW = 1_800_000_000.0

history = st.lists(
    st.tuples(
        st.sampled_from((*KINDS, "page_view", "email_open")),
        st.sampled_from(("i1", "i2", "i3")),
        st.integers(min_value=1, max_value=20 * 24 * 60),  # minutes before now
    ),
    min_size=0,
    max_size=25,
)
snapshot_rows = st.lists(
    st.tuples(
        st.sampled_from(("lapsing", "back_in_stock")),
        st.sampled_from(("i1", "i2", "i3")),
        st.integers(min_value=0, max_value=40 * 24),  # fired, hours before now
        st.integers(min_value=1, max_value=40 * 24),  # lives this many hours
    ),
    max_size=3,
)


DAY_MIN = 24 * 60


@settings(max_examples=60, deadline=None)
@given(
    history,
    snapshot_rows,
    st.integers(min_value=0, max_value=96),  # snapshot age, hours
    st.one_of(st.none(), st.integers(min_value=0, max_value=60 * 24)),  # snapshot purchase
)
# The edges of the window, found by hand (random timelines rarely reach them):
# a browse whose first view is 6 days old, a cart 3.5 days old, a back-in-stock
# answered by a purchase 5 days ago, and a lapsing answered by a purchase older than
# the window but newer than the snapshot's last one (an event that arrived late).
@example([("product_view", "i1", 6 * DAY_MIN), ("product_view", "i1", 108 * 60)], [], 0, None)
@example([("add_to_cart", "i2", 84 * 60)], [], 0, None)
@example([("purchase", "i1", 5 * DAY_MIN)], [("back_in_stock", "i1", 6 * 24, 7 * 24)], 0, None)
@example([("purchase", "i3", 12 * DAY_MIN)], [("lapsing", "i1", 10 * 24, 30 * 24)], 0, 20 * 24)
# A back-in-stock trigger living longer than configured now (built under another setting).
@example([("purchase", "i1", 7 * DAY_MIN + 1)], [("back_in_stock", "i1", 169, 170)], 0, None)
def test_reading_only_trigger_events_gives_the_same_triggers(rows, fired, age, bought_hours):
    import tempfile
    from pathlib import Path

    from serving.online import OnlineStore
    from serving.triggers import profile_triggers, trigger_events

    config = TriggerConfig()
    as_of = NOW - age * 3600.0
    snapshot_purchase = None if bought_hours is None else as_of - bought_hours * 3600.0
    with tempfile.TemporaryDirectory() as folder:
        store = OnlineStore(Path(folder) / "profiles.db", assume_consent_when_unknown=True)
        con = store.con
        con.execute(
            "INSERT INTO profiles VALUES ('c1', '{}', '[]', 1, 1, 1, ?)", (snapshot_purchase,)
        )
        con.executemany(
            "INSERT INTO snapshot_triggers VALUES ('c1', ?, ?, ?, ?)",
            [
                (
                    name,
                    item if name == "back_in_stock" else None,
                    NOW - h * 3600,
                    NOW + (live - h) * 3600,
                )
                for name, item, h, live in fired
            ],
        )
        frame = pd.DataFrame(
            {
                "event_id": [f"e{k}" for k in range(len(rows))],
                "ts": pd.to_datetime([NOW - m * 60.0 for _, _, m in rows], unit="s", utc=True),
                "event_type": [kind for kind, _, _ in rows],
                "customer_id": "c1",
                "anonymous_id": None,
                "item_id": [item for _, item, _ in rows],
                "campaign_id": None,
                "content_id": None,
                "slot": None,
                "properties": None,
            }
        )
        store.apply_events(frame.to_dict("records"))
        everything = store.profiles(["c1"])["c1"]
        narrow = store.profiles(
            ["c1"],
            recent=trigger_events(
                NOW, as_of, config, max((live for _, _, _, live in fired), default=0)
            ),
            responses=False,
            features=False,
        )["c1"]
        assert len(narrow.recent) <= len(everything.recent)
        expected = active_triggers(
            everything.recent,
            everything.snapshot_triggers,
            now=NOW,
            config=config,
            snapshot_last_purchase=everything.snapshot_last_purchase_ts,
        )
        assert profile_triggers(narrow, NOW, config) == expected
        # Every event since the snapshot is read (live scoring needs them).
        assert sorted(e for e in everything.recent if e[0] >= as_of) == sorted(
            e for e in narrow.recent if e[0] >= as_of
        )
