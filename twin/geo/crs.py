"""CRS parsing, checks and transformation through pyproj: one place so every reader treats CRSs alike.

Besides EPSG / WKT / OGC-URN / OGC-URL CRSs (including the Chinese CGCS2000 family: EPSG:4490 geographic, EPSG:4513-4554
Gauss-Kruger zones), this module converts the two obfuscated "web" coordinate systems used by Chinese map providers,
which no CRS database describes:

* **GCJ-02** ("Mars coordinates", AutoNavi/Amap, Tencent, Google China): WGS84 plus a published non-linear offset of
  roughly 100-700 m inside China (none outside it);
* **BD-09** (Baidu): GCJ-02 plus a further rotation/scaling.

They are only applied when a user declares them (``ctx.options["coords"] = "gcj02" | "bd09"``): the offset cannot be
detected from the data. The forward formulas are the widely published ones (e.g. eviltransform, coordtransform);
GCJ-02 -> WGS84 is inverted by fixed-point iteration to better than 1e-9 degrees (about 0.1 mm).
"""

from __future__ import annotations

import math
import re
import threading
from functools import lru_cache

import numpy as np
import pyproj
import shapely

WEB_COORDS = ("wgs84", "gcj02", "bd09")


@lru_cache(maxsize=256)
def _parse(crs: str) -> pyproj.CRS:
    return pyproj.CRS.from_user_input(crs)


def parse(crs: str | pyproj.CRS) -> pyproj.CRS:
    """A pyproj CRS from EPSG codes, WKT, PROJ strings, OGC URNs and OGC URLs; ValueError with the input if unknown."""
    if isinstance(crs, pyproj.CRS):
        return crs
    text = str(crs).strip()
    m = re.fullmatch(r"(?i)https?://www\.opengis\.net/def/crs/EPSG/[^/]+/(\d+)", text)
    if m:
        text = f"EPSG:{m.group(1)}"
    try:
        return _parse(text)
    except pyproj.exceptions.CRSError as exc:
        raise ValueError(f"unknown CRS {crs!r} ({exc})") from None


def normalise(crs: str | pyproj.CRS) -> str:
    """'EPSG:<code>' where the CRS has one (exactly), else its WKT."""
    return _normalise(crs) if isinstance(crs, str) else _normalise_crs(crs)


@lru_cache(maxsize=256)
def _normalise(crs: str) -> str:
    return _normalise_crs(parse(crs))


def _normalise_crs(c: pyproj.CRS) -> str:
    code = c.to_epsg(min_confidence=100)
    if code is None and c.is_compound:
        code = c.sub_crs_list[0].to_epsg(min_confidence=100)
    return f"EPSG:{code}" if code else c.to_wkt()


def horizontal(crs: str | pyproj.CRS) -> pyproj.CRS:
    """The horizontal part of a CRS (the first sub-CRS of a compound one, else the CRS itself)."""
    c = parse(crs)
    return c.sub_crs_list[0] if c.is_compound else c


def same_horizontal(a: str | pyproj.CRS, b: str | pyproj.CRS) -> bool:
    """True when two CRSs place x/y alike (e.g. EPSG:7415 RD New + NAP and EPSG:28992 RD New)."""
    return horizontal(a).equals(horizontal(b), ignore_axis_order=True)


def is_geographic(crs: str | pyproj.CRS) -> bool:
    """True for longitude/latitude CRSs (EPSG:4326, EPSG:4490, ...)."""
    return horizontal(crs).is_geographic


@lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> pyproj.Transformer:
    """A cached always-xy transformer between two CRSs."""
    return pyproj.Transformer.from_crs(parse(src), parse(dst), always_xy=True)


def transform_xy(x: np.ndarray, y: np.ndarray, src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate arrays from ``src`` to ``dst`` (easting/longitude first), vectorised."""
    if same_horizontal(src, dst):
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return transformer(src, dst).transform(np.asarray(x, dtype=float), np.asarray(y, dtype=float))


def reproject(geoms, src: str, dst: str):
    """Geometry (or array of geometries) from ``src`` to ``dst``, vectorised; x/y change, z is kept as is."""
    if normalise(src) == normalise(dst) or same_horizontal(src, dst):
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


def area_of_use(crs: str | pyproj.CRS) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) in degrees where the CRS may be used, or None when the CRS does not say."""
    c = parse(crs)
    aou = c.area_of_use or horizontal(c).area_of_use
    return None if aou is None else tuple(float(v) for v in aou.bounds)  # type: ignore[return-value]


def lonlat_outside(lon: np.ndarray, lat: np.ndarray, crs: str | pyproj.CRS, margin_deg: float = 1.0) -> np.ndarray:
    """Mask of lon/lat positions outside ``crs``'s area of use widened by ``margin_deg`` (all False when the CRS
    states no area or its area crosses the antimeridian): the one test behind every reader's wrong-CRS check."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    aou = area_of_use(crs)
    if aou is None or aou[0] > aou[2]:
        return np.zeros(lon.shape, dtype=bool)
    w, s, e, n = aou
    m = margin_deg
    return ~((lon >= w - m) & (lon <= e + m) & (lat >= s - m) & (lat <= n + m))


def _crs_label(crs: str | pyproj.CRS) -> str:
    n = normalise(crs)
    return n if n.startswith("EPSG:") else parse(crs).name


def outside_area_of_use(bbox: list[float] | tuple[float, ...], crs: str | pyproj.CRS,
                        against: str | pyproj.CRS | None = None) -> str | None:
    """Why a data bbox (given in ``crs``) cannot be right — it misses the area of use of ``against`` (default:
    ``crs`` itself) — or None if fine.

    Catches a wrong or missing CRS declaration (projected metres read as degrees, degrees read as metres, swapped
    axes, the other hemisphere) and data that does not belong in a store: the bbox must *intersect* the area of
    use (with a margin of 1 degree, as data sets often spill a little over zone edges).
    """
    target = crs if against is None else against
    aou = area_of_use(target)
    if aou is None:
        return None
    x0, y0, x1, y1 = (float(v) for v in bbox)
    where = f"[{x0:.6g}, {y0:.6g}, {x1:.6g}, {y1:.6g}]"
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return f"coordinates {where} are not finite"
    w, s, e, n = aou
    try:
        if is_geographic(crs):
            lon0, lat0, lon1, lat1 = x0, y0, x1, y1
            if lat0 < -90 or lat1 > 90 or lon0 < -360 or lon1 > 360:
                raise ValueError("not degrees")
        else:
            lon0, lat0, lon1, lat1 = transformer(normalise(crs), "EPSG:4326").transform_bounds(
                x0, y0, x1, y1, densify_pts=21)
    except Exception:  # noqa: BLE001 - PROJ refuses points far outside the projection's domain
        lon0 = lat0 = lon1 = lat1 = math.nan
    got = ""
    if all(math.isfinite(v) for v in (lon0, lat0, lon1, lat1)):
        m = 1.0
        lat_ok = lat1 >= s - m and lat0 <= n + m
        if w <= e:
            lon_ok = lon1 >= w - m and lon0 <= e + m
        else:  # the area of use crosses the antimeridian
            lon_ok = lon1 >= w - m or lon0 <= e + m
        if lat_ok and lon_ok:
            return None
        if against is not None or not is_geographic(crs):
            got = f" (lon {lon0:.4f}..{lon1:.4f}, lat {lat0:.4f}..{lat1:.4f})"
    return (f"coordinates {where}{got} lie outside the area of use of {_crs_label(target)} "
            f"(lon {w:g}..{e:g}, lat {s:g}..{n:g}); wrong CRS?")


# ---------------------------------------------------------------------------------------------------------------
# GCJ-02 / BD-09
# ---------------------------------------------------------------------------------------------------------------

_A = 6378245.0  # Krasovsky 1940 semi-major axis, as used by the GCJ-02 formulas
_EE = 0.00669342162296594323  # its first eccentricity squared
_X_PI = math.pi * 3000.0 / 180.0


def out_of_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """True where a point lies outside the rectangle in which GCJ-02 applies its offset (it equals WGS84 there)."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    return (lon < 72.004) | (lon > 137.8347) | (lat < 0.8293) | (lat > 55.8271)


def _d_lat(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    r += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    r += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    r += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    return r


def _d_lon(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    r += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    r += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    r += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return r


def wgs84_to_gcj02(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 longitude/latitude (degrees) to GCJ-02, vectorised; identity outside China."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    dlat = _d_lat(lon - 105.0, lat - 35.0)
    dlon = _d_lon(lon - 105.0, lat - 35.0)
    rad = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(rad) * np.pi)
    out = out_of_china(lon, lat)
    return np.where(out, lon, lon + dlon), np.where(out, lat, lat + dlat)


def gcj02_to_wgs84(lon, lat, tol_deg: float = 1e-10, max_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 to WGS84 by fixed-point iteration of the forward formula (error < 1e-9 degrees, far below 0.5 m)."""
    glon, glat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    wlon, wlat = glon.copy(), glat.copy()
    for _ in range(max_iter):
        flon, flat = wgs84_to_gcj02(wlon, wlat)
        elon, elat = flon - glon, flat - glat
        wlon, wlat = wlon - elon, wlat - elat
        if float(np.max(np.abs(elon), initial=0.0)) < tol_deg and float(np.max(np.abs(elat), initial=0.0)) < tol_deg:
            break
    return wlon, wlat


def gcj02_to_bd09(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 to Baidu BD-09 (published formula)."""
    x, y = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Baidu BD-09 to GCJ-02 (published inverse formula)."""
    x, y = np.asarray(lon, dtype=float) - 0.0065, np.asarray(lat, dtype=float) - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def bd09_to_wgs84(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Baidu BD-09 to WGS84 (through GCJ-02 and its iterative inverse)."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def wgs84_to_bd09(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 to Baidu BD-09 (through GCJ-02)."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def web_coords(value: str | None) -> str:
    """The declared web coordinate system ('wgs84' when none), lower-case; ValueError for unknown names."""
    v = (value or "wgs84").strip().lower().replace("-", "").replace("_", "")
    aliases = {"wgs84": "wgs84", "gcj02": "gcj02", "gcj": "gcj02", "mars": "gcj02", "bd09": "bd09", "bd09ll": "bd09",
               "baidu": "bd09"}
    if v not in aliases:
        raise ValueError(f"unknown coords {value!r}; use one of {', '.join(WEB_COORDS)}")
    return aliases[v]


def web_to_wgs84(geoms, coords: str):
    """Geometries in GCJ-02 or BD-09 longitude/latitude converted to WGS84, vectorised (z kept)."""
    kind = web_coords(coords)
    if kind == "wgs84":
        return geoms
    conv = gcj02_to_wgs84 if kind == "gcj02" else bd09_to_wgs84

    def xy(c: np.ndarray) -> np.ndarray:
        out = c.copy()
        out[:, 0], out[:, 1] = conv(c[:, 0], c[:, 1])
        return out

    return shapely.transform(geoms, xy, include_z=bool(np.any(shapely.has_z(geoms))))


# ------------------------------------------------------------------------------------ OGC CRS URIs
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/(?P<auth>[A-Za-z]+)/[^/]+/(?P<code>[A-Za-z0-9]+)$")


def crs_uri(code: str) -> str:
    """OGC URI of an ``AUTH:CODE`` CRS (``EPSG:4548`` → ``http://www.opengis.net/def/crs/EPSG/0/4548``)."""
    auth, _, num = code.partition(":")
    if auth.upper() == "OGC" and num.upper() == "CRS84":
        return CRS84
    return f"http://www.opengis.net/def/crs/{auth.upper()}/0/{num}"


def uri_match(value: str) -> re.Match[str] | None:
    """The ``auth`` and ``code`` of an OGC CRS URI, or None for anything else."""
    return _URI.match(value)


@lru_cache(maxsize=32)
def from_uri(uri: str) -> pyproj.CRS:
    """The CRS of an OGC URI (CRS84 keeps its lon/lat order), or of any text pyproj reads."""
    if uri == CRS84:
        return pyproj.CRS.from_user_input("OGC:CRS84")
    m = _URI.match(uri)
    return pyproj.CRS.from_user_input(f"{m['auth']}:{m['code']}" if m else uri)


def north_first(uri: str) -> bool:
    """Whether the CRS's first axis is northing/latitude (EPSG:4326, EPSG:4548): coordinates are swapped."""
    return from_uri(uri).axis_info[0].direction.lower() in ("north", "south")


_SEARCH_LOCK = threading.Lock()
_TRANSFORMERS: dict[tuple[str, str], pyproj.Transformer] = {}


def shared_transformer(src: str, dst: str) -> pyproj.Transformer:
    """An x/y-ordered transformer between two CRS URIs, shared by all threads: PROJ's operation search runs once
    here (single-flight: concurrent first callers wait for the one search), and the transformer is rebuilt from its
    pipeline text, which pyproj re-instantiates per thread in microseconds (a ``from_crs`` transformer repeats the
    ~170 ms search in every new worker thread)."""
    t = _TRANSFORMERS.get((src, dst))
    if t is None:
        with _SEARCH_LOCK:
            t = _TRANSFORMERS.get((src, dst))
            if t is None:
                found = pyproj.Transformer.from_crs(from_uri(src), from_uri(dst), always_xy=True)
                t = _TRANSFORMERS[(src, dst)] = pyproj.Transformer.from_pipeline(found.definition)
    return t

