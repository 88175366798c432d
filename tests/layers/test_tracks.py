"""Trajectory layers: fixes conserved (GeoLife), dwell times capped per track, visits as distinct tracks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_models import LayerSpec
from tests.conftest import shared_data
from twin.layers.tracks import dwell_seconds, track_values, visit_values
from twin.layers.values import aggregate, rollup

GEOLIFE_FIXES = 217_653


def _by_res(table) -> dict[int, float]:
    g = table.group_by("res").aggregate([("value", "sum")])
    return dict(zip(g["res"].to_pylist(), g["value_sum"].to_pylist(), strict=True))


@pytest.fixture(scope="module")
def geolife() -> pd.DataFrame:
    df = pd.read_csv(shared_data("mobility_geolife_beijing") / "geolife_sample.txt.gz", dtype={"uid": str})
    df["datetime"] = pd.to_datetime(df["datetime"], utc=True)
    return df


def test_geolife_fixes_sum_to_every_fix_at_every_resolution(geolife: pd.DataFrame) -> None:
    assert len(geolife) == GEOLIFE_FIXES
    out = track_values(geolife, 11, bucket_s=3600)
    spec = LayerSpec(name="fixes", variable="gps fixes", unit="1", aggregation="count",
                     resolutions=[5, 7, 9, 11], time_bucket="1h")
    up = rollup(out["fixes"], spec)
    assert _by_res(up) == {r: GEOLIFE_FIXES for r in spec.resolutions}
    assert _by_res(aggregate(up, spec.aggregation, bucket_s=86400)) == {r: GEOLIFE_FIXES for r in spec.resolutions}
    # dwell: same total at every resolution, at most 10 min per fix; visits: ≤ 2 users anywhere
    dwell = rollup(out["dwell"], spec.model_copy(update={"aggregation": "sum"}))
    totals = _by_res(dwell)
    assert len(set(np.round(list(totals.values()), 6))) == 1 and 0 < totals[11] <= 600 * GEOLIFE_FIXES
    v = visit_values(geolife, [5, 11])
    assert pc.max(v["value"]).as_py() == 2 and pc.min(v["value"]).as_py() >= 1


def test_dwell_is_time_to_next_fix_of_the_same_track_capped() -> None:
    t0 = np.datetime64("2024-01-01T10:00:00", "us")
    df = pd.DataFrame({
        "track_id": ["b", "a", "a", "a", "b"],
        "time": pd.to_datetime([t0 + np.timedelta64(5, "s"), t0 + np.timedelta64(30, "s"), t0,
                                t0 + np.timedelta64(3600, "s"), t0], utc=True),
        "lon": [116.40, 116.40, 116.40, 116.40, 116.40],
        "lat": [39.90, 39.90, 39.90, 39.90, 39.90],
    })
    out = track_values(pa.Table.from_pandas(df), 9, bucket_s=3600, cap_s=600)
    dwell = dict(zip(out["dwell"]["t"].to_pylist(), out["dwell"]["value"].to_pylist(), strict=True))
    # a: 0→30 s (30), 30→3600 s capped (600), last fix 0; b: 0→5 s (5), last 0 — all in the 10:00 bucket
    assert list(dwell.values())[0] == 635.0 and list(dwell.values())[1] == 0.0
    visits = out["visits"]["value"].to_pylist()
    assert visits == [2.0, 1.0]  # two tracks 10:00-11:00, one at 11:00
    assert out["fixes"]["value"].to_pylist() == [4.0, 1.0]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 500), tracks=st.integers(1, 6), res=st.integers(6, 12))
def test_fixes_and_dwell_are_conserved(seed: int, n: int, tracks: int, res: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.datetime64("2024-03-01", "us") + rng.integers(0, 3 * 86400, n).astype("timedelta64[s]")
    code = rng.integers(0, tracks, n)
    df = pd.DataFrame({"uid": code.astype(str), "datetime": t,
                       "lng": 116.3 + rng.uniform(0, 0.05, n), "lat": 39.9 + rng.uniform(0, 0.05, n)})
    out = track_values(df, res, bucket_s=900, cap_s=300)
    assert pc.sum(out["fixes"]["value"]).as_py() == n
    order = np.lexsort((t, code))
    expected = dwell_seconds(code[order], t[order], 300.0).sum()
    assert np.isclose(pc.sum(out["dwell"]["value"]).as_py(), expected)
    # visits: at most the tracks present, and exactly the distinct (cell, bucket, track) triples in total
    assert pc.max(out["visits"]["value"]).as_py() <= tracks
    v = visit_values(df, [res - 2, res], bucket_s=900)
    fine, coarse = (v.filter(pc.equal(v["res"], r)) for r in (res, res - 2))
    assert pc.sum(coarse["value"]).as_py() <= pc.sum(fine["value"]).as_py()
    assert pc.sum(fine["value"]).as_py() == pc.sum(out["visits"]["value"]).as_py()


def test_missing_columns_are_named() -> None:
    with pytest.raises(KeyError, match="track_id"):
        track_values(pd.DataFrame({"time": [], "lon": [], "lat": []}), 9)
