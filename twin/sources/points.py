"""Points of a point-cloud asset for the builds, whichever reader catalogued it: LAS/LAZ through laspy
(:mod:`twin.sources.pointcloud`), PDAL pipelines through PDAL (:mod:`twin.sources.pdal_reader`).

Both yield the same chunks (x, y, z in metres, classification, returns, colour) so the stages downstream never ask
which format a cloud came in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyproj

from twin.sources import pdal_reader, pointcloud
from twin.sources.pointcloud import CHUNK, is_pipeline


def crs_of(path: Path | str, crs: str | None = None) -> pyproj.CRS:
    """The CRS of a point cloud (header, pipeline output or declared, checked), as a pyproj CRS."""
    path = Path(path)
    return pdal_reader.crs_of(path, crs) if is_pipeline(path) else pointcloud.crs_of(path, crs)


def iter_points(path: Path | str, chunk: int = CHUNK, *, crs: str | None = None,
                to_crs: str | pyproj.CRS | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Chunks (≤ ``chunk`` points) of a cloud, as :func:`twin.sources.pointcloud.iter_points` describes them."""
    path = Path(path)
    if is_pipeline(path):
        return pdal_reader.iter_points(path, chunk, crs=crs, to_crs=to_crs)
    return pointcloud.iter_points(path, chunk, crs=crs, to_crs=to_crs)
