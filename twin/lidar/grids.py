"""Airborne LiDAR gridded onto an image grid: DSM, DTM, nDSM and class fractions, streamed chunk by chunk.

Each chunk from :func:`twin.sources.points.iter_points` is binned by ``(row, col)`` of the target grid (any
affine transform and shape, e.g. an image's) and reduced into per-cell accumulators with ``bincount`` and
``ufunc.at`` — memory is one chunk plus a few grids, whatever the number of points.

* DSM: highest point of the cell (noise classes 7 and 18 excluded).
* DTM: mean (or lowest) ground-class point of the cell (ASPRS 2 ground, 8 key point, 11 road surface); the mean
  water return where a cell has water but no ground (hydro-flattening); cells without either (under roofs, dense
  canopy) are filled by inverse-distance interpolation from the edge of the gap (GDAL ``FillNodata``), so a DTM is
  defined everywhere there is one ground point at all.
* nDSM = DSM − DTM, with empty cells taking the DTM (height 0 above ground).
* Fractions of vegetation (3, 4, 5), building (6), water (9) and bridge-deck (17) points among a cell's points;
  ``water`` flags cells where water returns dominate (water returns few pulses, so empty cells take the water
  fraction of their neighbourhood before the flag is set).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.fill import fillnodata

from twin.geo.crs import normalise
from twin.lidar.classes import (
    BRIDGE_CLASS,
    BUILDING_CLASS,
    GROUND_CLASSES,
    NOISE_CLASSES,
    VEGETATION_CLASSES,
    WATER_CLASS,
)
from twin.sources import pointcloud, points

WATER_FRACTION = 0.5


@dataclass
class LidarGrids:
    """Per-cell LiDAR products on a grid; float grids use NaN for 'no data' before filling."""

    transform: Affine
    crs: str | None
    count: np.ndarray  # int32 points per cell (noise excluded)
    ground_count: np.ndarray  # int32 ground points per cell
    dsm: np.ndarray  # float32, filled (empty cells: neighbours, then DTM)
    dtm: np.ndarray  # float32, filled
    ndsm: np.ndarray  # float32, >= 0
    veg_fraction: np.ndarray  # float32 0..1
    building_fraction: np.ndarray  # float32 0..1
    water_fraction: np.ndarray  # float32 0..1 (empty cells: from neighbours)
    bridge_fraction: np.ndarray  # float32 0..1
    water: np.ndarray  # bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.count.shape

    @property
    def density(self) -> float:
        """Mean points per square metre over cells that have points."""
        cell = abs(self.transform.a * self.transform.e)
        has = self.count > 0
        return float(self.count[has].mean() / cell) if has.any() else 0.0


def _fill(values: np.ndarray, valid: np.ndarray, distance: float) -> np.ndarray:
    """Inverse-distance fill of invalid cells from valid ones within ``distance`` cells (GDAL FillNodata)."""
    if valid.all() or not valid.any():
        return values
    out = fillnodata(np.where(valid, values, 0).astype(np.float32), mask=valid.astype(np.uint8),
                     max_search_distance=float(distance), smoothing_iterations=0)
    return out.astype(np.float32)


def grid_lidar(las_paths: Iterable[Path | str], transform: Affine, shape: tuple[int, int], *,
               grid_crs: str | None = None, points_crs: str | None = None, dtm_stat: str = "mean",
               chunk: int = pointcloud.CHUNK) -> LidarGrids:
    """Grid LAS/LAZ files onto (transform, shape): DSM, DTM, nDSM, class fractions, water flag.

    ``points_crs`` (the files' CRS) and ``grid_crs`` (the grid's) reproject points when both are given and differ.
    """
    if dtm_stat not in ("mean", "min"):
        raise ValueError(f"dtm_stat must be 'mean' or 'min', got {dtm_stat!r}")
    h, w = shape
    n = h * w
    inv = ~transform
    count = np.zeros(n, np.int64)
    gcount = np.zeros(n, np.int64)
    gsum = np.zeros(n, np.float64)
    gmin = np.full(n, np.inf)
    zmax = np.full(n, -np.inf)
    veg = np.zeros(n, np.int64)
    bld = np.zeros(n, np.int64)
    wat = np.zeros(n, np.int64)
    bri = np.zeros(n, np.int64)
    wsum = np.zeros(n, np.float64)
    for path in las_paths:
        # iter_points yields metres and reprojects into the grid CRS itself (feet files, files without a CRS)
        for c in points.iter_points(Path(path), chunk, crs=points_crs, to_crs=grid_crs):
            x, y = c["x"], c["y"]
            col_f = inv.a * x + inv.b * y + inv.c
            row_f = inv.d * x + inv.e * y + inv.f
            cls = c["classification"]
            ok = (col_f >= 0) & (col_f < w) & (row_f >= 0) & (row_f < h) & ~np.isin(cls, NOISE_CLASSES)
            if not ok.any():
                continue
            idx = row_f[ok].astype(np.int64) * w + col_f[ok].astype(np.int64)
            z, cls = c["z"][ok], cls[ok]
            count += np.bincount(idx, minlength=n)
            np.maximum.at(zmax, idx, z)
            g = np.isin(cls, GROUND_CLASSES)
            gi, gz = idx[g], z[g]
            gcount += np.bincount(gi, minlength=n)
            gsum += np.bincount(gi, weights=gz, minlength=n)
            np.minimum.at(gmin, gi, gz)
            veg += np.bincount(idx[np.isin(cls, VEGETATION_CLASSES)], minlength=n)
            bld += np.bincount(idx[cls == BUILDING_CLASS], minlength=n)
            w_ = cls == WATER_CLASS
            wat += np.bincount(idx[w_], minlength=n)
            wsum += np.bincount(idx[w_], weights=z[w_], minlength=n)
            bri += np.bincount(idx[cls == BRIDGE_CLASS], minlength=n)
    has = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ground = np.where(gcount > 0, gsum / np.maximum(gcount, 1) if dtm_stat == "mean" else gmin, np.nan)
        # hydro-flattening: the water surface is the terrain of cells with water returns and no ground
        ground = np.where((gcount == 0) & (wat > 0), wsum / np.maximum(wat, 1), ground)
        frac = {k: np.where(has, v / np.maximum(count, 1), 0.0).astype(np.float32).reshape(shape)
                for k, v in (("veg", veg), ("bld", bld), ("wat", wat), ("bri", bri))}
    has_g = np.isfinite(ground)
    big = float(max(h, w))
    dtm = _fill(np.nan_to_num(ground).reshape(shape), has_g.reshape(shape), big)
    if not has_g.any():
        # no ground at all: the lowest surface stands in (nDSM then measures relief, not heights)
        dtm = np.full(shape, np.min(zmax[has]) if has.any() else 0.0, np.float32)
    dsm_obs = np.where(has, zmax, 0.0).reshape(shape).astype(np.float32)
    dsm = _fill(dsm_obs, has.reshape(shape), 2.0)
    near = _fill(np.ones(shape, np.float32), has.reshape(shape), 2.0) > 0.5  # cells filled from neighbours
    dsm = np.where(has.reshape(shape) | near, dsm, dtm).astype(np.float32)
    ndsm = np.maximum(dsm - dtm, 0.0).astype(np.float32)
    water_fraction = _fill(frac["wat"], has.reshape(shape), 3.0)
    water_fraction = np.where(has.reshape(shape) | (water_fraction > 0), water_fraction, 0.0).astype(np.float32)
    return LidarGrids(
        transform=transform,
        crs=normalise(grid_crs) if grid_crs else None,
        count=count.reshape(shape).astype(np.int32),
        ground_count=gcount.reshape(shape).astype(np.int32),
        dsm=dsm,
        dtm=dtm.astype(np.float32),
        ndsm=ndsm,
        veg_fraction=frac["veg"],
        building_fraction=frac["bld"],
        water_fraction=water_fraction,
        bridge_fraction=frac["bri"],
        water=water_fraction >= WATER_FRACTION,
    )
