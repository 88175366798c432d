"""Spatial queries agree with a brute-force shapely reference, at every version."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from data_models import Building
from twin.store import Query, Store, StoreError

X0, Y0 = 448_000.0, 4_428_000.0


def _city(store: Store) -> dict[str, shapely.Geometry]:
    rng = np.random.default_rng(3)
    objs, geoms = [], {}
    for i in range(400):
        x, y = X0 + rng.uniform(0, 1000), Y0 + rng.uniform(0, 1000)
        g = shapely.Polygon([(x, y), (x + rng.uniform(5, 40), y), (x + 10, y + rng.uniform(5, 40))])
        objs.append(Building(id=f"b{i:04d}", geometry=shapely.geometry.mapping(g)))
        geoms[f"b{i:04d}"] = g
    store.commit(objs, message="city")
    return geoms


def test_bbox_and_polygon_queries_match_shapely(store: Store) -> None:
    geoms = _city(store)
    # move some buildings far away in version 2: as-of 1 must still find them at the old place
    moved = {k: shapely.affinity.translate(g, 5000, 0) for k, g in list(geoms.items())[:50]}
    store.commit([Building(id=k, geometry=shapely.geometry.mapping(g)) for k, g in moved.items()], message="move")
    now = {**geoms, **moved}
    rng = np.random.default_rng(9)
    for _ in range(15):
        x, y = X0 + rng.uniform(-50, 900), Y0 + rng.uniform(-50, 900)
        w, h = rng.uniform(10, 400), rng.uniform(10, 400)
        box = shapely.box(x, y, x + w, y + h)
        got = {f["id"] for f in store.features(query=Query(bbox=[x, y, x + w, y + h]))}
        assert got == {k for k, g in now.items() if g.intersects(box)}
        got1 = {f["id"] for f in store.features(as_of=1, query=Query(bbox=[x, y, x + w, y + h]))}
        assert got1 == {k for k, g in geoms.items() if g.intersects(box)}
        tri = shapely.Polygon([(x, y), (x + w, y), (x, y + h)])
        got = {f["id"] for f in store.features(query=Query(polygon=tri))}
        assert got == {k for k, g in now.items() if g.intersects(tri)}


@settings(max_examples=25, deadline=None)
@given(offset=st.integers(0, 399), limit=st.integers(1, 120))
def test_paging_returns_each_entity_once(tmp_path_factory, offset: int, limit: int) -> None:
    store = _paging_store(tmp_path_factory)
    ids = [f["id"] for f in store.features(query=Query(limit=limit, offset=offset))]
    assert ids == sorted(ids)
    assert ids == [f"b{i:04d}" for i in range(offset, min(offset + limit, 400))]


_PAGING: dict[str, Store] = {}


def _paging_store(factory) -> Store:
    if "s" not in _PAGING:
        s = Store.init(factory.mktemp("paging") / "store")
        _city(s)
        _PAGING["s"] = s
    return _PAGING["s"]


def test_property_filters_compare_nested_quality_values(store: Store) -> None:
    objs = [Building(id=f"q{i}", geometry=shapely.geometry.mapping(shapely.box(i * 20, 0, i * 20 + 10, 10)),
                     use="office" if i % 2 else "residential",
                     quality={"rmse": {"1.2": 0.2 * i}, "point_density": 10 + i, "valid": i != 3})
            for i in range(8)]
    store.commit(objs, message="quality")
    ids = lambda *f, **w: [x["id"] for x in store.features(query=Query(filters=f, where=w or None))]  # noqa: E731
    assert ids((("quality", "rmse", "1.2"), ">", 1.0)) == ["q6", "q7"]
    assert ids(("quality.point_density", "<=", 11)) == ["q0", "q1"]
    assert ids(("quality.valid", "=", False)) == ["q3"]
    assert ids(("use", "=", "office"), (("quality", "rmse", "1.2"), ">=", 1.0)) == ["q5", "q7"]
    assert ids(use="residential") == ["q0", "q2", "q4", "q6"]
    with pytest.raises(StoreError, match="bad comparison"):
        Query(filters=[("use", "LIKE", "x")])
    with pytest.raises(StoreError, match="bad property path"):
        Query(filters=[("use'; DROP", "=", "x")])
