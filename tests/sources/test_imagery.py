"""Imagery reader, Landsat calibration and spectral indices, checked against real NAIP and Landsat 5 data.

Reference values come from /work/shared/data/imagery/SOURCE.md (measured outside this project) and from the
Landsat MTL's own coefficients; the solar position is checked against the sun angles USGS wrote into the MTL.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from tests.conftest import shared_data
from twin.fusion.change import change_magnitude
from twin.geo import indices as ix
from twin.sources import ReadContext, SourceError
from twin.sources import landsat as ls
from twin.sources.imagery import image_grid, raster_info, read, read_bands, read_bands_on_grid

NAIP_BANDS = "red,green,blue,nir"
NAIP_DATES = {"20090818": 0.117, "20140720": -0.102, "20200831": 0.138}  # mean NDVI, SOURCE.md
SCENE = "LT52240631988227CUB02"


def _naip(date: str) -> Path:
    return shared_data("imagery") / "naip_north_dakota" / f"m_4709963_se_14_1_{date}.tif"


def _landsat() -> Path:
    return shared_data("imagery") / "landsat5_tm"


def _ctx(path: Path, **options) -> ReadContext:
    return ReadContext(path=path, store_crs="EPSG:4548", asset_id="src-test", options=options)


def _write_tif(path: Path, data: np.ndarray, *, crs: str | None = "EPSG:4548", nodata=None, descriptions=None,
               scales=None, offsets=None, tags=None, tiled: bool = False) -> Path:
    count, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=count, dtype=data.dtype.name,
                   transform=Affine(1.0, 0.0, 448_000.0, 0.0, -1.0, 4_420_000.0), nodata=nodata)
    if crs:
        profile["crs"] = crs
    if tiled:
        profile.update(tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for i, d in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, d)
        if scales:
            ds.scales = scales
        if offsets:
            ds.offsets = offsets
        if tags:
            ds.update_tags(**tags)
    return path


# ------------------------------------------------------------------------------------------ NAIP, three dates


@pytest.fixture(scope="module")
def naip_ndvi() -> dict[str, np.ma.MaskedArray]:
    return {d: ix.ndvi(read_bands(_naip(d), ["red", "nir"], bands_option=NAIP_BANDS)) for d in NAIP_DATES}


def test_naip_ndvi_is_bounded_and_matches_the_measured_means(naip_ndvi) -> None:
    for date, expected in NAIP_DATES.items():
        v = naip_ndvi[date]
        assert v.dtype == np.float32
        assert float(v.min()) >= -1.0 and float(v.max()) <= 1.0
        assert v.count() > 0.99 * v.size  # nodata 0 is per pixel (all bands), not per band
        assert abs(float(v.mean()) - expected) < 0.01, (date, float(v.mean()), expected)


def test_naip_2014_has_more_open_water_than_2009(naip_ndvi) -> None:
    water = {d: int((naip_ndvi[d] < 0).filled(False).sum()) for d in NAIP_DATES}
    assert water["20140720"] > 1.2 * water["20090818"], water


def test_naip_change_map_is_symmetric() -> None:
    a, b = "20090818", "20140720"
    # the dates' grids differ (723 vs 724 rows, shifted origins): both go onto the 2009 grid first
    transform, shape, crs = image_grid(_naip(a))
    assert image_grid(_naip(b))[1] != shape
    names = ["red", "green", "blue", "nir"]
    ba, bb = (read_bands_on_grid(_naip(d), names, transform, shape, crs, bands_option=NAIP_BANDS) for d in (a, b))
    assert ba["red"].shape == bb["red"].shape == shape
    # NDVI difference and change-vector magnitude: A vs B flags the same area as B vs A
    d_ab = (ix.ndvi(bb) - ix.ndvi(ba)).filled(0)
    d_ba = (ix.ndvi(ba) - ix.ndvi(bb)).filled(0)
    assert int((np.abs(d_ab) > 0.2).sum()) == int((np.abs(d_ba) > 0.2).sum()) > 1000
    ab_mag, ba_mag = change_magnitude(ba, bb), change_magnitude(bb, ba)
    n_ab, n_ba = int((ab_mag > 0.3).filled(False).sum()), int((ba_mag > 0.3).filled(False).sum())
    assert n_ab == n_ba > 1000
    # more water in 2014 shows up as a change: the changed area overlaps the new water
    assert float(((ix.ndvi(bb) < 0) & (ix.ndvi(ba) >= 0)).filled(False)[(ab_mag > 0.3).filled(False)].mean()) > 0.2


def test_naip_needs_a_band_mapping(tmp_path: Path) -> None:
    path = _naip("20090818")
    with pytest.raises(SourceError, match="--bands") as err:
        read(_ctx(path))
    assert str(path) in str(err.value)
    got = read(_ctx(path, bands=NAIP_BANDS))
    assert got.info["bands"] == ["red", "green", "blue", "nir"] and got.info["crs"] == "EPSG:26914"
    got = read(_ctx(path, bands=["R", "G", "B", "NIR"]))  # a list and aliases work too
    assert got.info["bands"] == ["red", "green", "blue", "nir"]
    with pytest.raises(SourceError, match="3 band.*4") as err:
        read(_ctx(path, bands="red,green,blue"))
    assert str(path) in str(err.value)
    with pytest.raises(SourceError, match="more than once"):
        read(_ctx(path, bands="red,red,blue,nir"))
    with pytest.raises(SourceError, match="no band named swir1"):
        read_bands(path, ["swir1"], bands_option=NAIP_BANDS)


def test_windowed_read_equals_the_full_read() -> None:
    full = read_bands(_naip("20200831"), ["nir"], bands_option=NAIP_BANDS)["nir"]
    win = rasterio.windows.Window(100, 50, 200, 120)
    part = read_bands(_naip("20200831"), ["nir"], window=win, bands_option=NAIP_BANDS)["nir"]
    assert np.array_equal(part.filled(-1), full[50:170, 100:300].filled(-1))


# ------------------------------------------------------------------------------------------ Landsat 5 TM


def _dn(band: int) -> np.ndarray:
    with rasterio.open(_landsat() / f"{SCENE}_B{band}.TIF") as ds:
        return ds.read(1).astype(np.float64)


def test_landsat_radiance_uses_the_mtl_coefficients() -> None:
    scene = ls.parse_mtl(_landsat() / f"{SCENE}_MTL.txt")
    for band, (mult, add) in {3: (1.044, -2.21398), 4: (0.876, -2.38602)}.items():  # SOURCE.md
        cal = ls.calibration(scene, str(band))
        assert cal["radiance_mult"] == mult and cal["radiance_add"] == add
        dn = _dn(band)
        np.testing.assert_allclose(ls.radiance(dn, cal), mult * dn + add, rtol=1e-5, atol=1e-4)


def test_landsat_toa_reflectance() -> None:
    mtl = _landsat() / f"{SCENE}_MTL.txt"
    refl = read_bands(mtl, ["red", "nir", "swir1"])
    elev = 49.75588889  # MTL SUN_ELEVATION
    for name, band, esun in (("red", 3, 1536.0), ("nir", 4, 1031.0)):  # TM ESUN, SOURCE.md
        r = refl[name]
        inside = float(((r >= 0) & (r <= 0.6)).mean())
        assert inside > 0.98, (name, inside)
        cal = ls.calibration(ls.parse_mtl(mtl), str(band))
        expected = np.pi * (cal["radiance_mult"] * _dn(band) + cal["radiance_add"]) * 1.0127**2 / (
            esun * np.sin(np.radians(elev)))
        np.testing.assert_allclose(r.filled(np.nan), expected, rtol=2e-3)
    # a vegetated Amazon scene: NDVI clearly positive on average; NDBI available with SWIR
    assert float(ix.ndvi(refl).mean()) > 0.4
    nb = ix.ndbi(refl)
    assert nb is not None and float(nb.min()) >= -1 and float(nb.max()) <= 1
    # the band file alone reads the same reflectance as the scene
    one = read_bands(_landsat() / f"{SCENE}_B3.TIF", ["red"])["red"]
    assert np.array_equal(one.filled(-1), refl["red"].filled(-1))


def test_earth_sun_distance_and_sun_position_agree_with_the_mtl() -> None:
    scene = ls.parse_mtl(_landsat() / f"{SCENE}_MTL.txt")
    t = scene.acquired
    assert t == datetime(1988, 8, 14, 13, 0, 47, 375019, tzinfo=UTC)
    assert abs(ls.earth_sun_distance(t) - 1.0127) < 5e-4  # SOURCE.md: about 1.0127 AU on day 227
    assert abs(ls.earth_sun_distance(datetime(2024, 1, 3, tzinfo=UTC)) - 0.98333) < 2e-4  # perihelion
    assert abs(ls.earth_sun_distance(datetime(2024, 7, 5, tzinfo=UTC)) - 1.01671) < 2e-4  # aphelion
    az, el = ls.solar_position(t, *scene.centre_lat_lon())
    assert abs(az - 61.96724978) < 0.3 and abs(el - 49.75588889) < 0.3


def test_reader_records_landsat_calibration() -> None:
    band3 = _landsat() / f"{SCENE}_B3.TIF"
    info = read(_ctx(band3)).info
    cal = info["landsat"]
    assert info["bands"] == ["red"] and info["crs"] == "EPSG:32622"
    assert cal["radiance_mult"] == 1.044 and cal["esun"] == 1536.0 and cal["sun_elevation"] == 49.75588889
    assert abs(cal["earth_sun_distance_au"] - 1.0127) < 5e-4
    assert info["acquired"] == datetime(1988, 8, 14, 13, 0, 47, 375019, tzinfo=UTC)
    scene = read(_ctx(_landsat() / f"{SCENE}_MTL.txt")).info
    assert scene["bands"] == ["blue", "green", "red", "nir", "swir1", "tir", "swir2"]
    assert scene["landsat"]["bands"]["6"]["quantity"] == "brightness_temperature_K"
    assert image_grid(_landsat() / f"{SCENE}_MTL.txt")[1] == (310, 287)
    bt = read_bands(_landsat() / f"{SCENE}_MTL.txt", ["tir"])["tir"]
    assert 280 < float(bt.mean()) < 310  # kelvin, a tropical scene


def test_an_mtl_without_a_bands_coefficients_is_refused(tmp_path: Path) -> None:
    src = _landsat()
    shutil.copy(src / f"{SCENE}_B3.TIF", tmp_path / f"{SCENE}_B3.TIF")
    text = (src / f"{SCENE}_MTL.txt").read_bytes().decode("latin-1")
    text = re.sub(r"\n\s*(RADIANCE_(MULT|ADD|MAXIMUM|MINIMUM)_BAND_3|QUANTIZE_CAL_M(AX|IN)_BAND_3) = [^\n]*", "",
                  text)
    mtl = tmp_path / f"{SCENE}_MTL.txt"
    mtl.write_bytes(text.encode("latin-1"))
    with pytest.raises(SourceError, match="band 3") as err:
        read(_ctx(tmp_path / f"{SCENE}_B3.TIF"))
    assert str(mtl) in str(err.value) and "RADIANCE_MULT_BAND_3" in str(err.value)
    with pytest.raises(SourceError, match="band 3"):
        read_bands(mtl, ["red"])


# ------------------------------------------------------------------------------------------ synthetic files


def test_scale_offset_and_nodata_are_applied(tmp_path: Path) -> None:
    data = np.full((2, 4, 4), 1000, np.uint16)
    data[:, 0, 0] = 0  # every band nodata: the pixel is nodata
    data[1, 1, 1] = 0  # one band at 0: a real dark value
    p = _write_tif(tmp_path / "s.tif", data, nodata=0, descriptions=["red", "nir"], scales=[0.0001, 0.0002],
                   offsets=[0.0, -0.1])
    b = read_bands(p, ["nir", "red"])
    assert b["red"].dtype == np.float32
    assert abs(float(b["red"][2, 2]) - 0.1) < 1e-6 and abs(float(b["nir"][2, 2]) - 0.1) < 1e-6
    assert b["red"].mask[0, 0] and b["nir"].mask[0, 0]
    assert not b["nir"].mask[1, 1] and abs(float(b["nir"][1, 1]) + 0.1) < 1e-6
    info = read(_ctx(p)).info
    assert info["scales"] == [0.0001, 0.0002] and info["offsets"] == [0.0, -0.1]
    assert info["bands_from"] == "descriptions"
    # reflectance x 10000 declared by a SCALE tag (as the demo images do)
    p2 = _write_tif(tmp_path / "t.tif", data, descriptions=["red", "nir"], tags={"SCALE": "0.0001"})
    assert abs(float(read_bands(p2, ["red"])["red"][2, 2]) - 0.1) < 1e-6


def test_indices_divide_safely(tmp_path: Path) -> None:
    red = np.ma.MaskedArray(np.array([[0.0, 0.1], [0.2, 0.3]], np.float32), mask=[[False, False], [False, True]])
    nir = np.ma.MaskedArray(np.array([[0.0, 0.5], [0.2, 0.3]], np.float32), mask=False)
    v = ix.ndvi({"red": red, "nir": nir})
    assert v.mask.tolist() == [[True, False], [False, True]]  # 0/0 and the nodata pixel
    assert abs(float(v[0, 1]) - 0.4 / 0.6) < 1e-6 and float(v[1, 0]) == 0.0
    s = ix.spectral_indices({"red": red, "nir": nir, "green": nir})
    assert s.ndbi is None and any("no SWIR" in n for n in s.notes)
    assert s.brightness is not None and s.redness is None and any("blue" in n for n in s.notes)
    q = ix.safe_divide(np.array([1.0, 2.0]), np.array([0.0, np.inf]))
    assert q.mask.all()


def test_bad_rasters_raise_source_errors_naming_the_file(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(1, 3000, (4, 256, 256), dtype=np.uint16)
    good = _write_tif(tmp_path / "good.tif", data, descriptions=["red", "green", "blue", "nir"], tiled=True)
    raw = good.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[: len(raw) // 2])
    cases["truncated"] = (cut, "truncated or corrupt")
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + bytes(np.random.default_rng(2).integers(0, 255, 5000, dtype=np.uint8)))
    cases["corrupt"] = (corrupt, "")
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    cases["empty"] = (empty, "")
    cases["no crs"] = (_write_tif(tmp_path / "nocrs.tif", data[:1], crs=None), "no CRS")
    for name, (path, pattern) in cases.items():
        with pytest.raises(SourceError) as err:
            read(_ctx(path))
        assert str(path) in str(err.value), name
        assert pattern in str(err.value), (name, str(err.value))
    with pytest.raises(SourceError) as err:
        read_bands(cut, ["red", "nir"])
    assert str(cut) in str(err.value)
    # the declared CRS must agree with the file's
    with pytest.raises(SourceError, match="EPSG:4326"):
        raster_info(good, "EPSG:4326")
    assert read(_ctx(good)).info["bands"] == ["red", "green", "blue", "nir"]
