"""Sunlight simulator benchmark: every window point of the demo `medium` city on 大寒日 at 1-minute steps.

Measures, on one copy of a built store: the whole engine run (``twin.sim.engine.run``: reading the buildings,
the scene, window points, casting, tables, commit), its rays/s against the floor of raw Embree occlusion queries on
the same scene and the same rays (timed alone, rays prepared outside the timing), trimesh's default intersector
(``trimesh.ray.ray_pyembree.RayMeshIntersector.intersects_any``) on a subsample of those rays, and the incremental
rerun after one building is made 15 m taller, against a full run of the same state.

Input: a built store (``twin demo --size medium --no-serve --store DIR``); pass ``--store`` (it is copied, not
changed). Without it the medium city is generated, ingested and built into ``--work`` first (several minutes).

Run: .venv/bin/python bench/sunlight_bench.py [--store DIR] [--workers 2] [--step 1] [--ground-cell 0]
(prints Markdown tables; ``--ground-cell 4`` adds the ground raster at 4 m)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def ensure_store(work: Path) -> Path:
    """The medium demo city, built once into ``work/store``."""
    store = work / "store"
    if (store / "STORE.json").exists():
        return store
    from twin.demo import generate
    from twin.pipeline.build import build
    from twin.pipeline.ingest import ingest_paths
    from twin.store import Store

    src = work / "city"
    manifest = generate(src, size="medium", seed=7)
    s = Store.init(store, manifest.get("crs", "EPSG:4548"))
    acquired = {str((src / f["path"]).resolve()): f.get("acquired") for f in manifest["files"]}
    ingest_paths(s, [src / "sources"], acquired=acquired, message="ingest demo city (medium)")
    build(s)
    return store


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
    terrain = S._terrain(ctx)
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
    mesh = trimesh.Trimesh(occ.vertices, occ.faces, process=False)
    tm = trimesh.ray.ray_pyembree.RayMeshIntersector(mesh)
    tm.intersects_any(so[:10], sd[:10])  # its BVH outside the timing
    t0 = time.perf_counter()
    hit_tm = tm.intersects_any(so, sd)
    tm_s = time.perf_counter() - t0
    agree = float(np.mean(hit_tm == occ.occluded(so, sd)))
    return {"rays": int(rays), "seconds": seconds, "rays_per_s": rays / seconds, "triangles": occ.n_triangles,
            "windows": len(w), "tm_rays": len(so), "tm_rays_per_s": len(so) / tm_s, "tm_agree": agree,
            "residential": sum(b.residential for b in bs), "buildings": len(bs)}


def main() -> None:
    """Run the benchmark and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="a built store (copied)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "twin-bench-sunlight")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--step", type=float, default=1.0)
    ap.add_argument("--ground-cell", type=float, default=0.0, help="0: no ground raster")
    ap.add_argument("--subsample", type=int, default=1_000_000)
    args = ap.parse_args()

    from twin.sim import engine
    from twin.store import Query, Store

    src = args.store or ensure_store(args.work)
    tmp = Path(tempfile.mkdtemp(prefix="twin-sunlight-bench-"))
    try:
        shutil.copytree(src, tmp / "store")
        store = Store(tmp / "store")
        params = {"step_min": args.step, "ground": args.ground_cell > 0}
        if args.ground_cell > 0:
            params["ground_cell_m"] = args.ground_cell
        floor = raw_embree(store, params, args.subsample)

        t0 = time.perf_counter()
        full = engine.run(store, "sunlight", params, workers=args.workers)
        full_s = time.perf_counter() - t0
        # one building 15 m taller, on a branch
        feats = store.features("main", query=Query(types=["Building"], limit=2000))
        target = sorted((f for f in feats if f.get("height")), key=lambda f: f["id"])[len(feats) // 2]
        from data_models import Building

        target.pop("_store", None)
        b = Building.model_validate(target)
        b = b.model_copy(update={"height": b.height + 15.0, "lods": {}})
        store.create_branch("taller")
        store.commit([b], message="one building 15 m taller", branch="taller")
        t0 = time.perf_counter()
        inc = engine.run(store, "sunlight", params, branch="taller", workers=args.workers)
        inc_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        full2 = engine.run(store, "sunlight", params, branch="taller", workers=args.workers, reuse=False)
        full2_s = time.perf_counter() - t0
        keys = [("entity_id", "ascending"), ("window_id", "ascending")]
        same = all(engine.result_table(store, inc, n).drop_columns(["run_id"]).sort_by(
            keys if n.endswith("windows") else keys[:1]).equals(
            engine.result_table(store, full2, n).drop_columns(["run_id"]).sort_by(
                keys if n.endswith("windows") else keys[:1])) for n in ("sunlight_windows", "sunlight_buildings"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    s = full.summary
    print(f"\nmedium city: {floor['buildings']:,} buildings ({floor['residential']:,} residential), "
          f"{floor['triangles']:,} triangles (buildings + DTM), {s['windows']:,} windows, {s['time_steps']} steps, "
          f"{s['rays_cast']:,} rays; timings {full.timings}\n")
    print("| what | rays | seconds | rays/s | vs raw Embree |")
    print("|---|---:|---:|---:|---:|")
    print(f"| raw Embree occlusion queries (1 process), same scene and rays | {floor['rays']:,} | "
          f"{floor['seconds']:.2f} | {floor['rays_per_s']:,.0f} | 1.00 |")
    print(f"| whole engine run (workers={args.workers or 'default'}) | {s['rays_cast']:,} | {full_s:.2f} | "
          f"{s['rays_cast'] / full_s:,.0f} | {s['rays_cast'] / full_s / floor['rays_per_s']:.2f} |")
    print(f"| casting stage alone (chunks, hours, bookkeeping) | {s['rays_cast']:,} | "
          f"{s['rays_cast'] / s['rays_per_s']:.2f} | {s['rays_per_s']:,} | "
          f"{s['rays_per_s'] / floor['rays_per_s']:.2f} |")
    print(f"| trimesh RayMeshIntersector.intersects_any (embree, subsample) | {floor['tm_rays']:,} | "
          f"{floor['tm_rays'] / floor['tm_rays_per_s']:.2f} | {floor['tm_rays_per_s']:,.0f} | "
          f"{floor['tm_rays_per_s'] / floor['rays_per_s']:.2f} |")
    print(f"\ntrimesh and twin agree on {floor['tm_agree']:.4%} of the subsample's rays\n")
    print("| run | seconds | recomputed windows | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| full | {full_s:.2f} | {s['recomputed_windows']:,} | 1.00 |")
    print(f"| full, one building 15 m taller | {full2_s:.2f} | {full2.summary['recomputed_windows']:,} | "
          f"{full2_s / full_s:.2f} |")
    print(f"| incremental, one building 15 m taller | {inc_s:.2f} | {inc.summary['recomputed_windows']:,} | "
          f"{inc_s / full2_s:.2f} |")
    print(f"\nincremental equals full: {same}; whole city: {full_s / 60:.2f} min")


if __name__ == "__main__":
    main()
