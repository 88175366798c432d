"""XYZ tiles of the ingested satellite and aerial images, for the viewer base map and GIS clients.

``/imagery/{z}/{x}/{y}.png`` renders true colour (bands named red, green, blue; fixed reflectance stretch, see
``twin/tiles/imagery.py``) in Web Mercator, 256 px; the newest image by default, ``?asset=`` or ``?datetime=`` for
another. Tiles outside the image are a transparent PNG (200), so map clients never show broken tiles. Zooms below
the image's TileJSON ``minzoom`` are a 404 naming it (a tile there would read the whole image for a speck); the work
of every tile is bounded in ``twin/tiles/imagery.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi import Query as Q
from fastapi.responses import Response

from twin.api import conditional, ogc
from twin.api.deps import get_store
from twin.api.ogc import JSONDoc, OGCError
from twin.geo import crs as geocrs
from twin.store import MAIN, Store
from twin.tiles import imagery

router = APIRouter(prefix="/imagery", tags=["imagery"])

_ASSET = Q(None, description="imagery asset id (see /imagery); default: the newest image")
_DATETIME = Q(None, description="RFC 3339 instant: the newest image acquired at or before it")
_BRANCH = Q(MAIN, description="branch whose source catalog is used")
_AS_OF = Q(None, description="catalog version number or RFC 3339 time; default the latest")
# what these routes' errors mean; the ``{"detail": string}`` body (ErrorDetail) is added by twin/api/openapi.py
_ERRORS = {400: {"description": "Bad Request: a malformed parameter, named at the start of `detail`"},
           404: {"description": "Not Found: unknown asset, branch or version; no image at that time; a zoom below "
                                "the image's TileJSON minzoom or beyond 24; a tile outside the tile matrix"}}
_TILEJSON = {"type": "object", "required": ["tilejson", "tiles", "minzoom", "maxzoom", "bounds"],
             "properties": {"tilejson": {"type": "string"}, "name": {"type": "string"},
                            "tiles": {"type": "array", "items": {"type": "string"}},
                            "minzoom": {"type": "integer"}, "maxzoom": {"type": "integer"},
                            "bounds": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
                            "center": {"type": "array", "items": {"type": "number"}}}}


def _choose(store: Store, asset: str | None, datetime: str | None, branch: str, as_of: str | None) -> imagery.Image:
    """The image a request names (asset id, or the newest at ``datetime``); an unknown one is a 404."""
    at = None
    parsed = ogc.parse_datetime(datetime)
    if parsed is not None:
        if parsed[0] != parsed[1] or parsed[0] is None:
            raise OGCError(f"datetime: give one instant to pick an image, not an interval: {datetime!r}")
        at = parsed[0]
    return imagery.choose(store, asset, at, branch, store.resolve_version(branch, as_of))


def _tiles_url(request: Request, im: imagery.Image, branch: str) -> str:
    base = str(request.base_url).rstrip("/")
    extra = "" if branch == MAIN else f"&branch={branch}"
    return f"{base}/imagery/{{z}}/{{x}}/{{y}}.png?asset={im.id}{extra}"


@router.get("", response_class=JSONDoc, responses={
    200: {"content": {"application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
        "images": {"type": "array", "items": {"type": "object"}}, "stretch": {"type": "string"},
        "tilesize": {"type": "integer"}}}}}}, **_ERRORS})
def list_images(request: Request, branch: str = _BRANCH, as_of: str | None = _AS_OF,
                store: Store = Depends(get_store)) -> JSONDoc:
    """The imagery assets, newest first: acquisition time, bands, WGS84 bbox and the tile URL of each."""
    version = store.resolve_version(branch, as_of)
    renderable = {im.id: im for im in imagery.images(store, branch, version)}
    newest = next(iter(renderable), None)
    out = []
    for a in imagery.imagery_assets(store, branch, version):
        im = renderable.get(a["id"])
        props = a.get("properties") or {}
        out.append({
            "id": a["id"],
            "acquired": a.get("acquired"),
            "bands": props.get("bands"),
            "bbox_wgs84": (a.get("extent") or {}).get("bbox_wgs84"),
            "resolution": props.get("resolution"),
            "true_colour": im is not None,
            "default": a["id"] == newest,
            "tiles": _tiles_url(request, im, branch) if im else None,
            "tilejson": f"{str(request.base_url).rstrip('/')}/imagery/tilejson.json?asset={a['id']}" if im else None,
        })
    return JSONDoc({"images": out, "stretch": imagery.STRETCH, "tilesize": imagery.TILESIZE,
                    "outside_data": "transparent PNG tile (HTTP 200)"})


@router.get("/tilejson.json", response_class=JSONDoc,
            responses={200: {"content": {"application/json": {"schema": _TILEJSON}}, "description": "TileJSON 3.0"},
                       **_ERRORS})
def tilejson(request: Request, asset: str | None = _ASSET, datetime: str | None = _DATETIME,
             branch: str = _BRANCH, as_of: str | None = _AS_OF, store: Store = Depends(get_store)) -> JSONDoc:
    """TileJSON 3.0 of one image (default the newest): tile URL template, WGS84 bounds, zoom range, centre."""
    im = _choose(store, asset, datetime, branch, as_of)
    info = imagery.tile_info(im)
    w, s, e, n = info["bounds"]
    return JSONDoc({
        "tilejson": "3.0.0",
        "name": im.id,
        "description": f"true colour of {im.id} acquired {ogc.iso(im.acquired)}; {imagery.STRETCH}",
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [_tiles_url(request, im, branch)],
        "minzoom": info["minzoom"],
        "maxzoom": info["maxzoom"],
        "bounds": [w, s, e, n],
        "center": [(w + e) / 2, (s + n) / 2, info["minzoom"]],
    })


def _area_mercator(store: Any) -> Any:
    """The reader's area limit in Web Mercator metres (None: no limit): pixels outside it are transparent."""
    area = getattr(store, "area", None)
    return None if area is None else geocrs.reproject(area, store.crs, "EPSG:3857")


@router.get("/{z}/{x}/{y}.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}, "description": "PNG tile (transparent outside the image)"},
                       304: {"description": "not modified (If-None-Match)"}, **_ERRORS})
def tile(request: Request, z: int, x: int, y: int, asset: str | None = _ASSET, datetime: str | None = _DATETIME,
         branch: str = _BRANCH, as_of: str | None = _AS_OF, store: Store = Depends(get_store)) -> Response:
    """One 256 px Web Mercator tile of an image, from its TileJSON minzoom to zoom 24 (over-zoomed beyond the native
    maxzoom); ETag + Cache-Control, 304 on a matching If-None-Match."""
    if not 0 <= z <= imagery.MAX_ZOOM:
        raise OGCError(f"z: zoom must be between 0 and {imagery.MAX_ZOOM}, got {z}", 404)
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise OGCError(f"tile {z}/{x}/{y} does not exist: x and y must lie in 0..{n - 1} at zoom {z}", 404)
    im = _choose(store, asset, datetime, branch, as_of)
    imagery.require_zoom(im, z)

    area = _area_mercator(store)

    def png() -> bytes:
        out = imagery.render_tile(im, z, x, y, area)
        return out if out is not None else imagery.transparent_png()

    tag = imagery.etag(im, z, x, y)
    if area is not None:  # an area-limited reader's tiles are its own
        tag = f'{tag[:-1]}-{store.view}"'
    return conditional.respond(request, tag,
                               {"Cache-Control": "public, max-age=86400" if asset else "public, max-age=60"},
                               "image/png", png)
