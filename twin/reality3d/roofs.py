"""Roof planes and roof type of one building from its roof points (numpy only).

Planes are found by sequential RANSAC with local sampling and normal consistency: each hypothesis is a plane through
a random point and two random neighbours (within ``SAMPLE_RADIUS_M``), scored by the points within ``DIST_M`` of it
(perpendicular distance) whose local normal (a least-squares plane fitted per ``NORMAL_CELL_M`` grid cell; cells with
a poor fit, e.g. on a ridge, accept any plane) is within ``NORMAL_ANGLE_DEG`` of the plane's. The best plane is refined
by least squares on its inliers, its inliers are removed, and the search repeats until the planes left would hold
fewer than ``MIN_SHARE`` of the points. Near-coplanar planes (normals within ``MERGE_ANGLE_DEG``, offsets within
``MERGE_OFFSET_M``) are merged. Planes are ``z = a·x + b·y + c`` in the input frame (metres).

Classification from the planes (``MIN_SHARE`` ignores dormers and chimneys): one plane → flat (slope < ``FLAT_DEG``)
or shed; two sloped planes facing opposite ways with equal slopes (a horizontal ridge) → gable; four sloped planes in
two opposite pairs at right angles → hip; anything else → complex; too few points → unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data_models import RoofType
from twin.reality3d.buildings import BuildingPoints

DIST_M = 0.15
SAMPLE_RADIUS_M = 3.0
NORMAL_CELL_M = 2.0
NORMAL_ANGLE_DEG = 20.0
NORMAL_FIT_RMSE_M = 0.08
MIN_SHARE = 0.03
MIN_PLANE_POINTS = 12
MIN_ROOF_POINTS = 20
N_HYPOTHESES = 300
MAX_SCORE_POINTS = 4000
MAX_PLANES = 8
MERGE_ANGLE_DEG = 5.0
MERGE_OFFSET_M = 0.2
FLAT_DEG = 5.0
OPPOSITE_DEG = 15.0
SLOPE_MATCH_DEG = 8.0

__all__ = ["RoofPlane", "RoofFit", "detect_planes", "merge_planes", "classify_planes", "classify_roof"]


@dataclass
class RoofPlane:
    """A roof plane z = a·x + b·y + c (input frame, metres) and the indices of its inlier points."""

    a: float
    b: float
    c: float
    inliers: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        """Unit upward normal."""
        n = np.array([-self.a, -self.b, 1.0])
        return n / np.linalg.norm(n)

    @property
    def slope_deg(self) -> float:
        """Slope from the horizontal, degrees."""
        return float(np.degrees(np.arctan(np.hypot(self.a, self.b))))

    @property
    def uphill(self) -> np.ndarray:
        """Unit horizontal direction in which the plane rises (zeros when flat)."""
        g = np.array([self.a, self.b])
        n = np.linalg.norm(g)
        return g / n if n > 0 else g

    @property
    def n_points(self) -> int:
        """Number of inlier points."""
        return int(len(self.inliers))

    def z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the plane at (x, y)."""
        return self.a * x + self.b * y + self.c


@dataclass
class RoofFit:
    """Roof type, planes (input frame), ridge and eave z (metres), RMSE of the points to their planes."""

    roof_type: RoofType
    planes: list[RoofPlane]
    ridge_z: float | None
    eave_z: float | None
    rmse: float | None
    flags: list[str] = field(default_factory=list)


def _lstsq_plane(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[float, float, float]:
    """Least-squares plane (a, b, c) of z = a·x + b·y + c."""
    A = np.column_stack([x, y, np.ones_like(x)])
    sol, *_ = np.linalg.lstsq(A, z, rcond=None)
    return float(sol[0]), float(sol[1]), float(sol[2])


def _dist(a: np.ndarray | float, b: np.ndarray | float, c: np.ndarray | float, x: np.ndarray, y: np.ndarray,
          z: np.ndarray) -> np.ndarray:
    """Perpendicular distance of points to plane(s) z = a·x + b·y + c (broadcasting)."""
    return np.abs(z - a * x - b * y - c) / np.sqrt(1.0 + a * a + b * b)


def _local_normals(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per-point unit normal of a plane fitted to its grid cell; NaN where the cell is sparse or not planar."""
    out = np.full((len(x), 3), np.nan)
    if len(x) < 3:
        return out
    col = np.floor((x - x.min()) / NORMAL_CELL_M).astype(np.int64)
    row = np.floor((y - y.min()) / NORMAL_CELL_M).astype(np.int64)
    _, cell = np.unique(row * (col.max() + 1) + col, return_inverse=True)
    cell = cell.ravel()
    k = int(cell.max()) + 1
    # cell-local coordinates for conditioning
    cx = np.bincount(cell, x, k) / np.maximum(np.bincount(cell, minlength=k), 1)
    cy = np.bincount(cell, y, k) / np.maximum(np.bincount(cell, minlength=k), 1)
    dx, dy = x - cx[cell], y - cy[cell]

    def s(w: np.ndarray) -> np.ndarray:
        return np.bincount(cell, w, k)

    n = np.bincount(cell, minlength=k).astype(np.float64)
    ata = np.stack([np.stack([s(dx * dx), s(dx * dy), s(dx)], -1), np.stack([s(dx * dy), s(dy * dy), s(dy)], -1),
                    np.stack([s(dx), s(dy), n], -1)], 1)
    atb = np.stack([s(dx * z), s(dy * z), s(z)], -1)
    ok = n >= 6
    ok &= np.abs(np.linalg.det(np.where(ok[:, None, None], ata, np.eye(3)))) > 1e-9
    sol = np.zeros((k, 3))
    sol[ok] = np.linalg.solve(ata[ok], atb[ok][..., None])[..., 0]
    res = z - (sol[cell, 0] * dx + sol[cell, 1] * dy + sol[cell, 2])
    rmse = np.sqrt(np.bincount(cell, res**2, k) / np.maximum(n, 1))
    ok &= rmse <= NORMAL_FIT_RMSE_M
    nrm = np.column_stack([-sol[:, 0], -sol[:, 1], np.ones(k)])
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    good = ok[cell]
    out[good] = nrm[cell[good]]
    return out


def _consistent(normals: np.ndarray, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """True where a point's local normal is unknown or within ``NORMAL_ANGLE_DEG`` of the plane(s)' normal."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    norm = np.sqrt(1.0 + a * a + b * b)
    dot = (-a[..., None] * normals[:, 0] - b[..., None] * normals[:, 1] + normals[:, 2]) / norm[..., None]
    return np.isnan(dot) | (dot >= np.cos(np.radians(NORMAL_ANGLE_DEG)))


def detect_planes(x: np.ndarray, y: np.ndarray, z: np.ndarray, *, dist: float = DIST_M, min_share: float = MIN_SHARE,
                  seed: int = 0) -> list[RoofPlane]:
    """Roof planes by sequential, normal-consistent RANSAC with local sampling; largest first, coplanar merged."""
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    n_all = len(z)
    if n_all < 3:
        return []
    x0, y0 = float(x.mean()), float(y.mean())
    xs, ys = x - x0, y - y0
    normals = _local_normals(xs, ys, z)
    rng = np.random.default_rng(seed)
    min_pts = max(MIN_PLANE_POINTS, int(np.ceil(min_share * n_all)))
    remaining = np.arange(n_all)
    planes: list[RoofPlane] = []
    while len(remaining) >= min_pts and len(planes) < MAX_PLANES:
        sub = remaining if len(remaining) <= MAX_SCORE_POINTS else rng.choice(remaining, MAX_SCORE_POINTS, False)
        px, py, pz = xs[sub], ys[sub], z[sub]
        m = len(sub)
        k = min(N_HYPOTHESES, m)
        seeds = rng.choice(m, k, replace=False)
        d2 = (px[seeds, None] - px[None]) ** 2 + (py[seeds, None] - py[None]) ** 2
        keys = rng.random((k, m))
        keys[d2 > SAMPLE_RADIUS_M**2] = 2.0
        keys[np.arange(k), seeds] = 2.0
        two = np.argpartition(keys, 1, axis=1)[:, :2]
        valid = keys[np.arange(k)[:, None], two].max(axis=1) < 2.0
        i0, i1, i2 = seeds[valid], two[valid, 0], two[valid, 1]
        if not len(i0):
            break
        p0 = np.column_stack([px[i0], py[i0], pz[i0]])
        nrm = np.cross(np.column_stack([px[i1], py[i1], pz[i1]]) - p0, np.column_stack([px[i2], py[i2], pz[i2]]) - p0)
        ok = np.abs(nrm[:, 2]) > 0.2 * np.linalg.norm(nrm, axis=1) + 1e-12  # not near vertical or degenerate
        if not ok.any():
            break
        nrm, p0 = nrm[ok], p0[ok]
        ha, hb = -nrm[:, 0] / nrm[:, 2], -nrm[:, 1] / nrm[:, 2]
        hc = p0[:, 2] - ha * p0[:, 0] - hb * p0[:, 1]
        inl = (_dist(ha[:, None], hb[:, None], hc[:, None], px, py, pz) <= dist) & _consistent(normals[sub], ha, hb)
        best = int(np.argmax(inl.sum(axis=1)))
        a, b, c = float(ha[best]), float(hb[best]), float(hc[best])
        rx, ry, rz = xs[remaining], ys[remaining], z[remaining]
        for _ in range(3):  # refine by least squares on the inliers among all remaining points
            mask = (_dist(a, b, c, rx, ry, rz) <= dist) & _consistent(normals[remaining], a, b)
            if mask.sum() < 3:
                break
            a, b, c = _lstsq_plane(rx[mask], ry[mask], rz[mask])
        mask = (_dist(a, b, c, rx, ry, rz) <= dist) & _consistent(normals[remaining], a, b)
        if mask.sum() < min_pts:
            break
        planes.append(RoofPlane(a, b, c, remaining[mask]))
        remaining = remaining[~mask]
    planes = merge_planes(planes, xs, ys, z)
    # back to the input frame: z = a(x - x0) + b(y - y0) + c
    return [RoofPlane(p.a, p.b, p.c - p.a * x0 - p.b * y0, p.inliers) for p in planes]


def merge_planes(planes: list[RoofPlane], x: np.ndarray, y: np.ndarray, z: np.ndarray, *,
                 angle_deg: float = MERGE_ANGLE_DEG, offset_m: float = MERGE_OFFSET_M) -> list[RoofPlane]:
    """Merge planes whose normals differ by < ``angle_deg`` and whose heights differ by < ``offset_m`` at each other's
    centroids; merged planes are refitted on the union of their inliers. Returned largest first."""
    planes = list(planes)
    merged = True
    while merged:
        merged = False
        for i in range(len(planes)):
            for j in range(i + 1, len(planes)):
                p, q = planes[i], planes[j]
                if np.degrees(np.arccos(np.clip(p.normal @ q.normal, -1, 1))) >= angle_deg:
                    continue
                cp = (x[p.inliers].mean(), y[p.inliers].mean())
                cq = (x[q.inliers].mean(), y[q.inliers].mean())
                if max(abs(p.z(*cq) - q.z(*cq)), abs(p.z(*cp) - q.z(*cp))) >= offset_m:
                    continue
                idx = np.concatenate([p.inliers, q.inliers])
                planes[i] = RoofPlane(*_lstsq_plane(x[idx], y[idx], z[idx]), idx)
                del planes[j]
                merged = True
                break
            if merged:
                break
    return sorted(planes, key=lambda p: -p.n_points)


def _opposite(p: RoofPlane, q: RoofPlane) -> bool:
    """Two sloped planes rising towards each other with about equal slopes (a horizontal ridge between them)."""
    return (float(p.uphill @ q.uphill) <= -np.cos(np.radians(OPPOSITE_DEG))
            and abs(p.slope_deg - q.slope_deg) <= SLOPE_MATCH_DEG)


def classify_planes(planes: list[RoofPlane]) -> RoofType:
    """Roof type from the (significant) planes: flat, shed, gable, hip or complex."""
    if not planes:
        return RoofType.unknown
    sloped = [p.slope_deg >= FLAT_DEG for p in planes]
    if len(planes) == 1:
        return RoofType.shed if sloped[0] else RoofType.flat
    if not all(sloped):
        return RoofType.complex
    if len(planes) == 2:
        return RoofType.gable if _opposite(*planes) else RoofType.complex
    if len(planes) == 4:
        p = planes[0]
        opp = [j for j in range(1, 4) if _opposite(p, planes[j])]
        if len(opp) != 1:
            return RoofType.complex
        rest = [planes[j] for j in range(1, 4) if j != opp[0]]
        right = abs(float(p.uphill @ rest[0].uphill)) <= np.sin(np.radians(OPPOSITE_DEG))
        return RoofType.hip if _opposite(*rest) and right else RoofType.complex
    return RoofType.complex


def classify_roof(bp: BuildingPoints) -> RoofFit:
    """Roof planes and type of one building; ridge/eave z are robust extremes (2nd/98th pct) of the roof points."""
    if bp.n_points < MIN_ROOF_POINTS:
        return RoofFit(RoofType.unknown, [], None, None, None, ["too_few_points"])
    planes = detect_planes(bp.x, bp.y, bp.z)
    roof_type = classify_planes(planes)
    flags = []
    covered = sum(p.n_points for p in planes) / bp.n_points
    if covered < 0.9:
        flags.append("roof_points_unexplained")
    if planes:
        res = np.min(np.stack([np.abs(bp.z - p.z(bp.x, bp.y)) for p in planes]), axis=0)
        rmse = float(np.sqrt(np.mean(res**2)))
    else:
        rmse = None
    lo, hi = np.percentile(bp.z, [2, 98])
    eave, ridge = float(lo), float(hi)
    if roof_type == RoofType.flat:
        eave = ridge = float(np.median(bp.z[planes[0].inliers]))
    return RoofFit(roof_type, planes, ridge, eave, rmse, flags)
