"""H3 layers over HTTP: list, describe, and query cell values as rows (JSON, CSV, Parquet, Arrow) or GeoJSON hexagons.

The encoders live in ``twin/products/formats.py`` (shared with the exports); this router only wires them up.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from data_models import LayerSpec
from twin.api.deps import get_store
from twin.layers.registry import LayerError, Layers
from twin.products import formats
from twin.store import MAIN, Store

router = APIRouter(prefix="/layers", tags=["layers"])


def _layers(store: Store = Depends(get_store)) -> Layers:
    return Layers(store)


@router.get("", response_model=list[LayerSpec])
def list_layers(branch: str = MAIN, as_of: str | None = None, layers: Layers = Depends(_layers)) -> list[LayerSpec]:
    """Every layer of a branch (as of a version or time): name, variable, unit, aggregation, resolutions, lineage."""
    return layers.list(branch, as_of)


@router.get("/{name}", response_model=LayerSpec)
def get_layer(name: str, branch: str = MAIN, as_of: str | None = None, layers: Layers = Depends(_layers)) -> LayerSpec:
    """One layer's declaration."""
    return layers.spec(name, branch, as_of)


def _floats(s: str | None, what: str, n: int | None = None) -> list[float] | None:
    if s is None:
        return None
    try:
        out = [float(v) for v in s.split(",")]
    except ValueError:
        raise LayerError(f"{what} must be comma-separated numbers, got {s!r}") from None
    if n is not None and len(out) != n:
        raise LayerError(f"{what} needs {n} numbers, got {len(out)}")
    return out


@router.get("/{name}/cells", responses={200: {"content": {m: {} for m in formats.MEDIA_TYPES.values()}}})
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
) -> Response:
    """Cell values of a layer in an area and time range, at a resolution; optionally compared with another state."""
    table = layers.query(
        name, bbox=_floats(bbox, "bbox", 4), polygon=_polygon(polygon), cells=cells.split(",") if cells else None,
        res=res, start=start,
        end=end, bucket=bucket, branch=branch, as_of=as_of, compare_branch=compare_branch,
        compare_as_of=compare_as_of,
    )
    out = formats.encode(table, format)
    return Response(out.body, media_type=out.media_type)


def _polygon(text: str | None):
    """A WGS84 polygon from WKT or a GeoJSON geometry string."""
    import json

    import shapely

    if not text:
        return None
    try:
        return shapely.from_geojson(text) if text.lstrip().startswith("{") else shapely.from_wkt(text)
    except (shapely.errors.GEOSException, ValueError, json.JSONDecodeError) as exc:
        raise LayerError(f"polygon is neither WKT nor GeoJSON: {exc}") from None
