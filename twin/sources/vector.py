"""Vector sources (GeoJSON, GeoPackage, Shapefile, SpatiaLite/SQLite) through pyogrio/GDAL (OSM and CityJSON have
their own readers).

Features are read as Arrow with WKB geometry, checked against the CRS's area of use, reprojected into the store CRS
in one vectorised call and mapped to city objects. What a layer holds is decided, in this order, by

1. ``ctx.options["entity_type"]`` (building | road | water | landcover | vegetation), applied to every layer;
2. the theme in the layer or file name: Dutch BGT files (``bgt_pand`` -> Building, ``bgt_wegdeel`` /
   ``bgt_ondersteunendwegdeel`` -> Road areas, ``bgt_waterdeel`` / ``bgt_ondersteunendwaterdeel`` -> WaterBody,
   ``bgt_begroeidterreindeel`` / ``bgt_onbegroeidterreindeel`` -> LandCover; other BGT themes are skipped and counted)
   and plain names such as ``buildings``, ``roads``, ``water``, ``landcover``, ``trees``;
3. the geometry: polygons are buildings unless their properties say water, lines are roads.

Options: ``layer`` (read one layer of a multi-layer file; default all layers with geometry), ``entity_type``,
``id_field`` (the property holding a stable id), ``cover_class`` (land-cover class for a whole file), ``repair``
(make invalid geometries valid instead of refusing the file), ``coords`` (``gcj02`` / ``bd09`` for Chinese web-map
longitude/latitude).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from pydantic import ValidationError

from data_models import Building, LandCover, LandCoverClass, Road, Vegetation, WaterBody
from twin.geo.crs import is_geographic, normalise, reproject, same_horizontal, web_coords
from twin.geo.crs import web_to_wgs84 as _web_to_wgs84
from twin.sources.base import ReadContext, SourceError, SourceRead
from twin.sources.features import (
    BGT_ROAD_CLASS,
    check_extent,
    extent,
    landcover_class,
    length_m,
    speed_kmh,
    to_bool,
    to_float,
    to_int,
)

ENTITY_TYPES = ("building", "road", "water", "landcover", "vegetation")
_ID_FIELDS = ("id", "cadastre_id", "building_id", "road_id", "water_id", "osm_id", "fid")
_WATER_WORDS = {"water", "river", "lake", "pond", "canal", "reservoir", "stream"}
_MODEL_FIELDS: dict[str, dict[str, str]] = {
    "building": {"use": "use", "storeys": "storeys", "levels": "storeys", "height": "height",
                 "roof_type": "roof_type"},
    "water": {"kind": "water_class", "water_class": "water_class", "waterway": "water_class", "name": "name"},
    "road": {"class": "road_class", "road_class": "road_class", "highway": "road_class", "name": "name",
             "lanes": "lanes", "width_m": "width_m", "width": "width_m", "oneway": "oneway",
             "speed_limit_kmh": "speed_limit_kmh", "maxspeed": "speed_limit_kmh"},
    "landcover": {"confidence": "confidence"},
    "vegetation": {"height": "height", "crown_radius": "crown_radius", "species": "species"},
}
_CLASSES = {"building": Building, "road": Road, "water": WaterBody, "landcover": LandCover, "vegetation": Vegetation}
_PREFIX = {"building": "bldg", "road": "road", "water": "water", "landcover": "lc", "vegetation": "veg"}
_GEOM_OK = {
    "building": ("Polygon", "MultiPolygon"),
    "road": ("LineString", "MultiLineString", "Polygon", "MultiPolygon"),
    "water": ("LineString", "MultiLineString", "Polygon", "MultiPolygon"),
    "landcover": ("Polygon", "MultiPolygon"),
    "vegetation": ("Point", "Polygon", "MultiPolygon"),
}

# Dutch BGT (Basisregistratie Grootschalige Topografie) themes; longest names first so that
# "onbegroeidterreindeel" is not taken for "begroeidterreindeel".
_BGT_THEMES: dict[str, str | None] = {
    "ondersteunendwaterdeel": "water",
    "ondersteunendwegdeel": "road",
    "onbegroeidterreindeel": "landcover",
    "begroeidterreindeel": "landcover",
    "waterdeel": "water",
    "wegdeel": "road",
    "pand": "building",
    "overbruggingsdeel": None,
    "kunstwerkdeel": None,
    "overigbouwwerk": None,
    "tunneldeel": None,
    "scheiding": None,
    "spoor": None,
    "functioneelgebied": None,
    "gebouwinstallatie": None,
}
# plain layer / file names (whole words)
_NAME_THEMES = {
    "building": "building", "buildings": "building", "bldg": "building", "footprints": "building",
    "panden": "building", "road": "road", "roads": "road", "streets": "road", "highways": "road",
    "water": "water", "waterbodies": "water", "hydro": "water", "landcover": "landcover", "land_cover": "landcover",
    "trees": "vegetation", "vegetation": "vegetation",
}


# ---------------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------------


def _geojson_declares_crs(path: Path) -> bool:
    """True when a GeoJSON file has a (legacy) 'crs' member; without one RFC 7946 says WGS84."""
    with open(path, "rb") as f:
        head = f.read(65536)
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 65536))
        tail = f.read()
    return b'"crs"' in head or b'"crs"' in tail


def read_vector(path: Path, crs: str | None = None, layer: str | int | None = None
                ) -> tuple[str, list[dict[str, Any]], list[shapely.Geometry]]:
    """(CRS, property dicts, geometries) of every feature of a layer; a file with no CRS needs ``crs``."""
    try:
        meta, table = pyogrio.read_arrow(path, layer=layer)
    except Exception as exc:  # GDAL raises several error types for unreadable files
        raise SourceError(path, f"not a readable vector file ({exc})") from exc
    file_crs = meta.get("crs")
    if file_crs and crs and Path(path).suffix.lower() in (".geojson", ".json") and not _geojson_declares_crs(path):
        file_crs = None  # GDAL's implicit WGS84 for a GeoJSON without 'crs': the user's declaration wins
    if file_crs and crs and not same_horizontal(file_crs, crs):
        raise SourceError(path, f"file declares CRS {normalise(file_crs)} but --crs says {normalise(crs)}")
    use = crs or file_crs
    if not use:
        raise SourceError(path, "no CRS in the file; pass --crs (the CRS is never guessed)")
    geom_col = meta.get("geometry_name") or "wkb_geometry"
    if geom_col not in table.column_names:
        raise SourceError(path, f"layer {layer!r} has no geometry column" if layer is not None
                          else "the file has no geometry column")
    try:
        geoms = shapely.from_wkb(table.column(geom_col).to_numpy(zero_copy_only=False), on_invalid="raise")
    except shapely.errors.GEOSException as exc:
        raise SourceError(path, f"corrupt geometry ({exc})") from exc
    props = table.drop_columns([geom_col]).to_pylist()
    bad = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if len(bad):
        raise SourceError(path, f"{len(bad)} feature(s) without geometry, first at feature index {bad[0]}")
    try:
        crs_out = normalise(use)
    except ValueError as exc:
        raise SourceError(path, str(exc)) from None
    return crs_out, props, list(geoms)


def web_to_wgs84(ctx: ReadContext, geoms: np.ndarray, crs: str) -> tuple[np.ndarray, str]:
    """Convert GCJ-02 / BD-09 longitude/latitude to WGS84 when ``ctx.options['coords']`` declares them."""
    try:
        kind = web_coords(ctx.options.get("coords"))
    except ValueError as exc:
        raise ctx.fail(str(exc)) from None
    if kind == "wgs84":
        return geoms, crs
    if not is_geographic(crs):
        raise ctx.fail(f"coords={kind} needs longitude/latitude data, but the CRS is {normalise(crs)} (projected)")
    return _web_to_wgs84(geoms, kind), "EPSG:4326"


def entity_id(prefix: str, props: dict[str, Any], geom: shapely.Geometry, id_field: str | None = None) -> str:
    """Stable id from ``id_field`` or the first id-like property, else from the geometry's bytes."""
    for name in ((id_field,) if id_field else _ID_FIELDS):
        v = props.get(name)
        if v not in (None, ""):
            return f"{prefix}-{str(v).strip().replace(' ', '_')}"
    return f"{prefix}-{hashlib.blake2b(shapely.to_wkb(geom), digest_size=6).hexdigest()}"


def is_water(props: dict[str, Any]) -> bool:
    """True when a feature's properties say it is water (water_id / water_class / waterway, or kind=lake, ...)."""
    if any(props.get(k) not in (None, "") for k in ("water_id", "water_class", "waterway")):
        return True
    return any(str(props.get(k, "")).lower() in _WATER_WORDS for k in ("kind", "natural", "landuse"))


def theme_of(path: Path, layer: str | None) -> tuple[str | None, str | None, bool]:
    """(entity type, BGT theme, known) from a layer / file name; known=False when the name says nothing."""
    names = [n.lower() for n in (layer, path.name.split(".")[0]) if n]
    for n in names:
        if n.startswith("bgt_") or n.startswith("bgt-"):
            theme = n[4:]
            for key, etype in _BGT_THEMES.items():
                if theme.startswith(key):
                    return etype, key, True
            return None, theme, True
    for n in names:
        for word in re.split(r"[^a-z_]+", n):
            if word in _NAME_THEMES:
                return _NAME_THEMES[word], None, True
    return None, None, False


def _infer(gtype: str, props: dict[str, Any]) -> str | None:
    if gtype in ("Polygon", "MultiPolygon"):
        return "water" if is_water(props) else "building"
    if gtype in ("LineString", "MultiLineString"):
        return "road"
    return None


def _fields(etype: str, props: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model fields, attributes) of a feature of an entity type; values that do not convert stay attributes."""
    mapping = _MODEL_FIELDS[etype]
    fields: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    for k, v in props.items():
        if v is None:
            continue
        target = mapping.get(k)
        conv: Any = v
        if target in ("storeys", "lanes"):
            conv = to_int(v)
            if target == "lanes" and conv == 0:
                conv = None
        elif target in ("height", "width_m", "crown_radius"):
            conv = length_m(v)
            if target == "width_m" and conv == 0:
                conv = None
        elif target == "speed_limit_kmh":
            conv = speed_kmh(v)
        elif target == "oneway":
            conv = to_bool(v)
        elif target == "confidence":
            conv = to_float(v)
            conv = conv if conv is not None and 0 <= conv <= 1 else None
        elif target is not None:
            conv = str(v)
        if target is None or conv is None or target in fields:
            attrs[k] = v
        else:
            fields[target] = conv
    return fields, attrs


def to_entities(ctx: ReadContext, file_crs: str, props: list[dict], geoms: list[shapely.Geometry],
                method: str = "vector-ingest", *, entity_type: str | None = None, bgt_theme: str | None = None,
                layer: str | None = None) -> list[Any]:
    """City objects from features, reprojected into the store CRS, each with provenance to the file's asset."""
    out: list[Any] = []
    seen: set[str] = set()
    prov = [ctx.provenance(method)]
    arr = np.asarray(geoms, dtype=object)
    valid = shapely.is_valid(arr)
    if not valid.all():
        if not to_bool(ctx.options.get("repair")):
            i = int(np.flatnonzero(~valid)[0])
            where = f"layer {layer!r} " if layer else ""
            raise ctx.fail(f"{where}feature {i}: invalid geometry: {shapely.is_valid_reason(arr[i])} "
                           f"({int((~valid).sum())} invalid in all; pass options repair=true to repair them)")
        arr = arr.copy()
        arr[~valid] = [_repair(g) for g in arr[~valid]]
    projected = shapely.force_2d(reproject(arr, file_crs, ctx.store_crs))
    id_field = ctx.options.get("id_field")
    explicit_cover = ctx.options.get("cover_class")
    if explicit_cover and explicit_cover not in LandCoverClass.__members__:
        raise ctx.fail(f"unknown cover_class {explicit_cover!r}; use one of {', '.join(LandCoverClass.__members__)}")
    types = shapely.get_type_id(projected)
    names = np.array(["Point", "LineString", "LinearRing", "Polygon", "MultiPoint", "MultiLineString",
                      "MultiPolygon", "GeometryCollection"])[types]
    where = f"layer {layer!r} " if layer else ""
    for i, (p, g, gtype) in enumerate(zip(props, projected, names, strict=True)):
        etype = entity_type or _infer(gtype, p)
        if etype is None:
            raise ctx.fail(f"{where}feature {i}: {gtype} features are not city objects this reader maps "
                           "(pass options entity_type)")
        if gtype not in _GEOM_OK[etype]:
            raise ctx.fail(f"{where}feature {i}: a {etype} cannot have a {gtype} geometry")
        if bgt_theme and p.get("gml_id") and not id_field:
            eid = str(p["gml_id"])  # BGT ids are global; bare, they equal the ids 3dfier writes into CityJSON
        else:
            eid = entity_id(_PREFIX[etype], p, g, id_field)
        if eid in seen:
            raise ctx.fail(f"{where}feature {i}: duplicate id {eid!r}")
        seen.add(eid)
        level = _feature_level(p, ctx.classification, ctx, f"{where}feature {i} ({eid})")
        fields, attrs = _fields(etype, {k: v for k, v in p.items() if k != "classification"})
        if bgt_theme:
            attrs["bgt_theme"] = bgt_theme
        if etype == "road" and bgt_theme and "road_class" not in fields:
            fn = str(p.get("function") or p.get("plus_functiewegdeel") or "").strip().lower()
            fields["road_class"] = BGT_ROAD_CLASS.get(fn, fn.replace(" ", "_") or "unclassified")
        if etype == "landcover":
            cls = landcover_class(p, bgt_theme, explicit_cover)
            if cls is None:
                raise ctx.fail(f"{where}feature {i} ({eid}): cannot tell its land-cover class; "
                               "pass options cover_class")
            fields["cover_class"] = cls
        if etype == "water" and bgt_theme and "water_class" not in fields and p.get("class"):
            fields["water_class"] = str(p["class"])
        try:
            out.append(_CLASSES[etype](id=eid, geometry=shapely.geometry.mapping(g), attributes=attrs,
                                       provenance=prov, classification=level, **fields))
        except ValidationError as exc:
            raise ctx.fail(f"{where}feature {i} ({eid}): {exc.errors()[0]['msg']}") from None
    return out


def _feature_level(props: dict[str, Any], given: str, ctx: Any, where: str) -> str:
    """A feature's classification: its own ``classification`` property when it has one, never below the one the
    ingest gives the whole file (a delivery marks its sensitive features; the ingest cannot lower them)."""
    from data_models import Classification

    own = props.get("classification")
    if own is None or str(own).strip() == "":
        return given
    try:
        mine = Classification(str(own).strip().lower())
    except ValueError:
        raise ctx.fail(f"{where}: classification {own!r} is not one of "
                       f"{', '.join(c.value for c in Classification)}") from None
    return max(mine, Classification(given), key=lambda c: c.rank).value


def _repair(g: shapely.Geometry) -> shapely.Geometry:
    """A valid version of ``g`` of the same dimension (polygonal parts of a repaired polygon)."""
    fixed = shapely.make_valid(g)
    if g.geom_type in ("Polygon", "MultiPolygon") and fixed.geom_type not in ("Polygon", "MultiPolygon"):
        parts = [p for p in shapely.get_parts(fixed) if p.geom_type in ("Polygon", "MultiPolygon")]
        fixed = shapely.union_all(parts) if parts else shapely.Polygon()
    return fixed


def _layer_names(ctx: ReadContext) -> list[str | None]:
    """The layers to read: options['layer'], else every layer with geometry (None for single-layer files)."""
    try:
        layers = pyogrio.list_layers(ctx.path)
    except Exception as exc:  # noqa: BLE001
        raise ctx.fail(f"not a readable vector file ({exc})") from exc
    want = ctx.options.get("layer")
    names = [str(n) for n, _ in layers]
    if want is not None:
        if isinstance(want, int) or (isinstance(want, str) and want.isdigit() and want not in names):
            idx = int(want)
            if not 0 <= idx < len(names):
                raise ctx.fail(f"no layer {want!r}; layers: {', '.join(names)}")
            return [names[idx]]
        if want not in names:
            raise ctx.fail(f"no layer {want!r}; layers: {', '.join(names)}")
        return [want]
    spatial = [str(n) for n, gt in layers if gt is not None]
    if not spatial:
        raise ctx.fail("no layer with geometry")
    return spatial if len(layers) > 1 else [None]


def read(ctx: ReadContext) -> SourceRead:
    """Read a vector file (all layers or ``options['layer']``) into city objects in the store CRS."""
    if not ctx.path.exists():
        raise ctx.fail("no such file")
    if ctx.path.stat().st_size == 0:
        raise ctx.fail("the file is empty")
    etype = ctx.options.get("entity_type")
    if etype is not None and etype not in ENTITY_TYPES:
        raise ctx.fail(f"unknown entity_type {etype!r}; use one of {', '.join(ENTITY_TYPES)}")
    entities: list[Any] = []
    layers_info: dict[str, Any] = {}
    skipped: dict[str, int] = {}
    crss: list[str] = []
    raw_bboxes: list[list[float]] = []
    proj_geoms: list[Any] = []
    total = 0
    for layer in _layer_names(ctx):
        file_crs, props, geoms = read_vector(ctx.path, ctx.crs, layer)
        label = layer or ctx.path.name
        theme_type, bgt_theme, known = theme_of(ctx.path, layer)
        use_type = etype or theme_type
        total += len(geoms)
        if not geoms:
            layers_info[label] = {"features": 0, "entity_type": use_type}
            continue
        arr, file_crs = web_to_wgs84(ctx, np.asarray(geoms, dtype=object), file_crs)
        bbox = extent(arr)
        check_extent(ctx, bbox, file_crs)
        if etype is None and known and theme_type is None:
            skipped[f"{label} (BGT theme {bgt_theme!r} has no city-object mapping)"] = len(geoms)
            layers_info[label] = {"features": len(geoms), "entity_type": None}
            continue
        got = to_entities(ctx, file_crs, props, list(arr), entity_type=use_type, bgt_theme=bgt_theme, layer=layer)
        entities += got
        crss.append(file_crs)
        raw_bboxes.append(bbox)
        proj_geoms.append(reproject(shapely.box(*bbox), file_crs, ctx.store_crs))
        layers_info[label] = {"features": len(geoms), "entity_type": use_type or "inferred", "entities": len(got)}
    ids = [e.id for e in entities]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ctx.fail(f"duplicate id {dup!r} across layers")
    info: dict[str, Any] = {"feature_count": total, "layers": layers_info}
    if skipped:
        info["skipped"] = skipped
    if not crss:
        info.update(crs=normalise(ctx.crs) if ctx.crs else None, bbox=None)
    elif all(c == crss[0] for c in crss):
        b = np.asarray(raw_bboxes)
        info.update(crs=crss[0], bbox=[float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()),
                                       float(b[:, 3].max())])
    else:
        info.update(crs=normalise(ctx.store_crs), bbox=extent(proj_geoms))
    if ctx.options.get("coords"):
        info["coords_converted_from"] = web_coords(ctx.options["coords"])
    return SourceRead(info=info, entities=entities)
