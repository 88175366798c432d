"""Ground filter for airborne point clouds: a grid-based SMRF (simple morphological filter, Pingel et al. 2013).

Two streaming passes over the files, memory bounded by the grid, not by the number of points:

1. every point lands in a ``cell``-sized grid keeping the lowest elevation of each cell (``bincount`` /
   ``minimum.at``); empty cells are inpainted (GDAL FillNodata);
2. a progressive morphological opening with square windows of radius 1 .. ``window`` cells marks cells whose
   elevation drops by more than ``slope`` x window size when opened as objects (roofs, canopy); the minimum surface of
   the remaining cells, inpainted under the objects, is the provisional ground surface;
3. second pass: a point is ground when it lies within ``threshold + scalar x local slope`` of that surface
   (bilinear interpolation at the point).

``use_existing="auto"`` trusts a file's own ground classes (ASPRS 2, 8, 11) when they cover a plausible share of the
points (5-95 %), and runs the filter otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from affine import Affine
from numpy.lib.stride_tricks import sliding_window_view
from rasterio.fill import fillnodata

from twin.lidar.classes import GROUND_CLASSES, NOISE_CLASSES
from twin.sources import pointcloud, points

PLAUSIBLE_GROUND_SHARE = (0.05, 0.95)  # share of class-2 points for "auto" to trust a file's classes

UseExisting = bool | Literal["auto"]


@dataclass
class GroundSurface:
    """The provisional ground surface of a grid-based SMRF: elevations per cell and the cells judged objects."""

    transform: Affine
    z: np.ndarray  # float64 ground elevation per cell (filled everywhere)
    objects: np.ndarray  # bool, cells removed by the morphological opening
    empty: np.ndarray  # bool, cells without any point
    slope: np.ndarray  # float64 local slope (rise over run) of the surface

    @property
    def shape(self) -> tuple[int, int]:
        return self.z.shape

    def sample(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bilinear surface elevation and nearest-cell slope at points (x, y)."""
        h, w = self.shape
        inv = ~self.transform
        col = inv.a * x + inv.b * y + inv.c - 0.5  # fractional index of cell centres
        row = inv.d * x + inv.e * y + inv.f - 0.5
        c0 = np.clip(np.floor(col), 0, max(w - 2, 0)).astype(np.int64)
        r0 = np.clip(np.floor(row), 0, max(h - 2, 0)).astype(np.int64)
        c1, r1 = np.minimum(c0 + 1, w - 1), np.minimum(r0 + 1, h - 1)
        fc = np.clip(col - c0, 0.0, 1.0)
        fr = np.clip(row - r0, 0.0, 1.0)
        z = self.z
        top = z[r0, c0] * (1 - fc) + z[r0, c1] * fc
        bot = z[r1, c0] * (1 - fc) + z[r1, c1] * fc
        rn = np.clip(np.rint(row), 0, h - 1).astype(np.int64)
        cn = np.clip(np.rint(col), 0, w - 1).astype(np.int64)
        return top * (1 - fr) + bot * fr, self.slope[rn, cn]


def _as_paths(paths: Path | str | Iterable[Path | str]) -> list[Path]:
    if isinstance(paths, str | Path):
        return [Path(paths)]
    return [Path(p) for p in paths]


def bounds_m(paths: Sequence[Path], crs: str | None = None) -> tuple[float, float, float, float]:
    """Union of the files' header extents, in the metres :func:`points.iter_points` yields (no reprojection)."""
    boxes = []
    for p in paths:
        info = pointcloud.header_info(p, crs)
        f = info["units"]["xy_m"] or 1.0
        boxes.append([v * f for v in info["bbox"]])
    b = np.asarray(boxes, dtype=np.float64)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def grid_for(bounds: Sequence[float], cell: float) -> tuple[Affine, tuple[int, int]]:
    """North-up grid of ``cell``-sized cells covering ``bounds`` (snapped outward to multiples of ``cell``)."""
    x0, y0 = np.floor(bounds[0] / cell) * cell, np.floor(bounds[1] / cell) * cell
    x1, y1 = np.ceil(bounds[2] / cell) * cell, np.ceil(bounds[3] / cell) * cell
    w = max(int(round((x1 - x0) / cell)), 1) + (1 if x1 == bounds[2] else 0)
    h = max(int(round((y1 - y0) / cell)), 1) + (1 if y1 == bounds[3] else 0)
    return Affine(cell, 0.0, float(x0), 0.0, -cell, float(y0 + h * cell)), (h, w)


def cell_index(transform: Affine, shape: tuple[int, int], x: np.ndarray, y: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Flat cell index of each point and a mask of the points inside the grid."""
    h, w = shape
    inv = ~transform
    col = np.floor(inv.a * x + inv.b * y + inv.c).astype(np.int64)
    row = np.floor(inv.d * x + inv.e * y + inv.f).astype(np.int64)
    ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    return np.where(ok, row * w + col, 0), ok


def fill_grid(values: np.ndarray, valid: np.ndarray, distance: float | None = None) -> np.ndarray:
    """Inverse-distance inpainting of invalid cells from valid ones (GDAL FillNodata), float64 out."""
    if valid.all() or not valid.any():
        return values.astype(np.float64)
    d = float(distance if distance is not None else max(values.shape))
    base = float(np.mean(values[valid]))  # fill relative to the mean keeps float32 precision on high elevations
    out = fillnodata(np.where(valid, values - base, 0).astype(np.float32), mask=valid.astype(np.uint8),
                     max_search_distance=d, smoothing_iterations=0)
    out = out.astype(np.float64) + base
    return np.where(valid, values, out)


def _filter1d(a: np.ndarray, r: int, axis: int, op: np.ufunc) -> np.ndarray:
    """Running min/max of width 2r+1 along one axis (edge values repeat)."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, r)
    win = sliding_window_view(np.pad(a, pad, mode="edge"), 2 * r + 1, axis=axis)
    return op.reduce(win, axis=-1)


def min_filter(a: np.ndarray, r: int) -> np.ndarray:
    """Grey erosion by a (2r+1)² square (separable)."""
    return a if r < 1 else _filter1d(_filter1d(a, r, 0, np.minimum), r, 1, np.minimum)


def max_filter(a: np.ndarray, r: int) -> np.ndarray:
    """Grey dilation by a (2r+1)² square (separable)."""
    return a if r < 1 else _filter1d(_filter1d(a, r, 0, np.maximum), r, 1, np.maximum)


def _slope(z: np.ndarray, cell: float) -> np.ndarray:
    gy, gx = np.gradient(z, cell) if min(z.shape) > 1 else (np.zeros_like(z), np.zeros_like(z))
    return np.hypot(gx, gy)


def min_grid(paths: Iterable[Path | str], transform: Affine, shape: tuple[int, int], *, crs: str | None = None,
             chunk: int = pointcloud.CHUNK) -> np.ndarray:
    """Lowest elevation per cell (NaN where empty), noise classes excluded; one streaming pass."""
    n = shape[0] * shape[1]
    zmin = np.full(n, np.inf)
    for path in _as_paths(paths):
        for c in points.iter_points(path, chunk, crs=crs):
            idx, ok = cell_index(transform, shape, c["x"], c["y"])
            ok &= ~np.isin(c["classification"], NOISE_CLASSES)
            np.minimum.at(zmin, idx[ok], c["z"][ok])
    zmin[~np.isfinite(zmin)] = np.nan
    return zmin.reshape(shape)


def smrf_surface(zmin: np.ndarray, transform: Affine, *, slope: float = 0.15, window: float = 18.0,
                 low_outlier: float = 5.0) -> GroundSurface:
    """Provisional ground surface from a minimum-elevation grid by progressive morphological opening (SMRF)."""
    cell = abs(transform.a)
    empty = ~np.isfinite(zmin)
    z = fill_grid(np.nan_to_num(zmin), ~empty)
    # low outliers (multipath, birds below ground): cells far below the median of their neighbourhood
    if low_outlier > 0:
        nb = max_filter(min_filter(z, 1), 1)  # opening-closing proxy of the neighbourhood level
        low = (nb - z > low_outlier) & ~empty
        if low.any():
            z = fill_grid(z, ~low)
            empty = empty | low
    objects = np.zeros(z.shape, dtype=bool)
    last = z
    for r in range(1, max(int(np.ceil(window / cell)), 1) + 1):
        opened = max_filter(min_filter(last, r), r)
        objects |= (last - opened) > slope * r * cell
        last = opened
    ground = ~objects & ~empty
    if not ground.any():
        ground = ~empty
    surf = fill_grid(np.where(ground, z, 0.0), ground)
    return GroundSurface(transform=transform, z=surf, objects=objects, empty=empty, slope=_slope(surf, cell))


def ground_surface(paths: Path | str | Iterable[Path | str], *, crs: str | None = None, cell: float = 1.0,
                   slope: float = 0.15, window: float = 18.0, chunk: int = pointcloud.CHUNK) -> GroundSurface:
    """The SMRF ground surface of point-cloud files on a ``cell`` grid covering their header extent."""
    ps = _as_paths(paths)
    transform, shape = grid_for(bounds_m(ps, crs), cell)
    return smrf_surface(min_grid(ps, transform, shape, crs=crs, chunk=chunk), transform, slope=slope, window=window)


def existing_ground_share(paths: Path | str | Iterable[Path | str], crs: str | None = None) -> float:
    """Share of points already classified ground (ASPRS 2, 8, 11); one streaming pass."""
    total, ground = 0, 0
    for p in _as_paths(paths):
        for c in points.iter_points(p, crs=crs):
            cls = c["classification"]
            total += len(cls)
            ground += int(np.count_nonzero(np.isin(cls, GROUND_CLASSES)))
    return ground / total if total else 0.0


def trusts_existing(paths: Path | str | Iterable[Path | str], use_existing: UseExisting = "auto",
                    crs: str | None = None) -> bool:
    """Whether to use the files' own ground classes: forced by a bool, or 'auto' when their share is plausible."""
    if use_existing != "auto":
        return bool(use_existing)
    lo, hi = PLAUSIBLE_GROUND_SHARE
    return lo <= existing_ground_share(paths, crs) <= hi


def classify_ground(paths: Path | str | Iterable[Path | str], *, crs: str | None = None, cell: float = 1.0,
                    slope: float = 0.15, window: float = 18.0, threshold: float = 0.5, scalar: float = 1.25,
                    use_existing: UseExisting = "auto", surface: GroundSurface | None = None,
                    chunk: int = pointcloud.CHUNK) -> Iterator[np.ndarray]:
    """Boolean ground flag per point, one array per chunk of :func:`points.iter_points`, files in order.

    With trusted existing classes (see :func:`trusts_existing`) the flags are the file's ground classes; otherwise a
    point is ground when within ``threshold + scalar * slope`` metres of the SMRF surface.
    """
    ps = _as_paths(paths)
    if surface is None and trusts_existing(ps, use_existing, crs):
        for p in ps:
            for c in points.iter_points(p, chunk, crs=crs):
                yield np.isin(c["classification"], GROUND_CLASSES)
        return
    surf = surface or ground_surface(ps, crs=crs, cell=cell, slope=slope, window=window, chunk=chunk)
    for p in ps:
        for c in points.iter_points(p, chunk, crs=crs):
            gz, s = surf.sample(c["x"], c["y"])
            yield (np.abs(c["z"] - gz) <= threshold + scalar * s) & ~np.isin(c["classification"], NOISE_CLASSES)


def ground_mask(paths: Path | str | Iterable[Path | str], **kwargs) -> np.ndarray:
    """All ground flags of :func:`classify_ground` as one array (file order); for files that fit in memory."""
    parts = list(classify_ground(paths, **kwargs))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


def agreement(paths: Path | str | Iterable[Path | str], *, crs: str | None = None, reference: Sequence[int] = (2,),
              use_existing: UseExisting = False, **kwargs) -> dict[str, float | int]:
    """Confusion of the filter's ground flags against the files' class ``reference`` (default 2), and the agreement.

    Returns ``tp`` (both ground), ``fp`` (filter ground, file not), ``fn``, ``tn``, ``n``, ``agreement`` (share of
    points where both agree), ``precision``, ``recall`` and Cohen's ``kappa``.
    """
    ps = _as_paths(paths)
    flags = classify_ground(ps, crs=crs, use_existing=use_existing, **kwargs)
    tp = fp = fn = tn = 0
    chunk = kwargs.get("chunk", pointcloud.CHUNK)
    for p in ps:
        for c in points.iter_points(p, chunk, crs=crs):
            g = next(flags)
            ref = np.isin(c["classification"], reference)
            tp += int(np.count_nonzero(g & ref))
            fp += int(np.count_nonzero(g & ~ref))
            fn += int(np.count_nonzero(~g & ref))
            tn += int(np.count_nonzero(~g & ~ref))
    n = tp + fp + fn + tn
    agree = (tp + tn) / n if n else 0.0
    pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n) if n else 0.0
    return {
        "n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn, "agreement": agree,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "kappa": (agree - pe) / (1 - pe) if pe < 1 else 1.0,
    }
