"""Placement on the globe: store CRS → ECEF (EPSG:4978) and geodetic (EPSG:4979), tile transforms and regions.

Heights: the store's z is taken as height above the CRS's ellipsoid (pyproj's 3D reading of the CRS). No geoid grid
ships offline (pyproj would need to download one), and terrain, buildings and point clouds all go through the same
transform, so they stay consistent with each other; for Beijing the geoid lies about 9 m below the ellipsoid, which
shifts the whole city, not its parts.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pyproj


def yup(offsets: np.ndarray) -> np.ndarray:
    """ECEF offsets (z-up) → glTF's y-up axes, which 3D Tiles rotates back when it loads glTF content."""
    o = np.asarray(offsets)
    return np.stack([o[:, 0], o[:, 2], -o[:, 1]], axis=1)


def translation(center: np.ndarray) -> list[float]:
    """A column-major 4×4 tile ``transform`` that moves tile-local coordinates to ``center`` (ECEF)."""
    cx, cy, cz = (float(v) for v in center)
    return [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, cx, cy, cz, 1]


def enu_axes(lon: float, lat: float) -> np.ndarray:
    """East, north and up unit vectors (ECEF) at a geodetic longitude/latitude (degrees), as the columns of a 3×3."""
    lo, la = math.radians(lon), math.radians(lat)
    east = [-math.sin(lo), math.cos(lo), 0.0]
    north = [-math.sin(la) * math.cos(lo), -math.sin(la) * math.sin(lo), math.cos(la)]
    up = [math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)]
    return np.array([east, north, up]).T


def region(lon_min: float, lat_min: float, lon_max: float, lat_max: float, h_min: float, h_max: float) -> list[float]:
    """A 3D Tiles ``region`` bounding volume: [west, south, east, north] in radians, heights in metres."""
    return [math.radians(lon_min), math.radians(lat_min), math.radians(lon_max), math.radians(lat_max),
            float(h_min), float(h_max)]


def to_ecef(x: np.ndarray, y: np.ndarray, z: np.ndarray, crs: str) -> np.ndarray:
    """(N, 3) ECEF for CRS points whose z is the height above the CRS's own ellipsoid: pyproj's 3D reading of the
    CRS (``CRS.to_3d()`` → EPSG:4978), datum shift included (RD New's Bessel ellipsoid sits ~43.6 m off WGS 84's in
    Delft; CGCS2000 and WGS 84 agree to < 1 mm)."""
    t = _transformer_3d(pyproj.CRS.from_user_input(crs).to_string())
    return np.stack(t.transform(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64),
                                np.asarray(z, dtype=np.float64)), axis=-1)


@lru_cache(maxsize=32)
def _transformer_3d(crs: str) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(crs).to_3d(), "EPSG:4978", always_xy=True)


def ecef_to_geodetic(ecef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECEF (N×3) → WGS 84 longitude, latitude (degrees) and ellipsoidal height (metres)."""
    e = np.asarray(ecef, dtype=np.float64)
    return _geocentric_transformer().transform(e[:, 0], e[:, 1], e[:, 2])


@lru_cache(maxsize=1)
def _geocentric_transformer() -> pyproj.Transformer:
    return pyproj.Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)


def region_of_ecef(ecef: np.ndarray, pad_deg: float = 1e-7, pad_h: float = 0.1) -> list[float]:
    """The region around ECEF points (e.g. a tile's vertices), padded slightly for rounding."""
    lon, lat, h = ecef_to_geodetic(ecef)
    return region(lon.min() - pad_deg, lat.min() - pad_deg, lon.max() + pad_deg, lat.max() + pad_deg,
                  h.min() - pad_h, h.max() + pad_h)
