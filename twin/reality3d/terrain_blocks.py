"""Terrain and trees by spatial block, in worker processes: DTM/DSM/nDSM COGs and treetops for a whole city.

The city grid is cut into square blocks; each job grids only the LiDAR files its block (plus a margin) touches,
runs :func:`twin.reality3d.terrain.build_terrain` and tree detection on the buffered block, and keeps the interior:
memory is bounded by a block, not by the city. The margin covers gap filling, the ground filter's windows and tree
crowns, so block seams do not show. The parent writes each interior into tiled GeoTIFFs by window and converts them
to COGs at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from twin.compute import executor
from twin.reality3d import ground as gf
from twin.reality3d.terrain import NODATA, _bounds
from twin.reality3d.trees import TreeTable, detect_trees

BLOCK_M = 1000.0  # block side in metres
MARGIN_M = 40.0  # buffer around a block: > the widest treetop window and crown, and the ground filter's window
PRODUCTS = ("dtm", "dsm", "ndsm")


@dataclass
class TiledTerrain:
    """What the blocks produced: COG paths, the treetops, and how ground was found."""

    files: dict[str, Path]
    trees: TreeTable
    transform: Affine  # city grid, metres of the CRS plane
    shape: tuple[int, int]
    xy_m: float
    ground_method: str
    nodata_fraction: float
    blocks: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        h, w = self.shape
        t = self.transform
        return t.c, t.f + h * t.e, t.c + w * t.a, t.f


def _job(paths: list[str], crs: str | None, to_crs: str | None, resolution: float, outer: list[float],
         inner: list[float]) -> dict[str, Any]:
    """One block: terrain over ``outer`` (buffered), interior rasters and interior treetops."""
    from twin.reality3d.terrain import build_terrain

    t = build_terrain([Path(p) for p in paths], resolution=resolution, crs=crs, to_crs=to_crs, bounds=outer)
    inv = ~t.transform
    c0, r0 = (int(round(v)) for v in inv @ (inner[0], inner[3]))
    c1, r1 = (int(round(v)) for v in inv @ (inner[2], inner[1]))
    crop = (slice(r0, r1), slice(c0, c1))
    trees = detect_trees(t.ndsm, t.transform, veg_fraction=t.veg_fraction, building_fraction=t.building_fraction)
    keep = (trees.x >= inner[0]) & (trees.x < inner[2]) & (trees.y >= inner[1]) & (trees.y < inner[3])
    return {
        "dtm": t.dtm[crop], "dsm": t.dsm[crop], "ndsm": t.ndsm[crop], "xy_m": t.xy_m, "method": t.ground_method,
        "nodata": int(np.sum(t.ground_count[crop] == 0)),
        "trees": {k: getattr(trees, k)[keep] for k in ("x", "y", "height", "crown_radius", "crown_area")},
    }


def terrain_by_tile(paths: Sequence[Path], out_dir: Path, *, resolution: float = 1.0, crs: str | None = None,
                    to_crs: str | None = None, las_bounds: Sequence[Sequence[float]] | None = None,
                    out_crs: str | None = None, workers: int | None = None, block_m: float = BLOCK_M,
                    progress: Callable[[float], None] | None = None) -> TiledTerrain:
    """DTM/DSM/nDSM COGs of ``paths`` written to ``out_dir`` and the treetops, block by block.

    ``las_bounds`` (each file's extent in the grid CRS, metres) picks the files per block; when absent it is read
    from the headers. ``out_crs`` is written into the COGs (default ``to_crs``)."""
    ps = [Path(p) for p in paths]
    boxes = np.asarray(las_bounds if las_bounds is not None else [_bounds([p], crs, to_crs) for p in ps], float)
    city = (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
    transform, (h, w) = gf.grid_for(city, resolution)
    step = max(int(round(block_m / resolution)), 1)
    margin = int(np.ceil(MARGIN_M / resolution)) * resolution
    jobs = []
    for r in range(0, h, step):
        for c in range(0, w, step):
            win = Window(c, r, min(step, w - c), min(step, h - r))
            x0, y1 = transform @ (win.col_off, win.row_off)
            x1, y0 = transform @ (win.col_off + win.width, win.row_off + win.height)
            inner = [x0, y0, x1, y1]
            outer = [x0 - margin, y0 - margin, x1 + margin, y1 + margin]
            hit = (boxes[:, 0] <= outer[2]) & (boxes[:, 2] >= outer[0]) & (boxes[:, 1] <= outer[3]) & (
                boxes[:, 3] >= outer[1])
            if hit.any():
                jobs.append((win, [str(ps[i]) for i in np.flatnonzero(hit)], inner, outer))
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = {n: out_dir / f".{n}.tiled.tif" for n in PRODUCTS}
    args = [(j[1], crs, to_crs, resolution, j[3], j[2]) for j in jobs]
    trees: list[dict[str, np.ndarray]] = []
    method, nodata, xy_m = "classes", 0, 1.0
    dsts: dict[str, Any] = {}
    # spawned workers (no DuckDB state inherited); results in job order, at most 4 blocks per worker in flight
    ex = executor(workers or None, tasks=len(jobs), start="spawn")
    try:
        results = ex.map(_job, *zip(*args, strict=True), max_in_flight=4 * ex.workers)
        for i, (job, res) in enumerate(zip(jobs, results, strict=True)):
            xy_m = res["xy_m"]
            if not dsts:
                profile = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "float32",
                           "crs": out_crs or to_crs or crs, "transform": Affine.scale(1.0 / xy_m) @ transform,
                           "nodata": NODATA, "tiled": True, "blockxsize": 256, "blockysize": 256,
                           "compress": "DEFLATE", "predictor": 3, "BIGTIFF": "IF_SAFER"}
                # blocks no job writes (no file near) are filled with the nodata value by GDAL on close
                dsts = {n: rasterio.open(tmp[n], "w", **profile) for n in PRODUCTS}
            for n in PRODUCTS:
                dsts[n].write(res[n].astype(np.float32), 1, window=job[0])
            trees.append(res["trees"])
            method = "smrf" if res["method"] == "smrf" else method
            nodata += res["nodata"]
            if progress:
                progress((i + 1) / len(jobs))
    finally:
        ex.close()
        for d in dsts.values():
            d.close()
    files = {}
    for n in PRODUCTS:
        files[n] = out_dir / f"{n}.tif"
        rasterio.shutil.copy(tmp[n], files[n], driver="COG", compress="DEFLATE", predictor=3, blocksize=256,
                             overview_resampling="average")
        tmp[n].unlink()
    cols = {k: np.concatenate([t[k] for t in trees]) if trees else np.zeros(0) for k in
            ("x", "y", "height", "crown_radius", "crown_area")}
    table = TreeTable(labels=np.zeros((0, 0), np.int32), **cols)
    return TiledTerrain(files=files, trees=table, transform=transform, shape=(h, w), xy_m=xy_m, ground_method=method,
                        nodata_fraction=nodata / max(h * w, 1), blocks=len(jobs))

