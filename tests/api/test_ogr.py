"""GDAL's OGC API Features client (OAPIF driver) against a real `twin serve` over the built demo city."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.api.test_serve import _wait
from tests.conftest import ROOT, TWIN
from twin.layers.registry import Layers
from twin.store import Query, Store

_AUTH: dict[str, str] = {}  # the admin's Authorization header (the server fixture sets it): GIS staff sign in
ENTITIES = ("buildings", "building_parts", "roads", "landcover", "water", "vegetation", "sensors")
_FIELD = re.compile(r"^([^\s:]+): ([A-Za-z0-9]+(?:\([A-Za-z]+\))?) \(\d+\.\d+\)$")


def _current(store: Store, type_: str) -> list[dict]:
    """What the items answer by default: the entities whose validity has not ended by now."""
    now = datetime.now(UTC)
    return [r for r in store.features(query=Query(types=[type_]))
            if not r["valid_to"] or datetime.fromisoformat(r["valid_to"]) > now]


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
    _AUTH.update(built_city["admin"])
    proc = subprocess.Popen([TWIN, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base + "/health", proc)
        yield base
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=15)


def _gdal(*args: str, debug: bool = False, anonymous: bool = False) -> subprocess.CompletedProcess:
    """A GDAL command as the admin (its key in ``GDAL_HTTP_HEADERS``, as QGIS and ogr2ogr users send it), or as
    nobody."""
    env = {**os.environ, "GDAL_HTTP_TIMEOUT": "60", **({"CPL_DEBUG": "ON"} if debug else {}),
           **({} if anonymous else {"GDAL_HTTP_HEADERS": "\r\n".join(f"{k}: {v}" for k, v in _AUTH.items())})}
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, f"{' '.join(args)} failed: {r.stderr}"
    return r


def test_ogrinfo_lists_the_collections_and_the_layers(server: str, built_city) -> None:
    out = _gdal("ogrinfo", "-ro", "-so", f"OAPIF:{server}").stdout
    layers = [f"layer-{spec.name}" for spec in Layers(Store(built_city["store"])).list()]
    assert len(layers) >= 5
    for name in (*ENTITIES, *layers):
        assert f": {name} (" in out, out


def _summaries(server: str) -> dict[str, dict]:
    """``ogrinfo -so -al``: per layer its feature count, geometry type and fields (name -> OGR type)."""
    out = _gdal("ogrinfo", "-ro", "-so", "-al", f"OAPIF:{server}").stdout
    layers: dict[str, dict] = {}
    cur: dict = {}
    for line in out.splitlines():
        if line.startswith("Layer name: "):
            cur = layers.setdefault(line.removeprefix("Layer name: ").strip(), {"fields": {}})
        elif line.startswith("Feature Count: "):
            cur["count"] = int(line.removeprefix("Feature Count: "))
        elif line.startswith("Geometry: "):
            cur["geometry"] = line.removeprefix("Geometry: ")
        elif m := _FIELD.match(line):
            cur["fields"][m[1]] = m[2]
    return layers


def test_ogrinfo_sees_typed_fields_in_every_collection(server: str, built_city) -> None:
    """The issue's GIS checks: integer storeys, real quality_* fields, DateTime validity in every collection,
    building_parts with features, and the layers as collections with typed value fields."""
    store = Store(built_city["store"])
    got = _summaries(server)
    b = got["buildings"]["fields"]
    assert b["storeys"] == "Integer" and b["height"] == "Real" and b["store_version"] == "Integer"
    for lod in ("12", "13", "22"):
        assert b[f"quality_rmse_lod{lod}"] == "Real"
    quality = {k: v for k, v in b.items() if k.startswith("quality_")}
    assert quality["quality_valid"] == "Integer(Boolean)" and quality["quality_lod13_parts"] == "Integer"
    assert {v for k, v in quality.items() if k not in ("quality_valid", "quality_lod13_parts", "quality_errors",
                                                        "quality_flags")} == {"Real"}
    assert b["district"] == b["name"] == b["provenance_height_method"] == "String"
    assert b["provenance_height_acquired"] == "DateTime"
    assert not [k for k in b if k in ("attributes", "quality", "provenance")]  # no JSON text columns
    for cid in ENTITIES:
        f = got[cid]["fields"]
        assert f["valid_from"] == f["valid_to"] == "DateTime", (cid, f)
    parts = got["building_parts"]
    api = httpx.get(f"{server}/collections/building_parts/items", params={"limit": 1}, headers=_AUTH).json()
    assert parts["count"] == api["numberMatched"] >= len(_current(store, "Building")) - 10
    assert parts["fields"]["parent_id"] == "String" and parts["fields"]["height"] == "Real"
    assert parts["geometry"] == "Polygon"
    for spec in Layers(store).list():
        f = got[f"layer-{spec.name}"]
        assert f["geometry"] == "Polygon" and f["count"] > 0
        assert f["fields"]["cell"] == "String" and f["fields"]["res"] == "Integer" and f["fields"]["count"] == "Integer"
        values = [k for k, v in f["fields"].items() if v == "Real" and k != "area_m2"]
        assert len(values) == 1, f
        if spec.time_bucket:
            assert f["fields"]["time"] == f["fields"]["time_end"] == "DateTime"


def test_ogrinfo_summary_has_count_and_extent(server: str, built_city) -> None:
    out = _gdal("ogrinfo", "-ro", "-so", f"OAPIF:{server}", "buildings").stdout
    n = len(_current(Store(built_city["store"]), "Building"))  # demolished buildings are history
    assert f"Feature Count: {n}" in out
    extent = next(line for line in out.splitlines() if line.startswith("Extent:"))
    assert "(116.3" in extent and "39.9" in extent, extent  # CRS84 lon/lat of the Beijing demo city
    # without credentials GDAL sees the public city: the confidential compound is not in the count
    public = [b for b in _current(Store(built_city["store"]), "Building") if b["classification"] == "public"]
    assert 0 < len(public) < n
    out = _gdal("ogrinfo", "-ro", "-so", f"OAPIF:{server}", "buildings", anonymous=True).stdout
    assert f"Feature Count: {len(public)}" in out


def test_ogr2ogr_reads_every_building_exactly_once(server: str, built_city, tmp_path: Path) -> None:
    dst = tmp_path / "buildings.geojson"
    _gdal("ogr2ogr", "-f", "GeoJSON", str(dst), f"OAPIF:{server}", "buildings")
    doc = json.loads(dst.read_text())
    ids = [f["properties"]["id"] for f in doc["features"]]
    store_ids = [b["id"] for b in _current(Store(built_city["store"]), "Building")]
    assert len(ids) == len(set(ids)) == len(store_ids) and set(ids) == set(store_ids)
    f = doc["features"][0]
    assert isinstance(f["properties"]["quality_rmse_lod12"], float) and isinstance(f["properties"]["district"], str)
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
    api = httpx.get(f"{server}/collections/buildings/items", params={"bbox": ",".join(box), "limit": 10000},
                    headers=_AUTH).json()
    total = len(_current(Store(built_city["store"]), "Building"))
    assert got == {f["id"] for f in api["features"]} and 0 < len(got) < total
