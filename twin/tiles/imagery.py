"""True-colour XYZ tiles (Web Mercator, 256 px PNG) of the ingested imagery assets, with rio-tiler.

Stretch: each band's digital numbers become reflectance with the asset's own scale and offset
(``properties.scales`` / ``properties.offsets``, e.g. 0.0001), then reflectance 0 → 0 and ``REFLECTANCE_MAX``
(0.3) → 255 linearly, clipped. The stretch is fixed (not per tile or per image), so neighbouring tiles and
images of different dates are comparable and show no seams. Pixels outside the image are transparent (alpha 0).
Resampling is the area average (reading and warping), so zoomed-out tiles do not alias.

Bounded work: a tile reads one window of one level of the image's pyramid (full resolution or a GDAL overview),
chosen so that it holds about ``OVERSAMPLE`` source pixels per tile pixel and never more than ``MAX_READ_SIDE``
pixels a side, then area-averages it into the 256 px tile. Zooms below the image's ``minzoom`` (the TileJSON's) are
refused (404): there a tile would cover more source pixels than the budget, or the whole image would fit in a
fraction of a tile. Beyond ``maxzoom`` (the native level) tiles are over-zoomed from the native pixels up to
``MAX_ZOOM``, which reads fewer pixels still.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.transform import Affine
from rasterio.transform import from_bounds as transform_from_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds
from rio_tiler.io import Reader
from rio_tiler.utils import render

from twin.errors import NotFound, Unavailable
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
OVERSAMPLE = 2  # source pixels per tile pixel a read aims at (enough for a clean area average)
MAX_READ_SIDE = 4 * TILESIZE  # the most source pixels a side one tile request may read (per band)
_PAD = 2  # source pixels read around a tile, so the average at its edges sees whole neighbourhoods
_HALF_WORLD = math.pi * 6378137.0  # half the Web Mercator world width, metres
_MERCATOR = "EPSG:3857"


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


@dataclass(frozen=True)
class Level:
    """One level of an image's pyramid: full resolution (``overview`` None) or a GDAL overview."""

    overview: int | None
    factor: float  # source pixels of full resolution per pixel of this level
    width: int
    height: int
    transform: Affine


@dataclass(frozen=True)
class Pyramid:
    """What tiling an image needs, read once: CRS, Mercator bounds, pyramid levels and the served zoom range."""

    crs: Any
    bounds_3857: tuple[float, float, float, float]
    bounds_wgs84: tuple[float, float, float, float]
    levels: tuple[Level, ...]  # finest first
    minzoom: int
    maxzoom: int


@dataclass(frozen=True)
class ReadPlan:
    """The one read a tile makes: a window of one pyramid level, read into ``out_shape`` (rows, cols)."""

    level: Level
    window: Window
    out_shape: tuple[int, int]

    @property
    def pixels(self) -> int:
        """Source pixels read per band (the window; GDAL decimates it to ``out_shape`` when larger)."""
        return int(self.window.width) * int(self.window.height)


def mercator_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """Web Mercator (EPSG:3857) bounds of XYZ tile z/x/y."""
    size = 2 * _HALF_WORLD / (1 << z)
    return -_HALF_WORLD + x * size, _HALF_WORLD - (y + 1) * size, -_HALF_WORLD + (x + 1) * size, _HALF_WORLD - y * size


def _window(pyr: Pyramid, level: Level, region: tuple[float, float, float, float]) -> Window:
    """The pixels of ``level`` covering a Mercator region (rounded outward, padded, clipped to the level)."""
    b = transform_bounds(_MERCATOR, pyr.crs, *region, densify_pts=21)
    w = from_bounds(*b, transform=level.transform)
    c0 = max(0, math.floor(w.col_off) - _PAD)
    r0 = max(0, math.floor(w.row_off) - _PAD)
    c1 = min(level.width, math.ceil(w.col_off + w.width) + _PAD)
    r1 = min(level.height, math.ceil(w.row_off + w.height) + _PAD)
    return Window(c0, r0, max(0, c1 - c0), max(0, r1 - r0))


def _region(pyr: Pyramid, z: int, x: int, y: int) -> tuple[float, float, float, float] | None:
    """The part of tile z/x/y the image covers, in Mercator metres; None when they do not meet."""
    tw, ts, te, tn = mercator_bounds(z, x, y)
    iw, is_, ie, in_ = pyr.bounds_3857
    w, s, e, n = max(tw, iw), max(ts, is_), min(te, ie), min(tn, in_)
    return None if w >= e or s >= n else (w, s, e, n)


def _plan(pyr: Pyramid, z: int, x: int, y: int) -> ReadPlan | None:
    """The read for tile z/x/y at any zoom: the coarsest level with at least ``OVERSAMPLE`` pixels per tile pixel
    whose window fits ``MAX_READ_SIDE`` (else the coarsest level, decimated to it); None outside the image."""
    region = _region(pyr, z, x, y)
    if region is None:
        return None
    tile_px = (region[2] - region[0]) / (2 * _HALF_WORLD / (1 << z) / TILESIZE)  # tile pixels across the region
    full = pyr.levels[0]
    win0 = _window(pyr, full, region)
    scale0 = max(win0.width - 2 * _PAD, 1) / max(tile_px, 1e-9)  # full-resolution pixels per tile pixel
    fine_enough = [lv for lv in pyr.levels if scale0 / lv.factor >= OVERSAMPLE] or [full]
    level = fine_enough[-1]
    win = _window(pyr, level, region)
    for coarser in pyr.levels[pyr.levels.index(level) + 1:]:
        if max(win.width, win.height) <= MAX_READ_SIDE:
            break
        level, win = coarser, _window(pyr, coarser, region)
    if win.width <= 0 or win.height <= 0:
        return None
    k = min(1.0, MAX_READ_SIDE / max(win.width, win.height))
    return ReadPlan(level, win, (max(1, round(win.height * k)), max(1, round(win.width * k))))


@lru_cache(maxsize=64)
def _pyramid(path: str, checksum: str) -> Pyramid:
    """The image's pyramid and zoom range: maxzoom is rio-tiler's (the first level at least as fine as a pixel);
    minzoom the higher of rio-tiler's (the whole image in about one tile) and the lowest zoom at which a tile's
    window in the coarsest level still fits ``MAX_READ_SIDE`` (cached per file and checksum)."""
    with rasterio.open(path) as src:
        w, h, crs, transform, bounds = src.width, src.height, src.crs, src.transform, src.bounds
        factors = src.overviews(1)
    levels = [Level(None, 1.0, w, h, transform)]
    for k, _ in enumerate(factors):
        with rasterio.open(path, overview_level=k) as ov:
            levels.append(Level(k, w / ov.width, ov.width, ov.height, ov.transform))
    levels.sort(key=lambda lv: lv.factor)
    with Reader(path) as r:
        wgs84 = tuple(float(v) for v in r.get_geographic_bounds(r.tms.rasterio_geographic_crs))
        rio_min, maxzoom = int(r.minzoom), int(r.maxzoom)
    b3857 = tuple(float(v) for v in transform_bounds(crs, _MERCATOR, *bounds, densify_pts=21))
    pyr = Pyramid(crs, b3857, wgs84, tuple(levels), rio_min, maxzoom)
    cx, cy = (b3857[0] + b3857[2]) / 2, (b3857[1] + b3857[3]) / 2
    budget_min = 0
    for z in range(maxzoom, -1, -1):  # windows only grow as z falls: stop at the first over the budget
        size = 2 * _HALF_WORLD / (1 << z)
        tx, ty = int((cx + _HALF_WORLD) // size), int((_HALF_WORLD - cy) // size)
        region = _region(pyr, z, tx, ty)
        win = _window(pyr, levels[-1], region) if region else None
        if win is not None and max(win.width, win.height) > MAX_READ_SIDE:
            budget_min = z + 1
            break
    return Pyramid(crs, b3857, wgs84, tuple(levels), min(max(rio_min, budget_min), maxzoom), maxzoom)


def _lost(im: Image, exc: Exception) -> Unavailable:
    """The catalog names a source file that can no longer be read (moved, deleted, corrupt): a 503 naming the
    asset and the file's name, not a 500 (and not the server's path)."""
    return Unavailable(f"imagery asset {im.id!r}: its source file {im.path.name} cannot be read ({type(exc).__name__});"
                       " re-ingest it or restore the file")


def pyramid(im: Image) -> Pyramid:
    """The (cached) pyramid and zoom range of an image."""
    try:
        return _pyramid(str(im.path), im.checksum)
    except (RasterioError, OSError) as exc:
        raise _lost(im, exc) from None


def require_zoom(im: Image, z: int) -> None:
    """Refuse a zoom the image does not serve: below its minzoom a tile would read too much or show a speck."""
    pyr = pyramid(im)
    if z < pyr.minzoom:
        raise ImageryError(f"z: imagery {im.id!r} has tiles from zoom {pyr.minzoom} (its TileJSON minzoom) to "
                           f"{MAX_ZOOM}, not {z}; zoom in to {pyr.minzoom} or more")


def read_plan(im: Image, z: int, x: int, y: int) -> ReadPlan | None:
    """The one read tile z/x/y makes (None outside the image); an ImageryError below the minzoom."""
    require_zoom(im, z)
    return _plan(pyramid(im), z, x, y)


def render_tile(im: Image, z: int, x: int, y: int, area: Any = None) -> bytes | None:
    """The PNG of tile z/x/y (RGBA; transparent where the image has no data, and outside ``area``, a shapely
    polygon in Web Mercator metres: a reader's area limit), or None outside the image.

    Reads the window of :func:`read_plan` (at most ``MAX_READ_SIDE`` pixels a side) and area-averages it into the
    tile's Web Mercator grid, so the work is bounded by the tile size, not by the part of the image it covers."""
    plan = read_plan(im, z, x, y)
    if plan is None:
        return None
    lv, win = plan.level, plan.window
    opts = {} if lv.overview is None else {"overview_level": lv.overview}
    try:
        with rasterio.open(str(im.path), **opts) as src:
            dn = src.read(list(im.rgb), window=win, out_shape=(3, *plan.out_shape), masked=True,
                          resampling=Resampling.average)
            src_transform = src.window_transform(win) @ Affine.scale(win.width / plan.out_shape[1],
                                                                     win.height / plan.out_shape[0])
            crs = src.crs
    except (RasterioError, OSError) as exc:
        raise _lost(im, exc) from None
    source = np.ma.filled(dn.astype(np.float32), np.nan)
    out = np.full((3, TILESIZE, TILESIZE), np.nan, np.float32)
    reproject(source, out, src_transform=src_transform, src_crs=crs, src_nodata=np.nan,
              dst_transform=transform_from_bounds(*mercator_bounds(z, x, y), TILESIZE, TILESIZE),
              dst_crs=_MERCATOR, dst_nodata=np.nan, resampling=Resampling.average)
    valid = ~np.isnan(out).any(axis=0)
    if area is not None:
        from rasterio.features import geometry_mask

        valid &= geometry_mask([area], out_shape=(TILESIZE, TILESIZE), invert=True, all_touched=False,
                               transform=transform_from_bounds(*mercator_bounds(z, x, y), TILESIZE, TILESIZE))
    rgb = stretch(np.nan_to_num(out), im.scales, im.offsets)
    rgb[:, ~valid] = 0
    return render(rgb, mask=np.where(valid, 255, 0).astype(np.uint8), img_format="PNG")


def tile_info(im: Image) -> dict[str, Any]:
    """WGS84 bounds and the zoom range the tile route serves (see :func:`pyramid`): maxzoom the native level,
    minzoom where the whole image fits in about one tile or a tile's read would exceed the budget."""
    pyr = pyramid(im)
    return {"bounds": list(pyr.bounds_wgs84), "minzoom": pyr.minzoom, "maxzoom": pyr.maxzoom}
