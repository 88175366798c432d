"""Fusion through ingest and build: a second footprint source conflates, LiDAR candidates give way to footprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely

from twin.pipeline.build import build
from twin.pipeline.ingest import ingest_paths
from twin.store import Query, Store


@pytest.fixture(scope="module")
def demo(city) -> Path:
    """The folder of the session's small demo city (read-only: edited deliveries are written to tmp_path)."""
    return city["dir"]


def _cadastre(demo: Path) -> dict:
    return json.loads((demo / "sources" / "cadastre" / "buildings.geojson").read_text())


def test_missing_footprints_become_candidates_then_yield_to_the_cadastre(demo: Path, tmp_path: Path) -> None:
    doc = _cadastre(demo)
    feats = sorted(doc["features"], key=lambda f: -shapely.geometry.shape(f["geometry"]).area)
    missing = {f["properties"]["cadastre_id"] for f in feats[10:15]}  # five large-ish buildings left out
    partial = dict(doc, features=[f for f in doc["features"] if f["properties"]["cadastre_id"] not in missing])
    cad = tmp_path / "cadastre" / "buildings.geojson"
    cad.parent.mkdir()
    cad.write_text(json.dumps(partial))
    store = Store.init(tmp_path / "store")
    ingest_paths(store, [cad, *sorted((demo / "sources" / "lidar").glob("*.laz"))])
    build(store, only=["outlines", "heights"])
    cands = [b for b in store.features(query=Query(types=["Building"])) if b["attributes"].get("candidate")]
    assert len(cands) == len(missing)
    assert all(b["height"] and b["height"] > 2 for b in cands), "candidates get LiDAR heights in the same build"
    truth = {f["properties"]["cadastre_id"]: shapely.geometry.shape(f["geometry"]) for f in feats}
    for c in cands:
        g = shapely.geometry.shape(c["geometry"])
        best = max(missing, key=lambda k: g.intersection(truth[k]).area)
        assert g.intersection(truth[best]).area / g.union(truth[best]).area > 0.7
    # the next cadastre delivery has them: the footprints replace the candidates, no duplicates
    cad.write_text(json.dumps(doc))
    c = ingest_paths(store, [cad])
    assert c.changes.removed == len(missing)
    build(store, only=["outlines", "heights"])
    buildings = store.features(query=Query(types=["Building"]))
    assert not [b for b in buildings if b["attributes"].get("candidate")]
    assert {b["attributes"]["cadastre_id"] for b in buildings} == set(truth)


def test_a_second_footprint_source_is_conflated_not_duplicated(demo: Path, tmp_path: Path) -> None:
    store = Store.init(tmp_path / "store")
    ingest_paths(store, [demo / "sources" / "cadastre"])
    n = store.count(query=Query(types=["Building"]))
    doc = _cadastre(demo)
    osm = []
    for i, f in enumerate(doc["features"][:60]):
        g = shapely.affinity.translate(shapely.geometry.shape(f["geometry"]), 0.8, -0.6)
        osm.append({"type": "Feature", "properties": {"osm_id": 9000 + i, "building:levels": 3, "name": f"osm {i}"},
                    "geometry": shapely.geometry.mapping(g)})
    shed = shapely.box(448_390, 4_419_490, 448_396, 4_419_496)
    osm.append({"type": "Feature", "properties": {"osm_id": 1}, "geometry": shapely.geometry.mapping(shed)})
    p = tmp_path / "osm" / "buildings.geojson"
    p.parent.mkdir()
    p.write_text(json.dumps({"type": "FeatureCollection", "crs": doc["crs"], "features": osm}))
    ingest_paths(store, [p], options={"priority": {"src-cadastre": 10, "src-osm": 5}})
    after = store.features(query=Query(types=["Building"]))
    assert len(after) == n + 1, "60 matched buildings stay one entity each; the unmatched shed is new"
    matched = [b for b in after if b["attributes"].get("cadastre_id") and b["attributes"].get("osm_id")]
    assert len(matched) == 60
    for b in matched[:5]:
        # footprint from the higher-priority cadastre, OSM's extra attribute kept with its own provenance
        src = {pr["source_asset_id"] for pr in b["provenance"]}
        assert {"src-cadastre-buildings-geojson", "src-osm-buildings-geojson"} <= src
    assert ingest_paths(store, [p], options={"priority": {"src-cadastre": 10, "src-osm": 5}}) is None  # read alike
