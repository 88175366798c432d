"""Imagery XYZ tiles over the demo city: pixels against an independent rasterio warp, TileJSON, caching, errors,
and bounded work (low zooms refused fast, pixels read per tile bounded, the server's memory flat)."""

from __future__ import annotations

import math
import os
import subprocess
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from rasterio.io import MemoryFile
from rasterio.transform import from_bounds
from rasterio.warp import Resampling, reproject

from tests.api.test_serve import _wait
from tests.conftest import ROOT, TWIN
from twin.api.app import create_app
from twin.errors import NotFound
from twin.store import Query, Store
from twin.tiles import imagery

HALF = math.pi * 6378137.0  # half the Web Mercator world width, metres


@pytest.fixture(scope="module")
def api(built_city) -> TestClient:
    return TestClient(create_app(built_city["store"]))


@pytest.fixture(scope="module")
def assets(built_city) -> list[dict]:
    """The imagery assets, newest first."""
    rows = [a for a in Store(built_city["store"]).features(query=Query(collection="assets")) if a["kind"] == "imagery"]
    assert len(rows) >= 2, "the demo city has images of two dates"
    return sorted(rows, key=lambda a: a["acquired"], reverse=True)


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    return int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def _mercator_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    size = 2 * HALF / 2**z
    return -HALF + x * size, HALF - (y + 1) * size, -HALF + (x + 1) * size, HALF - y * size


def _png(content: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with MemoryFile(content) as m, m.open() as d:
            assert d.driver == "PNG" and d.count == 4 and d.width == d.height == 256
            return d.read()


def _reference(asset: dict, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """Independent rendering: rasterio warps the red/green/blue bands into the tile's Mercator window (area
    average), then the documented stretch (reflectance = DN * scale + offset; 0..0.3 → 0..255)."""
    props = asset["properties"]
    idx = [props["bands"].index(c) for c in ("red", "green", "blue")]
    out = np.full((3, 256, 256), np.nan)
    window = from_bounds(*_mercator_bounds(z, x, y), 256, 256)
    with rasterio.open(asset["path"]) as src:
        for k, i in enumerate(idx):
            reproject(rasterio.band(src, i + 1), out[k], dst_transform=window, dst_crs="EPSG:3857",
                      resampling=Resampling.average, dst_nodata=np.nan)
    valid = ~np.isnan(out).any(axis=0)
    refl = out * np.array([props["scales"][i] for i in idx])[:, None, None] + \
        np.array([props["offsets"][i] for i in idx])[:, None, None]
    return np.clip(np.rint(refl / 0.3 * 255), 0, 255), valid


def test_listing_and_tilejson(api: TestClient, assets: list[dict]) -> None:
    doc = api.get("/imagery").json()
    ids = [im["id"] for im in doc["images"]]
    assert ids == [a["id"] for a in assets] and doc["images"][0]["default"] and not doc["images"][1]["default"]
    assert all(im["true_colour"] and "{z}/{x}/{y}.png" in im["tiles"] for im in doc["images"])
    tj = api.get("/imagery/tilejson.json").json()
    assert tj["tilejson"] == "3.0.0" and tj["name"] == assets[0]["id"] and tj["scheme"] == "xyz"
    assert tj["tiles"][0].endswith(f"/imagery/{{z}}/{{x}}/{{y}}.png?asset={assets[0]['id']}")
    w, s, e, n = assets[0]["extent"]["bbox_wgs84"]
    bw, bs, be, bn = tj["bounds"]
    assert bw <= w + 1e-9 and bs <= s + 1e-9 and be >= e - 1e-9 and bn >= n - 1e-9
    assert (be - bw) < 2 * (e - w)  # and not a world-wide box
    # 1 m pixels: the deepest level is the first at least as fine (z17: 0.92 m at 40°N), the shallowest fits the image
    assert tj["maxzoom"] == 17 and 12 <= tj["minzoom"] <= tj["maxzoom"]
    assert bw <= tj["center"][0] <= be and bs <= tj["center"][1] <= bn
    older = api.get(f"/imagery/tilejson.json?asset={assets[1]['id']}").json()
    assert older["name"] == assets[1]["id"] and assets[1]["id"] in older["tiles"][0]


@pytest.mark.parametrize("which", ["native", "zoomed_out"])
def test_tile_pixels_match_an_independent_rasterio_warp(api: TestClient, assets: list[dict], which: str) -> None:
    tj = api.get("/imagery/tilejson.json").json()
    w, s, e, n = tj["bounds"]
    z = tj["maxzoom"] if which == "native" else tj["minzoom"]
    x, y = _tile_of((w + e) / 2, (s + n) / 2, z)
    r = api.get(f"/imagery/{z}/{x}/{y}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = _png(r.content)
    ref, valid = _reference(assets[0], z, x, y)
    alpha = got[3] == 255
    assert set(np.unique(got[3])) <= {0, 255}
    assert (alpha == valid).mean() > 0.99  # transparent exactly outside the image (edge pixels may differ)
    both = alpha & valid
    assert both.sum() > 5000
    diff = np.abs(got[:3].astype(float) - ref)[:, both]
    if which == "native":  # one source pixel per tile pixel: the same values
        assert (diff <= 1).mean() > 0.99 and diff.mean() < 0.2
    else:  # averaging windows differ a little between GDAL's decimated read and a direct warp
        assert np.median(diff) <= 2 and diff.mean() < 5
    assert got[:3][:, both].std() > 5  # a real picture, not a flat fill


def test_asset_and_datetime_choose_the_image_and_outside_is_transparent(api: TestClient, assets: list[dict]) -> None:
    tj = api.get("/imagery/tilejson.json").json()
    w, s, e, n = tj["bounds"]
    z = tj["maxzoom"]
    x, y = _tile_of((w + e) / 2, (s + n) / 2, z)
    newest = api.get(f"/imagery/{z}/{x}/{y}.png").content
    old = api.get(f"/imagery/{z}/{x}/{y}.png?asset={assets[1]['id']}")
    assert old.status_code == 200 and old.content != newest
    between = assets[1]["acquired"].replace("Z", "+00:00")
    assert api.get(f"/imagery/{z}/{x}/{y}.png", params={"datetime": between}).content == old.content
    assert api.get(f"/imagery/{z}/{x}/{y}.png", params={"datetime": "2100-01-01T00:00:00Z"}).content == newest
    old_ref, valid = _reference(assets[1], z, x, y)
    got = _png(old.content)
    assert (np.abs(got[:3].astype(float) - old_ref)[:, valid & (got[3] == 255)] <= 1).mean() > 0.99
    # a tile far from the data (Atlantic), at a served zoom, is a transparent 256 px PNG, as documented
    far = api.get(f"/imagery/{tj['minzoom']}/{400 << (tj['minzoom'] - 10)}/{400 << (tj['minzoom'] - 10)}.png")
    assert far.status_code == 200 and not _png(far.content)[3].any()


def test_etag_and_cache_control(api: TestClient, assets: list[dict]) -> None:
    tj = api.get("/imagery/tilejson.json").json()
    x, y = _tile_of(tj["center"][0], tj["center"][1], 16)
    r = api.get(f"/imagery/16/{x}/{y}.png?asset={assets[0]['id']}")
    assert r.headers["etag"].startswith('"') and "max-age" in r.headers["cache-control"]
    assert api.get(f"/imagery/16/{x}/{y}.png?asset={assets[1]['id']}").headers["etag"] != r.headers["etag"]
    again = api.get(f"/imagery/16/{x}/{y}.png?asset={assets[0]['id']}", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content and again.headers["etag"] == r.headers["etag"]
    assert api.get(f"/imagery/16/{x}/{y}.png?asset={assets[0]['id']}",
                   headers={"If-None-Match": '"other"'}).content == r.content


@pytest.mark.parametrize(("url", "status", "says"), [
    ("/imagery/17/a/1.png", 400, "x"),
    ("/imagery/1.5/0/0.png", 400, "z"),
    ("/imagery/25/0/0.png", 404, "zoom"),
    ("/imagery/-1/0/0.png", 404, "zoom"),
    ("/imagery/2/4/0.png", 404, "does not exist"),
    ("/imagery/2/0/-1.png", 404, "does not exist"),
    ("/imagery/2/0/0.png?asset=nope", 404, "no imagery asset 'nope'"),
    ("/imagery/2/0/0.png?datetime=1990-01-01T00:00:00Z", 404, "no image acquired"),
    ("/imagery/2/0/0.png?datetime=last-week", 400, "datetime"),
    ("/imagery/2/0/0.png?datetime=2020-01-01T00:00:00Z/..", 400, "interval"),
    ("/imagery/tilejson.json?asset=nope", 404, "no imagery asset"),
    ("/imagery?as_of=99999", 404, "version"),
])
def test_bad_tile_requests(api: TestClient, url: str, status: int, says: str) -> None:
    r = api.get(url)
    assert r.status_code == status, r.text
    assert says in r.json()["detail"]


def test_non_rgb_asset_is_refused_by_name(built_city, tmp_path: Path, assets: list[dict]) -> None:
    import shutil

    root = tmp_path / "store"
    shutil.copytree(built_city["store"], root)
    s = Store(root)
    nir = {k: v for k, v in assets[1].items() if k != "_store"}
    nir["id"] = "src-imagery-nir-only"
    nir["properties"] = {**nir["properties"], "bands": ["nir", "swir1", "swir2", "pan"]}
    s.commit([nir], message="an image without red/green/blue")
    api = TestClient(create_app(root))
    listed = {im["id"]: im for im in api.get("/imagery").json()["images"]}
    assert listed["src-imagery-nir-only"]["true_colour"] is False and listed["src-imagery-nir-only"]["tiles"] is None
    r = api.get("/imagery/2/0/0.png?asset=src-imagery-nir-only")
    assert r.status_code == 404 and "red, green and blue" in r.json()["detail"]


def test_a_lost_source_file_is_a_503_naming_the_asset_not_a_500(built_city, tmp_path: Path,
                                                                  assets: list[dict]) -> None:
    import shutil

    root = tmp_path / "store"
    shutil.copytree(built_city["store"], root)
    s = Store(root)
    lost = {k: v for k, v in assets[0].items() if k != "_store"}
    gone = tmp_path / "moved-away.tif"
    shutil.copy(lost["path"] if Path(lost["path"]).is_absolute() else root / lost["path"], gone)
    lost.update(id="src-imagery-lost", path=str(gone), checksum="0" * 64)
    s.commit([lost], message="an image whose file goes missing")
    gone.unlink()
    api = TestClient(create_app(root), raise_server_exceptions=False)
    listed = {im["id"] for im in api.get("/imagery").json()["images"]}
    assert "src-imagery-lost" in listed  # the listing reads no pixels
    for url in ("/imagery/tilejson.json?asset=src-imagery-lost", "/imagery/16/0/0.png?asset=src-imagery-lost"):
        r = api.get(url)
        assert r.status_code == 503, (url, r.status_code, r.text)
        detail = r.json()["detail"]
        assert "src-imagery-lost" in detail and "moved-away.tif" in detail and str(tmp_path) not in detail


def _peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a process (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def test_low_zooms_answer_fast_over_http_and_memory_stays_flat(built_city, free_port: int) -> None:
    """Issue 11: /imagery/0/0/0.png used to hang a core and grow the server to ~5 GB (z8: 15 s). Below the TileJSON
    minzoom every zoom is a fast 404 naming it; at the minzoom a tile renders quickly; the server's peak memory
    stays far below what reading the whole source at full resolution per tile used to take."""
    env = {**os.environ, "TWIN_STORE": str(built_city["store"])}
    proc = subprocess.Popen([TWIN, "serve", "--port", str(free_port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{free_port}"
    try:
        _wait(base + "/health", proc)
        tj = httpx.get(base + "/imagery/tilejson.json", timeout=10).json()
        lon, lat = tj["center"][:2]
        before = _peak_rss_mb(proc.pid)
        for z in (0, 3, 8, 12, tj["minzoom"] - 1):
            x, y = _tile_of(lon, lat, z)
            t0 = time.perf_counter()
            r = httpx.get(f"{base}/imagery/{z}/{x}/{y}.png", timeout=2)
            assert time.perf_counter() - t0 < 2 and r.status_code == 404, (z, r.status_code)
            assert f"zoom {tj['minzoom']} (its TileJSON minzoom)" in r.json()["detail"]
        for z in (tj["minzoom"], tj["maxzoom"], imagery.MAX_ZOOM):
            x, y = _tile_of(lon, lat, z)
            t0 = time.perf_counter()
            r = httpx.get(f"{base}/imagery/{z}/{x}/{y}.png", timeout=5)
            assert time.perf_counter() - t0 < 2 and r.status_code == 200 and _png(r.content)[3].any(), z
        assert _peak_rss_mb(proc.pid) - before < 300, (before, _peak_rss_mb(proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a render still running (the fault this test is about): stop it
            proc.kill()
            proc.wait(timeout=10)


def test_pixels_read_per_tile_are_bounded_at_every_served_zoom(built_city, assets: list[dict]) -> None:
    """Every tile of the demo image from minzoom to zoom 24 reads one window of at most MAX_READ_SIDE pixels a
    side (16 tile sizes, whatever part of the image the tile covers); below the minzoom nothing is read."""
    im = imagery.choose(Store(built_city["store"]), assets[0]["id"])
    info = imagery.tile_info(im)
    w, s, e, n = info["bounds"]
    for z in range(info["minzoom"], imagery.MAX_ZOOM + 1):
        for f in (0.1, 0.5, 0.9):  # near the corners (inside the image, which is not aligned with lon/lat) and centre
            x, y = _tile_of(w + f * (e - w), n - f * (n - s), z)
            plan = imagery.read_plan(im, z, x, y)
            assert plan is not None, (z, x, y)
            assert max(plan.window.width, plan.window.height, *plan.out_shape) <= imagery.MAX_READ_SIDE
            assert plan.pixels <= imagery.MAX_READ_SIDE**2 == (4 * imagery.TILESIZE) ** 2, (z, plan)
    assert imagery.read_plan(im, info["maxzoom"], 0, 0) is None  # outside the image: nothing to read
    for z in (0, info["minzoom"] - 1):
        with pytest.raises(NotFound, match="minzoom"):
            imagery.read_plan(im, z, *_tile_of((w + e) / 2, (s + n) / 2, z))


def _synthetic(path: Path, size: int, overviews: list[int]) -> imagery.Image:
    """A size x size px, 1 m RGB GeoTIFF near Beijing (EPSG:4548), tiled and deflated, optionally with overviews."""
    yy, xx = np.mgrid[0:size, 0:size]
    data = np.stack([(xx * 7) % 3000, (yy * 5) % 3000, ((xx + yy) * 3) % 3000]).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint16", crs="EPSG:4548",
                       transform=from_bounds(448_000, 4_418_000, 448_000 + size, 4_418_000 + size, size, size),
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(data)
        if overviews:
            dst.build_overviews(overviews, Resampling.average)
    return imagery.Image(id=path.stem, path=path, acquired=None, checksum=path.stem, rgb=(1, 2, 3),
                         scales=(0.0001,) * 3, offsets=(0.0,) * 3, record={})


def test_a_large_image_without_overviews_is_served_only_where_reads_stay_bounded(tmp_path: Path) -> None:
    """Without overviews a zoomed-out tile would have to read every source pixel it covers: the minzoom rises to
    where a tile's window fits the budget, and with overviews it falls again; at the minzoom a tile renders fast."""
    bare = _synthetic(tmp_path / "bare.tif", 2500, [])
    pyramided = _synthetic(tmp_path / "pyramid.tif", 2500, [2, 4, 8])
    lo_bare, lo_pyr = imagery.tile_info(bare)["minzoom"], imagery.tile_info(pyramided)["minzoom"]
    assert lo_pyr < lo_bare <= imagery.tile_info(bare)["maxzoom"]
    lon, lat = (np.array(imagery.tile_info(bare)["bounds"]).reshape(2, 2).mean(axis=0))
    for im, lo in ((bare, lo_bare), (pyramided, lo_pyr)):
        x, y = _tile_of(lon, lat, lo)
        plan = imagery.read_plan(im, lo, x, y)
        assert plan is not None and max(plan.window.width, plan.window.height) <= imagery.MAX_READ_SIDE
        t0 = time.perf_counter()
        png = imagery.render_tile(im, lo, x, y)
        assert time.perf_counter() - t0 < 2 and png is not None and _png(png)[3].any()
        with pytest.raises(NotFound, match="minzoom"):
            imagery.render_tile(im, lo - 1, *_tile_of(lon, lat, lo - 1))
    # the pyramid's coarsest level is used where full resolution would exceed the budget
    plan = imagery.read_plan(pyramided, lo_pyr, *_tile_of(lon, lat, lo_pyr))
    assert plan is not None and plan.level.overview is not None


def _resolve(doc: dict, schema: dict) -> dict:
    """A schema with its ``$ref`` (if any) looked up in the document's components."""
    return doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema


def test_openapi_declares_png_tiles_and_error_bodies(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    tile = doc["paths"]["/imagery/{z}/{x}/{y}.png"]["get"]["responses"]
    assert list(tile["200"]["content"]) == ["image/png"]
    for code in ("400", "404"):
        schema = _resolve(doc, tile[code]["content"]["application/json"]["schema"])
        assert schema["properties"]["detail"]["type"] == "string" and schema["required"] == ["detail"]
    assert "minzoom" in tile["404"]["description"]
    tj = doc["paths"]["/imagery/tilejson.json"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"minzoom", "maxzoom", "tiles", "bounds"} <= set(tj["required"])
