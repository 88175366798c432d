"""Sunlight simulator benchmark: every window point of the demo `medium` city on 大寒日 at 1-minute steps.

Measures, on one copy of a built store: the whole engine run (``twin.sim.engine.run``: reading the buildings,
the scene, window points, casting, tables, commit) cold (empty scene cache) and warm (the scene cache of an earlier
run of the same inputs), for each ``--workers`` count, the median of ``--repeat`` runs; its rays/s against the floor
of raw Embree occlusion queries on the same scene and the same rays (one process, timed alone, rays prepared outside
the timing); trimesh's default intersector (``trimesh.ray.ray_pyembree.RayMeshIntersector.intersects_any``) on a
subsample of those rays, at store coordinates and shifted to a local origin, against the twin's ``Occluder``; and the
incremental rerun after one building is made 15 m taller, against a full run of the same state.

Input: a built store (``twin demo --size medium --no-serve --store DIR``); pass ``--store`` (it is copied, not
changed). Without it the medium city is generated, ingested and built into ``--work`` first (several minutes).

Run: .venv/bin/python bench/sunlight_bench.py [--store DIR] [--workers 1 2] [--repeat 3] [--step 1] [--ground-cell 0]
(prints Markdown tables; ``--ground-cell 4`` adds the ground raster at 4 m)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from tiles_bench import ensure_store  # the medium demo city, built once (bench/ is on sys.path)


def raw_embree(store, params: dict, subsample: int) -> dict:
    """The floor: Embree occlusion queries alone on the run's scene and rays; trimesh's default on a subsample."""
    import trimesh

    from twin.sim import sunlight as S
    from twin.sim.engine import get, parameters
    from twin.sim.scene import build_scene
    from twin.sim.windows import window_points
    from twin.store import Query

    p = parameters(get("sunlight"), params)

    class Ctx:  # the few RunContext fields _terrain reads
        pass

    ctx = Ctx()
    ctx.store, ctx.branch, ctx.version = store, "main", store.head("main")
    terrain, _ = S._terrain(ctx)
    feats = store.features("main", ctx.version, Query(types=list(S.BUILDING_TYPES)))
    bs = S.geoms(feats, terrain, p.storey_height_m)
    scene = build_scene(bs, terrain)
    req = S.resolve(p)
    lat, lon = S._site(p, bs, store.crs)
    path = S.sun_path(req.date, req.start_tst, req.end_tst, p.step_min, lat, lon, store.crs)
    w = window_points(bs, p.window_spacing_m, p.storey_height_m, p.sill_height_m)
    occ = scene.occluder
    occ.occluded(w.xyz[:1], path.dirs[:1])  # build the BVH outside the timing
    rays = seconds = 0.0
    sample_o, sample_d = [], []
    size = max(1, 2_000_000 // len(path.times))
    for a in range(0, len(w), size):
        pts, nrm = w.xyz[a:a + size], w.normal[a:a + size]
        front = (nrm @ path.dirs.T > S.FRONT_EPS) & path.up[None, :]
        i, j = np.nonzero(front)
        o = np.ascontiguousarray(pts[i] + nrm[i] * S.WINDOW_OFFSET_M - occ.origin, dtype=np.float32)
        d = np.ascontiguousarray(path.dirs[j], dtype=np.float32)
        t0 = time.perf_counter()
        occ._embree().run(o, d, query="OCCLUDED")
        seconds += time.perf_counter() - t0
        rays += len(o)
        if sum(len(x) for x in sample_o) < subsample:
            sample_o.append(pts[i[::97]] + nrm[i[::97]] * S.WINDOW_OFFSET_M)
            sample_d.append(path.dirs[j[::97]])
    so, sd = np.concatenate(sample_o)[:subsample], np.concatenate(sample_d)[:subsample]
    mine = occ.occluded(so, sd)
    mesh = trimesh.Trimesh(occ.vertices, occ.faces, process=False)
    tm = trimesh.ray.ray_pyembree.RayMeshIntersector(mesh)
    tm.intersects_any(so[:10], sd[:10])  # its BVH outside the timing
    t0 = time.perf_counter()
    hit_tm = tm.intersects_any(so, sd)
    tm_s = time.perf_counter() - t0
    local = trimesh.ray.ray_pyembree.RayMeshIntersector(
        trimesh.Trimesh(occ.vertices - occ.origin, occ.faces, process=False))
    hit_local = local.intersects_any(so - occ.origin, sd)
    return {"rays": int(rays), "seconds": seconds, "rays_per_s": rays / seconds, "triangles": occ.n_triangles,
            "windows": len(w), "tm_rays": len(so), "tm_rays_per_s": len(so) / tm_s,
            "tm_agree": float(np.mean(hit_tm == mine)), "tm_local_agree": float(np.mean(hit_local == mine)),
            "tm_extra_hits": float(np.mean(hit_tm & ~mine)), "origin": occ.origin.tolist(),
            "residential": sum(b.residential for b in bs), "buildings": len(bs)}


def timed_run(store, params: dict, cold: bool, **kw) -> tuple[float, object]:
    """One engine run (``cold``: the scene cache emptied first); seconds and the run."""
    from twin.sim import engine

    if cold:
        shutil.rmtree(store.root / "cache" / "sunlight", ignore_errors=True)
    t0 = time.perf_counter()
    run = engine.run(store, "sunlight", params, **kw)
    return time.perf_counter() - t0, run


def main() -> None:
    """Run the benchmark and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="a built store (copied)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "twin-bench-sunlight")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--step", type=float, default=1.0)
    ap.add_argument("--ground-cell", type=float, default=0.0, help="0: no ground raster")
    ap.add_argument("--subsample", type=int, default=300_000)
    args = ap.parse_args()

    from twin.sim import engine
    from twin.store import Query, Store

    src = args.store or ensure_store(args.work)
    tmp = Path(tempfile.mkdtemp(prefix="twin-sunlight-bench-"))
    rows = []
    try:
        shutil.copytree(src, tmp / "store")
        store = Store(tmp / "store")
        params = {"step_min": args.step, "ground": args.ground_cell > 0}
        if args.ground_cell > 0:
            params["ground_cell_m"] = args.ground_cell
        floor = raw_embree(store, params, args.subsample)
        for w in args.workers:
            for cold in (True, False):
                times, run = [], None
                for _ in range(args.repeat):
                    t, run = timed_run(store, params, cold, workers=w, reuse=False)
                    times.append(t)
                rows.append((w, cold, statistics.median(times), times, run))
        full = rows[-1][-1]
        w = args.workers[-1]
        # one building 15 m taller, on a branch; the cache is warm from the runs on main
        feats = store.features("main", query=Query(types=["Building"], limit=2000))
        target = sorted((f for f in feats if f.get("height")), key=lambda f: f["id"])[len(feats) // 2]
        from data_models import Building

        target.pop("_store", None)
        b = Building.model_validate(target)
        b = b.model_copy(update={"height": b.height + 15.0, "lods": {}})
        store.create_branch("taller")
        store.commit([b], message="one building 15 m taller", branch="taller")
        inc_s, inc = timed_run(store, params, False, branch="taller", workers=w)
        full2_s, full2 = timed_run(store, params, False, branch="taller", workers=w, reuse=False)
        keys = [("entity_id", "ascending"), ("window_id", "ascending")]
        same = all(engine.result_table(store, inc, n).drop_columns(["run_id"]).sort_by(
            keys if n.endswith("windows") else keys[:1]).equals(
            engine.result_table(store, full2, n).drop_columns(["run_id"]).sort_by(
                keys if n.endswith("windows") else keys[:1])) for n in ("sunlight_windows", "sunlight_buildings"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    s = full.summary
    raw = floor["rays_per_s"]
    print(f"\nmedium city: {floor['buildings']:,} buildings ({floor['residential']:,} residential), "
          f"{floor['triangles']:,} triangles (buildings + DTM), {s['windows']:,} windows, {s['time_steps']} steps, "
          f"{s['rays_cast']:,} rays\n")
    print("| what | rays | seconds (median) | rays/s | vs raw Embree |")
    print("|---|---:|---:|---:|---:|")
    print(f"| raw Embree occlusion queries (1 process), same scene and rays | {floor['rays']:,} | "
          f"{floor['seconds']:.2f} | {raw:,.0f} | 1.00 |")
    for w, cold, med, times, run in rows:
        r = run.summary["rays_cast"]
        print(f"| whole engine run, workers={w}, {'cold (no scene cache)' if cold else 'warm (scene cache)'} "
              f"[{', '.join(f'{t:.2f}' for t in times)}] | {r:,} | {med:.2f} | {r / med:,.0f} | "
              f"{r / med / raw:.2f} |")
        print(f"| … its casting stage (timings {run.timings}) | {r:,} | {r / run.summary['rays_per_s']:.2f} | "
              f"{run.summary['rays_per_s']:,} | {run.summary['rays_per_s'] / raw:.2f} |")
    print(f"| trimesh RayMeshIntersector.intersects_any (embree, subsample) | {floor['tm_rays']:,} | "
          f"{floor['tm_rays'] / floor['tm_rays_per_s']:.2f} | {floor['tm_rays_per_s']:,.0f} | "
          f"{floor['tm_rays_per_s'] / raw:.2f} |")
    print(f"\ntrimesh agrees with the Occluder on {floor['tm_agree']:.4%} of the subsample's rays at store "
          f"coordinates (extra hits on {floor['tm_extra_hits']:.4%}), on {floor['tm_local_agree']:.4%} with the mesh "
          f"and rays shifted to the local origin {floor['origin']}\n")
    print("| run | seconds | recomputed windows | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| full, one building 15 m taller (warm cache, workers={w}) | {full2_s:.2f} | "
          f"{full2.summary['recomputed_windows']:,} | 1.00 |")
    print(f"| incremental, the same change | {inc_s:.2f} | {inc.summary['recomputed_windows']:,} | "
          f"{inc_s / full2_s:.2f} |")
    print(f"\nincremental equals full: {same}; incremental timings {inc.timings}")


if __name__ == "__main__":
    main()
