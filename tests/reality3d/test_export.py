"""`twin export cityjson`: CityJSON 2.0 that cjio reads and that comes back through our reader unchanged."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import shapely

from data_models import Solid
from tests.conftest import ROOT, TWIN
from twin.demo import generate
from twin.pipeline.build import build
from twin.pipeline.ingest import ingest_paths
from twin.reality3d.validity import solid_volume
from twin.sources import ReadContext
from twin.sources.cityjson import read as read_cityjson
from twin.store import Query, Store


@pytest.fixture(scope="module")
def built_store(tmp_path_factory) -> Store:
    out = tmp_path_factory.mktemp("export_city")
    generate(out, size="small", seed=5)
    store = Store.init(out / "store")
    ingest_paths(store, [out / "sources" / "cadastre", *sorted((out / "sources" / "lidar").glob("*.laz"))])
    build(store, only=["heights", "reality3d"])
    return store


def _twin(store: Store, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TWIN_STORE": str(store.root)}
    return subprocess.run([TWIN, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_export_round_trips_ids_lods_and_volumes(built_store: Store, tmp_path: Path) -> None:
    out = tmp_path / "city.city.json"
    r = _twin(built_store, "export", "cityjson", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["type"] == "CityJSON" and doc["version"] == "2.0"
    assert doc["metadata"]["referenceSystem"].endswith("/EPSG/0/4548")
    assert all(isinstance(c, int) for v in doc["vertices"][:100] for c in v)
    store_buildings = {b["id"]: b for b in built_store.features(query=Query(types=["Building"])) if b["lods"]}
    assert set(doc["CityObjects"]) == set(store_buildings)
    some = next(iter(doc["CityObjects"].values()))
    lods = {g["lod"] for o in doc["CityObjects"].values() for g in o["geometry"]}
    assert lods == {"1.2", "1.3", "2.2"}  # simple roofs reach LoD2.2
    assert {"1.2", "1.3"} <= {g["lod"] for g in some["geometry"]}
    assert {s["type"] for g in some["geometry"] for s in g["semantics"]["surfaces"]} >= {"GroundSurface",
                                                                                       "WallSurface", "RoofSurface"}
    assert "twin_rmse_lod12" in some["attributes"] and some["attributes"]["twin_provenance"]
    # cjio (an independent CityJSON tool) loads it and sees every building
    info = subprocess.run([str(Path(TWIN).with_name("cjio")), str(out), "info"], capture_output=True, text=True,
                          timeout=120)
    assert info.returncode == 0, info.stderr
    assert "Building" in info.stdout and str(len(store_buildings)) in info.stdout
    # our CityJSON reader gives back the same ids, LoDs and volumes
    got = read_cityjson(ReadContext(path=out, store_crs=built_store.crs, asset_id="src-export"))
    back = {e.id: e for e in got.entities}
    assert set(back) == set(store_buildings)
    for bid, b in list(store_buildings.items())[:40]:
        for lod in b["lods"]:
            v0 = solid_volume(Solid.model_validate(b["lods"][lod]))
            v1 = solid_volume(back[bid].lods[lod])
            assert abs(v0 - v1) <= 1e-3 * max(v0, 1.0), (bid, lod, v0, v1)


def test_export_filters_by_bbox_and_lod(built_store: Store, tmp_path: Path) -> None:
    b = built_store.features(query=Query(types=["Building"], limit=1))[0]
    box = shapely.geometry.shape(b["geometry"]).bounds
    out = tmp_path / "one.city.json"
    r = _twin(built_store, "export", "cityjson", str(out), "--bbox", ",".join(map(str, box)), "--lod", "1.2")
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert b["id"] in doc["CityObjects"]
    assert len(doc["CityObjects"]) < built_store.count(query=Query(types=["Building"]))
    assert {g["lod"] for o in doc["CityObjects"].values() for g in o["geometry"]} == {"1.2"}
    bad = _twin(built_store, "export", "cityjson", str(out), "--lod", "9.9")
    assert bad.returncode == 2 and "not a CityJSON LoD" in bad.stderr
