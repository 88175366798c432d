"""LAS/LAZ point clouds (laspy + lazrs), read in chunks so files larger than memory stream."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import laspy
import numpy as np

from twin.sources import ReadContext, SourceError, SourceRead
from twin.sources.crs import normalise

CHUNK = 2_000_000


def header_info(path: Path, crs: str | None = None) -> dict:
    """CRS, extent, point count, class-free header facts of a LAS/LAZ file, without reading its points."""
    try:
        with laspy.open(path) as f:
            h = f.header
            file_crs = h.parse_crs()
            info = {
                "point_count": int(h.point_count),
                "bbox": [float(h.mins[0]), float(h.mins[1]), float(h.maxs[0]), float(h.maxs[1])],
                "z_range": [float(h.mins[2]), float(h.maxs[2])],
                "las_version": f"{h.version.major}.{h.version.minor}",
                "point_format": int(h.point_format.id),
                "creation_date": h.creation_date.isoformat() if h.creation_date else None,
            }
    except (laspy.errors.LaspyException, OSError, ValueError) as exc:
        raise SourceError(path, f"not a readable LAS/LAZ file ({exc})") from exc
    if file_crs is not None and crs and normalise(file_crs) != normalise(crs):
        raise SourceError(path, f"file declares CRS {normalise(file_crs)} but --crs says {normalise(crs)}")
    if file_crs is None and not crs:
        raise SourceError(path, "no CRS in the LAS header; pass --crs (the CRS is never guessed)")
    info["crs"] = normalise(crs or file_crs)
    return info


def acquired_of(info: dict) -> datetime | None:
    d = info.get("creation_date")
    return datetime.fromisoformat(d).replace(tzinfo=UTC) if d else None


def iter_points(path: Path, chunk: int = CHUNK) -> Iterator[dict[str, np.ndarray]]:
    """Chunks of x, y, z (float64, scaled) and classification, return number and number of returns."""
    with laspy.open(path) as f:
        for pts in f.chunk_iterator(chunk):
            yield {
                "x": np.asarray(pts.x, dtype=np.float64),
                "y": np.asarray(pts.y, dtype=np.float64),
                "z": np.asarray(pts.z, dtype=np.float64),
                "classification": np.asarray(pts.classification, dtype=np.uint8),
            }


def read(ctx: ReadContext) -> SourceRead:
    """Catalog facts of a LAS/LAZ file; its points stay in the file and are streamed by the build steps."""
    info = header_info(ctx.path, ctx.crs)
    info["acquired"] = acquired_of(info)
    return SourceRead(info=info)
