"""Readers, one per kind of source file.

Every reader has the same shape, ``read(ctx: ReadContext) -> SourceRead``: it describes its file (CRS, extent,
acquisition time, kind-specific facts), returns the city objects it holds already in the store CRS and with
provenance, and any bulk rows (sensor observations, GPS fixes) as Arrow tables. Readers never write to the store:
the ingest commits everything of a batch at once, so a bad file leaves the store untouched.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_models import Provenance, SourceKind
from twin.errors import BadInput


class SourceError(BadInput):
    """A source file cannot be read; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass
class ReadContext:
    """What a reader is told about the file it reads."""

    path: Path
    store_crs: str
    asset_id: str
    crs: str | None = None  # CRS declared by the user (--crs): required when the file has none, checked otherwise
    acquired: datetime | None = None  # acquisition time declared by the user
    classification: str = "public"
    options: dict[str, Any] = field(default_factory=dict)  # kind-specific: bands, column mapping, coords (gcj02)…

    def provenance(self, method: str, *, confidence: float = 1.0, attribute: str | None = None,
                   acquired: datetime | None = None) -> Provenance:
        """Provenance pointing at this file's asset."""
        return Provenance(source_asset_id=self.asset_id, acquired=acquired or self.acquired, method=method,
                          confidence=confidence, attribute=attribute)

    def fail(self, problem: str) -> SourceError:
        return SourceError(self.path, problem)


@dataclass
class SourceRead:
    """What a reader found: facts for the catalog, city objects, and bulk tables.

    ``info`` must hold ``crs`` (normalised, or None for files without coordinates) and ``bbox`` (in that CRS, or
    None); ``acquired`` (datetime) when the file carries its time; anything else becomes asset properties.
    ``tables`` maps a table name ("observations", "trajectories") to rows stored with the commit; each row set
    replaces the rows an older version of the same asset stored in that table.
    """

    info: dict[str, Any]
    entities: list[Any] = field(default_factory=list)
    tables: dict[str, pa.Table] = field(default_factory=dict)


# extension -> kind; content sniffing refines .json / .csv / .gz (see kind_of)
_EXTENSIONS: dict[str, SourceKind] = {
    ".las": SourceKind.pointcloud,
    ".laz": SourceKind.pointcloud,
    ".tif": SourceKind.imagery,
    ".tiff": SourceKind.imagery,
    ".geojson": SourceKind.vector,
    ".gpkg": SourceKind.vector,
    ".shp": SourceKind.vector,
    ".sqlite": SourceKind.vector,
    ".pbf": SourceKind.vector,
    ".osm": SourceKind.vector,
    ".csv": SourceKind.sensors,
}

# kind -> "module:function" of its reader
READERS: dict[SourceKind, str] = {
    SourceKind.vector: "twin.sources.vector:read",
    SourceKind.pointcloud: "twin.sources.pointcloud:read",
    SourceKind.imagery: "twin.sources.imagery:read",
    SourceKind.cityjson: "twin.sources.cityjson:read",
    SourceKind.sensors: "twin.sources.sensors:read",
    SourceKind.trajectories: "twin.sources.trajectories:read",
}


def kind_of(path: Path, declared: str | None = None) -> SourceKind:
    """The kind of a source file: as declared, else from its extension; unknown extensions are an error."""
    if declared:
        try:
            kind = SourceKind(declared)
            if kind is SourceKind.product:
                raise ValueError(declared)
            return kind
        except ValueError:
            known = ", ".join(k.value for k in SourceKind if k is not SourceKind.product)
            raise SourceError(path, f"unknown kind {declared!r}; known kinds: {known}") from None
    name = path.name.lower()
    if name.endswith((".city.json", ".cityjson")):
        return SourceKind.cityjson
    if name.endswith(".pipeline.json"):
        return SourceKind.pointcloud
    if name.endswith((".city.jsonl", ".cityjsonl")):
        return SourceKind.cityjson
    if name.endswith((".osm.bz2", ".osm.pbf")):
        return SourceKind.vector
    kind = _EXTENSIONS.get(path.suffix.lower())
    if path.suffix.lower() in (".json", ".gz"):
        head = _head(path)
        if '"CityJSON"' in head or '"CityObjects"' in head:
            return SourceKind.cityjson
        if '"FeatureCollection"' in head or '"Feature"' in head:
            return SourceKind.vector
        if '"@iot.' in head or '"Datastreams"' in head:
            return SourceKind.sensors
    if path.suffix.lower() in (".csv", ".txt", ".gz") and _looks_like_tracks(_head(path).splitlines()[:1]):
        return SourceKind.trajectories
    if kind is None:
        raise SourceError(path, f"cannot tell the kind of a '{path.suffix}' file; pass --kind")
    return kind


def _head(path: Path, n: int = 4096) -> str:
    """The first bytes of a file as text, decompressing gzip."""
    import gzip

    with (gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")) as f:
        try:
            return f.read(n).decode("utf-8", "replace")
        except (OSError, EOFError):
            return ""


_TRACK_COLUMNS = {"uid", "track_id", "trip_id", "user_id", "vehicle_id"}


def _looks_like_tracks(header: list[str]) -> bool:
    """A CSV header with a track id column, or coordinates and a time but no station: GPS fixes."""
    if not header:
        return False
    cols = {c.strip().strip('"').lower() for c in header[0].split(",")}
    if cols & _TRACK_COLUMNS:
        return True
    has_xy = bool(cols & {"lat", "latitude"}) and bool(cols & {"lon", "lng", "longitude"})
    has_time = bool(cols & {"time", "datetime", "timestamp"})
    return has_xy and has_time and not any("station" in c for c in cols)


def reader_for(kind: SourceKind):
    """The ``read(ctx)`` function for a kind (imported on first use)."""
    module, func = READERS[kind].split(":")
    return getattr(importlib.import_module(module), func)
