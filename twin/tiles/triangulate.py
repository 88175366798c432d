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


def triangulate_faces(verts: np.ndarray, faces: Sequence[Sequence[int]], ring_sizes: Sequence[Sequence[int]]
                      ) -> list[np.ndarray]:
    """``triangulate_face`` for many faces at once: ``faces[i]`` are vertex ids (rings concatenated) into
    ``verts`` and ``ring_sizes[i]`` their ring lengths. Convex holeless faces are fanned in numpy batches by vertex
    count; the others (concave, with holes) go through one vectorised GEOS call. Returns face-local triangles per
    face (empty when degenerate)."""
    out: list[np.ndarray] = [_EMPTY] * len(faces)
    groups: dict[int, list[int]] = {}
    slow: list[int] = []
    for i, sizes in enumerate(ring_sizes):
        if len(sizes) == 1 and sizes[0] >= 3:
            groups.setdefault(sizes[0], []).append(i)
        elif sizes and sizes[0] >= 3:
            slow.append(i)
    for k, members in groups.items():
        ids = np.array([faces[i] for i in members], dtype=np.int64)
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
        ok_face = np.abs(sign) >= 1e-12
        tris = np.where(flip[..., None], fan[None, :, ::-1], fan[None])  # F × (k-2) × 3
        full = (area != 0).all(axis=1)
        for j, i in enumerate(members):
            if not ok_face[j]:
                continue
            if not convex[j]:
                slow.append(i)
            else:
                out[i] = tris[j] if full[j] else tris[j][area[j] != 0]
    if slow:
        for i, t in zip(slow, _cdt_many(verts, [faces[i] for i in slow], [ring_sizes[i] for i in slow]),
                        strict=True):
            out[i] = t
    return out


def _cdt_many(verts: np.ndarray, faces: list[Sequence[int]], ring_sizes: list[Sequence[int]]) -> list[np.ndarray]:
    """Constrained Delaunay triangles of many planar faces in one GEOS call, mapped back to face-local indices by
    exact coordinate lookup (dropping an axis copies coordinates, and GEOS adds no Steiner points)."""
    n_faces = len(faces)
    out: list[np.ndarray] = [_EMPTY] * n_faces
    faces = [np.asarray(f, dtype=np.int64) for f in faces]
    ext = np.array([s[0] for s in ring_sizes])
    ext_ids = np.concatenate([f[:k] for f, k in zip(faces, ext, strict=True)])
    first = np.concatenate([[0], np.cumsum(ext)[:-1]])
    p = verts[ext_ids] - np.repeat(verts[ext_ids[first]], ext, axis=0)
    nxt = np.arange(len(ext_ids)) + 1
    nxt[np.cumsum(ext) - 1] = first
    q = p[nxt]
    contrib = np.stack([(p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2]), (p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0]),
                        (p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1])], axis=1)
    normals = np.add.reduceat(contrib, first, axis=0)  # Newell normals of the exterior rings
    axis = np.abs(normals).argmax(axis=1)
    sign = normals[np.arange(n_faces), axis]
    polys, xys, owners = [], [], []
    for i, (f, sizes) in enumerate(zip(faces, ring_sizes, strict=True)):
        if abs(sign[i]) < 1e-12:
            continue
        xy = verts[f][:, _KEEP[int(axis[i])]]
        if len(sizes) == 1:
            polys.append(shapely.Polygon(xy))
        else:
            bounds = np.cumsum([0, *sizes])
            polys.append(shapely.Polygon(xy[:sizes[0]], [xy[bounds[r]:bounds[r + 1]] for r in range(1, len(sizes))]))
        xys.append(xy)
        owners.append(i)
    if not polys:
        return out
    geoms = np.array(polys, dtype=object)
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms[bad] = shapely.make_valid(geoms[bad])
    try:
        tri = shapely.constrained_delaunay_triangles(geoms)
    except shapely.errors.GEOSException:  # one broken face: fall back to one call each
        return [triangulate_face(verts[f], s) for f, s in zip(faces, ring_sizes, strict=True)]
    parts, which = shapely.get_parts(tri, return_index=True)
    coords = shapely.get_coordinates(parts)
    if not len(coords):
        return out
    corners = coords.reshape(-1, 4, 2)[:, :3].reshape(-1, 2)
    corner_face = np.repeat(which, 3)
    # exact lookup of (face, x, y) among the faces' own vertices
    key = np.dtype([("f", "<i8"), ("x", "<f8"), ("y", "<f8")])
    counts = [len(x) for x in xys]
    table = np.empty(sum(counts), dtype=key)
    table["f"] = np.repeat(np.arange(len(xys)), counts)
    allxy = np.concatenate(xys)
    table["x"], table["y"] = allxy[:, 0], allxy[:, 1]
    local = np.concatenate([np.arange(c) for c in counts])
    order = np.argsort(table, order=("f", "x", "y"))
    query = np.empty(len(corners), dtype=key)
    query["f"], query["x"], query["y"] = corner_face, corners[:, 0], corners[:, 1]
    ordered = table[order]
    pos = np.clip(np.searchsorted(ordered, query), 0, len(order) - 1)
    found = ordered[pos] == query
    idx = local[order][pos]
    for m in np.flatnonzero(~found):  # a repaired polygon moved a corner: nearest vertex of that face
        f = corner_face[m]
        idx[m] = int(np.linalg.norm(xys[f] - corners[m], axis=1).argmin())
    tris = idx.reshape(-1, 3)
    # orientation, all triangles at once: the 2D signed area must have the sign of the normal's dropped component
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    g = tris + start[which][:, None]
    a, b, c = allxy[g[:, 0]], allxy[g[:, 1]], allxy[g[:, 2]]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    flip = (area > 0) != (sign[np.asarray(owners)][which] > 0)
    tris[flip] = tris[flip][:, ::-1]
    keep = area != 0
    tris, which = tris[keep], which[keep]
    bounds = np.searchsorted(which, np.arange(len(xys) + 1))
    for j, i in enumerate(owners):
        if bounds[j + 1] > bounds[j]:
            out[i] = tris[bounds[j]:bounds[j + 1]]
    return out
