"""`twin scenario …`: what-if scenarios as branches holding edits (issue 12).

``create`` forks a scenario from a base version, ``edit`` adds (or removes) one edit with its derived data and
rebuilds the scenario's buildings tileset, ``list`` / ``show`` read the records, ``diff`` compares a scenario with its
base per city object and per H3 cell. Every error is a :class:`twin.errors.TwinError`, printed by ``twin``'s main().
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from twin.cli import StoreOpt, _open, app, console
from twin.config import get_settings
from twin.errors import BadInput

scenario_app = typer.Typer(no_args_is_help=True, help="scenarios: branches holding edits, diffed with their base")
app.add_typer(scenario_app, name="scenario")

_TILES = typer.Option(True, "--tiles/--no-tiles", help="rebuild the scenario's buildings tileset into <store>/tiles")
_JSON = typer.Option(False, "--json", help="print JSON")


def _cache(store, tiles: bool):
    """The writer's tile cache of ``<store>/tiles`` when tiles are wanted."""
    from twin.tiles.cache import TileCache

    return TileCache(store) if tiles else None


def _report(change, as_json: bool) -> None:
    """Print a scenario write: its record (JSON) or one line with the version and the tiles re-encoded."""
    if as_json:
        doc = change.scenario.model_dump(mode="json")
        doc["version"] = change.version
        doc["tiles"] = None if change.tiles is None else vars(change.tiles)
        console.print_json(json.dumps(doc))
        return
    sc = change.scenario
    console.print(f"scenario [bold]{sc.id}[/] on branch {sc.branch} at version {change.version}: "
                  f"{len(sc.edits)} edit(s)", highlight=False)
    if change.tiles is not None:
        t = change.tiles
        console.print(f"  buildings tileset: {t.tiles} tiles, {t.encoded} re-encoded, {t.reused} reused "
                      f"({t.path})", highlight=False)


@scenario_app.command("create")
def create(
    name: str = typer.Argument(..., help="scenario name"),
    base: str = typer.Option("main", "--base", help="branch to fork from"),
    at: str = typer.Option(None, "--at", help="base version (number or ISO 8601 time; default the base's head)"),
    scenario_id: str = typer.Option(None, "--id", help="scenario id (default: made from the name)"),
    description: str = typer.Option("", "--description", help="what the scenario is about"),
    store: Path = StoreOpt, tiles: bool = _TILES, as_json: bool = _JSON,
):
    """Fork a scenario branch from a base version and record it."""
    from twin.pipeline import scenarios

    s = _open(store)
    change = scenarios.create(s, name, base_branch=base, base_version=at, scenario_id=scenario_id,
                              description=description, author=get_settings().author, tiles=_cache(s, tiles))
    _report(change, as_json)


def _lnglat(coords: Any) -> bool:
    """True when every position of a GeoJSON coordinate array lies in the lon/lat range."""
    import numpy as np

    flat = np.asarray(_positions(coords), dtype=float)
    return bool(len(flat)) and bool((np.abs(flat[:, 0]) <= 180).all() and (np.abs(flat[:, 1]) <= 90).all())


def _positions(coords: Any) -> list[list[float]]:
    """The x, y of every position of a nested GeoJSON coordinate array."""
    if isinstance(coords, list | tuple) and coords and isinstance(coords[0], int | float):
        return [list(coords[:2])]
    return [p for c in coords or [] for p in _positions(c)]


def buildings_from_geojson(path: Path, store_crs: str) -> list[dict[str, Any]]:
    """Buildings from a GeoJSON file (a Feature, a FeatureCollection or a bare geometry), in the store CRS.

    Properties ``id``, ``height``, ``storeys``, ``use``, ``roof_type`` become fields, the others attributes. The
    coordinates are in the CRS the file's ``crs`` member names, else WGS84 when they look like lon/lat (RFC 7946),
    else the store CRS."""
    import shapely
    from shapely.geometry import mapping, shape

    from twin.geo.crs import reproject

    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"--add-building: cannot read {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise BadInput(f"--add-building: {path} is not a GeoJSON object")
    feats = doc.get("features") if doc.get("type") == "FeatureCollection" else \
        [doc] if doc.get("type") == "Feature" else [{"type": "Feature", "geometry": doc, "properties": {}}]
    if not feats:
        raise BadInput(f"--add-building: {path} holds no feature")
    crs = ((doc.get("crs") or {}).get("properties") or {}).get("name")
    out = []
    for i, f in enumerate(feats):
        props = dict(f.get("properties") or {})
        geom = f.get("geometry")
        if not isinstance(geom, dict) or geom.get("type") not in ("Polygon", "MultiPolygon"):
            raise BadInput(f"--add-building: feature {i} of {path} needs a Polygon or MultiPolygon geometry")
        src = crs or ("EPSG:4326" if _lnglat(geom.get("coordinates")) else store_crs)
        try:
            g = reproject(shape(geom), src, store_crs)
        except (ValueError, TypeError, shapely.errors.GEOSException) as exc:
            raise BadInput(f"--add-building: feature {i} of {path}: {exc}") from None
        bid = props.pop("id", None) or f.get("id")
        if not bid:
            raise BadInput(f"--add-building: feature {i} of {path} needs an id (property or feature id)")
        b: dict[str, Any] = {"id": str(bid), "type": "Building", "geometry": mapping(g)}
        for k in ("height", "storeys", "use", "roof_type"):
            if props.get(k) is not None:
                b[k] = props.pop(k)
        b["attributes"] = {**(props.pop("attributes", None) or {}), **props}
        out.append(b)
    return out


def _edit_arg(text: str) -> dict[str, Any]:
    """An edit from JSON text or a JSON file."""
    p = Path(text)
    try:
        raw = p.read_text() if not text.lstrip().startswith("{") and p.is_file() else text
        doc = json.loads(raw)
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"--edit: neither JSON nor a JSON file: {exc}") from None
    if not isinstance(doc, dict):
        raise BadInput("--edit: the edit must be a JSON object with a 'kind'")
    return doc


@scenario_app.command("edit")
def edit(
    scenario: str = typer.Argument(..., help="scenario id"),
    add_building: Path = typer.Option(None, "--add-building", help="GeoJSON file of the building(s) to add"),
    remove_building: str = typer.Option(None, "--remove-building", help="id of a building to remove"),
    modify_building: str = typer.Option(None, "--modify-building", help="id of a building to modify"),
    height: float = typer.Option(None, "--height", help="with --modify-building: new height (m)"),
    storeys: int = typer.Option(None, "--storeys", help="with --modify-building: new storey count"),
    use: str = typer.Option(None, "--use", help="with --modify-building: new use"),
    roof_type: str = typer.Option(None, "--roof-type", help="with --modify-building: flat, gable, hip, shed, …"),
    edit_json: str = typer.Option(None, "--edit", help="an edit as JSON (or a JSON file), discriminated by 'kind'"),
    remove_edit: int = typer.Option(None, "--remove-edit", help="remove edit N (0 = the first; see `show`)"),
    store: Path = StoreOpt, tiles: bool = _TILES, as_json: bool = _JSON,
):
    """Add one edit to a scenario (or remove one) with its derived data, in one commit, then rebuild its tiles."""
    from twin.pipeline import scenarios

    given = [n for n, v in (("--add-building", add_building), ("--remove-building", remove_building),
                            ("--modify-building", modify_building), ("--edit", edit_json),
                            ("--remove-edit", remove_edit)) if v is not None]
    if len(given) != 1:
        raise BadInput(f"give exactly one of --add-building, --remove-building, --modify-building, --edit or "
                       f"--remove-edit (got {', '.join(given) or 'none'})")
    changes = {k: v for k, v in (("height", height), ("storeys", storeys), ("use", use), ("roof_type", roof_type))
               if v is not None}
    if changes and modify_building is None:
        raise BadInput(f"--{', --'.join(changes).replace('_', '-')} only go with --modify-building")
    s = _open(store)
    author = get_settings().author
    if remove_edit is not None:
        _report(scenarios.remove_edit(s, scenario, remove_edit, author=author, tiles=_cache(s, tiles)), as_json)
        return
    if add_building is not None:
        edits = [{"kind": "add_building", "building": b} for b in buildings_from_geojson(add_building, s.crs)]
    elif remove_building is not None:
        edits = [{"kind": "remove_building", "building_id": remove_building}]
    elif modify_building is not None:
        edits = [{"kind": "modify_building", "building_id": modify_building, **changes}]
    else:
        edits = [_edit_arg(edit_json)]
    for i, e in enumerate(edits):
        last = i == len(edits) - 1
        change = scenarios.edit(s, scenario, e, author=author, tiles=_cache(s, tiles and last))
    _report(change, as_json)


@scenario_app.command("list")
def list_(store: Path = StoreOpt, as_json: bool = _JSON):
    """The scenarios of the store: id, name, base and number of edits."""
    from twin.sim.scenarios import list_scenarios

    found = list_scenarios(_open(store))
    if as_json:
        console.print_json(json.dumps([s.model_dump(mode="json") for s in found]))
        return
    t = Table("id", "name", "base", "branch", "edits", "created")
    for sc in found:
        t.add_row(sc.id, sc.name, f"{sc.base_branch}@{sc.base_version or 0}", sc.branch, str(len(sc.edits)),
                  sc.created.isoformat(timespec="seconds"))
    console.print(t)


def _summary(e: Any) -> str:
    """One line saying what an edit does."""
    d = e.model_dump(mode="json", exclude_none=True)
    kind = d.pop("kind")
    if kind == "add_building":
        b = d["building"]
        return f"add building {b['id']} (height {b.get('height')}, use {b.get('use')})"
    if kind == "change_land_cover":
        d.pop("geometry", None)
    return f"{kind.replace('_', ' ')} " + ", ".join(f"{k}={v}" for k, v in d.items() if v not in ({}, []))


@scenario_app.command("show")
def show(scenario: str = typer.Argument(..., help="scenario id"), store: Path = StoreOpt, as_json: bool = _JSON):
    """A scenario: its base, branch and edits, numbered from 0."""
    from twin.sim.scenarios import get

    s = _open(store)
    sc = get(s, scenario)
    if as_json:
        console.print_json(json.dumps({**sc.model_dump(mode="json"), "version": s.head(sc.branch)}))
        return
    console.print(f"[bold]{sc.id}[/]: {sc.name}\n  base: {sc.base_branch}@{sc.base_version or 0}\n"
                  f"  branch: {sc.branch} (head {s.head(sc.branch)})\n  author: {sc.author}, created "
                  f"{sc.created.isoformat(timespec='seconds')}", highlight=False)
    if sc.description:
        console.print(f"  {sc.description}", highlight=False)
    console.print(f"  edits ({len(sc.edits)}):", highlight=False)
    for i, e in enumerate(sc.edits):
        console.print(f"    {i}. {_summary(e)}", highlight=False)


@scenario_app.command("diff")
def diff(
    scenario: str = typer.Argument(..., help="scenario id"),
    layer: list[str] = typer.Option(None, "--layer", help="layer to compare (repeatable; default the building "
                                                          "and land-cover layers)"),
    fmt: str = typer.Option("table", "--format", help="table | json | geojson | csv"),
    out: Path = typer.Option(None, "--out", help="write to this file instead of the terminal"),
    store: Path = StoreOpt,
):
    """The scenario against its base: city objects added / removed / changed (fields, old → new) and layer cells
    (base, scenario, difference)."""
    from twin.sim.scenarios import diff as run_diff

    if fmt not in ("table", "json", "geojson", "csv"):
        raise BadInput(f"--format: one of table, json, geojson, csv; got {fmt!r}")
    d = run_diff(_open(store), scenario, layer or None)
    if fmt == "table":
        if out is not None:
            raise BadInput("--out: the table format prints to the terminal; use --format csv, json or geojson")
        t = Table(title="city objects")
        for name in ("id", "type", "change"):
            t.add_column(name, no_wrap=True)
        t.add_column("fields (base → scenario)")
        for r in d.entity_rows():
            shown = [f"{f}: {r['changes'][f]['base']} → {r['changes'][f]['scenario']}" if f in r["changes"] else f
                     for f in r["fields"]]
            t.add_row(r["id"], r["type"], r["change"], "; ".join(shown))
        console.print(t)
        c = Table(title="layer cells")
        for name in ("layer", "cell", "base", "scenario", "difference"):
            c.add_column(name, no_wrap=True)
        for r in d.cell_rows():
            c.add_row(r["layer"], r["cell"], *(f"{v:.6g}" if v is not None else "" for v in
                                               (r["base"], r["scenario"], r["difference"])))
        console.print(c)
        return
    text = d.to_csv() if fmt == "csv" else json.dumps(d.to_geojson() if fmt == "geojson" else d.to_json())
    if out is not None:
        out.write_text(text)
        console.print(f"wrote {out} ({len(d.entities)} objects, {sum(t.num_rows for t in d.cells.values())} cells)",
                      highlight=False)
    else:
        print(text)
