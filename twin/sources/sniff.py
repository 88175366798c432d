"""Content tests the registry runs on a file's first bytes, for the suffixes several readers share (.json, .csv,
.gz). Cheap to import (no GDAL, laspy or PDAL), so telling a file's kind loads no reader."""

from __future__ import annotations

import gzip
from pathlib import Path

HEAD_BYTES = 65536  # what the registry reads of each file once, decompressing gzip

CITYJSON_NAMES = (".city.json", ".cityjson", ".city.jsonl", ".cityjsonl")
TRACK_COLUMNS = {"uid", "track_id", "trip_id", "user_id", "vehicle_id"}
_STA_MARKERS = ("@iot.", '"Datastreams"', '"Datastream"', '"Things"', '"Observations"')


def head(path: Path, n: int = HEAD_BYTES) -> str:
    """The first ``n`` bytes of a file as text (gzip decompressed); empty when the file cannot be read."""
    try:
        with (gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")) as f:
            return f.read(n).decode("utf-8", "replace")
    except (OSError, EOFError):
        return ""


def _late_cityjson(path: Path) -> bool:
    """True for a .json holding CityJSON whose "type" member comes after megabytes of CityObjects."""
    with open(path, "rb") as f:
        tail = b""
        while chunk := f.read(1 << 20):
            if b'"CityJSON"' in tail[-16:] + chunk:
                return True
            tail = chunk
    return False


def cityjson(path: Path, text: str) -> bool:
    """CityJSON or CityJSONSeq: by its own name, its markers in the head, or (plain .json with no other format's
    markers) a "CityJSON" member further in."""
    name = path.name.lower()
    if name.endswith(CITYJSON_NAMES) or '"CityJSON"' in text or '"CityObjects"' in text:
        return True
    if not name.endswith(".json") or geojson(path, text) or sensorthings(path, text):
        return False
    try:
        return text.lstrip().startswith("{") and _late_cityjson(path)
    except OSError:
        return False


def geojson(path: Path, text: str) -> bool:
    """A GeoJSON FeatureCollection or Feature (a .json or .gz); other vector suffixes are GDAL's to judge."""
    if not path.name.lower().endswith((".json", ".gz")):
        return True
    return '"FeatureCollection"' in text or '"Feature"' in text


def sensorthings(path: Path, text: str) -> bool:
    """OGC SensorThings JSON: an object or array with @iot ids or Things / Datastreams / Observations members."""
    return text.lstrip().startswith(("{", "[")) and any(k in text for k in _STA_MARKERS)


def tracks(path: Path, text: str) -> bool:
    """A CSV header with a track id column, or coordinates and a time but no station: GPS fixes."""
    first = text.splitlines()[:1]
    if not first:
        return False
    cols = {c.strip().strip('"').lower() for c in first[0].split(",")}
    if cols & TRACK_COLUMNS:
        return True
    has_xy = bool(cols & {"lat", "latitude"}) and bool(cols & {"lon", "lng", "longitude"})
    has_time = bool(cols & {"time", "datetime", "timestamp"})
    return has_xy and has_time and not any("station" in c for c in cols)


def not_json(path: Path, text: str) -> bool:
    """Text that is not a JSON document (a .csv.gz or .txt that might be a table)."""
    return not text.lstrip().startswith(("{", "["))
