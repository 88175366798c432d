"""Terrain and trees by block: seams do not show, results match one whole-city block, COGs are written."""

from __future__ import annotations

import numpy as np
import rasterio

from twin.reality3d.terrain_blocks import terrain_by_tile


def test_small_blocks_match_one_block(city, tmp_path) -> None:
    laz = sorted((city["dir"] / "sources" / "lidar").glob("*.laz"))
    whole = terrain_by_tile(laz, tmp_path / "whole", resolution=1.0, to_crs="EPSG:4548", block_m=5000)
    tiled = terrain_by_tile(laz, tmp_path / "tiled", resolution=1.0, to_crs="EPSG:4548", block_m=200, workers=2)
    assert whole.blocks == 1 and tiled.blocks >= 9
    for name in ("dtm", "dsm", "ndsm"):
        with rasterio.open(whole.files[name]) as a, rasterio.open(tiled.files[name]) as b:
            assert a.transform == b.transform and a.crs.to_epsg() == 4548 and b.overviews(1)
            da, db = a.read(1), b.read(1)
        diff = np.abs(da - db)
        print(f"{name}: blocks of 200 m vs one block: max |diff| {diff.max():.3f} m, p99 {np.percentile(diff, 99):.3f}")
        assert np.percentile(diff, 99) < 0.05 and np.median(diff) == 0.0
    # the same treetops (a few may move across a seam by a cell)
    a = {(round(x), round(y)) for x, y in zip(whole.trees.x, whole.trees.y, strict=True)}
    b = {(round(x), round(y)) for x, y in zip(tiled.trees.x, tiled.trees.y, strict=True)}
    assert len(a) > 1000 and len(a ^ b) <= 0.02 * len(a)
