"""Imagery XYZ tiles over the demo city: pixels against an independent rasterio warp, TileJSON, caching, errors."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient
from rasterio.io import MemoryFile
from rasterio.transform import from_bounds
from rasterio.warp import Resampling, reproject

from twin.api.app import create_app
from twin.store import Query, Store

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
    # a tile far from the data (Atlantic) is a transparent 256 px PNG, as documented
    far = api.get("/imagery/10/400/400.png")
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
