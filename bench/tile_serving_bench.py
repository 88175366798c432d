"""Tile serving: tiles/s and latency at 50 concurrent clients, `twin serve` against a plain static-file server.

Both servers serve the same files in the same run: `twin serve` (uvicorn, ``--workers``) answers
``/tiles/main/<v>/<tileset>/…`` from the store's tile cache (ETag, gzip, Cache-Control), and Python's threading
``http.server`` serves the cache folder as plain files (no compression, no validators beyond Last-Modified). The
load generator is wrk (C, epoll; a Python client was the bottleneck) with 50 connections for ``--seconds`` per
server, cycling through every building and terrain tile of the tilesets (plus their tileset.json) in a shuffled
order; a cold client (no If-None-Match), gzip accepted as browsers do. ``make bench`` installs wrk (Debian).

Run: .venv/bin/python bench/tile_serving_bench.py [--store DIR] [--seconds 20] [--clients 50] [--workers 2]
(default store: the medium demo city of bench/tiles_bench.py, built there when missing)
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

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


WRK_SCRIPT = """
local paths, i = {}, 0
for line in io.lines(os.getenv("TWIN_PATHS")) do paths[#paths + 1] = line end
wrk.headers["Accept-Encoding"] = "gzip"
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %f %f %f\\n", summary.requests, summary.bytes,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(95) / 1e3))
end
"""


def load(base: str, paths: list[str], seconds: int, clients: int, work: Path) -> dict[str, float]:
    """wrk (C, epoll: the load generator must not be the bottleneck) with ``clients`` connections for ``seconds``,
    cycling through ``paths`` in a shuffled order; requests/s, bytes, errors, p50 and p95 latency (ms)."""
    order = list(paths)
    random.Random(0).shuffle(order)
    (work / "paths.txt").write_text("\n".join(order) + "\n")
    (work / "cycle.lua").write_text(WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t", "1", "-c", str(clients), "-d", f"{seconds}s", "-s", str(work / "cycle.lua"),
                          base], capture_output=True, text=True, check=True,
                         env=dict(os.environ, TWIN_PATHS=str(work / "paths.txt"))).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    n, nbytes, errors, secs, p50, p95 = (float(v) for v in line.split()[1:])
    return {"rps": n / secs, "mb": nbytes / 1e6, "errors": errors, "p50": p50, "p95": p95, "n": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/twin-bench-tiles-medium"))
    ap.add_argument("--seconds", type=int, default=20)
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
        with tempfile.TemporaryDirectory() as tmp:
            for name, port, paths in (("twin serve", p_api, [f[0] for f in files]),
                                      ("static http.server", p_static, ["/" + f[1] for f in files])):
                load(f"http://127.0.0.1:{port}", paths, 3, a.clients, Path(tmp))  # warm-up
                runs[name] = load(f"http://127.0.0.1:{port}", paths, a.seconds, a.clients, Path(tmp))
    finally:
        for p in (api, static):
            p.terminate()
            p.wait(10)
    size = sum((store / "tiles" / f[1]).stat().st_size for f in files)
    print(f"{len(files)} tile files ({size / 1e6:.1f} MB) of the buildings and terrain tilesets, version {version}; "
          f"wrk, {a.clients} connections, {a.seconds} s per server; twin serve with {a.workers} worker(s)\n")
    print("| server | tiles/s | p50 ms | p95 ms | MB on the wire | errors | ratio (tiles/s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = runs["static http.server"]["rps"]
    for name, r in runs.items():
        print(f"| {name} | {r['rps']:,.0f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['mb']:,.0f} | {r['errors']:.0f} | "
              f"{r['rps'] / base:.2f}x |")


if __name__ == "__main__":
    main()
