"""H3 indexing of coordinate arrays (cells as uint64), identical to h3-py's ``latlng_to_cell`` for every point."""

from __future__ import annotations

import h3
import numpy as np


def latlng_to_cells(lat: np.ndarray, lng: np.ndarray, res: int) -> np.ndarray:
    """H3 cells (uint64) of WGS84 positions at ``res``; NaN positions give 0."""
    lat = np.asarray(lat, dtype=np.float64)
    lng = np.asarray(lng, dtype=np.float64)
    out = np.zeros(lat.shape, dtype=np.uint64)
    ok = np.isfinite(lat) & np.isfinite(lng)
    f = h3.latlng_to_cell
    out[ok] = [h3.str_to_int(f(a, b, res)) for a, b in zip(lat[ok].tolist(), lng[ok].tolist(), strict=True)]
    return out


def cells_to_parent(cells: np.ndarray, res: int) -> np.ndarray:
    """Parent cells at coarser ``res`` (computed once per distinct cell)."""
    cells = np.asarray(cells, dtype=np.uint64)
    uniq, inv = np.unique(cells, return_inverse=True)
    parents = np.array([h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), res)) for c in uniq.tolist()],
                       dtype=np.uint64)
    return parents[inv]
