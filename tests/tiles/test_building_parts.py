"""CityJSON buildings whose geometry lives in BuildingParts are drawn as one feature: the building's id."""

from __future__ import annotations

import json

from tests.conftest import shared_data
from tests.tiles.helpers_tiles import building_tiles
from twin.pipeline.ingest import ingest_paths
from twin.store import Query, Store
from twin.tiles.cache import TileCache
from twin.tiles.validate import validate_glbs


def test_parts_are_folded_into_their_building(tmp_path) -> None:
    src = shared_data("cityjson") / "DH_01_subs.city.json"
    store = Store.init(tmp_path / "store", "EPSG:28992")
    ingest_paths(store, [src], crs="EPSG:28992")
    parts = store.features(query=Query(types=["BuildingPart"]))
    buildings = store.features(query=Query(types=["Building"]))
    assert parts and all(not b.get("lods") for b in buildings if any(p["parent_id"] == b["id"] for p in parts))
    cache = TileCache(store)
    ts = cache.tileset("buildings", "main", store.head())
    tiles = building_tiles(ts)
    ids = {bid for t in tiles for bid in t["table"]["id"]}
    own = {b["id"] for b in buildings if b.get("lods")}
    assert ids == {p["parent_id"] for p in parts} | own  # one feature per building, none per part
    # every part's vertices are drawn: the ECEF triangles cover as many vertices as the parts have
    n_vertices = sum(len(p["lods"][max(p["lods"], key=float)]["vertices"]) for p in parts)
    n_vertices += sum(len(b["lods"][max(b["lods"], key=float)]["vertices"]) for b in buildings if b.get("lods"))
    assert sum(len(pr["ecef"]) for t in tiles for pr in t["prims"]) >= n_vertices
    report = validate_glbs([ts.parent / t["tile"]["content"]["uri"] for t in tiles])
    assert report and all(r["numErrors"] == 0 for r in report.values()), json.dumps(report)[:500]
