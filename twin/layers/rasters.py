"""Raster layers: area-weighted zonal statistics of a raster band per H3 cell (means, class fractions).

Pixel weighting convention (the one the tests check against ``rasterio.features.geometry_mask``):

* a pixel whose four corners lie in one cell lies wholly in it (hexagons are convex): its whole area goes there;
* any other pixel is split into ``k × k`` equal sub-pixels; each sub-pixel's area goes to the cell holding its centre
  (the H3 cell of that position). With ``k`` = 4 and 5 m pixels the split is resolved to 1.25 m.

So every valid pixel's area is assigned exactly once, the output ``weight`` is the covered area in m² (masked /
no-data pixels cover nothing), ``value`` the area-weighted mean of the band, and ``count`` the number of sub-pixel
samples (``k²`` per whole pixel). The area-weighted mean over any set of cells that covers the raster equals the
raster's (area-weighted) mean. Rasters are processed in row blocks, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from affine import Affine

from data_models import Aggregation
from twin.geo.crs import horizontal, transform_xy
from twin.layers.h3index import latlng_to_cells
from twin.layers.values import VALUE_SCHEMA, aggregate, make_values

WGS84 = "EPSG:4326"
EARTH_RADIUS_M = 6_371_008.8


def _pixel_area_m2(transform: Affine, crs: str, rows: np.ndarray, lat: np.ndarray | None) -> np.ndarray:
    """Area in m² of the pixels of ``rows`` (per row; geographic CRSs use the latitude of each row's centres)."""
    det = abs(transform.a * transform.e - transform.b * transform.d)
    h = horizontal(crs)
    if h.is_geographic:
        assert lat is not None
        return det * (np.pi / 180.0) ** 2 * EARTH_RADIUS_M**2 * np.cos(np.radians(lat))
    unit = float(h.axis_info[0].unit_conversion_factor) if h.axis_info else 1.0
    return np.full(len(rows), det * unit * unit)


def _cells_at(transform: Affine, crs: str, rows: np.ndarray, cols: np.ndarray, res: int) -> np.ndarray:
    """H3 cells of the raster positions (fractional rows/cols; pixel (r, c) spans [r, r+1) × [c, c+1))."""
    x = transform.c + transform.a * cols + transform.b * rows
    y = transform.f + transform.d * cols + transform.e * rows
    lng, lat = transform_xy(x, y, crs, WGS84)
    return latlng_to_cells(lat, lng, res)


def _group(cells: np.ndarray, vw: np.ndarray, w: np.ndarray, n: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct cell: (cell, sum of value×weight, sum of weight, sum of count)."""
    uniq, inv = np.unique(cells, return_inverse=True)
    k = len(uniq)
    return (uniq, np.bincount(inv, vw, k), np.bincount(inv, w, k),
            np.bincount(inv, n.astype(np.float64), k).round().astype(np.int64))


def _block(data: np.ma.MaskedArray, transform: Affine, crs: str, res: int, k: int, r0: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grouped sums (cell, Σvalue·area, Σarea, Σsamples) of one block of rows starting at raster row ``r0``."""
    h, w = data.shape
    vals = np.ma.getdata(data).astype(np.float64)
    valid = ~np.ma.getmaskarray(data) & np.isfinite(vals)
    # cells of all pixel corners of the block: (h+1) × (w+1)
    cr, cc = np.meshgrid(np.arange(r0, r0 + h + 1, dtype=np.float64), np.arange(w + 1, dtype=np.float64),
                         indexing="ij")
    corners = _cells_at(transform, crs, cr.ravel(), cc.ravel(), res).reshape(h + 1, w + 1)
    c00 = corners[:-1, :-1]
    whole = (c00 == corners[1:, :-1]) & (c00 == corners[:-1, 1:]) & (c00 == corners[1:, 1:]) & (c00 != 0)
    rows = np.arange(r0, r0 + h)
    lat = None
    if horizontal(crs).is_geographic:
        lat = transform.f + transform.d * (w / 2.0) + transform.e * (rows + 0.5)
    area = np.broadcast_to(_pixel_area_m2(transform, crs, rows, lat)[:, None], (h, w))

    inside = whole & valid
    cells = [c00[inside]]
    vw = [vals[inside] * area[inside]]
    ws = [area[inside]]
    ns = [np.full(int(inside.sum()), k * k, np.int64)]

    split = ~whole & valid
    if split.any():
        pr, pc = np.nonzero(split)
        off = (np.arange(k, dtype=np.float64) + 0.5) / k
        shape = (len(pr), k, k)
        sr = np.broadcast_to(pr[:, None, None] + r0 + off[None, :, None], shape)
        sc = np.broadcast_to(pc[:, None, None] + off[None, None, :], shape)
        sub = _cells_at(transform, crs, sr.ravel(), sc.ravel(), res)
        sub_area = np.repeat(area[pr, pc] / (k * k), k * k)
        sub_val = np.repeat(vals[pr, pc], k * k)
        ok = sub != 0
        cells.append(sub[ok])
        vw.append(sub_val[ok] * sub_area[ok])
        ws.append(sub_area[ok])
        ns.append(np.ones(int(ok.sum()), np.int64))
    return _group(np.concatenate(cells), np.concatenate(vw), np.concatenate(ws), np.concatenate(ns))


def raster_values(data: np.ndarray, transform: Affine, crs: str, res: int, *, k: int = 4,
                  nodata: float | None = None, t: datetime | None = None, block_rows: int = 256) -> pa.Table:
    """Area-weighted mean of a 2-D band per cell at ``res`` (masked, NaN or ``nodata`` pixels left out).

    Output aggregation is ``area_weighted_mean``: ``weight`` = covered area (m²), ``count`` = sub-pixel samples.
    ``t`` stamps every row (e.g. the acquisition time) for time-varying layers.
    """
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D band, got shape {data.shape}")
    if k < 1:
        raise ValueError("k must be ≥ 1")
    band = np.ma.asarray(data)
    if nodata is not None:
        band = np.ma.masked_where(np.ma.getdata(band) == nodata, band)
    transform = Affine(*transform[:6])
    crs = str(crs)
    parts = [_block(band[r0:r0 + block_rows], transform, crs, res, k, r0) for r0 in range(0, band.shape[0],
                                                                                          block_rows)]
    cells, vw, w, n = (np.concatenate([p[i] for p in parts]) if parts else np.empty(0) for i in range(4))
    if not len(cells):
        return VALUE_SCHEMA.empty_table()
    cells, vw, w, n = _group(cells.astype(np.uint64), vw, w, n)
    tt = None if t is None else np.full(len(cells), np.datetime64(_naive_utc(t), "us"))
    return aggregate(make_values(cells, res, vw / w, t=tt, count=n, weight=w), Aggregation.area_weighted_mean)


def _naive_utc(t: datetime) -> datetime:
    """A datetime as naive UTC (aware ones converted)."""
    from datetime import UTC

    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def class_fraction_values(data: np.ndarray, transform: Affine, crs: str, res: int, classes: int | Iterable[int], *,
                          k: int = 4, nodata: float | None = None, t: datetime | None = None,
                          block_rows: int = 256) -> pa.Table:
    """Fraction (0..1) of each cell's covered area whose class is in ``classes`` (area-weighted mean of 0/1)."""
    wanted = np.atleast_1d(np.asarray(list(classes) if not np.isscalar(classes) else [classes]))
    band = np.ma.asarray(data)
    if nodata is not None:
        band = np.ma.masked_where(np.ma.getdata(band) == nodata, band)
    hit = np.isin(np.ma.getdata(band), wanted).astype(np.float32)
    frac = np.ma.MaskedArray(hit, mask=np.ma.getmaskarray(band))
    return raster_values(frac, transform, crs, res, k=k, t=t, block_rows=block_rows)


def band_values(path: Path | str, res: int, *, band: str = "ndvi", bands_option: Any = None, k: int = 4,
                t: datetime | None = None) -> pa.Table:
    """Area-weighted mean per cell of a raster file's band or spectral index ('ndvi', 'ndwi', 'brightness', …)."""
    from twin.geo import indices as ix
    from twin.sources.imagery import band_names, image_grid, read_bands

    transform, _, crs = image_grid(path)
    fn = getattr(ix, band, None) if band in ("ndvi", "ndwi", "ndbi", "brightness", "redness") else None
    if fn is not None:
        available = band_names(path, bands_option)
        names = [n for n in ("red", "green", "blue", "nir", "swir1") if n in available]
        data = fn(read_bands(path, names, bands_option=bands_option))
        if data is None:
            raise ValueError(f"{band} cannot be computed from {path} (bands: {', '.join(names)})")
    else:
        data = read_bands(path, [band], bands_option=bands_option)[band]
    return raster_values(data, transform, crs, res, k=k, t=t)
