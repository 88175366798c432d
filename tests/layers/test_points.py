"""Point layers: counts and statistics per cell, conserved across resolutions, time buckets and cell edges."""

from __future__ import annotations

from datetime import UTC, datetime

import h3
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_models import LayerSpec
from tests.conftest import shared_data
from twin.geo.crs import transform_xy
from twin.layers.points import lidar_point_counts, point_values, xy_to_cells
from twin.layers.values import aggregate, rollup

CRS = "EPSG:4548"
X0, Y0 = 448_000.0, 4_428_000.0


def _total(table, res: int | None = None) -> float:
    """Sum of the values (optionally of one resolution)."""
    if res is not None:
        table = table.filter(pc.equal(table["res"], res))
    return float(pc.sum(table["value"]).as_py() or 0.0)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 400), res=st.integers(7, 12), span=st.floats(10.0, 5_000.0), seed=st.integers(0, 2**31))
def test_counts_are_conserved_across_resolutions_and_days(n: int, res: int, span: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = X0 + rng.uniform(0, span, n), Y0 + rng.uniform(0, span, n)
    t = np.datetime64("2024-06-01T00:00:00", "us") + rng.integers(0, 5 * 86400, n).astype("timedelta64[s]")
    v = point_values(x, y, CRS, res, t=t, bucket_s=3600)
    assert _total(v) == n and int(pc.sum(v["count"]).as_py()) == n
    spec = LayerSpec(name="pts", variable="points", unit="1", aggregation="count",
                     resolutions=list(range(max(0, res - 4), res + 1)), time_bucket="1h")
    up = rollup(v, spec)
    for r in spec.resolutions:
        assert _total(up, r) == n
    daily = aggregate(up, spec.aggregation, bucket_s=86400)
    for r in spec.resolutions:
        assert _total(daily, r) == n
    assert set(pc.unique(daily["t"]).to_pylist()) <= {datetime(2024, 6, d, tzinfo=UTC) for d in range(1, 7)}


@settings(max_examples=25, deadline=None)
@given(res=st.integers(5, 13), seed=st.integers(0, 2**31), eps=st.sampled_from([0.0, 1e-12, 1e-9, 1e-7]))
def test_points_on_and_near_hexagon_vertices_land_in_exactly_one_cell(res: int, seed: int, eps: float) -> None:
    rng = np.random.default_rng(seed)
    centre = h3.latlng_to_cell(39.9 + rng.uniform(-0.05, 0.05), 116.4 + rng.uniform(-0.05, 0.05), res)
    verts = np.array([v for c in h3.grid_disk(centre, 1) for v in h3.cell_to_boundary(c)])  # shared vertices repeat
    lat = np.concatenate([verts[:, 0], verts[:, 0] + eps, verts[:, 0] - eps])
    lng = np.concatenate([verts[:, 1], verts[:, 1] - eps, verts[:, 1] + eps])
    v = point_values(lng, lat, "EPSG:4326", res)
    assert _total(v) == len(lat)
    expected = pd.Series([h3.str_to_int(h3.latlng_to_cell(a, b, res)) for a, b in zip(lat, lng, strict=True)])
    got = dict(zip(v["cell"].to_pylist(), v["value"].to_pylist(), strict=True))
    assert got == {int(k): float(c) for k, c in expected.value_counts().items()}
    # the same positions given in the projected CRS (round trip through pyproj) are conserved too
    px, py = transform_xy(lng, lat, "EPSG:4326", CRS)
    assert _total(point_values(px, py, CRS, res)) == len(lat)


def test_statistics_match_a_groupby() -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    x, y = X0 + rng.uniform(0, 3_000, n), Y0 + rng.uniform(0, 3_000, n)
    vals = rng.normal(20, 5, n)
    vals[::97] = np.nan  # no value: left out of the statistics
    df = pd.DataFrame({"cell": xy_to_cells(x, y, CRS, 9), "v": vals}).dropna()
    g = df.groupby("cell")["v"]
    for stat, ref in (("sum", g.sum()), ("mean", g.mean()), ("max", g.max()), ("min", g.min())):
        t = point_values(x, y, CRS, 9, values=vals, stat=stat)
        got = pd.Series(t["value"].to_numpy(), index=t["cell"].to_numpy())
        pd.testing.assert_series_equal(got.sort_index(), ref.sort_index().astype(float), check_names=False,
                                       check_index_type=False)
        assert int(pc.sum(t["count"]).as_py()) == len(df)
    # count-weighted means roll up to the overall mean
    spec = LayerSpec(name="m", variable="v", unit="1", aggregation="mean", resolutions=[5, 9])
    top = rollup(point_values(x, y, CRS, 9, values=vals, stat="mean"), spec)
    coarse = top.filter(pc.equal(top["res"], 5))
    w = coarse["count"].to_numpy()
    assert np.isclose((coarse["value"].to_numpy() * w).sum() / w.sum(), np.nanmean(vals))


def test_stat_needs_values_and_a_known_name() -> None:
    with pytest.raises(ValueError, match="needs values"):
        point_values(np.array([X0]), np.array([Y0]), CRS, 9, stat="mean")
    with pytest.raises(ValueError, match="unknown stat"):
        point_values(np.array([X0]), np.array([Y0]), CRS, 9, values=np.array([1.0]), stat="median")  # type: ignore[arg-type]


def test_lidar_point_counts_stream_every_point() -> None:
    from twin.sources.pointcloud import iter_points

    laz = shared_data("lidar") / "autzen_trim" / "autzen_trim.laz"
    classes = np.concatenate([p["classification"] for p in iter_points(laz)])
    v = lidar_point_counts(laz, 12, chunk=25_000)
    assert _total(v) == len(classes) == 110_000
    assert v["res"].to_pylist() == [12] * v.num_rows and len(set(v["cell"].to_pylist())) == v.num_rows
    ground = lidar_point_counts(laz, 12, classes={2})
    assert _total(ground) == int((classes == 2).sum()) > 0
