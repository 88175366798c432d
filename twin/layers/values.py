"""Layer values: the one table shape every builder produces and every query reads, and consistent roll-ups.

A values table has one row per (cell, res, t):

* ``cell`` uint64 H3 index, ``res`` int8 its resolution;
* ``t`` timestamp[us, UTC] start of the time bucket (null for static layers);
* ``value`` float64 — the aggregate under the layer's aggregation;
* ``count`` int64 — samples behind the value (points, readings, pixels); roll-ups of means weight by it;
* ``weight`` float64 — covered area in m² for area-weighted means (else equal to ``count``).

Roll-ups compute coarser cells / longer buckets from the finest values by the declared aggregation, so they are
consistent by construction: sums and counts add up, means are count-weighted, area-weighted means are weighted by
covered area, max/min take the extreme.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

from data_models import LAYER_VALUES, Aggregation, LayerSpec
from data_models.layers import parse_time_bucket
from twin.layers.h3index import cells_to_parent
from twin.store import StoreError

VALUE_SCHEMA = LAYER_VALUES  # the contract lives in data_models.tables


class LayerError(StoreError):
    """A layer request that cannot be answered (unknown layer, bad resolution, time range, bucket or area, too
    large); the message starts with the parameter at fault. A 400 (``BadInput``) unless a subclass says otherwise."""


def make_values(cells: np.ndarray, res: int, value: np.ndarray, *, t: np.ndarray | None = None,
                count: np.ndarray | None = None, weight: np.ndarray | None = None) -> pa.Table:
    """A values table from arrays (``t`` as datetime64[us] UTC or None; count defaults to 1, weight to count)."""
    n = len(cells)
    count = np.ones(n, np.int64) if count is None else np.asarray(count, np.int64)
    weight = count.astype(np.float64) if weight is None else np.asarray(weight, np.float64)
    tt = pa.nulls(n, pa.timestamp("us", tz="UTC")) if t is None else pa.array(
        np.asarray(t, dtype="datetime64[us]"), pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    return pa.table([pa.array(np.asarray(cells, np.uint64)), pa.array(np.full(n, res, np.int8)), tt,
                     pa.array(np.asarray(value, np.float64)), pa.array(count), pa.array(weight)],
                    schema=VALUE_SCHEMA)


def _agg_sql(aggregation: Aggregation) -> str:
    """SQL for (value, count, weight) of a group under an aggregation."""
    a = Aggregation(aggregation)
    if a in (Aggregation.sum, Aggregation.count):
        v = "sum(value)"
    elif a == Aggregation.mean:
        v = "sum(value * count) / nullif(sum(count), 0)"
    elif a == Aggregation.area_weighted_mean:
        v = "sum(value * weight) / nullif(sum(weight), 0)"
    elif a == Aggregation.max:
        v = "max(value)"
    else:
        v = "min(value)"
    return f"{v} AS value, sum(count)::BIGINT AS count, sum(weight) AS weight"


def aggregate(table: pa.Table, aggregation: Aggregation, *, bucket_s: int | None = None,
              origin: datetime | None = None, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Merge rows with the same (cell, res, t) — after moving ``t`` to ``bucket_s``-second buckets when given."""
    con = con or duckdb.connect()
    con.register("_v", table)
    try:
        t = "t"
        if bucket_s:
            # buckets aligned on ``origin`` (e.g. local midnight for daily means), else on the Unix epoch
            o = f", TIMESTAMPTZ '{origin.isoformat()}'" if origin else ", TIMESTAMPTZ '1970-01-01 00:00:00+00'"
            t = f"time_bucket(INTERVAL {int(bucket_s)} SECOND, t{o})"
        sql = (f"SELECT cell, res, {t} AS t, {_agg_sql(aggregation)} FROM _v GROUP BY ALL "
               "ORDER BY res, cell, t")
        return con.execute(sql).to_arrow_table().cast(VALUE_SCHEMA)
    finally:
        con.unregister("_v")


def rollup(finest: pa.Table, spec: LayerSpec) -> pa.Table:
    """All the spec's resolutions from values at its finest resolution (coarser ones by the declared aggregation)."""
    res = sorted(spec.resolutions)
    top = res[-1]
    base = finest.filter(pa.compute.equal(finest["res"], top)) if finest.num_rows else finest
    parts = [aggregate(base, spec.aggregation)]
    cells = base["cell"].to_numpy()
    for r in res[:-1]:
        moved = base.set_column(0, "cell", pa.array(cells_to_parent(cells, r))).set_column(
            1, "res", pa.array(np.full(base.num_rows, r, np.int8)))
        parts.append(aggregate(moved, spec.aggregation))
    return pa.concat_tables(parts)


def bucket_seconds(bucket: str | None, what: str = "bucket") -> int | None:
    """Seconds of a time bucket string like '1h' (None for static layers); a :class:`LayerError` naming the
    parameter ``what`` for text that is no fixed duration, zero, or longer than ``MAX_TIME_BUCKET``."""
    if bucket is None:
        return None
    try:
        return int(parse_time_bucket(bucket).total_seconds())
    except ValueError as exc:
        raise LayerError(f"{what}: {str(exc).removeprefix('time_bucket ')}") from None
