"""`twin build` keeps DTM/DSM/nDSM COGs in the store as product assets: versioned, reused, cleaned on failure."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio

from tests.reality3d.test_terrain import _truth_ground
from twin.pipeline import build as build_mod
from twin.pipeline.build import build
from twin.pipeline.terrain_products import PRODUCT_IDS
from twin.store import Store


def test_build_records_terrain_cogs_that_match_truth(built_city) -> None:
    s = Store(built_city["store"])
    assets = {k: s.get(i, collection="assets") for k, i in PRODUCT_IDS.items()}
    assert all(a is not None and a["kind"] == "product" for a in assets.values())
    dtm = s.asset_path(assets["dtm"])
    assert not assets["dtm"]["path"].startswith("/") and dtm.is_relative_to(s.root)
    with rasterio.open(dtm) as src:
        assert src.crs.to_epsg() == 4548 and src.profile["tiled"] and src.overviews(1)
        p = _truth_ground(built_city["dir"])
        z = np.array([v[0] for v in src.sample(p[:, :2])])
    assert np.median(np.abs(z - p[:, 2])) <= 0.15
    with rasterio.open(s.asset_path(assets["ndsm"])) as src:
        assert np.nanmin(src.read(1, masked=True)) >= 0
    assert assets["dtm"]["properties"]["sources"] and assets["dtm"]["properties"]["resolution"] == 1.0


def test_rebuild_reuses_products_and_failed_build_leaves_no_files(built_city, tmp_path, monkeypatch) -> None:
    root = tmp_path / "store"
    shutil.copytree(built_city["store"], root)
    s = Store(root)
    assert build(s, only=["reality3d"]) is None  # same clouds: same files, nothing to commit
    folders = sorted((root / "products" / "terrain").iterdir())
    # a re-flown area: the products go to a new folder, which a failing build must not leave behind
    shutil.rmtree(folders[0])

    def boom(ctx) -> None:
        raise RuntimeError("injected failure after reality3d")

    monkeypatch.setitem(build_mod.STEPS, "layers", boom)
    with pytest.raises(RuntimeError, match="injected"):
        build(s, only=["reality3d", "layers"])
    assert not (root / "products" / "terrain").exists() or not any((root / "products" / "terrain").iterdir())
    assert not any((root / "tmp").iterdir())
