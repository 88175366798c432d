"""Building heights from airborne LiDAR: roof percentile of building points minus ground around the footprint.

Points are assigned to footprints through a label raster (rasterised footprints, 0.5 m cells), one array lookup
per point instead of a point-in-polygon test, so the LAS streams through in chunks at millions of points/s.
Conventions follow 3D BAG: roof height at the 70th percentile of roof points, ground at the 10th of nearby
ground points; footprints with no points are flagged, never given an invented height.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from rasterio import features
from rasterio.transform import from_origin

from twin.sources import pointcloud

ROOF_PERCENTILE = 70
GROUND_PERCENTILE = 10
GROUND_RING_M = 4.0
CELL_M = 0.5
MIN_ROOF_POINTS = 5
BUILDING_CLASS, GROUND_CLASS = 6, 2


@dataclass
class HeightResult:
    roof_z: float | None
    ground_z: float | None
    n_points: int
    point_density: float
    flags: list[str] = field(default_factory=list)

    @property
    def height(self) -> float | None:
        if self.roof_z is None or self.ground_z is None:
            return None
        return max(self.roof_z - self.ground_z, 0.0)


class _Labels:
    """Footprint index raster over the footprints' extent; 0 = no footprint."""

    def __init__(self, geoms: list[shapely.Geometry]) -> None:
        minx, miny, maxx, maxy = shapely.total_bounds(geoms)
        pad = GROUND_RING_M + CELL_M
        self.x0, self.y1 = minx - pad, maxy + pad
        self.w = int(np.ceil((maxx - minx + 2 * pad) / CELL_M))
        self.h = int(np.ceil((maxy - miny + 2 * pad) / CELL_M))
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


def footprint_heights(geoms: list[shapely.Geometry], las_files: list[Path]) -> list[HeightResult]:
    """Roof, ground and height per footprint from the building (6) and ground (2) classes of the LAS files."""
    if not geoms:
        return []
    labels = _Labels(geoms)
    n = len(geoms)
    roof_parts: list[tuple[np.ndarray, np.ndarray]] = []
    ground_parts: list[tuple[np.ndarray, np.ndarray]] = []
    for path in las_files:
        for c in pointcloud.iter_points(path):
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
    areas = shapely.area(np.asarray(geoms, dtype=object))
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
