"""GDAL's OGC API Features client (OAPIF driver) against a real `twin serve` over the built demo city."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.api.test_serve import _wait
from tests.conftest import ROOT, TWIN
from twin.store import Query, Store


@pytest.fixture(scope="module")
def server(built_city, tmp_path_factory) -> str:
    """`twin serve` in a subprocess over the built store; yields its base URL."""
    if shutil.which("ogrinfo") is None:
        if os.environ.get("CI"):
            raise AssertionError("ogrinfo (gdal-bin) is missing in CI: run `make sysdeps`")
        pytest.skip("ogrinfo is not installed (Debian: apt-get install gdal-bin, or `make sysdeps`)")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TWIN_STORE": str(built_city["store"])}
    proc = subprocess.Popen([TWIN, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base + "/health", proc)
        yield base
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=15)


def _gdal(*args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "GDAL_HTTP_TIMEOUT": "60", **({"CPL_DEBUG": "ON"} if debug else {})}
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, f"{' '.join(args)} failed: {r.stderr}"
    return r


def test_ogrinfo_lists_the_collections(server: str) -> None:
    out = _gdal("ogrinfo", "-ro", "-so", f"OAPIF:{server}").stdout
    for name in ("buildings", "building_parts", "roads", "landcover", "water", "vegetation", "sensors"):
        assert f": {name} (" in out, out


def test_ogrinfo_summary_has_count_and_extent(server: str, built_city) -> None:
    out = _gdal("ogrinfo", "-ro", "-so", f"OAPIF:{server}", "buildings").stdout
    n = Store(built_city["store"]).count(query=Query(types=["Building"]))
    assert f"Feature Count: {n}" in out
    extent = next(line for line in out.splitlines() if line.startswith("Extent:"))
    assert "(116.3" in extent and "39.9" in extent, extent  # CRS84 lon/lat of the Beijing demo city


def test_ogr2ogr_reads_every_building_exactly_once(server: str, built_city, tmp_path: Path) -> None:
    dst = tmp_path / "buildings.geojson"
    _gdal("ogr2ogr", "-f", "GeoJSON", str(dst), f"OAPIF:{server}", "buildings")
    doc = json.loads(dst.read_text())
    ids = [f["properties"]["id"] for f in doc["features"]]
    store_ids = [b["id"] for b in Store(built_city["store"]).features(query=Query(types=["Building"]))]
    assert len(ids) == len(set(ids)) == len(store_ids) and set(ids) == set(store_ids)
    f = doc["features"][0]
    assert f["geometry"]["type"] in ("Polygon", "MultiPolygon")
    lon, lat = f["geometry"]["coordinates"][0][0][:2] if f["geometry"]["type"] == "Polygon" else \
        f["geometry"]["coordinates"][0][0][0][:2]
    assert 116 < lon < 117 and 39 < lat < 41  # lon/lat order, CRS84
    assert "height" in f["properties"] and "lods" not in f["properties"]


def test_ogrinfo_spatial_filter_is_sent_as_bbox(server: str, built_city) -> None:
    box = ("116.3960", "39.9020", "116.3980", "39.9040")
    r = _gdal("ogrinfo", "-ro", "-q", "-spat", *box, f"OAPIF:{server}", "buildings", debug=True)
    assert "bbox=116.396" in r.stderr  # GDAL pushed the filter down (it would otherwise filter client-side)
    got = {line.split("=", 1)[1].strip() for line in r.stdout.splitlines() if line.strip().startswith("id (String)")}
    api = httpx.get(f"{server}/collections/buildings/items", params={"bbox": ",".join(box), "limit": 10000}).json()
    total = Store(built_city["store"]).count(query=Query(types=["Building"]))
    assert got == {f["id"] for f in api["features"]} and 0 < len(got) < total
