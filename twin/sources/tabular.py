"""Tabular toolkit shared by the CSV readers (sensors, trajectories) and SensorThings: options, header matching,
Arrow-string CSV reading, number and time parsing, and coordinates checked against the store CRS.

Everything works column-wise on Arrow arrays (no per-row Python); every problem is a ``SourceError`` naming the file
and the column or value at fault.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyproj

from data_models import UTC_TS
from twin.geo import crs as crs_mod
from twin.geo.crs import lonlat_outside, normalise
from twin.sources.base import ReadContext, SourceError

NULL_MARKERS = ["", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "#N/A"]

# auto-detection: role -> normalised header names, in order of preference
ALIASES: dict[str, tuple[str, ...]] = {
    "station": ("station_id", "station", "stationid", "station_code", "site_id", "site", "siteid", "sensor_id",
                "sensor", "device_id", "location_id", "id"),
    "track": ("track_id", "track", "trajectory_id", "trajectory", "trip_id", "trip", "uid", "user_id", "user",
              "vehicle_id", "device_id", "tid", "id"),
    "time": ("timestamp", "time", "datetime", "date_time", "time_utc", "timestamp_utc", "utc_time", "observed_at",
             "phenomenon_time", "obs_time", "date"),
    "year": ("year",),
    "month": ("month",),
    "day": ("day",),
    "hour": ("hour",),
    "minute": ("minute",),
    "second": ("second",),
    "lon": ("lon", "lng", "longitude", "long", "lon_wgs84", "lng_wgs84", "longitude_wgs84"),
    "lat": ("lat", "latitude", "lat_wgs84", "latitude_wgs84"),
    "x": ("x", "easting"),
    "y": ("y", "northing"),
    "kind": ("kind", "station_kind", "station_type", "type", "category"),
    "name": ("name", "station_name", "site_name"),
    "variable": ("variable", "parameter", "pollutant", "measurand", "observed_property", "property"),
    "value": ("value", "result", "reading", "measurement"),
    "unit": ("unit", "units", "uom", "unit_of_measurement"),
}
_XY_HINT = re.compile(r"^([xy])_epsg_?(\d+)$")

# unit suffixes of variable names (normalised, '_'-separated): pm25_ugm3 -> (pm25, ug/m3)
_UNIT_SUFFIXES: dict[str, str] = {
    "ugm3": "ug/m3", "ug_m3": "ug/m3", "mgm3": "mg/m3", "mg_m3": "mg/m3", "ppm": "ppm", "ppb": "ppb",
    "degc": "degC", "celsius": "degC", "hpa": "hPa", "kpa": "kPa", "mm": "mm", "m": "m", "cm": "cm",
    "mps": "m/s", "m_s": "m/s", "kmh": "km/h", "km_h": "km/h", "pct": "%", "percent": "%", "db": "dB",
    "dba": "dB(A)", "lux": "lx", "wm2": "W/m2", "w_m2": "W/m2", "per_hour": "1/h", "per_h": "1/h", "vph": "1/h",
    "per_min": "1/min", "m3s": "m3/s", "m3_s": "m3/s",
}
_UNIT_SPELLINGS = {"µ": "u", "μ": "u", "³": "3", "²": "2", "°c": "degC", "°C": "degC", "℃": "degC"}

NUMBER_RE = r"^\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*$"
_ZONED_RE = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?[+-]\d{2}(?::?\d{2})?$"


# ------------------------------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------------------------------


def option_map(options: Mapping[str, Any], key: str, path: Path) -> dict[str, str]:
    """An option given as a dict or as 'a=b,c=d' text, as {str: str}; why: the CLI passes text, Python a dict."""
    v = options.get(key)
    if v is None or v == "":
        return {}
    if isinstance(v, Mapping):
        return {str(k).strip(): str(x).strip() for k, x in v.items()}
    if not isinstance(v, str):
        raise SourceError(path, f"option {key!r} must be a mapping or 'name=value,…' text, got {type(v).__name__}")
    out: dict[str, str] = {}
    for part in v.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise SourceError(path, f"option {key}: {part.strip()!r} is not name=value (syntax: a=b,c=d)")
        k, x = part.split("=", 1)
        out[k.strip()] = x.strip()
    return out


def option_list(options: Mapping[str, Any], key: str) -> list[str]:
    """An option given as a list or as 'a,b,c' text, as a list of stripped strings."""
    v = options.get(key)
    if v is None or v == "":
        return []
    items = v.split(",") if isinstance(v, str) else list(v)
    return [str(s).strip() for s in items if str(s).strip()]


def norm(name: str) -> str:
    """A header name normalised for matching: lowercase, runs of other characters as '_'."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def slug(value: str) -> str:
    """A station id as it appears in entity ids: lowercase, runs of non-alphanumerics (any script) as '-'."""
    return re.sub(r"[\W_]+", "-", value.strip().lower()).strip("-")


def normalise_unit(unit: str | None) -> str | None:
    """A unit spelled in ASCII (µg/m³ -> ug/m3, °C -> degC); None or empty stays None."""
    if unit is None or not str(unit).strip():
        return None
    u = str(unit).strip()
    for a, b in _UNIT_SPELLINGS.items():
        u = u.replace(a, b)
    return {"C": "degC", "deg C": "degC", "ug/m^3": "ug/m3", "mg/m^3": "mg/m3"}.get(u, u)


def variable_name(column: str) -> tuple[str, str | None]:
    """(variable, unit parsed from the name or None): 'PM2.5' -> ('pm25', None), 'pm25_ugm3' -> ('pm25', 'ug/m3'),
    'Temp [°C]' -> ('temp', 'degC')."""
    unit = None
    m = re.match(r"^(.*?)\s*[\[(]([^\])]+)[\])]\s*$", column)
    if m:
        column, unit = m.group(1), normalise_unit(m.group(2))
    n = re.sub(r"(?<=\d)\.(?=\d)", "", column.strip().lower())
    n = re.sub(r"[^0-9a-z]+", "_", n).strip("_")
    if unit is None:
        for suffix in sorted(_UNIT_SUFFIXES, key=len, reverse=True):
            if n.endswith("_" + suffix) and len(n) > len(suffix) + 1:
                return n[: -len(suffix) - 1], _UNIT_SUFFIXES[suffix]
    return n or column, unit


# ------------------------------------------------------------------------------------------------------------------
# CSV
# ------------------------------------------------------------------------------------------------------------------


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def read_header(path: Path, options: Mapping[str, Any]) -> tuple[list[str], str]:
    """(column names, delimiter) of a CSV; the delimiter is the option or the most frequent of , ; tab | in line 1."""
    try:
        with _open_text(path) as f:
            line = f.readline()
    except (UnicodeDecodeError, OSError, EOFError) as exc:
        raise SourceError(path, f"not a UTF-8 text CSV file ({exc})") from None
    if not line.strip():
        raise SourceError(path, "the file is empty (no header line)")
    delim = options.get("delimiter")
    if delim in ("tab", "\\t"):
        delim = "\t"
    if not delim:
        delim = max([",", ";", "\t", "|"], key=line.count)
    names = next(csv.reader([line.rstrip("\r\n")], delimiter=delim))
    names = [n.strip() for n in names]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SourceError(path, f"duplicate column name(s) {dup}")
    if any(not n for n in names):
        raise SourceError(path, "a column has an empty name")
    return names, delim


def read_csv_strings(path: Path, options: Mapping[str, Any]) -> pa.Table:
    """Every column of a CSV (.gz too) as Arrow strings, missing markers (NA, empty, ``na`` option) as null."""
    names, delim = read_header(path, options)
    nulls = NULL_MARKERS + option_list(options, "na")
    try:
        t = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=delim),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, null_values=nulls,
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise SourceError(path, f"not a readable CSV file ({exc})") from None
    t = t.rename_columns([n.strip() for n in t.column_names])
    if t.num_rows == 0:
        raise SourceError(path, "the file has a header but no rows")
    return t


def resolve_columns(path: Path, names: list[str], options: Mapping[str, Any], roles: Iterable[str],
                    skip_missing: Iterable[str] = ()) -> dict[str, str]:
    """Role -> column: the ``columns`` option first (an unknown role or a missing column is an error, except roles
    in ``skip_missing``), then auto-detection by header name for the roles still open."""
    roles = tuple(roles)
    by_norm = {norm(n): n for n in names}
    lookup = {**by_norm, **{n.lower(): n for n in names}, **{n: n for n in names}}
    out: dict[str, str] = {}
    for role, col in option_map(options, "columns", path).items():
        if role not in roles:
            raise SourceError(path, f"option columns: unknown role {role!r}; roles are {', '.join(roles)}")
        parts = [p.strip() for p in col.split("+")] if role == "time" else [col]
        found = [lookup.get(p) or lookup.get(p.lower()) or by_norm.get(norm(p)) for p in parts]
        if any(f is None for f in found):
            if role in skip_missing:
                continue
            raise SourceError(path, f"option columns: column {col!r} (for {role}) is not in the file; "
                                    f"columns are {', '.join(names)}")
        out[role] = "+".join(f for f in found if f)
    used = {c for v in out.values() for c in v.split("+")}
    for role in roles:
        if role in out:
            continue
        for alias in ALIASES.get(role, ()):
            col = by_norm.get(alias)
            if col is not None and col not in used:
                out[role] = col
                used.add(col)
                break
    mapped = option_map(options, "columns", path)
    if "time" in roles and "time" not in mapped and "date" in by_norm and "time" in by_norm \
            and out.get("time") in (by_norm["date"], by_norm["time"]):
        out["time"] = f"{by_norm['date']}+{by_norm['time']}"  # separate date and time-of-day columns
    for axis in ("x", "y"):
        if axis not in out:
            for n in names:
                if _XY_HINT.match(norm(n)) and _XY_HINT.match(norm(n)).group(1) == axis and n not in used:
                    out[axis] = n
                    used.add(n)
                    break
    return out


def xy_crs_hint(column: str) -> str | None:
    """The CRS a column name declares ('x_epsg4548' -> 'EPSG:4548'), else None."""
    m = _XY_HINT.match(norm(column))
    return f"EPSG:{m.group(2)}" if m else None


def column_text(t: pa.Table, spec: str) -> pa.ChunkedArray:
    """A column, or columns joined by ' ' for a 'date+time' spec, trimmed."""
    parts = [pc.utf8_trim_whitespace(t.column(c)) for c in spec.split("+")]
    col = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, " ")
    return col


def to_float(path: Path, col: pa.ChunkedArray | pa.Array, what: str) -> pa.ChunkedArray | pa.Array:
    """Text to float64 (NaN becomes null); text that is not a number is an error naming ``what`` and the value."""
    try:
        f = pc.cast(pc.utf8_trim_whitespace(col), pa.float64())
    except pa.ArrowInvalid:
        bad = pc.filter(col, pc.invert(pc.fill_null(pc.match_substring_regex(col, NUMBER_RE), True)))
        raise SourceError(path, f"{what}: {bad[0].as_py()!r} is not a number") from None
    return pc.if_else(pc.is_nan(f), pa.scalar(None, pa.float64()), f)


def try_float(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array | None:
    """Text to float64 when every non-null value is a number (NaN -> null), else None."""
    try:
        f = pc.cast(pc.utf8_trim_whitespace(col), pa.float64())
    except pa.ArrowInvalid:
        return None
    return pc.if_else(pc.is_nan(f), pa.scalar(None, pa.float64()), f)


# ------------------------------------------------------------------------------------------------------------------
# Time
# ------------------------------------------------------------------------------------------------------------------


def parse_tz(path: Path, tz: str | None) -> str | None:
    """A zone option as Arrow understands it: '+08:00', '+0800', '+8', 'UTC+8', 'Z', 'UTC' or an IANA name."""
    if tz is None or not str(tz).strip():
        return None
    s = str(tz).strip()
    if s.upper() in ("Z", "UTC", "GMT", "UTC+0", "GMT+0", "+0", "+00", "+00:00"):
        return "+00:00"
    m = re.fullmatch(r"(?i)(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?", s)
    if m:
        hh, mm = int(m.group(2)), int(m.group(3) or 0)
        if hh > 14 or mm >= 60:
            raise SourceError(path, f"time zone offset {s!r} is out of range")
        return f"{m.group(1)}{hh:02d}:{mm:02d}"
    try:
        pc.assume_timezone(pa.array([0], pa.timestamp("us")), timezone=s)
    except pa.ArrowInvalid:
        raise SourceError(path, f"unknown time zone {s!r}; use an offset like +08:00 or a name like "
                                "Asia/Shanghai") from None
    return s


def _first_failure(arr: pa.Array, fn) -> Any:
    """The first element of ``arr`` on which ``fn`` raises (bisection; only called on the error path)."""
    lo, hi = 0, len(arr)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            fn(arr.slice(lo, mid - lo))
            lo = mid
        except (pa.ArrowInvalid, ValueError):
            hi = mid
    return arr[lo].as_py()


def _localise(path: Path, naive: pa.Array, tz: str | None, what: str) -> pa.Array:
    if tz is None:
        raise SourceError(path, f"{what}: the times carry no zone and none was declared; pass --option tz=+08:00 "
                                "(or an IANA name like Asia/Shanghai, or tz=UTC) — the zone is never guessed")
    try:
        return pc.assume_timezone(naive, timezone=tz, ambiguous="raise", nonexistent="raise").cast(UTC_TS)
    except pa.ArrowInvalid as exc:
        raise SourceError(path, f"{what}: local times do not map to UTC in zone {tz} ({str(exc).splitlines()[0]}); "
                                "declare a fixed offset such as tz=+01:00") from None


def parse_times(path: Path, col: pa.ChunkedArray | pa.Array, tz: str | None, time_format: str | None = None,
                what: str = "time") -> pa.Array:
    """Text times as timestamp[us, UTC]: ISO 8601 with or without zone (then ``tz`` applies), a strptime
    ``time_format``, or Unix epoch seconds/milliseconds (10/13 digits); anything unparseable is an error."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    arr = pc.utf8_trim_whitespace(arr)
    nulls = arr.null_count
    if nulls:
        first = pc.index(pc.is_null(arr), True).as_py()
        raise SourceError(path, f"{what}: {nulls} row(s) have no time (first at data row {first + 1})")
    tz = parse_tz(path, tz)
    if time_format:
        try:
            t = pc.strptime(arr, format=time_format, unit="us")
        except pa.ArrowInvalid:
            bad = _first_failure(arr, lambda a: pc.strptime(a, format=time_format, unit="us"))
            raise SourceError(path, f"{what}: {bad!r} does not match time_format {time_format!r}") from None
        return t.cast(UTC_TS) if t.type.tz else _localise(path, t, tz, what)
    if len(arr) and pc.all(pc.match_substring_regex(arr, r"^\d{10}(?:\.\d+)?$|^\d{13}$")).as_py():
        num = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        us = np.where(num >= 1e12, num * 1e3, num * 1e6).astype(np.int64)
        return pa.array(us, pa.int64()).cast(UTC_TS)
    s = pc.replace_substring_regex(arr, r"(\d)\s*(?:UTC|GMT|Z|z)$", r"\1+00:00")
    s = pc.replace_substring_regex(s, r"(\d)\s+([+-]\d{2}(?::?\d{2})?)$", r"\1\2")
    s = pc.replace_substring_regex(s, r"(\.\d{6})\d+", r"\1")
    zoned = pc.match_substring_regex(s, _ZONED_RE)
    n_zoned = pc.sum(zoned).as_py() or 0
    mixed = 0 < n_zoned < len(s)
    parts = [(pc.filter(s, zoned), UTC_TS), (pc.filter(s, pc.invert(zoned)), pa.timestamp("us"))] if mixed else \
        [(s, UTC_TS if n_zoned else pa.timestamp("us"))]
    for part, target in parts:
        try:
            t = part.cast(target)
        except pa.ArrowInvalid:
            bad = _first_failure(part, lambda a, target=target: a.cast(target))
            raise SourceError(path, f"{what}: cannot parse {bad!r} as a time (ISO 8601 like 2024-05-27T08:00:00+08:00 "
                                    "expected; pass --option time_format=… for other layouts)") from None
    if mixed:
        first = pc.index(zoned, not zoned[0].as_py()).as_py()
        raise SourceError(path, f"{what}: some times carry a zone and some do not (e.g. {arr[0].as_py()!r} and "
                                f"{arr[first].as_py()!r})")
    return t if n_zoned else _localise(path, t, tz, what)


def times_from_parts(path: Path, t: pa.Table, cols: Mapping[str, str], tz: str | None) -> pa.Array:
    """timestamp[us, UTC] from year/month/day[/hour/minute/second] columns (local time in ``tz``)."""
    parts: dict[str, np.ndarray] = {}
    for role in ("year", "month", "day", "hour", "minute", "second"):
        if role not in cols:
            continue
        c = t.column(cols[role])
        if c.null_count:
            raise SourceError(path, f"time: column {cols[role]!r} has {c.null_count} empty value(s)")
        try:
            parts[role] = pc.cast(pc.utf8_trim_whitespace(c), pa.int64()).to_numpy()
        except pa.ArrowInvalid:
            raise SourceError(path, f"time: column {cols[role]!r} holds a value that is not an integer") from None
    y, m, d = parts["year"], parts["month"], parts["day"]
    zero = np.zeros(len(y), np.int64)
    h, mi, s = parts.get("hour", zero), parts.get("minute", zero), parts.get("second", zero)
    for name, v, lo, hi in (("month", m, 1, 12), ("day", d, 1, 31), ("hour", h, 0, 23), ("minute", mi, 0, 59),
                            ("second", s, 0, 59), ("year", y, 1, 9999)):
        bad = (v < lo) | (v > hi)
        if bad.any():
            i = int(np.argmax(bad))
            raise SourceError(path, f"time: {name} {int(v[i])} at data row {i + 1} is out of range {lo}..{hi}")
    months = ((y - 1970) * 12 + (m - 1)).astype("datetime64[M]")
    days = months.astype("datetime64[D]") + (d - 1).astype("timedelta64[D]")
    bad = days.astype("datetime64[M]") != months
    if bad.any():
        i = int(np.argmax(bad))
        raise SourceError(path, f"time: {int(y[i])}-{int(m[i]):02d}-{int(d[i]):02d} at data row {i + 1} is not a date")
    us = days.astype("datetime64[us]").astype(np.int64) + ((h * 60 + mi) * 60 + s) * 1_000_000
    return _localise(path, pa.array(us, pa.timestamp("us")), parse_tz(path, tz), "time")


# ------------------------------------------------------------------------------------------------------------------
# Coordinates
# ------------------------------------------------------------------------------------------------------------------

_AREA_MARGIN_DEG = 5.0


def check_area(path: Path, lon: np.ndarray, lat: np.ndarray, store_crs: str, labels: Any = None,
               min_inside: float = 1.0) -> None:
    """Refuse coordinates that are not lon/lat or lie far outside the store CRS's area of use (wrong hemisphere,
    swapped or mis-signed axes, wrong CRS); ``min_inside`` is the fraction of points that must be inside."""
    ok = np.isfinite(lon) & np.isfinite(lat)
    bad = ok & ((np.abs(lat) > 90) | (np.abs(lon) > 180))
    if bad.any():
        i = int(np.argmax(bad))
        who = f" ({labels[i]})" if labels is not None else ""
        raise SourceError(path, f"coordinates lon={lon[i]}, lat={lat[i]}{who} are not valid longitude/latitude "
                                "(swapped columns, or projected x/y given as lon/lat?)")
    if not ok.any():
        return
    inside = ~lonlat_outside(lon, lat, store_crs, _AREA_MARGIN_DEG)
    inside_frac = float(inside[ok].mean())
    if inside_frac < min_inside:
        i = int(np.argmax(ok & ~inside))
        who = f" ({labels[i]})" if labels is not None else ""
        raise SourceError(path, f"{int((ok & ~inside).sum())} of {int(ok.sum())} location(s) lie outside the area "
                                f"of use of the store CRS {store_crs}, e.g. lon={lon[i]:.5f}, "
                                f"lat={lat[i]:.5f}{who}: wrong hemisphere, swapped or mis-signed coordinates, or "
                                "the wrong CRS?")


def to_wgs84(path: Path, lon: np.ndarray, lat: np.ndarray, coords: str | None) -> tuple[np.ndarray, np.ndarray]:
    """lon/lat converted from a declared web-map datum (``coords``: gcj02 / bd09) to WGS84; wgs84 passes through."""
    c = (coords or "wgs84").strip().lower().replace("-", "").replace("_", "")
    if c in ("wgs84", "epsg4326", "4326"):
        return lon, lat
    if hasattr(crs_mod, "web_coords"):
        try:
            c = crs_mod.web_coords(c)
        except ValueError:
            pass
    fn = getattr(crs_mod, f"{c}_to_wgs84", None) if c in ("gcj02", "bd09") else None
    if fn is None:
        raise SourceError(path, f"coords={coords!r} is not supported here (known: wgs84"
                                f"{', gcj02' if hasattr(crs_mod, 'gcj02_to_wgs84') else ''}"
                                f"{', bd09' if hasattr(crs_mod, 'bd09_to_wgs84') else ''})")
    out = fn(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    return np.asarray(out[0], np.float64), np.asarray(out[1], np.float64)


def project(lon_or_x: np.ndarray, lat_or_y: np.ndarray, src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """Arrays of coordinates from ``src`` to ``dst`` (x/y order), vectorised."""
    if normalise(src) == normalise(dst):
        return np.asarray(lon_or_x, np.float64), np.asarray(lat_or_y, np.float64)
    x, y = crs_mod.transformer(normalise(src), normalise(dst)).transform(lon_or_x, lat_or_y)
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


@dataclass
class Located:
    """Positions read from a CSV: lon/lat WGS84, x/y in the store CRS, and the CRS the file's numbers were in."""

    lon: np.ndarray
    lat: np.ndarray
    x: np.ndarray
    y: np.ndarray
    crs: str
    columns: list[str]
    file_xy: tuple[np.ndarray, np.ndarray]  # the numbers as given in the file, in ``crs``


def locate(ctx: ReadContext, t: pa.Table, cols: Mapping[str, str], labels: Any = None,
           min_inside: float = 1.0, path: Path | None = None) -> Located | None:
    """Positions of the rows of ``t`` from lon/lat (WGS84, or the geographic --crs; gcj02 with ``coords``) or x/y
    (CRS from a name hint like x_epsg4548, else --crs); None when the file has no coordinate columns. With both,
    x/y (when its CRS is known) is used and the two are checked to agree within 50 m."""
    path = path or ctx.path
    has_ll, has_xy = "lon" in cols and "lat" in cols, "x" in cols and "y" in cols
    if not has_ll and not has_xy:
        if any(r in cols for r in ("lon", "lat", "x", "y")):
            have = [cols[r] for r in ("lon", "lat", "x", "y") if r in cols]
            raise SourceError(path, f"coordinates need both columns of a pair (lon+lat or x+y); found only {have}")
        return None
    user = normalise(ctx.crs) if ctx.crs else None
    xy_crs = None
    if has_xy:
        hint = xy_crs_hint(cols["x"]) or xy_crs_hint(cols["y"])
        if hint and user and pyproj.CRS(user).is_projected and normalise(hint) != user:
            raise SourceError(path, f"column {cols['x']!r} declares {hint} but --crs says {user}")
        xy_crs = normalise(hint) if hint else (user if user and pyproj.CRS(user).is_projected else None)
        if xy_crs is None and not has_ll:
            raise SourceError(path, f"columns {cols['x']!r}/{cols['y']!r} are x/y without a CRS; pass --crs (the CRS "
                                    "is never guessed) or name them like x_epsg4548")
    ll_crs = user if user and pyproj.CRS(user).is_geographic else "EPSG:4326"
    out_lon = out_lat = None
    if has_ll:
        lon = to_float(path, t.column(cols["lon"]), f"column {cols['lon']!r}").to_numpy(zero_copy_only=False)
        lat = to_float(path, t.column(cols["lat"]), f"column {cols['lat']!r}").to_numpy(zero_copy_only=False)
        lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
        check_area(path, lon, lat, "EPSG:4326", labels)  # plain range check first
        lon, lat = to_wgs84(path, lon, lat, ctx.options.get("coords"))
        if ll_crs != "EPSG:4326":
            lon, lat = project(lon, lat, ll_crs, "EPSG:4326")
        out_lon, out_lat = lon, lat
    if xy_crs is not None:
        fx = np.asarray(to_float(path, t.column(cols["x"]), f"column {cols['x']!r}").to_numpy(zero_copy_only=False),
                        np.float64)
        fy = np.asarray(to_float(path, t.column(cols["y"]), f"column {cols['y']!r}").to_numpy(zero_copy_only=False),
                        np.float64)
        lon2, lat2 = project(fx, fy, xy_crs, "EPSG:4326")
        if out_lon is not None:
            gx, gy = project(out_lon, out_lat, "EPSG:4326", xy_crs)
            d = np.hypot(gx - fx, gy - fy)
            far = np.isfinite(d) & (d > 50.0)
            if far.any():
                i = int(np.argmax(far))
                who = f" ({labels[i]})" if labels is not None else ""
                raise SourceError(path, f"lon/lat and {cols['x']}/{cols['y']} disagree by {d[i]:.0f} m{who}: "
                                        f"is {xy_crs} the right CRS for the x/y columns?")
        check_area(path, lon2, lat2, ctx.store_crs, labels, min_inside)
        x, y = project(fx, fy, xy_crs, ctx.store_crs)
        return Located(lon2, lat2, x, y, xy_crs, [cols["x"], cols["y"]], (fx, fy))
    check_area(path, out_lon, out_lat, ctx.store_crs, labels, min_inside)
    x, y = project(out_lon, out_lat, "EPSG:4326", ctx.store_crs)
    return Located(out_lon, out_lat, x, y, "EPSG:4326", [cols["lon"], cols["lat"]], (out_lon, out_lat))
