"""H3 layers over HTTP: list, describe, and query cell values as rows (JSON, CSV, Parquet, Arrow) or GeoJSON hexagons.

The encoders live in ``twin/products/formats.py`` (shared with the exports) and every parameter is parsed and
checked by ``twin/layers/registry.py``; this router only wires them up. Malformed parameters are 400s whose
``detail`` starts with the parameter's name (``bbox: …``, ``res: …``, ``bucket: …``, ``compare_as_of: …``).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from data_models import LayerSpec
from twin.api import public_forms
from twin.api.deps import get_store
from twin.layers.registry import LayerNotFound, Layers
from twin.products import formats
from twin.security.guard import GuardedStore
from twin.store import MAIN, Store

router = APIRouter(prefix="/layers", tags=["layers"])

# what these routes' errors mean; the ``{"detail": string}`` body (ErrorDetail) is added by twin/api/openapi.py
_ERRORS = {400: {"description": "Bad Request: a malformed parameter; `detail` starts with its name (`bbox: …`)"},
           404: {"description": "Not Found: an unknown layer, branch or version (compare_* ones named)"}}


def _layers(store: Store = Depends(get_store)) -> Layers:
    return Layers(store)


@router.get("", response_model=list[LayerSpec], responses=_ERRORS)
def list_layers(branch: str = MAIN, as_of: str | None = None, layers: Layers = Depends(_layers),
                store: GuardedStore = Depends(get_store)) -> list[LayerSpec]:
    """Every layer of a branch (as of a version or time): name, variable, unit, aggregation, resolutions, lineage;
    and the public forms of layers above the caller's clearance that declare one."""
    return sorted([*layers.list(branch, as_of), *public_forms.specs(store, branch, as_of)], key=lambda s: s.name)


@router.get("/{name}", response_model=LayerSpec, responses=_ERRORS)
def get_layer(name: str, branch: str = MAIN, as_of: str | None = None, layers: Layers = Depends(_layers),
              store: GuardedStore = Depends(get_store)) -> LayerSpec:
    """One layer's declaration (of its public form, for a caller below its classification)."""
    try:
        return layers.spec(name, branch, as_of)
    except LayerNotFound:
        if (found := public_forms.spec(store, name, branch, as_of)) is None:
            raise
        return found


_HEXAGONS = {"type": "object", "required": ["type", "features"], "properties": {
    "type": {"type": "string", "enum": ["FeatureCollection"]},
    "features": {"type": "array", "items": {"type": "object", "description": "one hexagon (Polygon) per row, the "
                                            "row's columns as properties"}}}}


@router.get("/{name}/cells", response_model=list[formats.CellRow], responses={
    200: {"description": "the rows in the requested format (JSON: an array of cell rows; GeoJSON: hexagons)",
          "content": {m: ({"schema": _HEXAGONS} if f == "geojson" else {})
                      for f, m in formats.MEDIA_TYPES.items() if f != "json"}},
    **_ERRORS})
def layer_cells(
    name: str,
    bbox: str | None = Query(None, description="west,south,east,north in WGS84 degrees"),
    polygon: str | None = Query(None, description="area as WKT or GeoJSON geometry, WGS84 lon/lat"),
    cells: str | None = Query(None, description="comma-separated H3 cells (hex strings)"),
    res: int | None = Query(None, ge=0, le=15, description="H3 resolution (default: the layer's finest)"),
    start: datetime | None = Query(None, description="first time (inclusive), ISO 8601"),
    end: datetime | None = Query(None, description="last time (exclusive), ISO 8601"),
    bucket: str | None = Query(None, description="re-aggregate to a longer time bucket, e.g. 1d"),
    branch: str = MAIN,
    as_of: str | None = None,
    compare_branch: str | None = Query(None, description="add the value on this branch and the difference"),
    compare_as_of: str | None = Query(None, description="add the value as of this version/time and the difference"),
    format: formats.Format = "json",
    layers: Layers = Depends(_layers),
    store: GuardedStore = Depends(get_store),
) -> Response:
    """Cell values of a layer in an area and time range, at a resolution; optionally compared with another state.
    A caller below the layer's classification gets its public form when it declares one."""
    where = {"bbox": bbox, "polygon": polygon or None, "cells": cells.split(",") if cells else None, "start": start,
             "end": end, "bucket": bucket, "branch": branch, "as_of": as_of}
    try:
        table = layers.query(name, res=res, compare_branch=compare_branch, compare_as_of=compare_as_of, **where)
    except LayerNotFound:
        table = public_forms.cells(store, name, res=res, compare=compare_branch is not None or
                                   compare_as_of is not None, **where)
        if table is None:
            raise
    out = formats.encode(table, format)
    return Response(out.body, media_type=out.media_type)
