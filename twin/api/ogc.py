"""OGC API Features building blocks: collections, queryables, CRS handling, parameter parsing, links and items.

The router (``twin/api/routers/features.py``) only wires these together, so the same rules apply to every
endpoint: parameters are parsed here into store query arguments, and every malformed value becomes an
:class:`OGCError` (HTTP 400 naming the parameter) instead of a 500. What a query means (validity intervals,
paging, extents) is the store's (``Query(valid_during=…)``, ``Store.page``, ``Store.extents``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.geometry
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from data_models import Building, BuildingPart, LandCover, Road, Sensor, Vegetation, WaterBody
from twin.api import flatten
from twin.errors import TABLE, Status, TwinError
from twin.geo import crs
from twin.store import Store
from twin.times import to_utc

GEOJSON = "application/geo+json"
JSON = "application/json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
SCHEMA_JSON = "application/schema+json"
HTML = "text/html"

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/schemas",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/core-roles-features",
] + [f"http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/{c}" for c in (
    "core", "ogc-process-description", "json", "html", "oas30", "job-list", "callback", "dismiss")]

DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000


class OGCError(TwinError):
    """A client error whose message names the parameter and the problem: a bad_input (400), or a not_found when
    ``status`` is 404; answered by the app's one TwinError handler."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = Status.not_found if status == TABLE[Status.not_found].http else Status.bad_input  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- responses
class JSONDoc(JSONResponse):
    """JSON rendered compactly, with NaN written as null (an invalid float must never become a 500). A
    ``JSONResponse`` so that FastAPI documents a route's ``response_model`` as its body (for any other response
    class it documents a string)."""

    media_type = JSON

    def render(self, content: Any) -> bytes:
        return dumps(content)


class GeoJSONDoc(JSONDoc):
    media_type = GEOJSON


class SchemaDoc(JSONDoc):
    media_type = SCHEMA_JSON


# ---------------------------------------------------------------------------------------------- collections
@dataclass(frozen=True)
class Collection:
    """One OGC collection: what it serves and how it is described. ``kind``: ``entities`` (stored city objects of
    one type), ``parts`` (building parts, derived per version: ``twin/api/parts.py``) or ``layer`` (an H3 layer's
    cells: ``twin/api/layer_collections.py``); ``geometry`` is the Part 5 geometry format of its features."""

    id: str
    type: str
    model: type[BaseModel] | None
    title: str
    description: str
    geometry: str = "geometry-any"
    kind: str = "entities"


_POLYGONS = "geometry-polygon-or-multipolygon"
COLLECTIONS: dict[str, Collection] = {
    c.id: c
    for c in (
        Collection("buildings", "Building", Building, "Buildings",
                   "Building footprints with height, roof type, use, attributes (district, name …), reconstruction "
                   "quality (quality_rmse_lod12/13/22, validity) and provenance as flat columns; the 3D solids "
                   "(`lods`) only when asked for with `properties`.", _POLYGONS),
        Collection("building_parts", "BuildingPart", BuildingPart, "Building parts",
                   "Parts of buildings with their own height: the stored BuildingPart entities, and for every other "
                   "building the parts of its LoD1.3 solid (flat-topped, one per roof height), id "
                   "`<building id>.part-<k>`, `parent_id` the building.", _POLYGONS, kind="parts"),
        Collection("roads", "Road", Road, "Roads", "Road centre lines and areas: class, name, lanes, width, closure."),
        Collection("landcover", "LandCover", LandCover, "Land cover",
                   "Fused land-cover polygons (imagery + LiDAR + vectors) with class and confidence.", _POLYGONS),
        Collection("water", "WaterBody", WaterBody, "Water bodies", "Lakes, ponds, rivers and canals."),
        Collection("vegetation", "Vegetation", Vegetation, "Vegetation",
                   "Individual trees (points with height and crown radius) and vegetated areas."),
        Collection("sensors", "Sensor", Sensor, "Sensors", "Monitoring stations and the variables they measure.",
                   "geometry-point"),
    )
}
BY_TYPE = {c.type: c for c in COLLECTIONS.values()}


@cache
def queryables(collection_id: str) -> dict[str, dict[str, Any]]:
    """JSON-Schema snippets of the flat columns every version of an entity collection has (its model's scalar
    fields; for buildings and parts the quality columns too). A version's own queryables add its attribute and
    further quality columns (``twin.api.items.Source.schema``)."""
    c = COLLECTIONS[collection_id]
    assert c.model is not None
    fields = flatten.model_fields_schema(c.model)
    if c.model in (Building, BuildingPart):
        fields.update(flatten.BUILDING_QUALITY)
    return {n: f.json_schema() for n, f in fields.items() if f.queryable}


def coerce(field: flatten.Field | None, name: str, raw: str) -> Any:
    """A ``?name=value`` filter value as the column's type (number, integer, boolean or text)."""
    t = field.type if field is not None else "string"
    if t in ("number", "integer"):
        try:
            v = float(raw)
        except ValueError:
            raise OGCError(f"{name}: expected a number, got {raw!r}") from None
        if not math.isfinite(v):
            raise OGCError(f"{name}: expected a finite number, got {raw!r}")
        return v
    if t == "boolean":
        if raw.lower() not in ("true", "false"):
            raise OGCError(f"{name}: expected true or false, got {raw!r}")
        return raw.lower() == "true"
    return raw


# ---------------------------------------------------------------------------------------------- CRS
def supported_crs(store: Store) -> list[str]:
    """The CRSs items can be returned in and bboxes given in: crs.CRS84 (default), WGS 84 lat/lon, the storage CRS."""
    out = [crs.CRS84, crs.crs_uri("EPSG:4326"), crs.crs_uri(store.crs)]
    return list(dict.fromkeys(out))


def parse_crs(value: str | None, store: Store, param: str) -> str:
    """A ``crs`` / ``bbox-crs`` value (OGC URI, ``[EPSG:n]`` safe CURIE or ``EPSG:n``) as a supported URI."""
    if value is None or value == "":
        return crs.CRS84
    v = value.strip()
    m = crs.uri_match(v)
    if m:
        uri = crs.crs_uri(f"{m['auth']}:{m['code']}")
    else:
        code = v.strip("[]")
        uri = crs.crs_uri(code) if re.fullmatch(r"[A-Za-z]+:[A-Za-z0-9]+", code) else ""
        if code.upper() == "crs.CRS84":
            uri = crs.CRS84
    supported = supported_crs(store)
    if uri not in supported:
        raise OGCError(f"{param}: unsupported CRS {value!r}; supported: {', '.join(supported)}")
    return uri


def _xy_fn(t: pyproj.Transformer | None, swap: bool):
    def fn(xy: np.ndarray) -> np.ndarray:
        if t is not None:
            n = len(xy)
            pad = xy if n != 1 else np.vstack([xy, xy])  # one point would take pyproj's deprecated scalar path
            x, y = t.transform(pad[:, 0], pad[:, 1])
            xy = np.column_stack([x, y])[:n]
        return xy[:, ::-1] if swap else xy

    return fn


def _positions(coords: Any, acc: list) -> None:
    if coords and isinstance(coords[0], int | float):
        acc.append(coords)
        return
    for c in coords:
        _positions(c, acc)


def _rebuild(coords: Any, it: Any) -> list:
    if coords and isinstance(coords[0], int | float):
        x, y = next(it)
        return [x, y, *coords[2:]]
    return [_rebuild(c, it) for c in coords]


def to_output_crs(geoms: list[dict[str, Any] | None], store: Store, target: str,
                  src: str | None = None) -> list[dict[str, Any] | None]:
    """GeoJSON geometries in ``src`` (default the store CRS) → in ``target`` (axis order of the target CRS), in one
    PROJ call over every position of the page (heights kept as they are)."""
    acc: list = []
    for g in geoms:
        if g:
            _positions(g["coordinates"], acc)
    if not acc:
        return [None if not g else {"type": g["type"], "coordinates": []} for g in geoms]
    xy = np.array([(p[0], p[1]) for p in acc], dtype=np.float64)
    src = src or crs.crs_uri(store.crs)
    out = _xy_fn(None if target == src else crs.shared_transformer(src, target), crs.north_first(target))(xy)
    it = iter(out.tolist())
    return [None if not g else {"type": g["type"], "coordinates": _rebuild(g["coordinates"], it)} for g in geoms]


def bbox_to_store(values: list[float], bbox_crs: str, store: Store) -> dict[str, Any] | None:
    """A client bbox in ``bbox_crs`` → store query arguments (``bbox`` or an exact ``polygon``), None when the
    box lies outside the store CRS's area of use (nothing can match).

    Geographic boxes are clipped to the store CRS's area of use (a world-wide box is a common client request)
    and densified before reprojection, so the query polygon follows the box's true edges.
    """
    minx, miny, maxx, maxy = values
    if crs.north_first(bbox_crs):
        minx, miny, maxx, maxy = miny, minx, maxy, maxx
    src = crs.crs_uri(store.crs)
    if bbox_crs == src:
        return {"bbox": [minx, miny, maxx, maxy]}
    geographic = crs.from_uri(bbox_crs).is_geographic
    if geographic:
        if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
            raise OGCError(f"bbox: longitudes must lie in [-180, 180] and latitudes in [-90, 90], got {values}")
        aou = crs.from_uri(src).area_of_use
        if aou is not None:
            minx, miny = max(minx, aou.west), max(miny, aou.south)
            maxx, maxy = min(maxx, aou.east), min(maxy, aou.north)
            if minx > maxx or miny > maxy:
                return None
    box = shapely.box(minx, miny, maxx, maxy)
    if box.area > 0:
        box = shapely.segmentize(box, max(maxx - minx, maxy - miny) / 64)
    t = crs.shared_transformer(bbox_crs, src)
    out = shapely.transform(box, _xy_fn(t, False))
    if not np.all(np.isfinite(shapely.get_coordinates(out))):
        raise OGCError(f"bbox: {values} cannot be transformed into the store CRS {store.crs}")
    if out.area == 0:  # a degenerate box (a point or a line): its bounds
        return {"bbox": list(out.bounds)}
    return {"polygon": out if out.is_valid else shapely.make_valid(out)}


# ---------------------------------------------------------------------------------------------- parameters
def parse_bbox(value: str | None) -> list[float] | None:
    """``bbox=minx,miny,maxx,maxy`` (or 6 numbers with heights, which are ignored); 400 when malformed."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise OGCError(f"bbox: expected 4 (or 6) comma-separated numbers, got {len(parts)} in {value!r}")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise OGCError(f"bbox: not numbers: {value!r}") from None
    if not all(math.isfinite(n) for n in nums):
        raise OGCError(f"bbox: numbers must be finite, got {value!r}")
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    if nums[0] > nums[2] or nums[1] > nums[3]:
        raise OGCError(f"bbox: the lower corner must not exceed the upper corner (boxes across the antimeridian "
                       f"are not supported), got {value!r}")
    return nums


def _instant(s: str, param: str) -> datetime:
    s = s.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        s += "T00:00:00Z"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?", s):
        raise OGCError(f"{param}: {s!r} is not an RFC 3339 date-time (e.g. 2024-06-01T00:00:00Z)")
    try:
        return to_utc(s.replace("z", "Z").replace("t", "T"))
    except ValueError as exc:
        raise OGCError(f"{param}: {s!r} is not a valid date-time: {exc}") from None


def parse_datetime(value: str | None, param: str = "datetime") -> tuple[datetime | None, datetime | None] | None:
    """``datetime``: an instant (start == end) or an interval ``a/b`` with ``..`` or empty for an open end."""
    if value is None or value.strip() == "":
        return None
    if "/" not in value:
        t = _instant(value, param)
        return t, t
    parts = value.split("/")
    if len(parts) != 2:
        raise OGCError(f"{param}: an interval has exactly one '/', got {value!r}")
    a, b = (None if p.strip() in ("", "..") else _instant(p, param) for p in parts)
    if a is not None and b is not None and a > b:
        raise OGCError(f"{param}: the interval starts after it ends: {value!r}")
    return a, b


def parse_int(value: str | None, param: str, default: int, lo: int, hi: int | None) -> int:
    """An integer parameter within [lo, hi]; 400 with the allowed range otherwise."""
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise OGCError(f"{param}: expected an integer, got {value!r}") from None
    if n < lo or (hi is not None and n > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise OGCError(f"{param}: must be {rng}, got {n}")
    return n


def parse_properties(value: str | None, known: set[str], collection_id: str) -> list[str] | None:
    """``properties=a,b``: the item properties to return (``lods`` only this way); unknown names are a 400."""
    if value is None:
        return None
    names = [p.strip() for p in value.split(",") if p.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise OGCError(f"properties: unknown {', '.join(map(repr, unknown))} for collection {collection_id!r}; "
                       f"known: {', '.join(sorted(known))}")
    return names


# ---------------------------------------------------------------------------------------------- extents
def crs84_bbox(store: Store, bbox: list[float]) -> list[float]:
    """A store-CRS bbox as the crs.CRS84 box that contains it (edges densified)."""
    box = shapely.box(*bbox)
    if box.area > 0:
        box = shapely.segmentize(box, max(bbox[2] - bbox[0], bbox[3] - bbox[1]) / 20)
    out = shapely.transform(box, _xy_fn(crs.shared_transformer(crs.crs_uri(store.crs), crs.CRS84), False))
    return [float(v) for v in out.bounds]


# ---------------------------------------------------------------------------------------------- rendering
iso = flatten.iso


def now_iso() -> str:
    return iso(datetime.now(UTC).replace(microsecond=0))


def finite(obj: Any) -> Any:
    """JSON has no NaN/Infinity: such floats become null (only walked when a document has any)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def dumps(doc: Any) -> bytes:
    """Compact JSON; NaN and infinities (never valid JSON) are written as null."""
    try:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False, default=str).encode()
    except ValueError:
        return json.dumps(finite(doc), separators=(",", ":"), allow_nan=False, default=str).encode()


def link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def landing(base: str, title: str, description: str, time_zone: str | None = None) -> dict[str, Any]:
    """The OGC landing page document: where the API description, conformance and collections are, and the
    city's time zone (None when the store does not say)."""
    return {
        "title": title,
        "description": description,
        "time_zone": time_zone,
        "links": [
            link(f"{base}/?f=json", "self", JSON, "this document"),
            link(f"{base}/?f=html", "alternate", HTML, "this document as HTML"),
            link(f"{base}/openapi.json", "service-desc", OPENAPI, "the API definition (OpenAPI 3)"),
            link(f"{base}/docs", "service-doc", HTML, "the API documentation"),
            link(f"{base}/conformance", "conformance", JSON, "OGC conformance classes implemented"),
            link(f"{base}/collections", "data", JSON, "feature collections of the city model"),
            link(f"{base}/imagery/tilejson.json", "tiles", JSON, "imagery XYZ tiles (TileJSON)"),
            link(f"{base}/processes", "http://www.opengis.net/def/rel/ogc/1.0/processes", JSON,
                 "OGC API Processes: the simulators"),
            link(f"{base}/jobs", "http://www.opengis.net/def/rel/ogc/1.0/job-list", JSON, "the simulation jobs"),
        ],
    }


# ---------------------------------------------------------------------------------------------- OpenAPI 3.0
def openapi30(doc: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's OpenAPI 3.1 document rewritten as OpenAPI 3.0.3 (the OGC ``oas30`` class; what GDAL, QGIS and
    most OGC clients read): JSON-Schema-2020 constructs become their 3.0 forms (null → ``nullable``, ``const`` →
    ``enum``, numeric ``exclusiveMinimum`` → boolean, ``examples`` list → ``example``, ``prefixItems`` → ``items``)."""

    def schema(s: Any) -> Any:
        if isinstance(s, list):
            return [schema(v) for v in s]
        if not isinstance(s, dict):
            return s
        s = {k: schema(v) for k, v in s.items()}
        for key in ("anyOf", "oneOf"):
            opts = s.get(key)
            if isinstance(opts, list) and any(o == {"type": "null"} for o in opts):
                rest = [o for o in opts if o != {"type": "null"}]
                s.pop(key)
                if len(rest) == 1 and "$ref" in rest[0]:
                    s["allOf"] = rest
                elif len(rest) == 1:
                    s = {**rest[0], **s}
                else:
                    s[key] = rest
                s["nullable"] = True
        if isinstance(s.get("type"), list):
            types = [t for t in s["type"] if t != "null"]
            if len(types) < len(s["type"]):
                s["nullable"] = True
            s["type"] = types[0] if len(types) == 1 else "string"
        if "const" in s:
            s["enum"] = [s.pop("const")]
        for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(s.get(bound), int | float) and not isinstance(s.get(bound), bool):
                s[plain] = s[bound]
                s[bound] = True
        if isinstance(s.get("examples"), list):
            ex = s.pop("examples")
            if ex:
                s["example"] = ex[0]
        if "prefixItems" in s:
            items = s.pop("prefixItems")
            kinds = {json.dumps(i, sort_keys=True) for i in items}
            s["items"] = items[0] if len(kinds) == 1 else {"anyOf": items}
        if "$ref" in s and len(s) > 1:  # 3.0 ignores siblings of $ref
            s = {"allOf": [{"$ref": s.pop("$ref")}], **s}
        if s.get("contentMediaType") or s.get("contentEncoding"):
            s.pop("contentMediaType", None)
            s.pop("contentEncoding", None)
            s.setdefault("format", "binary")
        return s

    out = json.loads(json.dumps(doc))
    out["openapi"] = "3.0.3"
    for path in out.get("paths", {}).values():
        for op in path.values():
            if not isinstance(op, dict):
                continue
            for prm in op.get("parameters", []):
                if "schema" in prm:
                    prm["schema"] = schema(prm["schema"])
            for part in [op.get("requestBody", {})] + list(op.get("responses", {}).values()):
                for media in (part.get("content") or {}).values():
                    if "schema" in media:
                        media["schema"] = schema(media["schema"])
    comps = out.get("components", {}).get("schemas", {})
    for name in list(comps):
        comps[name] = schema(comps[name])
    return out


def accept_weights(header: str | None) -> dict[str, float]:
    """Media type -> the highest q an HTTP Accept header gives it (a malformed q counts as 0)."""
    best: dict[str, float] = {}
    for part in (header or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        best[media.lower()] = max(q, best.get(media.lower(), 0.0))
    return best


def wants_html(accept: str | None, f: str | None) -> bool:
    """``f=html``, or an Accept header that prefers text/html to JSON (browsers). ``*/*`` alone and no header get
    JSON: API clients (OWSLib, curl, QGIS) send those, and a browser always names text/html."""
    if f is not None:
        return f in ("html", "text/html")
    q = accept_weights(accept)
    json_q = max(q.get("application/json", 0.0), q.get("application/geo+json", 0.0), q.get("*/*", 0.0) * 0.99)
    return q.get("text/html", 0.0) > json_q

