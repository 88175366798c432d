"""Coordinate reference system and placement of the demo city.

Coordinates are written easting-first (x = easting, y = northing) in every file, the usual GIS order
(``always_xy``), even though EPSG:4548 declares northing as its first axis.
"""

from __future__ import annotations

from functools import lru_cache

from pyproj import CRS, Transformer

EPSG = 4548
CRS_NAME = f"EPSG:{EPSG}"
CRS_URN = f"urn:ogc:def:crs:EPSG::{EPSG}"
# Centre of the demo city: central Beijing (Dongcheng), WGS84 / CGCS2000 lon, lat.
CENTER_LONLAT = (116.40, 39.905)


@lru_cache(maxsize=1)
def crs() -> CRS:
    return CRS.from_epsg(EPSG)


@lru_cache(maxsize=1)
def wkt() -> str:
    """WKT2 (2019) of the CRS: unlike GDAL's WKT1 it keeps the EPSG identity (pyproj ``to_epsg()`` works)."""
    return crs().to_wkt("WKT2_2019")


@lru_cache(maxsize=1)
def to_wgs84() -> Transformer:
    return Transformer.from_crs(EPSG, 4326, always_xy=True)


@lru_cache(maxsize=1)
def from_wgs84() -> Transformer:
    return Transformer.from_crs(4326, EPSG, always_xy=True)


def origin(side_m: float) -> tuple[float, float]:
    """Lower-left corner (easting, northing) of a square city of side ``side_m`` centred on Beijing."""
    e, n = from_wgs84().transform(*CENTER_LONLAT)
    return float(round((e - side_m / 2) / 100.0) * 100.0), float(round((n - side_m / 2) / 100.0) * 100.0)
