"""Face triangulation: area and orientation preserved for convex, concave and holed faces in any plane; the batched
path agrees with the one-face path."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from twin.tiles.triangulate import newell, triangulate_face, triangulate_faces


def _vector_area(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    a, b, c = p[t[:, 0]], p[t[:, 1]], p[t[:, 2]]
    return np.cross(b - a, c - a).sum(axis=0) / 2


def _star(rng: np.random.Generator, n: int, r0: float, r1: float, centre=(0.0, 0.0)) -> np.ndarray:
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(r0, r1, n)
    return np.c_[centre[0] + rad * np.cos(ang), centre[1] + rad * np.sin(ang)]


def _frame(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("seed", range(12))
def test_random_faces_keep_their_area_and_face_their_normal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shell = _star(rng, int(rng.integers(3, 14)), 6, 10)
    holes = [_star(rng, 5, 0.5, 1.5, (0.0, 0.0))] if seed % 3 == 0 else []
    poly = shapely.Polygon(shell, [h[::-1] for h in holes])
    assert poly.is_valid  # stars with sorted angles around their centre never self-intersect
    rings = [shell] + [h[::-1] for h in holes]
    flat = np.concatenate(rings)
    rot, origin = _frame(rng), rng.uniform(-1e5, 1e5, 3)
    pts = np.c_[flat, np.zeros(len(flat))] @ rot.T + origin  # the polygon in a random plane, far from the origin
    sizes = [len(r) for r in rings]
    for tris in (triangulate_face(pts, sizes), triangulate_faces(pts, [list(range(len(pts)))], [sizes])[0]):
        area = _vector_area(pts - origin, tris)
        normal = newell(pts[:sizes[0]] - origin)
        assert np.linalg.norm(area) == pytest.approx(poly.area, rel=1e-9)
        assert np.dot(area, normal) > 0  # same side as the ring's own orientation
        each = np.cross(pts[tris[:, 1]] - pts[tris[:, 0]], pts[tris[:, 2]] - pts[tris[:, 0]])
        assert (each @ normal > 0).all()  # every triangle, not just the sum


def test_degenerate_faces_give_no_triangles() -> None:
    line = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]], float)
    assert len(triangulate_face(line)) == 0
    assert [len(t) for t in triangulate_faces(line, [[0, 1, 2], [0, 1]], [[3], [2]])] == [0, 0]
