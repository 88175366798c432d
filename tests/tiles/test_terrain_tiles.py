"""Terrain tiles: implicit quadtree consistent with its subtrees and files, each tile inside its implicit region,
heights equal to the DTM (pyproj back to geodetic), colours from our imagery."""

from __future__ import annotations

import json
import math

import numpy as np
import pyproj
import pytest
import rasterio

from tests.tiles.helpers_tiles import geodetic, glb_points
from twin.tiles.implicit import level_offset, morton, read_subtree, subtree_bytes
from twin.tiles.terrain import build_terrain_tileset


def _tile_region(root: list[float], level: int, x: int, y: int) -> list[float]:
    """Implicit subdivision of a region: halves in longitude (x, west → east) and latitude (y, south → north)."""
    w, s, e, n = root[:4]
    dx, dy = (e - w) / 2**level, (n - s) / 2**level
    return [w + x * dx, s + y * dy, w + (x + 1) * dx, s + (y + 1) * dy, root[4], root[5]]


def _available(doc: dict, base) -> dict[tuple[int, int, int], bool]:
    """Walk the subtrees from the root: {(level, x, y): has content} for every available tile."""
    imp = doc["root"]["implicitTiling"]
    per, levels = imp["subtreeLevels"], imp["availableLevels"]
    out: dict[tuple[int, int, int], bool] = {}
    todo = [(0, 0, 0)]
    while todo:
        lv0, x0, y0 = todo.pop()
        uri = imp["subtrees"]["uri"].format(level=lv0, x=x0, y=y0)
        sub = read_subtree((base / uri).read_bytes(), per)
        for lv in range(per):
            for x in range(2**lv):
                for y in range(2**lv):
                    bit = level_offset(lv) + int(morton(x, y))
                    if sub["tiles"][bit]:
                        assert lv0 + lv < levels
                        out[(lv0 + lv, x0 * 2**lv + x, y0 * 2**lv + y)] = bool(sub["content"][bit])
        k = 2**per
        for x in range(k):
            for y in range(k):
                if sub["children"][int(morton(x, y))]:
                    todo.append((lv0 + per, x0 * k + x, y0 * k + y))
    return out


def test_subtree_round_trip_and_morton_order() -> None:
    assert [int(morton(x, y)) for y in range(2) for x in range(2)] == [0, 1, 2, 3]
    assert int(morton(3, 5)) == 0b100111
    rng = np.random.default_rng(1)
    tiles, content, children = rng.random(21) > 0.3, rng.random(21) > 0.5, np.zeros(64, bool)
    back = read_subtree(subtree_bytes(tiles, content, children), 3)
    assert (back["tiles"] == tiles).all() and (back["content"] == content).all() and not back["children"].any()
    data = subtree_bytes(np.ones(5, bool), np.ones(5, bool), np.zeros(16, bool))
    assert data[:4] == b"subt" and len(data) % 8 == 0 and b'"constant":1' in data


@pytest.mark.parametrize("subtree_levels", [None, 2])
def test_availability_matches_the_files_and_tiles_sit_in_their_regions_at_dtm_height(city_tiles, tmp_path,
                                                                                     subtree_levels) -> None:
    if subtree_levels is None:
        path = city_tiles["terrain"]
    else:  # several subtree levels: child subtrees are exercised
        inputs = city_tiles["cache"].terrain_inputs("main", city_tiles["version"])
        path = build_terrain_tileset(inputs, tmp_path, subtree_levels=subtree_levels)
    doc = json.loads(path.read_text())
    root = doc["root"]
    assert doc["asset"]["version"] == "1.1" and root["refine"] == "REPLACE"
    assert doc["geometricError"] > root["geometricError"] > 0
    levels = root["implicitTiling"]["availableLevels"]
    assert levels >= 3
    avail = _available(doc, path.parent)
    digest = path.stem
    files = {tuple(int(v) for v in (p.parent.parent.name, p.parent.name, p.stem))
             for p in (path.parent / digest / "content").glob("*/*/*.glb")}
    assert {k for k, c in avail.items() if c} == files  # every content URI resolves, every file is reachable
    assert (0, 0, 0) in avail and any(k[0] == levels - 1 for k in avail)
    subtrees = list((path.parent / digest / "subtrees").glob("*/*/*.subtree"))
    per = root["implicitTiling"]["subtreeLevels"]
    assert len(subtrees) == 1 + sum(1 for k in avail if k[0] % per == 0 and k[0] > 0)
    for lv, x, y in avail:  # a tile's parent is available
        assert lv == 0 or (lv - 1, x // 2, y // 2) in avail

    src = city_tiles["cache"].terrain_inputs("main", city_tiles["version"])["source"]["dtm"][2]
    with rasterio.open(src) as ds:
        dtm, tr, crs = ds.read(1), ds.transform, ds.crs.to_string()
    to_crs = pyproj.Transformer.from_crs("EPSG:4979", crs, always_xy=True)
    leaf_err = []
    for lv, x, y in sorted(files)[:: max(1, len(files) // 25)]:
        uri = root["content"]["uri"].format(level=lv, x=x, y=y)
        _, _, prims = glb_points((path.parent / uri).read_bytes(), np.eye(4))
        geo = geodetic(prims[0]["ecef"])
        reg = _tile_region(root["boundingVolume"]["region"], lv, x, y)
        eps = 1e-9
        assert (geo[:, 0] >= reg[0] - eps).all() and (geo[:, 0] <= reg[2] + eps).all()
        assert (geo[:, 1] >= reg[1] - eps).all() and (geo[:, 1] <= reg[3] + eps).all()
        assert (geo[:, 2] >= reg[4]).all() and (geo[:, 2] <= reg[5]).all()
        # height = the DTM at that point: nearest cell centre within the local relief
        ex, ny = to_crs.transform(np.degrees(geo[:, 0]), np.degrees(geo[:, 1]))
        col, row = ~tr @ (np.asarray(ex), np.asarray(ny))
        c = np.clip(np.floor(col).astype(int), 0, dtm.shape[1] - 1)
        r = np.clip(np.floor(row).astype(int), 0, dtm.shape[0] - 1)
        if lv == levels - 1:
            leaf_err.append(np.median(np.abs(geo[:, 2] - dtm[r, c])))
        assert np.median(np.abs(geo[:, 2] - dtm[r, c])) < 0.1
        assert prims[0]["indices"].max() < len(geo)
    assert leaf_err and max(leaf_err) < 0.05


def test_vertex_colours_are_the_newest_imagery_in_true_colour(city_tiles) -> None:
    inputs = city_tiles["cache"].terrain_inputs("main", city_tiles["version"])
    image = inputs["imagery"]
    assert image[0] == "src-imagery-bj-sat-2024-06-03-tif"  # the newer of the two dates
    doc = json.loads(city_tiles["terrain"].read_text())
    levels = doc["root"]["implicitTiling"]["availableLevels"]
    leaves = sorted((city_tiles["terrain"].parent / city_tiles["terrain"].stem / "content" / str(levels - 1))
                    .glob("*/*.glb"))
    leaf = leaves[len(leaves) // 2]
    _, _, prims = glb_points(leaf.read_bytes(), np.eye(4))
    colour = prims[0]["color"].astype(np.float64) / 65535
    assert colour.shape[1] == 4 and (colour[:, 3] == 1).all()
    assert colour[:, :3].std(axis=0).min() > 0.01  # real imagery, not a flat fill
    geo = geodetic(prims[0]["ecef"])
    with rasterio.open(image[2]) as ds:
        to_img = pyproj.Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
        x, y = to_img.transform(np.degrees(geo[:, 0]), np.degrees(geo[:, 1]))
        rows, cols = rasterio.transform.rowcol(ds.transform, x, y)
        rgb = ds.read([1, 2, 3]).astype(np.float64)[:, np.asarray(rows), np.asarray(cols)].T
    # vertex colour (linear) and pixel reflectance rise together in every band
    for band in range(3):
        assert np.corrcoef(colour[:, band], rgb[:, band])[0, 1] > 0.8
    assert math.isfinite(colour.sum())
