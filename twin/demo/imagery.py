"""4-band (red, green, blue, NIR) satellite images on two dates, and the aligned land-cover truth rasters.

Images are uint16 surface reflectance x 10000, EPSG:4548, Cloud-Optimized GeoTIFF (DEFLATE, 256 px tiles,
internal overviews). Rendering goes window by window, so memory is bounded by the image width.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from . import crs
from .layout import BARE, DATE_1, DATE_2, GRASS, IMPERVIOUS, ROOF_MATERIALS, WATER, City
from .render import BRIDGE, ROAD, Index

DATES = (DATE_1, DATE_2)
BANDS = ("red", "green", "blue", "nir")
WAVELENGTHS_NM = ("665", "560", "490", "842")
# land-cover codes of truth/landcover*.tif
LANDCOVER = {1: "building", 2: "road/impervious", 3: "grass", 4: "tree", 5: "water", 6: "bare"}
GROUND_TO_LANDCOVER = np.zeros(256, np.uint8)
for _code, _lc in ((IMPERVIOUS, 2), (GRASS, 3), (WATER, 5), (BARE, 6), (ROAD, 2), (BRIDGE, 2)):
    GROUND_TO_LANDCOVER[_code] = _lc
GROUND_SPECTRA = np.zeros((256, 4), np.float64)
for _code, _sp in (
    (IMPERVIOUS, (1700, 1700, 1650, 2000)),
    (GRASS, (450, 850, 400, 3400)),
    (WATER, (350, 550, 650, 180)),
    (BARE, (2500, 2000, 1450, 2800)),
    (ROAD, (850, 900, 950, 1150)),
    (BRIDGE, (1100, 1100, 1100, 1300)),
):
    GROUND_SPECTRA[_code] = _sp
MATERIAL_SPECTRA = {
    "concrete": (2200, 2150, 2050, 2500),
    "red_tile": (2700, 1400, 1100, 2300),
    "grey_tile": (1300, 1350, 1400, 1600),
    "blue_metal": (1200, 1700, 2600, 2000),
    "white_membrane": (4200, 4200, 4100, 4300),
    "dark_bitumen": (700, 700, 750, 900),
}
TREE_SPECTRUM = np.array([300.0, 600.0, 300.0, 4300.0])
# per date: overall illumination factor and vegetation vigour (NIR factor): mid-May vs early June
DATE_FACTORS = ((1.0, 0.9), (1.01, 1.0))
ACQUISITION_TIME = "10:48:00"


def image_name(date: str) -> str:
    return f"bj_sat_{date}.tif"


def grid(city: City) -> tuple[object, int, int]:
    g = city.spec.gsd_m
    n = int(round(city.side / g))
    return Affine(g, 0.0, city.x0, 0.0, -g, city.y0 + city.side), n, n


def _copy_cog(tmp: Path, dst: Path) -> None:
    rasterio.shutil.copy(
        str(tmp),
        str(dst),
        driver="COG",
        COMPRESS="DEFLATE",
        PREDICTOR="2",
        BLOCKSIZE="256",
        OVERVIEW_RESAMPLING="AVERAGE",
        NUM_THREADS="1",
    )
    tmp.unlink()
    aux = Path(str(dst) + ".aux.xml")
    if aux.exists():
        aux.unlink()


def write_date(city: City, date_index: int, image_path: Path, landcover_path: Path, progress=None) -> None:
    date = DATES[date_index]
    transform, width, height = grid(city)
    index = Index(city, date_index)
    mats = {m: i for i, m in enumerate(ROOF_MATERIALS)}
    mat_sp = np.array([MATERIAL_SPECTRA[m] for m in ROOF_MATERIALS], np.float64)
    bmat = np.array([mats[b["material"]] for b in city.buildings], np.int64)
    part_mat = bmat[city.parts["building"]]
    rng_t = np.random.default_rng([city.seed, 200])
    tree_factor = rng_t.uniform(0.85, 1.15, len(city.trees["x"]))
    illum, vigour = DATE_FACTORS[date_index]
    common = dict(
        driver="GTiff",
        width=width,
        height=height,
        crs=crs.CRS_NAME,
        transform=transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    tmp_img = image_path.with_suffix(".tmp.tif")
    tmp_lc = landcover_path.with_suffix(".tmp.tif")
    dt_tag = date.replace("-", ":") + " " + ACQUISITION_TIME
    with (
        rasterio.open(tmp_img, "w", count=4, dtype="uint16", **common) as img,
        rasterio.open(tmp_lc, "w", count=1, dtype="uint8", **common) as lc,
    ):
        img.update_tags(
            TIFFTAG_DATETIME=dt_tag,
            ACQUISITION_DATE=date,
            ACQUISITION_DATETIME=f"{date}T{ACQUISITION_TIME}+08:00",
            SENSOR="twin.demo simulated 4-band satellite",
            SCALE="0.0001",
            UNITS="surface reflectance x 10000",
        )
        for i, (name, wl) in enumerate(zip(BANDS, WAVELENGTHS_NM, strict=True), start=1):
            img.set_band_description(i, name)
            img.update_tags(i, NAME=name, WAVELENGTH_NM=wl)
        lc.update_tags(
            TIFFTAG_DATETIME=dt_tag,
            ACQUISITION_DATE=date,
            CODES=";".join(f"{k}={v}" for k, v in LANDCOVER.items()),
        )
        lc.set_band_description(1, "landcover")
        step = 256
        for r0 in range(0, height, step):
            rows = min(step, height - r0)
            y_top = city.y0 + city.side - r0 * city.spec.gsd_m
            ground, parts, tid = index.rasterize(city.x0, y_top, width, rows, city.spec.gsd_m)
            cover = GROUND_TO_LANDCOVER[ground]
            spec = GROUND_SPECTRA[ground].copy()
            veg = ground == GRASS
            b = parts > 0
            cover[b] = 1
            spec[b] = mat_sp[part_mat[parts[b] - 1]]
            t = tid > 0
            cover[t] = 4
            spec[t] = TREE_SPECTRUM * tree_factor[tid[t] - 1][:, None]
            veg |= t
            spec *= illum
            spec[veg, 3] *= vigour
            rng = np.random.default_rng([city.seed, 201, date_index, r0])
            spec += rng.normal(0.0, 1.0, spec.shape) * (0.03 * spec + 40.0)
            data = np.clip(np.rint(spec), 1, 10000).astype(np.uint16)
            win = Window(0, r0, width, rows)
            img.write(np.moveaxis(data, 2, 0), window=win)
            lc.write(cover[None], window=win)
            if progress:
                progress(min(1.0, (r0 + rows) / height))
    _copy_cog(tmp_img, image_path)
    _copy_cog(tmp_lc, landcover_path)


def generate_imagery(city: City, image_dir: Path, truth_dir: Path, progress=None) -> list[dict]:
    image_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for di, date in enumerate(DATES):
        img = image_dir / image_name(date)
        lc = truth_dir / ("landcover.tif" if di == 1 else f"landcover_{date}.tif")
        write_date(city, di, img, lc, (lambda f, di=di: progress((di + f) / 2)) if progress else None)
        out.append({"date": date, "image": img, "landcover": lc})
    os.environ.pop("GDAL_PAM_ENABLED", None)
    return out
