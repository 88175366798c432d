"""Store benchmark: as-of bbox queries on 100k buildings and a 10k-entity commit, against GeoPandas full reads.

Run: .venv/bin/python bench/store_bench.py [--n 100000]   (prints a Markdown table for docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from data_models import Building
from twin.store import Query, Store

X0, Y0, SPAN = 440_000.0, 4_420_000.0, 10_000.0


def city(n: int, seed: int = 1) -> tuple[list[Building], np.ndarray]:
    rng = np.random.default_rng(seed)
    x = X0 + rng.uniform(0, SPAN, n)
    y = Y0 + rng.uniform(0, SPAN, n)
    w, h = rng.uniform(8, 40, n), rng.uniform(8, 30, n)
    boxes = shapely.box(x, y, x + w, y + h)
    objs = [Building(id=f"b{i:07d}", geometry=shapely.geometry.mapping(b), height=float(rng.uniform(3, 150)),
                     use="residential") for i, b in enumerate(boxes)]
    return objs, boxes


def windows(k: int, size: float = 500.0, seed: int = 2) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        x, y = X0 + rng.uniform(0, SPAN - size), Y0 + rng.uniform(0, SPAN - size)
        out.append([x, y, x + size, y + size])
    return out


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p)) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--changed", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=50)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    objs, boxes = city(a.n)
    store = Store.init(tmp / "store")
    t = time.perf_counter()
    store.commit(objs, message="initial")
    t_initial = time.perf_counter() - t
    rng = np.random.default_rng(3)
    idx = rng.choice(a.n, a.changed, replace=False)
    changed = [objs[i].model_copy(update={"height": objs[i].height + 1}) for i in idx]
    t = time.perf_counter()
    c = store.commit(changed, message="10k changes")
    t_commit = time.perf_counter() - t
    assert c.changes.modified == a.changed

    wins = windows(a.queries)
    lat: dict[str, list[float]] = {"latest": [], "as_of=1": []}
    counts = []
    for w in wins:
        for label, as_of in (("latest", None), ("as_of=1", 1)):
            t = time.perf_counter()
            feats = store.features(as_of=as_of, query=Query(bbox=w))
            lat[label].append(time.perf_counter() - t)
            counts.append(len(feats))

    gdf = gpd.GeoDataFrame({"id": [o.id for o in objs], "height": [o.height for o in objs]}, geometry=boxes,
                           crs="EPSG:4548")
    gpkg, gpq = tmp / "city.gpkg", tmp / "city.parquet"
    gdf.to_file(gpkg, engine="pyogrio")
    gdf.to_parquet(gpq)
    # the plain alternative to a 10k-entity commit: rewrite the whole file with the changed rows
    gdf.loc[idx, "height"] = gdf.loc[idx, "height"] + 1
    t = time.perf_counter()
    gdf.to_parquet(tmp / "rewrite.parquet")
    t_rewrite_pq = time.perf_counter() - t
    t = time.perf_counter()
    gdf.to_file(tmp / "rewrite.gpkg", engine="pyogrio")
    t_rewrite_gpkg = time.perf_counter() - t
    base: dict[str, list[float]] = {"GeoPandas read GeoPackage + bbox": [], "GeoPandas read GeoParquet + bbox": []}
    for w in wins[:10]:
        for label, reader in (("GeoPandas read GeoPackage + bbox", lambda: gpd.read_file(gpkg, engine="pyogrio")),
                              ("GeoPandas read GeoParquet + bbox", lambda: gpd.read_parquet(gpq))):
            t = time.perf_counter()
            df = reader()
            sel = df[df.intersects(shapely.box(*w))]
            base[label].append(time.perf_counter() - t)
            assert len(sel) >= 0
    twin_p50 = pct(lat["latest"], 50)
    print(f"store: {a.n:,} buildings; initial commit {t_initial:.2f} s; commit of {a.changed:,} changed "
          f"entities {t_commit:.2f} s; mean {statistics.mean(counts):.0f} features per 500 m window\n")
    print("| write 10k changed entities | seconds | ratio to twin |")
    print("|---|---|---|")
    print(f"| twin commit (versioned, old state kept) | {t_commit:.2f} | 1.0x |")
    print(f"| GeoPandas rewrite whole GeoParquet | {t_rewrite_pq:.2f} | {t_rewrite_pq / t_commit:.1f}x |")
    print(f"| GeoPandas rewrite whole GeoPackage | {t_rewrite_gpkg:.2f} | {t_rewrite_gpkg / t_commit:.1f}x |\n")
    print("| query (500 m x 500 m bbox) | p50 ms | p95 ms | ratio to twin latest p50 |")
    print("|---|---|---|---|")
    for label, xs in {**{f"twin {k}": v for k, v in lat.items()}, **base}.items():
        print(f"| {label} | {pct(xs, 50):.1f} | {pct(xs, 95):.1f} | {pct(xs, 50) / twin_p50:.1f}x |")


if __name__ == "__main__":
    main()
