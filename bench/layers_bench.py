"""Layer query latency over HTTP: a 2 km² window, one day, res 9 and res 11, on a layer of 10M+ rows.

p50/p95 at 1 and 20 concurrent clients against `twin serve`, side by side with the same query run directly in
DuckDB on the store's Parquet (the floor: no HTTP, no JSON). Run: .venv/bin/python bench/layers_bench.py
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h3
import httpx
import numpy as np

from data_models import LayerSpec
from twin.layers.registry import Layers
from twin.layers.values import make_values
from twin.store import Store

LAT0, LNG0 = 39.90, 116.35  # a 10 km x 10 km city around here


def build_layer(store: Store, days: int) -> int:
    """Hourly values on every res-11 cell of the city for ``days`` days (rolled up to res 9)."""
    outer = h3.LatLngPoly([(LAT0, LNG0), (LAT0, LNG0 + 0.117), (LAT0 + 0.09, LNG0 + 0.117), (LAT0 + 0.09, LNG0)])
    cells = np.array([h3.str_to_int(c) for c in h3.h3shape_to_cells(outer, 11)], np.uint64)
    hours = days * 24
    t = np.datetime64("2024-05-01T00:00") + (np.arange(hours) * 3600).astype("timedelta64[s]")
    rng = np.random.default_rng(0)
    values = make_values(np.repeat(cells, hours), 11, rng.gamma(2.0, 20.0, len(cells) * hours),
                         t=np.tile(t, len(cells)))
    spec = LayerSpec(name="pm25-surface", variable="pm25", unit="ug/m3", aggregation="mean", resolutions=[9, 11],
                     time_bucket="1h")
    Layers(store).publish(spec, values)
    return values.num_rows


def windows(k: int, seed: int = 1) -> list[str]:
    """Random 2 km² boxes (1.414 km square) inside the city, as bbox query strings."""
    rng = np.random.default_rng(seed)
    dlat = 1414 / 111_320
    dlng = 1414 / (111_320 * np.cos(np.radians(LAT0 + 0.045)))
    out = []
    for _ in range(k):
        s, w = LAT0 + rng.uniform(0, 0.09 - dlat), LNG0 + rng.uniform(0, 0.117 - dlng)
        out.append(f"{w},{s},{w + dlng},{s + dlat}")
    return out


def timed_get(client: httpx.Client, url: str, params: dict) -> float:
    t = time.perf_counter()
    r = client.get(url, params=params, timeout=120)
    r.raise_for_status()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2, help="API worker processes (the machine has 2 cores)")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="twin-layers-bench-")) / "store"
    store = Store.init(root)
    t = time.perf_counter()
    n = build_layer(store, a.days)
    t_build = time.perf_counter() - t
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    twin = str(Path(sys.executable).with_name("twin"))
    proc = subprocess.Popen([twin, "serve", "--port", str(port), "--workers", str(a.workers)],
                            env={**os.environ, "TWIN_STORE": str(root)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/health").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    url = base + "/layers/pm25-surface/cells"
    day = {"start": "2024-05-03T00:00:00Z", "end": "2024-05-04T00:00:00Z"}
    rows = []
    try:
        layers = Layers(store)
        for res in (9, 11):
            ws = windows(a.queries)
            direct = []
            for w in ws:
                tt = time.perf_counter()
                q = layers.query("pm25-surface", bbox=[float(v) for v in w.split(",")], res=res, **day)
                direct.append(time.perf_counter() - tt)
            for clients in (1, 20):
                params = [{"bbox": w, "res": res, **day} for w in ws * 2]
                limits = httpx.Limits(max_connections=clients)
                with ThreadPoolExecutor(clients) as pool, httpx.Client(limits=limits) as c:
                    list(pool.map(lambda p, c=c: timed_get(c, url, p), params[: 2 * clients]))  # warm the workers
                    lat = list(pool.map(lambda p, c=c: timed_get(c, url, p), params))
                rows.append((res, clients, q.num_rows, np.percentile(lat, 50) * 1e3, np.percentile(lat, 95) * 1e3,
                             np.percentile(direct, 50) * 1e3))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"layer: {n:,} rows at res 11 (+ res 9 roll-up), published in {t_build:.1f} s; "
          f"{a.queries} random 2 km² windows x 2, one day; `twin serve --workers {a.workers}`\n")
    print("| res | concurrent clients | rows per answer | HTTP p50 ms | HTTP p95 ms | Python API p50 ms (no HTTP) |")
    print("|---|---|---|---|---|---|")
    for res, clients, nrows, p50, p95, d50 in rows:
        print(f"| {res} | {clients} | {nrows:,} | {p50:.0f} | {p95:.0f} | {d50:.0f} |")


if __name__ == "__main__":
    main()
