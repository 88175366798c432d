"""Sensor time series as layers: station readings averaged per time bucket, at the H3 cells of the stations.

Input is the store's ``observations`` table (``sensor_id, time, variable, value``; a null value is a missing reading)
and the ``Sensor`` features (Point geometry in the store CRS). Missing readings (null or non-finite values) are
dropped before averaging, so they never count as zero and never add to ``count``. Observations of sensors that have
no Point position among ``sensors`` are left out (they cannot be placed in a cell).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyproj import Transformer

from twin.layers.h3index import latlng_to_cells
from twin.layers.values import VALUE_SCHEMA

__all__ = ["sensor_positions", "station_cells", "station_series", "station_values"]

SERIES_SCHEMA = pa.schema([
    ("sensor_id", pa.string()),
    ("lat", pa.float64()),
    ("lng", pa.float64()),
    ("t", pa.timestamp("us", tz="UTC")),
    ("value", pa.float64()),
    ("count", pa.int64()),
])


def sensor_positions(sensors: Sequence[dict], crs: str) -> pa.Table:
    """Ids and WGS84 lat/lng of the sensors that have a Point geometry (given in ``crs``), for placing readings."""
    ids: list[str] = []
    xs: list[float] = []
    ys: list[float] = []
    for s in sensors:  # one entry per station, not per reading
        g = s.get("geometry") or {}
        if g.get("type") != "Point" or not g.get("coordinates"):
            continue
        ids.append(str(s["id"]))
        xs.append(float(g["coordinates"][0]))
        ys.append(float(g["coordinates"][1]))
    if len(set(ids)) != len(ids):
        raise ValueError("sensor ids are not unique")
    lng, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(np.array(xs), np.array(ys))
    return pa.table({"sensor_id": pa.array(ids, pa.string()), "lat": np.asarray(lat, np.float64),
                     "lng": np.asarray(lng, np.float64)})


def station_cells(sensors: Sequence[dict], crs: str, res: int) -> pa.Table:
    """Sensor id, lat/lng and the H3 cell (uint64) at ``res`` of each located sensor."""
    pos = sensor_positions(sensors, crs)
    cells = latlng_to_cells(pos["lat"].to_numpy(), pos["lng"].to_numpy(), res)
    return pos.append_column("cell", pa.array(cells, pa.uint64()))


def _origin_text(origin: datetime | None) -> str:
    """ISO text of a bucket origin (naive = UTC), default the Unix epoch."""
    if origin is None:
        return "1970-01-01T00:00:00+00:00"
    return (origin if origin.tzinfo else origin.replace(tzinfo=UTC)).isoformat()


def _grouped(observations: pa.Table, located: pa.Table, variable: str, keys: str, bucket_s: int | None,
             origin: datetime | None) -> pa.Table:
    """Mean and count of the non-missing readings of ``variable`` per (``keys``, time bucket), via DuckDB."""
    con = duckdb.connect()
    con.register("_o", observations.select(["sensor_id", "time", "variable", "value"]))
    con.register("_s", located)
    t = "o.time"
    if bucket_s:
        if int(bucket_s) <= 0:
            raise ValueError(f"bucket_s must be positive, got {bucket_s}")
        t = f"time_bucket(INTERVAL {int(bucket_s)} SECOND, o.time, ?::TIMESTAMPTZ)"
    sql = (f"SELECT {keys}, {t} AS t, avg(o.value) AS value, count(*)::BIGINT AS count "
           "FROM _o o JOIN _s s ON o.sensor_id = s.sensor_id "
           "WHERE o.variable = ? AND o.value IS NOT NULL AND isfinite(o.value) "
           f"GROUP BY ALL ORDER BY {keys}, t")
    params = ([_origin_text(origin)] if bucket_s else []) + [variable]
    try:
        return con.execute(sql, params).to_arrow_table()
    finally:
        con.close()


def station_series(observations: pa.Table, sensors: Sequence[dict], crs: str, variable: str,
                   bucket_s: int | None, origin: datetime | None = None) -> pa.Table:
    """Per-station bucket means (sensor_id, lat, lng, t, value, count): the samples that interpolation reads."""
    pos = sensor_positions(sensors, crs)
    out = _grouped(observations, pos, variable, "s.sensor_id, s.lat, s.lng", bucket_s, origin)
    return out.rename_columns(["sensor_id", "lat", "lng", "t", "value", "count"]).cast(SERIES_SCHEMA)


def station_values(observations: pa.Table, sensors: Sequence[dict], crs: str, variable: str, res: int,
                   bucket_s: int | None, origin: datetime | None = None) -> pa.Table:
    """Values table of ``variable`` at the stations' H3 cells: mean of the non-missing readings per time bucket.

    ``count`` is the number of non-missing readings in the cell and bucket (so roll-ups are count-weighted) and
    ``weight`` equals it. Buckets are ``bucket_s`` seconds aligned on ``origin`` (e.g. local midnight
    ``datetime(2013, 3, 1, tzinfo=timezone(timedelta(hours=8)))`` for days in Beijing time), default the Unix
    epoch; ``bucket_s=None`` keeps the reading times as they are.
    """
    located = station_cells(sensors, crs, res).select(["sensor_id", "cell"])
    out = _grouped(observations, located, variable, "s.cell", bucket_s, origin)
    n = out.num_rows
    cols = [out["cell"], pa.array(np.full(n, res, np.int8)), out["t"], out["value"], out["count"],
            pc.cast(out["count"], pa.float64())]
    return pa.Table.from_arrays(cols, names=VALUE_SCHEMA.names).cast(VALUE_SCHEMA)
