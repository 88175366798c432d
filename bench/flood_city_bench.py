"""Flood simulator on the demo `medium` city: the 100 mm / 1 h storm (90 min simulated) through the whole engine
run (grid, flow, outputs, commit), wall time and memory peak per resolution, each run in a fresh process.

Input: a built store (``twin demo --size medium --no-serve --store DIR``) via ``--store`` (copied, not changed);
without it the medium city is generated, ingested and built into ``--work`` first (several minutes). ``--bbox-km K``
runs on a K × K km square at the city's centre instead (for 1 m on a small machine).

Run: .venv/bin/python bench/flood_city_bench.py [--store DIR] [--res 2 1] [--bbox-km 1] [--threads 2]
(prints a Markdown table)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tiles_bench import ensure_store  # the medium demo city, built once (bench/ is on sys.path)

CHILD = r"""
import json, resource, sys, time
from twin.sim import engine
from twin.store import Store
store, params, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
s = Store(store)
t0 = time.perf_counter()
r = engine.run(s, "flood", params, reuse=False, workers=threads)
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "summary": r.summary, "timings": r.timings}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "twin-bench-medium-tiles")
    ap.add_argument("--res", type=float, nargs="+", default=[2.0, 1.0])
    ap.add_argument("--bbox-km", type=float, default=None, help="a square of this side at the centre")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    src = a.store or ensure_store(a.work)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(src, store)
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
        print("| resolution | domain | cells | steps | mean Δt s | flow s | whole run s | Mcell-updates/s | "
              "memory peak MiB | mass error % | max depth m | buildings at risk | impassable roads |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for res in a.res:
            params = {"rain_mm_h": 100.0, "rain_duration_min": 60.0, "resolution_m": res}
            domain = "whole city"
            if a.bbox_km:
                from twin.store import ASSETS, Store

                dtm = Store(store).get("prd-dtm", collection=ASSETS)
                x0, y0, x1, y1 = dtm["extent"]["bbox"]
                cx, cy, h = (x0 + x1) / 2, (y0 + y1) / 2, a.bbox_km * 500.0
                params["bbox"] = [cx - h, cy - h, cx + h, cy + h]
                domain = f"{a.bbox_km:g} × {a.bbox_km:g} km"
            out = subprocess.run([sys.executable, "-c", CHILD, str(store), json.dumps(params), str(a.threads)],
                                 capture_output=True, text=True, check=True)
            m = json.loads(out.stdout.strip().splitlines()[-1])
            s = m["summary"]
            g = s["grid"]
            cells = g["rows"] * g["cols"]
            risk = ", ".join(f"{k} {v}" for k, v in s["buildings_at_risk"].items())
            print(f"| {res:g} m | {domain} | {cells:,} | {s['steps']:,} | {s['dt_mean_s']:.3f} | {s['flow_s']:.0f} | "
                  f"{m['wall_s']:.0f} | {s['cell_updates_per_s'] / 1e6:.1f} | {m['rss_mib']:.0f} | "
                  f"{s['mass_balance']['error_pct']:.1e} | {s['max_depth_m']:.2f} | {risk} | "
                  f"{s['impassable_roads']} |", flush=True)


if __name__ == "__main__":
    main()
