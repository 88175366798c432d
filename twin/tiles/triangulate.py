"""Triangulation of planar 3D polygons with holes (CityJSON surfaces) into triangles facing the surface's normal.

A face is projected onto the coordinate plane its normal is most aligned with (dropping one axis copies
coordinates exactly, so triangle corners map back to the input vertices bit for bit). Convex holeless faces — most
walls and many roofs — are fanned; the rest go through GEOS' constrained Delaunay triangulation (shapely ≥ 2.1),
which adds no Steiner points and honours holes. Triangles are then turned to agree with the face's Newell normal,
so a solid whose rings are oriented outwards (CityJSON's rule) yields outward-facing triangles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely

# kept axes per dropped axis, in cyclic order so a 2D signed area has the sign of the normal's dropped component
_KEEP = {0: (1, 2), 1: (2, 0), 2: (0, 1)}
_EMPTY = np.zeros((0, 3), dtype=np.int64)


def newell(points: np.ndarray) -> np.ndarray:
    """Newell's normal of a closed ring (N×3): its length is twice the ring's area; robust for non-convex rings."""
    p = np.asarray(points, dtype=np.float64)
    q = np.roll(p, -1, axis=0)
    return np.array([
        np.sum((p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2])),
        np.sum((p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0])),
        np.sum((p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1])),
    ])


def _signed_areas(xy: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a, b, c = xy[tris[:, 0]], xy[tris[:, 1]], xy[tris[:, 2]]
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


def _is_convex(xy: np.ndarray) -> bool:
    d1 = np.roll(xy, -1, axis=0) - xy
    d2 = np.roll(d1, -1, axis=0)
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    return bool(np.all(cross >= 0) or np.all(cross <= 0))


def _cdt(xy: np.ndarray, ring_sizes: Sequence[int]) -> np.ndarray:
    """Constrained Delaunay triangles of a polygon with holes, as indices into ``xy``."""
    bounds = np.cumsum([0, *ring_sizes])
    rings = [xy[bounds[i]:bounds[i + 1]] for i in range(len(ring_sizes))]
    poly = shapely.Polygon(rings[0], rings[1:])
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
    out = shapely.constrained_delaunay_triangles(poly)
    coords = shapely.get_coordinates(shapely.get_parts(out))
    if len(coords) == 0:
        return _EMPTY
    # every triangle is a closed ring of 4 coordinates; corners are input coordinates (no Steiner points)
    corners = coords.reshape(-1, 4, 2)[:, :3].reshape(-1, 2)
    index = {(float(x), float(y)): i for i, (x, y) in enumerate(xy)}
    found = [index.get((float(x), float(y)), -1) for x, y in corners]
    idx = np.asarray(found, dtype=np.int64)
    if (idx < 0).any():  # a repaired polygon may move a corner: take the nearest input vertex
        miss = np.flatnonzero(idx < 0)
        d = np.linalg.norm(corners[miss, None, :] - xy[None, :, :], axis=2)
        idx[miss] = d.argmin(axis=1)
    return idx.reshape(-1, 3)


def triangulate_face(points: np.ndarray, ring_sizes: Sequence[int] | None = None) -> np.ndarray:
    """Triangles (K×3 indices into ``points``) of a planar polygon given as its rings' vertices concatenated
    (exterior first, then holes; rings open, i.e. not repeating their first vertex); empty when degenerate."""
    p = np.asarray(points, dtype=np.float64)
    sizes = list(ring_sizes) if ring_sizes is not None else [len(p)]
    n_ext = sizes[0]
    if n_ext < 3:
        return _EMPTY
    normal = newell(p[:n_ext] - p[0])
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < 1e-12:
        return _EMPTY
    xy = p[:, _KEEP[axis]]
    if len(sizes) == 1 and (n_ext == 3 or _is_convex(xy)):
        tris = np.stack([np.zeros(n_ext - 2, np.int64), np.arange(1, n_ext - 1), np.arange(2, n_ext)], axis=1)
    else:
        try:
            tris = _cdt(xy, sizes)
        except shapely.errors.GEOSException:
            tris = _EMPTY
    if len(tris) == 0:
        return _EMPTY
    area = _signed_areas(xy, tris)
    tris = tris[np.abs(area) > 0]
    flip = (area[np.abs(area) > 0] > 0) != (normal[axis] > 0)
    tris[flip] = tris[flip][:, ::-1]
    return tris


def triangulate_faces(verts: np.ndarray, faces: Sequence[np.ndarray], ring_sizes: Sequence[Sequence[int]]
                      ) -> list[np.ndarray]:
    """``triangulate_face`` for many faces at once: ``faces[i]`` are vertex ids (rings concatenated) into
    ``verts`` and ``ring_sizes[i]`` their ring lengths. Convex holeless faces are done in numpy batches by vertex
    count; the rest one by one. Returns face-local triangles per face (empty when degenerate)."""
    out: list[np.ndarray] = [_EMPTY] * len(faces)
    groups: dict[int, list[int]] = {}
    for i, sizes in enumerate(ring_sizes):
        if len(sizes) == 1 and sizes[0] >= 3:
            groups.setdefault(sizes[0], []).append(i)
        else:
            out[i] = triangulate_face(verts[faces[i]], sizes)
    for k, members in groups.items():
        ids = np.stack([faces[i] for i in members])
        p = verts[ids]  # F × k × 3
        p = p - p[:, :1]
        q = np.roll(p, -1, axis=1)
        n = np.stack([((p[..., 1] - q[..., 1]) * (p[..., 2] + q[..., 2])).sum(1),
                      ((p[..., 2] - q[..., 2]) * (p[..., 0] + q[..., 0])).sum(1),
                      ((p[..., 0] - q[..., 0]) * (p[..., 1] + q[..., 1])).sum(1)], axis=1)
        axis = np.abs(n).argmax(axis=1)
        keep = np.array([_KEEP[0], _KEEP[1], _KEEP[2]])[axis]  # F × 2
        xy = np.take_along_axis(p, np.broadcast_to(keep[:, None, :], (len(members), k, 2)), axis=2)
        d1 = np.roll(xy, -1, axis=1) - xy
        d2 = np.roll(d1, -1, axis=1)
        cross = d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]
        convex = (cross >= 0).all(1) | (cross <= 0).all(1)
        sign = np.take_along_axis(n, axis[:, None], axis=1)[:, 0]
        fan = np.stack([np.zeros(k - 2, np.int64), np.arange(1, k - 1), np.arange(2, k)], axis=1)  # (k-2) × 3
        a, b, c = xy[:, fan[:, 0]], xy[:, fan[:, 1]], xy[:, fan[:, 2]]
        area = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])
        flip = (area > 0) != (sign[:, None] > 0)
        for j, i in enumerate(members):
            if abs(sign[j]) < 1e-12:
                continue
            if not convex[j]:
                out[i] = triangulate_face(verts[faces[i]], ring_sizes[i])
                continue
            ok = area[j] != 0
            t = np.where(flip[j][:, None], fan[:, ::-1], fan)
            out[i] = t[ok]
    return out
