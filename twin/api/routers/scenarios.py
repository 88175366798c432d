"""Scenarios over HTTP: list, create, read, add and remove edits, and diff a scenario with its base.

The routes only wire requests to :mod:`twin.pipeline.scenarios` / :mod:`twin.sim.scenarios`: bodies are validated by
their pydantic models before anything touches the store, and every fault is a :class:`twin.errors.TwinError` turned
into its answer by the app (400 bad input, 404 unknown scenario / branch / version / edit / entity / layer, 409 an id
that exists or an edit clashing with the branch). Writes do not build tiles: the tile routes build the scenario
branch's tileset on its first request, re-encoding only the tiles of changed buildings.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from fastapi import Path as P
from pydantic import BaseModel, ConfigDict, Field

from data_models import Scenario, ScenarioEdit
from twin.api.deps import get_store
from twin.api.ogc import GEOJSON, JSON, GeoJSONDoc, JSONDoc
from twin.config import get_settings
from twin.pipeline import scenarios as pipeline
from twin.sim import scenarios as sim
from twin.store import MAIN, Store

router = APIRouter(prefix="/scenarios", tags=["scenarios"])

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}}
_400 = {400: {"description": "Bad Request: a malformed body or parameter; `detail` names it", "content": _ERROR}}
_404 = {404: {"description": "Not Found: an unknown scenario, base branch or version, edit, entity or layer",
              "content": _ERROR}}
_409 = {409: {"description": "Conflict: the scenario id exists, or the edit clashes with the branch (an id that "
                             "exists, a building already removed, a road already closed)", "content": _ERROR}}
_ID = P(description="scenario id", examples=["new-tower"], max_length=64)


class ScenarioCreate(BaseModel):
    """A new scenario: its name, and the branch and version it forks from."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"\S", examples=["New tower"])
    base_branch: str = Field(MAIN, min_length=1, max_length=64, description="branch to fork from")
    base_version: int | None = Field(None, ge=0, le=2**63 - 1, description="version of the base (default its head)")
    id: str | None = Field(None, pattern=sim.ID_PATTERN, description="scenario id (default: made from the name)")
    description: str = Field("", max_length=10_000)


class FieldChange(BaseModel):
    """A scalar field's value on the base and on the scenario."""

    base: Any = None
    scenario: Any = None


class EntityChange(BaseModel):
    """A city object the scenario added, removed or changed (the changed fields; old/new of scalar ones)."""

    id: str
    type: str
    change: Literal["added", "removed", "changed"]
    fields: list[str]
    changes: dict[str, FieldChange]


class CellChange(BaseModel):
    """A layer cell whose value differs: base, scenario and difference (scenario - base)."""

    layer: str
    cell: str = Field(description="H3 cell index as a hex string")
    res: int
    t: str | None = None
    base: float | None = None
    scenario: float | None = None
    difference: float | None = None


class ScenarioDiffDoc(BaseModel):
    """A scenario against its base version."""

    scenario: str
    branch: str
    base_branch: str
    base_version: int | None
    entities: list[EntityChange]
    cells: list[CellChange]


@router.get("", response_model=list[Scenario])
def list_scenarios(store: Store = Depends(get_store)) -> list[Scenario]:
    """Every scenario of the store, by id."""
    return sim.list_scenarios(store)


@router.post("", status_code=201, response_model=Scenario, responses={**_400, **_404, **_409})
def create_scenario(response: Response, body: ScenarioCreate = Body(...),
                    store: Store = Depends(get_store)) -> Scenario:
    """Fork a scenario from a base branch at a version; 201 with its Location."""
    change = pipeline.create(store, body.name, base_branch=body.base_branch, base_version=body.base_version,
                             scenario_id=body.id, description=body.description, author=get_settings().author)
    response.headers["Location"] = f"/scenarios/{change.scenario.id}"
    return change.scenario


@router.get("/{scenario_id}", response_model=Scenario, responses=_404)
def get_scenario(scenario_id: str = _ID, store: Store = Depends(get_store)) -> Scenario:
    """One scenario: base, branch and edits in order."""
    return sim.get(store, scenario_id)


@router.post("/{scenario_id}/edits", status_code=201, response_model=Scenario, responses={**_400, **_404, **_409})
def add_edit(scenario_id: str = _ID, edit: ScenarioEdit = Body(..., description="one edit, by its kind"),
             store: Store = Depends(get_store)) -> Scenario:
    """Add an edit (applied with its derived data in one commit); the scenario with its edits."""
    return pipeline.edit(store, scenario_id, edit, author=get_settings().author).scenario


@router.delete("/{scenario_id}/edits/{index}", response_model=Scenario, responses={**_404, **_409})
def remove_edit(scenario_id: str = _ID, index: int = P(ge=0, le=1_000_000, description="edit position, 0 = first"),
                store: Store = Depends(get_store)) -> Scenario:
    """Remove an edit: the scenario is replayed from its base without it."""
    return pipeline.remove_edit(store, scenario_id, index, author=get_settings().author).scenario


_FORMATS = {"json": JSON, "geojson": GEOJSON, "csv": "text/csv"}
_FC = {"type": "object", "required": ["type", "features"], "properties": {
    "type": {"type": "string", "enum": ["FeatureCollection"]},
    "features": {"type": "array", "items": {"type": "object"}}}}


@router.get("/{scenario_id}/diff", response_model=ScenarioDiffDoc, responses={
    200: {"description": "the diff (JSON), changed objects and cells as GeoJSON, or one CSV",
          "content": {GEOJSON: {"schema": _FC}, "text/csv": {"schema": {"type": "string"}}}}, **_404})
def scenario_diff(scenario_id: str = _ID,
                  layer: list[str] | None = Query(None, description="layers to compare (default the building and "
                                                                    "land-cover layers)"),
                  f: Literal["json", "geojson", "csv"] = Query("json", description="output format"),
                  store: Store = Depends(get_store)) -> Response:
    """The scenario against its base: city objects added / removed / changed, and changed layer cells."""
    d = sim.diff(store, scenario_id, layer or None)
    if f == "csv":
        return Response(d.to_csv(), media_type=_FORMATS["csv"])
    if f == "geojson":
        return GeoJSONDoc(d.to_geojson())
    return JSONDoc(d.to_json())
