"""Point extraction per building footprint: the roof (class 6) points inside it and the ground (class 2) around it.

The files stream through in chunks; each chunk is first thinned with a coarse raster of the footprints (one array
lookup per point, so points far from any building are dropped at once), only the points near buildings are kept, and
each footprint then takes its points with an exact, vectorised point-in-polygon test on the candidates of its bounding
box (found through a grid-sorted index). Overlapping or touching footprints each get all their points, and memory is
bounded by the points near buildings (fine for a tile). Units follow :mod:`twin.lidar.heights`: metres.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from rasterio import features
from rasterio.transform import from_origin

from twin.lidar.classes import BUILDING_CLASS, GROUND_CLASS
from twin.lidar.heights import GROUND_RING_M, metric_frame, per_file_crs, to_metres
from twin.sources import points

MASK_CELL_M = 1.0
INDEX_CELL_M = 8.0

__all__ = ["BuildingPoints", "building_points", "GROUND_RING_M"]


@dataclass
class BuildingPoints:
    """The roof points inside one footprint and the ground points in a ring around it (metres, metric frame)."""

    footprint: shapely.Geometry
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    ground_x: np.ndarray
    ground_y: np.ndarray
    ground_z: np.ndarray

    @property
    def n_points(self) -> int:
        """Number of roof (building-class) points inside the footprint."""
        return int(len(self.z))

    @property
    def area(self) -> float:
        """Footprint area in m²."""
        return float(self.footprint.area)


class _Mask:
    """Binary raster of the footprints grown by the ground ring: which points may matter at all."""

    def __init__(self, geoms: list[shapely.Geometry]) -> None:
        minx, miny, maxx, maxy = shapely.total_bounds(geoms)
        pad = GROUND_RING_M + 2 * MASK_CELL_M
        self.x0 = np.floor((minx - pad) / MASK_CELL_M) * MASK_CELL_M
        self.y1 = np.ceil((maxy + pad) / MASK_CELL_M) * MASK_CELL_M
        self.w = int(np.ceil((maxx + pad - self.x0) / MASK_CELL_M))
        self.h = int(np.ceil((self.y1 - (miny - pad)) / MASK_CELL_M))
        t = from_origin(self.x0, self.y1, MASK_CELL_M, MASK_CELL_M)
        shape = (self.h, self.w)
        grown = shapely.buffer(np.asarray(geoms, dtype=object), GROUND_RING_M + MASK_CELL_M)
        self.near = features.rasterize(((g, 1) for g in grown), out_shape=shape, transform=t, all_touched=True,
                                       dtype="uint8").astype(bool)
        self.inside = features.rasterize(((g, 1) for g in geoms), out_shape=shape, transform=t, all_touched=True,
                                         dtype="uint8").astype(bool)

    def lookup(self, grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True where the point falls on a set cell of ``grid`` (False outside the raster)."""
        col = np.floor((x - self.x0) / MASK_CELL_M).astype(np.int64)
        row = np.floor((self.y1 - y) / MASK_CELL_M).astype(np.int64)
        ok = (col >= 0) & (col < self.w) & (row >= 0) & (row < self.h)
        out = np.zeros(len(x), dtype=bool)
        out[ok] = grid[row[ok], col[ok]]
        return out


class _GridIndex:
    """Points sorted by a coarse grid cell so the candidates in a bounding box are a few contiguous slices."""

    def __init__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, x0: float, y0: float, w: int) -> None:
        self.x0, self.y0, self.w = x0, y0, w
        key = self._key(x, y)
        order = np.argsort(key, kind="stable")
        self.key, self.x, self.y, self.z = key[order], x[order], y[order], z[order]

    def _cells(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        col = np.floor((np.asarray(x) - self.x0) / INDEX_CELL_M).astype(np.int64)
        row = np.floor((np.asarray(y) - self.y0) / INDEX_CELL_M).astype(np.int64)
        return np.clip(row, 0, None), np.clip(col, 0, self.w - 1)

    def _key(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        row, col = self._cells(x, y)
        return row * self.w + col

    def within(self, geom: shapely.Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The points inside ``geom`` (exact test on the candidates of its bounding box)."""
        minx, miny, maxx, maxy = geom.bounds
        r0, c0 = self._cells(minx, miny)
        r1, c1 = self._cells(maxx, maxy)
        rows = np.arange(int(r0), int(r1) + 1)
        lo = np.searchsorted(self.key, rows * self.w + int(c0), side="left")
        hi = np.searchsorted(self.key, rows * self.w + int(c1), side="right")
        if not len(rows) or (hi - lo).sum() == 0:
            empty = np.zeros(0)
            return empty, empty, empty
        idx = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])  # one range per grid row
        cx, cy = self.x[idx], self.y[idx]
        keep = shapely.contains_xy(geom, cx, cy)
        return cx[keep], cy[keep], self.z[idx][keep]


def building_points(footprints: Sequence[shapely.Geometry], las_paths: Sequence[Path | str], *,
                    crs: str | None, las_crs: str | Sequence[str | None] | None = None) -> list[BuildingPoints]:
    """Roof (class 6) points inside each footprint and ground (class 2) points within ``GROUND_RING_M`` around it.

    ``crs`` is the footprints' CRS (None: the files' common CRS); ``las_crs`` declares the CRS of files without one.
    Points are reprojected into the footprints' frame; all coordinates returned are metres (footprints included).
    """
    paths = [Path(p) for p in las_paths]
    if not footprints:
        return []
    declared = per_file_crs(paths, las_crs)
    frame, unit = metric_frame(paths, crs, declared) if paths else (None, 1.0)
    geoms = to_metres(list(footprints), unit)
    mask = _Mask(geoms)
    roof: list[tuple[np.ndarray, ...]] = []
    ground: list[tuple[np.ndarray, ...]] = []
    for path, declared_crs in zip(paths, declared, strict=True):
        for c in points.iter_points(path, crs=declared_crs, to_crs=frame if crs is not None else None):
            cls = c["classification"]
            for target, klass, grid in ((roof, BUILDING_CLASS, mask.inside), (ground, GROUND_CLASS, mask.near)):
                sel = cls == klass
                x, y, z = c["x"][sel], c["y"][sel], c["z"][sel]
                keep = mask.lookup(grid, x, y)
                if keep.any():
                    target.append((x[keep], y[keep], z[keep]))

    def index(parts: list[tuple[np.ndarray, ...]]) -> _GridIndex:
        arrs = [np.concatenate([p[i] for p in parts]) if parts else np.zeros(0) for i in range(3)]
        return _GridIndex(*arrs, x0=float(mask.x0), y0=float(mask.y1 - mask.h * MASK_CELL_M),
                          w=int(np.ceil(mask.w * MASK_CELL_M / INDEX_CELL_M)) + 1)

    roof_idx, ground_idx = index(roof), index(ground)
    del roof, ground
    out = []
    for g in geoms:
        shapely.prepare(g)
        x, y, z = roof_idx.within(g)
        ring = g.buffer(GROUND_RING_M).difference(g)
        shapely.prepare(ring)
        gx, gy, gz = ground_idx.within(ring)
        out.append(BuildingPoints(g, x, y, z, gx, gy, gz))
    return out
