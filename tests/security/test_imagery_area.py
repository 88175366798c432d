"""Imagery for an area-limited reader: the pixels outside its area are transparent (they do not exist for it),
inside they are the same as everyone's; its tiles carry their own ETag."""

from __future__ import annotations

import math
import shutil

import httpx
import numpy as np
import shapely
from rasterio.io import MemoryFile

from tests.api.server import serve
from twin.security import principals as P
from twin.store import Store


def _tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def _rgba(png: bytes) -> np.ndarray:
    """A PNG as rows × columns × 4, decoded by GDAL."""
    with MemoryFile(png) as f, f.open() as src:
        return np.moveaxis(src.read(), 0, -1)


def test_imagery_outside_the_area_is_transparent(built_city, tmp_path) -> None:
    shutil.copytree(built_city["store"], tmp_path / "store")
    s = Store(tmp_path / "store")
    x0, y0, x1, y1 = built_city["manifest"]["extent"]
    west = shapely.box(x0 - 1000, y0 - 1000, (x0 + x1) / 2, y1 + 1000)  # the city's western half
    key = P.add(s, "west", ["viewer"], "public", area=shapely.geometry.mapping(west))[1]
    with serve(tmp_path / "store", tmp_path) as srv:
        info = httpx.get(f"{srv.base}/imagery/tilejson.json").json()
        z = min(info["maxzoom"], info["minzoom"] + 1)
        lon, lat = info["center"][:2]
        x, y = _tile(lon, lat, z)
        url = f"{srv.base}/imagery/{z}/{x}/{y}.png"
        everyone = httpx.get(url)
        mine = httpx.get(url, headers={"Authorization": f"Bearer {key}"})
    assert everyone.status_code == mine.status_code == 200
    assert everyone.headers["etag"] != mine.headers["etag"]
    a, b = _rgba(everyone.content), _rgba(mine.content)
    shown = b[..., 3] > 0
    assert shown.any() and (a[..., 3] > 0).sum() > shown.sum()  # some of the image is gone for the reader
    assert (a[shown] == b[shown]).all()  # what it sees is everyone's image
    # the hidden pixels are those whose centres lie east of the area's edge
    cols = np.where((a[..., 3] > 0) & ~shown)[1]
    seen_cols = np.where(shown)[1]
    assert cols.min() >= seen_cols.max() - 1
