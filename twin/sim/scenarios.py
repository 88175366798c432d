"""Scenarios: what-if branches forked from a base version, holding a list of edits, diffed against their base.

A scenario ``S`` is the branch ``scenario-S`` forked from ``base_branch`` at ``base_version``; its
:class:`~data_models.Scenario` record (collection ``scenarios``) lives on that branch and is rewritten in the same
commit as each edit, so an edit and the record listing it are one version. Each edit is validated and applied to the
branch state before anything is written; one commit then holds the changed city objects, their derived data and the
record. A failed edit leaves the store as it was.

Derived data follow each edit incrementally: an added or modified building gets LoD1.2 / 1.3 solids (and 2.2 with a
roof type) from its footprint and height (:mod:`twin.reality3d.footprint_solids`), standing on
``attributes.ground_z``, else the DTM product under it, else 0; the layers of buildings and land cover
(:mod:`twin.layers.buildings`) are recomputed for the cells the old and new geometries overlap, merged into the
stored values and rolled up. Removing an edit replays the remaining ones from the base and commits the difference,
so removing every edit gives back the base state exactly.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pydantic import BaseModel, ValidationError
from shapely.geometry import MultiPolygon, Polygon, mapping, shape

from data_models import (
    AddBuilding,
    Building,
    ChangeLandCover,
    CloseRoad,
    LandCover,
    ModifyBuilding,
    RemoveBuilding,
    RoofType,
    Scenario,
    parse_city_object,
    parse_edit,
)
from twin.errors import BadInput, Conflict, NotFound, TwinError
from twin.geo.crs import reproject
from twin.layers import buildings as blayers
from twin.layers.polygons import cell_polygons
from twin.layers.registry import TABLE, Layers
from twin.layers.values import VALUE_SCHEMA
from twin.reality3d.footprint_solids import footprint_solids
from twin.store import ASSETS, CITY, MAIN, SCENARIOS, Query, Store

BRANCH_PREFIX = "scenario-"
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,54}$"
_ID_RE = re.compile(ID_PATTERN)
DTM_ASSET = "prd-dtm"
SCALAR_FIELDS = ("height", "storeys", "use", "roof_type", "closed", "cover_class", "name", "valid_from", "valid_to")
MAX_AREA_M2 = 1e8  # 100 km²: an edit's area at most (its cells are recomputed at resolution 11, ~2,000 m² each)
MAX_OUTLINE_M = 1e5  # an edit's outline at most, metres
MAX_HEIGHT_M = 1000.0
BUILDING_KINDS = ("add_building", "remove_building", "modify_building")
COVER_KINDS = ("change_land_cover",)

__all__ = ["BRANCH_PREFIX", "ID_PATTERN", "ScenarioDiff", "UnknownScenario", "add_edit", "branch_of", "create",
           "diff", "get", "list_scenarios", "remove_edit"]


class UnknownScenario(NotFound):
    """No scenario of that id is in the store."""


def branch_of(scenario_id: str) -> str:
    """The branch holding a scenario: ``scenario-<id>``."""
    return BRANCH_PREFIX + scenario_id


def _slug(name: str) -> str:
    """A scenario id made from a name: lowercase letters and digits joined by '-', at most 40 characters."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return s or "scenario"


def _bad(what: str, exc: ValidationError) -> BadInput:
    """A BadInput naming ``what`` and each field pydantic refused."""
    msgs = [f"{'.'.join(str(p) for p in e['loc']) or what}: {e['msg']}" for e in exc.errors()]
    return BadInput(f"{what}: {'; '.join(msgs)}")


# ---------------------------------------------------------------------------------------------------- records
def create(store: Store, name: str, *, base_branch: str = MAIN, base_version: int | str | None = None,
           scenario_id: str | None = None, description: str = "", author: str = "twin") -> Scenario:
    """Fork a scenario from ``base_branch`` at ``base_version`` (default its head) and commit its empty record; when
    that commit fails the fork is dropped again, so no branch is left behind."""
    if not isinstance(name, str) or not name.strip():
        raise BadInput("name: a scenario needs a non-empty name")
    if scenario_id is not None and not _ID_RE.match(scenario_id):
        raise BadInput(f"id: bad scenario id {scenario_id!r}: use lowercase letters, digits, '-' or '_' "
                       "(at most 55, starting with a letter or digit)")
    store.branch(base_branch)  # unknown: NotFound naming it
    version = store.resolve_version(base_branch, base_version)
    taken = {b.name for b in store.branches()}
    if scenario_id is None:
        stem, n = _slug(name), 1
        scenario_id = stem
        while branch_of(scenario_id) in taken:
            n += 1
            scenario_id = f"{stem}-{n}"
    elif branch_of(scenario_id) in taken:
        raise Conflict(f"scenario {scenario_id!r} exists already (branch {branch_of(scenario_id)!r})")
    try:
        record = Scenario(id=scenario_id, name=name.strip(), description=description, base_branch=base_branch,
                          base_version=version or None, branch=branch_of(scenario_id), author=author)
    except ValidationError as exc:
        raise _bad("scenario", exc) from None
    store.create_branch(record.branch, base_branch, at=version, author=author, description=f"scenario {name}")
    try:
        store.commit([record], message=f"scenario {scenario_id}: create", author=author, branch=record.branch)
    except BaseException:
        with contextlib.suppress(Exception):
            store.drop_branch(record.branch)
        raise
    return record


def _record(row: dict[str, Any]) -> Scenario:
    """A stored scenario row back to its model."""
    return Scenario.model_validate({k: v for k, v in row.items() if k not in ("_store", "classification")})


def list_scenarios(store: Store) -> list[Scenario]:
    """Every scenario of the store, by id."""
    out = []
    for b in store.branches():
        if b.name.startswith(BRANCH_PREFIX):
            sid = b.name[len(BRANCH_PREFIX):]
            out += [_record(r) for r in store.features(b.name, query=Query(collection=SCENARIOS, ids=[sid]))]
    return sorted(out, key=lambda s: s.id)


def get(store: Store, scenario_id: str) -> Scenario:
    """One scenario by id; an :class:`UnknownScenario` (404) naming it and the known ids otherwise."""
    if isinstance(scenario_id, str) and _ID_RE.match(scenario_id) and \
            any(b.name == branch_of(scenario_id) for b in store.branches()):
        rows = store.features(branch_of(scenario_id), query=Query(collection=SCENARIOS, ids=[scenario_id]))
        if rows:
            return _record(rows[0])
    known = ", ".join(s.id for s in list_scenarios(store)) or "none"
    raise UnknownScenario(f"unknown scenario {str(scenario_id)[:80]!r}; scenarios: {known}")


# ---------------------------------------------------------------------------------------------------- state
def _clean(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A store feature as a model dict (no ``_store`` metadata)."""
    if row is None:
        return None
    return {k: v for k, v in row.items() if k != "_store"}


class _State:
    """A branch's city objects and layers as of one version, with the pending edits layered over them."""

    def __init__(self, store: Store, branch: str, version: int) -> None:
        self.store, self.branch, self.version, self.crs = store, branch, version, store.crs
        self.over: dict[str, dict[str, Any] | None] = {}  # id -> entity dict, or None once removed
        self.layers: dict[str, pa.Table] = {}  # layer name -> finest values, once an edit changed them
        self.specs = {s.name: s for s in Layers(store).list(branch, version)} if version else {}
        self._dtm: Any = False  # False: not looked up yet; None: no DTM

    def get(self, eid: str) -> dict[str, Any] | None:
        """The entity as the edits so far left it (None: absent or removed)."""
        if eid in self.over:
            return self.over[eid]
        return _clean(self.store.get(eid, self.branch, self.version)) if self.version else None

    def many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The present entities among ``ids`` (one store read for those no edit touched)."""
        ids = sorted(set(ids))
        out = {i: self.over[i] for i in ids if i in self.over and self.over[i] is not None}
        rest = [i for i in ids if i not in self.over]
        if rest and self.version:
            for r in self.store.features(self.branch, self.version, Query(ids=rest)):
                out[r["id"]] = _clean(r)
        return out  # type: ignore[return-value]

    def within(self, area: shapely.Geometry, types: list[str]) -> list[dict[str, Any]]:
        """The present entities of ``types`` whose geometry meets ``area`` (store CRS), by id."""
        found: dict[str, dict[str, Any]] = {}
        if self.version:
            for r in self.store.features(self.branch, self.version, Query(polygon=area, types=types)):
                if r["id"] not in self.over:
                    found[r["id"]] = _clean(r)  # type: ignore[assignment]
        for eid, e in self.over.items():
            if e is not None and e["type"] in types and shape(e["geometry"]).intersects(area):
                found[eid] = e
        return [found[k] for k in sorted(found)]

    def parts(self, parent: str) -> list[str]:
        """Ids of the present BuildingParts of a building."""
        ids = set()
        if self.version:
            rows = self.store.features(self.branch, self.version,
                                       Query(types=["BuildingPart"], where={"parent_id": parent}))
            ids = {r["id"] for r in rows if r["id"] not in self.over}
        ids |= {k for k, e in self.over.items() if e is not None and e.get("parent_id") == parent}
        return sorted(ids)

    def finest(self, name: str) -> pa.Table:
        """A layer's values at its finest resolution as the edits so far left them."""
        if name in self.layers:
            return self.layers[name]
        if self.store.table_sql(TABLE, self.branch, self.version) is None:
            return VALUE_SCHEMA.empty_table()
        res = max(self.specs[name].resolutions)
        t = self.store.read_table(TABLE, self.branch, self.version, where="asset_id = ? AND res = ?",
                                  params=[name, res], columns="cell, res, t, value, count, weight")
        return t.select(VALUE_SCHEMA.names).cast(VALUE_SCHEMA)

    def ground(self, footprint: shapely.Geometry) -> tuple[float, str] | None:
        """The lowest DTM height under a footprint (vertices and an inner point) and the asset, None without one."""
        if self._dtm is False:
            self._dtm = self.store.get(DTM_ASSET, self.branch, self.version, collection=ASSETS) \
                if self.version else None
        if self._dtm is None:
            return None
        import rasterio

        from twin.geo.crs import transform_xy

        pts = np.asarray(shapely.get_coordinates(shapely.segmentize(footprint.boundary, 2.0)))
        pts = np.vstack([pts, np.asarray(footprint.representative_point().coords)])
        with rasterio.open(self.store.asset_path(self._dtm)) as ds:
            x, y = pts[:, 0], pts[:, 1]
            if ds.crs is not None:
                x, y = transform_xy(x, y, self.crs, ds.crs.to_string())
            z = np.asarray([v[0] for v in ds.sample(zip(x, y, strict=True), masked=True)], dtype=object)
        vals = np.asarray([float(v) for v in z if v is not np.ma.masked and np.isfinite(float(v))])
        return (float(vals.min()), DTM_ASSET) if len(vals) else None


# ---------------------------------------------------------------------------------------------------- edits
def _parse(edit: Any) -> Any:
    """An edit model from a dict or model, validated; a BadInput naming the bad fields otherwise."""
    if isinstance(edit, BaseModel):
        edit = edit.model_dump(mode="json")
    if not isinstance(edit, dict):
        raise BadInput(f"edit: must be an object with a 'kind', got {type(edit).__name__}")
    try:
        return parse_edit(edit)
    except ValidationError as exc:
        raise _bad(f"edit {edit.get('kind', '?')}", exc) from None


def _geom(e: dict[str, Any]) -> shapely.Geometry:
    """An entity's geometry as shapely."""
    return shape(e["geometry"])


def _area(geometry: Any, what: str) -> shapely.Geometry:
    """A valid, non-empty polygon (store CRS) of an edit; a BadInput naming ``what`` otherwise."""
    g = geometry.to_shapely() if hasattr(geometry, "to_shapely") else shape(geometry)
    if not g.is_valid:
        raise BadInput(f"{what}: the geometry is invalid: {shapely.is_valid_reason(g)}")
    if g.is_empty or not g.area > 0:
        raise BadInput(f"{what}: the geometry has no area")
    if g.area > MAX_AREA_M2 or g.length > MAX_OUTLINE_M:
        raise BadInput(f"{what}: the area is too large ({g.area:.3g} m², outline {g.length:.3g} m; at most "
                       f"{MAX_AREA_M2:.0e} m² and {MAX_OUTLINE_M:.0e} m)")
    return g


def _solids(state: _State, b: dict[str, Any], only22: bool = False) -> dict[str, Any]:
    """The building with LoD solids from its footprint, height and roof type (all, or only LoD2.2)."""
    fp = _area(b["geometry"], f"building {b['id']}")
    if b.get("height") is not None and b["height"] > MAX_HEIGHT_M:
        raise BadInput(f"building {b['id']}: height {b['height']} m is above {MAX_HEIGHT_M:.0f} m")
    ground = (b.get("attributes") or {}).get("ground_z")
    if isinstance(ground, int | float) and not isinstance(ground, bool) and np.isfinite(ground):
        base, source = float(ground), "attributes.ground_z"
    else:
        found = state.ground(fp)
        base, source = found if found is not None else (0.0, "default")
    roof = b.get("roof_type") or RoofType.unknown
    made = footprint_solids(fp, b.get("height"), base, roof)
    lods = dict(b.get("lods") or {})
    for k in ("2.2",) if only22 else ("1.2", "1.3", "2.2"):
        lods.pop(k, None)
    lods.update({k: s.model_dump(mode="json") for k, s in made.lods.items() if not only22 or k == "2.2"})
    q = {k: v for k, v in (b.get("quality") or {}).items() if k not in ("rmse", "flags", "errors", "valid")}
    q.update({"flags": sorted({"lod_from_footprint_height", *made.flags}), "errors": [], "base_z": base,
              "base_z_source": source})
    return {**b, "lods": lods, "quality": q}


def _missing(state: _State, sc: Scenario, eid: str, what: str) -> TwinError:
    """Conflict when an edit names an entity the scenario removed already, NotFound when it never existed."""
    if sc.base_version and state.store.get(eid, sc.base_branch, sc.base_version) is not None:
        return Conflict(f"{what}: {eid!r} is already removed in scenario {sc.id!r}")
    return NotFound(f"{what}: no {eid!r} on branch {sc.branch!r} (nor on its base {sc.base_branch!r})")


def _existing(state: _State, sc: Scenario, eid: str, type_: str, what: str) -> dict[str, Any]:
    """The present entity ``eid`` of type ``type_``; NotFound / Conflict / BadInput naming it otherwise."""
    e = state.get(eid)
    if e is None:
        raise _missing(state, sc, eid, what)
    if e["type"] != type_:
        raise BadInput(f"{what}: {eid!r} is a {e['type']}, not a {type_}")
    return e


def _update_buildings(state: _State, geoms: list[shapely.Geometry | None]) -> None:
    """Recompute the building layers in the cells the geometries overlap, from every building there."""
    names = [n for n in blayers.BUILDING_LAYERS if n in state.specs]
    cells = blayers.touched_cells(geoms, state.crs) if names else np.empty(0, np.uint64)
    if not len(cells):
        return
    region = shapely.union_all(cell_polygons(cells, state.crs))
    standing = [b for b in state.within(region, ["Building"]) if blayers.is_standing(b)]
    g = np.asarray([_geom(b) for b in standing], dtype=object)
    h = np.asarray([float(b["height"]) for b in standing], np.float64)
    resid = np.asarray([blayers.is_residential(b) for b in standing], bool)
    for name in names:
        if name == blayers.VOLUME:
            new = blayers.volume_values(g, h, state.crs, cells=cells)
        else:
            new = blayers.population_values(g, h, resid, state.crs, cells=cells)
        state.layers[name] = blayers.merge_cells(state.finest(name), new, cells)


def _update_cover(state: _State, areas: list[shapely.Geometry]) -> None:
    """Recompute the land-cover layers in the cells the areas overlap, from every land cover there."""
    if blayers.IMPERVIOUS not in state.specs:
        return
    cells = blayers.touched_cells(areas, state.crs)
    if not len(cells):
        return
    region = shapely.union_all(cell_polygons(cells, state.crs))
    covers = state.within(region, ["LandCover"])
    g = np.asarray([_geom(c) for c in covers], dtype=object)
    new = blayers.impervious_values(g, [c["cover_class"] for c in covers], state.crs, cells=cells, domain=cells)
    state.layers[blayers.IMPERVIOUS] = blayers.merge_cells(state.finest(blayers.IMPERVIOUS), new, cells)


def _polygonal(g: shapely.Geometry) -> shapely.Geometry | None:
    """The polygon parts of a geometry with an area (a Polygon or MultiPolygon), None when none is left."""
    parts = [p for p in shapely.get_parts(g) if isinstance(p, Polygon) and p.area > 1e-6]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _apply(state: _State, sc: Scenario, edit: Any) -> None:
    """Apply one validated edit to the state, with its derived data; raises before any change when it cannot."""
    if isinstance(edit, AddBuilding):
        b = edit.building.model_dump(mode="json")
        if state.get(b["id"]) is not None:
            raise Conflict(f"add_building: {b['id']!r} exists already on branch {sc.branch!r}")
        b = _solids(state, b)
        state.over[b["id"]] = b
        _update_buildings(state, [_geom(b)])
    elif isinstance(edit, RemoveBuilding):
        b = _existing(state, sc, edit.building_id, "Building", "remove_building")
        for part in state.parts(b["id"]):
            state.over[part] = None
        state.over[b["id"]] = None
        _update_buildings(state, [_geom(b)])
    elif isinstance(edit, ModifyBuilding):
        b = _existing(state, sc, edit.building_id, "Building", "modify_building")
        try:
            new = edit.apply(Building.model_validate(b)).model_dump(mode="json")
        except (ValidationError, ValueError) as exc:
            raise BadInput(f"modify_building: {edit.building_id!r}: {exc}") from None
        shape_changed = edit.geometry is not None or edit.height is not None or "ground_z" in edit.attributes
        if shape_changed or not new.get("lods"):
            new = _solids(state, new)
            for part in state.parts(b["id"]) if shape_changed else []:
                state.over[part] = None
        elif edit.roof_type is not None:
            new = _solids(state, new, only22=True)
        state.over[b["id"]] = new
        if shape_changed or edit.use is not None or edit.attributes:
            _update_buildings(state, [_geom(b), _geom(new)])
    elif isinstance(edit, CloseRoad):
        r = _existing(state, sc, edit.road_id, "Road", "close_road")
        if r.get("closed"):
            raise Conflict(f"close_road: road {edit.road_id!r} is closed already")
        state.over[r["id"]] = {**r, "closed": True, "attributes": {**(r.get("attributes") or {}), "closed": True}}
    elif isinstance(edit, ChangeLandCover):
        area = _area(edit.geometry, "change_land_cover")
        for c in state.within(area, ["LandCover"]):
            rest = _polygonal(shapely.difference(shapely.make_valid(_geom(c)), area))
            state.over[c["id"]] = None if rest is None else {**c, "geometry": mapping(rest)}
        key = hashlib.blake2b(json.dumps(edit.model_dump(mode="json"), sort_keys=True).encode(), digest_size=4)
        stem = new_id = f"lc-{sc.id}-{key.hexdigest()}"  # stable across replays, whatever the edit's position
        n = 1
        while state.get(new_id) is not None:
            n += 1
            new_id = f"{stem}-{n}"
        lc = LandCover(id=new_id, geometry=mapping(area), cover_class=edit.new_class,
                       attributes={"scenario": sc.id})
        state.over[new_id] = lc.model_dump(mode="json")
        _update_cover(state, [area])
    # rainfall_event, demand_change: recorded in the scenario only; the simulators read them


def _safe_apply(state: _State, sc: Scenario, edit: Any) -> None:
    """:func:`_apply`, with geometry or projection failures of bad input reported as a BadInput naming the edit."""
    try:
        _apply(state, sc, edit)
    except TwinError:
        raise
    except (ValueError, shapely.errors.GEOSException) as exc:
        raise BadInput(f"{edit.kind}: cannot apply the edit: {exc}") from None


def _dirty_layers(edits: Iterable[Any]) -> set[str]:
    """The derived layers that edits of these kinds change."""
    out: set[str] = set()
    for e in edits:
        if e.kind in BUILDING_KINDS:
            out |= set(blayers.BUILDING_LAYERS)
        elif e.kind in COVER_KINDS:
            out |= set(blayers.COVER_LAYERS)
    return out


def _commit(store: Store, state: _State, target: Scenario, puts: dict[str, dict[str, Any] | None],
            tables: list[pa.Table], message: str, author: str):
    """One commit on the scenario branch: entity upserts and removals, layer rows, and the scenario record."""
    present = store.digests(target.branch, query=Query(ids=[k for k, v in puts.items() if v is None])) \
        if any(v is None for v in puts.values()) else {}
    put: list[Any] = [parse_city_object(e) for e in puts.values() if e is not None]
    remove = sorted(k for k, v in puts.items() if v is None and k in present)
    return store.commit([*put, target], remove=remove, message=message, author=author, branch=target.branch,
                        tables={TABLE: pa.concat_tables(tables)} if tables else None)


def add_edit(store: Store, scenario_id: str, edit: Any, author: str = "twin") -> Scenario:
    """Validate an edit (dict or model), apply it to the scenario branch with its derived data, and commit the
    changed entities, layers and the updated record as one version; the store is unchanged when it fails."""
    sc = get(store, scenario_id)
    model = _parse(edit)
    state = _State(store, sc.branch, store.head(sc.branch))
    _safe_apply(state, sc, model)
    try:
        updated = sc.model_copy(update={"edits": [*sc.edits, model]})
        updated = Scenario.model_validate(updated.model_dump(mode="json"))
    except ValidationError as exc:
        raise _bad("scenario", exc) from None
    reg = Layers(store)
    tables = [reg.prepare(state.specs[n], v) for n, v in sorted(state.layers.items())]
    _commit(store, state, updated, state.over, tables, f"scenario {sc.id}: {model.kind}", author)
    return updated


def remove_edit(store: Store, scenario_id: str, index: int, author: str = "twin") -> Scenario:
    """Drop edit ``index`` (0 = the first): replay the remaining edits from the base and commit the difference to
    the branch, so removing every edit restores the base's entities and layers exactly."""
    sc = get(store, scenario_id)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(sc.edits):
        raise NotFound(f"index: scenario {sc.id!r} has no edit {index!r}; it has {len(sc.edits)} "
                       f"(0..{len(sc.edits) - 1})" if sc.edits else f"index: scenario {sc.id!r} has no edits")
    remaining = sc.edits[:index] + sc.edits[index + 1:]
    base_v = sc.base_version or 0
    state = _State(store, sc.base_branch, base_v)
    for e in remaining:
        _safe_apply(state, sc, e)
    now = store.digests(sc.branch)
    base = store.digests(sc.base_branch, base_v) if base_v else {}
    changed = {k for k in now.keys() | base.keys() if now.get(k) != base.get(k)} | set(state.over)
    want = state.many(changed)
    puts: dict[str, dict[str, Any] | None] = {k: want.get(k) for k in sorted(changed)}
    reg = Layers(store)
    tables = []
    for name in sorted(_dirty_layers(sc.edits) & set(state.specs)):
        if name in state.layers:
            tables.append(reg.prepare(state.specs[name], state.layers[name]))
        else:  # no remaining edit changes it: the base's rows as they are
            rows = store.read_table(TABLE, sc.base_branch, base_v, where="asset_id = ?", params=[name],
                                    columns="cell, res, t, value, count, weight, asset_id")
            schema = VALUE_SCHEMA.append(pa.field("asset_id", pa.string()))
            tables.append(rows.select(schema.names).cast(schema).sort_by([("res", "ascending"), ("cell", "ascending")]))
    updated = sc.model_copy(update={"edits": remaining})
    _commit(store, state, updated, puts, tables, f"scenario {sc.id}: remove edit {index} ({sc.edits[index].kind})",
            author)
    return updated


# ---------------------------------------------------------------------------------------------------- diff
def _scalar(v: Any) -> bool:
    """True for values a diff shows as old/new (numbers, text, booleans, null)."""
    return v is None or isinstance(v, str | int | float | bool)


def _changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Changed fields of an entity (attributes one level deep, as ``attributes.<key>``) and old/new of scalars."""
    fields: list[str] = []
    values: dict[str, dict[str, Any]] = {}
    for k in sorted((old.keys() | new.keys()) - {"_store", "id"}):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if k == "attributes" and isinstance(a or {}, dict) and isinstance(b or {}, dict):
            for ak in sorted((a or {}).keys() | (b or {}).keys()):
                x, y = (a or {}).get(ak), (b or {}).get(ak)
                if x != y:
                    fields.append(f"attributes.{ak}")
                    if _scalar(x) and _scalar(y):
                        values[f"attributes.{ak}"] = {"base": x, "scenario": y}
            continue
        fields.append(k)
        if _scalar(a) and _scalar(b):
            values[k] = {"base": a, "scenario": b}
    return fields, values


@dataclass
class ScenarioDiff:
    """A scenario against its base: changed city objects (added / removed / changed) and changed layer cells."""

    scenario: Scenario
    crs: str
    entities: list[dict[str, Any]] = field(default_factory=list)  # id, type, change, fields, changes, geometry
    cells: dict[str, pa.Table] = field(default_factory=dict)  # layer -> cell, res, t, base, scenario, difference

    def entity_rows(self) -> list[dict[str, Any]]:
        """The changed entities as JSON-ready rows (without geometry)."""
        return [{k: v for k, v in e.items() if k != "geometry"} for e in self.entities]

    def entity_table(self) -> pa.Table:
        """The changed entities as Arrow: id, type, change, fields (list), changes (JSON text)."""
        rows = self.entity_rows()
        return pa.table({"id": pa.array([r["id"] for r in rows], pa.string()),
                         "type": pa.array([r["type"] for r in rows], pa.string()),
                         "change": pa.array([r["change"] for r in rows], pa.string()),
                         "fields": pa.array([r["fields"] for r in rows], pa.list_(pa.string())),
                         "changes": pa.array([json.dumps(r["changes"], default=str) for r in rows], pa.string())})

    def cell_table(self) -> pa.Table:
        """Every changed cell of every layer as Arrow: layer, cell (H3 hex), res, t, base, scenario, difference."""
        import h3

        parts = []
        for name, t in sorted(self.cells.items()):
            parts.append(pa.table({
                "layer": pa.array([name] * t.num_rows, pa.string()),
                "cell": pa.array([h3.int_to_str(int(c)) for c in t["cell"].to_pylist()], pa.string()),
                "res": t["res"].cast(pa.int8()), "t": t["t"].cast(pa.timestamp("us", tz="UTC")),
                "base": t["base"].cast(pa.float64()), "scenario": t["scenario"].cast(pa.float64()),
                "difference": t["difference"].cast(pa.float64())}))
        if parts:
            return pa.concat_tables(parts)
        return pa.table({"layer": pa.array([], pa.string()), "cell": pa.array([], pa.string()),
                         "res": pa.array([], pa.int8()), "t": pa.array([], pa.timestamp("us", tz="UTC")),
                         "base": pa.array([], pa.float64()), "scenario": pa.array([], pa.float64()),
                         "difference": pa.array([], pa.float64())})

    def cell_rows(self) -> list[dict[str, Any]]:
        """The changed cells as JSON-ready rows (times as ISO 8601)."""
        return [{**r, "t": r["t"].isoformat() if r["t"] is not None else None}
                for r in self.cell_table().to_pylist()]

    def entities_geojson(self) -> dict[str, Any]:
        """The changed entities as a GeoJSON FeatureCollection (WGS84 lon/lat): scenario geometry, the base's for a
        removed one."""
        geoms = [e["geometry"] for e in self.entities]
        wgs = reproject(np.asarray(geoms, dtype=object), self.crs, "EPSG:4326") if geoms else []
        feats = [{"type": "Feature", "id": r["id"], "geometry": mapping(g) if g is not None else None,
                  "properties": {**r, "feature": "entity"}}
                 for r, g in zip(self.entity_rows(), wgs, strict=True)]
        return {"type": "FeatureCollection", "features": json.loads(json.dumps(feats, default=str))}

    def cells_geojson(self) -> dict[str, Any]:
        """The changed cells as a GeoJSON FeatureCollection of H3 hexagons (WGS84), one feature per layer and cell."""
        import h3

        feats = []
        for r in self.cell_rows():
            ring = [[lng, lat] for lat, lng in h3.cell_to_boundary(r["cell"])]
            feats.append({"type": "Feature", "id": f"{r['layer']}/{r['cell']}@{r['t'] or ''}",
                          "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
                          "properties": {**r, "feature": "cell"}})
        return {"type": "FeatureCollection", "features": feats}

    def to_geojson(self) -> dict[str, Any]:
        """Entities and cells in one FeatureCollection (``properties.feature`` says which)."""
        return {"type": "FeatureCollection",
                "features": self.entities_geojson()["features"] + self.cells_geojson()["features"]}

    def to_json(self) -> dict[str, Any]:
        """The whole diff as a JSON-ready dict."""
        sc = self.scenario
        return {"scenario": sc.id, "branch": sc.branch, "base_branch": sc.base_branch,
                "base_version": sc.base_version, "entities": json.loads(json.dumps(self.entity_rows(), default=str)),
                "cells": self.cell_rows()}

    def to_csv(self) -> str:
        """One CSV: a row per changed entity field (``kind`` its type) and per changed cell (``kind`` = cell)."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["kind", "id", "change", "field", "base", "scenario", "difference"])
        for r in self.entity_rows():
            for f in r["fields"] or [""]:
                v = r["changes"].get(f, {})
                w.writerow([r["type"], r["id"], r["change"], f, _cell(v.get("base")), _cell(v.get("scenario")), ""])
        for r in self.cell_rows():
            w.writerow(["cell", r["cell"], "changed", r["layer"], _cell(r["base"]), _cell(r["scenario"]),
                        _cell(r["difference"])])
        return out.getvalue()


def _cell(v: Any) -> str:
    """A CSV field: empty for null, JSON-ish text otherwise."""
    return "" if v is None else str(v)


def diff(store: Store, scenario_id: str, layers: list[str] | None = None) -> ScenarioDiff:
    """The scenario against its base at ``base_version``: per city object (added / removed / changed fields, old and
    new scalar values) and per H3 cell of each layer (default: the building and land-cover layers it has)."""
    sc = get(store, scenario_id)
    base_v = sc.base_version or 0
    reg = Layers(store)
    names = list(dict.fromkeys(layers)) if layers else [
        s.name for s in reg.list(sc.branch) if s.name in (*blayers.BUILDING_LAYERS, *blayers.COVER_LAYERS)]
    specs = {n: reg.spec(n, sc.branch) for n in names}  # unknown layer: 404 naming it, before any work
    now = store.digests(sc.branch, query=Query(collection=CITY))
    base = store.digests(sc.base_branch, base_v, Query(collection=CITY)) if base_v else {}
    ids = sorted(k for k in now.keys() | base.keys() if now.get(k) != base.get(k))
    new = {r["id"]: r for r in store.features(sc.branch, query=Query(ids=ids))} if ids else {}
    old = {r["id"]: r for r in store.features(sc.base_branch, base_v, Query(ids=ids))} if ids and base_v else {}
    out = ScenarioDiff(sc, store.crs)
    for i in ids:
        a, b = old.get(i), new.get(i)
        change = "added" if a is None else "removed" if b is None else "changed"
        fields, values = _changes(a or {}, b or {}) if change == "changed" else ([], {})
        e = b if b is not None else a
        g = shape(e["geometry"]) if e.get("geometry") else None
        out.entities.append({"id": i, "type": e["type"], "change": change, "fields": fields, "changes": values,
                             "geometry": g})
    for name in names:
        t = reg.query(name, branch=sc.branch, compare_branch=sc.base_branch, compare_as_of=base_v)
        if not t.num_rows:
            out.cells[name] = t
            continue
        value, other = t["value"], t["other"]
        differs = pc.or_(pc.fill_null(pc.not_equal(value, other), False),
                         pc.xor(pc.is_null(value), pc.is_null(other)))
        t = t.filter(differs)
        sums = specs[name].aggregation in ("sum", "count")
        diffs = pc.subtract(pc.fill_null(t["value"], 0.0), pc.fill_null(t["other"], 0.0)) if sums else \
            t["difference"]
        out.cells[name] = pa.table({"cell": t["cell"], "res": t["res"], "t": t["t"], "base": t["other"],
                                    "scenario": t["value"], "difference": diffs})
    return out
