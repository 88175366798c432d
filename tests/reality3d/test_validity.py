"""Validity checks of solids (val3dity-style codes) and solid volumes."""

from __future__ import annotations

import pytest
import shapely

from data_models import Solid
from twin.reality3d.lod1 import composite_solid
from twin.reality3d.validity import solid_volume, validate_solid


def _box() -> Solid:
    return Solid.extrude(shapely.box(0, 0, 10, 5), 1.0, 4.0)


def _codes(errors: list[str]) -> set[str]:
    return {e.split()[0] for e in errors}


@pytest.mark.parametrize("poly", [
    shapely.box(0, 0, 10, 5),
    shapely.Polygon([(0, 0), (20, 0), (20, 5), (5, 5), (5, 15), (0, 15)]),  # L shape
    shapely.box(0, 0, 20, 20).difference(shapely.box(5, 5, 15, 15)),  # courtyard (hole)
    shapely.Polygon([(448000.1, 4418000.2), (448030.7, 4418001.0), (448028.0, 4418022.4), (448001.0, 4418020.0)]),
])
def test_extrusions_are_valid_with_the_right_volume(poly: shapely.Polygon) -> None:
    s = Solid.extrude(poly, 10.0, 16.5)
    ok, errors = validate_solid(s)
    assert ok, errors
    assert solid_volume(s) == pytest.approx(poly.area * 6.5, rel=1e-9)


def test_missing_face_is_not_closed() -> None:
    s = _box()
    broken = Solid(vertices=s.vertices, boundaries=[s.boundaries[0][:-1]])
    ok, errors = validate_solid(broken)
    assert not ok and "302" in _codes(errors)


def test_flipped_face_is_wrongly_oriented() -> None:
    s = _box()
    faces = [list(f) for f in s.boundaries[0]]
    faces[3] = [list(reversed(faces[3][0]))]
    ok, errors = validate_solid(Solid(vertices=s.vertices, boundaries=[faces]))
    assert not ok and "307" in _codes(errors)


def test_inside_out_solid_has_all_polygons_wrongly_oriented() -> None:
    s = _box()
    faces = [[list(reversed(r)) for r in f] for f in s.boundaries[0]]
    ok, errors = validate_solid(Solid(vertices=s.vertices, boundaries=[faces]))
    assert not ok and _codes(errors) == {"308"}


def test_non_planar_face() -> None:
    s = _box()
    vertices = [list(v) for v in s.vertices]
    roof_vertex = s.boundaries[0][1][0][0]
    vertices[roof_vertex][2] += 0.5
    ok, errors = validate_solid(Solid(vertices=vertices, boundaries=s.boundaries))
    assert not ok and "203" in _codes(errors)
    assert any("face 1" in e for e in errors if e.startswith("203"))


def test_zero_area_and_repeated_vertices() -> None:
    s = _box()
    faces = [list(f) for f in s.boundaries[0]]
    g = faces[0][0]
    faces[0] = [[g[0], g[0], *g[1:]]]
    ok, errors = validate_solid(Solid(vertices=s.vertices, boundaries=[faces]))
    assert not ok and "102" in _codes(errors)
    flat = Solid(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0]],
                 boundaries=[[[[0, 1, 2]], [[0, 1, 3]], [[1, 2, 3]], [[0, 3, 2]]]])
    ok, errors = validate_solid(flat)
    assert not ok and "104" in _codes(errors)


def test_composite_solid_of_parts_is_closed_and_sums_volumes() -> None:
    base = shapely.box(0, 0, 30, 20)
    tower = shapely.box(10, 5, 20, 15)
    wing = shapely.box(20, 0, 30, 20)
    podium = base.difference(tower).difference(wing)
    parts = [(podium, 8.0), (tower, 40.0), (wing, 12.0)]
    s = composite_solid(parts, 2.0)
    ok, errors = validate_solid(s)
    assert ok, errors
    expected = podium.area * 6 + tower.area * 38 + wing.area * 10
    assert solid_volume(s) == pytest.approx(expected, rel=1e-9)
    # a part whose neighbours meet at a vertex inside another's edge (T-junction) stays closed
    t = composite_solid([(shapely.box(0, 0, 10, 10), 5.0), (shapely.box(10, 0, 15, 5), 9.0),
                         (shapely.box(10, 5, 15, 10), 3.0)], 0.0)
    ok, errors = validate_solid(t)
    assert ok, errors
    assert solid_volume(t) == pytest.approx(100 * 5 + 25 * 9 + 25 * 3)
