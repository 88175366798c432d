"""The sample city through ingest and build: the store's city matches the generator's ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twin.pipeline.build import build
from twin.pipeline.ingest import ingest_paths
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
    # sources by kind, plus the DTM/DSM/nDSM that `twin build` derived and keeps in the store
    assert {a["kind"] for a in assets} == {"vector", "pointcloud", "imagery", "sensors", "product"}
    assert {a["id"] for a in assets if a["kind"] == "product"} == {"prd-dtm", "prd-dsm", "prd-ndsm"}
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
    # the per-tile work gives the same result in one process as in several (the first build used all cores)
    assert build(store, only=["reality3d"], workers=1) is None and store.head() == head


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


def test_build_publishes_the_standard_layers(built, city) -> None:
    import csv

    import pyarrow.compute as pc
    import shapely

    from twin.layers.registry import Layers

    store, *_ = built
    layers = Layers(store)
    names = {s.name for s in layers.list()}
    assert {"green-fraction", "impervious-fraction", "building-volume", "population", "pm25-hourly", "pm25-idw",
            "traffic-hourly"} <= names
    # extensive layers add up at every resolution to the entity totals they came from
    standing = [b for b in store.features(query=Query(types=["Building"])) if b["height"] and not b["valid_to"]]
    volume = sum(shapely.geometry.shape(b["geometry"]).area * b["height"] for b in standing)
    for res in layers.spec("building-volume").resolutions:
        got = pc.sum(layers.query("building-volume", res=res)["value"]).as_py()
        assert abs(got - volume) / volume < 1e-6
    # fractions stay fractions after roll-up
    for name in ("green-fraction", "impervious-fraction"):
        for res in layers.spec(name).resolutions:
            v = layers.query(name, res=res)["value"]
            assert 0 <= pc.min(v).as_py() and pc.max(v).as_py() <= 1
    # hourly PM2.5 at a station's cell equals the mean of that station's readings in the CSV
    rows = list(csv.DictReader(open(city["dir"] / "sources" / "sensors" / "air_quality_hourly.csv")))
    first = [r for r in rows if r["timestamp"] == rows[0]["timestamp"] and r["pm25_ugm3"]]
    q = layers.query("pm25-hourly", res=9, start="2000-01-01T00:00:00Z")
    t0 = q["t"][0].as_py()
    at_t0 = q.filter(pc.equal(q["t"], q["t"][0]))
    assert t0.isoformat().startswith("2024-05-26T16:00")  # 00:00 +08:00 in UTC
    weighted = pc.sum(pc.multiply(at_t0["value"], at_t0["count"])).as_py() / pc.sum(at_t0["count"]).as_py()
    assert pc.sum(at_t0["count"]).as_py() == len(first)
    assert abs(weighted - sum(float(r["pm25_ugm3"]) for r in first) / len(first)) < 1e-6
    idw = layers.spec("pm25-idw")
    assert "CV MAE" in idw.description and idw.time_bucket == "1h"


def test_build_reconstructs_lod1_solids_and_trees(built, city) -> None:
    from data_models import Solid
    from twin.reality3d.validity import validate_solid

    store, *_ = built
    standing = [b for b in store.features(query=Query(types=["Building"])) if not b["valid_to"]]
    assert standing
    for b in standing:
        assert set(b["lods"]) >= {"1.2", "1.3"}, b["id"]
        for lod in ("1.2", "1.3"):
            ok, errors = validate_solid(Solid.model_validate(b["lods"][lod]))
            assert ok, (b["id"], lod, errors)
        assert b["quality"]["valid"] is True and "1.2" in b["quality"]["rmse"]
        assert any(p["attribute"] == "lods" for p in b["provenance"])
        if "2.2" in b["lods"]:
            assert validate_solid(Solid.model_validate(b["lods"]["2.2"]))[0], b["id"]
            assert b["quality"]["rmse"]["2.2"] <= 0.5
        else:
            assert "lod22_fallback_lod13" in b["quality"]["errors"], b["id"]
    truth = {f["properties"]["cadastre_id"]: f["properties"] for f in json.loads(
        (city["dir"] / "truth" / "buildings.geojson").read_text())["features"]}
    lod22 = [b for b in standing if "2.2" in b["lods"] and "cadastre_id" in b["attributes"]]
    assert len(lod22) > 0.9 * len(standing)
    # roof types of the parametric (simple) roofs; the partitioned ones are complex by construction
    simple = [b for b in lod22 if "lod22_roof_partition" not in b["quality"].get("flags", [])]
    assert len(lod22) - len(simple) >= 100
    right = sum(b["roof_type"] == truth[b["attributes"]["cadastre_id"]]["roof_type"] for b in simple)
    assert right >= 0.9 * len(simple)
    trees = store.features(query=Query(types=["Vegetation"]))
    n_true = sum(1 for _ in open(city["dir"] / "truth" / "trees.csv")) - 1
    assert 0.7 * n_true <= len(trees) <= 1.05 * n_true
    assert all(t["height"] > 2.5 and t["provenance"][0]["source_asset_id"].startswith("src-lidar-") for t in trees)
