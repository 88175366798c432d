"""OGC API Features Part 1 (+ Part 2 CRS): conformance, collections, queryables and items, with as_of and branch.

One collection per entity type; the item id is the store entity id (also the 3D Tiles feature id). Items are
paged in id order at a pinned version (next/prev links carry ``as_of=<version>``), so a client that follows the
links reads every feature exactly once even while other processes commit.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as P
from fastapi import Query as Q

from twin.api import ogc, schemas, warm
from twin.api.cql import CQLError, _split_path
from twin.api.cql import parse as parse_cql
from twin.api.deps import get_store
from twin.api.ogc import GeoJSONDoc, JSONDoc, SchemaDoc
from twin.geo import crs as geocrs
from twin.store import CITY, MAIN, Extent, Store
from twin.store import Query as StoreQuery

router = APIRouter(tags=["features"])

_F = Q(None, description="output format: json (the only one; GeoJSON for items)", pattern="^(json|geojson)$")
_BRANCH = Q(MAIN, description="branch (scenario) to read", examples=[MAIN])
_AS_OF = Q(None, description="version number or RFC 3339 time; default the latest", examples=["1"])
_COLLECTION = P(description="collection id, one per entity type (see /collections)", examples=["buildings"])
_FEATURE = P(description="store entity id (also the 3D Tiles feature id)", examples=["bldg-110101-000001"])
_CRS = Q(None, description="CRS of the returned geometries (OGC API Features Part 2): CRS84 (default), "
                           "EPSG:4326 (lat/lon order) or the storage CRS (e.g. EPSG:4548, northing/easting order)")
_ITEM_PARAMS = {"bbox", "bbox-crs", "datetime", "limit", "offset", "filter", "filter-lang", "crs", "properties",
                "branch", "as_of", "f"}


def _base(request: Request) -> str:
    """The API's public base URL (``twin.api.middleware.PublicURL`` set it; never the client's Host header),
    without a trailing slash."""
    return str(request.base_url).rstrip("/")


@router.get("/conformance", response_class=JSONDoc, response_model=schemas.Conformance)
def conformance(f: str | None = _F) -> JSONDoc:
    """The OGC conformance classes this API implements."""
    return JSONDoc({"conformsTo": ogc.CONFORMANCE})


def _collection_doc(c: ogc.Collection, base: str, store: Store, ext: dict[str, Extent]) -> dict[str, Any]:
    """The OGC collection document: CRSs, links, and the extent and count of its type at the version read."""
    url = f"{base}/collections/{c.id}"
    doc: dict[str, Any] = {
        "id": c.id,
        "title": c.title,
        "description": c.description,
        "itemType": "feature",
        "crs": ogc.supported_crs(store),
        "storageCrs": geocrs.crs_uri(store.crs),
        "links": [
            ogc.link(url, "self", ogc.JSON, "this collection"),
            ogc.link(f"{url}/items", "items", ogc.GEOJSON, f"{c.title} as GeoJSON"),
            ogc.link(f"{url}/queryables", "http://www.opengis.net/def/rel/ogc/1.0/queryables", ogc.SCHEMA_JSON,
                     "properties to filter on"),
            ogc.link(f"{url}/queryables", "queryables", ogc.SCHEMA_JSON, "properties to filter on (short rel)"),
        ],
    }
    e = ext.get(c.type)
    if e is not None:
        doc["extent"] = {
            "spatial": {"bbox": [ogc.crs84_bbox(store, list(e.bbox))], "crs": geocrs.CRS84},
            "temporal": {"interval": [[ogc.iso(e.start), ogc.iso(e.end)]],
                         "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"},
        }
    doc["numberOfFeatures"] = e.count if e else 0
    return doc


def _extents(store: Store, branch: str, as_of: str | None) -> dict[str, Extent]:
    """Extents of the collections' entity types at the version ``as_of`` names on ``branch`` (computed once for
    concurrent requests)."""
    return warm.extents(store, branch, store.resolve_version(branch, as_of))


@router.get("/collections", response_class=JSONDoc, response_model=schemas.Collections)
def collections(request: Request, branch: str = _BRANCH, as_of: str | None = _AS_OF, f: str | None = _F,
                store: Store = Depends(get_store)) -> JSONDoc:
    """Every collection (one per entity type) with its CRS84 extent computed from the data and validity interval."""
    ext = _extents(store, branch, as_of)
    base = _base(request)
    return JSONDoc({
        "links": [ogc.link(f"{base}/collections", "self", ogc.JSON, "the collections")],
        "collections": [_collection_doc(c, base, store, ext) for c in ogc.COLLECTIONS.values()],
    })


@router.get("/collections/{collectionId}", response_class=JSONDoc, response_model=schemas.CollectionDoc)
def collection(request: Request, collectionId: str = _COLLECTION, branch: str = _BRANCH,  # noqa: N803 (OGC's)
               as_of: str | None = _AS_OF, f: str | None = _F, store: Store = Depends(get_store)) -> JSONDoc:
    """One collection: title, extent, CRSs and links to its items and queryables."""
    c = ogc.collection(collectionId)
    return JSONDoc(_collection_doc(c, _base(request), store, _extents(store, branch, as_of)))


@router.get("/collections/{collectionId}/queryables", response_class=SchemaDoc, response_model=schemas.Queryables)
def queryables(request: Request, collectionId: str = _COLLECTION,  # noqa: N803
               f: str | None = _F) -> SchemaDoc:
    """The properties usable in ``?name=value`` and in ``filter`` (JSON Schema); nested attributes.* and quality.*
    paths are accepted in ``filter`` too."""
    c = ogc.collection(collectionId)
    return SchemaDoc({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{_base(request)}/collections/{c.id}/queryables",
        "type": "object",
        "title": c.title,
        "properties": ogc.queryables(c.id),
        "additionalProperties": True,
    })


def _filters(request: Request, c: ogc.Collection, filter_: str | None, filter_lang: str | None) -> list:
    """Store filters from ``?name=value`` queryables and the CQL2-text ``filter``; unknown parameters are a 400."""
    q = ogc.queryables(c.id)
    out: list[tuple[list[str], str, Any]] = []
    for name, value in request.query_params.multi_items():
        if name in _ITEM_PARAMS:
            continue
        if name not in q:
            raise ogc.OGCError(f"{name}: unknown parameter; parameters: {', '.join(sorted(_ITEM_PARAMS))}, and the "
                               f"queryables of {c.id!r}: {', '.join(q)}")
        out.append((_split_path(name), "=", ogc.coerce(c, name, value)))
    if filter_ is not None:
        if filter_lang not in (None, "cql2-text"):
            raise ogc.OGCError(f"filter-lang: only cql2-text is supported, got {filter_lang!r}")
        try:
            parsed = parse_cql(filter_)
        except CQLError as exc:
            raise ogc.OGCError(f"filter: {exc}") from None
        for path, op, value in parsed:
            out.append((ogc.filter_path(c, path, "filter"), op, value))
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
                                               "features' validity [valid_from, valid_to)",
                             examples=["2024-01-01T00:00:00Z/.."]),
    limit: int = Q(ogc.DEFAULT_LIMIT, ge=1, le=ogc.MAX_LIMIT, description="page size"),
    offset: int = Q(0, ge=0, description="features to skip (follow the next link instead of counting)"),
    filter_: str | None = Q(None, alias="filter", description="CQL2-text subset: comparisons (= <> < <= > >=) joined "
                                                              "by AND, e.g. quality.rmse.2.2 > 1",
                            examples=["height > 10 AND use = 'residential'"]),
    filter_lang: str | None = Q(None, alias="filter-lang", description="cql2-text (the only one)"),
    crs: str | None = _CRS,
    properties: str | None = Q(None, description="comma-separated properties to return (lods only this way)"),
    branch: str = _BRANCH,
    as_of: str | None = _AS_OF,
    f: str | None = _F,
    store: Store = Depends(get_store),
) -> GeoJSONDoc:
    """Features of a collection as GeoJSON, in id order; ``?name=value`` filters on the queryables."""
    c = ogc.collection(collectionId)
    out_crs = ogc.parse_crs(crs, store, "crs")
    names = ogc.parse_properties(properties, c)
    interval = ogc.parse_datetime(datetime)
    box = ogc.parse_bbox(bbox)
    filters = _filters(request, c, filter_, filter_lang)
    version = store.resolve_version(branch, as_of)
    spatial: dict[str, Any] = {}
    if box is not None:  # no store box (outside the store CRS's area of use): nothing can match
        spatial = ogc.bbox_to_store(box, ogc.parse_crs(bbox_crs, store, "bbox-crs"), store) or {"ids": []}
    page = store.page(branch, version, StoreQuery(
        collection=CITY, types=[c.type], filters=filters, valid_during=interval, limit=limit, offset=offset, **spatial,
    ))
    matched, rows = page.matched, page.rows
    geoms = ogc.to_output_crs([r.get("geometry") for r in rows], store, out_crs)
    features = [ogc.item(r, g, names) for r, g in zip(rows, geoms, strict=True)]
    url = request.url
    links = [ogc.link(str(url), "self", ogc.GEOJSON, "this page"),
             ogc.link(f"{_base(request)}/collections/{c.id}", "collection", ogc.JSON, c.title)]
    if offset + len(rows) < matched:
        links.append(ogc.link(str(url.include_query_params(offset=offset + limit, limit=limit, as_of=version)),
                              "next", ogc.GEOJSON, "next page"))
    if offset > 0:
        links.append(ogc.link(str(url.include_query_params(offset=max(0, offset - limit), limit=limit,
                                                           as_of=version)), "prev", ogc.GEOJSON, "previous page"))
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
    properties: str | None = Q(None, description="comma-separated properties to return (lods only this way)"),
    branch: str = _BRANCH,
    as_of: str | None = _AS_OF,
    f: str | None = _F,
    store: Store = Depends(get_store),
) -> GeoJSONDoc:
    """One feature by its store id (the 3D Tiles feature id), as of a version or time on a branch."""
    c = ogc.collection(collectionId)
    out_crs = ogc.parse_crs(crs, store, "crs")
    names = ogc.parse_properties(properties, c)
    version = store.resolve_version(branch, as_of)
    row = store.get(featureId, branch, version)
    if row is None or row.get("type") != c.type:
        hint = ""
        if row is not None and row.get("type") in ogc.BY_TYPE:
            hint = f"; it is a {row['type']} in collection {ogc.BY_TYPE[row['type']].id!r}"
        raise ogc.OGCError(f"no item {featureId!r} in collection {c.id!r} on branch {branch!r} at version "
                           f"{version}{hint}", 404)
    geom = ogc.to_output_crs([row.get("geometry")], store, out_crs)[0]
    doc = ogc.item(row, geom, names)
    base = f"{_base(request)}/collections/{c.id}"
    doc["links"] = [ogc.link(str(request.url), "self", ogc.GEOJSON, "this feature"),
                    ogc.link(base, "collection", ogc.JSON, c.title),
                    ogc.link(f"{_base(request)}/entities/{featureId}/history", "version-history", ogc.JSON,
                             "every stored version of this entity")]
    return GeoJSONDoc(doc, headers={"Content-Crs": f"<{out_crs}>"})
