"""Geometric validity of a :class:`Solid`, in the spirit of val3dity, and its volume.

Checks (error codes as val3dity): rings with fewer than 3 distinct vertices (101 TOO_FEW_POINTS), repeated
consecutive vertices (102 CONSECUTIVE_POINTS_SAME), zero-area or self-intersecting rings (104
RING_SELF_INTERSECTION), rings of a face crossing each other or a hole outside (201 INTERSECTION_RINGS), non-planar
faces (203 NON_PLANAR_POLYGON_DISTANCE_PLANE), holes oriented like their exterior (208 ORIENTATION_RINGS_SAME), a shell
with fewer than 4 faces (301 TOO_FEW_POLYGONS), an edge used once (302 SHELL_NOT_CLOSED) or more than twice (303
NON_MANIFOLD_CASE), an edge used twice in the same direction (307 POLYGON_WRONGLY_ORIENTED) and an inward-oriented
shell (308 ALL_POLYGONS_WRONGLY_ORIENTED, negative signed volume). Vertices are matched by coordinates (within
``VERTEX_TOL_M``), so duplicated vertex entries do not break closure. Not checked: self-intersection of a shell
(306), connectivity of shells (305) and void shells' placement (4xx).
"""

from __future__ import annotations

import numpy as np
import shapely

from data_models import Solid

PLANARITY_TOL_M = 0.01
VERTEX_TOL_M = 1e-4
MIN_AREA_M2 = 1e-6

__all__ = ["validate_solid", "solid_volume", "shell_signed_volume", "PLANARITY_TOL_M"]


def _newell(p: np.ndarray) -> np.ndarray:
    """Newell normal of a ring (length = twice its area): robust for non-convex and slightly non-planar rings."""
    q = np.roll(p, -1, axis=0)
    return np.array([np.sum((p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2])),
                     np.sum((p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0])),
                     np.sum((p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1]))])


def shell_signed_volume(vertices: np.ndarray, shell: list[list[list[int]]]) -> float:
    """Signed volume of one shell (divergence theorem over fan-triangulated rings); > 0 when outward oriented."""
    total = 0.0
    for face in shell:
        for ring in face:
            p = vertices[np.asarray(ring)]
            a, b, c = p[0], p[1:-1], p[2:]
            total += float(np.sum(a @ np.cross(b, c).T)) if len(b) else 0.0
    return total / 6.0


def solid_volume(solid: Solid) -> float:
    """Volume in m³: the exterior shell's signed volume minus the voids' (absolute values)."""
    v = np.asarray(solid.vertices, dtype=np.float64)
    if not len(v):
        return 0.0
    v = v - v.min(axis=0)  # better conditioned sums for large real coordinates
    vols = [shell_signed_volume(v, shell) for shell in solid.boundaries]
    return abs(vols[0]) - sum(abs(x) for x in vols[1:])


def _face_checks(v: np.ndarray, face: list[list[int]], where: str, tol: float) -> list[str]:
    """Ring- and polygon-level errors of one face."""
    errors: list[str] = []
    normals = []
    for r, ring in enumerate(face):
        p = v[np.asarray(ring)]
        same = np.all(np.abs(p - np.roll(p, -1, axis=0)) <= VERTEX_TOL_M, axis=1)
        if same.any():
            errors.append(f"102 CONSECUTIVE_POINTS_SAME {where} ring {r}")
        distinct = p[~same]
        if len(distinct) < 3:
            errors.append(f"101 TOO_FEW_POINTS {where} ring {r}")
            return errors
        n = _newell(distinct)
        if np.linalg.norm(n) / 2 < MIN_AREA_M2:
            errors.append(f"104 RING_SELF_INTERSECTION {where} ring {r} (zero area)")
            return errors
        normals.append(n)
    n0 = normals[0] / np.linalg.norm(normals[0])
    pts = v[np.asarray([i for ring in face for i in ring])]
    dist = np.abs((pts - pts.mean(axis=0)) @ n0)
    if dist.max() > tol:
        errors.append(f"203 NON_PLANAR_POLYGON_DISTANCE_PLANE {where} ({dist.max():.3f} m)")
        return errors
    for r, n in enumerate(normals[1:], start=1):
        if float(n @ n0) > 0:
            errors.append(f"208 ORIENTATION_RINGS_SAME {where} ring {r}")
    # 2D validity in the plane of the face: drop the dominant normal axis
    axis = int(np.argmax(np.abs(n0)))
    keep = [i for i in range(3) if i != axis]
    rings2d = [v[np.asarray(ring)][:, keep] for ring in face]
    ext = shapely.Polygon(rings2d[0])
    if not ext.is_valid:
        errors.append(f"104 RING_SELF_INTERSECTION {where} ring 0")
    elif len(rings2d) > 1:
        poly = shapely.Polygon(rings2d[0], rings2d[1:])
        if not poly.is_valid:
            errors.append(f"201 INTERSECTION_RINGS {where}")
    return errors


def validate_solid(solid: Solid, *, planarity_tol: float = PLANARITY_TOL_M) -> tuple[bool, list[str]]:
    """(valid, errors): val3dity-style checks of every face and shell; errors are 'CODE NAME where (detail)'."""
    v = np.asarray(solid.vertices, dtype=np.float64)
    v = v - v.min(axis=0)
    # vertices matched by coordinates: duplicated entries of one point are the same vertex
    _, vid = np.unique(np.round(v / VERTEX_TOL_M).astype(np.int64), axis=0, return_inverse=True)
    vid = vid.ravel()
    errors: list[str] = []
    for s, shell in enumerate(solid.boundaries):
        if len(shell) < 4:
            errors.append(f"301 TOO_FEW_POLYGONS shell {s}")
            continue
        for f, face in enumerate(shell):
            errors.extend(_face_checks(v, face, f"shell {s} face {f}", planarity_tol))
        edges = []
        for face in shell:
            for ring in face:
                ids = vid[np.asarray(ring)]
                nxt = np.roll(ids, -1)
                k = ids != nxt
                edges.append(np.stack([ids[k], nxt[k]], axis=1))
        e = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
        und = np.sort(e, axis=1)
        forward = (e[:, 0] < e[:, 1]).astype(np.int64)
        uniq, inv, count = np.unique(und, axis=0, return_inverse=True, return_counts=True)
        inv = inv.ravel()
        n_fwd = np.bincount(inv, weights=forward, minlength=len(uniq))
        if (count == 1).any():
            errors.append(f"302 SHELL_NOT_CLOSED shell {s} ({int((count == 1).sum())} free edges)")
        if (count > 2).any():
            errors.append(f"303 NON_MANIFOLD_CASE shell {s} ({int((count > 2).sum())} edges)")
        same_dir = (count == 2) & (n_fwd != 1)
        if same_dir.any():
            errors.append(f"307 POLYGON_WRONGLY_ORIENTED shell {s} ({int(same_dir.sum())} edges)")
        elif not errors:
            vol = shell_signed_volume(v, shell)
            if s == 0 and vol <= 0:
                errors.append(f"308 ALL_POLYGONS_WRONGLY_ORIENTED shell {s} (signed volume {vol:.3f})")
            if s > 0 and vol >= 0:
                errors.append(f"308 ALL_POLYGONS_WRONGLY_ORIENTED shell {s} (void with signed volume {vol:.3f})")
    return not errors, errors
