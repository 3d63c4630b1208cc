"""Properties of the feature job on random logs (hypothesis)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.snapshot import CONSENT_COLUMNS, NULLABLE_CUSTOMER_FEATURES
from tests.features.test_snapshot import AS_OF, customers, snap

EVENT_TYPES = ["product_view", "add_to_cart", "purchase", "email_sent", "email_open", "login"]

event = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from(EVENT_TYPES),
        "customer_id": st.sampled_from(["c1", "c2", "c3", "c4"]),
        "anonymous_id": st.sampled_from([None, "a1", "a2"]),
        "item_id": st.sampled_from(["i1", "i2", "i3"]),
        "minutes_before": st.integers(min_value=-600, max_value=60 * 24 * 120),
        "price": st.floats(min_value=0, max_value=500, allow_nan=False),
    }
)


def to_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["ts"] = [AS_OF - timedelta(minutes=m) for m in frame.pop("minutes_before")]
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["event_id"] = [f"e{i}" for i in range(len(frame))]
    frame.loc[frame["event_type"] != "login", "anonymous_id"] = None
    frame.loc[(frame["event_type"] == "login") & frame["anonymous_id"].isna(), "anonymous_id"] = (
        "a3"
    )
    return frame


PEOPLE = pd.concat(
    [customers("c1", "c2", "c3"), customers("c4", personalised=False)], ignore_index=True
)
PROPERTY = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.lists(event, min_size=1, max_size=40))
def test_one_row_per_customer_and_no_unexpected_nulls(rows):
    s = snap(to_frame(rows), PEOPLE)
    assert s.customers["customer_id"].is_unique
    assert set(s.customers["customer_id"]) == {"c1", "c2", "c3", "c4"}
    personal = s.customers[s.customers["personalised"]]
    required = [c for c in personal.columns if c not in NULLABLE_CUSTOMER_FEATURES]
    nulls = personal[required].isna().sum()
    assert not nulls.any(), nulls[nulls > 0].to_dict()
    consent = s.customers[[c for c in CONSENT_COLUMNS if c not in NULLABLE_CUSTOMER_FEATURES]]
    assert consent.notna().all().all()
    assert s.items["item_id"].is_unique
    assert (s.interactions.data > 0).all()


@PROPERTY
@given(st.lists(event, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_row_order(rows, rng):
    frame = to_frame(rows)
    shuffled = frame.sample(frac=1.0, random_state=rng.randint(0, 2**31)).reset_index(drop=True)
    a, b = snap(frame, PEOPLE), snap(shuffled, PEOPLE)
    pd.testing.assert_frame_equal(a.customers, b.customers)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.triggers, b.triggers)
    pd.testing.assert_frame_equal(a.segments, b.segments)
    assert (a.interactions != b.interactions).nnz == 0
