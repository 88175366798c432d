"""`twin build` and `twin ingest` SIGKILLed at named points (TWIN_FAULT=<point>:kill, a real SIGKILL of the real
command) leave a store whose committed data are intact and that the next writer commits to, cleaning up after."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import laspy
import numpy as np
import pyproj
import pytest

from tests.conftest import ROOT, TWIN
from tests.helpers_geojson import write_buildings_geojson
from twin.store import ASSETS, Query, Store


def _twin(store: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TWIN_STORE": str(store), "COLUMNS": "200"}
    env.pop("TWIN_FAULT", None)
    if fault:
        env["TWIN_FAULT"] = f"{fault}:kill"
    return subprocess.run([TWIN, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _sources(root: Path) -> Path:
    """Four cadastral footprints and a tiny LAZ over them (ground at 40 m, roofs at 52-55 m), EPSG:4548."""
    write_buildings_geojson(root / "cadastre" / "b.geojson", 4)
    rng = np.random.default_rng(3)
    n = 6000
    x, y = 448_000 + rng.uniform(-10, 110, n), 4_428_000 + rng.uniform(-10, 50, n)
    z, cls = 40.0 + rng.normal(0, 0.05, n), np.full(n, 2, np.uint8)
    for i in range(4):
        inside = (x > 448_001 + 30 * i) & (x < 448_011 + 30 * i) & (y > 4_428_001) & (y < 4_428_008)
        z[inside], cls[inside] = 52.0 + i, 6
    las = laspy.LasData(laspy.LasHeader(point_format=6, version="1.4"))
    las.header.scales, las.header.offsets = [0.01] * 3, [448_000, 4_428_000, 0]
    las.header.add_crs(pyproj.CRS.from_epsg(4548))
    las.x, las.y, las.z, las.classification = x, y, z, cls
    (root / "lidar").mkdir(parents=True)
    las.write(root / "lidar" / "tile.laz")
    extra = write_buildings_geojson(root / "later" / "extra.geojson", 3, y0=4_428_300)
    doc = json.loads(extra.read_text())
    for f in doc["features"]:
        f["properties"]["cadastre_id"] = "X" + f["properties"]["cadastre_id"]  # new buildings, not updates
    extra.write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """A store with the footprints and the cloud ingested (version 1), made by the real CLI once per module."""
    tmp = tmp_path_factory.mktemp("kill")
    src = _sources(tmp / "src")
    store = tmp / "store"
    assert _twin(store, "init").returncode == 0
    r = _twin(store, "ingest", str(src / "cadastre"), str(src / "lidar"))
    assert r.returncode == 0, r.stderr
    s = Store(store)
    return {"store": store, "src": src, "digest": s.content_digest(), "v1": s.features(), "assets": s.features(
        query=Query(collection=ASSETS))}


def _leftovers(root: Path) -> list[str]:
    """Store paths no committed state accounts for: anything in tmp/, segments no commit lists, product folders
    no commit names."""
    docs = [json.loads(p.read_text()) for p in (root / "commits").glob("*.json")]
    segs = {d["segment"] for d in docs} | {t["file"] for d in docs for t in d.get("tables", {}).values()}
    files = {f for d in docs for f in d.get("files", [])}
    out = [f"tmp/{p.name}" for p in (root / "tmp").iterdir()]
    out += [f"segments/{p.name}" for p in (root / "segments").iterdir() if p.name not in segs]
    products = root / "products" / "terrain"
    if products.is_dir():
        out += [f"products/terrain/{p.name}" for p in products.iterdir()
                if not any(f.startswith(f"products/terrain/{p.name}/") for f in files)]
    return sorted(out)


# (command, kill point, what the kill must have left: one regex per leftover, in any order)
CASES = [
    ("build", "build: heights@end", [r"tmp/build-\w+\.claim"]),
    ("build", "build: reality3d (terrain, trees)@end", [r"tmp/build-\w+\.claim", r"tmp/terrain-[\w-]+"]),
    ("build", "build: layers@start", [r"products/terrain/\w+", r"tmp/build-\w+\.claim"]),
    ("build", "table_written", [r"products/terrain/\w+", r"segments/00000002\.parquet", r"tmp/\w+\.parquet",
                                r"tmp/build-\w+\.claim"]),
    ("build", "json_written", [r"products/terrain/\w+", r"segments/00000002\.layer_values\.parquet",
                               r"segments/00000002\.parquet", r"tmp/\w+\.json", r"tmp/build-\w+\.claim"]),
    ("ingest", "ingest: committing@start", []),
    ("ingest", "segment_written", [r"tmp/\w+\.parquet"]),
    ("ingest", "json_written", [r"segments/00000002\.parquet", r"tmp/\w+\.json"]),
]


@pytest.mark.parametrize(("command", "point", "left"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_killed_writer_leaves_a_store_the_next_writer_commits_to(base, tmp_path, command, point, left) -> None:
    root = tmp_path / "store"
    shutil.copytree(base["store"], root)
    extra = str(base["src"] / "later")
    args = ["build", "--workers", "1"] if command == "build" else ["ingest", extra]
    r = _twin(root, *args, fault=point)
    assert r.returncode == -signal.SIGKILL, (r.stdout, r.stderr)
    found = _leftovers(root)
    assert len(found) == len(left) and all(sum(bool(re.fullmatch(p, f)) for f in found) == 1 for p in left), found
    s = Store(root)
    assert s.head() == 1 and s.content_digest() == base["digest"] and s.features() == base["v1"]
    # the next writer: a real ingest after a killed build, the same ingest again after a killed one
    r = _twin(root, "ingest", extra)
    assert r.returncode == 0 and "committed version 2" in r.stdout, (r.stdout, r.stderr)
    assert _leftovers(root) == []
    s = Store(root)
    assert s.features(as_of=1) == base["v1"] and s.count(query=Query(types=["Building"])) == 4 + 3
    assert s.features(as_of=1, query=Query(collection=ASSETS)) == base["assets"]


def test_a_build_killed_in_the_terrain_step_does_not_block_the_next_build(base, tmp_path) -> None:
    """Issue 11: the empty or half-written tmp/terrain-*/ of a killed build made every later commit fail."""
    root = tmp_path / "store"
    shutil.copytree(base["store"], root)
    r = _twin(root, "build", "--workers", "1", fault="build: reality3d (terrain, trees)@end")
    assert r.returncode == -signal.SIGKILL
    assert any(p.startswith("tmp/terrain-") for p in _leftovers(root))
    r = _twin(root, "build", "--workers", "1")
    assert r.returncode == 0 and "committed version 2" in r.stdout, (r.stdout, r.stderr)
    assert _leftovers(root) == []
    s = Store(root)
    dtm = s.get("prd-dtm", collection=ASSETS)
    assert s.asset_path(dtm).stat().st_size == dtm["size_bytes"] > 0
    assert all(b["height"] is not None for b in s.features(query=Query(types=["Building"])))
