"""A whole weekday of traffic (24 hourly user equilibria) on a store's roads and buildings, 1 against 2 worker
processes, and Sioux Falls to a relative gap of 1e-10 (warm, after the numba kernels are loaded).

Run: .venv/bin/python bench/traffic_day_bench.py --store STORE [--zone-res 10] [--demand-factor 8] [--gap 1e-8]
(a store with the medium demo city's streets and cadastre ingested, e.g. ``twin ingest`` of its sources/streets and
sources/cadastre). Prints the seconds of each run and its largest hourly gap.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import twin.sim.traffic.simulator as ts
from twin.sim import engine
from twin.sim.traffic import tntp
from twin.sim.traffic.assign import assign
from twin.store import Store

SIOUX = Path(__file__).resolve().parents[2] / "shared" / "data" / "traffic" / "SiouxFalls"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--zone-res", type=int, default=10)
    ap.add_argument("--demand-factor", type=float, default=8.0)
    ap.add_argument("--gap", type=float, default=1e-8)
    a = ap.parse_args()
    net = tntp.read_net(SIOUX / "SiouxFalls_net.tntp")
    od = tntp.read_trips(SIOUX / "SiouxFalls_trips.tntp")
    assign(net, od, gap=1e-4)  # loads the kernels
    t = time.perf_counter()
    r = assign(net, od, gap=1e-10)
    print(f"Sioux Falls to {r.gap:.1e}: {time.perf_counter() - t:.3f} s, {r.iterations} iterations")
    s = Store(a.store)
    params = {"hours": list(range(24)), "gap": a.gap, "zone_res": a.zone_res, "demand_factor": a.demand_factor}
    for workers in (1, 2):
        ts.PARALLEL_MIN_WORK = 0 if workers > 1 else 10**15  # the pool however small the work
        t = time.perf_counter()
        run = engine.run(s, "traffic", params, workers=workers, reuse=False)
        hours = run.summary["per_hour"]
        print(f"24 hours, {workers} worker(s): {time.perf_counter() - t:.2f} s (assignment "
              f"{run.timings['assign']:.2f} s), {run.summary['zones']} zones, "
              f"{run.summary['network']['links']} road links, largest gap {max(h['gap'] for h in hours):.1e}")


if __name__ == "__main__":
    main()
