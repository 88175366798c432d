"""Bulk tables: the Arrow schemas of rows too many to be city objects (readings, GPS fixes, layer values).

These are contracts between the readers that produce the rows, the store that keeps them beside a commit, and the
layers and endpoints that read them back. Each table has a name (the store's table) and a schema; ``asset_id`` ties
reader rows to the source asset that delivered them (a newer version of the asset replaces its rows).
"""

from __future__ import annotations

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")
"""Time columns: microseconds, UTC."""

OBSERVATIONS_TABLE = "observations"
OBSERVATIONS = pa.schema(
    [
        ("asset_id", pa.string()),
        ("sensor_id", pa.string()),
        ("time", UTC_TS),
        ("variable", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("quality_flag", pa.string()),
    ]
)
"""Schema of the ``observations`` table: one numeric reading per row; ``value`` null = missing."""

OBSERVATIONS_TEXT_TABLE = "observations_text"
OBSERVATIONS_TEXT = pa.schema(
    [
        ("asset_id", pa.string()),
        ("sensor_id", pa.string()),
        ("time", UTC_TS),
        ("variable", pa.string()),
        ("value", pa.string()),
        ("quality_flag", pa.string()),
    ]
)
"""Schema of the ``observations_text`` table: non-numeric readings (e.g. wind direction 'NNW')."""

TRAJECTORIES_TABLE = "trajectories"
TRAJECTORIES = pa.schema(
    [
        ("asset_id", pa.string()),
        ("track_id", pa.string()),
        ("time", UTC_TS),
        ("lon", pa.float64()),
        ("lat", pa.float64()),
        ("x", pa.float64()),
        ("y", pa.float64()),
    ]
)
"""Schema of the ``trajectories`` table: lon/lat WGS84 degrees, x/y in the store CRS."""

LAYER_VALUES_TABLE = "layer_values"
LAYER_VALUES = pa.schema(
    [
        ("cell", pa.uint64()),
        ("res", pa.int8()),
        ("t", UTC_TS),
        ("value", pa.float64()),
        ("count", pa.int64()),
        ("weight", pa.float64()),
    ]
)
"""Schema of layer values (one row per H3 cell, resolution and time bucket; see ``twin.layers.values``); the store
keeps them in the ``layer_values`` table with ``asset_id`` = the layer id."""

TABLES: dict[str, pa.Schema] = {
    OBSERVATIONS_TABLE: OBSERVATIONS,
    OBSERVATIONS_TEXT_TABLE: OBSERVATIONS_TEXT,
    TRAJECTORIES_TABLE: TRAJECTORIES,
}
"""The tables readers may deliver with a commit, by name."""
