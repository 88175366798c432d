"""Vector sources (GeoJSON, GeoPackage, Shapefile) through pyogrio/GDAL, read as Arrow with WKB geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyogrio
import shapely

from twin.sources import SourceError
from twin.sources.crs import normalise


def read_vector(path: Path, crs: str | None = None) -> tuple[str, list[dict[str, Any]], list[shapely.Geometry]]:
    """(CRS, property dicts, geometries) of every feature; a file with no CRS needs ``crs`` (never guessed)."""
    try:
        meta, table = pyogrio.read_arrow(path)
    except Exception as exc:  # GDAL raises several error types for unreadable files
        raise SourceError(path, f"not a readable vector file ({exc})") from exc
    file_crs = meta.get("crs")
    if file_crs and crs and normalise(file_crs) != normalise(crs):
        raise SourceError(path, f"file declares CRS {normalise(file_crs)} but --crs says {normalise(crs)}")
    use = crs or file_crs
    if not use:
        raise SourceError(path, "no CRS in the file; pass --crs (the CRS is never guessed)")
    geom_col = meta.get("geometry_name") or "wkb_geometry"
    if geom_col not in table.column_names:
        raise SourceError(path, "the file has no geometry column")
    geoms = shapely.from_wkb(table.column(geom_col).to_numpy(zero_copy_only=False))
    props = table.drop_columns([geom_col]).to_pylist()
    bad = [i for i, g in enumerate(geoms) if g is None or g.is_empty]
    if bad:
        raise SourceError(path, f"{len(bad)} feature(s) without geometry, first at feature index {bad[0]}")
    return normalise(use), props, list(geoms)


def extent(geoms: list[shapely.Geometry]) -> list[float]:
    b = shapely.total_bounds(geoms)
    return [float(v) for v in b]
