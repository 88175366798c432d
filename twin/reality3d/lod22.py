"""LoD2.2 solids of buildings with a rectangular footprint and a simple roof (flat, shed, gable, hip).

The footprint's minimum rotated rectangle gives the frame (used when its IoU with the footprint is at least
``MIN_RECT_IOU``); the roof planes (:func:`twin.reality3d.roofs.classify_roof`) give the roof type and the ridge
direction (gable, hip) or the uphill side (shed). The eave and ridge heights are then fitted to all roof points by
robust least squares on the parametric roof of that type in the rectangle frame (flat: eave; shed: eave + rise·(v+b)/2b;
gable: eave + rise·(1 − |v|/b); hip: eave + rise/b·min(b − |v|, a − |u|), i.e. hip ends as steep as the main faces),
and the watertight, outward-oriented solid is built directly: a box (flat), a box with a sloped top and walls of two
heights (shed), 2 roof faces + 2 pentagonal gable walls (gable), 2 trapezoids + 2 triangles (hip; 4 triangles when
square). Anything else falls back to the LoD1.3 solid with the flag ``lod22_fallback_lod13`` and the reason
(``complex_footprint``, ``complex_roof``, ``too_few_points``), as 3D BAG does. RMSE is the vertical distance of the roof
points to the LoD2.2 roof surface (to the LoD1.3 tops for a fallback).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import shapely
from shapely.geometry import Polygon

from data_models import RoofType, SemanticSurface, Solid, SolidSemantics
from twin.reality3d.buildings import BuildingPoints
from twin.reality3d.lod1 import Lod1Result
from twin.reality3d.roof_partition import MAX_RMSE_M as MAX_PARTITION_RMSE_M
from twin.reality3d.roof_partition import partition_rmse, partition_roof, planar_solid
from twin.reality3d.roofs import RoofFit, classify_roof
from twin.reality3d.validity import validate_solid

MIN_RECT_IOU = 0.95
MIN_RISE_M = 0.1
ROBUST_K = 3.0
SIMPLE_TYPES = (RoofType.flat, RoofType.shed, RoofType.gable, RoofType.hip)

__all__ = ["Frame", "Lod22Result", "rectangle_frame", "roof_shape", "fit_roof_heights", "rectangle_roof_solid",
           "reconstruct_lod22", "MIN_RECT_IOU"]


@dataclass
class Frame:
    """A rectangle: centre, unit axes u (ridge direction) and v (across; u × v > 0), half-extents a (u) and b (v)."""

    cx: float
    cy: float
    u: np.ndarray
    v: np.ndarray
    a: float
    b: float

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Local (u, v) coordinates of world points."""
        dx, dy = np.asarray(x) - self.cx, np.asarray(y) - self.cy
        return dx * self.u[0] + dy * self.u[1], dx * self.v[0] + dy * self.v[1]

    def world(self, u: float, v: float) -> tuple[float, float]:
        """World (x, y) of a local point."""
        return (float(self.cx + u * self.u[0] + v * self.v[0]), float(self.cy + u * self.u[1] + v * self.v[1]))

    def turned(self, uphill: np.ndarray) -> Frame:
        """The same rectangle with v along the rectangle axis closest to ``uphill`` (sign included)."""
        cands = [(self.v, self.b, self.a), (-self.v, self.b, self.a),
                 (self.u, self.a, self.b), (-self.u, self.a, self.b)]
        v, b, a = max(cands, key=lambda c: float(c[0] @ uphill))
        u = np.array([v[1], -v[0]])  # u × v = +1
        return Frame(self.cx, self.cy, u, v, a, b)


class Lod22Result(NamedTuple):
    """LoD2.2 solid (the LoD1.3 one for a fallback, None without any), roof type, flags, roof RMSE (metres)."""

    solid: Solid | None
    roof_type: RoofType
    flags: list[str]
    rmse: float | None


@dataclass
class _Heights:
    eave_z: float
    ridge_z: float
    rmse: float
    residuals: np.ndarray = field(repr=False)


def rectangle_frame(footprint: shapely.Geometry) -> tuple[Frame | None, float]:
    """Frame of the footprint's minimum rotated rectangle (u along the long side) and its IoU with the footprint."""
    if footprint is None or footprint.is_empty or footprint.area <= 0:
        return None, 0.0
    rect = shapely.minimum_rotated_rectangle(footprint)
    if not isinstance(rect, Polygon) or rect.area <= 0:
        return None, 0.0
    iou = float(shapely.intersection(rect, footprint).area / shapely.union(rect, footprint).area)
    p = np.asarray(rect.exterior.coords)[:4, :2]
    e1, e2 = p[1] - p[0], p[2] - p[1]
    long_e, short_e = (e1, e2) if np.linalg.norm(e1) >= np.linalg.norm(e2) else (e2, e1)
    u = long_e / np.linalg.norm(long_e)
    v = np.array([-u[1], u[0]])
    c = p.mean(axis=0)
    return Frame(float(c[0]), float(c[1]), u, v, float(np.linalg.norm(long_e) / 2),
                 float(np.linalg.norm(short_e) / 2)), iou


def roof_shape(roof_type: RoofType, frame: Frame, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Unit roof shape f in [0, 1] at world points (roof z = eave + rise·f); 0 everywhere for flat."""
    u, v = frame.local(x, y)
    a, b = frame.a, max(frame.b, 1e-6)
    au, av = np.minimum(np.abs(u), a), np.minimum(np.abs(v), b)
    if roof_type == RoofType.gable:
        return 1.0 - av / b
    if roof_type == RoofType.hip:
        return np.clip(np.minimum(b - av, a - au), 0.0, None) / b
    if roof_type == RoofType.shed:
        return (np.clip(v, -b, b) + b) / (2 * b)
    return np.zeros_like(u, dtype=np.float64)


def fit_roof_heights(roof_type: RoofType, frame: Frame, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> _Heights:
    """Eave and ridge z of the parametric roof by least squares, refitted without points beyond 3 robust sigmas."""
    f = roof_shape(roof_type, frame, x, y)
    keep = np.ones(len(z), bool)
    sloped = roof_type != RoofType.flat
    eave = rise = 0.0
    for _ in range(3):
        if sloped:
            A = np.column_stack([np.ones(int(keep.sum())), f[keep]])
            (eave, rise), *_ = np.linalg.lstsq(A, z[keep], rcond=None)
        else:
            eave, rise = float(np.mean(z[keep])), 0.0
        res = z - (eave + rise * f)
        mad = float(np.median(np.abs(res - np.median(res)))) * 1.4826
        new = np.abs(res) <= max(ROBUST_K * mad, 0.05)
        if new.sum() < 3 or np.array_equal(new, keep):
            break
        keep = new
    res = z - (eave + rise * f)
    return _Heights(float(eave), float(eave + rise), float(np.sqrt(np.mean(res**2))), res)


def rectangle_roof_solid(frame: Frame, roof_type: RoofType, ground_z: float, eave_z: float,
                         ridge_z: float) -> Solid:
    """Watertight, outward-oriented solid of a rectangle with a flat / shed / gable / hip roof, with semantics.

    Shed rises towards +v; gable and hip ridges run along u at v = 0.
    """
    a, b = frame.a, frame.b
    corners = [(-a, -b), (a, -b), (a, b), (-a, b)]  # counter-clockwise from above
    verts: list[list[float]] = []

    def add(u: float, v: float, z: float) -> int:
        verts.append([*frame.world(u, v), float(z)])
        return len(verts) - 1

    g = [add(u, v, ground_z) for u, v in corners]
    if roof_type == RoofType.shed:
        e = [add(u, v, eave_z if v < 0 else ridge_z) for u, v in corners]
    else:
        e = [add(u, v, eave_z) for u, v in corners]
    mids: dict[int, int] = {}
    if roof_type == RoofType.gable:
        r0, r1 = add(-a, 0.0, ridge_z), add(a, 0.0, ridge_z)
        mids = {1: r1, 3: r0}
        roofs = [[e[0], e[1], r1, r0], [r0, r1, e[2], e[3]]]
    elif roof_type == RoofType.hip:
        d = min(b, a)
        if a - d > 1e-3:
            h0, h1 = add(-(a - d), 0.0, ridge_z), add(a - d, 0.0, ridge_z)
            roofs = [[e[0], e[1], h1, h0], [h0, h1, e[2], e[3]], [e[1], e[2], h1], [e[3], e[0], h0]]
        else:  # square: a pyramid
            apex = add(0.0, 0.0, ridge_z)
            roofs = [[e[i], e[(i + 1) % 4], apex] for i in range(4)]
    else:  # flat, shed
        roofs = [[e[0], e[1], e[2], e[3]]]
    walls = []
    for i in range(4):
        j = (i + 1) % 4
        walls.append([g[i], g[j], e[j], *([mids[i]] if i in mids else []), e[i]])
    faces = [[[g[3], g[2], g[1], g[0]]]] + [[w] for w in walls] + [[r] for r in roofs]
    semantics = SolidSemantics(
        surfaces=[SemanticSurface(type="GroundSurface"), SemanticSurface(type="WallSurface"),
                  SemanticSurface(type="RoofSurface")],
        values=[[0] + [1] * len(walls) + [2] * len(roofs)],
    )
    return Solid(vertices=verts, boundaries=[faces], semantics=semantics)


def _fallback(lod1: Lod1Result, roof_type: RoofType, reason: str) -> Lod22Result:
    """The LoD1.3 solid (or none) with the fallback flag and reason; RMSE as LoD1.3's."""
    solid = lod1.lods.get("1.3")
    rmse = lod1.quality.rmse.get("1.3") if lod1.quality.rmse else None
    flags = ["lod22_fallback_lod13", reason] if solid is not None else ["lod22_none", reason]
    return Lod22Result(solid, roof_type, flags, rmse)


def _partitioned(bp: BuildingPoints, fp: shapely.Geometry, lod1: Lod1Result, fit: RoofFit, reason: str
                 ) -> Lod22Result:
    """LoD2.2 over the plane arrangement (:mod:`twin.reality3d.roof_partition`), else the LoD1.3 fallback."""
    if not isinstance(fp, Polygon) or not fit.planes:
        return _fallback(lod1, fit.roof_type, reason)
    faces = partition_roof(fp, fit.planes, bp.x, bp.y)
    rmse = partition_rmse(faces, fit.planes, bp.x, bp.y, bp.z)
    if not faces or rmse > MAX_PARTITION_RMSE_M:
        return _fallback(lod1, fit.roof_type, reason)
    parts = [(poly, (fit.planes[k].a, fit.planes[k].b, fit.planes[k].c)) for poly, k in faces]
    lowest = min(float(np.min(fit.planes[k].z(*np.asarray(poly.exterior.coords).T[:2]))) for poly, k in faces)
    if lowest <= lod1.ground_z + 0.1:
        return _fallback(lod1, fit.roof_type, "roof_below_ground")
    solid = planar_solid(parts, lod1.ground_z)
    ok, _errors = validate_solid(solid)
    if not ok:
        return _fallback(lod1, fit.roof_type, "lod22_invalid")
    return Lod22Result(solid, fit.roof_type, ["lod22_roof_partition"], rmse)


def reconstruct_lod22(bp: BuildingPoints, footprint: shapely.Geometry | None, lod1: Lod1Result,
                      fit: RoofFit | None = None) -> Lod22Result:
    """LoD2.2 solid of a rectangular building with a flat / shed / gable / hip roof; else LoD1.3 with a flag."""
    fp = bp.footprint if footprint is None else footprint
    if "1.3" not in lod1.lods or lod1.ground_z is None:
        return _fallback(lod1, RoofType.unknown, "too_few_points")
    fit = classify_roof(bp) if fit is None else fit
    if fit.roof_type == RoofType.unknown:
        return _fallback(lod1, fit.roof_type, "too_few_points")
    frame, iou = rectangle_frame(fp)
    if frame is None or iou < MIN_RECT_IOU or fit.roof_type not in SIMPLE_TYPES:
        return _partitioned(bp, fp, lod1, fit, "complex_footprint" if fit.roof_type in SIMPLE_TYPES
                            else "complex_roof")
    roof_type = fit.roof_type
    if roof_type in (RoofType.shed, RoofType.gable):  # v uphill (shed) / across the ridge (gable); hip: long axis
        frame = frame.turned(fit.planes[0].uphill)
    h = fit_roof_heights(roof_type, frame, bp.x, bp.y, bp.z)
    flags: list[str] = []
    if roof_type != RoofType.flat and h.ridge_z - h.eave_z < MIN_RISE_M:
        roof_type = RoofType.flat
        h = fit_roof_heights(roof_type, frame, bp.x, bp.y, bp.z)
        flags.append("roof_rise_too_small_flat")
    if h.eave_z <= lod1.ground_z + 0.1:
        return _fallback(lod1, roof_type, "roof_below_ground")
    solid = rectangle_roof_solid(frame, roof_type, lod1.ground_z, h.eave_z, h.ridge_z)
    ok, _errors = validate_solid(solid)
    if not ok:
        return _fallback(lod1, roof_type, "lod22_invalid")
    return Lod22Result(solid, roof_type, flags, h.rmse)
