"""Exactness of twin's fast bulk H3 indexing against h3-py, and the cell helpers."""

from __future__ import annotations

import h3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.layers import h3index
from twin.layers.h3index import (
    aggregate_points,
    cell_boundaries,
    cell_centers,
    cells_to_parent,
    estimate_polygon_cells,
    latlng_to_cells,
    polygon_cells,
)


def ref(lat: np.ndarray, lng: np.ndarray, res: int) -> np.ndarray:
    """h3-py's own cells, one call per point."""
    f = h3.latlng_to_cell
    return np.array([h3.str_to_int(f(a, b, res)) for a, b in zip(lat.tolist(), lng.tolist(), strict=True)],
                    dtype=np.uint64)


def city(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A Beijing-like cloud: clustered hot spots plus uniform background over 10 x 10 km."""
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 20, n)
    ca, cn = rng.uniform(-0.04, 0.04, 20), rng.uniform(-0.05, 0.05, 20)
    lat = 39.9 + ca[k] + rng.normal(0, 0.004, n)
    lng = 116.4 + cn[k] + rng.normal(0, 0.005, n)
    bg = rng.random(n) < 0.3
    lat[bg] = 39.9 + rng.uniform(-0.045, 0.045, int(bg.sum()))
    lng[bg] = 116.4 + rng.uniform(-0.06, 0.06, int(bg.sum()))
    return lat, lng


@pytest.mark.parametrize("res", [9, 11])
def test_city_cloud_identical_to_h3(res: int) -> None:
    lat, lng = city(1_000_000 if res == 9 else 400_000)
    got = latlng_to_cells(lat, lng, res)
    assert h3index.LAST_STATS["table"] > 0  # the fast path was used
    assert np.array_equal(got, ref(lat, lng, res))


def test_points_on_cell_edges_and_vertices() -> None:
    """Points on and within 1e-9 degrees of cell vertices and edge midpoints are assigned exactly like h3."""
    rng = np.random.default_rng(5)
    base = latlng_to_cells(*city(5000, 3), 9)
    lat, lng = [], []
    for c in np.unique(base)[:300].tolist():
        b = h3.cell_to_boundary(h3.int_to_str(c))
        for (a1, n1), (a2, n2) in zip(b, b[1:] + b[:1], strict=True):
            for t in (0.0, 0.5, 0.25):
                lat.append(a1 + t * (a2 - a1))
                lng.append(n1 + t * (n2 - n1))
    lat = np.repeat(np.array(lat), 4) + rng.choice([0.0, 1e-9, -1e-9, 1e-12], 4 * len(lat))
    lng = np.repeat(np.array(lng), 4) + rng.choice([0.0, 1e-9, -1e-9, 1e-12], 4 * len(lng))
    # add a background so the fast path (not only the exact loop) handles them
    blat, blng = city(20_000, 4)
    lat, lng = np.concatenate([lat, blat]), np.concatenate([lng, blng])
    assert np.array_equal(latlng_to_cells(lat, lng, 9), ref(lat, lng, 9))


@settings(max_examples=40, deadline=None)
@given(lat0=st.floats(-89.9, 89.9), lng0=st.floats(-180, 180), span=st.sampled_from([1e-4, 0.01, 0.3, 5.0]),
       res=st.integers(0, 15), seed=st.integers(0, 2**31))
def test_hypothesis_regions_identical(lat0: float, lng0: float, span: float, res: int, seed: int) -> None:
    """Anywhere on Earth (poles, antimeridian, pentagons, face edges) and any resolution: identical to h3."""
    rng = np.random.default_rng(seed)
    n = 5000
    lat = np.clip(lat0 + rng.uniform(-span, span, n), -90, 90)
    lng = lng0 + rng.uniform(-span, span, n)
    lng = np.where(lng > 180, lng - 360, np.where(lng < -180, lng + 360, lng))
    assert np.array_equal(latlng_to_cells(lat, lng, res), ref(lat, lng, res))


def test_pentagon_face_edge_and_antimeridian_regions() -> None:
    rng = np.random.default_rng(9)
    spots = [h3.cell_to_latlng(p) for p in h3.get_pentagons(0)[:4]] + [(0.0, 179.999), (0.0, -179.999),
                                                                        (89.5, 10.0), (-89.5, 10.0)]
    for la, ln in spots:
        lat = np.clip(la + rng.uniform(-0.05, 0.05, 20_000), -90, 90)
        lng = ln + rng.uniform(-0.05, 0.05, 20_000)
        lng = np.where(lng > 180, lng - 360, np.where(lng < -180, lng + 360, lng))
        for res in (5, 9, 10):
            assert np.array_equal(latlng_to_cells(lat, lng, res), ref(lat, lng, res))


def test_nan_and_shapes() -> None:
    lat = np.array([39.9, np.nan, 40.0])
    lng = np.array([116.4, 116.4, np.inf])
    got = latlng_to_cells(lat, lng, 9)
    assert got[1] == 0 and got[2] == 0 and got[0] == h3.str_to_int(h3.latlng_to_cell(39.9, 116.4, 9))
    assert latlng_to_cells(np.zeros(0), np.zeros(0), 9).shape == (0,)
    with pytest.raises(ValueError):
        latlng_to_cells(lat, lng, 16)


def test_cells_to_parent_matches_h3() -> None:
    lat, lng = city(3000, 1)
    for res in (15, 11, 9):
        cells = latlng_to_cells(lat, lng, res)
        for p in range(0, res + 1):
            want = np.array([h3.str_to_int(h3.cell_to_parent(h3.int_to_str(c), p)) for c in cells.tolist()],
                            dtype=np.uint64)
            assert np.array_equal(cells_to_parent(cells, p), want)
    pent = np.array([h3.str_to_int(h3.cell_to_center_child(h3.get_pentagons(3)[0], 8))], dtype=np.uint64)
    assert cells_to_parent(pent, 3)[0] == h3.str_to_int(h3.get_pentagons(3)[0])
    assert cells_to_parent(np.array([0], np.uint64), 3)[0] == 0
    with pytest.raises(ValueError):
        cells_to_parent(latlng_to_cells(lat[:3], lng[:3], 7), 9)


def test_centers_and_boundaries() -> None:
    c = h3.latlng_to_cell(39.9, 116.4, 9)
    ci = np.array([h3.str_to_int(c)] * 3, dtype=np.uint64)
    la, ln = cell_centers(ci)
    assert (la[0], ln[0]) == h3.cell_to_latlng(c) and la.shape == (3,)
    poly = cell_boundaries([int(ci[0])])[0]
    ring = poly["coordinates"][0]
    assert poly["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 7
    assert ring[0] == [h3.cell_to_boundary(c)[0][1], h3.cell_to_boundary(c)[0][0]]


def test_polygon_cells_and_limit() -> None:
    sq = {"type": "Polygon", "coordinates": [[[116.38, 39.88], [116.42, 39.88], [116.42, 39.92], [116.38, 39.92],
                                              [116.38, 39.88]]]}
    cells = polygon_cells(sq, 9)
    want = {h3.str_to_int(x) for x in h3.geo_to_cells(sq, 9)}
    assert set(cells.tolist()) == want
    est = estimate_polygon_cells(sq, 9)
    assert 0.8 < est / len(cells) < 1.25
    huge = {"type": "Polygon", "coordinates": [[[70, 10], [140, 10], [140, 55], [70, 55], [70, 10]]]}
    with pytest.raises(ValueError, match="max_cells=1,000"):
        polygon_cells(huge, 12, max_cells=1000)  # refused from the area estimate, without calling h3


def test_aggregate_points_counts_and_means() -> None:
    lat, lng = city(50_000, 2)
    rng = np.random.default_rng(1)
    t = rng.integers(0, 5 * 3600 * 1_000_000, len(lat)).astype(np.int64)
    v = rng.normal(size=len(lat))
    tb = aggregate_points(lat, lng, t, v, 9, 3600)
    assert int(np.sum(tb["count"].to_numpy())) == len(lat)
    cells = ref(lat, lng, 9)
    sel = (cells == cells[0]) & (t // 3_600_000_000 == t[0] // 3_600_000_000)
    row = [i for i, (c, tt) in enumerate(zip(tb["cell"].to_pylist(), tb["t_us"].to_pylist(), strict=True))
           if c == int(cells[0]) and tt == (t[0] // 3_600_000_000) * 3_600_000_000][0]
    assert tb["count"][row].as_py() == int(sel.sum())
    assert tb["mean"][row].as_py() == pytest.approx(float(v[sel].mean()))
