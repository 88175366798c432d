"""Layer cells under load (issue 11): one res-9 window of the demo city's hourly traffic layer over real HTTP, at 1
and 20 concurrent clients, against the same query done directly by DuckDB in-process (the floor: no HTTP, no
Python between the Parquet and the JSON).

`twin serve` runs in a subprocess over a demo store; each client is a thread with its own keep-alive httpx client.
Reported: p50/p95/p99 latency, requests/s, the server's CPU time per request, and the ratio to the floor run with
the same number of threads. The answers are checked equal to the floor's before anything is timed.

Run: .venv/bin/python bench/layer_cells_load_bench.py [--store PATH] [--requests 300] [--workers 1]
Without --store the small demo city is generated and built into a temporary folder first (about a minute).
``--code DIR`` serves the twin package found in DIR instead (e.g. ``git archive HEAD | tar -x -C DIR``), to measure
an older version against the same store and client.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import h3
import httpx
import numpy as np
import shapely

from twin.layers.registry import polygon_cells
from twin.store import Store

TWIN = str(Path(sys.executable).with_name("twin"))
ROOT = Path(__file__).resolve().parents[1]
LAYER, RES = "traffic-hourly", 9


def demo_store(work: Path) -> Path:
    """The small demo city (seed 7) generated, ingested and built into ``work/store``."""
    store = work / "store"
    subprocess.run([TWIN, "demo", "--size", "small", "--out", str(work / "demo"), "--store", str(store), "--no-serve"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return store


def window(store: Store) -> tuple[str, np.ndarray, str]:
    """The bbox (WGS84 text) around every res-9 cell of the layer, its cells as twin computes them, and the SQL of
    the layer values table."""
    src = store.table_sql("layer_values")
    con = duckdb.connect()
    cells = [int(c) for (c,) in con.execute(f"SELECT DISTINCT cell FROM {src} WHERE asset_id = ? AND res = ?",
                                            [LAYER, RES]).fetchall()]
    pts = np.array([h3.cell_to_latlng(h3.int_to_str(c)) for c in cells])
    (s, w), (n, e) = pts.min(axis=0) - 0.002, pts.max(axis=0) + 0.002
    return f"{w:.6f},{s:.6f},{e:.6f},{n:.6f}", polygon_cells(shapely.box(w, s, e, n), RES), src


def floor_sql(src: str, cells: np.ndarray) -> str:
    """The query as one DuckDB statement: filter the Parquet by layer, resolution and cells, and build the same JSON
    array of rows (cells as hex, times as ISO 8601) that the API returns."""
    ids = ", ".join(str(int(c)) for c in cells)
    obj = ("json_object('cell', printf('%x', cell), 'res', res, 't', strftime(t AT TIME ZONE 'UTC', "
           "'%Y-%m-%dT%H:%M:%SZ'), 'value', value, 'count', count, 'weight', weight)")
    return (f"SELECT '[' || coalesce(string_agg({obj}::VARCHAR, ',' ORDER BY cell, t), '') || ']' FROM {src} v "
            f"WHERE asset_id = '{LAYER}' AND res = {RES} AND cell IN ({ids})")


def run_load(call, clients: int, requests: int) -> tuple[list[float], float]:
    """``requests`` calls spread over ``clients`` threads (after one warm-up call each): latencies and wall time."""
    def worker(n: int) -> list[float]:
        do = call()
        do()
        out = []
        barrier.wait()
        for _ in range(n):
            t = time.perf_counter()
            do()
            out.append(time.perf_counter() - t)
        return out

    barrier = threading.Barrier(clients + 1)
    shares = [requests // clients + (i < requests % clients) for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(worker, n) for n in shares]
        barrier.wait()
        t0 = time.perf_counter()
        lat = [x for f in futures for x in f.result()]
        wall = time.perf_counter() - t0
    return lat, wall


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its finished children), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, help="a built demo store (default: build the small demo city)")
    ap.add_argument("--requests", type=int, default=300, help="timed requests per concurrency level")
    ap.add_argument("--workers", type=int, default=1, help="`twin serve --workers` (default 1, as `twin serve`)")
    ap.add_argument("--code", type=Path, help="serve the twin package from this source tree (before/after runs)")
    a = ap.parse_args()
    root = a.store or demo_store(Path(tempfile.mkdtemp(prefix="twin-cells-bench-")))
    bbox, cells, src = window(Store(root))
    sql = floor_sql(src, cells)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TWIN_STORE": str(root)}
    if a.code:
        env["PYTHONPATH"] = str(a.code.resolve())
    proc = subprocess.Popen([TWIN, "serve", "--port", str(port), "--workers", str(a.workers)], env=env,
                            cwd=a.code or ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    url, params = f"{base}/layers/{LAYER}/cells", {"bbox": bbox, "res": RES}
    results = []
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        answer = httpx.get(url, params=params, timeout=60)
        answer.raise_for_status()
        db = duckdb.connect()
        floor_body = db.execute(sql).fetchone()[0]
        got, want = answer.json(), json.loads(floor_body)
        assert got == want, f"HTTP and DuckDB answers differ: {len(got)} vs {len(want)} rows"

        def http_client():
            c = httpx.Client(timeout=120)
            return lambda: c.get(url, params=params).raise_for_status()

        def floor_client():
            cur = db.cursor()
            return lambda: cur.execute(sql).fetchone()[0].encode()

        for clients in (1, 20):
            lat_f, wall_f = run_load(floor_client, clients, a.requests)
            cpu0 = cpu_seconds(proc.pid)
            lat_h, wall_h = run_load(http_client, clients, a.requests)
            cpu_ms = (cpu_seconds(proc.pid) - cpu0) / (a.requests + clients) * 1e3
            results.append((clients, lat_h, wall_h, lat_f, wall_f, cpu_ms))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)

    print(f"layer {LAYER!r}, res {RES}, bbox {bbox} ({len(cells)} cells): {len(want):,} rows, "
          f"{len(answer.content) / 1e3:.0f} kB JSON per answer; {a.requests} timed requests per level; "
          f"`twin serve --workers {a.workers}`{f' from {a.code}' if a.code else ''}; {os.cpu_count()} cores\n")
    print("| path | clients | p50 ms | p95 ms | p99 ms | requests/s | server CPU ms/request | p50 / floor | "
          "req/s floor / twin |")
    print("|---|---|---|---|---|---|---|---|---|")
    for clients, lat_h, wall_h, lat_f, wall_f, cpu_ms in results:
        ph, pf = (np.percentile(x, [50, 95, 99]) * 1e3 for x in (lat_h, lat_f))
        rh, rf = len(lat_h) / wall_h, len(lat_f) / wall_f
        print(f"| twin HTTP | {clients} | {ph[0]:.1f} | {ph[1]:.1f} | {ph[2]:.1f} | {rh:.0f} | {cpu_ms:.1f} | "
              f"{ph[0] / pf[0]:.1f}x | {rf / rh:.1f}x |")
        print(f"| DuckDB in-process (floor) | {clients} | {pf[0]:.1f} | {pf[1]:.1f} | {pf[2]:.1f} | {rf:.0f} | | "
              f"1.0x | 1.0x |")


if __name__ == "__main__":
    main()
