"""Candidate building outlines from LiDAR: building points (class 6) that no known footprint explains.

Building points are binned onto a fixed metric grid (cells of ``cell`` metres anchored at the CRS origin, so the
same data always gives the same cells and ids), kept as a sparse set of occupied cells while the files stream and
thinned file by file to the cells no known footprint explains.
The grid is then processed in blocks (bounded memory for any city size): gaps between points are closed
(dilate + erode), cells within ``footprint_buffer`` of a known footprint are removed, an opening drops slivers
along known buildings' edges, connected regions are polygonised (rasterio), and regions of at least ``min_area``
are simplified (near-rectangular ones replaced by their minimum rotated rectangle) and returned as candidate
``Building`` objects with low-confidence provenance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import shapely
from rasterio import features
from rasterio.transform import from_origin

from data_models import Building, Provenance, Quality
from twin.catalog.assets import asset_id
from twin.lidar.classes import BUILDING_CLASS
from twin.lidar.heights import metric_frame, per_file_crs, to_metres
from twin.sources import points

CELL_M = 0.5  # grid cell (metres)
CLOSE_M = 1.0  # closing radius: gaps up to about twice this between points are filled
OPEN_M = 1.0  # opening radius: strips narrower than about twice this are dropped
FOOTPRINT_BUFFER_M = 1.0  # building points this close to a known footprint belong to it
MIN_AREA_M2 = 25.0  # smallest candidate
RECT_FILL = 0.92  # a region filling this much of its minimum rotated rectangle becomes that rectangle
CONFIDENCE = 0.4  # provenance confidence of a LiDAR-only outline
BLOCK_CELLS = 2048  # block core (cells); each block is processed with a margin around it
MARGIN_CELLS = 256
_OFF = 1 << 30  # makes cell indices non-negative for the packed keys


def _dilate(a: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)² square, separable, with False beyond the edges."""
    if r <= 0:
        return a
    out = a.copy()
    for k in range(1, r + 1):
        out[k:, :] |= a[:-k, :]
        out[:-k, :] |= a[k:, :]
    a = out.copy()
    for k in range(1, r + 1):
        out[:, k:] |= a[:, :-k]
        out[:, :-k] |= a[:, k:]
    return out


def _erode(a: np.ndarray, r: int) -> np.ndarray:
    return ~_dilate(~a, r)


def close(a: np.ndarray, r: int) -> np.ndarray:
    """Morphological closing (fills gaps narrower than about 2r cells)."""
    p = np.pad(a, r)
    return _erode(_dilate(p, r), r)[r:r + a.shape[0], r:r + a.shape[1]] if r > 0 else a


def open_(a: np.ndarray, r: int) -> np.ndarray:
    """Morphological opening (removes parts narrower than about 2r cells)."""
    return _dilate(_erode(a, r), r) if r > 0 else a


def _merge(keys: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique packed cell keys with their summed point counts."""
    if not keys:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    k, inv = np.unique(np.concatenate(keys), return_inverse=True)
    return k, np.bincount(inv, weights=np.concatenate(counts)).astype(np.int64)


def _unpack(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (k >> 32) - _OFF, (k & 0xFFFFFFFF) - _OFF


def _drop_known(k: np.ndarray, n: np.ndarray, tree: shapely.STRtree | None, cell: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Cells outside every (buffered) known footprint, tested block by block: memory stays bounded by the
    orphan cells, not by all the building cells of the city."""
    if tree is None or len(k) == 0:
        return k, n
    cols, rows = _unpack(k)
    keep = np.ones(len(k), dtype=bool)
    bc_all, br_all = np.floor_divide(cols, BLOCK_CELLS), np.floor_divide(rows, BLOCK_CELLS)
    for bc, br in np.unique(np.column_stack([bc_all, br_all]), axis=0):
        sel = np.flatnonzero((bc_all == bc) & (br_all == br))
        c0, r0 = int(bc) * BLOCK_CELLS, int(br) * BLOCK_CELLS
        window = shapely.box(c0 * cell, r0 * cell, (c0 + BLOCK_CELLS) * cell, (r0 + BLOCK_CELLS) * cell)
        hits = tree.query(window)
        if not len(hits):
            continue
        mask = features.rasterize(((tree.geometries[h], 1) for h in hits), out_shape=(BLOCK_CELLS, BLOCK_CELLS),
                                  transform=from_origin(c0 * cell, (r0 + BLOCK_CELLS) * cell, cell, cell),
                                  dtype="uint8", all_touched=True)
        keep[sel] = mask[(r0 + BLOCK_CELLS - 1) - rows[sel], cols[sel] - c0] == 0
    return k[keep], n[keep]


def _occupied_cells(las_files: Sequence[Path], declared: Sequence[str | None], to_crs, cell: float,
                    tree: shapely.STRtree | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[float]]]:
    """(col, row, point count) of every grid cell holding building points outside the known footprints, and
    each file's building-point bbox; cells are merged and filtered file by file."""
    keys: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    boxes: list[list[float]] = []
    for path, c in zip(las_files, declared, strict=True):
        box = [np.inf, np.inf, -np.inf, -np.inf]
        fk: list[np.ndarray] = []
        fn: list[np.ndarray] = []
        for chunk in points.iter_points(path, crs=c, to_crs=to_crs):
            b = chunk["classification"] == BUILDING_CLASS
            if not b.any():
                continue
            x, y = chunk["x"][b], chunk["y"][b]
            box = [min(box[0], x.min()), min(box[1], y.min()), max(box[2], x.max()), max(box[3], y.max())]
            col = np.floor(x / cell).astype(np.int64) + _OFF
            row = np.floor(y / cell).astype(np.int64) + _OFF
            k, n = np.unique((col << 32) | row, return_counts=True)
            fk.append(k)
            fn.append(n)
        k, n = _drop_known(*_merge(fk, fn), tree, cell)
        keys.append(k)
        counts.append(n)
        boxes.append([float(v) for v in box])
    k, n = _merge(keys, counts)
    return *_unpack(k), n, boxes


def _regularise(poly: shapely.Polygon, cell: float) -> shapely.Polygon:
    """Staircase raster outline → straight edges: the minimum rotated rectangle when the region nearly fills it,
    else a topology-preserving simplification at about one cell."""
    rect = shapely.minimum_rotated_rectangle(poly)
    if rect.area > 0 and poly.area / rect.area >= RECT_FILL and not poly.interiors:
        return rect
    g = poly.simplify(cell, preserve_topology=True)
    return g if isinstance(g, shapely.Polygon) and g.is_valid and not g.is_empty else poly


def candidate_outlines(
    las_files: Sequence[Path | str],
    footprints: Sequence[shapely.Geometry],
    *,
    crs: str | None = None,
    las_crs: str | Sequence[str | None] | None = None,
    cell: float = CELL_M,
    min_area: float = MIN_AREA_M2,
    footprint_buffer: float = FOOTPRINT_BUFFER_M,
    asset_ids: Sequence[str] | None = None,
    acquired: datetime | None = None,
    classification: str = "public",
) -> list[Building]:
    """Candidate buildings (``attributes.candidate = True``) where building-class points lie outside every known
    footprint; geometries in ``crs`` (the footprints' CRS, default the files' common CRS), sorted by id.

    ``las_crs`` declares the CRS of files without one; ``asset_ids`` (one per file) name the provenance source
    (default: the ingest's asset id of each path).
    """
    paths = [Path(p) for p in las_files]
    if not paths:
        return []
    declared = per_file_crs(paths, las_crs)
    frame, unit = metric_frame(paths, crs, declared)
    ids = list(asset_ids) if asset_ids is not None else [asset_id(p) for p in paths]
    known = [g for g in to_metres(list(footprints), unit) if g is not None and not g.is_empty]
    tree = shapely.STRtree(shapely.buffer(np.asarray(known, dtype=object), footprint_buffer)) if known else None
    cols, rows, counts, boxes = _occupied_cells(paths, declared, frame if crs is not None else None, cell, tree)
    if len(cols) == 0:
        return []
    r_close, r_open = max(1, round(CLOSE_M / cell)), max(1, round(OPEN_M / cell))
    found: list[tuple[shapely.Polygon, int, int]] = []  # (metric polygon, points, occupied cells)
    c_lo, r_lo = int(cols.min()), int(rows.min())
    for bc in range(c_lo, int(cols.max()) + 1, BLOCK_CELLS):
        for br in range(r_lo, int(rows.max()) + 1, BLOCK_CELLS):
            core = (cols >= bc) & (cols < bc + BLOCK_CELLS) & (rows >= br) & (rows < br + BLOCK_CELLS)
            if not core.any():
                continue
            found += _block(cols, rows, counts, bc, br, cell, tree, r_close, r_open, min_area)
    out: list[Building] = []
    seen: set[str] = set()
    for poly, n_pts, n_cells in found:
        g = poly if unit == 1.0 else shapely.transform(poly, lambda c: c / unit)
        c = g.centroid
        base = f"bldg-lidar-{round(c.x)}-{round(c.y)}"
        bid, k = base, 1
        while bid in seen:
            k += 1
            bid = f"{base}-{k}"
        seen.add(bid)
        m = poly.centroid
        src = next((i for i, b in enumerate(boxes) if b[0] <= m.x <= b[2] and b[1] <= m.y <= b[3]), 0)
        area = float(poly.area)
        cells_in = max(1, round(area / (cell * cell)))
        out.append(Building(
            id=bid,
            geometry=json.loads(shapely.to_geojson(g)),
            attributes={"candidate": True, "source": "lidar-building-points", "area_m2": round(area, 2),
                        "n_points": int(n_pts), "cell_m": cell},
            provenance=[Provenance(source_asset_id=ids[src], acquired=acquired, method=f"lidar-class6-outline-"
                                   f"raster-{cell:g}m", confidence=CONFIDENCE, attribute="geometry",
                                   note="candidate: building points without a known footprint")],
            quality=Quality(point_density=round(n_pts / area, 3) if area else 0.0,
                            nodata_fraction=round(max(0.0, 1.0 - n_cells / cells_in), 3), valid=bool(g.is_valid)),
            classification=classification,
        ))
    return sorted(out, key=lambda b: b.id)


def _block(cols: np.ndarray, rows: np.ndarray, counts: np.ndarray, bc: int, br: int, cell: float,
           tree: shapely.STRtree | None, r_close: int, r_open: int, min_area: float
           ) -> list[tuple[shapely.Polygon, int, int]]:
    """Candidates whose centroid falls in one block's core (the margin lets regions crossing its edge close)."""
    c0, r0 = bc - MARGIN_CELLS, br - MARGIN_CELLS
    size = BLOCK_CELLS + 2 * MARGIN_CELLS
    sel = (cols >= c0) & (cols < c0 + size) & (rows >= r0) & (rows < r0 + size)
    i = (r0 + size - 1) - rows[sel]  # raster row 0 = north
    j = cols[sel] - c0
    occ = np.zeros((size, size), dtype=bool)
    occ[i, j] = True
    npts = np.zeros((size, size), dtype=np.int64)
    npts[i, j] = counts[sel]
    transform = from_origin(c0 * cell, (r0 + size) * cell, cell, cell)
    region = close(occ, r_close)
    if tree is not None:
        window = shapely.box(c0 * cell, r0 * cell, (c0 + size) * cell, (r0 + size) * cell)
        hits = tree.query(window)
        if len(hits):
            mask = features.rasterize(((tree.geometries[h], 1) for h in hits), out_shape=occ.shape,
                                      transform=transform, dtype="uint8", all_touched=True).astype(bool)
            region &= ~mask
    region = open_(region, r_open)
    if not region.any():
        return []
    polys = [shapely.geometry.shape(geom) for geom, v in
             features.shapes(region.astype(np.uint8), mask=region, transform=transform, connectivity=4) if v == 1]
    polys = [p for p in polys if p.area >= min_area]
    if not polys:
        return []
    labels = features.rasterize(((p, k + 1) for k, p in enumerate(polys)), out_shape=occ.shape,
                                transform=transform, dtype="int32")
    pts = np.bincount(labels.ravel(), weights=npts.ravel(), minlength=len(polys) + 1)
    cells = np.bincount(labels.ravel(), weights=occ.ravel().astype(np.float64), minlength=len(polys) + 1)
    core = shapely.box(bc * cell, br * cell, (bc + BLOCK_CELLS) * cell, (br + BLOCK_CELLS) * cell)
    out = []
    for k, p in enumerate(polys):
        if not core.covers(p.centroid):
            continue  # another block owns it
        holes = [h for h in p.interiors if shapely.Polygon(h).area >= min_area]
        p = shapely.Polygon(p.exterior, holes)
        out.append((_regularise(p, cell), int(pts[k + 1]), int(cells[k + 1])))
    return out
