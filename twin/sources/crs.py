"""CRS parsing and transformation through pyproj: one place so every reader normalises CRSs alike."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyproj
import shapely


def normalise(crs: str | pyproj.CRS) -> str:
    """'EPSG:<code>' where the CRS has one (exactly), else its WKT."""
    c = crs if isinstance(crs, pyproj.CRS) else pyproj.CRS.from_user_input(crs)
    code = c.to_epsg(min_confidence=100)
    if code is None and c.is_compound:
        code = c.sub_crs_list[0].to_epsg(min_confidence=100)
    return f"EPSG:{code}" if code else c.to_wkt()


@lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def reproject(geoms, src: str, dst: str):
    """Geometry (or array of geometries) from ``src`` to ``dst``, vectorised; x/y change, z is kept as is."""
    if normalise(src) == normalise(dst):
        return geoms
    t = transformer(src, dst)

    def xy(coords: np.ndarray) -> np.ndarray:
        out = coords.copy()
        out[:, 0], out[:, 1] = t.transform(coords[:, 0], coords[:, 1])
        return out

    return shapely.transform(geoms, xy, include_z=bool(np.any(shapely.has_z(geoms))))


def bbox_wgs84(bbox: list[float], crs: str) -> list[float]:
    """[west, south, east, north] of a bbox given in ``crs`` (densified edges)."""
    t = transformer(crs, "EPSG:4326")
    return list(t.transform_bounds(*bbox, densify_pts=21))
