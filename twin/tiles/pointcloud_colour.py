"""Point colours for the tiler: the file's RGB, else true colour sampled from imagery, else a class/height palette.

Imagery: the bands named red/green/blue of each image are stretched linearly between their 2nd and 98th percentiles
(of the valid pixels, read at most ~1024 px on the long side) to 0–255; a point takes the pixel that contains it
(rasterio's ``index``/``sample`` convention) of the most recent image that covers it with valid data. Colours are
kept as sRGB bytes until the GLB is written, where they become linear (glTF's COLOR_0 is linear; see
``SRGB_TO_LINEAR16``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio
from rasterio.windows import Window

from twin.sources import SourceError

STRETCH_PERCENTILES = (2.0, 98.0)
STRETCH_MAX_PX = 1024  # the stretch is estimated from a read decimated to this size
BLOCK_PX = 512  # image blocks read per chunk of points

# ASPRS class colours (sRGB); classes 0/1 (never classified / unclassified) use the height ramp instead
CLASS_RGB = {
    2: (170, 130, 90), 3: (140, 200, 110), 4: (70, 160, 60), 5: (30, 110, 40), 6: (220, 90, 70),
    7: (255, 0, 255), 9: (60, 120, 210), 10: (120, 120, 120), 11: (150, 150, 150), 17: (200, 200, 200),
    18: (255, 0, 255), 26: (200, 200, 200),
}
# a viridis-like ramp for heights (sRGB stops)
RAMP = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64)


def _srgb_to_linear16() -> np.ndarray:
    """sRGB byte → linear value as a normalized uint16 (IEC 61966-2-1 transfer function)."""
    c = np.arange(256) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return np.round(lin * 65535).astype(np.uint16)


SRGB_TO_LINEAR16 = _srgb_to_linear16()


def linear16_to_srgb(values: np.ndarray) -> np.ndarray:
    """Inverse of ``SRGB_TO_LINEAR16`` (nearest sRGB byte), for reading tiles back."""
    return np.searchsorted((SRGB_TO_LINEAR16[1:].astype(np.int64) + SRGB_TO_LINEAR16[:-1]) / 2,
                           np.asarray(values, dtype=np.float64), side="left").astype(np.uint8)


@dataclass
class Image:
    """One image used for colouring: its RGB band indices (1-based) and per-band stretch."""

    path: str
    bands: tuple[int, int, int]
    crs_wkt: str
    stretch: list[tuple[float, float]] = field(default_factory=list)
    acquired: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON facts recorded in the tileset (so a reader can reproduce the colours)."""
        return {"path": self.path, "bands": list(self.bands), "acquired": self.acquired,
                "stretch": [[lo, hi] for lo, hi in self.stretch], "percentiles": list(STRETCH_PERCENTILES)}


def prepare_image(path: Path, band_names: list[str] | None = None, acquired: str | None = None) -> Image | None:
    """An ``Image`` when the file has bands named red, green and blue (else None); computes the stretch."""
    try:
        with rasterio.open(path) as ds:
            names = list(band_names) if band_names else [d or f"band{i + 1}" for i, d in enumerate(ds.descriptions)]
            names = [n.lower() for n in names]
            if not all(c in names for c in ("red", "green", "blue")) or len(names) != ds.count or ds.crs is None:
                return None
            bands = tuple(names.index(c) + 1 for c in ("red", "green", "blue"))
            scale = max(1.0, max(ds.width, ds.height) / STRETCH_MAX_PX)
            shape = (3, max(1, round(ds.height / scale)), max(1, round(ds.width / scale)))
            data = ds.read(list(bands), out_shape=shape, masked=True)
            crs_wkt = ds.crs.to_wkt()
    except rasterio.errors.RasterioIOError as exc:
        raise SourceError(path, f"cannot read the image for point colours ({exc})") from exc
    valid = ~np.ma.getmaskarray(data).any(axis=0)
    if not valid.any():
        return None
    stretch = []
    for b in range(3):
        lo, hi = np.percentile(np.asarray(data[b])[valid].astype(np.float64), STRETCH_PERCENTILES)
        stretch.append((float(lo), float(max(hi, lo + 1e-9))))
    return Image(str(path), bands, crs_wkt, stretch, acquired)  # type: ignore[arg-type]


def stretch_to_bytes(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear stretch of raw band values to sRGB bytes (clipped)."""
    v = (np.asarray(values, dtype=np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


@lru_cache(maxsize=32)
def _transformer(src_wkt: str, dst_wkt: str) -> pyproj.Transformer | None:
    src, dst = pyproj.CRS.from_wkt(src_wkt), pyproj.CRS.from_wkt(dst_wkt)
    if src.to_2d() == dst.to_2d():
        return None
    return pyproj.Transformer.from_crs(src.to_2d(), dst.to_2d(), always_xy=True)


class ImageSampler:
    """Samples the RGB of a list of images (most recent first) at points; datasets are opened once per process."""

    def __init__(self, images: list[Image]) -> None:
        self.images = images
        self._open: dict[str, Any] = {}

    def _ds(self, path: str) -> Any:
        if path not in self._open:
            self._open[path] = rasterio.open(path)
        return self._open[path]

    def close(self) -> None:
        """Close the datasets opened so far."""
        for ds in self._open.values():
            ds.close()
        self._open.clear()

    def sample(self, x: np.ndarray, y: np.ndarray, crs_wkt: str) -> tuple[np.ndarray, np.ndarray]:
        """(rgb (N, 3) uint8, coloured (N,) bool) for points (x, y) in ``crs_wkt``'s native units."""
        n = len(x)
        rgb = np.zeros((n, 3), dtype=np.uint8)
        have = np.zeros(n, dtype=bool)
        for img in self.images:
            todo = np.flatnonzero(~have)
            if todo.size == 0:
                break
            ds = self._ds(img.path)
            t = _transformer(crs_wkt, img.crs_wkt)
            xi, yi = (x[todo], y[todo]) if t is None else t.transform(x[todo], y[todo])
            inv = ~ds.transform
            xi, yi = np.asarray(xi, dtype=np.float64), np.asarray(yi, dtype=np.float64)
            col_f, row_f = inv.a * xi + inv.b * yi + inv.c, inv.d * xi + inv.e * yi + inv.f
            ok = np.isfinite(col_f) & np.isfinite(row_f)
            col = np.floor(np.where(ok, col_f, -1)).astype(np.int64)
            row = np.floor(np.where(ok, row_f, -1)).astype(np.int64)
            inside = ok & (col >= 0) & (col < ds.width) & (row >= 0) & (row < ds.height)
            idx = np.flatnonzero(inside)
            if idx.size == 0:
                continue
            r, c = row[idx], col[idx]
            nbx = (ds.width + BLOCK_PX - 1) // BLOCK_PX
            block = (r // BLOCK_PX) * nbx + c // BLOCK_PX
            order = np.argsort(block, kind="stable")
            cuts = np.flatnonzero(np.diff(block[order])) + 1
            for grp in np.split(order, cuts):
                br, bc = r[grp], c[grp]
                r0, c0 = int(br.min()), int(bc.min())
                win = Window(c0, r0, int(bc.max()) - c0 + 1, int(br.max()) - r0 + 1)
                data = ds.read(list(img.bands), window=win, masked=True)
                vals = data[:, br - r0, bc - c0]
                valid = ~np.ma.getmaskarray(vals).any(axis=0)
                target = todo[idx[grp[valid]]]
                raw = np.asarray(vals)[:, valid]
                for b in range(3):
                    rgb[target, b] = stretch_to_bytes(raw[b], *img.stretch[b])
                have[target] = True
        return rgb, have


def palette(cls: np.ndarray, z: np.ndarray, z_range: tuple[float, float]) -> np.ndarray:
    """Class colours for classified points, a height ramp over ``z_range`` for classes 0/1 (sRGB bytes)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    by_height = np.ones(256, dtype=bool)
    for k, c in CLASS_RGB.items():
        lut[k], by_height[k] = c, False
    out = lut[cls]
    ramp = by_height[cls]
    if ramp.any():
        z0, z1 = z_range
        t = np.clip((z[ramp] - z0) / max(z1 - z0, 1e-9), 0, 1) * (len(RAMP) - 1)
        i = np.minimum(t.astype(np.int64), len(RAMP) - 2)
        f = (t - i)[:, None]
        out[ramp] = np.rint(RAMP[i] * (1 - f) + RAMP[i + 1] * f).astype(np.uint8)
    return out
