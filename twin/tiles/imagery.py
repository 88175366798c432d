"""True-colour XYZ tiles (Web Mercator, 256 px PNG) of the ingested imagery assets, with rio-tiler.

Stretch: each band's digital numbers become reflectance with the asset's own scale and offset
(``properties.scales`` / ``properties.offsets``, e.g. 0.0001), then reflectance 0 → 0 and ``REFLECTANCE_MAX``
(0.3) → 255 linearly, clipped. The stretch is fixed (not per tile or per image), so neighbouring tiles and
images of different dates are comparable and show no seams. Pixels outside the image are transparent (alpha 0).
Resampling is the area average (reading and warping), so zoomed-out tiles do not alias.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.utils import render

from twin.errors import NotFound
from twin.store import ASSETS, MAIN, Store
from twin.store import Query as StoreQuery
from twin.times import to_utc

TILESIZE = 256
MAX_ZOOM = 24  # the deepest level of the WebMercatorQuad tile matrix set
REFLECTANCE_MAX = 0.3
STRETCH = f"linear reflectance 0..{REFLECTANCE_MAX} -> 0..255, clipped"
# Area average when reading and warping: zoomed-out tiles show the mean of the pixels they cover instead of
# nearest-neighbour aliasing; at and beyond the native resolution it picks the covering pixel.
RESAMPLING = "average"
_STRETCH_VERSION = "1"


class ImageryError(NotFound):
    """No image matches the request (unknown asset, nothing at that time, no red/green/blue bands)."""


@dataclass(frozen=True)
class Image:
    """An imagery asset that can be rendered in true colour."""

    id: str
    path: Path
    acquired: datetime | None
    checksum: str
    rgb: tuple[int, int, int]  # 1-based band indexes of red, green, blue
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]
    record: dict[str, Any]


def _asset_path(store: Store, asset: dict[str, Any]) -> Path:
    """Source paths are absolute; products written into the store are relative to its root."""
    p = Path(asset["path"])
    return p if p.is_absolute() else store.root / p


def _image(store: Store, a: dict[str, Any]) -> Image | None:
    props = a.get("properties") or {}
    bands = [str(b).lower() for b in props.get("bands") or []]
    if not all(c in bands for c in ("red", "green", "blue")):
        return None
    idx = tuple(bands.index(c) for c in ("red", "green", "blue"))
    scales = props.get("scales") or [1.0] * len(bands)
    offsets = props.get("offsets") or [0.0] * len(bands)
    return Image(
        id=a["id"], path=_asset_path(store, a), acquired=to_utc(a.get("acquired")), checksum=a.get("checksum", ""),
        rgb=tuple(i + 1 for i in idx), scales=tuple(float(scales[i] if scales[i] is not None else 1.0) for i in idx),
        offsets=tuple(float(offsets[i] if offsets[i] is not None else 0.0) for i in idx), record=a,
    )


def imagery_assets(store: Store, branch: str = MAIN, as_of: Any = None) -> list[dict[str, Any]]:
    """Every imagery asset record of the catalog, newest acquisition first (then by id)."""
    rows = [a for a in store.features(branch, as_of, StoreQuery(collection=ASSETS)) if a.get("kind") == "imagery"]
    rows.sort(key=lambda a: a["id"])
    rows.sort(key=lambda a: to_utc(a.get("acquired")) or datetime.min.replace(tzinfo=UTC), reverse=True)
    return rows


def images(store: Store, branch: str = MAIN, as_of: Any = None) -> list[Image]:
    """The true-colour renderable images (those with red, green and blue bands), newest first."""
    return [im for a in imagery_assets(store, branch, as_of) if (im := _image(store, a)) is not None]


def choose(store: Store, asset: str | None = None, at: datetime | None = None, branch: str = MAIN,
           as_of: Any = None) -> Image:
    """The image to render: ``asset`` by id, else the newest acquired at or before ``at``, else the newest."""
    if asset is not None:
        rec = next((a for a in imagery_assets(store, branch, as_of) if a["id"] == asset), None)
        if rec is None:
            raise ImageryError(f"no imagery asset {asset!r}; see /imagery for the images")
        im = _image(store, rec)
        if im is None:
            raise ImageryError(f"imagery asset {asset!r} has no bands named red, green and blue "
                               f"(bands: {(rec.get('properties') or {}).get('bands')})")
        return im
    ims = images(store, branch, as_of)
    if not ims:
        raise ImageryError("no true-colour imagery (red, green, blue bands) in the store")
    if at is None:
        return ims[0]
    before = [im for im in ims if im.acquired is not None and im.acquired <= at]
    if not before:
        raise ImageryError(f"no image acquired at or before {at.isoformat()}; the oldest is from "
                           f"{min((im.acquired for im in ims if im.acquired), default=None)}")
    return before[0]


def etag(im: Image, z: int, x: int, y: int) -> str:
    """Strong validator of a tile: the image's content checksum, the tile and the stretch version."""
    h = hashlib.sha256(f"{im.id}|{im.checksum}|{z}/{x}/{y}|{TILESIZE}|{_STRETCH_VERSION}".encode()).hexdigest()
    return f'"{h[:32]}"'


@lru_cache(maxsize=1)
def transparent_png() -> bytes:
    """A fully transparent 256 px tile (returned for tiles outside the image)."""
    return render(np.zeros((3, TILESIZE, TILESIZE), np.uint8), mask=np.zeros((TILESIZE, TILESIZE), np.uint8),
                  img_format="PNG")


def stretch(dn: np.ndarray, scales: tuple[float, ...], offsets: tuple[float, ...]) -> np.ndarray:
    """Digital numbers (bands first) → 0–255 bytes: reflectance = dn * scale + offset, 0..REFLECTANCE_MAX."""
    s = np.asarray(scales, dtype=np.float64)[:, None, None]
    o = np.asarray(offsets, dtype=np.float64)[:, None, None]
    refl = dn.astype(np.float64) * s + o
    return np.clip(np.rint(refl / REFLECTANCE_MAX * 255.0), 0, 255).astype(np.uint8)


def render_tile(im: Image, z: int, x: int, y: int) -> bytes | None:
    """The PNG of tile z/x/y (RGBA; transparent where the image has no data), or None outside the image."""
    with Reader(str(im.path)) as r:
        try:
            img = r.tile(x, y, z, indexes=im.rgb, tilesize=TILESIZE, resampling_method=RESAMPLING,
                         reproject_method=RESAMPLING)
        except TileOutsideBounds:
            return None
    data = np.ma.getdata(img.array)
    valid = ~np.ma.getmaskarray(img.array).any(axis=0)
    rgb = stretch(data, im.scales, im.offsets)
    rgb[:, ~valid] = 0
    return render(rgb, mask=np.where(valid, 255, 0).astype(np.uint8), img_format="PNG")


def tile_info(im: Image) -> dict[str, Any]:
    """WGS84 bounds and the zoom range from the image's resolution (rio-tiler: maxzoom is the first level at
    least as fine as a pixel, minzoom the level where the whole image fits in about one tile)."""
    with Reader(str(im.path)) as r:
        bounds = [float(v) for v in r.get_geographic_bounds(r.tms.rasterio_geographic_crs)]
        return {"bounds": bounds, "minzoom": int(r.minzoom), "maxzoom": int(r.maxzoom)}
