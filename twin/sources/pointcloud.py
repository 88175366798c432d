"""LAS/LAZ point clouds (laspy + lazrs), read in bounded chunks so files larger than memory stream.

CRS: from the header (WKT VLR or GeoTIFF keys), else from the user's ``--crs`` (an EPSG code, a WKT string or a path
to a ``.wkt`` / ``.prj`` file); never guessed. A ``--crs`` that disagrees with the header is an error.

Units: :func:`iter_points` always yields metres. ``x``/``y`` are the coordinates of the file's CRS (or of ``to_crs``
when given, reprojected) multiplied by that CRS's metres-per-unit factor, so for the metric CRSs the store uses they
are the CRS coordinates themselves; for a file in feet they are the same plane scaled to metres (divide by
``info["units"]["xy_m"]`` to get feet back). ``z`` is scaled by the vertical unit: the vertical CRS's unit for a
compound CRS, the GeoTIFF VerticalUnits key when present, else the horizontal unit (LAS convention for projected
CRSs). Vertical datums are never transformed.

``read`` (the ingest reader) streams the whole file once: exact point count, class and return histograms, real
bounds, RGB presence; a truncated or corrupt file fails there, before anything reaches the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import laspy
import numpy as np
import pyproj
from pyproj.database import get_units_map

from twin.geo.crs import area_of_use, lonlat_outside, normalise
from twin.sources.base import ReadContext, SourceError, SourceRead
from twin.sources.features import check_extent as check_source_extent

CHUNK = 1_000_000  # points per chunk: ~60-100 MB of decoded arrays whatever the file size
AREA_MARGIN_DEG = 1.0  # tolerance around a CRS's area of use
MAX_PROJECTED_M = 1e8  # no projected coordinate on Earth is this far from its origin
_DS = laspy.DecompressionSelection
# the only LAZ 1.4 layers the reader needs (the others are skipped by the decoder)
_SELECTION = _DS.XY_RETURNS_CHANNEL | _DS.Z | _DS.CLASSIFICATION | _DS.RGB
_VERTICAL_UNITS_KEY = 4099  # GeoTIFF VerticalUnitsGeoKey


# ---------------------------------------------------------------------------------------------------- CRS


def parse_user_crs(value: str | pyproj.CRS, path: Path | str) -> pyproj.CRS:
    """The CRS a user declared (EPSG code, WKT/PROJ string, or a .wkt/.prj file path); errors name ``path``."""
    if isinstance(value, pyproj.CRS):
        return value
    text = value.strip()
    if _looks_like_path(text):
        try:
            text = Path(text).read_text(encoding="utf-8", errors="replace").strip()
        except OSError as exc:
            raise SourceError(path, f"cannot read the --crs file {value!r} ({exc.strerror or exc})") from exc
        if not text:
            raise SourceError(path, f"the --crs file {value!r} is empty")
    try:
        return pyproj.CRS.from_user_input(text)
    except pyproj.exceptions.CRSError as exc:
        raise SourceError(path, f"--crs {value[:80]!r} is not a CRS that PROJ understands ({exc})") from exc


def _looks_like_path(text: str) -> bool:
    if "[" in text or "\n" in text or text.startswith("+") or len(text) > 1024:
        return False  # WKT or a PROJ string
    if text.lower().endswith((".wkt", ".prj")):
        return True
    try:
        return Path(text).is_file()
    except OSError:
        return False


def _horizontal(crs: pyproj.CRS) -> pyproj.CRS:
    return crs.sub_crs_list[0] if crs.is_compound else crs


def same_crs(a: pyproj.CRS, b: pyproj.CRS, bbox: Sequence[float] | None = None) -> bool:
    """True when two CRSs describe the same coordinates: equal definitions, equal horizontal parts when one of
    them has no vertical part, or (names aside) transforms that move the data's bbox corners by < 1 mm."""
    if a.equals(b, ignore_axis_order=True):
        return True
    ha, hb = _horizontal(a), _horizontal(b)
    if a.is_compound and b.is_compound:
        if not a.sub_crs_list[1].equals(b.sub_crs_list[1], ignore_axis_order=True):
            return False
    if ha.equals(hb, ignore_axis_order=True):
        return True
    if bbox is None or ha.is_geographic != hb.is_geographic or xy_unit_m(ha) != xy_unit_m(hb):
        return False
    xs = np.array([bbox[0], bbox[2], bbox[0], bbox[2], (bbox[0] + bbox[2]) / 2])
    ys = np.array([bbox[1], bbox[1], bbox[3], bbox[3], (bbox[1] + bbox[3]) / 2])
    try:
        tx, ty = pyproj.Transformer.from_crs(ha, hb, always_xy=True).transform(xs, ys)
    except pyproj.exceptions.ProjError:
        return False
    tol = 1e-8 if ha.is_geographic else 1e-3 / (xy_unit_m(ha) or 1.0)
    return bool(np.all(np.isfinite(tx)) and np.max(np.hypot(tx - xs, ty - ys)) < tol)


def xy_unit_m(crs: pyproj.CRS) -> float | None:
    """Metres per horizontal coordinate unit (1.0, 0.3048, 0.3048006…); None for angular (geographic) CRSs."""
    h = _horizontal(crs)
    if h.is_geographic or not h.axis_info:
        return None
    return float(h.axis_info[0].unit_conversion_factor)


@lru_cache(maxsize=1)
def _linear_units() -> dict[int, tuple[str, float]]:
    return {int(u.code): (u.name, float(u.conv_factor))
            for u in get_units_map(auth_name="EPSG", category="linear").values() if u.code.isdigit()}


def _geokey_vertical_unit(header: laspy.LasHeader | None) -> tuple[str, float] | None:
    if header is None:
        return None
    for vlr in header.vlrs:
        for key in getattr(vlr, "geo_keys", None) or []:
            if key.id == _VERTICAL_UNITS_KEY and key.tiff_tag_location == 0:
                return _linear_units().get(int(key.value_offset))
    return None


def units_of(crs: pyproj.CRS, header: laspy.LasHeader | None = None) -> dict[str, Any]:
    """Horizontal and vertical units of a point cloud's CRS, with their factors to metres."""
    h = _horizontal(crs)
    xy_m = xy_unit_m(crs)
    xy_name = h.axis_info[0].unit_name if h.axis_info else "unknown"
    if crs.is_compound:
        ax = crs.sub_crs_list[1].axis_info[0]
        z_name, z_m = ax.unit_name, float(ax.unit_conversion_factor)
    elif len(crs.axis_info) >= 3:
        ax = crs.axis_info[2]
        z_name, z_m = ax.unit_name, float(ax.unit_conversion_factor)
    elif (key := _geokey_vertical_unit(header)) is not None:
        z_name, z_m = key
    elif xy_m is not None:
        z_name, z_m = xy_name, xy_m  # LAS convention: z in the horizontal unit when no vertical CRS says otherwise
    else:
        z_name, z_m = "metre", 1.0
    return {"xy": xy_name, "xy_m": xy_m, "z": z_name, "z_m": z_m}


def _header_crs(header: laspy.LasHeader, path: Path) -> pyproj.CRS | None:
    try:
        return header.parse_crs()
    except Exception as exc:  # laspy/pyproj raise several types for malformed CRS records
        raise SourceError(path, f"the CRS record in the LAS header cannot be parsed ({exc})") from exc


def resolve_crs(path: Path, file_crs: pyproj.CRS | None, declared: str | pyproj.CRS | None,
                bbox: Sequence[float] | None = None, where: str = "the LAS header") -> pyproj.CRS:
    """The CRS to use: the file's, checked against the declared one, or the declared one; never guessed."""
    user = parse_user_crs(declared, path) if declared is not None and declared != "" else None
    if file_crs is None and user is None:
        raise SourceError(path, f"no CRS in {where}; pass --crs (the CRS is never guessed)")
    if file_crs is not None and user is not None:
        if not same_crs(file_crs, user, bbox):
            raise SourceError(path, f"file declares CRS {_label(file_crs)} but --crs says {_label(user)}")
        return user if user.is_compound and not file_crs.is_compound else file_crs
    return user if user is not None else file_crs  # type: ignore[return-value]


def _label(crs: pyproj.CRS) -> str:
    code = crs.to_epsg(min_confidence=100)
    return f"EPSG:{code} ({crs.name})" if code else repr(crs.name)


def check_extent(path: Path, crs: pyproj.CRS, bbox: Sequence[float], what: str = "coordinates") -> None:
    """Refuse NaN/infinite, impossible or out-of-area coordinates: a wrong CRS or a broken header, never data."""
    b = np.asarray(bbox, dtype=np.float64)
    if not np.all(np.isfinite(b)):
        raise SourceError(path, f"the {what} are not finite numbers (NaN or infinite): bbox {b.tolist()}")
    if b[0] > b[2] or b[1] > b[3]:
        raise SourceError(path, f"the {what} have min > max: bbox {b.tolist()}")
    h = _horizontal(crs)
    if not h.is_geographic and np.max(np.abs(b)) * (xy_unit_m(h) or 1.0) > MAX_PROJECTED_M:
        raise SourceError(path, f"the {what} {b.tolist()} are absurd: beyond {MAX_PROJECTED_M:.0e} m from the "
                                f"origin of {_label(crs)}")
    xs = np.array([b[0], b[2], b[0], b[2], (b[0] + b[2]) / 2])
    ys = np.array([b[1], b[1], b[3], b[3], (b[1] + b[3]) / 2])
    if h.is_geographic:
        lon, lat = xs, ys
    else:
        try:
            to_geo = pyproj.Transformer.from_crs(h, h.geodetic_crs, always_xy=True)
            lon, lat = to_geo.transform(xs, ys, errcheck=False)
            bx, by = to_geo.transform(lon, lat, direction="INVERSE", errcheck=False)
        except pyproj.exceptions.ProjError as exc:
            raise SourceError(path, f"the {what} {b.tolist()} cannot be located in {_label(crs)} ({exc})") from exc
        unit = xy_unit_m(h) or 1.0
        ok = np.all(np.isfinite(lon)) and np.all(np.isfinite(lat)) and np.all(np.isfinite(bx))
        if not ok or np.max(np.hypot(bx - xs, by - ys)) * unit > 1.0:
            raise SourceError(path, f"the {what} {b.tolist()} are impossible in {_label(crs)} (absurd values or "
                                    "a wrong CRS)")
    lon, lat = np.asarray(lon), np.asarray(lat)
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 360):
        raise SourceError(path, f"the {what} {b.tolist()} are impossible in {_label(crs)} (latitude beyond 90°)")
    if lonlat_outside(lon, lat, crs, AREA_MARGIN_DEG).any():
        w, s, e, n = area_of_use(crs)
        raise SourceError(
            path, f"the {what} (lon {lon.min():.3f}..{lon.max():.3f}, lat {lat.min():.3f}..{lat.max():.3f}) lie "
                  f"outside the area of use of {_label(crs)} (lon {w}..{e}, lat {s}..{n}); is the CRS right?")


# ---------------------------------------------------------------------------------------------------- frames


@dataclass
class Frame:
    """How a file's coordinates become metres: an optional reprojection, then unit factors."""

    src: pyproj.CRS
    dst: pyproj.CRS
    xy_m: float
    z_m: float
    transformer: pyproj.Transformer | None = None

    @classmethod
    def of(cls, path: Path, src: pyproj.CRS, to_crs: str | pyproj.CRS | None,
           header: laspy.LasHeader | None = None, bbox: Sequence[float] | None = None) -> Frame:
        """The frame for a file in ``src``; ``to_crs`` (optional) is the CRS x/y are reprojected into."""
        dst = src if to_crs is None else parse_user_crs(to_crs, path)
        t = None
        if to_crs is not None and not same_crs(_horizontal(src), _horizontal(dst), bbox):
            t = pyproj.Transformer.from_crs(_horizontal(src), _horizontal(dst), always_xy=True)
        xy_m = xy_unit_m(dst)
        if xy_m is None:
            raise SourceError(path, f"{_label(dst)} is geographic (degrees); pass a projected to_crs to get metres")
        return cls(src, dst, xy_m, float(units_of(src, header)["z_m"]), t)

    def apply(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, y, z in metres (reprojected first when the frame says so)."""
        if self.transformer is not None:
            x, y = self.transformer.transform(x, y)
            x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if self.xy_m != 1.0:
            x, y = x * self.xy_m, y * self.xy_m
        if self.z_m != 1.0:
            z = z * self.z_m
        return x, y, z


# ---------------------------------------------------------------------------------------------------- LAS access


def is_pipeline(path: Path | str) -> bool:
    """True for a PDAL pipeline file (``*.pipeline.json``), which the PDAL reader handles."""
    return str(path).lower().endswith(".pipeline.json")


def _open(path: Path) -> laspy.LasReader:
    if not path.exists():
        raise SourceError(path, "no such file")
    if path.stat().st_size == 0:
        raise SourceError(path, "the file is empty")
    try:
        return laspy.open(path, decompression_selection=_SELECTION)
    except (laspy.errors.LaspyException, OSError, ValueError, EOFError) as exc:
        raise SourceError(path, f"not a readable LAS/LAZ file ({exc})") from exc


def _chunks(f: laspy.LasReader, path: Path, chunk: int) -> Iterator[laspy.ScaleAwarePointRecord]:
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 point, got {chunk}")
    expected, n = int(f.header.point_count), 0
    try:
        for pts in f.chunk_iterator(chunk):
            if len(pts) == 0:
                break
            n += len(pts)
            yield pts
    except SourceError:
        raise
    except Exception as exc:  # lazrs / laspy raise several types for damaged point data
        raise SourceError(path, f"corrupt or truncated point data after {n:,} of {expected:,} points ({exc})"
                          ) from exc
    if n != expected:
        raise SourceError(path, f"the header says {expected:,} points but the file holds {n:,} (truncated?)")


def _header_facts(path: Path, h: laspy.LasHeader) -> dict[str, Any]:
    mins, maxs = np.asarray(h.mins, dtype=np.float64), np.asarray(h.maxs, dtype=np.float64)
    dims = list(h.point_format.dimension_names)
    return {
        "point_count": int(h.point_count),
        "bbox": [float(mins[0]), float(mins[1]), float(maxs[0]), float(maxs[1])],
        "z_range": [float(mins[2]), float(maxs[2])],
        "las_version": f"{h.version.major}.{h.version.minor}",
        "point_format": int(h.point_format.id),
        "compressed": path.suffix.lower() == ".laz" or h.point_format.id >= 128,
        "dimensions": dims,
        "rgb": all(d in dims for d in ("red", "green", "blue")),
        "creation_date": h.creation_date.isoformat() if h.creation_date else None,
    }


def _check_scales(path: Path, h: laspy.LasHeader) -> None:
    sc, off = np.asarray(h.scales, dtype=np.float64), np.asarray(h.offsets, dtype=np.float64)
    if not (np.all(np.isfinite(sc)) and np.all(np.isfinite(off))):
        raise SourceError(path, f"the header's scale {sc.tolist()} or offset {off.tolist()} is not a finite number, "
                                "so every coordinate is NaN")
    if np.any(sc <= 0):
        raise SourceError(path, f"the header's scale factors {sc.tolist()} must be positive")


def header_info(path: Path, crs: str | None = None) -> dict[str, Any]:
    """CRS, units, header extent and point count of a LAS/LAZ file, without reading its points."""
    return _header_info(Path(path), crs)[0]


def _header_info(path: Path, crs: str | None) -> tuple[dict[str, Any], pyproj.CRS]:
    with _open(path) as f:
        h = f.header
        info = _header_facts(path, h)
        _check_scales(path, h)
        c = resolve_crs(path, _header_crs(h, path), crs, info["bbox"])
        units = units_of(c, h)
    if info["point_count"] > 0:
        check_extent(path, c, info["bbox"], "header bounds")
    info["crs"] = normalise(c)
    info["units"] = units
    return info, c


def crs_of(path: Path | str, crs: str | None = None) -> pyproj.CRS:
    """The CRS of a LAS/LAZ file (header or declared, checked), as a pyproj CRS (any cloud: ``points.crs_of``)."""
    path = Path(path)
    with _open(path) as f:
        h = f.header
        return resolve_crs(path, _header_crs(h, path), crs, _header_facts(path, h)["bbox"])


def acquired_of(info: dict) -> datetime | None:
    """The LAS creation date (UTC midnight) as the acquisition time, when the header carries one."""
    d = info.get("creation_date")
    return datetime.fromisoformat(d).replace(tzinfo=UTC) if d else None


def iter_points(path: Path | str, chunk: int = CHUNK, *, crs: str | None = None,
                to_crs: str | pyproj.CRS | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Chunks (≤ ``chunk`` points) of x, y, z in metres (float64; see the module doc), classification (uint8),
    return_number, number_of_returns (uint8) and red/green/blue (uint16) when the format has colour.

    ``crs`` is the declared CRS for files without one (checked against the header otherwise); ``to_crs``
    reprojects x/y (e.g. into the store CRS). Memory is bounded by ``chunk`` whatever the file size.
    """
    path = Path(path)
    with _open(path) as f:
        h = f.header
        _check_scales(path, h)
        bbox = _header_facts(path, h)["bbox"]
        frame = Frame.of(path, resolve_crs(path, _header_crs(h, path), crs, bbox), to_crs, h, bbox)
        rgb = all(d in h.point_format.dimension_names for d in ("red", "green", "blue"))
        for pts in _chunks(f, path, chunk):
            x, y, z = frame.apply(np.asarray(pts.x, dtype=np.float64), np.asarray(pts.y, dtype=np.float64),
                                  np.asarray(pts.z, dtype=np.float64))
            out = {
                "x": x, "y": y, "z": z,
                "classification": np.asarray(pts.classification, dtype=np.uint8),
                "return_number": np.asarray(pts.return_number, dtype=np.uint8),
                "number_of_returns": np.asarray(pts.number_of_returns, dtype=np.uint8),
            }
            if rgb:
                for band in ("red", "green", "blue"):
                    out[band] = np.asarray(pts[band], dtype=np.uint16)
            yield out


# ---------------------------------------------------------------------------------------------------- full read


class Stats:
    """Streaming statistics of a point cloud: count, bounds, class and return histograms, colour presence."""

    def __init__(self) -> None:
        self.n = 0
        self.lo = np.full(3, np.inf)
        self.hi = np.full(3, -np.inf)
        self.classes = np.zeros(256, dtype=np.int64)
        self.returns = np.zeros(256, dtype=np.int64)
        self.multi = 0
        self.rgb_max = 0

    def update(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, cls: np.ndarray, rn: np.ndarray | None,
               nr: np.ndarray | None, rgb: Sequence[np.ndarray] = ()) -> None:
        """Add one chunk (coordinates may be raw integers: :meth:`bounds` takes the scale and offset)."""
        if len(x) == 0:
            return
        self.n += len(x)
        for i, a in enumerate((x, y, z)):
            self.lo[i] = min(self.lo[i], float(a.min()))
            self.hi[i] = max(self.hi[i], float(a.max()))
        self.classes += np.bincount(np.asarray(cls, dtype=np.uint8), minlength=256)
        if rn is not None:
            self.returns += np.bincount(np.asarray(rn, dtype=np.uint8), minlength=256)
        if nr is not None:
            self.multi += int(np.count_nonzero(np.asarray(nr) > 1))
        for band in rgb:
            self.rgb_max = max(self.rgb_max, int(band.max()))

    def bounds(self, scale: Sequence[float] = (1, 1, 1), offset: Sequence[float] = (0, 0, 0)
               ) -> tuple[np.ndarray, np.ndarray]:
        """(min xyz, max xyz), raw integers turned into coordinates by ``scale`` and ``offset``."""
        s, o = np.asarray(scale, dtype=np.float64), np.asarray(offset, dtype=np.float64)
        return self.lo * s + o, self.hi * s + o

    def facts(self) -> dict[str, Any]:
        """Histogram facts for the catalog (JSON-friendly: string keys)."""
        return {
            "class_counts": {str(c): int(v) for c, v in enumerate(self.classes) if v},
            "return_counts": {str(r): int(v) for r, v in enumerate(self.returns) if v},
            "multiple_returns": self.multi > 0,
        }


def scan(path: Path | str, crs: str | None = None, chunk: int = CHUNK) -> dict[str, Any]:
    """Header facts plus what only a full streaming read can tell: exact count, histograms, real bounds."""
    path = Path(path)
    t0 = time.perf_counter()
    info, c = _header_info(path, crs)
    stats = Stats()
    outside = 0
    with _open(path) as f:
        h = f.header
        rgb = info["rgb"]
        scale, offset = np.asarray(h.scales, dtype=np.float64), np.asarray(h.offsets, dtype=np.float64)
        # header bounds as raw integers, one step of slack for rounding
        raw_lo = np.floor((np.asarray(h.mins, dtype=np.float64) - offset) / scale) - 1
        raw_hi = np.ceil((np.asarray(h.maxs, dtype=np.float64) - offset) / scale) + 1
        for pts in _chunks(f, path, chunk):
            xyz = (np.asarray(pts.X), np.asarray(pts.Y), np.asarray(pts.Z))
            bands = [np.asarray(pts[b]) for b in ("red", "green", "blue")] if rgb else []
            stats.update(*xyz, pts.classification, pts.return_number, pts.number_of_returns, bands)
            out = np.zeros(len(xyz[0]), dtype=bool)
            for a, lo_, hi_ in zip(xyz, raw_lo, raw_hi, strict=True):
                out |= (a < lo_) | (a > hi_)
            outside += int(np.count_nonzero(out))
        lo, hi = stats.bounds(scale, offset)
        tol = scale
    if stats.n == 0:
        raise SourceError(path, "the file holds no points")
    points_box = [lo[0], lo[1], hi[0], hi[1]]
    if outside:
        problem = (f"{outside:,} of {stats.n:,} points lie outside the header's bounds (points "
                   f"{np.round(lo, 3).tolist()}..{np.round(hi, 3).tolist()}): corrupt point data or a wrong header")
        try:
            check_extent(path, c, points_box, "point coordinates")
        except SourceError as exc:
            raise SourceError(path, f"{exc.problem}; {problem}") from None
        raise SourceError(path, problem)
    check_extent(path, c, points_box, "point coordinates")
    info.update(stats.facts())
    info["rgb"] = bool(rgb and stats.rgb_max > 0)
    warnings = []
    header_box = np.array([*info["bbox"][:2], info["z_range"][0], *info["bbox"][2:], info["z_range"][1]])
    real_box = np.array([lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]])
    if np.any(np.abs(header_box - real_box) > np.tile(tol, 2) + 1e-9 * np.abs(real_box)):
        # points inside looser header bounds: a stale header (e.g. after filtering), not an error
        warnings.append(f"header bounds {header_box.round(3).tolist()} are wider than the points' "
                        f"{real_box.round(3).tolist()}; the points' bounds are used")
        info["header_bbox"] = info["bbox"]
    info["bbox"] = [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]
    info["z_range"] = [float(lo[2]), float(hi[2])]
    u = info["units"]
    info["bbox_m"] = [v * u["xy_m"] for v in info["bbox"]] if u["xy_m"] is not None else None
    info["z_range_m"] = [v * u["z_m"] for v in info["z_range"]]
    info["warnings"] = warnings
    info["scan_seconds"] = round(time.perf_counter() - t0, 3)
    return info


def chunk_option(ctx: ReadContext) -> int:
    """The ``chunk`` reader option (points per chunk), validated."""
    value = ctx.options.get("chunk", CHUNK)
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise SourceError(ctx.path, f"option chunk={value!r} must be a positive number of points")
    return n


def check_store_area(ctx: ReadContext, crs: str, bbox: Sequence[float]) -> None:
    """Refuse a cloud whose bbox (in ``crs``) lies outside the area of use of the store CRS: a cloud of another city
    would build its buildings and terrain in the wrong place. Same test and wording as the vector readers'."""
    check_source_extent(ctx, [float(v) for v in bbox], crs)


def read(ctx: ReadContext) -> SourceRead:
    """Catalog facts of a LAS/LAZ file (one full streaming read); its points stay in the file for the builds."""
    info = scan(ctx.path, ctx.crs, chunk_option(ctx))
    check_store_area(ctx, info["crs"], info["bbox"])
    info["acquired"] = acquired_of(info)
    info["reader"] = "laspy"
    return SourceRead(info=info)
