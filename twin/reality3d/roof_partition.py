"""LoD2.2 for any footprint: a roof partition from the plane arrangement, and the solid over it.

1. The footprint is cut by the horizontal intersection line of every pair of detected roof planes (the lines where
   ridges, hips and valleys can lie) and by lines fitted along the height jumps between parallel planes (flat roofs
   on two levels): the cells of this arrangement are the candidate roof faces.
2. Each cell takes the plane most of its roof points belong to (cells without points: the plane of the nearest
   inlier point); neighbouring cells of one plane merge into one face.
3. The solid: every face is lifted onto its plane, the footprint is the ground, and walls close the shell along the
   footprint (down to the ground) and wherever two neighbouring faces are at different heights (step edges), with
   vertical edges split at every height met at a node, so the shell is watertight (:func:`planar_solid`).

A partition whose roof misses its own points by more than ``MAX_RMSE_M`` (e.g. flat roofs at two levels, which no
plane pair separates) is refused and the caller falls back to LoD1.3, as 3D BAG does for roofs it cannot model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from data_models import SemanticSurface, Solid, SolidSemantics
from twin.reality3d.roofs import RoofPlane

SNAP_M = 1e-3  # node snapping (same as LoD1.3's composite solids)
LEVEL_TOL_M = 5e-3  # heights of one node closer than this are one vertex (planes meeting on a ridge)
MIN_FACE_M2 = 0.5  # cells smaller than this join the neighbour they share the longest edge with
MAX_RMSE_M = 0.5
STEP_PAIR_M = 1.5  # points of two parallel planes closer than this lie on either side of a height jump
STEP_ANGLE_DEG = 25.0  # point pairs whose directions are this close cross the same straight jump
STEP_MIN_POINTS = 8
PARALLEL_SLOPE = 0.05  # planes whose gradients differ less than this meet too far away to cut the roof
Plane = tuple[float, float, float]  # z = a·x + b·y + c

__all__ = ["partition_roof", "planar_solid", "partition_rmse"]


def _cut_lines(planes: Sequence[RoofPlane], bounds: Sequence[float]) -> list[LineString]:
    """The pairwise plane intersection lines, clipped to a box around ``bounds``."""
    x0, y0, x1, y1 = bounds
    pad = 1.0 + max(x1 - x0, y1 - y0)
    box = shapely.box(x0 - pad, y0 - pad, x1 + pad, y1 + pad)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, 4 * pad
    lines = []
    for i in range(len(planes)):
        for j in range(i + 1, len(planes)):
            p, q = planes[i], planes[j]
            da, db, dc = p.a - q.a, p.b - q.b, p.c - q.c  # da·x + db·y + dc = 0
            n = np.hypot(da, db)
            if n < PARALLEL_SLOPE:
                continue  # (nearly) parallel planes meet far away or never: _step_lines separates them
            # the point of the line nearest the centre, and the line's direction
            t = -(da * cx + db * cy + dc) / (n * n)
            px, py = cx + t * da, cy + t * db
            dx, dy = -db / n, da / n
            line = shapely.intersection(LineString([(px - r * dx, py - r * dy), (px + r * dx, py + r * dy)]), box)
            if not line.is_empty:
                lines.append(line)
    return lines


def _cells(footprint: Polygon, lines: list[LineString]) -> list[Polygon]:
    """The footprint cut by the lines: polygonize the noded union of its boundary and the lines, keep the inside."""
    if not lines:
        return [footprint]
    noded = shapely.union_all([footprint.boundary, *[shapely.intersection(ln, footprint) for ln in lines]])
    polys = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    inside = [p for p in polys if p.area > 1e-6 and footprint.covers(p.representative_point())]
    return inside


def _step_lines(planes: Sequence[RoofPlane], x: np.ndarray, y: np.ndarray, bounds: Sequence[float],
                seed: int = 0) -> list[LineString]:
    """Lines along the height jumps between parallel planes (flat roofs on two levels never intersect).

    For each pair of parallel planes, the nearest point pairs across the jump (closer than ``STEP_PAIR_M``) are
    grouped by the direction from the one plane's point to the other's (one group per straight jump: a tower in a
    podium's corner gives two); each group's line is normal to that direction, halfway between the two sides'
    outermost points along it, so it separates them as a maximum-margin line would."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = bounds
    r = 2.0 * (1.0 + max(x1 - x0, y1 - y0))
    out: list[LineString] = []
    for i in range(len(planes)):
        for j in range(i + 1, len(planes)):
            p, q = planes[i], planes[j]
            if np.hypot(p.a - q.a, p.b - q.b) >= PARALLEL_SLOPE:
                continue  # not parallel: the arrangement cuts them already
            pi, qi = (rng.permutation(k.inliers)[:1500] for k in (p, q))
            d2 = (x[pi, None] - x[None, qi]) ** 2 + (y[pi, None] - y[None, qi]) ** 2
            near = np.argmin(d2, axis=1)
            close = d2[np.arange(len(pi)), near] < STEP_PAIR_M**2
            px, py = x[pi[close]], y[pi[close]]
            qx, qy = x[qi[near[close]]], y[qi[near[close]]]
            ang = np.arctan2(qy - py, qx - px)
            mx, my = (px + qx) / 2, (py + qy) / 2
            left = np.ones(len(ang), bool)
            for _ in range(4):
                if left.sum() < max(STEP_MIN_POINTS, 0.15 * len(ang)):
                    break
                hist, edges = np.histogram(ang[left], bins=36, range=(-np.pi, np.pi))
                peak = (edges[np.argmax(hist)] + edges[np.argmax(hist) + 1]) / 2
                group = left & (np.abs(np.angle(np.exp(1j * (ang - peak)))) < np.radians(STEP_ANGLE_DEG))
                if group.sum() < STEP_MIN_POINTS:
                    break
                # direction from the midpoints (total least squares), side from the pairs, offset max-margin
                m = np.column_stack([mx[group], my[group]])
                _, _, vt = np.linalg.svd(m - m.mean(axis=0), full_matrices=False)
                n = np.array([-vt[0][1], vt[0][0]])
                n *= np.sign(np.cos(ang[group]).mean() * n[0] + np.sin(ang[group]).mean() * n[1]) or 1.0
                tp = np.percentile(px[group] * n[0] + py[group] * n[1], 95)
                tq = np.percentile(qx[group] * n[0] + qy[group] * n[1], 5)
                c = n * (tp + tq) / 2
                d = np.array([-n[1], n[0]])
                out.append(LineString([c - r * d, c + r * d]))
                left &= np.abs(mx * n[0] + my * n[1] - (tp + tq) / 2) > STEP_PAIR_M
    return out


def partition_roof(footprint: Polygon, planes: Sequence[RoofPlane], x: np.ndarray, y: np.ndarray
                   ) -> list[tuple[Polygon, int]]:
    """Roof faces over ``footprint``: (polygon, plane index) from the plane arrangement labelled by the points."""
    lines = _cut_lines(planes, footprint.bounds) + _step_lines(planes, x, y, footprint.bounds)
    cells = _cells(footprint, lines)
    label = np.full(len(x), -1)
    for k, p in enumerate(planes):
        label[p.inliers] = np.where(label[p.inliers] < 0, k, label[p.inliers])
    has = label >= 0
    px, py, pl = x[has], y[has], label[has]
    labels = []
    for c in cells:
        inside = shapely.contains_xy(c, px, py)
        if inside.any():
            labels.append(int(np.bincount(pl[inside], minlength=len(planes)).argmax()))
        else:
            r = c.representative_point()
            labels.append(int(pl[np.argmin((px - r.x) ** 2 + (py - r.y) ** 2)]))
    # slivers join the neighbour they share the longest border with
    for i, c in enumerate(cells):
        if c.area >= MIN_FACE_M2:
            continue
        shared = [(shapely.intersection(c.boundary, d.boundary).length, j) for j, d in enumerate(cells)
                  if j != i and cells[j].area >= MIN_FACE_M2]
        best = max(shared, default=(0.0, -1))
        if best[0] > 0:
            labels[i] = labels[best[1]]
    faces = []
    for k in sorted(set(labels)):
        merged = shapely.union_all([c for c, lab in zip(cells, labels, strict=True) if lab == k])
        merged = shapely.set_precision(merged, SNAP_M)
        for part in shapely.get_parts(merged):
            if isinstance(part, Polygon) and part.area > 1e-6:
                faces.append((part, k))
    return faces


def partition_rmse(faces: list[tuple[Polygon, int]], planes: Sequence[RoofPlane], x: np.ndarray, y: np.ndarray,
                   z: np.ndarray) -> float:
    """Vertical RMSE of the points against the face (plane) they fall in; points outside every face are skipped."""
    dz = np.full(len(x), np.nan)
    for poly, k in faces:
        inside = shapely.contains_xy(poly, x, y) & np.isnan(dz)
        dz[inside] = z[inside] - planes[k].z(x[inside], y[inside])
    ok = np.isfinite(dz)
    return float(np.sqrt(np.mean(dz[ok] ** 2))) if ok.any() else float("inf")


def planar_solid(parts: list[tuple[Polygon, Plane]], base_z: float) -> Solid:
    """One closed, outward-oriented Solid over a planar partition, each part topped by its own plane.

    Flat tops are planes (0, 0, top). Vertices on another ring's edge are inserted (no T-junctions); a shared border
    gets a wall only where one side's roof is above the other's; vertical edges are split at every height met at a
    node, so every edge of the shell is used by exactly two faces in opposite directions.
    """
    rings_xy: list[list[np.ndarray]] = []
    for poly, _ in parts:
        poly = orient(shapely.set_precision(poly, SNAP_M), sign=1.0)
        rings_xy.append([np.asarray(r.coords)[:-1, :2] for r in (poly.exterior, *poly.interiors)])
    allpts = np.concatenate([r for rings in rings_xy for r in rings])
    keys = np.round(allpts / SNAP_M).astype(np.int64)
    nodes_key, inv = np.unique(keys, axis=0, return_inverse=True)
    nodes = nodes_key * SNAP_M
    inv = inv.ravel()
    rings_id = _ring_nodes(rings_xy, nodes, inv)
    planes = [np.asarray(pl, dtype=np.float64) for _, pl in parts]
    # the height of each part at each of its nodes, clustered per node so that faces meeting on a ridge share it
    raw: dict[int, list[float]] = {}
    for p, rings in enumerate(rings_id):
        for ring in rings:
            for a in ring:
                raw.setdefault(a, [base_z]).append(float(planes[p] @ (nodes[a, 0], nodes[a, 1], 1.0)))
    level_of: dict[tuple[int, float], float] = {}
    levels: dict[int, list[float]] = {}
    for a, zs in raw.items():
        out: list[float] = []
        for z in sorted(zs):
            if out and z - out[-1] <= LEVEL_TOL_M:
                level_of[(a, z)] = out[-1]
            else:
                out.append(z)
                level_of[(a, z)] = z
        levels[a] = out
    base_level = {a: level_of[(a, base_z)] for a in raw}

    def top(p: int, a: int) -> float:
        return level_of[(a, float(planes[p] @ (nodes[a, 0], nodes[a, 1], 1.0)))]

    owner: dict[tuple[int, int], int] = {}
    for p, rings in enumerate(rings_id):
        for ring in rings:
            for i, a in enumerate(ring):
                owner[(a, ring[(i + 1) % len(ring)])] = p
    vid: dict[tuple[int, float], int] = {}
    vertices: list[list[float]] = []

    def v(node: int, z: float) -> int:
        key = (node, z)
        if key not in vid:
            vid[key] = len(vertices)
            vertices.append([float(nodes[node, 0]), float(nodes[node, 1]), float(z)])
        return vid[key]

    ground, roofs, walls = [], [], []
    for p, rings in enumerate(rings_id):
        ground.append([[v(a, base_level[a]) for a in reversed(ring)] for ring in rings])
        roofs.append([[v(a, top(p, a)) for a in ring] for ring in rings])
        for ring in rings:
            for i, a in enumerate(ring):
                b = ring[(i + 1) % len(ring)]
                q = owner.get((b, a))
                lo_a = base_level[a] if q is None else top(q, a)
                lo_b = base_level[b] if q is None else top(q, b)
                hi_a, hi_b = top(p, a), top(p, b)
                if hi_a <= lo_a and hi_b <= lo_b:
                    continue  # this side is not above the other: the other side's wall (if any) closes it
                up_b = [z for z in levels[b] if lo_b < z < hi_b]
                down_a = [z for z in reversed(levels[a]) if lo_a < z < hi_a]
                ring_v = [v(a, lo_a), v(b, lo_b), *[v(b, z) for z in up_b], v(b, hi_b), v(a, hi_a),
                          *[v(a, z) for z in down_a]]
                ring_v = [x for k, x in enumerate(ring_v) if x != ring_v[k - 1]]  # a side of zero height
                if len(ring_v) >= 3:
                    walls.append([ring_v])
    faces = ground + roofs + walls
    semantics = SolidSemantics(
        surfaces=[SemanticSurface(type="GroundSurface"), SemanticSurface(type="RoofSurface"),
                  SemanticSurface(type="WallSurface")],
        values=[[0] * len(ground) + [1] * len(roofs) + [2] * len(walls)],
    )
    return Solid(vertices=vertices, boundaries=[faces], semantics=semantics)


def _ring_nodes(rings_xy: list[list[np.ndarray]], nodes: np.ndarray, inv: np.ndarray) -> list[list[list[int]]]:
    """Node ids of each ring, with the nodes that lie on its edges inserted in order along them."""
    rings_id: list[list[list[int]]] = []
    pos = 0
    for rings in rings_xy:
        out = []
        for r in rings:
            ids = inv[pos:pos + len(r)]
            pos += len(r)
            a, b = nodes[ids], nodes[np.roll(ids, -1)]
            d = b - a
            ll = np.maximum((d**2).sum(axis=1), 1e-18)
            rel = nodes[None, :, :] - a[:, None, :]
            t = (rel * d[:, None, :]).sum(axis=2) / ll[:, None]
            perp = np.abs(rel[:, :, 0] * d[:, None, 1] - rel[:, :, 1] * d[:, None, 0]) / np.sqrt(ll)[:, None]
            on = (t > 1e-9) & (t < 1 - 1e-9) & (perp < SNAP_M / 2)
            seq: list[int] = []
            for e in range(len(ids)):
                seq.append(int(ids[e]))
                hit = np.flatnonzero(on[e])
                seq.extend(int(i) for i in hit[np.argsort(t[e, hit])])
            out.append([v for i, v in enumerate(seq) if v != seq[i - 1]])
        rings_id.append(out)
    return rings_id


def as_polygons(geom: shapely.Geometry) -> list[Polygon]:
    """The polygons of a (multi)polygon footprint."""
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon):
        return list(geom.geoms)
    return []
