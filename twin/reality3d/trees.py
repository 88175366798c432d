"""Individual trees from a canopy height model: local maxima with a height-dependent window, crowns by region growing.

1. The canopy height model (CHM) is the nDSM where vegetation returns are present and buildings are not, smoothed
   by a 3x3 binomial kernel;
2. treetops are cells above ``min_height`` that are the maximum of a square window whose radius grows with the
   height (``window_a + window_b * h`` metres: tall trees have wide crowns, so nearby bumps are not separate trees);
3. crowns grow from the treetops, one cell ring per step, into canopy cells that are above ``crown_floor`` of their
   treetop's height and within ``max_crown`` of it; a cell reached by several crowns joins the nearest treetop
   (a Voronoi-bounded, watershed-like assignment); all steps are whole-grid numpy operations;
4. each tree gets its position (treetop), height (max nDSM in the crown) and crown radius (radius of the circle of
   the crown's area), as a :class:`data_models.Vegetation` with the id ``tree-<x>-<y>`` (0.5 m rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from affine import Affine

from data_models import Vegetation
from data_models.common import Provenance
from twin.reality3d.ground import max_filter
from twin.reality3d.terrain import Terrain

METHOD = "chm-local-maxima-region-growing"


@dataclass
class TreeTable:
    """Detected trees as columns (metres, grid CRS plane)."""

    x: np.ndarray
    y: np.ndarray
    height: np.ndarray
    crown_radius: np.ndarray
    crown_area: np.ndarray
    labels: np.ndarray  # int32 crown label per cell (0 = none; tree i has label i + 1)

    def __len__(self) -> int:
        return len(self.x)


def _smooth(a: np.ndarray) -> np.ndarray:
    """3x3 binomial smoothing (edges repeat)."""
    p = np.pad(a, 1, mode="edge")
    rows = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
    return 0.25 * rows[:, :-2] + 0.5 * rows[:, 1:-1] + 0.25 * rows[:, 2:]


def canopy_height_model(ndsm: np.ndarray, veg_fraction: np.ndarray | None = None,
                        building_fraction: np.ndarray | None = None, *, smooth: bool = True) -> np.ndarray:
    """nDSM restricted to vegetation cells (any vegetation return, under half building returns), optionally smoothed."""
    chm = np.asarray(ndsm, dtype=np.float64)
    keep = np.ones(chm.shape, dtype=bool)
    if veg_fraction is not None and np.any(np.asarray(veg_fraction) > 0):  # unclassified clouds: no mask
        veg = max_filter(np.asarray(veg_fraction, dtype=np.float64), 1) > 0  # crown edges may miss a return
        keep &= veg
    if building_fraction is not None:
        keep &= np.asarray(building_fraction) < 0.5
    chm = np.where(keep, chm, 0.0)
    return _smooth(chm) if smooth else chm


def find_treetops(chm: np.ndarray, cell: float, *, min_height: float = 2.5, window_a: float = 1.0,
                  window_b: float = 0.05, max_window: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of local maxima above ``min_height`` in a window of radius ``window_a + window_b * h`` metres."""
    h, w = chm.shape
    # a deterministic sub-millimetre ramp breaks exact ties on plateaus
    z = chm + 1e-6 * (np.arange(h)[:, None] * w + np.arange(w)[None, :]) / (h * w)
    radius = np.clip(np.rint((window_a + window_b * chm) / cell), 1, max(int(round(max_window / cell)), 1)).astype(int)
    peak = np.zeros(chm.shape, dtype=bool)
    cand = chm >= min_height
    for r in np.unique(radius[cand]):
        m = cand & (radius == r)
        peak |= m & (z >= max_filter(z, int(r)))
    rows, cols = np.nonzero(peak)
    return rows, cols


def grow_crowns(chm: np.ndarray, rows: np.ndarray, cols: np.ndarray, cell: float, *, crown_floor: float = 0.55,
                min_canopy: float = 2.0, max_crown: float = 8.0, crown_factor: float = 0.6) -> np.ndarray:
    """Crown label per cell (tree i = i + 1, 0 = none) grown from treetops into nearby, high-enough canopy."""
    shape = chm.shape
    n = len(rows)
    labels = np.zeros(shape, dtype=np.int32)
    if n == 0:
        return labels
    labels[rows, cols] = np.arange(1, n + 1)
    top_h = np.concatenate([[0.0], chm[rows, cols]])
    top_r = np.concatenate([[0.0], rows.astype(np.float64)])
    top_c = np.concatenate([[0.0], cols.astype(np.float64)])
    # the largest crown radius a tree of its height may have (cells)
    reach = np.concatenate([[0.0], np.minimum(max_crown, crown_factor * top_h[1:] + 1.0) / cell])
    rr, cc = np.indices(shape, dtype=np.float64)
    canopy = chm >= min_canopy
    steps = int(np.ceil(reach.max())) + 1
    shifts = [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    for _ in range(steps):
        best = np.zeros(shape, dtype=np.int32)
        best_d = np.full(shape, np.inf)
        padded = np.pad(labels, 1)
        for dr, dc in shifts:
            lab = padded[1 + dr:1 + dr + shape[0], 1 + dc:1 + dc + shape[1]]
            d = np.hypot(rr - top_r[lab], cc - top_c[lab])
            ok = (lab > 0) & (labels == 0) & canopy & (chm >= crown_floor * top_h[lab]) & (d <= reach[lab])
            better = ok & (d < best_d)
            best = np.where(better, lab, best)
            best_d = np.where(better, d, best_d)
        grow = best > 0
        if not grow.any():
            break
        labels = np.where(grow, best, labels)
    return labels


def detect_trees(ndsm: np.ndarray, transform: Affine, *, veg_fraction: np.ndarray | None = None,
                 building_fraction: np.ndarray | None = None, min_height: float = 2.5, **kwargs) -> TreeTable:
    """Individual trees in an nDSM grid: treetops, crowns, heights and equivalent crown radii (see module doc)."""
    cell = abs(transform.a)
    chm = canopy_height_model(ndsm, veg_fraction, building_fraction)
    raw = canopy_height_model(ndsm, veg_fraction, building_fraction, smooth=False)
    top_kw = {k: kwargs[k] for k in ("window_a", "window_b", "max_window") if k in kwargs}
    grow_kw = {k: kwargs[k] for k in ("crown_floor", "min_canopy", "max_crown", "crown_factor") if k in kwargs}
    rows, cols = find_treetops(chm, cell, min_height=min_height, **top_kw)
    labels = grow_crowns(chm, rows, cols, cell, **grow_kw)
    n = len(rows)
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:] * cell * cell
    hmax = np.zeros(n + 1)
    np.maximum.at(hmax, flat, raw.ravel())
    x = transform.c + (cols + 0.5) * transform.a + (rows + 0.5) * transform.b
    y = transform.f + (cols + 0.5) * transform.d + (rows + 0.5) * transform.e
    return TreeTable(x=x, y=y, height=hmax[1:], crown_radius=np.sqrt(area / np.pi), crown_area=area, labels=labels)


def tree_id(x: float, y: float) -> str:
    """Stable id from a position rounded to 0.5 m: ``tree-<x>-<y>``."""
    return f"tree-{round(x * 2) / 2:.1f}-{round(y * 2) / 2:.1f}"


def to_entities(trees: TreeTable, *, asset_ids: Sequence[str] = (), xy_m: float = 1.0,
                method: str = METHOD) -> list[Vegetation]:
    """Trees as :class:`Vegetation` entities (Point in CRS units), provenance pointing at ``asset_ids``."""
    prov = [Provenance(source_asset_id=a, method=method) for a in asset_ids]
    out, seen = [], set()
    for x, y, h, r, a in zip(trees.x / xy_m, trees.y / xy_m, trees.height, trees.crown_radius, trees.crown_area,
                             strict=True):
        tid = tree_id(float(x), float(y))
        if tid in seen:  # two treetops in one 0.5 m bin cannot be told apart by id: keep the first
            continue
        seen.add(tid)
        out.append(Vegetation(
            id=tid, geometry={"type": "Point", "coordinates": [round(float(x), 3), round(float(y), 3)]},
            height=round(float(h), 2), crown_radius=round(float(r), 2),
            attributes={"method": method, "crown_area_m2": round(float(a), 2)}, provenance=list(prov),
        ))
    return out


def trees_from_terrain(terrain: Terrain, *, asset_ids: Sequence[str] = (), **kwargs) -> list[Vegetation]:
    """Individual trees of a :class:`Terrain` (its nDSM and vegetation / building fractions) as entities."""
    t = detect_trees(terrain.ndsm, terrain.transform, veg_fraction=terrain.veg_fraction,
                     building_fraction=terrain.building_fraction, **kwargs)
    return to_entities(t, asset_ids=asset_ids, xy_m=terrain.xy_m)
