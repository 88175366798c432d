"""Raster imagery (GeoTIFF / COG, Landsat level-1 scenes) through rasterio.

The reader describes a file for the catalog (CRS, extent, band mapping, scale/offset, acquisition time, Landsat
calibration); :func:`read_bands` gives the fusion steps named bands as reflectance-like float32 masked arrays.

Band names come from ``--bands`` (``ctx.options["bands"]``: a list or a comma string, one name per band in file
order), else from the file's band descriptions, else from its colour interpretation when every band has one. A
multi-band file with none of these is refused: the band order is never guessed.

Values are scaled with the file's own scale/offset (GDAL ``scales``/``offsets``); when those are the identity a
``SCALE``/``OFFSET`` dataset tag is used instead, as the demo's reflectance x 10000 images carry; 8-bit files
without either are divided by 255, the usual 0-1 proxy for uncalibrated aerial imagery; other unscaled integers
stay digital numbers.

A pixel is no-data where *every* band equals the nodata value (GDAL's dataset mask) or where a float value is NaN;
a single band at the nodata value is a real measurement (a dark water pixel in NIR is 0 in 8-bit aerial imagery).

Landsat level-1 band files (``<scene>_B<n>.TIF`` next to ``<scene>_MTL.txt``), or the MTL itself, are read as
top-of-atmosphere reflectance (thermal bands as brightness temperature in kelvin): see :mod:`twin.sources.landsat`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from twin.geo.crs import normalise
from twin.sources import landsat as ls
from twin.sources.base import ReadContext, SourceError, SourceRead

ALIASES = {"r": "red", "g": "green", "b": "blue", "n": "nir", "nearinfrared": "nir", "near-infrared": "nir",
           "swir": "swir1", "thermal": "tir", "panchromatic": "pan"}
_COLORINTERP = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue",
                ColorInterp.alpha: "alpha"}


def parse_bands(option: str | Sequence[str] | None) -> list[str] | None:
    """A band mapping option (list or comma string) as normalised lower-case names; None when not given."""
    if option is None:
        return None
    items = option.split(",") if isinstance(option, str) else list(option)
    names = [canonical_band(str(n)) for n in items]
    return names or None


def canonical_band(name: str) -> str:
    """Lower-case band name with common aliases resolved (r → red, swir → swir1 …)."""
    n = name.strip().lower()
    return ALIASES.get(n, n)


def _declared_names(path: Path, ds: rasterio.DatasetReader, bands_option: Any) -> tuple[list[str], str]:
    """(band names in file order, where they came from: option | descriptions | colorinterp | default)."""
    names = parse_bands(bands_option)
    if names is not None:
        if len(names) != ds.count:
            raise SourceError(path, f"--bands names {len(names)} band(s) ({','.join(names)}) but the file has "
                                    f"{ds.count}; give one name per band in file order")
        _check_unique(path, names)
        return names, "option"
    desc = [canonical_band(d) if d else "" for d in ds.descriptions]
    if all(desc):
        _check_unique(path, desc)
        return desc, "descriptions"
    interp = [_COLORINTERP.get(c, "") for c in ds.colorinterp]
    if ds.count > 1 and all(interp) and len(set(interp)) == ds.count:
        return interp, "colorinterp"
    return [f"band{i}" for i in range(1, ds.count + 1)], "default"


def _check_unique(path: Path, names: list[str]) -> None:
    if any(not n for n in names):
        raise SourceError(path, f"band mapping {names} has an empty name")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SourceError(path, f"band mapping names {', '.join(dup)} more than once")


def _scale_offset(ds: rasterio.DatasetReader) -> tuple[list[float], list[float]]:
    """Per-band scale and offset to physical values: GDAL's, else SCALE/OFFSET tags, else 1/255 for 8-bit data."""
    scales = [1.0 if s is None else float(s) for s in ds.scales]
    offsets = [0.0 if o is None else float(o) for o in ds.offsets]
    if all(s == 1.0 for s in scales) and all(o == 0.0 for o in offsets):
        tags = ds.tags()
        try:
            s = float(tags.get("SCALE", tags.get("scale_factor", 1.0)))
            o = float(tags.get("OFFSET", tags.get("add_offset", 0.0)))
        except ValueError:
            s, o = 1.0, 0.0
        if s == 1.0 and o == 0.0 and all(d == "uint8" for d in ds.dtypes):
            s = 1.0 / 255.0  # 8-bit aerial/display imagery: digital numbers 0-255 as a 0-1 reflectance proxy
        scales, offsets = [s] * ds.count, [o] * ds.count
    return scales, offsets


def _check_readable(path: Path, ds: rasterio.DatasetReader) -> None:
    """Read the first and last block of every band: a truncated or corrupt file fails here, not mid-build."""
    blocks = list(ds.block_windows(1))
    for _, win in (blocks[0], blocks[-1]):
        try:
            ds.read(window=win)
        except RasterioError as exc:
            cause = exc.__cause__ or exc
            raise SourceError(path, f"truncated or corrupt raster: reading block {win} failed ({cause})") from exc


def raster_info(path: Path, crs: str | None = None, bands_option: Any = None) -> dict:
    """CRS, extent, size, band mapping, scale/offset, nodata and acquisition time of a raster (or Landsat MTL)."""
    path = Path(path)
    mtl = ls.mtl_for(path)
    if mtl is not None and ls.is_mtl(path):
        return _scene_info(path, mtl, crs)
    try:
        with rasterio.open(path) as ds:
            file_crs = ds.crs.to_wkt() if ds.crs else None
            tags = ds.tags()
            names, origin = _declared_names(path, ds, bands_option)
            scales, offsets = _scale_offset(ds)
            _check_readable(path, ds)
            info = {
                "bbox": [ds.bounds.left, ds.bounds.bottom, ds.bounds.right, ds.bounds.top],
                "width": ds.width,
                "height": ds.height,
                "count": ds.count,
                "dtype": ds.dtypes[0],
                "resolution": [abs(ds.transform.a), abs(ds.transform.e)],
                "bands": names,
                "bands_from": origin,
                "scales": scales,
                "offsets": offsets,
                "nodata": None if ds.nodata is None else (ds.nodata if np.isfinite(ds.nodata) else str(ds.nodata)),
                "datetime": tags.get("ACQUISITION_DATETIME") or tags.get("TIFFTAG_DATETIME"),
            }
    except RasterioIOError as exc:
        raise SourceError(path, f"not a readable raster: truncated or corrupt? ({exc})") from exc
    if mtl is not None:
        scene = ls.parse_mtl(mtl)
        band = ls.band_of_file(scene, path)
        if band is not None:
            cal = ls.calibration(scene, band)
            info["bands"], info["bands_from"] = [cal["band_name"]], "landsat-mtl"
            info["landsat"] = cal
            info["datetime"] = scene.acquired.isoformat() if scene.acquired else info["datetime"]
    _check_crs(path, file_crs, crs, info)
    return info


def _check_crs(path: Path, file_crs: str | None, crs: str | None, info: dict) -> None:
    if file_crs and crs and normalise(file_crs) != normalise(crs):
        raise SourceError(path, f"file declares CRS {normalise(file_crs)} but --crs says {normalise(crs)}")
    if not (file_crs or crs):
        raise SourceError(path, "no CRS in the raster; pass --crs (the CRS is never guessed)")
    info["crs"] = normalise(crs or file_crs)


def _scene_info(path: Path, mtl: Path, crs: str | None) -> dict:
    """Catalog facts of a whole Landsat scene given by its MTL: grid of its first band, calibration of each."""
    scene = ls.parse_mtl(mtl)
    files = ls.band_files(scene)
    if not files:
        raise SourceError(path, "the MTL names no band files (FILE_NAME_BAND_n)")
    cal = {b: ls.calibration(scene, b) for b in files}
    first = next(iter(files.values()))
    if not first.exists():
        raise SourceError(path, f"band file {first.name} named by the MTL is missing")
    info = raster_info(first, crs)
    info.update(
        count=len(files),
        bands=[c["band_name"] for c in cal.values()],
        bands_from="landsat-mtl",
        landsat={"scene_id": scene.scene_id, "spacecraft": scene.spacecraft, "sensor": scene.sensor,
                 "bands": cal},
        datetime=scene.acquired.isoformat() if scene.acquired else None,
    )
    info.pop("scales", None), info.pop("offsets", None)
    return info


def acquired_of(info: dict) -> datetime | None:
    """Parse TIFF 'YYYY:MM:DD HH:MM:SS' or ISO 8601 acquisition times (UTC when no zone is given)."""
    s = info.get("datetime")
    if not s:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", None):
        try:
            t = datetime.strptime(s, fmt) if fmt else datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            continue
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


def image_grid(path: Path | str) -> tuple[Any, tuple[int, int], str]:
    """(transform, (height, width), CRS) of a raster or of a Landsat scene's band grid; used to align other data."""
    path = Path(path)
    if ls.is_mtl(path):
        path = next(iter(ls.band_files(ls.parse_mtl(path)).values()))
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise SourceError(path, "no CRS in the raster; pass --crs (the CRS is never guessed)")
            return ds.transform, (ds.height, ds.width), normalise(ds.crs.to_wkt())
    except RasterioIOError as exc:
        raise SourceError(path, f"not a readable raster: truncated or corrupt? ({exc})") from exc


def read_bands(path: Path | str, names: Sequence[str], window: Window | None = None,
               bands_option: Any = None) -> dict[str, np.ma.MaskedArray]:
    """Named bands as float32 masked arrays in physical units (reflectance-like), for the band maths of fusion.

    ``names`` are band names of the mapping (``bands_option``, descriptions …); Landsat band files and MTLs give
    TOA reflectance (brightness temperature for thermal bands). Raises SourceError naming a band that is absent.
    """
    path = Path(path)
    wanted = [canonical_band(n) for n in names]
    mtl = ls.mtl_for(path)
    if mtl is not None:
        return _read_landsat(path, mtl, wanted, window)
    try:
        with rasterio.open(path) as ds:
            mapping, _ = _declared_names(path, ds, bands_option)
            missing = [n for n in wanted if n not in mapping]
            if missing:
                hint = "" if mapping[0] != "band1" or ds.count == 1 else "; pass --bands to name the bands"
                raise SourceError(path, f"no band named {', '.join(missing)} (bands: {', '.join(mapping)}){hint}")
            scales, offsets = _scale_offset(ds)
            idx = [mapping.index(n) + 1 for n in wanted]
            data = ds.read(idx, window=window, out_dtype="float32")
            valid = ds.dataset_mask(window=window) > 0
    except RasterioError as exc:
        raise SourceError(path, f"truncated or corrupt raster: {exc.__cause__ or exc}") from exc
    out: dict[str, np.ma.MaskedArray] = {}
    for k, (n, i) in enumerate(zip(wanted, idx, strict=True)):
        band = data[k]
        s, o = scales[i - 1], offsets[i - 1]
        if s != 1.0 or o != 0.0:
            band = band * np.float32(s) + np.float32(o)
        out[n] = np.ma.MaskedArray(band, mask=~valid | ~np.isfinite(band))
    return out


def band_names(path: Path | str, bands_option: Any = None) -> list[str]:
    """Names of the bands ``read_bands`` can give for ``path`` (its band mapping, or a Landsat scene's bands)."""
    path = Path(path)
    mtl = ls.mtl_for(path)
    if mtl is not None:
        scene = ls.parse_mtl(mtl)
        files = ls.band_files(scene)
        keys = list(files) if ls.is_mtl(path) else [k for k in [ls.band_of_file(scene, path)] if k]
        return [ls.band_name(scene, k) for k in keys]
    try:
        with rasterio.open(path) as ds:
            return _declared_names(path, ds, bands_option)[0]
    except RasterioIOError as exc:
        raise SourceError(path, f"not a readable raster: truncated or corrupt? ({exc})") from exc


def read_bands_on_grid(path: Path | str, names: Sequence[str], transform: Any, shape: tuple[int, int], crs: str,
                       bands_option: Any = None, resampling: Resampling = Resampling.bilinear
                       ) -> dict[str, np.ma.MaskedArray]:
    """Named bands of ``path`` resampled onto another grid (transform, (height, width), CRS), e.g. an older image
    onto a newer one's grid for change detection; a direct read when the grids already match."""
    path = Path(path)
    t, s, c = image_grid(path)
    if tuple(s) == tuple(shape) and normalise(c) == normalise(crs) and t.almost_equals(transform):
        return read_bands(path, names, bands_option=bands_option)
    if ls.mtl_for(path) is not None:
        raise SourceError(path, "resampling Landsat scenes onto another grid is not supported; read them on their "
                                "own grid")
    wanted = [canonical_band(n) for n in names]
    out: dict[str, np.ma.MaskedArray] = {}
    try:
        with rasterio.open(path) as src, WarpedVRT(src, crs=crs, transform=transform, width=shape[1],
                                                   height=shape[0], resampling=resampling) as vrt:
            mapping, _ = _declared_names(path, src, bands_option)
            missing = [n for n in wanted if n not in mapping]
            if missing:
                raise SourceError(path, f"no band named {', '.join(missing)} (bands: {', '.join(mapping)})")
            scales, offsets = _scale_offset(src)
            valid = vrt.dataset_mask() > 0
            for n in wanted:
                i = mapping.index(n)
                a = vrt.read(i + 1, out_dtype="float32")
                if scales[i] != 1.0 or offsets[i] != 0.0:
                    a = a * np.float32(scales[i]) + np.float32(offsets[i])
                out[n] = np.ma.MaskedArray(a, mask=~valid | ~np.isfinite(a))
    except RasterioError as exc:
        raise SourceError(path, f"truncated or corrupt raster: {exc.__cause__ or exc}") from exc
    return out


def _read_landsat(path: Path, mtl: Path, wanted: list[str], window: Window | None) -> dict[str, np.ma.MaskedArray]:
    scene = ls.parse_mtl(mtl)
    files = ls.band_files(scene)
    if ls.is_mtl(path):
        by_name = {ls.calibration(scene, b)["band_name"]: b for b in files}
    else:
        band = ls.band_of_file(scene, path)
        by_name = {ls.calibration(scene, band)["band_name"]: band} if band is not None else {}
    out: dict[str, np.ma.MaskedArray] = {}
    for n in wanted:
        key = ls.band_key(n) if ls.band_key(n) in files else by_name.get(n)
        if key is None:
            raise SourceError(path, f"no band named {n} in Landsat scene {scene.scene_id} "
                                    f"(bands: {', '.join(by_name)})")
        f = files[key]
        try:
            with rasterio.open(f) as ds:
                dn = ds.read(1, window=window, out_dtype="float32")
                valid = (ds.dataset_mask(window=window) > 0) & (dn > 0)  # DN 0 is Landsat fill
        except RasterioError as exc:
            raise SourceError(f, f"not a readable Landsat band file ({exc.__cause__ or exc})") from exc
        out[n] = np.ma.MaskedArray(ls.to_physical(scene, key, dn), mask=~valid)
    return out


def read(ctx: ReadContext) -> SourceRead:
    """Catalog facts of a raster (band mapping, scaling, calibration); pixels stay in the file for fusion."""
    info = raster_info(ctx.path, ctx.crs, ctx.options.get("bands"))
    if info["count"] > 1 and info.get("bands_from") == "default":
        raise ctx.fail(f"{info['count']} bands without names (no band descriptions); pass --bands with one name "
                       "per band in file order, e.g. --bands red,green,blue,nir")
    info["acquired"] = acquired_of(info)
    if info["acquired"] is None:
        info["acquired"] = date_in_name(ctx.path)
        if info["acquired"] is not None:
            info["acquired_from"] = "file name"
    return SourceRead(info=info)


def read_scene(ctx: ReadContext) -> SourceRead:
    """Catalog facts of a whole Landsat scene given by its ``*_MTL.txt``: the grid of its bands, the calibration
    of each (radiance, TOA reflectance, brightness temperature) and the acquisition time the MTL records."""
    if not ls.is_mtl(ctx.path):
        raise ctx.fail("a Landsat scene is ingested by its *_MTL.txt metadata file")
    info = raster_info(ctx.path, ctx.crs, ctx.options.get("bands"))
    info["acquired"] = acquired_of(info)
    return SourceRead(info=info)


_NAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")


def date_in_name(path: Path) -> datetime | None:
    """An acquisition date written in the file name (YYYYMMDD or YYYY-MM-DD, as NAIP and most vendors do), at
    00:00 UTC; None when the name has none or more than one distinct date."""
    found = {m.groups() for m in _NAME_DATE.finditer(path.name)}
    if len(found) != 1:
        return None
    y, m, d = (int(v) for v in found.pop())
    try:
        return datetime(y, m, d, tzinfo=UTC)
    except ValueError:
        return None
