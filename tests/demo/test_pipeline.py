"""The sample city through ingest and build: the store's city matches the generator's ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twin.catalog.ingest import ingest_paths
from twin.fusion.build import build
from twin.store import ASSETS, Query, Store


@pytest.fixture(scope="module")
def built(city, tmp_path_factory):
    store = Store.init(tmp_path_factory.mktemp("pipeline") / "store", city["manifest"]["crs"])
    c1 = ingest_paths(store, [city["dir"] / "sources"], message="demo")
    c2 = build(store)
    truth = {f["properties"]["cadastre_id"]: f["properties"]
             for f in json.loads((city["dir"] / "truth" / "buildings.geojson").read_text())["features"]}
    return store, c1, c2, truth


def test_ingest_catalogs_every_source_and_maps_features(built, city) -> None:
    store, c1, _, truth = built
    assets = store.features(query=Query(collection=ASSETS))
    paths = {a["path"] for a in assets}
    assert {str((city["dir"] / f["path"]).resolve()) for f in city["manifest"]["files"]
            if f["path"].startswith("sources/") and not f["path"].endswith(".json")} <= paths
    assert {a["kind"] for a in assets} == {"vector", "pointcloud", "imagery", "sensors"}
    live = [k for k, t in truth.items() if t["status"] != "demolished"]
    assert store.count(as_of=1, query=Query(types=["Building"])) == len(live)
    assert store.count(query=Query(types=["WaterBody"])) >= 1
    assert store.count(query=Query(types=["Road"])) > 10
    lidar = [a for a in assets if a["kind"] == "pointcloud"]
    assert all(a["crs"] == "EPSG:4548" and a["acquired"].startswith("2024-06-12") for a in lidar)


def test_build_heights_match_truth(built) -> None:
    store, _, c2, truth = built
    assert c2 is not None and c2.changes.modified > 0
    errors = []
    for b in store.features(query=Query(types=["Building"])):
        if "cadastre_id" not in b["attributes"]:
            continue  # detected by change detection, not in the cadastre: scored in test_build_records_changes
        t = truth[b["attributes"]["cadastre_id"]]
        assert b["height"] is not None, f"{b['id']} has points but no height"
        assert b["quality"]["point_density"] > 5
        prov = [p for p in b["provenance"] if p["attribute"] == "height"]
        assert prov and prov[0]["source_asset_id"].startswith("src-lidar-")
        assert abs(b["attributes"]["ground_z"] - t["ground_z"]) < 0.5
        if t["roof_type"] == "flat" and t["n_parts"] == 1:
            errors.append(abs(b["height"] - t["roof_max_height"]))
    assert len(errors) >= 8
    assert float(np.median(errors)) < 0.3
    # the ingest version still has no heights: build made a new version, history kept
    assert all(b["height"] is None for b in store.features(as_of=1, query=Query(types=["Building"])))


def test_rebuild_is_a_no_op(built) -> None:
    store, *_ = built
    head = store.head()
    assert build(store) is None and store.head() == head


def test_build_records_changes_with_valid_time(built, city) -> None:
    store, *_ = built
    changes = json.loads((city["dir"] / "truth" / "changes.json").read_text())
    buildings = store.features(query=Query(types=["Building"]))
    demolished = [b for b in buildings if b["valid_to"]]
    built_ids = {b["attributes"]["cadastre_id"] for b in buildings
                 if b["attributes"].get("change", {}).get("kind") == "built"}
    assert built_ids == {c["id"] for c in changes["built"]}
    n_demolished = len(changes["demolished"])
    assert len(demolished) == n_demolished
    assert all(b["valid_to"].startswith("2024-06-03") for b in demolished)
    # land cover polygons and footprint greenness carry provenance to the imagery
    lc = store.features(query=Query(types=["LandCover"], limit=5))
    assert lc and all(p["source_asset_id"].startswith("src-imagery-") for p in lc[0]["provenance"][:1])
    green = [b for b in buildings if "ndvi_mean" in b["attributes"]]
    assert len(green) > 0.9 * len(buildings) - n_demolished
