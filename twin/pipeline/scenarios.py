"""Scenario writes with their 3D tiles: :mod:`twin.sim.scenarios` (records, edits, derived data), then the scenario
branch's buildings tileset rebuilt at its new head.

The buildings tileset is content-addressed (:mod:`twin.tiles.buildings_tileset`): a tile is named by the buildings it
shows and their store versions, so after an edit only the tiles listing a changed building are encoded again; the
others are shared with the base's tileset. The CLI builds into ``<store>/tiles`` (what servers read); the HTTP API
passes no cache and leaves the tileset to the tile routes, which build it on first request into their cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data_models import Scenario
from twin.sim import scenarios as sim
from twin.store import Query, Store
from twin.tiles.cache import TileCache

__all__ = ["ScenarioChange", "TilesReport", "create", "edit", "rebuild_tiles", "remove_edit"]


@dataclass
class TilesReport:
    """What rebuilding a scenario's buildings tileset did."""

    path: str
    version: int
    buildings: int
    tiles: int
    encoded: int  # tiles encoded again (the others were reused by content hash)
    reused: int


@dataclass
class ScenarioChange:
    """A scenario after a write, the head version of its branch, and the tileset rebuild (None when not asked for
    or the branch has no buildings)."""

    scenario: Scenario
    version: int
    tiles: TilesReport | None = None


def rebuild_tiles(store: Store, scenario: Scenario, cache: TileCache | None) -> TilesReport | None:
    """Build the buildings tileset of the scenario branch's head into ``cache`` (None: nothing to do)."""
    if cache is None or not store.count(scenario.branch, query=Query(types=["Building", "BuildingPart"])):
        return None
    version = store.head(scenario.branch)
    cache.last_build = None
    path = cache.tileset("buildings", scenario.branch, version)
    r = cache.last_build
    if r is None:  # this process had built it already
        return TilesReport(str(path), version, 0, 0, 0, 0)
    return TilesReport(str(path), version, r.buildings, r.tiles, len(r.encoded), r.reused)


def _done(store: Store, scenario: Scenario, tiles: TileCache | None) -> ScenarioChange:
    """The change report of a write: new head and tiles."""
    return ScenarioChange(scenario, store.head(scenario.branch), rebuild_tiles(store, scenario, tiles))


def create(store: Store, name: str, *, tiles: TileCache | None = None, **kwargs: Any) -> ScenarioChange:
    """:func:`twin.sim.scenarios.create`, then the branch's buildings tileset (the base's tiles, reused)."""
    return _done(store, sim.create(store, name, **kwargs), tiles)


def edit(store: Store, scenario_id: str, edit: Any, *, author: str = "twin",
         tiles: TileCache | None = None) -> ScenarioChange:
    """:func:`twin.sim.scenarios.add_edit`, then the branch's buildings tileset, re-encoding the changed tiles."""
    return _done(store, sim.add_edit(store, scenario_id, edit, author=author), tiles)


def remove_edit(store: Store, scenario_id: str, index: int, *, author: str = "twin",
                tiles: TileCache | None = None) -> ScenarioChange:
    """:func:`twin.sim.scenarios.remove_edit`, then the branch's buildings tileset."""
    return _done(store, sim.remove_edit(store, scenario_id, index, author=author), tiles)
