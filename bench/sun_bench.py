"""Solar-position benchmark: twin.sim.sun (NREL SPA in numpy) against pvlib's spa_python (numpy and numba).

A year of 1-minute steps for one site (Beijing), each engine timed in the same run (best of ``--repeat``), the
largest difference in zenith and azimuth from pvlib shown beside the time; then the simulator's case: one 8-hour
window at 1 minute for many sites over the same instants. pvlib (and numba for its numba variant) are dev
dependencies; without them only twin's rows are printed.

Run: .venv/bin/python bench/sun_bench.py [--days 365] [--repeat 3] [--sites 1000]   (prints Markdown tables)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from twin.sim import sun

LAT, LON = 39.9, 116.4


def best(f, repeat: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), out


def pvlib_rows(times: np.ndarray, repeat: int) -> list[tuple[str, float, object]]:
    try:
        import pandas as pd
        from pvlib import solarposition
    except ImportError:
        print("pvlib is not installed: only twin is timed")
        return []
    idx = pd.DatetimeIndex(times.astype("datetime64[ns]"), tz="UTC")
    rows = []
    for how in ("numpy", "numba"):
        def run(how=how):
            return solarposition.spa_python(idx, LAT, LON, delta_t=None, how=how, numthreads=2)
        try:
            if how == "numba":
                run()  # compile first, outside the timing
            seconds, df = best(run, repeat)
        except Exception as exc:  # numba missing or failing: say so, keep the numpy row
            print(f"pvlib {how}: not timed ({type(exc).__name__}: {exc})")
            continue
        rows.append((f"pvlib spa_python ({how})", seconds, (df["apparent_zenith"].to_numpy(),
                                                            df["azimuth"].to_numpy())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sites", type=int, default=1000)
    a = ap.parse_args()

    times = np.arange(np.datetime64("2024-01-01T00:00", "us"), np.datetime64("2024-01-01T00:00", "us")
                      + np.timedelta64(a.days, "D"), np.timedelta64(1, "m"))
    n = len(times)
    t_twin, pos = best(lambda: sun.solar_position(times, LAT, LON), a.repeat)
    rows = pvlib_rows(times, a.repeat)
    print(f"\n### One site, {a.days} days of 1-minute steps ({n:,} instants), best of {a.repeat}\n")
    print("| engine | seconds | µs per instant | twin is faster by | max |Δzenith| ° | max |Δazimuth| ° |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| twin.sim.sun | {t_twin:.3f} | {t_twin / n * 1e6:.3f} | 1 | | |")
    for name, seconds, (z, az) in rows:
        dz = np.abs(pos.zenith - z).max()
        da = np.abs((pos.azimuth - az + 180.0) % 360.0 - 180.0).max()
        print(f"| {name} | {seconds:.3f} | {seconds / n * 1e6:.3f} | {seconds / t_twin:.1f}× | {dz:.1e} | {da:.1e} |")

    window = sun.steps("2024-01-20", 8.0, 16.0, 1.0, LON, endpoint=False)
    sun._geocentric_cached.cache_clear()
    t0 = time.perf_counter()
    sun.solar_position(window, LAT, LON)
    first = time.perf_counter() - t0
    lats = LAT + np.linspace(-0.05, 0.05, a.sites)
    t0 = time.perf_counter()
    for lat in lats:
        sun.solar_position(window, lat, LON)
    per_site = (time.perf_counter() - t0) / a.sites
    print(f"\n### The simulator's case: 大寒日 8:00-16:00 true solar time at 1 minute ({len(window)} instants)\n")
    print("| call | ms |")
    print("|---|---:|")
    print(f"| first call (the time-only part computed and cached) | {first * 1e3:.3f} |")
    print(f"| each further site ({a.sites} sites, same instants) | {per_site * 1e3:.3f} |")


if __name__ == "__main__":
    main()
