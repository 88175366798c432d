"""Building heights from airborne LiDAR: roof percentile of building points minus ground around the footprint.

Points are assigned to footprints through a label raster (rasterised footprints, 0.5 m cells), one array lookup
per point instead of a point-in-polygon test, so the LAS streams through in chunks at millions of points/s.
Conventions follow 3D BAG: roof height at the 70th percentile of roof points, ground at the 10th of nearby
ground points; footprints with no points are flagged, never given an invented height.

Units: everything is computed in metres. Footprints are in ``crs`` (default: the point clouds' own CRS); a CRS in
feet is scaled to metres, points in another CRS are reprojected into the footprints' CRS, and z is scaled by the
file's vertical unit, so heights, ground/roof z and point densities are metres and points per m² for any input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyproj
import shapely
from rasterio import features
from rasterio.transform import from_origin

from twin.lidar.classes import BUILDING_CLASS, GROUND_CLASS
from twin.sources import SourceError, pointcloud, points

ROOF_PERCENTILE = 70
GROUND_PERCENTILE = 10
GROUND_RING_M = 4.0
CELL_M = 0.5
MIN_ROOF_POINTS = 5


@dataclass
class HeightResult:
    roof_z: float | None
    ground_z: float | None
    n_points: int
    point_density: float
    flags: list[str] = field(default_factory=list)

    @property
    def height(self) -> float | None:
        """Roof minus ground (metres, never negative); None when either is missing."""
        if self.roof_z is None or self.ground_z is None:
            return None
        return max(self.roof_z - self.ground_z, 0.0)


class _Labels:
    """Footprint index raster over the footprints' extent; 0 = no footprint."""

    def __init__(self, geoms: list[shapely.Geometry]) -> None:
        minx, miny, maxx, maxy = shapely.total_bounds(geoms)
        pad = GROUND_RING_M + CELL_M
        # cells snapped to a global CELL_M lattice: a footprint's cells do not depend on which others are present
        self.x0 = np.floor((minx - pad) / CELL_M) * CELL_M
        self.y1 = np.ceil((maxy + pad) / CELL_M) * CELL_M
        self.w = int(np.ceil((maxx + pad - self.x0) / CELL_M))
        self.h = int(np.ceil((self.y1 - (miny - pad)) / CELL_M))
        t = from_origin(self.x0, self.y1, CELL_M, CELL_M)
        shape = (self.h, self.w)
        self.inside = features.rasterize(
            ((g, i + 1) for i, g in enumerate(geoms)), out_shape=shape, transform=t, dtype="int32"
        )
        rings = [g.buffer(GROUND_RING_M).difference(g) for g in geoms]
        ring = features.rasterize(((r, i + 1) for i, r in enumerate(rings)), out_shape=shape, transform=t,
                                  dtype="int32")
        self.ring = np.where(self.inside > 0, 0, ring)

    def lookup(self, grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The grid's label under each point (0 outside the grid), one array lookup per point."""
        col = np.floor((x - self.x0) / CELL_M).astype(np.int64)
        row = np.floor((self.y1 - y) / CELL_M).astype(np.int64)
        ok = (col >= 0) & (col < self.w) & (row >= 0) & (row < self.h)
        out = np.zeros(len(x), dtype=np.int64)
        out[ok] = grid[row[ok], col[ok]]
        return out


def _group(labels: np.ndarray, z: np.ndarray, n: int) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    lab, zs = labels[order], z[order]
    bounds = np.searchsorted(lab, np.arange(1, n + 2))
    return [zs[bounds[i]:bounds[i + 1]] for i in range(n)]


def per_file_crs(las_files: Sequence[Path], las_crs: str | Sequence[str | None] | None) -> list[str | None]:
    """The declared CRS of each file (for files whose header has none): one for all, or one per file."""
    if las_crs is None or isinstance(las_crs, str):
        return [las_crs] * len(las_files)
    if len(las_crs) != len(las_files):
        raise ValueError(f"las_crs has {len(las_crs)} entries for {len(las_files)} files")
    return list(las_crs)


def metric_frame(las_files: Sequence[Path], crs: str | None, las_crs: Sequence[str | None]
                 ) -> tuple[pyproj.CRS, float]:
    """(frame CRS, metres per unit): the footprints' CRS, or the files' common CRS when none is given."""
    if crs is not None:
        frame = pointcloud.parse_user_crs(crs, las_files[0] if las_files else "footprints")
    else:
        crss = [points.crs_of(p, c) for p, c in zip(las_files, las_crs, strict=True)]
        frame = crss[0]
        for p, c in zip(las_files[1:], crss[1:], strict=True):
            if not pointcloud.same_crs(frame, c):
                raise SourceError(p, "the point clouds have different CRSs; pass crs= (the footprints' CRS)")
    unit = pointcloud.xy_unit_m(frame)
    if unit is None:
        raise SourceError(las_files[0] if las_files else "footprints",
                          f"footprint CRS {frame.name!r} is geographic; heights need a projected CRS")
    return frame, unit


def to_metres(geoms: Sequence[shapely.Geometry], unit: float) -> list[shapely.Geometry]:
    """Geometries with coordinates multiplied by ``unit`` (metres per CRS unit); unchanged for metric CRSs."""
    if unit == 1.0:
        return list(geoms)
    return list(shapely.transform(np.asarray(geoms, dtype=object), lambda c: c * unit))


def footprint_heights(geoms: list[shapely.Geometry], las_files: list[Path], *, crs: str | None = None,
                      las_crs: str | Sequence[str | None] | None = None) -> list[HeightResult]:
    """Roof, ground and height (metres) per footprint from the building (6) and ground (2) classes of the files.

    ``crs`` is the footprints' CRS (default: the files' common CRS); ``las_crs`` declares the CRS of files whose
    header has none (one for all or one per file), as ``--crs`` does at ingest.
    """
    if not geoms:
        return []
    declared = per_file_crs(las_files, las_crs)
    frame, unit = metric_frame(las_files, crs, declared) if las_files else (None, 1.0)
    labels = _Labels(to_metres(geoms, unit))
    n = len(geoms)
    roof_parts: list[tuple[np.ndarray, np.ndarray]] = []
    ground_parts: list[tuple[np.ndarray, np.ndarray]] = []
    for path, declared_crs in zip(las_files, declared, strict=True):
        for c in points.iter_points(path, crs=declared_crs, to_crs=frame if crs is not None else None):
            b = c["classification"] == BUILDING_CLASS
            lab = labels.lookup(labels.inside, c["x"][b], c["y"][b])
            keep = lab > 0
            roof_parts.append((lab[keep], c["z"][b][keep]))
            g = c["classification"] == GROUND_CLASS
            lab = labels.lookup(labels.ring, c["x"][g], c["y"][g])
            keep = lab > 0
            ground_parts.append((lab[keep], c["z"][g][keep]))

    def cat(parts):
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    roofs = _group(*cat(roof_parts), n)
    grounds = _group(*cat(ground_parts), n)
    areas = shapely.area(np.asarray(geoms, dtype=object)) * unit * unit
    out = []
    for i in range(n):
        r, g = roofs[i], grounds[i]
        flags = []
        roof_z = float(np.percentile(r, ROOF_PERCENTILE)) if len(r) >= MIN_ROOF_POINTS else None
        ground_z = float(np.percentile(g, GROUND_PERCENTILE)) if len(g) else None
        if roof_z is None:
            flags.append("no_roof_points" if len(r) == 0 else "too_few_roof_points")
        if ground_z is None:
            flags.append("no_ground_points")
        out.append(HeightResult(roof_z, ground_z, int(len(r)), float(len(r) / areas[i]) if areas[i] else 0.0, flags))
    return out
