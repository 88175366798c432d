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
    from twin.pipeline.ingest import ingest_paths

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


def test_delft_terrain_from_lidar_returns_to_nap_ground_heights_through_pyproj(tmp_path) -> None:
    """No DTM product: the terrain is gridded from the AHN3 cloud. Vertices taken back from ECEF to RD New + height
    with pyproj's inverse land on the cloud's own ground points (class 2)."""
    import json

    import laspy
    import pyproj

    from tests.tiles.helpers_tiles import glb_points
    from twin.pipeline.ingest import ingest_paths

    laz = shared_data("lidar/delft_ahn3") / "delft_ahn3_part2.laz"
    store = Store.init(tmp_path / "store", "EPSG:28992")
    ingest_paths(store, [laz], crs="EPSG:28992", message="ahn3")
    path = TileCache(store).tileset("terrain", "main", store.head())
    doc = json.loads(path.read_text())
    assert "clouds" in doc["extras"]["twin"]["inputs"]["source"]
    levels = doc["root"]["implicitTiling"]["availableLevels"]
    leaves = sorted((path.parent / path.stem / "content" / str(levels - 1)).glob("*/*.glb"))
    ecef = np.concatenate([glb_points(p.read_bytes(), np.eye(4))[2][0]["ecef"] for p in leaves])
    back = pyproj.Transformer.from_crs("EPSG:4978", pyproj.CRS("EPSG:28992").to_3d(), always_xy=True)
    x, y, z = back.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
    las = laspy.read(laz)
    ground = las.classification == 2
    gx, gy, gz = np.asarray(las.x)[ground], np.asarray(las.y)[ground], np.asarray(las.z)[ground]
    cell = np.floor(gx).astype(np.int64) * 1_000_003 + np.floor(gy).astype(np.int64)
    order = np.argsort(cell)
    keys, first = np.unique(cell[order], return_index=True)
    mean_z = np.add.reduceat(gz[order], first) / np.diff(np.append(first, len(order)))
    vk = np.floor(x).astype(np.int64) * 1_000_003 + np.floor(y).astype(np.int64)
    pos = np.clip(np.searchsorted(keys, vk), 0, len(keys) - 1)
    hit = keys[pos] == vk  # vertices over a 1 m cell with ground points
    assert hit.mean() > 0.3
    diff = np.abs(np.asarray(z)[hit] - mean_z[pos[hit]])
    assert np.median(diff) < 0.15, np.median(diff)
    assert -5 < np.median(np.asarray(z)[hit]) < 10  # NAP heights, not 43 m ellipsoidal offsets
