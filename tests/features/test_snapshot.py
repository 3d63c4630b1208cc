"""Point-in-time feature snapshots on handmade timelines with hand-computed answers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.data.ingest import ingest_file
from features.errors import InputError
from features.segments import load_segments
from features.settings import FeatureConfig
from features.snapshot import (
    NULLABLE_CUSTOMER_FEATURES,
    Snapshot,
    behaviour_feature_names,
    build_snapshot,
    compute_snapshot,
    load_snapshot,
    write_snapshot,
)

REPO = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 20, tzinfo=UTC)
CONFIG = FeatureConfig()
SEGMENTS = load_segments(None, behaviour_feature_names(CONFIG))


def hours_before(hours: float) -> pd.Timestamp:
    return pd.Timestamp(AS_OF - timedelta(hours=hours))


def events(*rows: dict) -> pd.DataFrame:
    frame = pd.DataFrame([{"event_id": f"e{i}", **row} for i, row in enumerate(rows)])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def customers(*ids: str, personalised: bool = True, **extra: object) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "customer_id": cid,
                "email": f"{cid}@example.com",
                "consent_email": True,
                "consent_personalization": personalised,
                "signup_ts": pd.Timestamp("2025-01-01", tz="UTC"),
                **extra,
            }
            for cid in ids
        ]
    )


CATALOG = pd.DataFrame(
    {
        "item_id": ["i1", "i2", "i3"],
        "category": ["home", "toys", "toys"],
        "price": [10.0, 20.0, 30.0],
        "in_stock": [True, True, True],
    }
)


def snap(frame: pd.DataFrame, people: pd.DataFrame | None = None, **kw: object) -> Snapshot:
    return compute_snapshot(
        frame,
        as_of=kw.pop("as_of", AS_OF),  # type: ignore[arg-type]
        config=kw.pop("config", CONFIG),  # type: ignore[arg-type]
        segments=SEGMENTS,
        customers=people if people is not None else customers("c1", "c2"),
        catalog_history=kw.pop("catalog_history", CATALOG),  # type: ignore[arg-type]
    )


def row(snapshot: Snapshot, customer_id: str) -> pd.Series:
    return snapshot.customers.set_index("customer_id").loc[customer_id]


def triggers(snapshot: Snapshot) -> set[tuple[str, str, str | None]]:
    t = snapshot.triggers
    return {
        (c, k, None if pd.isna(i) else i)
        for c, k, i in zip(t["customer_id"], t["trigger"], t["item_id"], strict=True)
    }


# ----------------------------------------------------------------- hand-computed features
def test_hand_computed_customer_features():
    log = events(
        {
            "ts": hours_before(24 * 40),
            "event_type": "purchase",
            "customer_id": "c1",
            "item_id": "i1",
            "quantity": 2,
            "price": 10.0,
            "order_id": "o1",
        },
        {
            "ts": hours_before(24 * 10),
            "event_type": "purchase",
            "customer_id": "c1",
            "item_id": "i2",
            "quantity": 1,
            "price": 20.0,
            "order_id": "o2",
        },
        {
            "ts": hours_before(24 * 10),
            "event_type": "purchase",
            "customer_id": "c1",
            "item_id": "i3",
            "quantity": 1,
            "price": 30.0,
            "order_id": "o2",
        },
        {"ts": hours_before(5), "event_type": "product_view", "customer_id": "c1", "item_id": "i2"},
        {"ts": hours_before(30), "event_type": "email_sent", "customer_id": "c1"},
        {"ts": hours_before(29), "event_type": "email_open", "customer_id": "c1"},
        {"ts": hours_before(28), "event_type": "email_click", "customer_id": "c1"},
        {"ts": hours_before(24 * 20), "event_type": "email_sent", "customer_id": "c1"},
    )
    c1 = row(snap(log), "c1")
    assert c1["frequency"] == 3
    assert c1["orders"] == 2
    assert c1["monetary"] == pytest.approx(2 * 10 + 20 + 30)
    assert c1["aov"] == pytest.approx(70 / 2)
    assert c1["recency_days"] == pytest.approx(10.0)
    assert c1["purchase_gap_median_days"] == pytest.approx(30.0)
    assert c1["product_view_1d"] == 1
    assert c1["purchase_7d"] == 0 and c1["purchase_30d"] == 2 and c1["purchase_90d"] == 3
    assert c1["email_open_rate_90d"] == pytest.approx(1 / 2)
    assert c1["email_click_rate_90d"] == pytest.approx(1 / 2)
    # Engagement over 30 days: 1 open, 1 click, 1 view, 0 carts, 2 purchases.
    assert c1["engagement_score"] == pytest.approx(math.log(1 + 1 + 3 + 0.2 + 0 + 10 * 2))
    # Affinity: decayed, weighted (view 1, purchase 5) share per category.
    decay = lambda days: 0.5 ** (days / CONFIG.half_life_days)  # noqa: E731
    home = 5 * decay(40)
    toys = 5 * decay(10) + 1 * decay(5 / 24) + 5 * decay(10)
    assert c1["top_category"] == "toys"
    assert c1["top_category_affinity"] == pytest.approx(toys / (home + toys), rel=1e-6)
    assert c1["lifecycle"] == "active"
    # Email engagement decides the send hour: the open and click hours tie, the earlier wins.
    open_hour, click_hour = hours_before(29).hour, hours_before(28).hour
    assert c1["preferred_send_hour_utc"] == min(open_hour, click_hour)


def test_hand_computed_interactions_and_item_features():
    log = events(
        {
            "ts": hours_before(24 * 14),
            "event_type": "product_view",
            "customer_id": "c1",
            "item_id": "i1",
        },
        {
            "ts": hours_before(0.0),
            "event_type": "add_to_cart",
            "customer_id": "c1",
            "item_id": "i1",
        },
        {
            "ts": hours_before(24),
            "event_type": "product_view",
            "customer_id": "c2",
            "item_id": "i2",
        },
        {"ts": hours_before(24), "event_type": "purchase", "customer_id": "c2", "item_id": "i2"},
    )
    # The cart at exactly as_of is not read.
    s = snap(log, config=CONFIG.model_copy(update={"interaction_decay": "as_of"}))
    matrix = pd.DataFrame(s.interactions.toarray(), index=s.user_ids, columns=s.item_ids)
    assert matrix.loc["c1", "i1"] == pytest.approx(1 * 0.5)  # one half-life old view
    decay = 0.5 ** (1 / CONFIG.half_life_days)
    assert matrix.loc["c2", "i2"] == pytest.approx((1 + 5) * decay, rel=1e-6)
    assert matrix.loc["c1", "i3"] == 0
    assert s.interactions.dtype == np.float32
    # Age from each customer's own last interaction (the default): c1's view is
    # their last interaction before as_of, so it weighs 1 however old it is.
    s = snap(log)
    matrix = pd.DataFrame(s.interactions.toarray(), index=s.user_ids, columns=s.item_ids)
    assert matrix.loc["c1", "i1"] == pytest.approx(1.0)
    assert matrix.loc["c2", "i2"] == pytest.approx(1 + 5)
    items = s.items.set_index("item_id")
    assert items.loc["i2", "views_7d"] == 1 and items.loc["i2", "purchases_7d"] == 1
    assert items.loc["i1", "views_7d"] == 0 and items.loc["i1", "views_30d"] == 1
    assert list(items["price_band"]) == ["low", "low", "high"]  # i2 < i3 within toys


def test_a_long_inactive_customer_keeps_the_shape_of_their_history():
    """Ten years at a 14-day half-life is 0.5^260 ≈ 5e-79: zero in float32 when age
    counts from as_of. From the customer's own last activity it keeps its shape."""
    years = 24 * 365 * 10
    log = events(
        {
            "ts": hours_before(years + 24 * 14),
            "event_type": "product_view",
            "customer_id": "c1",
            "item_id": "i1",
        },
        {"ts": hours_before(years), "event_type": "purchase", "customer_id": "c1", "item_id": "i2"},
        {"ts": hours_before(1), "event_type": "product_view", "customer_id": "c2", "item_id": "i1"},
    )
    old = snap(log, config=CONFIG.model_copy(update={"interaction_decay": "as_of"}))
    assert old.interactions[list(old.user_ids).index("c1")].max() == 0  # the underflow
    s = snap(log)
    matrix = pd.DataFrame(s.interactions.toarray(), index=s.user_ids, columns=s.item_ids)
    assert matrix.loc["c1", "i2"] == pytest.approx(5.0)  # the last interaction: weight 5
    assert matrix.loc["c1", "i1"] == pytest.approx(0.5)  # one half-life before it
    assert matrix.loc["c2", "i1"] == pytest.approx(1.0)


# ----------------------------------------------------------------- point in time
def test_events_at_or_after_as_of_change_nothing():
    early = events(
        {"ts": hours_before(30), "event_type": "add_to_cart", "customer_id": "c1", "item_id": "i1"},
        {"ts": hours_before(3), "event_type": "product_view", "customer_id": "c2", "item_id": "i2"},
    )
    late = events(
        {"ts": hours_before(0), "event_type": "purchase", "customer_id": "c1", "item_id": "i1"},
        {"ts": hours_before(-5), "event_type": "purchase", "customer_id": "c2", "item_id": "i3"},
        {"ts": hours_before(-50), "event_type": "login", "customer_id": "c3", "anonymous_id": "a9"},
    ).assign(event_id=lambda f: "late-" + f["event_id"])
    before = snap(early)
    after = snap(pd.concat([early, late], ignore_index=True))
    _assert_same_snapshot(before, after)
    assert ("c1", "cart_abandoned", "i1") in triggers(after)


def test_store_snapshot_is_unchanged_by_later_ingests(tmp_path, store):
    def write(rows: list[str], name: str) -> Path:
        path = tmp_path / name
        path.write_text("event_id,ts,event_type,customer_id,item_id\n" + "\n".join(rows) + "\n")
        return path

    as_of = datetime(2026, 11, 10, tzinfo=UTC)
    now = datetime(2026, 11, 28, tzinfo=UTC)
    first = write(
        ["a,2026-11-08T10:00:00Z,add_to_cart,c1,i1", "b,2026-11-09T10:00:00Z,product_view,c2,i2"],
        "first.csv",
    )
    ingest_file(first, kind="events", store=store, now=now)
    kw = {"as_of": as_of, "config": CONFIG, "segments": SEGMENTS}
    before = build_snapshot(store, **kw)  # type: ignore[arg-type]
    later = write(
        ["c,2026-11-10T00:00:00Z,purchase,c1,i1", "d,2026-11-12T10:00:00Z,purchase,c2,i2"],
        "later.csv",
    )
    ingest_file(later, kind="events", store=store, now=now)
    after = build_snapshot(store, **kw)  # type: ignore[arg-type]
    _assert_same_snapshot(before, after)
    assert after.manifest["events_read"] == 2


def test_store_snapshot_written_while_built_equals_the_one_written_after(tmp_path, store):
    rows = [
        "a,2026-11-08T10:00:00Z,add_to_cart,c1,i1",
        "b,2026-11-09T10:00:00Z,product_view,c2,i2",
        "c,2026-11-09T11:00:00Z,purchase,c2,i2",
    ]
    path = tmp_path / "events.csv"
    path.write_text("event_id,ts,event_type,customer_id,item_id\n" + "\n".join(rows) + "\n")
    ingest_file(path, kind="events", store=store, now=datetime(2026, 11, 28, tzinfo=UTC))
    kw = {"as_of": datetime(2026, 11, 10, tzinfo=UTC), "config": CONFIG, "segments": SEGMENTS}
    built = build_snapshot(store, write_to=tmp_path / "live", **kw)  # type: ignore[arg-type]
    live = Path(built.manifest["path"])
    after = write_snapshot(built, tmp_path / "after")
    assert live.name == after.name == "as_of=2026-11-10T00:00:00Z"
    assert sorted(p.name for p in live.iterdir()) == sorted(p.name for p in after.iterdir())
    _assert_same_snapshot(load_snapshot(live), load_snapshot(after))
    loaded = load_snapshot(live)
    assert loaded.customers["customer_id"].tolist() == built.customers["customer_id"].tolist()
    assert loaded.interactions.shape == built.interactions.shape
    assert loaded.items["purchases_30d"].tolist() == [0, 1]  # i1, i2


def test_failed_build_leaves_no_folder_behind(tmp_path, store):
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,ts,event_type,customer_id,item_id\na,2026-11-08T10:00:00Z,product_view,c1,i1\n"
    )
    ingest_file(path, kind="events", store=store, now=datetime(2026, 11, 28, tzinfo=UTC))
    with pytest.raises(InputError, match="as_of"):
        build_snapshot(
            store,
            as_of=datetime(2026, 11, 10),  # naive: refused
            config=CONFIG,
            segments=SEGMENTS,
            write_to=tmp_path / "features",
        )
    assert list((tmp_path / "features").iterdir()) == []


def _assert_same_snapshot(a: Snapshot, b: Snapshot) -> None:
    pd.testing.assert_frame_equal(a.customers, b.customers)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.triggers, b.triggers)
    pd.testing.assert_frame_equal(a.segments, b.segments)
    pd.testing.assert_frame_equal(a.category_affinity, b.category_affinity)
    assert (a.interactions != b.interactions).nnz == 0
    assert list(a.user_ids) == list(b.user_ids) and list(a.item_ids) == list(b.item_ids)


@pytest.mark.parametrize("window", [1, 2, 7, 30, 90])
def test_window_boundaries_are_half_open(window):
    exactly = AS_OF - timedelta(days=window)
    log = events(
        {"ts": exactly, "event_type": "product_view", "customer_id": "c1", "item_id": "i1"},
        {
            "ts": exactly - timedelta(microseconds=1),
            "event_type": "product_view",
            "customer_id": "c2",
            "item_id": "i1",
        },
    )
    s = snap(log)
    windows = CONFIG.windows_days
    shorter = [w for w in windows if w < window]
    longer = [w for w in windows if w > window]
    # An event exactly N days old is in the N-day window, in no shorter one.
    c1 = row(s, "c1")
    assert c1[f"product_view_{window}d"] == 1
    assert all(c1[f"product_view_{w}d"] == 0 for w in shorter)
    # One microsecond older: out of the N-day window, in the next one.
    c2 = row(s, "c2")
    assert c2[f"product_view_{window}d"] == 0
    assert all(c2[f"product_view_{w}d"] == 1 for w in longer)


# ----------------------------------------------------------------- triggers
CART_AT = AS_OF - timedelta(days=3)


def _cart_snapshot(as_of: datetime, *extra: dict) -> Snapshot:
    log = events(
        {"ts": CART_AT, "event_type": "add_to_cart", "customer_id": "c1", "item_id": "i1"},
        *extra,
    )
    return snap(log, as_of=as_of)


def test_cart_abandoned_fires_24h_after_the_cart_not_before():
    assert not triggers(_cart_snapshot(CART_AT + timedelta(hours=23, minutes=59)))
    fired = _cart_snapshot(CART_AT + timedelta(hours=24))
    assert triggers(fired) == {("c1", "cart_abandoned", "i1")}
    t = fired.triggers.iloc[0]
    assert t["fired_at"] == pd.Timestamp(CART_AT + timedelta(hours=24))
    assert t["expires_at"] == pd.Timestamp(CART_AT + timedelta(hours=24 + 72))
    # Expired after its time to live.
    assert not triggers(_cart_snapshot(CART_AT + timedelta(hours=24 + 72)))


def test_cart_purchased_within_24h_never_fires():
    bought = {
        "ts": CART_AT + timedelta(hours=23),
        "event_type": "purchase",
        "customer_id": "c1",
        "item_id": "i1",
    }
    for hours in (24, 30, 48, 90):
        assert not triggers(_cart_snapshot(CART_AT + timedelta(hours=hours), bought))


def test_cart_of_another_item_purchased_still_fires():
    other = {
        "ts": CART_AT + timedelta(hours=2),
        "event_type": "purchase",
        "customer_id": "c1",
        "item_id": "i2",
    }
    assert ("c1", "cart_abandoned", "i1") in triggers(
        _cart_snapshot(CART_AT + timedelta(hours=25), other)
    )


def test_browse_abandoned_needs_two_views_and_no_cart_for_48h():
    t0 = AS_OF - timedelta(days=4)
    views = [
        {"ts": t0, "event_type": "product_view", "customer_id": "c1", "item_id": "i2"},
        {
            "ts": t0 + timedelta(hours=1),
            "event_type": "product_view",
            "customer_id": "c1",
            "item_id": "i2",
        },
        {"ts": t0, "event_type": "product_view", "customer_id": "c2", "item_id": "i2"},
    ]
    fire_at = t0 + timedelta(hours=49)
    assert not triggers(snap(events(*views), as_of=fire_at - timedelta(seconds=1)))
    assert triggers(snap(events(*views), as_of=fire_at)) == {("c1", "browse_abandoned", "i2")}
    carted = {
        "ts": t0 + timedelta(hours=30),
        "event_type": "add_to_cart",
        "customer_id": "c1",
        "item_id": "i2",
    }
    assert ("c1", "browse_abandoned", "i2") not in triggers(
        snap(events(*views, carted), as_of=fire_at)
    )


def test_lapsing_fires_after_twice_the_median_gap():
    d0 = AS_OF - timedelta(days=60)
    orders = [
        {
            "ts": d0 + timedelta(days=d),
            "event_type": "purchase",
            "customer_id": "c1",
            "item_id": "i1",
            "order_id": f"o{d}",
        }
        for d in (0, 10, 20)
    ]
    # Last order at d0 + 20; median gap 10 days → fires at d0 + 40.
    assert ("c1", "lapsing", None) not in triggers(
        snap(events(*orders), as_of=d0 + timedelta(days=39))
    )
    fired = snap(events(*orders), as_of=d0 + timedelta(days=41))
    assert ("c1", "lapsing", None) in triggers(fired)
    assert fired.triggers.iloc[0]["fired_at"] == pd.Timestamp(d0 + timedelta(days=40))


def test_back_in_stock_from_stock_events_and_from_catalog_versions():
    t0 = AS_OF - timedelta(days=2)
    log = events(
        {"ts": t0, "event_type": "product_view", "customer_id": "c1", "item_id": "i3"},
        {
            "ts": t0 + timedelta(hours=1),
            "event_type": "stock_change",
            "anonymous_id": "inventory",
            "item_id": "i3",
            "properties": '{"in_stock": false}',
        },
        {
            "ts": t0 + timedelta(hours=20),
            "event_type": "stock_change",
            "anonymous_id": "inventory",
            "item_id": "i3",
            "properties": '{"in_stock": true}',
        },
        {"ts": t0, "event_type": "product_view", "customer_id": "c2", "item_id": "i1"},
    )
    history = pd.concat(
        [
            CATALOG.assign(_ingested_at=pd.Timestamp(t0 - timedelta(days=1))),
            CATALOG[CATALOG["item_id"] == "i1"].assign(
                in_stock=False, _ingested_at=pd.Timestamp(t0 + timedelta(hours=2))
            ),
            CATALOG[CATALOG["item_id"] == "i1"].assign(
                _ingested_at=pd.Timestamp(t0 + timedelta(hours=30))
            ),
        ],
        ignore_index=True,
    )
    s = snap(log, catalog_history=history)
    assert {("c1", "back_in_stock", "i3"), ("c2", "back_in_stock", "i1")} <= triggers(s)
    fired = s.triggers.set_index("item_id").loc["i3", "fired_at"]
    assert fired == pd.Timestamp(t0 + timedelta(hours=20))
    # Before the restock: nothing.
    early = snap(log, catalog_history=history, as_of=t0 + timedelta(hours=10))
    assert not {t for t in triggers(early) if t[1] == "back_in_stock"}


# ----------------------------------------------------------------- segments
def test_loyal_means_more_than_five_purchases_in_90_days():
    def buys(customer: str, n: int) -> list[dict]:
        return [
            {
                "ts": hours_before(24 * (i + 1)),
                "event_type": "purchase",
                "customer_id": customer,
                "item_id": "i1",
                "order_id": f"{customer}-{i}",
            }
            for i in range(n)
        ]

    s = snap(events(*buys("c1", 6), *buys("c2", 5)))
    loyal = set(s.segments.loc[s.segments["segment"] == "loyal", "customer_id"])
    assert loyal == {"c1"}
    assert row(s, "c1")["lifecycle"] == "loyal"


def test_segment_with_unknown_feature_fails_at_load_naming_both(tmp_path):

    path = tmp_path / "segments.yaml"
    path.write_text("segments:\n  big_spenders:\n    when: montary_90d > 100\n")
    with pytest.raises(InputError, match=r"big_spenders.*montary_90d|montary_90d.*big_spenders"):
        load_segments(path, behaviour_feature_names(CONFIG))
    path.write_text("segments:\n  broken:\n    when: purchase_90d >\n")
    with pytest.raises(InputError, match="segments.broken.when"):
        load_segments(path, behaviour_feature_names(CONFIG))


# ----------------------------------------------------------------- consent and identity
def test_no_personalisation_consent_means_no_profile():
    people = pd.concat([customers("c1"), customers("c2", personalised=False)], ignore_index=True)
    log = events(
        {"ts": hours_before(30), "event_type": "add_to_cart", "customer_id": "c2", "item_id": "i1"},
        *[
            {
                "ts": hours_before(24 * (i + 1)),
                "event_type": "purchase",
                "customer_id": "c2",
                "item_id": "i1",
                "order_id": f"o{i}",
            }
            for i in range(7)
        ],
        {"ts": hours_before(2), "event_type": "product_view", "customer_id": "c1", "item_id": "i1"},
    )
    s = snap(log, people)
    c2 = row(s, "c2")
    assert not c2["personalised"] and c2["sendable"]
    behavioural = [c for c in behaviour_feature_names(CONFIG) if c in s.customers.columns]
    assert c2[behavioural].isna().all()
    assert "c2" not in set(s.segments["customer_id"])
    assert "c2" not in set(s.triggers["customer_id"])
    assert "c2" not in set(s.user_ids)
    assert "c2" not in set(s.category_affinity["customer_id"])
    # Item popularity is aggregate, not a profile: it still counts c2's purchases.
    assert s.items.set_index("item_id").loc["i1", "purchases_30d"] == 7


def test_unsubscribe_makes_a_customer_unsendable_until_consent_is_renewed():
    people = customers("c1", "c2", consent_updated_ts=pd.Timestamp("2026-11-01", tz="UTC"))
    people.loc[1, "consent_updated_ts"] = pd.Timestamp("2026-11-19", tz="UTC")
    log = events(
        {
            "ts": pd.Timestamp("2026-11-10", tz="UTC"),
            "event_type": "unsubscribe",
            "customer_id": "c1",
        },
        {
            "ts": pd.Timestamp("2026-11-10", tz="UTC"),
            "event_type": "unsubscribe",
            "customer_id": "c2",
        },
    )
    s = snap(log, people)
    assert not row(s, "c1")["sendable"] and row(s, "c1")["unsubscribed"]
    assert row(s, "c2")["sendable"]  # re-subscribed on 2026-11-19


def test_anonymous_history_is_attributed_and_shared_devices_are_not_merged():
    people = customers("c1", "c2", "c3")
    people.loc[2, "email"] = "  C1@Example.COM "  # c3 is c1 under another record
    log = events(
        {
            "ts": hours_before(50),
            "event_type": "product_view",
            "anonymous_id": "a1",
            "item_id": "i2",
        },
        {"ts": hours_before(40), "event_type": "login", "anonymous_id": "a1", "customer_id": "c3"},
        {
            "ts": hours_before(30),
            "event_type": "product_view",
            "anonymous_id": "shared",
            "item_id": "i3",
        },
        {
            "ts": hours_before(20),
            "event_type": "login",
            "anonymous_id": "shared",
            "customer_id": "c1",
        },
        {
            "ts": hours_before(10),
            "event_type": "login",
            "anonymous_id": "shared",
            "customer_id": "c2",
        },
    )
    s = snap(log, people)
    assert list(s.customers["customer_id"]) == ["c1", "c2"]
    c1 = row(s, "c1")
    assert c1["product_view_7d"] == 1  # a1's view before the login, through c3
    assert c1["login_7d"] == 2
    conflicts = s.identity.conflicts
    assert conflicts.to_dict("records") == [
        {
            "kind": "anonymous",
            "key": "shared",
            "n_customers": 2,
            "reason": "shared_device",
            "customer_ids": "c1,c2",
        }
    ]
    assert row(s, "c2")["product_view_7d"] == 0
    mapping = s.identity.mapping
    assert "c1@example.com" not in set(mapping["source_id"])  # emails only as digests


def test_snapshot_round_trip(tmp_path):
    log = events(
        {"ts": hours_before(30), "event_type": "add_to_cart", "customer_id": "c1", "item_id": "i1"},
    )
    s = snap(log)
    path = write_snapshot(s, tmp_path)
    assert path.name == "as_of=2026-11-20T00:00:00Z"
    loaded = load_snapshot(path)
    _assert_same_snapshot(s, loaded)
    assert loaded.as_of == s.as_of
    assert set(loaded.manifest["features"]["customers"]) == set(s.customers.columns)


def test_price_sensitivity_features_by_hand():
    # Category medians: home 10, toys 25; price index i1 1.0, i2 0.8, i3 1.2.
    log = events(
        {
            "ts": hours_before(10),
            "event_type": "product_view",
            "customer_id": "c1",
            "item_id": "i2",
        },
        {
            "ts": hours_before(20),
            "event_type": "product_view",
            "customer_id": "c1",
            "item_id": "i2",
        },
        {
            "ts": hours_before(30),
            "event_type": "product_view",
            "customer_id": "c1",
            "item_id": "i3",
        },
        # 100 days old: outside the 90-day window of the viewed index
        {
            "ts": hours_before(2400),
            "event_type": "product_view",
            "customer_id": "c1",
            "item_id": "i3",
        },
        # after as_of: never read
        {
            "ts": hours_before(-1),
            "event_type": "product_view",
            "customer_id": "c1",
            "item_id": "i3",
        },
        *(
            {
                "ts": hours_before(5),
                "event_type": "purchase",
                "customer_id": "c1",
                "item_id": item,
                "price": paid,
                "quantity": 1,
                "order_id": "o1",
            }
            for item, paid in (("i2", 16.0), ("i1", 10.0), ("i3", None))
        ),
    )
    c1 = row(snap(log), "c1")
    assert c1["viewed_price_index_90d"] == pytest.approx((0.8 + 0.8 + 1.2) / 3)
    assert c1["purchased_price_index"] == pytest.approx((0.8 + 1.0 + 1.2) / 3)
    # i2 bought at 16 against a list price of 20; i1 at list; i3's paid price unknown.
    assert c1["discount_purchase_share"] == pytest.approx(0.5)
    c2 = row(snap(log), "c2")
    assert np.isnan(c2[["viewed_price_index_90d", "purchased_price_index"]].astype(float)).all()


def test_nullable_feature_list_names_real_columns():
    s = snap(events({"ts": hours_before(1), "event_type": "page_view", "customer_id": "c1"}))
    assert set(NULLABLE_CUSTOMER_FEATURES) <= set(s.customers.columns)


def test_interaction_weights_are_validated_naming_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="interaction_weights"):
        FeatureConfig(interaction_weights={"purchase": -1.0})
    with pytest.raises(ValidationError, match="stock_change"):
        FeatureConfig(interaction_weights={"stock_change": 1.0})


def test_a_consent_update_after_as_of_does_not_change_a_historical_snapshot(tmp_path, store):
    header = "customer_id,email,consent_email,consent_personalization,consent_updated_ts\n"
    first = tmp_path / "customers-1.csv"
    first.write_text(header + "c1,c1@example.com,true,true,2026-11-01T00:00:00Z\n")
    # Withdrawn on 2026-11-15, ingested later: not yet true on 2026-11-10.
    second = tmp_path / "customers-2.csv"
    second.write_text(header + "c1,c1@example.com,true,false,2026-11-15T00:00:00Z\n")
    log = tmp_path / "events.csv"
    log.write_text(
        "event_id,ts,event_type,customer_id,item_id\na,2026-11-08T10:00:00Z,product_view,c1,i1\n"
    )
    ingest_file(first, kind="customers", store=store, now=datetime(2026, 11, 2, tzinfo=UTC))
    ingest_file(log, kind="events", store=store, now=datetime(2026, 11, 9, tzinfo=UTC))
    ingest_file(second, kind="customers", store=store, now=datetime(2026, 11, 28, tzinfo=UTC))
    kw = {"config": CONFIG, "segments": SEGMENTS}
    then = build_snapshot(store, as_of=datetime(2026, 11, 10, tzinfo=UTC), **kw)  # type: ignore[arg-type]
    now = build_snapshot(store, as_of=datetime(2026, 11, 20, tzinfo=UTC), **kw)  # type: ignore[arg-type]
    assert row(then, "c1")["personalised"] and row(then, "c1")["product_view_30d"] == 1
    assert not row(now, "c1")["personalised"]
    assert pd.isna(row(now, "c1")["product_view_30d"])


def test_customer_attributes_become_typed_columns_for_the_consenting():
    people = customers("c1", "c2", "c3")
    people["attributes"] = [
        '{"history": 675.5, "newbie": true, "Zip Code": "Rural", "tags": [1, 2]}',
        '{"history": 45, "newbie": false, "Zip Code": "Urban"}',
        '{"history": 10, "Zip Code": "Urban"}',
    ]
    people.loc[2, "consent_personalization"] = False
    s = snap(
        events({"ts": hours_before(1), "event_type": "page_view", "customer_id": "c1"}), people
    )
    c = s.customers.set_index("customer_id")
    assert c["attr_history"].tolist()[:2] == [675.5, 45.0]  # numbers stay numbers
    assert c["attr_newbie"].tolist()[:2] == [1.0, 0.0]  # booleans as 0/1
    assert c["attr_zip_code"].tolist()[:2] == ["Rural", "Urban"]  # text stays text
    assert c.loc["c1", "attr_tags"] == "[1,2]" and pd.isna(c.loc["c2", "attr_tags"])
    # No profile without consent: c3's attributes are not read.
    assert c.loc["c3", ["attr_history", "attr_zip_code"]].isna().all()
    assert pd.api.types.is_float_dtype(c["attr_history"])


def test_attributes_that_are_not_json_objects_are_refused_naming_the_field():
    people = customers("c1")
    people["attributes"] = ["[1, 2]"]
    with pytest.raises(InputError, match="attributes"):
        snap(
            events({"ts": hours_before(1), "event_type": "page_view", "customer_id": "c1"}), people
        )
