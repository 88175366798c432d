"""DuckDB connections with the spatial extension loaded from the installed wheel (never downloaded)."""

from __future__ import annotations

import glob
import os
from functools import cache

import duckdb

from twin.errors import Unavailable


class SpatialExtensionMissing(Unavailable, RuntimeError):
    """The duckdb-extension-spatial wheel is not installed or does not match the duckdb version."""


@cache
def spatial_extension_path() -> str:
    """Path of the spatial extension binary shipped by the ``duckdb-extension-spatial`` wheel."""
    try:
        import duckdb_extension_spatial
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise SpatialExtensionMissing(
            "the DuckDB spatial extension is not installed: pip install duckdb-extension-spatial"
        ) from exc
    root = os.path.dirname(duckdb_extension_spatial.__file__)
    wanted = os.path.join(root, "extensions", f"v{duckdb.__version__}", "spatial.duckdb_extension")
    if os.path.exists(wanted):
        return wanted
    found = sorted(glob.glob(os.path.join(root, "extensions", "*", "spatial.duckdb_extension")))
    raise SpatialExtensionMissing(
        f"duckdb {duckdb.__version__} needs duckdb-extension-spatial=={duckdb.__version__}; installed: {found}"
    )


def connect(database: str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with spatial loaded and extension auto-install/auto-load disabled."""
    con = duckdb.connect(
        database,
        read_only=read_only,
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    con.execute(f"LOAD '{spatial_extension_path()}'")
    return session(con)


def session(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Apply the per-connection settings twin relies on (also to cursors, which share the loaded extensions)."""
    con.execute("SET TimeZone = 'UTC'")
    # Segments are GeoParquet on disk, but are read as plain WKB: one column type whatever a file holds (a
    # segment whose rows have no geometry carries no GeoParquet metadata), and WKB is what readers want anyway.
    con.execute("SET enable_geoparquet_conversion = false")
    return con
