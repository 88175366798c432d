"""Encryption at rest (issue 14): the cost of reading sealed (AES-256-GCM) rows against the same rows in plain
Parquet segments.

Three stores hold the same N buildings (bench/store_bench.py's synthetic city): all public (plain segments), all
confidential (one sealed file, read with the key), and 10 % confidential (mixed). For each: the commit, a cold
read (a fresh Store: the first query decrypts and parses the sealed file), warm bbox queries (500 m windows, the
API's shape), a full count and a full read of every feature.

Run: .venv/bin/python bench/encryption_bench.py [--n 100000] [--queries 50]   (prints a Markdown table)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_bench import city, windows  # noqa: E402

from data_models import Classification  # noqa: E402
from twin.store import Query, Store  # noqa: E402
from twin.store.crypt import Key  # noqa: E402


def _timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def measure(root: Path, objs: list, key: Key | None, boxes: list[list[float]]) -> dict[str, float]:
    Store.init(root)
    store = Store(root, key=key)
    t_commit, _ = _timed(lambda: store.commit(objs, message="city"))
    sizes = sum(p.stat().st_size for p in (root / "segments").iterdir())
    cold = Store(root, key=key)  # a fresh process's first query: decrypts (sealed) and parses
    cold._con  # noqa: B018 - DuckDB and its spatial extension load outside the timing, as in a running server
    t_cold, _ = _timed(lambda: cold.features(query=Query(bbox=boxes[0])))
    warm = []
    for _ in range(3):
        for b in boxes:
            t, _ = _timed(lambda b=b: cold.features(query=Query(bbox=b)))
            warm.append(t)
    t_count = min(_timed(lambda: cold.count())[0] for _ in range(5))
    t_all, rows = min((_timed(lambda: cold.features()) for _ in range(3)), key=lambda r: r[0])
    assert len(rows) == len(objs)
    return {"commit": t_commit, "cold": t_cold, "bbox_p50": statistics.median(warm), "count": t_count,
            "all": t_all, "bytes": sizes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="twin-enc-bench-"))
    objs, _ = city(a.n)
    conf = [o.model_copy(update={"classification": Classification.confidential}) for o in objs]
    mixed = [c if i % 10 == 0 else o for i, (o, c) in enumerate(zip(objs, conf, strict=True))]
    boxes = windows(a.queries)
    key = Key.generate()
    measure(tmp / "warm-up", objs[:1000], None, boxes[:3])  # imports, first connection
    runs = {"plain (public)": measure(tmp / "plain", objs, None, boxes),
            "sealed (all confidential)": measure(tmp / "sealed", conf, key, boxes),
            "mixed (10 % confidential)": measure(tmp / "mixed", mixed, key, boxes)}
    base = runs["plain (public)"]
    print(f"{a.n:,} buildings, {a.queries} bbox queries of 500 m, {os.cpu_count()} cores\n")
    print("| store | commit s | on disk MB | cold first bbox ms | warm bbox p50 ms | count ms | all features s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in runs.items():
        print(f"| {name} | {r['commit']:.2f} | {r['bytes'] / 1e6:.1f} | {r['cold'] * 1e3:.0f} | "
              f"{r['bbox_p50'] * 1e3:.1f} | {r['count'] * 1e3:.1f} | {r['all']:.2f} |")
    print()
    for name in ("sealed (all confidential)", "mixed (10 % confidential)"):
        r = runs[name]
        print(f"{name} / plain: commit {r['commit'] / base['commit']:.2f}x, cold {r['cold'] / base['cold']:.2f}x, "
              f"warm bbox {r['bbox_p50'] / base['bbox_p50']:.2f}x, count {r['count'] / base['count']:.2f}x, "
              f"all {r['all'] / base['all']:.2f}x")


if __name__ == "__main__":
    main()
