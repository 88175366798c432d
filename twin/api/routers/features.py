"""OGC API Features Part 1 (+ Part 2 CRS, Part 5 schemas): conformance, collections, queryables, schemas, items.

One collection per entity type, the building parts, and one per H3 layer (``layer-<name>``); what each serves is
its :class:`twin.api.items.Source` (``twin/api/feature_collections.py``). Items carry flat, typed properties
(``twin/api/flatten.py``) unless ``flat=false`` asks for the nested record. The item id is the store entity id
(also the 3D Tiles feature id). Items are paged in id order at a pinned version (next/prev links carry
``as_of=<version>``, and the ``datetime`` the first page used), so a client that follows the links reads every
feature exactly once even while other processes commit.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi import Path as P
from fastapi import Query as Q

from twin.api import feature_collections, flatten, ogc, schemas
from twin.api.cql import CQLError, _split_path
from twin.api.cql import parse as parse_cql
from twin.api.deps import get_store
from twin.api.items import Filter, Item, ItemQuery, Source, now
from twin.api.ogc import GeoJSONDoc, JSONDoc, SchemaDoc
from twin.geo import crs as geocrs
from twin.store import MAIN, Store

router = APIRouter(tags=["features"])

_F = Q(None, description="output format: json (the only one; GeoJSON for items)", pattern="^(json|geojson)$")
_BRANCH = Q(MAIN, description="branch (scenario) to read", examples=[MAIN])
_AS_OF = Q(None, description="version number or RFC 3339 time; default the latest", examples=["1"])
_COLLECTION = P(description="collection id: one per entity type, building_parts, and layer-<name> per H3 layer "
                            "(see /collections)", examples=["buildings"])
_FEATURE = P(description="store entity id (also the 3D Tiles feature id); for a layer <cell> or <cell>@<time>",
             examples=["bldg-110101-000001"])
_CRS = Q(None, description="CRS of the returned geometries (OGC API Features Part 2): CRS84 (default), "
                           "EPSG:4326 (lat/lon order) or the storage CRS (e.g. EPSG:4548, northing/easting order)")
_FLAT = Q(True, description="true (default): flat, typed columns (attributes as columns, quality_*, provenance_*; "
                            "see /collections/{collectionId}/schema); false: the nested record (attributes, quality, "
                            "provenance as objects)")
_PROPERTIES = Q(None, description="comma-separated properties to return (lods only this way)")
_ITEM_PARAMS = {"bbox", "bbox-crs", "datetime", "limit", "offset", "filter", "filter-lang", "crs", "properties",
                "branch", "as_of", "f", "flat", "res"}


def _base(request: Request) -> str:
    """The API's public base URL (``twin.api.middleware.PublicURL`` set it; never the client's Host header),
    without a trailing slash."""
    return str(request.base_url).rstrip("/")


def _source(store: Store, branch: str, as_of: str | None, collection_id: str) -> Source:
    return feature_collections.source(store, branch, store.resolve_version(branch, as_of), collection_id)


def _pinned(branch: str, as_of: str | None) -> str:
    """The query string that keeps a link on the branch and version the request named (none by default)."""
    q = [f"branch={branch}"] if branch != MAIN else []
    q += [f"as_of={as_of}"] if as_of is not None else []
    return ("?" + "&".join(q)) if q else ""


@router.get("/conformance", response_class=JSONDoc, response_model=schemas.Conformance)
def conformance(f: str | None = _F) -> JSONDoc:
    """The OGC conformance classes this API implements."""
    return JSONDoc({"conformsTo": ogc.CONFORMANCE})


def _collection_doc(src: Source, base: str, pin: str) -> dict[str, Any]:
    """The OGC collection document: CRSs, links (items, queryables, schemas) and the extent and count of the
    collection at the version read (the count of what its items answer without parameters)."""
    c, store = src.collection, src.store
    url = f"{base}/collections/{c.id}"
    amp = "&" if pin else "?"
    doc: dict[str, Any] = {
        "id": c.id,
        "title": c.title,
        "description": c.description,
        "itemType": "feature",
        "crs": ogc.supported_crs(store),
        "storageCrs": geocrs.CRS84 if c.kind == "layer" else geocrs.crs_uri(store.crs),
        "links": [
            ogc.link(f"{url}{pin}", "self", ogc.JSON, "this collection"),
            ogc.link(f"{url}/items{pin}", "items", ogc.GEOJSON, f"{c.title} as GeoJSON"),
            ogc.link(f"{url}/queryables{pin}", "http://www.opengis.net/def/rel/ogc/1.0/queryables", ogc.SCHEMA_JSON,
                     "properties to filter on"),
            ogc.link(f"{url}/queryables{pin}", "queryables", ogc.SCHEMA_JSON, "properties to filter on (short rel)"),
            ogc.link(f"{url}/schema{pin}", "http://www.opengis.net/def/rel/ogc/1.0/schema", ogc.SCHEMA_JSON,
                     "the properties of the features: names, types, units (Part 5)"),
            ogc.link(f"{url}/schema{pin}{amp}level=feature", "describedby", ogc.SCHEMA_JSON,
                     "JSON Schema of one GeoJSON feature (typed fields for GDAL)"),
            ogc.link(f"{url}/schema{pin}{amp}level=feature", "describedBy", ogc.SCHEMA_JSON,
                     "the same, in the spelling GDAL's OAPIF driver looks for"),
        ],
    }
    s = src.summary()
    if s.bbox is not None:
        doc["extent"] = {
            "spatial": {"bbox": [s.bbox], "crs": geocrs.CRS84},
            "temporal": {"interval": [[ogc.iso(s.start), ogc.iso(s.end)]],
                         "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"},
        }
    doc["numberOfFeatures"] = s.count
    return doc


@router.get("/collections", response_class=JSONDoc, response_model=schemas.Collections)
def collections(request: Request, branch: str = _BRANCH, as_of: str | None = _AS_OF, f: str | None = _F,
                store: Store = Depends(get_store)) -> JSONDoc:
    """Every collection (entity types, building parts, H3 layers) with its CRS84 extent computed from the data,
    its validity (or time) interval and the number of features its items answer by default."""
    version = store.resolve_version(branch, as_of)
    base, pin = _base(request), _pinned(branch, as_of)
    return JSONDoc({
        "links": [ogc.link(f"{base}/collections{pin}", "self", ogc.JSON, "the collections")],
        "collections": [_collection_doc(s, base, pin)
                        for s in feature_collections.sources(store, branch, version)],
    })


@router.get("/collections/{collectionId}", response_class=JSONDoc, response_model=schemas.CollectionDoc)
def collection(request: Request, collectionId: str = _COLLECTION, branch: str = _BRANCH,  # noqa: N803 (OGC's)
               as_of: str | None = _AS_OF, f: str | None = _F, store: Store = Depends(get_store)) -> JSONDoc:
    """One collection: title, extent, CRSs and links to its items, queryables and schemas."""
    src = _source(store, branch, as_of, collectionId)
    return JSONDoc(_collection_doc(src, _base(request), _pinned(branch, as_of)))


@router.get("/collections/{collectionId}/queryables", response_class=SchemaDoc, response_model=schemas.Queryables)
def queryables(request: Request, collectionId: str = _COLLECTION,  # noqa: N803
               branch: str = _BRANCH, as_of: str | None = _AS_OF, f: str | None = _F,
               store: Store = Depends(get_store)) -> SchemaDoc:
    """The columns usable in ``?name=value`` and in ``filter`` (JSON Schema), at the version read; the nested
    attributes.* and quality.* paths of before are accepted in ``filter`` too."""
    src = _source(store, branch, as_of, collectionId)
    return SchemaDoc(flatten.queryables_doc(src.schema, src.collection.title,
                                            f"{_base(request)}/collections/{src.id}/queryables"))


@router.get("/collections/{collectionId}/schema", response_class=SchemaDoc, response_model=schemas.CollectionSchema)
def schema(request: Request, collectionId: str = _COLLECTION,  # noqa: N803
           level: Literal["properties", "feature"] = Q("properties", description=(
               "properties (default): OGC API Features Part 5, one entry per property with type, format, unit, "
               "order and role; feature: a JSON Schema of one GeoJSON feature (what GDAL reads)")),
           branch: str = _BRANCH, as_of: str | None = _AS_OF, f: str | None = _F,
           store: Store = Depends(get_store)) -> SchemaDoc:
    """The flat properties of the collection's features at the version read: every feature of every page has
    exactly these (null when it has no value), of these types."""
    src = _source(store, branch, as_of, collectionId)
    url = f"{_base(request)}/collections/{src.id}/schema"
    if level == "feature":
        return SchemaDoc(flatten.feature_schema(src.schema, src.collection.title, f"{url}?level=feature"))
    return SchemaDoc(flatten.part5(src.schema, src.geometry_format(), src.collection.title, url,
                                   src.collection.description))


def _filters(request: Request, src: Source, filter_: str | None, filter_lang: str | None) -> tuple[Filter, ...]:
    """Filters from ``?name=value`` queryables and the CQL2-text ``filter``; unknown parameters are a 400."""
    out: list[Filter] = []
    for name, value in request.query_params.multi_items():
        if name in _ITEM_PARAMS:
            continue
        if "." not in name and name not in src.schema.queryables():
            raise ogc.OGCError(f"{name}: unknown parameter; parameters: {', '.join(sorted(_ITEM_PARAMS))}, and the "
                               f"queryables of {src.id!r}: {', '.join(src.schema.queryables())}")
        flat, path = src.filter(_split_path(name), name)
        out.append(Filter(flat, path, "=", ogc.coerce(src.field(flat), name, value)))
    if filter_ is not None:
        if filter_lang not in (None, "cql2-text"):
            raise ogc.OGCError(f"filter-lang: only cql2-text is supported, got {filter_lang!r}")
        try:
            parsed = parse_cql(filter_)
        except CQLError as exc:
            raise ogc.OGCError(f"filter: {exc}") from None
        for path, op, value in parsed:
            flat, stored = src.filter(path, "filter")
            out.append(Filter(flat, stored, op, value))
    return tuple(out)


def _known(src: Source, flat: bool) -> set[str]:
    return (set(src.schema.fields) if flat else src.nested_names()) | ({"lods"} if src.collection.model else set())


def _feature(item: Item, geometry: dict[str, Any] | None, names: list[str] | None, flat: bool) -> dict[str, Any]:
    """An item as a GeoJSON Feature: its flat (or nested) properties; the solids only when ``names`` asks."""
    props = item.flat if flat else item.nested
    if names is not None:
        props = {k: (item.lods if k == "lods" else props.get(k)) for k in names}
    return {"type": "Feature", "id": item.id, "geometry": geometry, "properties": props}


def _geometries(items: list[Item], store: Store, out_crs: str) -> list[dict[str, Any] | None]:
    """The items' geometries in ``out_crs`` (one PROJ call per source CRS of the page)."""
    out: list[dict[str, Any] | None] = [None] * len(items)
    for src_crs in dict.fromkeys(i.crs for i in items):
        idx = [k for k, i in enumerate(items) if i.crs == src_crs]
        for k, g in zip(idx, ogc.to_output_crs([items[k].geometry for k in idx], store, out_crs, src_crs),
                        strict=True):
            out[k] = g
    return out


@router.get("/collections/{collectionId}/items", response_class=GeoJSONDoc,
            response_model=schemas.FeatureCollection)
def items(
    request: Request,
    collectionId: str = _COLLECTION,  # noqa: N803
    bbox: str | None = Q(None, description="minx,miny,maxx,maxy (or 6 numbers with heights) in bbox-crs, default "
                                           "CRS84 lon/lat; features intersecting it",
                         examples=["116.395,39.901,116.404,39.909"]),
    bbox_crs: str | None = Q(None, alias="bbox-crs", description="CRS of bbox (same choices as crs)"),
    datetime: str | None = Q(None, description="RFC 3339 instant or interval (a/b, '..' open) matched against the "
                                               "features' validity [valid_from, valid_to) (layers: their time "
                                               "buckets); default <now>/..: what has not ended (no demolished "
                                               "buildings); ../.. for every state",
                             examples=["2024-01-01T00:00:00Z/.."]),
    limit: int = Q(ogc.DEFAULT_LIMIT, ge=1, le=ogc.MAX_LIMIT, description="page size"),
    offset: int = Q(0, ge=0, description="features to skip (follow the next link instead of counting)"),
    filter_: str | None = Q(None, alias="filter", description="CQL2-text subset: comparisons (= <> < <= > >=) joined "
                                                              "by AND on the queryables, e.g. quality_rmse_lod22 > 1",
                            examples=["height > 10 AND use = 'residential'"]),
    filter_lang: str | None = Q(None, alias="filter-lang", description="cql2-text (the only one)"),
    crs: str | None = _CRS,
    properties: str | None = _PROPERTIES,
    flat: bool = _FLAT,
    res: int | None = Q(None, description="layer collections only: the H3 resolution (default the layer's finest)"),
    branch: str = _BRANCH,
    as_of: str | None = _AS_OF,
    f: str | None = _F,
    store: Store = Depends(get_store),
) -> GeoJSONDoc:
    """Features of a collection as GeoJSON, in id order; ``?name=value`` filters on the queryables."""
    src = _source(store, branch, as_of, collectionId)
    out_crs = ogc.parse_crs(crs, store, "crs")
    names = ogc.parse_properties(properties, _known(src, flat), src.id)
    given = ogc.parse_datetime(datetime)
    t = now()
    interval = given if datetime is not None and datetime.strip() else src.default_interval(t)
    box = ogc.parse_bbox(bbox)
    if res is not None and not src.has_resolutions:
        raise ogc.OGCError(f"res: only layer collections (layer-<name>) have resolutions, not {src.id!r}")
    q = ItemQuery(box=box, bbox_crs=ogc.parse_crs(bbox_crs, store, "bbox-crs"), interval=interval,
                  filters=_filters(request, src, filter_, filter_lang), limit=limit, offset=offset, res=res)
    matched, page = src.page(q)
    geoms = _geometries(page, store, out_crs)
    features = [_feature(it, g, names, flat) for it, g in zip(page, geoms, strict=True)]
    url = request.url
    pin: dict[str, Any] = {"as_of": src.version}
    if interval is not None and given is None:  # the default "not ended by now", pinned for the next pages
        pin["datetime"] = f"{ogc.iso(t)}/.."
    links = [ogc.link(str(url), "self", ogc.GEOJSON, "this page"),
             ogc.link(f"{_base(request)}/collections/{src.id}", "collection", ogc.JSON, src.collection.title)]
    if offset + len(page) < matched:
        links.append(ogc.link(str(url.include_query_params(offset=offset + limit, limit=limit, **pin)),
                              "next", ogc.GEOJSON, "next page"))
    if offset > 0:
        links.append(ogc.link(str(url.include_query_params(offset=max(0, offset - limit), limit=limit, **pin)),
                              "prev", ogc.GEOJSON, "previous page"))
    doc = {
        "type": "FeatureCollection",
        "features": features,
        "numberMatched": matched,
        "numberReturned": len(features),
        "timeStamp": ogc.now_iso(),
        "links": links,
    }
    return GeoJSONDoc(doc, headers={"Content-Crs": f"<{out_crs}>"})


@router.get("/collections/{collectionId}/items/{featureId}", response_class=GeoJSONDoc,
            response_model=schemas.Feature)
def feature(
    request: Request,
    collectionId: str = _COLLECTION,  # noqa: N803
    featureId: str = _FEATURE,  # noqa: N803
    crs: str | None = _CRS,
    properties: str | None = _PROPERTIES,
    flat: bool = _FLAT,
    branch: str = _BRANCH,
    as_of: str | None = _AS_OF,
    f: str | None = _F,
    store: Store = Depends(get_store),
) -> GeoJSONDoc:
    """One feature by its id (the store id, also the 3D Tiles feature id), as of a version or time on a branch,
    whatever its validity (a demolished building too)."""
    src = _source(store, branch, as_of, collectionId)
    out_crs = ogc.parse_crs(crs, store, "crs")
    names = ogc.parse_properties(properties, _known(src, flat), src.id)
    found = src.get(featureId)
    if found is None:
        hint = ""
        row = store.get(featureId, branch, src.version) if src.collection.kind == "entities" else None
        if row is not None and row.get("type") in ogc.BY_TYPE:
            hint = f"; it is a {row['type']} in collection {ogc.BY_TYPE[row['type']].id!r}"
        raise ogc.OGCError(f"no item {featureId!r} in collection {src.id!r} on branch {branch!r} at version "
                           f"{src.version}{hint}", 404)
    doc = _feature(found, _geometries([found], store, out_crs)[0], names, flat)
    base = f"{_base(request)}/collections/{src.id}"
    doc["links"] = [ogc.link(str(request.url), "self", ogc.GEOJSON, "this feature"),
                    ogc.link(base, "collection", ogc.JSON, src.collection.title)]
    if src.collection.kind == "entities":
        doc["links"].append(ogc.link(f"{_base(request)}/entities/{featureId}/history", "version-history", ogc.JSON,
                                     "every stored version of this entity"))
    return GeoJSONDoc(doc, headers={"Content-Crs": f"<{out_crs}>"})
