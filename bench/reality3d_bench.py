"""Real-scene 3D throughput on the demo `medium` city: LoD1.2/1.3 buildings per second, terrain points per second.

Peers in the same run: laspy's plain chunked read of the same tiles (the floor for anything that streams the
points), and a plain numpy DTM (lowest ground point per cell, no gap filling) as the baseline for terrain.
Run: .venv/bin/python bench/reality3d_bench.py [--city DIR]   (generates the medium city when DIR lacks one)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import laspy
import numpy as np
import shapely

from twin.demo import generate
from twin.reality3d.buildings import building_points
from twin.reality3d.ground import classify_ground
from twin.reality3d.lod1 import reconstruct_lod1
from twin.reality3d.terrain import build_terrain
from twin.reality3d.terrain_blocks import terrain_by_tile
from twin.reality3d.work_tiles import reconstruct_by_tile


def plain_dtm(paths: list[Path], cell: float = 1.0) -> np.ndarray:
    """Baseline: lowest class-2 point per cell with plain numpy (no filling, no DSM)."""
    xs, ys, zs = [], [], []
    for p in paths:
        with laspy.open(p) as f:
            for pts in f.chunk_iterator(2_000_000):
                g = np.asarray(pts.classification) == 2
                xs.append(np.asarray(pts.x)[g])
                ys.append(np.asarray(pts.y)[g])
                zs.append(np.asarray(pts.z)[g])
    x, y, z = np.concatenate(xs), np.concatenate(ys), np.concatenate(zs)
    c = ((x - x.min()) // cell).astype(np.int64)
    r = ((y.max() - y) // cell).astype(np.int64)
    grid = np.full((r.max() + 1, c.max() + 1), np.inf)
    np.minimum.at(grid, (r, c), z)
    return grid


def naive_ground(paths: list[Path], cell: float = 1.0, dz: float = 0.3) -> int:
    """Baseline ground filter: points within ``dz`` of their cell's lowest point (plain numpy, no slope handling)."""
    n = 0
    for p in paths:
        las = laspy.read(p)
        x, y, z = np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)
        c = ((x - x.min()) // cell).astype(np.int64)
        r = ((y - y.min()) // cell).astype(np.int64)
        idx = r * (c.max() + 1) + c
        low = np.full(idx.max() + 1, np.inf)
        np.minimum.at(low, idx, z)
        n += int(np.sum(z - low[idx] <= dz))
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--city", type=Path, default=Path("/tmp/twin-bench-medium"))
    a = ap.parse_args()
    if not (a.city / "manifest.json").exists():
        generate(a.city, size="medium", seed=7)
    las = sorted((a.city / "sources" / "lidar").glob("*.laz"))
    doc = json.loads((a.city / "sources" / "cadastre" / "buildings.geojson").read_text())
    foot = [shapely.geometry.shape(f["geometry"]) for f in doc["features"]]
    n_pts = sum(laspy.open(p).header.point_count for p in las)

    t = time.perf_counter()
    for p in las:
        with laspy.open(p) as f:
            for _ in f.chunk_iterator(2_000_000):
                pass
    t_read = time.perf_counter() - t

    t = time.perf_counter()
    bps = building_points(foot, las, crs="EPSG:4548")
    t_pts = time.perf_counter() - t
    t = time.perf_counter()
    results = [reconstruct_lod1(bp, g) for bp, g in zip(bps, foot, strict=True)]
    t_lod = time.perf_counter() - t
    ok = sum(1 for r in results if "1.2" in r.lods)

    tiles = []
    for p in las:
        h = laspy.open(p).header
        tiles.append({"id": p.name, "path": str(p), "crs": "EPSG:4548",
                      "bbox_store": [h.mins[0], h.mins[1], h.maxs[0], h.maxs[1]]})
    t_tiles = {}
    for w in (1, 2):
        t = time.perf_counter()
        by_tile = reconstruct_by_tile(foot, tiles, "EPSG:4548", workers=w)
        t_tiles[w] = time.perf_counter() - t
    n22 = sum(1 for r, _ in by_tile if "2.2" in r["lods"])

    t = time.perf_counter()
    build_terrain(las, resolution=1.0)
    t_terrain = time.perf_counter() - t
    t = time.perf_counter()
    plain_dtm(las)
    t_plain = time.perf_counter() - t
    t_blocks = {}
    for w in (1, 2):
        t = time.perf_counter()
        terrain_by_tile(las, Path(f"/tmp/twin-bench-terrain-{w}"), resolution=1.0, to_crs="EPSG:4548", workers=w)
        t_blocks[w] = time.perf_counter() - t
    t = time.perf_counter()
    n_smrf = sum(int(np.sum(f)) for f in classify_ground(las, use_existing=False))
    t_smrf = time.perf_counter() - t
    t = time.perf_counter()
    n_naive = naive_ground(las)
    t_naive = time.perf_counter() - t

    print(f"medium demo city: {len(foot):,} footprints, {n_pts:,} LiDAR points in {len(las)} tiles; one process\n")
    print("| work | seconds | rate | ratio |")
    print("|---|---|---|---|")
    print(f"| laspy plain read of all tiles (floor) | {t_read:.1f} | {n_pts / t_read / 1e6:.1f} M points/s | 1.0x |")
    print(f"| building points per footprint (stream + assign) | {t_pts:.1f} | {n_pts / t_pts / 1e6:.1f} M points/s "
          f"| {t_pts / t_read:.1f}x |")
    print(f"| LoD1.2 + LoD1.3 + quality + validity | {t_lod:.1f} | {ok / t_lod:,.0f} buildings/s | — |")
    print(f"| end to end LoD1 (points + reconstruction) | {t_pts + t_lod:.1f} | {ok / (t_pts + t_lod):,.0f} "
          "buildings/s | — |")
    for w, tw in t_tiles.items():
        print(f"| by tile, LoD1.2 + 1.3 + 2.2 ({n22:,} with LoD2.2), {w} process{'es' if w > 1 else ''} | {tw:.1f} | "
              f"{len(foot) / tw:,.0f} buildings/s | {t_tiles[1] / tw:.2f}x speed-up |")
    print(f"| terrain: DTM + DSM + nDSM with gap filling | {t_terrain:.1f} | {n_pts / t_terrain / 1e6:.1f} M "
          f"points/s | {t_terrain / t_plain:.1f}x the plain DTM |")
    print(f"| plain numpy DTM (min ground z per cell, no filling) | {t_plain:.1f} | {n_pts / t_plain / 1e6:.1f} M "
          "points/s | 1.0x |")
    for w, tw in t_blocks.items():
        print(f"| terrain + trees by 1 km block, COGs written, {w} process{'es' if w > 1 else ''} | {tw:.1f} | "
              f"{n_pts / tw / 1e6:.1f} M points/s | {t_blocks[1] / tw:.2f}x speed-up |")
    print(f"| SMRF ground filter (ignores the classes; {n_smrf / n_pts:.0%} ground) | {t_smrf:.1f} | "
          f"{n_pts / t_smrf / 1e6:.1f} M points/s | {t_smrf / t_naive:.1f}x the naive filter |")
    print(f"| naive numpy filter (within 0.3 m of the cell's lowest point; {n_naive / n_pts:.0%} ground) | "
          f"{t_naive:.1f} | {n_pts / t_naive / 1e6:.1f} M points/s | 1.0x |")


if __name__ == "__main__":
    main()
