"""Raster imagery (GeoTIFF / COG) through rasterio: description here; band maths lives with its users."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import rasterio
from rasterio.errors import RasterioIOError

from twin.sources import ReadContext, SourceError, SourceRead
from twin.sources.crs import normalise


def raster_info(path: Path, crs: str | None = None) -> dict:
    """CRS, extent, size, bands and acquisition time (TIFFTAG_DATETIME / ACQUISITION tags) of a raster."""
    try:
        with rasterio.open(path) as ds:
            file_crs = ds.crs.to_wkt() if ds.crs else None
            tags = ds.tags()
            info = {
                "bbox": [ds.bounds.left, ds.bounds.bottom, ds.bounds.right, ds.bounds.top],
                "width": ds.width,
                "height": ds.height,
                "count": ds.count,
                "dtype": ds.dtypes[0],
                "resolution": [abs(ds.transform.a), abs(ds.transform.e)],
                "bands": [d or f"band{i + 1}" for i, d in enumerate(ds.descriptions)],
                "nodata": ds.nodata,
                "datetime": tags.get("ACQUISITION_DATETIME") or tags.get("TIFFTAG_DATETIME"),
            }
    except RasterioIOError as exc:
        raise SourceError(path, f"not a readable raster ({exc})") from exc
    if file_crs and crs and normalise(file_crs) != normalise(crs):
        raise SourceError(path, f"file declares CRS {normalise(file_crs)} but --crs says {normalise(crs)}")
    if not (file_crs or crs):
        raise SourceError(path, "no CRS in the raster; pass --crs (the CRS is never guessed)")
    info["crs"] = normalise(crs or file_crs)
    return info


def acquired_of(info: dict) -> datetime | None:
    """Parse TIFF 'YYYY:MM:DD HH:MM:SS' or ISO 8601 acquisition times (UTC when no zone is given)."""
    s = info.get("datetime")
    if not s:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", None):
        try:
            t = datetime.strptime(s, fmt) if fmt else datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            continue
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


def read(ctx: ReadContext) -> SourceRead:
    """Catalog facts of a raster; pixels stay in the file and are read by the fusion steps."""
    info = raster_info(ctx.path, ctx.crs)
    info["acquired"] = acquired_of(info)
    return SourceRead(info=info)
