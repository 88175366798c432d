"""Buildings 3D Tiles benchmark: buildings per second tiled (all LoDs) on the demo `medium` city, 1 and 2 processes,
an incremental re-tile after one changed building, and the terrain tileset; compared with pg2b3dm's published rate.

Input: a built store (``twin demo --size medium --no-serve --store DIR``, ~3,000 buildings with LoD1.2/1.3/2.2);
pass ``--store`` to run it on any store (e.g. the large city). Without ``--store`` the medium city is generated,
ingested and built into ``--work`` first (several minutes, kept for the next run).

Reference: pg2b3dm (C#, PostGIS → 3D Tiles) reports 9.7 M buildings in 1 h 54 min ≈ 1,418 buildings/s
(https://github.com/Geodan/pg2b3dm, "performance"), LoD1/LoD2 triangles prepared in the database, other hardware.

Run: .venv/bin/python bench/tiles_bench.py [--store DIR] [--repeat 1] [--large]   (prints a Markdown table)
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from pathlib import Path

PG2B3DM = 9_700_000 / (1 * 3600 + 54 * 60)


def ensure_store(work: Path) -> Path:
    """The medium demo city, built once into ``work/store``."""
    store = work / "store"
    if (store / "STORE.json").exists():
        return store
    from twin.demo import generate
    from twin.pipeline.build import build
    from twin.pipeline.ingest import ingest_paths
    from twin.store import Store

    src = work / "city"
    manifest = generate(src, size="medium", seed=7)
    s = Store.init(store, manifest.get("crs", "EPSG:4548"))
    acquired = {str((src / f["path"]).resolve()): f.get("acquired") for f in manifest["files"]}
    ingest_paths(s, [src / "sources"], acquired=acquired, message="ingest demo city (medium)")
    build(s)
    return store


def ensure_large_store(work: Path) -> Path:
    """The large demo city's 100k-building layout with the generator's LoD2.2 truth solids (CityJSON) ingested as
    the buildings' geometry: reconstructing 100k buildings from LiDAR takes ~30 min on 2 cores, tiling does not
    depend on where the solids came from. Multi-part buildings arrive as BuildingParts, folded into their building
    as the tile cache does."""
    store = work / "store"
    if (store / "STORE.json").exists():
        return store
    from twin.demo import crs
    from twin.demo.layout import build_city
    from twin.demo.sizes import get_size
    from twin.demo.truth import write_cityjson
    from twin.pipeline.ingest import ingest_paths
    from twin.store import Store

    spec = get_size("large")
    city = build_city(spec, 7, *crs.origin(spec.side_m))
    src = work / "buildings.city.json"
    src.parent.mkdir(parents=True, exist_ok=True)
    write_cityjson(city, src)
    s = Store.init(store, "EPSG:4548")
    ingest_paths(s, [src], message="large demo city: LoD2.2 truth solids")
    return store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=None, help="a built store (default: the medium demo city)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/twin-bench-tiles-medium"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--large", action="store_true", help="the 100k-building large city (truth solids, see above)")
    a = ap.parse_args()
    from twin.store import Query, Store
    from twin.tiles.buildings import fold_parts
    from twin.tiles.buildings_tileset import build_buildings
    from twin.tiles.terrain import build_terrain_tileset, terrain_inputs

    if a.large:
        store = Store(a.store or ensure_large_store(Path("/tmp/twin-bench-tiles-large")))
    else:
        store = Store(a.store or ensure_store(a.work))
    t0 = time.perf_counter()
    feats = fold_parts(store.features(query=Query(types=["Building", "BuildingPart"])))
    read_s = time.perf_counter() - t0
    n = sum(1 for b in feats if b.get("lods"))
    lods = sum(len(b.get("lods") or {}) for b in feats)
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="twin-tiles-bench-") as tmp:
        tmp = Path(tmp)
        best: dict[int, float] = {}
        for _ in range(a.repeat):
            for workers in (1, 2):
                cache = tmp / f"cache{workers}"
                shutil.rmtree(cache, ignore_errors=True)
                r = build_buildings(feats, store.crs, cache, cache / "tileset.json", workers=workers)
                best[workers] = min(best.get(workers, 1e9), r.seconds)
                tiles, encoded = r.tiles, len(r.encoded)
        for workers in (1, 2):
            rows.append((f"twin buildings, all LoDs, {workers} process{'es' if workers > 1 else ''}", best[workers],
                         f"{n / best[workers]:,.0f}"))
        e2e = read_s + min(best.values())
        rows.append(("twin end to end: store read + tiling (best of the two)", e2e, f"{n / e2e:,.0f}"))
        # incremental: one building's row changes (a new store version), everything else is reused
        changed = copy.deepcopy(feats)
        target = next(b for b in changed if b.get("lods"))
        target["_store"]["version"] = 10**9
        r = build_buildings(changed, store.crs, tmp / "cache1", tmp / "cache1" / "tileset2.json", workers=1)
        rows.append((f"twin incremental: 1 changed building ({len(r.encoded)} tiles re-encoded)", r.seconds, "-"))
        inputs = terrain_inputs(store, "main", store.head())
        if inputs is not None:
            t0 = time.perf_counter()
            build_terrain_tileset(inputs, tmp / "terrain")
            rows.append(("twin terrain tileset (DTM + imagery colours)", time.perf_counter() - t0, "-"))
    rows.append(("pg2b3dm, published (9.7 M buildings in 1 h 54 min)", 6840.0, f"{PG2B3DM:,.0f}"))
    print(f"store {store.root}: {n:,} buildings with geometry ({lods:,} LoD solids), read in {read_s:.1f} s; "
          f"{tiles} tiles ({encoded} encoded per full build)\n")
    print("| tiling | seconds | buildings/s |")
    print("|---|---:|---:|")
    for name, sec, rate in rows:
        print(f"| {name} | {sec:.2f} | {rate} |")


if __name__ == "__main__":
    main()
