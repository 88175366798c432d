"""Vector sources (GeoJSON, GeoPackage, Shapefile, SpatiaLite/SQLite, OSM PBF/XML) through pyogrio/GDAL.

Features are read as Arrow with WKB geometry, reprojected into the store CRS in one vectorised call and mapped to
city objects: polygons are buildings unless their properties say water; lines are roads.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely

from data_models import Building, Road, WaterBody
from twin.sources import ReadContext, SourceError, SourceRead
from twin.sources.crs import normalise, reproject

_ID_FIELDS = ("id", "cadastre_id", "building_id", "road_id", "water_id", "osm_id", "fid")
_WATER_WORDS = {"water", "river", "lake", "pond", "canal", "reservoir", "stream"}
_MODEL_FIELDS = {
    "Building": {"use": "use", "storeys": "storeys", "levels": "storeys"},
    "WaterBody": {"kind": "water_class", "water_class": "water_class", "waterway": "water_class", "name": "name"},
    "Road": {"class": "road_class", "road_class": "road_class", "highway": "road_class", "name": "name",
             "lanes": "lanes", "width_m": "width_m", "oneway": "oneway"},
}


def read_vector(path: Path, crs: str | None = None, layer: str | int | None = None
                ) -> tuple[str, list[dict[str, Any]], list[shapely.Geometry]]:
    """(CRS, property dicts, geometries) of every feature; a file with no CRS needs ``crs`` (never guessed)."""
    try:
        meta, table = pyogrio.read_arrow(path, layer=layer)
    except Exception as exc:  # GDAL raises several error types for unreadable files
        raise SourceError(path, f"not a readable vector file ({exc})") from exc
    file_crs = meta.get("crs")
    if file_crs and crs and normalise(file_crs) != normalise(crs):
        raise SourceError(path, f"file declares CRS {normalise(file_crs)} but --crs says {normalise(crs)}")
    use = crs or file_crs
    if not use:
        raise SourceError(path, "no CRS in the file; pass --crs (the CRS is never guessed)")
    geom_col = meta.get("geometry_name") or "wkb_geometry"
    if geom_col not in table.column_names:
        raise SourceError(path, "the file has no geometry column")
    geoms = shapely.from_wkb(table.column(geom_col).to_numpy(zero_copy_only=False))
    props = table.drop_columns([geom_col]).to_pylist()
    bad = [i for i, g in enumerate(geoms) if g is None or g.is_empty]
    if bad:
        raise SourceError(path, f"{len(bad)} feature(s) without geometry, first at feature index {bad[0]}")
    return normalise(use), props, list(geoms)


def extent(geoms: list[shapely.Geometry]) -> list[float]:
    return [float(v) for v in shapely.total_bounds(geoms)]


def entity_id(prefix: str, props: dict[str, Any], geom: shapely.Geometry) -> str:
    """Stable id from the first id-like property, else from the geometry's bytes."""
    for name in _ID_FIELDS:
        v = props.get(name)
        if v not in (None, ""):
            return f"{prefix}-{v}"
    return f"{prefix}-{hashlib.blake2b(shapely.to_wkb(geom), digest_size=6).hexdigest()}"


def is_water(props: dict[str, Any]) -> bool:
    if any(props.get(k) not in (None, "") for k in ("water_id", "water_class", "waterway")):
        return True
    return any(str(props.get(k, "")).lower() in _WATER_WORDS for k in ("kind", "natural", "landuse"))


def to_entities(ctx: ReadContext, file_crs: str, props: list[dict], geoms: list[shapely.Geometry],
                method: str = "vector-ingest") -> list[Building | Road | WaterBody]:
    """City objects from features, reprojected into the store CRS, each with provenance to the file's asset."""
    out: list[Building | Road | WaterBody] = []
    seen: set[str] = set()
    prov = [ctx.provenance(method)]
    projected = reproject(np.asarray(geoms, dtype=object), file_crs, ctx.store_crs)
    for i, (p, g) in enumerate(zip(props, projected, strict=True)):
        gtype = g.geom_type
        if gtype in ("Polygon", "MultiPolygon") and is_water(p):
            cls, prefix = WaterBody, "water"
        elif gtype in ("Polygon", "MultiPolygon"):
            cls, prefix = Building, "bldg"
        elif gtype in ("LineString", "MultiLineString"):
            cls, prefix = Road, "road"
        else:
            raise ctx.fail(f"feature {i}: {gtype} features are not city objects this reader maps")
        eid = entity_id(prefix, p, g)
        if eid in seen:
            raise ctx.fail(f"feature {i}: duplicate id {eid!r}")
        seen.add(eid)
        if not g.is_valid:
            raise ctx.fail(f"feature {i} ({eid}): invalid geometry: {shapely.is_valid_reason(g)}")
        mapping = _MODEL_FIELDS[cls.__name__]
        fields = {mapping[k]: v for k, v in p.items() if k in mapping and v is not None}
        attrs = {k: v for k, v in p.items() if k not in mapping and v is not None}
        out.append(cls(id=eid, geometry=shapely.geometry.mapping(g), attributes=attrs, provenance=prov,
                       classification=ctx.classification, **fields))
    return out


def read(ctx: ReadContext) -> SourceRead:
    file_crs, props, geoms = read_vector(ctx.path, ctx.crs, ctx.options.get("layer"))
    entities = to_entities(ctx, file_crs, props, geoms)
    return SourceRead(info={"crs": file_crs, "bbox": extent(geoms), "feature_count": len(geoms)}, entities=entities)
