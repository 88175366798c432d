"""Trajectory layers: fixes, visits and dwell time per H3 cell and time bucket from the ``trajectories`` table.

Input rows are GPS fixes ``(track_id, time UTC, lon, lat)`` (the store's ``trajectories`` table, a pandas frame or
any Arrow table with those columns; aliases ``uid``/``datetime``/``lng`` are accepted). Fixes are ordered by
(track, time); each fix is placed in the cell of its position and the bucket of its time:

* ``fixes`` — number of fixes (aggregation ``count``; rolls up exactly);
* ``dwell`` — seconds spent: each fix holds its cell for the time to the next fix of the same track, capped at
  ``cap_s`` (gaps longer than that are signal loss, not presence); a track's last fix holds 0 s. The whole interval
  is booked to the fix's bucket (aggregation ``sum``; rolls up exactly);
* ``visits`` — distinct tracks with at least one fix in the cell during the bucket. Distinct counts do not add up
  (a track seen in two children is one visitor of the parent), so :func:`visit_values` computes them directly at
  every wanted resolution instead of by roll-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_models import Aggregation
from twin.layers.h3index import cells_to_parent, latlng_to_cells
from twin.layers.points import _as_utc_us, cell_values
from twin.layers.values import VALUE_SCHEMA, aggregate, make_values

_ALIASES = {"track_id": ("track_id", "uid", "user_id", "id"), "time": ("time", "datetime", "timestamp", "t"),
            "lon": ("lon", "lng", "longitude"), "lat": ("lat", "latitude")}


def _column(table: Any, name: str) -> Any:
    """The column of ``table`` for a canonical name, under any of its aliases."""
    names = list(table.column_names if isinstance(table, pa.Table) else table.columns)
    for alias in _ALIASES[name]:
        if alias in names:
            return table[alias]
    raise KeyError(f"no {name} column (tried {', '.join(_ALIASES[name])}); columns: {', '.join(map(str, names))}")


def _fixes(table: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(track code int64, time datetime64[us] UTC, lat, lon) ordered by track then time."""
    tracks = _column(table, "track_id")
    if not isinstance(tracks, pa.ChunkedArray | pa.Array):
        tracks = pa.array(np.asarray(tracks).astype(str))
    codes = pc.dictionary_encode(pa.chunked_array([tracks]).cast(pa.string())).combine_chunks().indices
    code = codes.to_numpy(zero_copy_only=False).astype(np.int64)
    t = _as_utc_us(_column(table, "time"))
    lon = np.asarray(_column(table, "lon"), np.float64)
    lat = np.asarray(_column(table, "lat"), np.float64)
    order = np.lexsort((t, code))
    return code[order], t[order], lat[order], lon[order]


def _bucket_start(t: np.ndarray, bucket_s: int | None, origin: datetime | None) -> np.ndarray | None:
    """Start of each time's ``bucket_s`` bucket aligned on ``origin`` (default the Unix epoch); None when static."""
    if bucket_s is None:
        return None
    o = np.datetime64(0, "us") if origin is None else np.datetime64(_naive(origin), "us")
    step = np.int64(bucket_s) * 1_000_000
    us = (t - o).astype(np.int64)
    return o + (np.floor_divide(us, step) * step).astype("timedelta64[us]")


def _naive(t: datetime) -> datetime:
    """A datetime as naive UTC."""
    from datetime import UTC

    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def dwell_seconds(code: np.ndarray, t: np.ndarray, cap_s: float) -> np.ndarray:
    """Seconds each fix holds: time to the next fix of the same track (sorted input), in [0, cap_s]; last fix 0."""
    dt = np.zeros(len(t))
    if len(t) > 1:
        same = code[1:] == code[:-1]
        gap = (t[1:] - t[:-1]).astype("timedelta64[us]").astype(np.float64) / 1e6
        dt[:-1] = np.where(same & ~np.isnan(gap), np.clip(gap, 0.0, cap_s), 0.0)
    return dt


def _visits(cells: np.ndarray, code: np.ndarray, tb: np.ndarray | None, res: int) -> pa.Table:
    """Distinct tracks per (cell, bucket) of already indexed fixes."""
    ok = cells != 0
    b = np.zeros(len(cells), np.int64) if tb is None else tb.astype(np.int64)
    keys = np.unique(np.column_stack([cells[ok].view(np.int64), b[ok], code[ok]]), axis=0)
    if not len(keys):
        return VALUE_SCHEMA.empty_table()
    pairs, n = np.unique(keys[:, :2], axis=0, return_counts=True)
    t = None if tb is None else pairs[:, 1].astype("datetime64[us]")
    return make_values(pairs[:, 0].view(np.uint64), res, n.astype(np.float64), t=t, count=n)


def track_values(trajectories: Any, res: int, *, bucket_s: int | None = 3600, cap_s: float = 600.0,
                 origin: datetime | None = None) -> dict[str, pa.Table]:
    """Values tables ``fixes``, ``dwell`` (s) and ``visits`` per cell at ``res`` and ``bucket_s`` bucket."""
    code, t, lat, lon = _fixes(trajectories)
    cells = latlng_to_cells(lat, lon, res)
    tb = _bucket_start(t, bucket_s, origin)
    keep = ~np.isnat(t)
    cells = np.where(keep, cells, np.uint64(0))
    dwell = dwell_seconds(code, t, cap_s)
    return {
        "fixes": cell_values(cells, res, t=tb),
        "dwell": cell_values(cells, res, values=dwell, t=tb, stat="sum"),
        "visits": _visits(cells, code, tb, res),
    }


def visit_values(trajectories: Any, resolutions: Iterable[int], *, bucket_s: int | None = 3600,
                 origin: datetime | None = None) -> pa.Table:
    """Distinct tracks per cell and bucket computed directly at every resolution (visits do not roll up by sum)."""
    res = sorted(set(resolutions))
    code, t, lat, lon = _fixes(trajectories)
    fine = latlng_to_cells(lat, lon, res[-1])
    fine = np.where(np.isnat(t), np.uint64(0), fine)
    tb = _bucket_start(t, bucket_s, origin)
    parts = []
    for r in res:
        cells = fine.copy()
        if r != res[-1]:
            ok = fine != 0
            cells[ok] = cells_to_parent(fine[ok], r)
        parts.append(_visits(cells, code, tb, r))
    return aggregate(pa.concat_tables(parts), Aggregation.count)
