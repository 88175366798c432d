"""The one table of readers, and the one place that picks a reader for a file.

A reader is registered with its kind, the file-name endings it reads and, where several readers share an ending
(.json, .csv, .gz), a content test on the file's first bytes (:mod:`twin.sources.sniff`). To read a file the
registry asks each reader in table order whether it can open it (as xarray's ``guess_engine`` asks its backends)
and the first that can reads it; nothing else dispatches, and no reader hands a file to another. When none can,
the error lists what was tried. ``--kind`` takes a kind (``pointcloud``) or a reader's name (``pdal``): a kind picks
the first of its readers that can open the file, else the kind's general reader (the last of the kind in the
table), which then says what is wrong with the file.

Readers are imported on first use, so telling kinds apart loads neither GDAL, laspy nor PDAL. Other packages add
readers through the ``twin.readers`` entry-point group (each entry an object with the :class:`Reader` shape), or
by calling :func:`register`; either way they are asked before the built-in ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from data_models import SourceKind
from twin.sources import sniff
from twin.sources.base import ReadContext, Reader, SourceError, SourceRead

ENTRY_POINT_GROUP = "twin.readers"


def _load(ref: str) -> Callable[..., Any]:
    module, func = ref.split(":")
    return getattr(importlib.import_module(module), func)


@dataclass(frozen=True)
class Registered:
    """A built-in reader: its ``read`` (and ``companions``) live in a module imported on first use."""

    name: str
    kind: SourceKind
    suffixes: tuple[str, ...]
    entry: str  # "module:function" of read(ctx) -> SourceRead
    about: str  # one line for error messages and docs
    sniff: Callable[[Path, str], bool] | None = None  # content test when the suffix alone does not decide
    options: tuple[str, ...] = ()  # reader options that choose this reader whatever the file's suffix
    companion_entry: str | None = None  # "module:function" of companions(path) -> files read with this one

    def can_open(self, path: Path, head: str) -> bool:
        """True when the file name ends with one of the suffixes and the content test (if any) passes."""
        return path.name.lower().endswith(self.suffixes) and (self.sniff is None or self.sniff(path, head))

    def read(self, ctx: ReadContext) -> SourceRead:
        return _load(self.entry)(ctx)

    def companions(self, path: Path) -> list[Path]:
        """Files this reader reads together with ``path`` (a Landsat MTL's band files), so a folder walk skips
        them; none for most readers."""
        return list(_load(self.companion_entry)(path)) if self.companion_entry else []


BUILTIN: tuple[Registered, ...] = (
    Registered("pdal", SourceKind.pointcloud, (".pipeline.json",), "twin.sources.pdal_reader:read",
               "PDAL pipeline JSON, or any file with --option pdal_pipeline=… (needs PDAL)",
               options=("pdal_pipeline",)),
    Registered("las", SourceKind.pointcloud, (".las", ".laz"), "twin.sources.pointcloud:read",
               "LAS/LAZ point cloud"),
    Registered("landsat", SourceKind.imagery, ("_mtl.txt",), "twin.sources.imagery:read_scene",
               "Landsat scene by its *_MTL.txt metadata (calibrated bands)",
               companion_entry="twin.sources.landsat:scene_files"),
    Registered("raster", SourceKind.imagery, (".tif", ".tiff"), "twin.sources.imagery:read",
               "GeoTIFF / COG raster"),
    Registered("cityjson", SourceKind.cityjson, (*sniff.CITYJSON_NAMES, ".json", ".gz"),
               "twin.sources.cityjson:read", "CityJSON 1.x/2.0 or CityJSONSeq", sniff=sniff.cityjson),
    Registered("osm", SourceKind.vector, (".osm.pbf", ".osm", ".osm.bz2", ".osm.gz", ".pbf"),
               "twin.sources.osm:read", "OpenStreetMap extract (.osm.pbf, .osm, .osm.bz2, .osm.gz)"),
    Registered("sensorthings", SourceKind.sensors, (".json", ".gz"), "twin.sources.sensorthings:read",
               "OGC SensorThings JSON (Things, Datastreams, Observations)", sniff=sniff.sensorthings),
    Registered("vector", SourceKind.vector, (".geojson", ".gpkg", ".shp", ".sqlite", ".json", ".gz"),
               "twin.sources.vector:read", "GeoJSON, GeoPackage, Shapefile or SpatiaLite vectors",
               sniff=sniff.geojson),
    Registered("trajectories", SourceKind.trajectories, (".csv", ".txt", ".gz"), "twin.sources.trajectories:read",
               "GPS fixes CSV (a track id, or lon/lat and time without a station)", sniff=sniff.tracks),
    Registered("sensors", SourceKind.sensors, (".csv", ".csv.gz"), "twin.sources.sensors:read",
               "sensor station list or time series CSV"),
)

_added: list[Reader] = []
_plugins: list[Reader] | None = None


def register(reader: Reader) -> None:
    """Add a reader ahead of the others (a later registration is asked first); its name must be new."""
    if not isinstance(reader, Reader):
        raise TypeError(f"{reader!r} lacks the Reader shape (name, kind, suffixes, can_open, read)")
    if any(r.name == reader.name for r in readers()):
        raise ValueError(f"a reader named {reader.name!r} is already registered")
    _added.insert(0, reader)


def unregister(name: str) -> None:
    """Remove a reader added by :func:`register` (the built-in ones stay)."""
    _added[:] = [r for r in _added if r.name != name]


def _entry_point_readers() -> list[Reader]:
    global _plugins
    if _plugins is None:
        found: list[Reader] = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            obj = ep.load()
            obj = obj() if isinstance(obj, type) else obj
            if isinstance(obj, Reader):
                found.append(obj)
        _plugins = found
    return _plugins


def readers() -> list[Reader]:
    """Every reader in the order they are asked: registered ones, entry-point plug-ins, then the built-in table."""
    return [*_added, *_entry_point_readers(), *BUILTIN]


def _declared(path: Path, declared: str) -> tuple[SourceKind | None, Reader | None]:
    """A ``--kind`` value as (kind, None) or (None, reader); anything else is an error listing both."""
    by_name = {r.name: r for r in readers()}
    try:
        kind = SourceKind(declared)
    except ValueError:
        kind = None
    if kind is not None and kind is not SourceKind.product:
        return kind, None
    if declared in by_name:
        return None, by_name[declared]
    kinds = ", ".join(k.value for k in SourceKind if k is not SourceKind.product)
    raise SourceError(path, f"unknown kind {declared!r}; known kinds: {kinds}; readers: {', '.join(by_name)}")


def _tried(path: Path, tried: Iterable[Reader]) -> str:
    return "; ".join(f"{r.name} ({', '.join(r.suffixes)})" for r in tried)


def reader_for(path: Path, declared: str | None = None, options: Mapping[str, Any] | None = None) -> Reader:
    """The reader of a file: the one ``declared`` names, else the first that claims one of ``options``, else the
    first in :func:`readers` that can open it; an error naming the file and the readers tried when none can."""
    path = Path(path)
    kind, chosen = _declared(path, declared) if declared else (None, None)
    if chosen is not None:
        return chosen
    candidates = [r for r in readers() if kind is None or r.kind is kind]
    for r in candidates:
        if any(o in (options or {}) for o in getattr(r, "options", ())):
            return r
    text = sniff.head(path)
    for r in candidates:
        if r.can_open(path, text):
            return r
    if kind is not None and candidates:
        return candidates[-1]  # the kind's general reader: it reports what is wrong with this file
    raise SourceError(path, f"cannot tell the kind of a '{path.suffix}' file; pass --kind (tried: "
                            f"{_tried(path, candidates)})")


def kind_of(path: Path, declared: str | None = None, options: Mapping[str, Any] | None = None) -> SourceKind:
    """The kind a file is catalogued as: that of its reader (see :func:`reader_for`)."""
    return reader_for(path, declared, options).kind


def read(ctx: ReadContext, declared: str | None = None) -> SourceRead:
    """Read a file with the reader :func:`reader_for` picks for it (``ctx.options`` included)."""
    return reader_for(ctx.path, declared, ctx.options).read(ctx)


def companions(path: Path, reader: Reader) -> list[Path]:
    """Files ``reader`` reads together with ``path``; unreadable metadata gives none (the read will say why)."""
    fn = getattr(reader, "companions", None)
    if fn is None:
        return []
    try:
        return [Path(p) for p in fn(path)]
    except (SourceError, OSError):
        return []
