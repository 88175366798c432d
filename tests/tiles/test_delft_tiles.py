"""Real data in another CRS: Delft (CityJSON, RD New EPSG:28992) tiles land within 1 cm of pyproj's ECEF."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_data
from tests.tiles.helpers_tiles import building_tiles, nearest_distance, pyproj_ecef
from twin.store import Query, Store
from twin.tiles.cache import TileCache
from twin.tiles.validate import validate_glbs, validator_available


@pytest.fixture(scope="module")
def delft(tmp_path_factory) -> dict:
    from twin.catalog.ingest import ingest_paths

    src = shared_data("cityjson") / "delft.json"
    store = Store.init(tmp_path_factory.mktemp("delft") / "store", "EPSG:28992")
    ingest_paths(store, [src], message="delft")
    cache = TileCache(store)
    path = cache.tileset("buildings", "main", store.head())
    return {"store": store, "path": path, "tiles": building_tiles(path)}


def test_delft_vertices_are_pyproj_ecef_within_a_centimetre(delft) -> None:
    store = delft["store"]
    src = {b["id"]: b for b in store.features(query=Query(types=["Building"]))}
    assert len(src) == 160
    leaf_ids, worst = [], 0.0
    for t in delft["tiles"]:
        ecef = np.concatenate([p["ecef"] for p in t["prims"]])
        feature = np.concatenate([p["feature"] for p in t["prims"]])
        for k, bid in enumerate(t["table"]["id"]):
            ref = pyproj_ecef(np.asarray(src[bid]["lods"][t["table"]["lod"][k]]["vertices"], float), "EPSG:28992")
            got = ecef[feature == k]
            worst = max(worst, float(nearest_distance(got, ref).max()), float(nearest_distance(ref, got).max()))
        if not t["tile"].get("children"):
            leaf_ids += t["table"]["id"]
    assert sorted(leaf_ids) == sorted(src)
    assert worst < 0.01, worst
    # Delft is in the Netherlands: the root region says so (radians)
    region = delft["tiles"][0]["tile"]["boundingVolume"]["region"]
    assert 4.3 < np.degrees(region[0]) < 4.4 and 51.9 < np.degrees(region[1]) < 52.1


def test_delft_glbs_are_valid(delft) -> None:
    if not validator_available():
        pytest.skip("node or node_modules/gltf-validator missing (make install)")
    paths = [delft["path"].parent / t["tile"]["content"]["uri"] for t in delft["tiles"]]
    report = validate_glbs(paths)
    assert all(r["numErrors"] == 0 and r["numWarnings"] == 0 for r in report.values()), report
