"""Ingest: register source files in the catalog and turn vector features into city objects, in one commit.

Everything is read and validated before anything is written, so a bad file anywhere in the batch leaves the
store exactly as it was. Re-ingesting unchanged bytes is a no-op; a changed file becomes a new asset version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from data_models import Building, Provenance, Road, SourceAsset, SourceKind, WaterBody
from twin.catalog.assets import asset_id, describe, parse_time, sha256_file
from twin.sources import SourceError, kind_of
from twin.sources import imagery as imagery_reader
from twin.sources import pointcloud as pointcloud_reader
from twin.sources import vector as vector_reader
from twin.sources.crs import reproject
from twin.store import ASSETS, MAIN, Store

Progress = Callable[[str, float], None]
_ID_FIELDS = ("id", "cadastre_id", "building_id", "road_id", "water_id", "osm_id", "fid")
_WATER_WORDS = {"water", "river", "lake", "pond", "canal", "reservoir", "stream"}
_MODEL_FIELDS = {
    "Building": {"use": "use", "storeys": "storeys", "levels": "storeys"},
    "WaterBody": {"kind": "water_class", "water_class": "water_class", "waterway": "water_class", "name": "name"},
    "Road": {"class": "road_class", "road_class": "road_class", "highway": "road_class", "name": "name",
             "lanes": "lanes", "width_m": "width_m", "oneway": "oneway"},
}


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files to ingest: explicit files as given, folders searched recursively for known source extensions."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and _known(f))
        elif p.is_file():
            out.append(p)
        else:
            raise SourceError(p, "no such file or folder")
    return out


def _known(f: Path) -> bool:
    try:
        kind_of(f)
        return True
    except SourceError:
        return False


def _entity_id(prefix: str, props: dict[str, Any], geom: shapely.Geometry) -> str:
    for field in _ID_FIELDS:
        v = props.get(field)
        if v not in (None, ""):
            return f"{prefix}-{v}"
    return f"{prefix}-{hashlib.blake2b(shapely.to_wkb(geom), digest_size=6).hexdigest()}"


def _is_water(props: dict[str, Any]) -> bool:
    if any(props.get(k) not in (None, "") for k in ("water_id", "water_class", "waterway")):
        return True
    return any(str(props.get(k, "")).lower() in _WATER_WORDS for k in ("kind", "natural", "landuse"))


def vector_entities(
    path: Path, asset: SourceAsset, props: list[dict], geoms: list[shapely.Geometry], store_crs: str
) -> list[Building | Road | WaterBody]:
    """City objects from features, reprojected into the store CRS.

    Polygons are buildings unless their properties say water (water_id / water_class / waterway, or kind, natural
    or landuse naming a water body); lines are roads.
    """
    out: list[Building | Road | WaterBody] = []
    seen: set[str] = set()
    prov = [Provenance(source_asset_id=asset.id, acquired=asset.acquired, method="vector-ingest", confidence=1.0)]
    projected = reproject(np.asarray(geoms, dtype=object), asset.crs, store_crs)
    for i, (p, g) in enumerate(zip(props, projected, strict=True)):
        gtype = g.geom_type
        if gtype in ("Polygon", "MultiPolygon") and _is_water(p):
            cls, prefix = WaterBody, "water"
        elif gtype in ("Polygon", "MultiPolygon"):
            cls, prefix = Building, "bldg"
        elif gtype in ("LineString", "MultiLineString"):
            cls, prefix = Road, "road"
        else:
            raise SourceError(path, f"feature {i}: {gtype} features are not city objects this reader maps")
        eid = _entity_id(prefix, p, g)
        if eid in seen:
            raise SourceError(path, f"feature {i}: duplicate id {eid!r}")
        seen.add(eid)
        if not g.is_valid:
            raise SourceError(path, f"feature {i} ({eid}): invalid geometry: {shapely.is_valid_reason(g)}")
        mapping = _MODEL_FIELDS[cls.__name__]
        fields = {mapping[k]: v for k, v in p.items() if k in mapping and v is not None}
        attrs = {k: v for k, v in p.items() if k not in mapping and v is not None}
        out.append(
            cls(id=eid, geometry=shapely.geometry.mapping(g), attributes=attrs, provenance=prov,
                classification=asset.classification, **fields)
        )
    return out


def ingest_paths(
    store: Store,
    paths: Iterable[Path],
    *,
    kind: str | None = None,
    crs: str | None = None,
    acquired: str | datetime | Mapping[str, str | None] | None = None,
    classification: str = "public",
    branch: str = MAIN,
    author: str = "twin",
    message: str | None = None,
    progress: Progress | None = None,
):
    """Ingest files and folders into ``branch`` as one commit; returns the Commit, or None if nothing changed.

    ``acquired`` is one time for all files, or a mapping from resolved file path to time (a delivery manifest);
    files that carry their own time (LAS creation date, TIFF datetime) use it when no time is given.
    """
    files = expand(paths)
    if not files:
        raise SourceError(", ".join(str(p) for p in paths), "no source files found")
    progress = progress or (lambda stage, frac: None)
    put: list[Any] = []
    geoms: dict[str, shapely.Geometry] = {}
    names: list[str] = []
    for n, path in enumerate(files):
        progress("ingest: reading sources", n / len(files))
        k = kind_of(path, kind)
        checksum = sha256_file(path)
        prev = store.get(asset_id(path), branch, collection=ASSETS)
        if prev is not None and prev["checksum"] == checksum:
            continue  # same bytes as the current asset version: nothing to do
        version = 1 if prev is None else int(prev["asset_version"]) + 1
        when = parse_time(acquired.get(str(path.resolve())) if isinstance(acquired, Mapping) else acquired, path)
        entities: list[Any] = []
        if k == SourceKind.vector:
            file_crs, props, feats = vector_reader.read_vector(path, crs)
            info = {"crs": file_crs, "bbox": vector_reader.extent(feats), "feature_count": len(feats)}
        elif k == SourceKind.pointcloud:
            info = pointcloud_reader.header_info(path, crs)
            when = when or pointcloud_reader.acquired_of(info)
        elif k == SourceKind.imagery:
            info = imagery_reader.raster_info(path, crs)
            when = when or imagery_reader.acquired_of(info)
        else:
            info = {"crs": crs} if crs else {}
        asset = describe(path, k, info, acquired=when, classification=classification, asset_version=version,
                         checksum=checksum)
        if k == SourceKind.vector:
            entities = vector_entities(path, asset, props, feats, store.crs)
        if asset.extent is not None and asset.crs:
            geoms[asset.id] = reproject(shapely.box(*asset.extent.bbox), asset.crs, store.crs)
        put.append(asset)
        put.extend(entities)
        names.append(path.name)
    progress("ingest: reading sources", 1.0)
    if not put:
        return None
    progress("ingest: committing", 0.0)
    msg = message or f"ingest {len(names)} file(s): {', '.join(names[:5])}{' …' if len(names) > 5 else ''}"
    commit = store.commit(put, message=msg, author=author, branch=branch, geometries=geoms)
    progress("ingest: committing", 1.0)
    return commit
