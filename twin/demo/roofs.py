"""Roof shapes: analytic surfaces, volumes and LoD2.2 boundary surfaces of building parts.

Every sloped part is a rectangle described in its own frame: centre ``(cx, cy)``, ``angle`` of the local
u axis
(the ridge direction) from the x (east) axis, half-length ``a`` along u and half-width ``b`` across (a >= b).
Heights ``eave`` and ``rise`` are metres above the building's ground height.
"""

from __future__ import annotations

import numpy as np

FLAT, GABLE, HIP, SHED = 0, 1, 2, 3
ROOF_NAMES = {FLAT: "flat", GABLE: "gable", HIP: "hip", SHED: "shed"}
ROOF_CODES = {v: k for k, v in ROOF_NAMES.items()}


def local_uv(x, y, cx, cy, angle):
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = x - cx, y - cy
    return dx * c + dy * s, -dx * s + dy * c


def roof_height(u, v, a, b, code, eave, rise):
    """Height of the roof above ground at local coordinates (vectorised over all arguments)."""
    au = np.minimum(np.abs(u), a)
    av = np.minimum(np.abs(v), b)
    bb = np.maximum(b, 1e-6)
    gable = rise * (1.0 - av / bb)
    hip = rise / bb * np.clip(np.minimum(bb - av, a - au), 0.0, None)
    shed = rise * (np.clip(v, -b, b) + b) / (2.0 * bb)
    h = np.where(code == GABLE, gable, np.where(code == HIP, hip, np.where(code == SHED, shed, 0.0)))
    return eave + h


def part_volume(code: int, area: float, a: float, b: float, eave: float, rise: float) -> float:
    """Volume (m3) between ground height and the roof of one part."""
    if code == FLAT:
        return area * eave
    length, width = 2 * a, 2 * b
    if code in (GABLE, SHED):
        return area * eave + length * width * rise / 2.0
    if code == HIP:
        return area * eave + rise * width * (3 * length - width) / 6.0
    raise ValueError(code)


def _ring_xy(ring) -> list[tuple[float, float]]:
    pts = [(float(x), float(y)) for x, y in ring.coords]
    return pts[:-1] if pts[0] == pts[-1] else pts


def part_surfaces(poly, code, cx, cy, angle, a, b, ground_z, eave, rise):
    """Boundary surfaces of the solid of one part, outward oriented.

    Returns a list of ``(semantic, rings)``; ``rings`` is a list of rings, each a list of (x, y, z); the first
    ring is the outer boundary, the next ones are holes. ``poly`` must be oriented (exterior
    counter-clockwise).
    """
    top_eave = ground_z + eave
    surfaces = []
    if code == FLAT:
        rings = [_ring_xy(poly.exterior)] + [_ring_xy(r) for r in poly.interiors]
        surfaces.append(("GroundSurface", [[(x, y, ground_z) for x, y in reversed(r)] for r in rings]))
        for r in rings:
            for i in range(len(r)):
                (x1, y1), (x2, y2) = r[i], r[(i + 1) % len(r)]
                surfaces.append(
                    (
                        "WallSurface",
                        [[(x1, y1, ground_z), (x2, y2, ground_z), (x2, y2, top_eave), (x1, y1, top_eave)]],
                    )
                )
        surfaces.append(("RoofSurface", [[(x, y, top_eave) for x, y in r] for r in rings]))
        return surfaces
    c, s = np.cos(angle), np.sin(angle)

    def w(u, v, h):
        return (float(cx + u * c - v * s), float(cy + u * s + v * c), float(ground_z + h))

    corners_uv = [(-a, -b), (a, -b), (a, b), (-a, b)]
    top = [float(roof_height(u, v, a, b, code, eave, rise)) for u, v in corners_uv]
    cb = [w(u, v, 0.0) for u, v in corners_uv]
    ct = [w(u, v, h) for (u, v), h in zip(corners_uv, top, strict=True)]
    surfaces.append(("GroundSurface", [[cb[3], cb[2], cb[1], cb[0]]]))
    if code == GABLE:
        r0, r1 = w(-a, 0, eave + rise), w(a, 0, eave + rise)
        mids = {1: r1, 3: r0}  # gable ends on edges c1->c2 and c3->c0
        roofs = [[ct[0], ct[1], r1, r0], [r0, r1, ct[2], ct[3]]]
    elif code == HIP:
        h0, h1 = w(-(a - b), 0, eave + rise), w(a - b, 0, eave + rise)
        mids = {}
        roofs = [[ct[0], ct[1], h1, h0], [h0, h1, ct[2], ct[3]], [ct[1], ct[2], h1], [ct[3], ct[0], h0]]
    else:  # SHED
        mids = {}
        roofs = [[ct[0], ct[1], ct[2], ct[3]]]
    for i in range(4):
        j = (i + 1) % 4
        ring = [cb[i], cb[j], ct[j]] + ([mids[i]] if i in mids else []) + [ct[i]]
        surfaces.append(("WallSurface", [ring]))
    for r in roofs:
        surfaces.append(("RoofSurface", [r]))
    return surfaces
