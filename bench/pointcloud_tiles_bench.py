"""Point-cloud 3D Tiles benchmark: points/s of twin's tiler against `py3dtiles convert` on the same file, same run.

Input: the ~10.5M-point LAZ of the ingest benchmark (LAS 1.4 format 6, EPSG:4548: the demo `small` city's LiDAR
tiles, two copies side by side), generated here, never committed. Contenders, interleaved round robin so that load
from other processes hits each alike:

* twin ``build_pointcloud_tileset`` with 1 and 2 workers (palette colours: the file has no RGB), and with 1 worker
  coloured from the demo's two images;
* ``py3dtiles convert --jobs 2 --srs_out 4978 --spec-version 1.1`` (glTF content, like ours);
* laspy's plain chunked read of the file (decode only): the floor.

Run: .venv/bin/python bench/pointcloud_tiles_bench.py [--repeat 1] [--copies 2]   (prints a Markdown table)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import laspy
from ingest_bench import make_laz, timed  # same input file as the ingest benchmark

from twin.tiles.pointcloud import build_pointcloud_tileset

PY3DTILES = Path(sys.executable).with_name("py3dtiles")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--copies", type=int, default=2, help="copies of the 5.3M-point small city in the LAZ")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="twin-pctiles-bench-") as tmp:
        run(Path(tmp), a.repeat, a.copies)


def run(tmp: Path, repeat: int, copies: int) -> None:
    """Build the input under ``tmp``, time every contender, check the outputs, print the table."""
    laz, n = make_laz(tmp, copies)
    images = sorted((tmp / "small" / "sources" / "imagery").glob("*.tif"))

    def ours(workers: int, imagery: list[Path] | None = None) -> int:
        out = tmp / f"twin{workers}{'i' if imagery else ''}"
        ts = build_pointcloud_tileset([laz], None, out, imagery=imagery or (), workers=workers)
        return int(json.loads(ts.read_text())["extras"]["twin"]["points"])

    def py3dtiles() -> int:
        out = tmp / "py3dtiles"
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([str(PY3DTILES), "convert", str(laz), "--out", str(out), "--jobs", "2", "--srs_out", "4978",
                        "--spec-version", "1.1", "--overwrite"], check=True, capture_output=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
        return len(list(out.rglob("*.glb")))

    def laspy_read() -> int:
        m = 0
        with laspy.open(laz) as f:
            for pts in f.chunk_iterator(1_000_000):
                m += len(pts)
        return m

    r = timed({"twin1": lambda: ours(1), "twin2": lambda: ours(2), "twin1i": lambda: ours(1, images),
               "py3dtiles": py3dtiles, "laspy": laspy_read}, repeat)
    assert r["twin1"][1] == r["twin2"][1] == r["twin1i"][1] == r["laspy"][1] == n
    assert r["py3dtiles"][1] > 0
    glbs = len(list((tmp / "twin1").rglob("*.glb")))
    t_py = r["py3dtiles"][0]
    print(f"{n:,} points, {laz.stat().st_size / 1e6:.0f} MB LAZ (LAS 1.4 format 6, EPSG:4548, no RGB), "
          f"{os.cpu_count()} cores; median of {repeat} run(s); twin wrote {glbs} GLB tiles\n")
    print("| contender | seconds | points/s | speed vs py3dtiles --jobs 2 |")
    print("|---|---|---|---|")
    rows = [
        ("twin `build_pointcloud_tileset`, 1 worker", r["twin1"][0]),
        ("twin, 2 workers", r["twin2"][0]),
        ("twin, 1 worker, colours sampled from 2 images", r["twin1i"][0]),
        ("`py3dtiles convert --jobs 2 --spec-version 1.1`", t_py),
        ("laspy plain chunked read (floor)", r["laspy"][0]),
    ]
    for label, t in rows:
        print(f"| {label} | {t:.1f} | {n / t / 1e3:,.0f} k | {t_py / t:.1f}x |")


if __name__ == "__main__":
    main()
