"""LoD1.2 and LoD1.3 building blocks from the roof and ground points of a footprint, with quality metrics.

Conventions follow 3D BAG. LoD1.2: the footprint extruded from the ground (10th percentile of the ground points in a
ring around the footprint) to the roof (70th percentile of the roof points inside it). LoD1.3: the roof points are
clustered into height levels (1-D: gaps wider than ``JUMP_M`` in the histogram of roof-point heights, ignoring sparse
bins so a few stray points do not bridge a jump), each raster cell takes the majority level of its points, empty cells
the nearest level, connected components of a level become parts, parts under ``MIN_PART_AREA_M2`` are merged into the
neighbour they share most border with, parts whose tops differ by less than ``MIN_STEP_M`` are merged, and each part
(polygonised cells clipped to the footprint) is extruded to the 70th percentile of its own points. The parts form
*one* closed Solid (one exterior shell, as :class:`Solid` allows voids but not several exterior shells): vertical
walls are emitted only where a part is higher than its neighbour (or the outside), wall edges are split at every
level met at a vertex, so the shell is watertight and outward oriented. With a single level LoD1.3 equals LoD1.2.

Fallbacks: fewer than ``MIN_POINTS`` roof points or a density below ``MIN_DENSITY`` → no LoD, flag
``too_few_points``; no ground points → no LoD, ``no_ground_points``; huge or very complex footprints → LoD1.2 only,
``lod13_skipped_complex``; a LoD1.3 that fails validation → LoD1.2's block, ``lod13_invalid_fallback``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from rasterio import features
from rasterio.transform import from_origin
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from data_models import Quality, Solid
from twin.lidar.heights import GROUND_PERCENTILE, ROOF_PERCENTILE
from twin.reality3d.buildings import BuildingPoints
from twin.reality3d.roof_partition import planar_solid
from twin.reality3d.validity import solid_volume, validate_solid

MIN_POINTS = 10
MIN_DENSITY = 0.5  # roof points per m² of footprint
JUMP_M = 2.0
HIST_BIN_M = 0.25
MIN_STEP_M = 1.0
MIN_PART_AREA_M2 = 4.0
NODATA_CELL_M = 1.0
PARTIAL_COVERAGE = 0.25
MAX_AREA_M2 = 20_000.0
MAX_VERTICES = 2_000
SNAP_M = 1e-3

__all__ = ["Lod1Result", "reconstruct_lod1", "composite_solid", "roof_levels"]


@dataclass
class Lod1Result:
    """Solids by LoD ('1.2', '1.3'), quality, roof/ground z (metres), flags, LoD1.3 parts and volumes."""

    lods: dict[str, Solid]
    quality: Quality
    roof_z: float | None
    ground_z: float | None
    flags: list[str] = field(default_factory=list)
    parts: list[tuple[Polygon, float]] = field(default_factory=list)
    volumes: dict[str, float] = field(default_factory=dict)

    @property
    def height(self) -> float | None:
        """LoD1.2 height above ground (metres); None when not reconstructed."""
        if self.roof_z is None or self.ground_z is None:
            return None
        return self.roof_z - self.ground_z


# ---------------------------------------------------------------------------------------------------- raster helpers


class _Grid:
    """A raster over a footprint's bounds: cell size, transform, footprint mask and each point's cell."""

    def __init__(self, footprint: Polygon, cell: float, all_touched: bool) -> None:
        minx, miny, maxx, maxy = footprint.bounds
        self.cell = cell
        self.x0 = np.floor(minx / cell) * cell
        self.y1 = np.ceil(maxy / cell) * cell
        self.w = max(1, int(np.ceil((maxx - self.x0) / cell)))
        self.h = max(1, int(np.ceil((self.y1 - miny) / cell)))
        self.transform = from_origin(self.x0, self.y1, cell, cell)
        self.mask = features.rasterize([(footprint, 1)], out_shape=(self.h, self.w), transform=self.transform,
                                       all_touched=all_touched, dtype="uint8").astype(bool)

    def cells(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Flat cell index of each point (clipped to the grid)."""
        col = np.clip(np.floor((x - self.x0) / self.cell).astype(np.int64), 0, self.w - 1)
        row = np.clip(np.floor((self.y1 - y) / self.cell).astype(np.int64), 0, self.h - 1)
        return row * self.w + col


_SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))


def _shift(a: np.ndarray, dr: int, dc: int, fill: int) -> np.ndarray:
    """``a`` moved by (dr, dc): out[r, c] = a[r - dr, c - dc], ``fill`` where that falls outside."""
    out = np.full_like(a, fill)
    h, w = a.shape
    out[max(dr, 0):h + min(dr, 0), max(dc, 0):w + min(dc, 0)] = a[max(-dr, 0):h + min(-dr, 0),
                                                                    max(-dc, 0):w + min(-dc, 0)]
    return out


def _fill_nearest(lvl: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Empty (-1) cells inside the mask take a neighbouring level, growing outward until all are set."""
    lvl = lvl.copy()
    for _ in range(lvl.shape[0] + lvl.shape[1]):
        empty = mask & (lvl < 0)
        if not empty.any():
            break
        for dr, dc in _SHIFTS:
            nb = _shift(lvl, dr, dc, -1)
            take = empty & (nb >= 0) & (lvl < 0)
            lvl[take] = nb[take]
    return lvl


def _components(lvl: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """4-connected components of equal level inside the mask (label = smallest flat index; -1 outside)."""
    idx = np.arange(lvl.size, dtype=np.int64).reshape(lvl.shape)
    comp = np.where(mask, idx, -1)
    big = np.iinfo(np.int64).max
    while True:
        prev = comp
        for dr, dc in _SHIFTS:
            nb = _shift(comp, dr, dc, -1)
            nl = _shift(lvl, dr, dc, -2)
            ok = mask & (nb >= 0) & (nl == lvl)
            comp = np.where(ok, np.minimum(comp, np.where(ok, nb, big)), comp)
        flat = comp.ravel()
        for _ in range(4):  # pointer jumping: follow labels to their own labels
            inside = flat >= 0
            flat = np.where(inside, flat[np.where(inside, flat, 0)], -1)
        comp = flat.reshape(lvl.shape)
        if np.array_equal(comp, prev):
            return comp


def _adjacency(comp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique unordered pairs of 4-adjacent different components and the number of cell borders they share."""
    pairs = []
    for a, b in ((comp[:, :-1], comp[:, 1:]), (comp[:-1, :], comp[1:, :])):
        k = (a >= 0) & (b >= 0) & (a != b)
        pairs.append(np.stack([np.minimum(a[k], b[k]), np.maximum(a[k], b[k])], axis=1))
    p = np.concatenate(pairs)
    if not len(p):
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    return np.unique(p, axis=0, return_counts=True)


# ---------------------------------------------------------------------------------------------------- levels


def roof_levels(z: np.ndarray, jump: float = JUMP_M) -> np.ndarray:
    """Level (0, 1, …; ascending) of each roof point: split where the height histogram has a gap wider than ``jump``.

    Bins holding fewer than max(2, 0.2 % of the points) count as empty, so a few stray points (chimneys, wall hits,
    noise) do not bridge a jump.
    """
    if len(z) == 0:
        return np.zeros(0, np.int64)
    lo = float(z.min())
    b = ((z - lo) / HIST_BIN_M).astype(np.int64)
    counts = np.bincount(b)
    occ = np.flatnonzero(counts >= max(2, 0.002 * len(z)))
    if len(occ) < 2:
        return np.zeros(len(z), np.int64)
    gaps = np.flatnonzero((occ[1:] - occ[:-1] - 1) * HIST_BIN_M >= jump)
    cuts = lo + (occ[gaps] + 1 + occ[gaps + 1]) / 2.0 * HIST_BIN_M
    return np.searchsorted(cuts, z).astype(np.int64)


def _group_percentile(label: np.ndarray, z: np.ndarray, n: int) -> np.ndarray:
    """The ROOF_PERCENTILE of ``z`` per label 0..n-1 (NaN for labels without points)."""
    order = np.argsort(label, kind="stable")
    bounds = np.searchsorted(label[order], np.arange(n + 1))
    zs = z[order]
    return np.array([np.percentile(zs[bounds[i]:bounds[i + 1]], ROOF_PERCENTILE) if bounds[i + 1] > bounds[i]
                     else np.nan for i in range(n)])


def _segment(bp: BuildingPoints, footprint: Polygon, density: float) -> tuple[list[tuple[Polygon, float]], np.ndarray]:
    """LoD1.3 parts (polygon, top z) and each roof point's top z; one part when the roof has no jump."""
    z = bp.z
    level = roof_levels(z)
    one = [(footprint, float(np.percentile(z, ROOF_PERCENTILE)))]
    if level.max() == 0:
        return one, np.full(len(z), one[0][1])
    cell = float(np.clip(np.sqrt(3.0 / max(density, 1e-9)), 0.5, 1.5))
    g = _Grid(footprint, cell, all_touched=True)
    n_lvl = int(level.max()) + 1
    pc = g.cells(bp.x, bp.y)
    counts = 2 * np.bincount(pc * n_lvl + level, minlength=g.w * g.h * n_lvl).reshape(-1, n_lvl)
    # ties go to the level of the point nearest the cell centre (argmax alone would favour the lowest level)
    cx = g.x0 + (pc % g.w + 0.5) * cell
    cy = g.y1 - (pc // g.w + 0.5) * cell
    order = np.lexsort(((bp.x - cx) ** 2 + (bp.y - cy) ** 2, pc))
    first = order[np.r_[True, pc[order][1:] != pc[order][:-1]]]
    counts[pc[first], level[first]] += 1
    lvl = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), -1).reshape(g.h, g.w)
    lvl = np.where(g.mask, lvl, -1)
    if (lvl >= 0).sum() == 0:
        return one, np.full(len(z), one[0][1])
    lvl = _fill_nearest(lvl, g.mask)
    mask = g.mask & (lvl >= 0)
    cell_area = cell * cell
    for _ in range(100):  # merge slivers and near-equal neighbours until stable
        comp = _components(lvl, mask)
        ids, inv = np.unique(comp.ravel(), return_inverse=True)
        inv = inv.reshape(comp.shape)
        if ids[0] == -1:
            ids, inv = ids[1:], inv - 1
        area = np.bincount(inv[mask], minlength=len(ids)) * cell_area
        tops = _group_percentile(inv.ravel()[pc], z, len(ids))
        if len(ids) == 1:
            break
        pairs, shared = _adjacency(np.where(mask, inv, -1))
        if not len(pairs):
            break
        small = area < MIN_PART_AREA_M2
        if small.any():
            # every sliver joins the neighbour it shares most border with, preferring non-slivers
            a, b = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
            w = np.concatenate([shared, shared]) + np.where(small[b], 0, 1_000_000)
            bigger = (area[b] > area[a]) | ((area[b] == area[a]) & (b < a))
            sel = small[a] & (~small[b] | bigger)  # two slivers never swap into each other
            a, b, w = a[sel], b[sel], w[sel]
            order = np.lexsort((-w, a))
            a, b = a[order], b[order]
            first = np.r_[True, a[1:] != a[:-1]]
            target = np.arange(len(ids))
            target[a[first]] = b[first]
            if (target != np.arange(len(ids))).any():
                comp_lvl = np.zeros(len(ids), np.int64)
                comp_lvl[inv[mask]] = lvl[mask]
                lvl = np.where(mask, comp_lvl[target][np.where(mask, inv, 0)], -1)
                continue
        diff = np.abs(tops[pairs[:, 0]] - tops[pairs[:, 1]])
        diff = np.where(np.isnan(diff), 0.0, diff)
        k = int(np.argmin(diff))
        if diff[k] < MIN_STEP_M:
            a, b = pairs[k]
            keep, drop = (a, b) if area[a] >= area[b] else (b, a)
            lvl[inv == drop] = lvl[inv == keep][0]
            continue
        break
    if len(ids) == 1:
        return one, np.full(len(z), one[0][1])
    tops = np.where(np.isnan(tops), np.nanmedian(tops), tops)
    point_top = tops[inv.ravel()[pc]]
    parts: list[tuple[Polygon, float]] = []
    for geom, value in features.shapes(inv.astype(np.int32), mask=mask, transform=g.transform):
        piece = shapely.geometry.shape(geom).intersection(footprint)
        for p in getattr(piece, "geoms", [piece]):
            if isinstance(p, Polygon) and not p.is_empty and p.area > 0:
                parts.append((p, float(tops[int(value)])))
    return _merge_slivers(parts), point_top


def _merge_slivers(parts: list[tuple[Polygon, float]]) -> list[tuple[Polygon, float]]:
    """Pieces under MIN_PART_AREA_M2 (from clipping) join the neighbour sharing the longest border."""
    parts = sorted(parts, key=lambda p: p[0].area)
    while len(parts) > 1 and parts[0][0].area < MIN_PART_AREA_M2:
        small, _ = parts[0]
        borders = [small.boundary.intersection(p.boundary).length for p, _ in parts[1:]]
        k = int(np.argmax(borders))
        if borders[k] <= 0:
            break  # an island: keep it
        p, top = parts[k + 1]
        merged = shapely.union(p, small)
        rest = [q for i, q in enumerate(parts) if i not in (0, k + 1)]
        pieces = [m for m in getattr(merged, "geoms", [merged]) if isinstance(m, Polygon)]
        parts = sorted(rest + [(m, top) for m in pieces], key=lambda q: q[0].area)
    return parts


# ---------------------------------------------------------------------------------------------------- solids


def composite_solid(parts: list[tuple[Polygon, float]], base_z: float) -> Solid:
    """One closed, outward-oriented Solid from a planar partition into parts, each extruded to its own top z
    (:func:`twin.reality3d.roof_partition.planar_solid` with flat tops)."""
    return planar_solid([(poly, (0.0, 0.0, float(top))) for poly, top in parts], base_z)


# ---------------------------------------------------------------------------------------------------- main


def _as_polygon(footprint: shapely.Geometry, flags: list[str]) -> Polygon | None:
    """A valid Polygon footprint: repaired if invalid, the largest part of a MultiPolygon (flagged)."""
    g = footprint
    if not g.is_valid:
        g = shapely.make_valid(g)
        flags.append("footprint_repaired")
    if isinstance(g, Polygon):
        return g if not g.is_empty else None
    polys = [p for p in getattr(g, "geoms", []) if isinstance(p, Polygon | MultiPolygon)]
    polys = [q for p in polys for q in getattr(p, "geoms", [p])]
    if not polys:
        return None
    flags.append("multipolygon_largest_part")
    return max(polys, key=lambda p: p.area)


def _nodata_fraction(bp: BuildingPoints, footprint: Polygon) -> float:
    """Fraction of the footprint's 1 m cells holding no roof point."""
    g = _Grid(footprint, NODATA_CELL_M, all_touched=False)
    if not g.mask.any():
        g = _Grid(footprint, NODATA_CELL_M, all_touched=True)
    has = np.zeros(g.w * g.h, bool)
    if len(bp.x):
        has[g.cells(bp.x, bp.y)] = True
    m = g.mask.ravel()
    return float(1.0 - has[m].sum() / max(m.sum(), 1))


def reconstruct_lod1(bp: BuildingPoints, footprint: shapely.Geometry | None = None) -> Lod1Result:
    """LoD1.2 and LoD1.3 solids of one building from its points, with quality (density, no-data, RMSE, validity)."""
    flags: list[str] = []
    fp = _as_polygon(bp.footprint if footprint is None else footprint, flags)
    if fp is None:
        return Lod1Result({}, Quality(valid=None, errors=["empty footprint"]), None, None, ["empty_footprint"])
    area = fp.area
    n = bp.n_points
    density = n / area if area > 0 else 0.0
    nodata = _nodata_fraction(bp, fp)
    quality = Quality(point_density=round(density, 3), nodata_fraction=round(min(max(nodata, 0.0), 1.0), 4))
    if n < MIN_POINTS or density < MIN_DENSITY:
        flags.extend(["too_few_points", "no_points"] if n == 0 else ["too_few_points"])
        return Lod1Result({}, quality, None, None, flags)
    if nodata > PARTIAL_COVERAGE:
        flags.append("partial_coverage")
    roof_z = float(np.percentile(bp.z, ROOF_PERCENTILE))
    if not len(bp.ground_z):
        flags.append("no_ground_points")
        return Lod1Result({}, quality, roof_z, None, flags)
    ground_z = float(np.percentile(bp.ground_z, GROUND_PERCENTILE))
    if roof_z <= ground_z + 0.1:
        flags.append("roof_below_ground")
        return Lod1Result({}, quality, roof_z, ground_z, flags)
    lod12 = Solid.extrude(orient(fp, sign=1.0), ground_z, roof_z)
    lods = {"1.2": lod12}
    rmse = {"1.2": float(np.sqrt(np.mean((bp.z - roof_z) ** 2)))}
    parts: list[tuple[Polygon, float]] = [(fp, roof_z)]
    n_vertices = len(fp.exterior.coords) + sum(len(r.coords) for r in fp.interiors)
    if area > MAX_AREA_M2 or n_vertices > MAX_VERTICES:
        flags.append("lod13_skipped_complex")
    else:
        segs, point_top = _segment(bp, fp, density)
        if len(segs) > 1 and all(t > ground_z + 0.1 for _, t in segs):
            solid = composite_solid(segs, ground_z)
            ok, _ = validate_solid(solid)
            if ok:
                lods["1.3"], parts = solid, segs
                rmse["1.3"] = float(np.sqrt(np.mean((bp.z - point_top) ** 2)))
            else:
                flags.append("lod13_invalid_fallback")
        if "1.3" not in lods:
            lods["1.3"] = lod12
            rmse["1.3"] = rmse["1.2"]
    valid, errors = True, []
    seen: dict[int, tuple[bool, list[str]]] = {}
    for key, solid in lods.items():
        ok, errs = seen.setdefault(id(solid), validate_solid(solid))
        valid &= ok
        errors.extend(f"LoD{key}: {e}" for e in errs)
    volumes = {k: round(solid_volume(s), 3) for k, s in lods.items()}
    quality = Quality(point_density=quality.point_density, nodata_fraction=quality.nodata_fraction,
                      rmse={k: round(v, 4) for k, v in rmse.items()}, valid=valid, errors=errors,
                      lod13_parts=len(parts), volume_m3=volumes, flags=list(flags))
    return Lod1Result(lods, quality, roof_z, ground_z, flags, parts, volumes)
