"""H3 bulk-indexing benchmark: twin's exact fast path against a plain h3-py loop, and index+aggregate against DuckDB.

Run: .venv/bin/python bench/h3_bench.py [--n 10000000]   (prints Markdown tables for docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb
import h3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twin.layers import h3index
from twin.layers.h3index import aggregate_points, latlng_to_cells

LAT0, LNG0 = 39.9, 116.4
DLAT, DLNG = 0.045, 0.0586  # ±5 km around the centre


def cloud(kind: str, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Uniform or clustered (30 Gaussian hot spots + 20 % background) points over a 10 × 10 km city."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return LAT0 + rng.uniform(-DLAT, DLAT, n), LNG0 + rng.uniform(-DLNG, DLNG, n)
    k = 30
    cl = rng.integers(0, k, n)
    ca, cn = rng.uniform(-DLAT, DLAT, k), rng.uniform(-DLNG, DLNG, k)
    sd = rng.uniform(0.002, 0.01, k)
    lat = LAT0 + ca[cl] + rng.normal(0, 1, n) * sd[cl]
    lng = LNG0 + cn[cl] + rng.normal(0, 1, n) * sd[cl] * 1.3
    bg = rng.random(n) < 0.2
    lat[bg] = LAT0 + rng.uniform(-DLAT, DLAT, int(bg.sum()))
    lng[bg] = LNG0 + rng.uniform(-DLNG, DLNG, int(bg.sum()))
    return np.clip(lat, LAT0 - DLAT, LAT0 + DLAT), np.clip(lng, LNG0 - DLNG, LNG0 + DLNG)


def h3_loop(lat: np.ndarray, lng: np.ndarray, res: int) -> list[str]:
    """The plain alternative: one ``h3.latlng_to_cell`` call per point."""
    f = h3.latlng_to_cell
    return [f(a, b, res) for a, b in zip(lat.tolist(), lng.tolist(), strict=True)]


def best(fn, k: int = 3) -> tuple[float, object]:
    """Best wall time of ``k`` runs and the last result."""
    ts, r = [], None
    for _ in range(k):
        t = time.perf_counter()
        r = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000_000)
    a = ap.parse_args()
    n = a.n
    print(f"H3 bulk indexing: {n:,} points over 10 x 10 km around ({LAT0}, {LNG0}); best of 3 (the first call of "
          "a process also pays numpy's first large allocations, shown as 'cold')\n")
    print("| cloud | res | h3 loop s | h3 loop pts/s | twin s (cold) | twin s | twin pts/s | speed-up | "
          "table hits | numpy-rounded | exact h3 calls | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in ("uniform", "clustered"):
        lat, lng = cloud(kind, n)
        for res in (9, 11, 7):
            t = time.perf_counter()
            cold = latlng_to_cells(lat, lng, res)
            t_cold = time.perf_counter() - t
            t_fast, cells = best(lambda lat=lat, lng=lng, res=res: latlng_to_cells(lat, lng, res))
            st = dict(h3index.LAST_STATS)
            t = time.perf_counter()
            ref = h3_loop(lat, lng, res)
            t_loop = time.perf_counter() - t
            ref_int = np.array([int(c, 16) for c in ref], dtype=np.uint64)
            same = bool(np.array_equal(ref_int, cells)) and bool(np.array_equal(cold, cells))
            assert same, f"{kind} res {res}: {int((ref_int != cells).sum())} cells differ from h3-py"
            del ref, ref_int
            print(f"| {kind} | {res} | {t_loop:.2f} | {n / t_loop / 1e6:.2f} M | {t_cold:.3f} | {t_fast:.3f} | "
                  f"{n / t_fast / 1e6:.1f} M | {t_loop / t_fast:.1f}x | {st['table'] / n:.1%} | "
                  f"{st['rounded'] / n:.2%} | {st['exact']:,} ({st['exact'] / n:.4%}) | yes |")

    # index + aggregate per res-9 cell and hour, against DuckDB grouping a precomputed cell column
    lat, lng = cloud("clustered", n, seed=2)
    rng = np.random.default_rng(3)
    t_us = (np.int64(1_735_689_600) * 1_000_000 + rng.integers(0, 7 * 86400 * 1_000_000, n)).astype(np.int64)
    value = rng.normal(20, 5, n)
    cell = latlng_to_cells(lat, lng, 9)
    tmp = Path(tempfile.mkdtemp(prefix="twin-h3-bench-"))
    path = tmp / "points.parquet"
    pq.write_table(pa.table({"lat": lat, "lng": lng, "t": pa.array(t_us, pa.timestamp("us", tz="UTC")),
                             "value": value, "cell": cell}), path, row_group_size=1_000_000)
    con = duckdb.connect()
    floor_sql = (f"SELECT cell, time_bucket(INTERVAL 1 HOUR, t) AS t, count(*) AS count, avg(value) AS mean "
                 f"FROM read_parquet('{path}') GROUP BY ALL")
    t_duck, duck = best(lambda: con.execute(floor_sql).to_arrow_table())

    def ours() -> pa.Table:
        tb = pq.read_table(path, columns=["lat", "lng", "t", "value"])
        return aggregate_points(tb["lat"].to_numpy(), tb["lng"].to_numpy(),
                                tb["t"].cast(pa.int64()).to_numpy(), tb["value"].to_numpy(), 9, 3600)

    t_ours, mine = best(ours)
    t_idx, _ = best(lambda: latlng_to_cells(lat, lng, 9))
    assert mine.num_rows == duck.num_rows
    assert int(pa.compute.sum(mine["count"]).as_py()) == n
    print(f"\nIndex + aggregate {n:,} points (clustered) into res-9 cells x hourly buckets "
          f"({duck.num_rows:,} groups); Parquet {path.stat().st_size / 1e6:.0f} MB; best of 3\n")
    print("| pipeline | seconds | points/s | ratio to DuckDB floor |")
    print("|---|---|---|---|")
    print(f"| DuckDB read Parquet + group by precomputed cell, hour (floor) | {t_duck:.2f} | "
          f"{n / t_duck / 1e6:.1f} M | 1.0x |")
    print(f"| twin read Parquet + index (res 9) + DuckDB group by | {t_ours:.2f} | {n / t_ours / 1e6:.1f} M | "
          f"{t_ours / t_duck:.2f}x |")
    print(f"| (of which twin indexing alone) | {t_idx:.2f} | {n / t_idx / 1e6:.1f} M | {t_idx / t_duck:.2f}x |")


if __name__ == "__main__":
    main()
