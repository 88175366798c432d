"""Point layers: counts and statistics of points per H3 cell (and time bucket), incl. streamed LiDAR point counts.

Points come in a projected CRS (the store's) or lon/lat; they are transformed to WGS84 and indexed with
:func:`twin.layers.h3index.latlng_to_cells` at the layer's finest resolution. Every point lands in exactly one cell
(H3 assigns each position to one cell, vertices and edges included), so counts are conserved by construction.
Points without a finite position (or, for statistics, without a finite value) are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from data_models import Aggregation
from twin.geo.crs import horizontal, transform_xy
from twin.layers.h3index import latlng_to_cells
from twin.layers.values import VALUE_SCHEMA, aggregate, make_values

Stat = Literal["count", "sum", "mean", "max", "min"]
WGS84 = "EPSG:4326"


def to_lnglat(x: np.ndarray, y: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude (WGS84) of x/y arrays in ``crs``, vectorised (identity for WGS84 input)."""
    return transform_xy(np.asarray(x, np.float64), np.asarray(y, np.float64), crs, WGS84)


def xy_to_cells(x: np.ndarray, y: np.ndarray, crs: str, res: int) -> np.ndarray:
    """H3 cells (uint64; 0 where a position is not finite) of x/y positions given in ``crs``."""
    lng, lat = to_lnglat(x, y, crs)
    return latlng_to_cells(lat, lng, res)


def _as_utc_us(t: np.ndarray) -> np.ndarray:
    """Times as datetime64[us] (naive values taken as UTC; tz-aware pandas/arrow input converted to UTC)."""
    if isinstance(t, pa.ChunkedArray | pa.Array):
        t = t.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)
    elif hasattr(t, "dt") and getattr(t.dt, "tz", None) is not None:  # pandas Series with a zone
        t = t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return np.asarray(t, dtype="datetime64[us]")


def cell_values(cells: np.ndarray, res: int, *, values: np.ndarray | None = None, t: np.ndarray | None = None,
                bucket_s: int | None = None, stat: Stat = "count", origin: datetime | None = None) -> pa.Table:
    """Values table of per-cell (per time bucket) statistics of already indexed samples (cell 0 = no position)."""
    cells = np.asarray(cells, np.uint64)
    keep = cells != 0
    if stat != "count":
        if values is None:
            raise ValueError(f"stat {stat!r} needs values")
        values = np.asarray(values, np.float64)
        keep &= np.isfinite(values)
    if t is not None:
        t = _as_utc_us(t)
        keep &= ~np.isnat(t)
        t = t[keep]
    cells = cells[keep]
    v = np.ones(len(cells)) if stat == "count" else values[keep]  # type: ignore[index]
    if stat not in ("count", "sum", "mean", "max", "min"):
        raise ValueError(f"unknown stat {stat!r}; use count, sum, mean, max or min")
    if not len(cells):
        return VALUE_SCHEMA.empty_table()
    table = make_values(cells, res, v, t=t)
    return aggregate(table, Aggregation(stat), bucket_s=bucket_s if t is not None else None, origin=origin)


def point_values(x: np.ndarray, y: np.ndarray, crs: str, res: int, *, values: np.ndarray | None = None,
                 t: np.ndarray | None = None, bucket_s: int | None = None, stat: Stat = "count",
                 origin: datetime | None = None) -> pa.Table:
    """Values table of point counts or statistics (sum/mean/max/min of ``values``) per cell at ``res``.

    ``t`` (datetime64, naive = UTC) splits the values by time: into ``bucket_s``-second buckets aligned on
    ``origin`` (default the Unix epoch) when given, else per distinct time. ``count`` is the number of points behind
    each value, so means roll up exactly.
    """
    return cell_values(xy_to_cells(x, y, crs, res), res, values=values, t=t, bucket_s=bucket_s, stat=stat,
                       origin=origin)


def lidar_point_counts(paths: Path | str | Iterable[Path | str], res: int, *, crs: str | None = None,
                       classes: Iterable[int] | None = None, chunk: int = 2_000_000) -> pa.Table:
    """Values table of LiDAR point counts per cell at ``res``, streamed chunk by chunk over LAS/LAZ files.

    ``crs`` is the declared CRS for files without one; ``classes`` keeps only those ASPRS classes (e.g. {2} for
    ground, {6} for buildings). Memory is bounded by ``chunk`` points plus one row per touched cell.
    """
    from twin.sources.pointcloud import xy_unit_m
    from twin.sources.points import crs_of, iter_points

    if isinstance(paths, str | Path):
        paths = [paths]
    wanted = None if classes is None else np.asarray(sorted(set(classes)), np.uint8)
    parts: list[pa.Table] = []
    for path in paths:
        src = crs_of(path, crs)
        unit = xy_unit_m(src) or 1.0  # iter_points gives metres; back to the CRS's own units to transform
        src_text = horizontal(src).to_wkt()
        for pts in iter_points(path, chunk, crs=crs):
            x, y = pts["x"], pts["y"]
            if wanted is not None:
                keep = np.isin(pts["classification"], wanted)
                x, y = x[keep], y[keep]
            cells = xy_to_cells(x / unit, y / unit, src_text, res)
            uniq, n = np.unique(cells[cells != 0], return_counts=True)
            parts.append(make_values(uniq, res, n.astype(np.float64), count=n))
    if not parts:
        return VALUE_SCHEMA.empty_table()
    return aggregate(pa.concat_tables(parts), Aggregation.count)
