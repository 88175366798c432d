"""Rasterise the city plan on a grid window: ground cover, building ids, tree ids.

Shared by the LiDAR simulator (fine grid, per tile) and the imagery / land-cover writers (image grid, per
window).
"""

from __future__ import annotations

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import box

from .layout import BARE, GRASS, IMPERVIOUS, WATER, City

ROAD, BRIDGE = 7, 8  # internal ground codes in addition to IMPERVIOUS, GRASS, WATER, BARE


class Index:
    """Spatial indexes over the plan, built once per city and date."""

    def __init__(self, city: City, date_index: int):
        self.city = city
        present = city.present(date_index)
        self.ground_shapes: list[tuple[object, int]] = []
        for b in city.blocks:
            self.ground_shapes.append((b["poly"], b["cover"]))
        for g in city.lawns:
            self.ground_shapes.append((g, GRASS))
        for g in city.sites(date_index):
            self.ground_shapes.append((g, BARE))
        self.ground_shapes.append((city.water, WATER))
        for g in city.road_polys:
            self.ground_shapes.append((g, ROAD))
        for g in city.bridges:
            self.ground_shapes.append((g, BRIDGE))
        self.ground_tree = shapely.STRtree([g for g, _ in self.ground_shapes])
        # building parts of standing buildings; value = part index + 1
        pb = city.parts["building"]
        standing = np.zeros(len(city.buildings), bool)
        standing[present] = True
        self.part_ids = np.nonzero(standing[pb])[0]
        self.part_tree = shapely.STRtree(city.part_polys[self.part_ids])
        # tree crowns, drawn lowest first so the tallest crown wins where crowns overlap
        t = city.trees
        order = np.lexsort((np.arange(len(t["x"])), t["height"]))
        self.tree_order = order
        self.crowns = shapely.buffer(
            shapely.points(t["x"][order], t["y"][order]), t["crown_r"][order], quad_segs=8
        )
        self.crown_tree = shapely.STRtree(self.crowns)

    def rasterize(self, x0: float, y1: float, width: int, height: int, res: float, trees: bool = True):
        """Return (ground code uint8, part id int32 (index+1, 0 none), tree id int32 (index+1, 0 none))."""
        tr = Affine(res, 0.0, x0, 0.0, -res, y1)
        win = box(x0, y1 - height * res, x0 + width * res, y1)
        shape = (height, width)
        idx = np.sort(self.ground_tree.query(win, predicate="intersects"))
        ground = rasterize(
            [self.ground_shapes[i] for i in idx],
            out_shape=shape,
            transform=tr,
            fill=IMPERVIOUS,
            dtype="uint8",
        )
        idx = np.sort(self.part_tree.query(win, predicate="intersects"))
        parts = np.zeros(shape, np.int32)
        if len(idx):
            pid = self.part_ids[idx]
            parts = rasterize(
                zip(self.city.part_polys[pid], (pid + 1).tolist(), strict=True),
                out_shape=shape,
                transform=tr,
                fill=0,
                dtype="int32",
            )
        tid = np.zeros(shape, np.int32)
        if trees:
            idx = np.sort(self.crown_tree.query(win, predicate="intersects"))
            if len(idx):
                ids = self.tree_order[idx] + 1
                tid = rasterize(
                    zip(self.crowns[idx], ids.tolist(), strict=True),
                    out_shape=shape,
                    transform=tr,
                    fill=0,
                    dtype="int32",
                )
        return ground, parts, tid
