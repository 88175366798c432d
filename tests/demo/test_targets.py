"""Demos of different sizes in one clone: each goes to its own folder and store, and a demo refuses to merge into a
folder or store that holds another city (issue: `make demo SIZE=medium` after the small one mixed two cadastres)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import shapely

from tests.conftest import TWIN
from twin.store import Query, Store


def _twin(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TWIN_STORE", "TWIN_DEMO_DIR")}
    return subprocess.run([TWIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _buildings(store: Path) -> dict[str, dict]:
    return {f["id"]: f for f in Store(store).features(query=Query(types=["Building"]))}


def _own(buildings: dict[str, dict], demo: Path) -> bool:
    """The store's cadastre buildings are exactly those of ``demo``'s cadastre, with their footprints."""
    cadastre = json.loads((demo / "sources" / "cadastre" / "buildings.geojson").read_text())["features"]
    want = {f"bldg-{f['properties']['cadastre_id']}": f["properties"]["area_m2"] for f in cadastre}
    have = {i: shapely.geometry.shape(b["geometry"]).area for i, b in buildings.items() if i.startswith("bldg-1101")}
    return have.keys() == want.keys() and all(abs(have[i] - a) <= 0.01 * a for i, a in want.items())


def test_two_demo_sizes_in_one_clone_give_two_stores_with_their_own_buildings(built_city, tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copytree(built_city["store"], clone / "twin-store")  # as `make demo` (small, seed 7) leaves it
    (clone / "demo-city").symlink_to(built_city["dir"])
    small_before = _buildings(clone / "twin-store")
    head_before = Store(clone / "twin-store").head()

    r = _twin(clone, "demo", "--size", "tiny", "--no-serve")
    assert r.returncode == 0, r.stderr
    assert "store twin-store-tiny" in r.stdout and "sources demo-city-tiny" in r.stdout
    tiny_manifest = json.loads((clone / "demo-city-tiny" / "manifest.json").read_text())
    assert (tiny_manifest["size"], tiny_manifest["seed"]) == ("tiny", 7)
    tiny = _buildings(clone / "twin-store-tiny")
    # the small store is untouched; the tiny one holds exactly the tiny city (no small-city building or LiDAR)
    assert Store(clone / "twin-store").head() == head_before and _buildings(clone / "twin-store") == small_before
    assert tiny and _own(tiny, clone / "demo-city-tiny") and _own(small_before, built_city["dir"])
    assert not _own(tiny, built_city["dir"])
    lidar = {a["path"] for a in Store(clone / "twin-store-tiny").features(query=Query(collection="assets"))
             if a["kind"] == "pointcloud"}
    assert len(lidar) == tiny_manifest["counts"]["lidar_tiles"]
    assert all(str(clone / "demo-city-tiny") in p for p in lidar)
    # progress in a log: one timed line per step, no live bars
    assert "build: reality3d done in" in r.stdout and "\r" not in r.stdout

    # a demo told to use another city's store or folder refuses, naming it and the way out, and changes nothing
    r = _twin(clone, "demo", "--size", "tiny", "--store", "twin-store", "--no-serve")
    assert r.returncode != 0 and "twin-store: the store holds the small demo city (seed 7)" in r.stderr
    assert "--store" in r.stderr and "twin-store-tiny" in r.stderr
    r = _twin(clone, "demo", "--size", "tiny", "--seed", "8", "--out", "demo-city-tiny", "--no-serve")
    assert r.returncode != 0 and "demo-city-tiny: the folder holds the tiny demo city (seed 7)" in r.stderr
    assert "demo-city-tiny-seed8" in r.stderr
    assert Store(clone / "twin-store").head() == head_before and not (clone / "twin-store-tiny-seed8").exists()
