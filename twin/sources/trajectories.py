"""GPS trajectories in CSV (plain or .gz): one row per fix -> the ``trajectories`` table.

Columns are found as for sensors (see :mod:`twin.sources.sensors` and docs/sensors.md): a track id (``track_id``,
``uid``, ``user_id``, …; else ``--option track=<id>``, else the file name), a time (one column or year/month/day/…;
zone from the text or ``--option tz=`` — never guessed), and lon/lat (WGS84; GCJ-02 with ``--option coords=gcj02``)
or x/y with a CRS. Every fix is kept, in (track, time) order; a fix without a position keeps null coordinates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_models import TRAJECTORIES
from twin.sources.base import ReadContext, SourceError, SourceRead
from twin.sources.tabular import (
    ALIASES,
    column_text,
    locate,
    parse_times,
    read_csv_strings,
    resolve_columns,
    times_from_parts,
)

ROLES = ("track", "time", "year", "month", "day", "hour", "minute", "second", "lon", "lat", "x", "y")
MIN_INSIDE = 0.5  # at least this fraction of fixes must lie in (or near) the store CRS's area of use


def _floats(a: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(a, np.float64), pa.float64(), from_pandas=True)  # NaN -> null


def read(ctx: ReadContext) -> SourceRead:
    """Read a GPS trajectory CSV into the ``trajectories`` table (WGS84 lon/lat and store-CRS x/y per fix)."""
    path = ctx.path
    if not path.is_file() or path.stat().st_size == 0:
        raise SourceError(path, "the file is empty" if path.is_file() else "no such file")
    t = read_csv_strings(path, ctx.options)
    cols = resolve_columns(path, t.column_names, ctx.options, ROLES)
    if "time" in cols:
        time = parse_times(path, column_text(t, cols["time"]), ctx.options.get("tz"), ctx.options.get("time_format"))
    elif {"year", "month", "day"} <= set(cols):
        time = times_from_parts(path, t, cols, ctx.options.get("tz"))
    else:
        raise SourceError(path, f"no time column (looked for {', '.join(ALIASES['time'][:5])}, …); columns are "
                                f"{', '.join(t.column_names)}; map one with --option columns=time=<column>")
    if "track" in cols:
        track = pc.utf8_trim_whitespace(t.column(cols["track"])).combine_chunks()
        if track.null_count:
            first = pc.index(pc.is_null(track), True).as_py()
            raise SourceError(path, f"{track.null_count} fix(es) have no track id (first at data row {first + 1})")
    else:
        name = str(ctx.options.get("track") or path.name.split(".")[0])
        track = pa.repeat(pa.scalar(name, pa.string()), t.num_rows)
    where = locate(ctx, t, cols, min_inside=MIN_INSIDE)
    if where is None:
        raise SourceError(path, f"no coordinate columns (lat/lon, lat/lng, latitude/longitude, or x/y with a CRS); "
                                f"columns are {', '.join(t.column_names)}")
    n = t.num_rows
    table = pa.table(
        {
            "asset_id": pa.repeat(pa.scalar(ctx.asset_id, pa.string()), n),
            "track_id": track,
            "time": time,
            "lon": _floats(where.lon),
            "lat": _floats(where.lat),
            "x": _floats(where.x),
            "y": _floats(where.y),
        },
        schema=TRAJECTORIES,
    )
    order = pc.sort_indices(table, sort_keys=[("track_id", "ascending"), ("time", "ascending")])
    table = table.take(order)
    fx, fy = where.file_xy
    ok = np.isfinite(fx) & np.isfinite(fy)
    bbox = [float(fx[ok].min()), float(fy[ok].min()), float(fx[ok].max()), float(fy[ok].max())] if ok.any() else None
    lo, hi = pc.min_max(time).values()
    per_track = table.group_by("track_id").aggregate([("time", "count")])
    info: dict[str, Any] = {
        "crs": where.crs if ok.any() else None,
        "bbox": bbox,
        "format": "csv-trajectories",
        "columns": dict(cols),
        "fixes": n,
        "fixes_without_position": int((~ok).sum()),
        "tracks": per_track.num_rows,
        "start": lo.as_py().isoformat(),
        "end": hi.as_py().isoformat(),
        "coords": str(ctx.options.get("coords") or "wgs84"),
    }
    if per_track.num_rows <= 100:
        info["fixes_per_track"] = dict(zip(per_track.column("track_id").to_pylist(),
                                           per_track.column("time_count").to_pylist(), strict=True))
    return SourceRead(info=info, tables={"trajectories": table})
