"""Polygon layers: exact overlays conserve area and attribute totals; fractions, counts and building sums."""

from __future__ import annotations

import h3
import numpy as np
import pyarrow.compute as pc
import pytest
import shapely
import shapely.affinity
from hypothesis import given, settings
from hypothesis import strategies as st

from data_models import LayerSpec
from twin.layers.polygons import (
    area_fraction,
    area_values,
    building_values,
    cell_polygons,
    count_values,
    geometries,
    overlay,
    sum_values,
)
from twin.layers.values import rollup

CRS = "EPSG:4548"
X0, Y0 = 448_000.0, 4_428_000.0


def _polys(seed: int, n: int, span: float, size: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, y = X0 + rng.uniform(0, span, n), Y0 + rng.uniform(0, span, n)
    boxes = shapely.box(x, y, x + rng.uniform(1, size, n), y + rng.uniform(1, size, n))
    boxes[0] = shapely.affinity.rotate(boxes[0], 17.0)  # one not axis-aligned
    return boxes


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 40), res=st.integers(7, 12),
       size=st.sampled_from([2.0, 50.0, 800.0]))
def test_intersection_areas_of_each_polygon_sum_to_its_area(seed: int, n: int, res: int, size: float) -> None:
    geoms = _polys(seed, n, 1_500.0, size)
    pi, cells, area, cell_area = overlay(geoms, CRS, res)
    assert np.allclose(np.bincount(pi, area, n), shapely.area(geoms), rtol=1e-9, atol=1e-6)
    assert (area <= cell_area * (1 + 1e-9)).all()
    values = np.random.default_rng(seed).uniform(0, 100, n)
    s = sum_values(geoms, values, CRS, res)
    assert np.isclose(pc.sum(s["value"]).as_py(), values.sum(), rtol=1e-12)
    spec = LayerSpec(name="s", variable="v", unit="1", aggregation="sum", resolutions=[max(0, res - 3), res])
    up = rollup(s, spec)
    coarse = up.filter(pc.equal(up["res"], spec.resolutions[0]))
    assert np.isclose(pc.sum(coarse["value"]).as_py(), values.sum(), rtol=1e-12)
    c = count_values(geoms, CRS, res)
    assert pc.sum(c["value"]).as_py() == n


def test_large_polygon_with_hole_is_covered_exactly() -> None:
    ring = shapely.Point(X0, Y0).buffer(1_500).difference(shapely.Point(X0, Y0).buffer(400))
    for res in (8, 10, 11):
        pi, cells, area, _ = overlay(np.array([ring]), CRS, res)
        assert np.isclose(area.sum(), ring.area, rtol=1e-9)
        assert len(np.unique(cells)) == len(cells)


def test_area_fraction_dissolves_overlaps_and_adds_domain_zeros() -> None:
    hexes = cell_polygons(np.array([h3.str_to_int(h3.latlng_to_cell(40.0, 116.4, 9))], np.uint64), CRS)
    cell = hexes[0]
    half = shapely.clip_by_rect(cell, *cell.bounds[:2], cell.centroid.x, cell.bounds[3])
    geoms = np.array([half, half, shapely.buffer(half, -1.0)], dtype=object)  # overlapping copies count once
    parent = h3.cell_to_parent(h3.latlng_to_cell(40.0, 116.4, 9), 8)
    domain = np.array([h3.str_to_int(c) for c in h3.cell_to_children(parent, 9)], np.uint64)
    f = area_fraction(geoms, CRS, 9, cells=domain)
    got = dict(zip(f["cell"].to_pylist(), f["value"].to_pylist(), strict=True))
    me = h3.str_to_int(h3.latlng_to_cell(40.0, 116.4, 9))
    assert got[me] == pytest.approx(half.area / cell.area, rel=1e-9)
    assert set(domain.tolist()) <= set(got) and all(v == 0.0 for c, v in got.items() if c != me)
    spec = LayerSpec(name="g", variable="green", unit="1", aggregation="area_weighted_mean", resolutions=[8, 9])
    up = rollup(f, spec)
    p = up.filter(pc.equal(up["res"], 8))
    assert p["value"][0].as_py() == pytest.approx(half.area / shapely.area(cell_polygons(domain, CRS)).sum(),
                                                  rel=1e-9)


def test_building_values_from_store_features() -> None:
    from tests.conftest import make_buildings

    blds = make_buildings(200)
    feats = [b.model_dump(mode="json") for b in blds]
    geoms = geometries(feats)
    height = np.array([b.height for b in blds])
    storeys = np.round(height / 3.0)
    out = building_values(geoms, CRS, 11, height=height, storeys=storeys)
    area = shapely.area(geoms)
    assert pc.sum(out["count"]["value"]).as_py() == 200
    assert np.isclose(pc.sum(out["footprint_area"]["value"]).as_py(), area.sum(), rtol=1e-9)
    assert np.isclose(pc.sum(out["volume"]["value"]).as_py(), (area * height).sum(), rtol=1e-9)
    assert np.isclose(pc.sum(out["floor_area"]["value"]).as_py(), (area * storeys).sum(), rtol=1e-9)
    assert np.isclose(pc.sum(area_values(geoms, CRS, 9)["value"]).as_py(), area.sum(), rtol=1e-9)


def test_geographic_crs_is_refused() -> None:
    with pytest.raises(ValueError, match="projected CRS"):
        overlay(np.array([shapely.box(116.0, 40.0, 116.001, 40.001)]), "EPSG:4326", 9)
