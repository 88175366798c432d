"""Tile serving: tiles/s and latency at 50 concurrent clients, `twin serve` against a plain static-file server.

Both servers serve the same files in the same run: `twin serve` (uvicorn, ``--workers``) answers
``/tiles/main/<v>/<tileset>/…`` from the store's tile cache (ETag, gzip, Cache-Control), and Python's threading
``http.server`` serves the cache folder as plain files (no compression, no validators beyond Last-Modified). The
client is one asyncio process with 50 concurrent connections (httpx), replaying every building and terrain tile of
the tilesets (plus their tileset.json) in a shuffled order until ``--requests`` have been made; a cold client (no
If-None-Match), gzip accepted as browsers do.

Run: .venv/bin/python bench/tile_serving_bench.py [--store DIR] [--requests 6000] [--clients 50] [--workers 2]
(default store: the medium demo city of bench/tiles_bench.py, built there when missing)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiles_bench import ensure_store  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def tile_paths(store: Path, version: int) -> list[tuple[str, str]]:
    """(API path, path under the cache folder) of the tileset.json and every content and subtree file of the
    buildings tileset (its content URIs) and the terrain tileset (the files of its implicit tree)."""
    import json

    from twin.store import Store
    from twin.tiles.cache import TileCache

    cache = TileCache(Store(store))
    out = []
    for kind in ("buildings", "terrain"):
        ts = cache.tileset(kind, "main", version)
        kind_root = cache.root / kind
        out.append((f"/tiles/main/{version}/{kind}/tileset.json", ts.relative_to(cache.root).as_posix()))
        if kind == "buildings":
            files, stack = [], [json.loads(ts.read_text())["root"]]
            while stack:
                t = stack.pop()
                if "content" in t:
                    files.append(ts.parent / t["content"]["uri"])
                stack += t.get("children", [])
        else:
            files = [f for f in ts.parent.rglob("*") if f.suffix in (".glb", ".subtree")]
        for f in sorted(files):
            rel = f.relative_to(kind_root).as_posix()
            out.append((f"/tiles/main/{version}/{kind}/{rel}", f.relative_to(cache.root).as_posix()))
    return out


async def load(base: str, paths: list[str], n: int, clients: int) -> tuple[float, np.ndarray, int, int]:
    """Make ``n`` GETs over ``clients`` connections; (seconds, latencies, bytes on the wire, non-200 count)."""
    order = [paths[i % len(paths)] for i in range(n)]
    random.Random(0).shuffle(order)
    lat = np.zeros(n)
    wire = bad = 0
    it = iter(range(n))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        async def worker() -> None:
            nonlocal wire, bad
            for i in it:
                t = time.perf_counter()
                r = await client.get(order[i], headers={"Accept-Encoding": "gzip"})
                lat[i] = time.perf_counter() - t
                wire += int(r.headers.get("content-length", len(r.content)))
                bad += r.status_code != 200
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0, lat, wire, bad


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/twin-bench-tiles-medium"))
    ap.add_argument("--requests", type=int, default=6000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    store = a.store or ensure_store(a.work)
    from twin.store import Store

    version = Store(store).head()
    files = tile_paths(store, version)
    env = dict(os.environ, TWIN_STORE=str(store))
    p_api, p_static = free_port(), free_port()
    venv_bin = Path(sys.executable).parent
    api = subprocess.Popen([str(venv_bin / "twin"), "serve", "--store", str(store), "--port", str(p_api),
                            "--workers", str(a.workers)], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    static = subprocess.Popen([sys.executable, "-m", "http.server", str(p_static), "--bind", "127.0.0.1",
                               "--directory", str(store / "tiles")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait(f"http://127.0.0.1:{p_api}/health", api)
        wait(f"http://127.0.0.1:{p_static}/", static)
        runs = {}
        for name, port, paths in (("twin serve", p_api, [f[0] for f in files]),
                                  ("static http.server", p_static, ["/" + f[1] for f in files])):
            asyncio.run(load(f"http://127.0.0.1:{port}", paths, min(len(paths), 500), a.clients))  # warm-up
            runs[name] = asyncio.run(load(f"http://127.0.0.1:{port}", paths, a.requests, a.clients))
    finally:
        for p in (api, static):
            p.terminate()
            p.wait(10)
    size = sum((store / "tiles" / f[1]).stat().st_size for f in files)
    print(f"{len(files)} tile files ({size / 1e6:.1f} MB) of the buildings and terrain tilesets, version {version}; "
          f"{a.requests} GETs by {a.clients} concurrent clients; twin serve with {a.workers} workers\n")
    print("| server | tiles/s | p50 ms | p95 ms | MB on the wire | errors | ratio (tiles/s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = runs["static http.server"][0]
    for name, (secs, lat, wire, bad) in runs.items():
        print(f"| {name} | {a.requests / secs:,.0f} | {np.percentile(lat, 50) * 1e3:.0f} | "
              f"{np.percentile(lat, 95) * 1e3:.0f} | {wire / 1e6:.1f} | {bad} | {base / secs:.2f}x |")


if __name__ == "__main__":
    main()
