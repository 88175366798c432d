"""Classifications flow from the delivery to what is derived from it: a feature's own `classification` (never
below the file's), and a layer carries the highest classification of what it is computed from."""

from __future__ import annotations

import json

import pytest

from tests.helpers_geojson import write_buildings_geojson
from twin.errors import BadInput
from twin.pipeline.build import build
from twin.pipeline.ingest import ingest_paths
from twin.store import LAYERS, Query, Store


def _mark(path, levels: dict[int, str]):
    doc = json.loads(path.read_text())
    for i, level in levels.items():
        doc["features"][i]["properties"]["classification"] = level
    doc["features"][0]["properties"]["height"] = 12.0
    for f in doc["features"]:
        f["properties"].setdefault("height", 9.0)
    path.write_text(json.dumps(doc))
    return path


def test_feature_classification_and_layers_carry_the_max_of_their_inputs(tmp_path) -> None:
    src = _mark(write_buildings_geojson(tmp_path / "b.geojson", 6), {1: "Confidential", 2: "public"})
    s = Store.init(tmp_path / "s")
    ingest_paths(s, [src], classification="internal")
    levels = sorted(b["classification"] for b in s.features(query=Query(types=["Building"])))
    assert levels == ["confidential"] + ["internal"] * 5  # the file's level is a floor, a feature may raise it
    build(s, only=["layers"])
    specs = {x["id"]: x for x in s.features(query=Query(collection=LAYERS))}
    assert specs and all(x["classification"] == "confidential" for x in specs.values()), \
        {k: v["classification"] for k, v in specs.items()}


def test_a_bad_feature_classification_names_the_feature_and_changes_nothing(tmp_path) -> None:
    src = _mark(write_buildings_geojson(tmp_path / "b.geojson", 3), {2: "top-secret"})
    s = Store.init(tmp_path / "s")
    with pytest.raises(BadInput, match=r"feature 2 .*classification 'top-secret' is not one of public, internal"):
        ingest_paths(s, [src])
    assert s.head() == 0


def test_terrain_of_a_confidential_cloud_is_sealed_at_rest_and_read_with_the_key(tmp_path, monkeypatch) -> None:
    """Rasters too (issue 14 item 5): the DTM/DSM/nDSM of a confidential point cloud are confidential assets whose
    files the build's commit seals; a reader with the key opens a decrypted copy outside the store, with the same
    bytes as the same build made in clear; a copy of the store without the key cannot open them."""
    import rasterio

    from tests.pipeline.test_kill import _sources
    from twin.store import ASSETS
    from twin.store.crypt import Key, KeyMissing

    src = _sources(tmp_path / "src")
    monkeypatch.setenv("TWIN_PLAIN_DIR", str(tmp_path / "plain-copies"))
    key = Key.generate()
    stores = {}
    for name, k in (("sealed", key), ("clear", None)):
        Store.init(tmp_path / name)
        s = stores[name] = Store(tmp_path / name, key=k)
        ingest_paths(s, [src / "cadastre"])
        ingest_paths(s, [src / "lidar"], classification="confidential")
        build(s)
    sealed, clear = stores["sealed"], stores["clear"]
    products = {a["id"]: a for a in sealed.features(query=Query(collection=ASSETS)) if a["kind"] == "product"}
    assert len(products) == 3 and all(a["classification"] == "confidential" for a in products.values())
    assert not list(sealed.root.rglob("*.tif")) and len(list((sealed.root / "products").rglob("*.sealed"))) == 3
    for p in sealed.root.rglob("*"):
        if p.is_file():
            assert not p.read_bytes().startswith((b"II*\x00", b"MM\x00*")), p  # no GeoTIFF in clear
    for aid, asset in products.items():
        opened = Store(sealed.root, key=key).asset_path(asset)
        assert opened.read_bytes() == clear.asset_path(clear.get(aid, collection=ASSETS)).read_bytes()
        with rasterio.open(opened) as ds:
            assert ds.crs is not None and ds.read(1).size > 0
        with pytest.raises(KeyMissing):
            Store(sealed.root).asset_path(asset)
    # a second build with nothing new reuses the sealed rasters (no new commit, nothing left in clear)
    head = sealed.head()
    assert build(sealed) is None and sealed.head() == head and not list(sealed.root.rglob("*.tif"))
