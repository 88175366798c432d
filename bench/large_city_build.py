"""The large sample city end to end through `twin build`'s reconstruction: generate, ingest, outlines + heights,
then the `reality3d` step (LoD1.2 / 1.3 / 2.2 by LiDAR tile, terrain and trees by block) on all cores; prints the
time of each stage and buildings per second of the reconstruction.

Run: .venv/bin/python bench/large_city_build.py [--work /tmp/twin-bench-large] [--workers 2]   (~1 h on 2 cores)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/twin-bench-large"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-heights", action="store_true", help="go straight to reality3d (it needs only footprints)")
    a = ap.parse_args()
    from twin.demo import generate
    from twin.pipeline.build import build
    from twin.pipeline.ingest import ingest_paths
    from twin.store import Query, Store

    times: dict[str, float] = {}
    src, root = a.work / "city", a.work / "store"
    t = time.perf_counter()
    manifest = generate(src, size="large", seed=7) if not (src / "manifest.json").exists() else None
    times["generate"] = time.perf_counter() - t
    if not (root / "STORE.json").exists() or Store(root).head() == 0:
        import json

        manifest = manifest or json.loads((src / "manifest.json").read_text())
        s = Store.init(root, manifest.get("crs", "EPSG:4548"))
        acquired = {str((src / f["path"]).resolve()): f.get("acquired") for f in manifest["files"]}
        t = time.perf_counter()
        ingest_paths(s, [src / "sources"], acquired=acquired, message="ingest demo city (large)")
        times["ingest"] = time.perf_counter() - t
    s = Store(root)
    if not a.skip_heights:
        t = time.perf_counter()
        build(s, only=["outlines", "heights"], workers=a.workers)
        times["outlines + heights"] = time.perf_counter() - t
    report: dict = {}
    t = time.perf_counter()
    build(s, only=["reality3d"], workers=a.workers, report=report)
    times["reality3d"] = time.perf_counter() - t
    n = s.count(query=Query(types=["Building"]))
    with_22 = sum(1 for b in s.features(query=Query(types=["Building"])) if "2.2" in (b.get("lods") or {}))
    print(f"large demo city: {n:,} buildings ({with_22:,} with LoD2.2), {report.get('reality3d', {}).get('trees')} "
          f"trees; {a.workers} workers\n")
    print("| stage | seconds |")
    print("|---|---:|")
    for k, v in times.items():
        print(f"| {k} | {v:,.0f} |")
    print(f"\nreality3d: {n / times['reality3d']:,.1f} buildings/s (LoD1.2 + 1.3 + 2.2, terrain and trees included)")


if __name__ == "__main__":
    main()
