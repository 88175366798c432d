"""Simulation runs over HTTP: the recorded runs, their per-entity result tables and the comparison of two runs.

Runs are made by OGC API Processes (``/processes``) or ``twin sim run``; these routes only read what the engine
(:mod:`twin.sim.engine`) recorded. A result table is JSON rows, CSV, Parquet, or GeoJSON with each entity's footprint
(what the viewer colours buildings by and what QGIS opens).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response

from data_models import SimulationRun
from twin.api.deps import get_store
from twin.products import formats
from twin.sim import engine
from twin.store import Store

router = APIRouter(prefix="/runs", tags=["simulation runs"])

_ERRORS = {404: {"description": "Not Found: an unknown run, or a table the run did not write"},
           400: {"description": "Bad Request: a malformed parameter, named in `detail`"}}
TableFormat = Literal["json", "csv", "parquet", "geojson"]
_ROWS = {"type": "array", "items": {"type": "object", "description": "one row: entity_id, run_id and the values"}}
_FC = {"type": "object", "required": ["type", "features"],
       "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]}, "features": {"type": "array"}}}


@router.get("", response_model=list[SimulationRun], responses=_ERRORS)
def list_runs(branch: str | None = None, simulator: str | None = None,
              limit: int = Query(100, ge=1, le=10_000), store: Store = Depends(get_store)) -> list[SimulationRun]:
    """Recorded runs, newest first (of every branch, or those a branch sees)."""
    return engine.runs(store, branch, simulator)[:limit]


@router.get("/{run_id}", response_model=SimulationRun, responses=_ERRORS)
def get_run(run_id: str, store: Store = Depends(get_store)) -> SimulationRun:
    """One run: branch, version, parameters, code version, timings, outputs, status, error, summary."""
    return engine.find_run(store, run_id)[0]


def _json_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]


def encode_rows(table: pa.Table, f: str, features: dict[str, dict[str, Any]] | None = None) -> Response:
    """A result or comparison table as JSON rows, CSV, Parquet or GeoJSON (entities' geometries from ``features``)."""
    if f == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        return Response(buf.getvalue(), media_type=formats.CSV)
    if f == "parquet":
        out = formats.to_parquet(table)
        return Response(out.body, media_type=out.media_type)
    rows = _json_safe(table.to_pylist())
    if f == "geojson":
        feats = [{"type": "Feature", "id": r.get("entity_id"), "properties": r,
                  "geometry": (features or {}).get(r.get("entity_id"), {}).get("geometry")} for r in rows]
        return Response(json.dumps({"type": "FeatureCollection", "features": feats}, default=str),
                        media_type=formats.GEOJSON)
    return Response(json.dumps(rows, default=str), media_type=formats.JSON)


def _footprints(store: Store, branch: str, version: int, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Footprints in WGS84 of the entities ``ids`` at a state (GeoJSON is lon/lat)."""
    import shapely

    from twin.geo.crs import reproject
    from twin.store import Query as StoreQuery

    found = store.features(branch, version, StoreQuery(ids=ids))
    if not found:
        return {}
    geoms = reproject(np.asarray([shapely.geometry.shape(e["geometry"]) for e in found], dtype=object), store.crs,
                      "EPSG:4326")
    return {e["id"]: {"geometry": shapely.geometry.mapping(g)} for e, g in zip(found, geoms, strict=True)}


@router.get("/{run_id}/tables/{name}", response_model=list[dict[str, Any]], responses={
    200: {"description": "the rows: JSON array, CSV, Parquet, or GeoJSON with the entities' footprints (WGS84)",
          "content": {formats.CSV: {}, formats.PARQUET: {}, formats.GEOJSON: {"schema": _FC}}}, **_ERRORS})
def run_table(run_id: str, name: str, f: TableFormat = Query("json", description="json, csv, parquet or geojson"),
              entity_id: str | None = Query(None, description="only the rows of this entity"),
              store: Store = Depends(get_store)) -> Response:
    """A per-entity result table of a run (rows keyed by run id and entity id)."""
    run, branch, version = engine.find_run(store, run_id)
    t = engine.result_table(store, run, name)
    if entity_id is not None:
        t = t.filter(pc.equal(t["entity_id"], entity_id))
    feats = _footprints(store, run.branch, run.version, t["entity_id"].unique().to_pylist()) if f == "geojson" else None
    return encode_rows(t, f, feats)


COG = "image/tiff; application=geotiff; profile=cloud-optimized"


@router.get("/{run_id}/files/{name}", response_class=FileResponse, responses={
    200: {"description": "the file (a Cloud-Optimized GeoTIFF for rasters)", "content": {COG: {}}}, **_ERRORS})
def run_file(run_id: str, name: str, store: Store = Depends(get_store)) -> FileResponse:
    """A file a run wrote, e.g. sunlight's ``ground-hours`` raster (opens in QGIS / GDAL as it is)."""
    run = engine.find_run(store, run_id)[0]
    path, _ = engine.result_file(store, run, name)
    return FileResponse(path, media_type=COG if path.suffix.lower() in (".tif", ".tiff") else None,
                        filename=f"{run.id}-{path.name}")


@router.get("/{run_id}/compare/{other_id}", responses={
    200: {"description": "per result table the entities that differ (b - a) and per layer the cells "
                         "(value on b, other = value on a, difference)",
          "content": {"application/json": {"schema": {"type": "object", "properties": {
              "totals": {"type": "object", "description": "the summaries' numbers: a, b and diff (b - a)",
                         "additionalProperties": {"type": "object", "properties": {
                             "a": {"type": "number"}, "b": {"type": "number"}, "diff": {"type": "number"}}}},
              "entities": {"type": "object", "additionalProperties": _ROWS},
              "cells": {"type": "object", "additionalProperties": _ROWS}}}}}}, **_ERRORS})
def compare_runs(run_id: str, other_id: str, all_rows: bool = Query(False, description="also the unchanged rows"),
                 store: Store = Depends(get_store)) -> Response:
    """Per-entity and per-cell differences of run ``other_id`` against run ``run_id``."""
    c = engine.compare(store, run_id, other_id)
    body = {"run_a": c.run_a.id, "run_b": c.run_b.id, "totals": {k: _json_safe([v])[0] for k, v in c.totals.items()},
            "entities": {k: _json_safe((t if all_rows else engine.changed_only(t)).to_pylist())
                         for k, t in c.entities.items()},
            "cells": {k: _json_safe(t.to_pylist()) for k, t in c.cells.items()}}
    return Response(json.dumps(body, default=str), media_type=formats.JSON)
