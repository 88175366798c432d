"""Encoders of layer rows (an Arrow table of cells and times) into the formats the API and the exports hand out.

Each encoder turns an Arrow table into bytes plus their media type, with no web framework involved, so the layer
endpoint and the thematic-products exports write identical files. Cells go out as H3 hex strings and times as
ISO 8601 UTC in the text formats (JSON, CSV); Parquet and Arrow keep the table's own types.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from twin.layers.registry import to_geojson

Format = Literal["json", "csv", "parquet", "arrow", "geojson"]

JSON = "application/json"
GEOJSON = "application/geo+json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
ARROW = "application/vnd.apache.arrow.stream"


class CellRow(BaseModel):
    """One row of layer cells in the JSON format (the schema the API declares; CSV has the same columns)."""

    cell: str = Field(description="H3 cell index as a hex string")
    res: int = Field(description="H3 resolution of the cell")
    t: str | None = Field(None, description="start of the time bucket, ISO 8601 UTC; null for static layers")
    value: float | None = Field(description="the layer's value (its aggregation over the cell and bucket)")
    count: int | None = Field(None, description="samples behind the value (absent in comparisons)")
    weight: float | None = Field(None, description="covered area m² or sample weight (absent in comparisons)")
    other: float | None = Field(None, description="the compared state's value (only with compare_*)")
    difference: float | None = Field(None, description="value - other (only with compare_*)")


class Encoded(NamedTuple):
    """An encoded table: the bytes and their media type."""

    body: bytes
    media_type: str


def to_json(table: pa.Table) -> Encoded:
    """Rows as a JSON array of objects in (cell, t) order, assembled by DuckDB in one pass (row by row in Python
    dominated the response time; one list of structs is a third faster than joining per-row objects); NaN and
    infinities are written as null, so the body is always valid JSON."""
    body = _rows_sql(table, "SELECT coalesce(to_json(list(struct_pack({struct}) ORDER BY cell, t))::VARCHAR, '[]') "
                            "FROM _r", lambda cur: cur.fetchone()[0])
    return Encoded(body.encode("utf-8"), JSON)


def to_csv(table: pa.Table) -> Encoded:
    """Rows as CSV with a header, in (cell, t) order."""
    buf = io.BytesIO()
    pacsv.write_csv(_rows_sql(table, "SELECT {cols} FROM _r ORDER BY cell, t", lambda cur: cur.to_arrow_table()), buf)
    return Encoded(buf.getvalue(), CSV)


def to_parquet(table: pa.Table) -> Encoded:
    """The table as one Parquet file (types kept: cells as uint64, times as timestamps)."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return Encoded(buf.getvalue(), PARQUET)


def to_arrow(table: pa.Table) -> Encoded:
    """The table as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return Encoded(sink.getvalue().to_pybytes(), ARROW)


def to_geojson_bytes(table: pa.Table) -> Encoded:
    """The cells as a GeoJSON FeatureCollection of hexagons, compact UTF-8 JSON."""
    body = json.dumps(to_geojson(table), ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
    return Encoded(body.encode("utf-8"), GEOJSON)


ENCODERS: dict[str, Callable[[pa.Table], Encoded]] = {
    "json": to_json, "csv": to_csv, "parquet": to_parquet, "arrow": to_arrow, "geojson": to_geojson_bytes,
}
MEDIA_TYPES = {"json": JSON, "csv": CSV, "parquet": PARQUET, "arrow": ARROW, "geojson": GEOJSON}


def encode(table: pa.Table, format: Format) -> Encoded:
    """The table in ``format`` (one of :data:`ENCODERS`); a ValueError names the formats for any other."""
    try:
        encoder = ENCODERS[format]
    except KeyError:
        raise ValueError(f"unknown format {format!r}; formats: {', '.join(ENCODERS)}") from None
    return encoder(table)


_local = threading.local()
_base_lock = threading.Lock()
_base: list[duckdb.DuckDBPyConnection] = []  # the one in-memory database the encoders share, made on first use


def _cursor() -> duckdb.DuckDBPyConnection:
    """This thread's cursor on one shared in-memory DuckDB: a new database per call (``duckdb.connect()``) cost
    10-20 ms and its own thread pool per request, most of a small answer's time and oversubscribed under load."""
    con = getattr(_local, "con", None)
    if con is None:
        with _base_lock:
            if not _base:
                _base.append(duckdb.connect())
            con = _local.con = _base[0].cursor()
    return con


def _rows_sql(table: pa.Table, sql: str, fetch: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
    """``fetch`` of ``sql`` run over the rows (``_r``) with cells as H3 hex strings and times as ISO 8601
    (``{cols}``: select list; ``{struct}``: struct_pack fields, non-finite floats as null), on this thread's cursor,
    the rows registered only for the call."""
    exprs, finite = {}, {}
    for name in table.column_names:
        if name == "cell":
            exprs[name] = "printf('%x', cell)"
        elif name == "t":
            exprs[name] = "strftime(t AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')"
        else:
            exprs[name] = f'"{name}"'
        floating = pa.types.is_floating(table.schema.field(name).type)
        finite[name] = f'CASE WHEN isfinite("{name}") THEN "{name}" END' if floating else exprs[name]
    con = _cursor()
    cols = ", ".join(f'{e} AS "{n}"' for n, e in exprs.items())
    struct = ", ".join(f'"{n}" := {e}' for n, e in finite.items())
    con.register("_r", table)
    try:
        return fetch(con.execute(sql.format(cols=cols, struct=struct)))
    finally:
        con.unregister("_r")
