"""Building reconstruction by spatial tile, in parallel: each LiDAR tile's buildings form one job.

A job reads only the tiles its buildings touch (plus a ring for ground points), so memory is bounded by a tile,
not by the city; jobs run in worker processes (spawned: no state shared with the parent's DuckDB threads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import shapely

from twin.compute import executor

RING_M = 5.0  # margin around a job's buildings when choosing tiles: the ground ring of the outer footprints


def _tile_job(wkbs: list[bytes], paths: list[str], las_crs: list[str | None], crs: str) -> list[dict[str, Any]]:
    """LoD1.2/1.3/2.2 for one tile's buildings: solids as JSON, quality, fallback flags, roof type, RMSE."""
    from twin.reality3d.buildings import building_points
    from twin.reality3d.lod1 import reconstruct_lod1
    from twin.reality3d.lod22 import reconstruct_lod22

    geoms = [shapely.from_wkb(w) for w in wkbs]
    out = []
    for g, bp in zip(geoms, building_points(geoms, [Path(p) for p in paths], crs=crs, las_crs=las_crs),
                     strict=True):
        r = reconstruct_lod1(bp, g)
        res: dict[str, Any] = {"lods": {k: s.model_dump(mode="json") for k, s in r.lods.items()},
                               "quality": r.quality.model_dump(mode="json"), "flags22": [], "roof_type": None,
                               "rmse22": None, "notes22": []}
        if r.lods:
            s22 = reconstruct_lod22(bp, g, r)
            res["roof_type"] = s22.roof_type.value
            if "lod22_fallback_lod13" in s22.flags or s22.solid is None:
                res["flags22"] = list(s22.flags)
            else:
                res["lods"]["2.2"] = s22.solid.model_dump(mode="json")
                res["notes22"] = list(s22.flags)  # how LoD2.2 was made, e.g. lod22_roof_partition
                res["rmse22"] = round(float(s22.rmse), 4)
        out.append(res)
    return out


def reconstruct_by_tile(footprints: list[shapely.Geometry], tiles: list[dict[str, Any]], crs: str,
                        workers: int | None = None) -> list[tuple[dict[str, Any], str | None]]:
    """(result, tile asset id) per footprint, in input order; ``tiles`` are catalog assets with ``bbox_store``
    (their extent in ``crs``), ``path``, ``crs`` and ``id``. ``workers`` defaults to the machine's cores (or
    ``TWIN_WORKERS``, see :func:`twin.compute.default_workers`)."""
    boxes = [shapely.box(*t["bbox_store"]) for t in tiles]
    jobs: dict[int, list[int]] = {}
    for i, g in enumerate(footprints):
        p = g.representative_point()
        home = next((k for k, b in enumerate(boxes) if b.covers(p)), None)
        if home is None:
            home = next((k for k, b in enumerate(boxes) if b.intersects(g)), 0)
        jobs.setdefault(home, []).append(i)
    args = []
    tree = shapely.STRtree(boxes)
    for k, idx in sorted(jobs.items()):
        # the home tile, plus a neighbour only where some footprint (with its ground ring) reaches into it
        reach = shapely.buffer(shapely.box(*np.asarray(shapely.bounds([footprints[i] for i in idx])).T), RING_M)
        hit = set(tree.query(reach, predicate="intersects")[1].tolist()) | {k}
        near = [tiles[j] for j in sorted(hit)]
        args.append(([shapely.to_wkb(footprints[i]) for i in idx], [t["path"] for t in near],
                     [t.get("crs") for t in near], crs))
    # spawned workers: forking would copy the parent's DuckDB/PROJ threads' locks
    with executor(workers or None, tasks=len(args), start="spawn") as ex:
        results = list(ex.map(_tile_job, *zip(*args, strict=True)))
    out: list[tuple[dict[str, Any], str | None]] = [({}, None)] * len(footprints)
    for (k, idx), res in zip(sorted(jobs.items()), results, strict=True):
        for i, r in zip(idx, res, strict=True):
            out[i] = (r, tiles[k]["id"])
    return out
