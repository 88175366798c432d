"""Incremental re-tiling: a commit that changes one building re-encodes only the tiles that show it; older versions
and other branches keep serving their own (shared) files."""

from __future__ import annotations

import json

import numpy as np

from tests.tiles.conftest import copy_store
from tests.tiles.helpers_tiles import building_tiles, geodetic, walk
from twin.store import Store
from twin.tiles.cache import TileCache


def _contents(path) -> set[str]:
    doc = json.loads(path.read_text())
    return {t["content"]["uri"] for t, *_ in walk(doc["root"]) if "content" in t}


def test_a_commit_re_encodes_only_the_tiles_of_the_changed_building(city_tiles, tmp_path) -> None:
    store = Store(copy_store(city_tiles["root"], tmp_path / "store"))
    cache = TileCache(store)
    old = city_tiles["version"]
    old_tiles = building_tiles(city_tiles["buildings"])
    # rebuilding a version whose tiles exist encodes nothing
    (cache.root / "buildings" / city_tiles["buildings"].name).unlink()
    cache.tileset("buildings", "main", old)
    assert cache.last_build.encoded == [] and cache.last_build.reused > 10

    target = "bldg-110101-000004"
    holding = [t for t in old_tiles if target in t["table"]["id"]]
    assert len(holding) >= 2  # its leaf and at least one coarse tile
    b = store.get(target)
    b.pop("_store")
    b["height"] += 3.0
    for geom in b["lods"].values():
        geom["vertices"] = [[x, y, z + 3.0 if z > b["attributes"]["ground_z"] + 1 else z]
                            for x, y, z in geom["vertices"]]
    commit = store.commit([b], message="raise one building by 3 m")
    assert commit is not None

    new_path = cache.tileset("buildings", "main", commit.version)
    encoded = set(cache.last_build.encoded)
    assert len(encoded) == len(holding)
    new_tiles = building_tiles(new_path)
    assert {t["tile"]["content"]["uri"].split("/")[-1][:-4] for t in new_tiles if target in t["table"]["id"]} \
        == encoded
    # every other tile is the very same file as before
    assert len(_contents(new_path) - _contents(city_tiles["buildings"])) == len(encoded)

    def shown(tiles) -> dict[bool, tuple[float, float]]:
        """(height property, highest vertex above the ellipsoid) of the target per tile kind (leaf or not)."""
        out = {}
        for t in tiles:
            if target in t["table"]["id"]:
                k = t["table"]["id"].index(target)
                pts = np.concatenate([p["ecef"][p["feature"] == k] for p in t["prims"]])
                out[not t["tile"].get("children")] = (t["table"]["height"][k], geodetic(pts)[:, 2].max())
        return out

    before = shown(building_tiles(cache.tileset("buildings", "main", old)))  # the old version, read again
    after = shown(new_tiles)
    assert before == shown(old_tiles)
    for leaf in (True, False):
        assert after[leaf][0] == np.float32(before[leaf][0] + 3.0)
        assert abs(after[leaf][1] - before[leaf][1] - 3.0) < 0.01


def test_a_branch_at_the_same_state_shares_every_file(city_tiles, tmp_path) -> None:
    store = Store(copy_store(city_tiles["root"], tmp_path / "store"))
    store.create_branch("what-if")
    cache = TileCache(store)
    path = cache.tileset("buildings", "what-if", cache.version("what-if", "latest"))
    assert cache.last_build.encoded == []
    assert _contents(path) == _contents(city_tiles["buildings"])


def test_parallel_encoding_writes_the_same_tileset(city_tiles, tmp_path) -> None:
    from twin.store import Query
    from twin.tiles.buildings_tileset import build_buildings

    feats = city_tiles["store"].features(as_of=city_tiles["version"], query=Query(types=["Building"]))
    out = tmp_path / "ts.json"
    r = build_buildings(feats, city_tiles["store"].crs, tmp_path / "cache", out, workers=2,
                        asset={"tilesetVersion": f"main@{city_tiles['version']}"})
    assert r.reused == 0 and len(r.encoded) > 10
    assert out.read_bytes() == city_tiles["buildings"].read_bytes()
    for uri in _contents(out):
        assert (tmp_path / "cache" / uri).read_bytes() == (city_tiles["buildings"].parent / uri).read_bytes()
