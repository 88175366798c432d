"""Individual trees from the nDSM on the demo city, scored against truth/trees.csv."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from affine import Affine

from data_models import Vegetation
from twin.reality3d.terrain import build_terrain
from twin.reality3d.trees import detect_trees, tree_id, trees_from_terrain


@pytest.fixture(scope="module")
def trees_city(city):
    """The session's small demo city, its terrain at 1 m and its true trees, built once for this module."""
    out = city["dir"]
    terrain = build_terrain(sorted((out / "sources" / "lidar").glob("*.laz")), resolution=1.0)
    with (out / "truth" / "trees.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    truth = {k: np.array([float(r[c]) for r in rows]) for k, c in
             (("x", "x_epsg4548"), ("y", "y_epsg4548"), ("h", "height_m"), ("r", "crown_radius_m"))}
    return {"terrain": terrain, "truth": truth}


def _match(dx, dy, tx, ty, max_d: float = 2.0) -> np.ndarray:
    """One-to-one matches (detected, true) within ``max_d``, closest pairs first."""
    d = np.hypot(dx[:, None] - tx[None, :], dy[:, None] - ty[None, :])
    i, j = np.nonzero(d <= max_d)
    order = np.argsort(d[i, j], kind="stable")
    used_d, used_t, pairs = set(), set(), []
    for a, b in zip(i[order].tolist(), j[order].tolist(), strict=True):  # candidate pairs only (a few thousand)
        if a not in used_d and b not in used_t:
            used_d.add(a)
            used_t.add(b)
            pairs.append((a, b))
    return np.array(pairs, dtype=int).reshape(-1, 2)


def test_trees_match_truth(trees_city):
    t, truth = trees_city["terrain"], trees_city["truth"]
    trees = trees_from_terrain(t, asset_ids=["lidar-demo"])
    dx = np.array([v.geometry.coordinates[0] for v in trees])
    dy = np.array([v.geometry.coordinates[1] for v in trees])
    p = _match(dx, dy, truth["x"], truth["y"])
    det, prec = len(p) / len(truth["x"]), len(p) / len(trees)
    h = np.array([v.height for v in trees])
    r = np.array([v.crown_radius for v in trees])
    h_mae = float(np.mean(np.abs(h[p[:, 0]] - truth["h"][p[:, 1]])))
    r_mae = float(np.mean(np.abs(r[p[:, 0]] - truth["r"][p[:, 1]])))
    print(f"trees: {len(trees)} detected, {len(truth['x'])} true, detection {det:.3f}, precision {prec:.3f}, "
          f"height MAE {h_mae:.3f} m, crown radius MAE {r_mae:.3f} m")
    assert det >= 0.7 and prec >= 0.7 and h_mae <= 1.0
    assert r_mae <= 1.0


def test_tree_entities(trees_city):
    trees = trees_from_terrain(trees_city["terrain"], asset_ids=["lidar-demo"])
    assert all(isinstance(v, Vegetation) and v.geometry.type == "Point" for v in trees)
    assert len({v.id for v in trees}) == len(trees)
    v = trees[0]
    x, y = v.geometry.coordinates
    assert v.id == tree_id(x, y) and v.id.startswith("tree-")
    assert v.attributes["method"] and v.provenance[0].source_asset_id == "lidar-demo"
    assert v.height >= 2.5 and v.crown_radius > 0
    again = trees_from_terrain(trees_city["terrain"], asset_ids=["lidar-demo"])
    assert [a.id for a in again] == [b.id for b in trees]  # deterministic ids


def test_tree_id_rounds_to_half_metre():
    assert tree_id(448330.62, 4418876.21) == "tree-448330.5-4418876.0"
    assert tree_id(10.76, 3.2) == "tree-11.0-3.0"


def test_synthetic_crowns_sizes():
    """Two cone-shaped crowns on a 0.5 m grid: two trees, right heights and crown radii."""
    yy, xx = np.mgrid[0:80, 0:80] * 0.5 + 0.25
    ndsm = np.zeros((80, 80))
    for cx, cy, hh, rr in ((10.0, 10.0, 12.0, 4.0), (28.0, 28.0, 8.0, 3.0)):
        d = np.hypot(xx - cx, (40 - yy) - cy)
        ndsm = np.maximum(ndsm, np.where(d < rr, hh * (1 - 0.5 * d / rr), 0.0))
    t = detect_trees(ndsm, Affine(0.5, 0, 0, 0, -0.5, 40.0), veg_fraction=(ndsm > 0).astype(float))
    assert len(t) == 2
    order = np.argsort(-t.height)
    np.testing.assert_allclose(t.height[order], [12.0, 8.0], atol=0.6)  # cone apex between cell centres
    np.testing.assert_allclose(t.x[order], [10.0, 28.0], atol=0.6)
    assert (t.crown_radius[order] > [2.5, 1.8]).all() and (t.crown_radius[order] < [4.5, 3.5]).all()
