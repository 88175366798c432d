"""Raster layers: area-weighted means per cell against rasterio masks, and the raster-mean property."""

from __future__ import annotations

import h3
import numpy as np
import pyarrow.compute as pc
import pytest
import rasterio
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.features import geometry_mask

from data_models import LayerSpec
from tests.conftest import shared_data
from twin.geo.crs import transform_xy
from twin.geo.indices import ndvi
from twin.layers.rasters import band_values, class_fraction_values, raster_values
from twin.layers.values import rollup
from twin.sources.imagery import read_bands

NAIP_BANDS = "red,green,blue,nir"
K = 4


def _weighted_mean(table) -> float:
    w = table["weight"].to_numpy()
    return float((table["value"].to_numpy() * w).sum() / w.sum())


def _hexagon(cell: int, crs: str) -> shapely.Polygon:
    """The cell's boundary projected into ``crs`` (straight edges), independently of the builder's code."""
    latlng = np.array(h3.cell_to_boundary(h3.int_to_str(cell)))
    x, y = transform_xy(latlng[:, 1], latlng[:, 0], "EPSG:4326", crs)
    return shapely.Polygon(np.column_stack([x, y]))


@pytest.fixture(scope="module")
def naip() -> tuple[np.ma.MaskedArray, Affine, str]:
    path = shared_data("imagery") / "naip_north_dakota" / "m_4709963_se_14_1_20200831.tif"
    with rasterio.open(path) as ds:
        transform, crs = ds.transform, ds.crs.to_string()
    return ndvi(read_bands(path, ["red", "nir"], bands_option=NAIP_BANDS)), transform, crs


@pytest.mark.parametrize("res", [9, 10])
def test_naip_ndvi_cell_means_match_rasterio_masks(naip, res: int) -> None:
    band, transform, crs = naip
    path = shared_data("imagery") / "naip_north_dakota" / "m_4709963_se_14_1_20200831.tif"
    v = band_values(path, res, band="ndvi", bands_option=NAIP_BANDS, k=K)
    cells, means, weights = v["cell"].to_numpy(), v["value"].to_numpy(), v["weight"].to_numpy()
    # whole: the raster mean is kept (5 m pixels = 25 m² each)
    assert np.isclose(_weighted_mean(v), float(band.astype(np.float64).mean()), rtol=1e-9)
    assert np.isclose(weights.sum(), band.count() * 25.0, rtol=1e-12)
    # reference: the hexagon rasterised on the k-times finer grid (sub-pixel centres inside), same convention
    fine_t = transform @ Affine.scale(1 / K)
    shape = (band.shape[0] * K, band.shape[1] * K)
    data = np.repeat(np.repeat(np.ma.getdata(band).astype(np.float64), K, 0), K, 1)
    valid = np.repeat(np.repeat(~np.ma.getmaskarray(band), K, 0), K, 1)
    order = np.argsort(weights)
    picks = [*order[-3:], order[len(order) // 2], order[len(order) // 10]]  # whole cells and image-edge cells
    for i in picks:
        inside = geometry_mask([_hexagon(int(cells[i]), crs)], shape, fine_t, invert=True) & valid
        ref_mean = data[inside].mean()
        ref_weight = inside.sum() * 25.0 / K**2
        # measured: identical (0.0 difference); allow a couple of sub-pixel centres on a hexagon edge to flip
        assert means[i] == pytest.approx(ref_mean, abs=1e-5)
        assert abs(weights[i] - ref_weight) <= 2 * 25.0 / K**2


_UTM = "EPSG:26914"


@st.composite
def rasters(draw):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    px = draw(st.sampled_from([0.5, 1.0, 5.0, 10.0, 30.0]))
    x0 = draw(st.floats(480_000, 490_000))
    y0 = draw(st.floats(5_200_000, 5_210_000))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 1, (h, w))
    mask = rng.random((h, w)) < draw(st.sampled_from([0.0, 0.2, 0.9]))
    if mask.all():
        mask[0, 0] = False
    return np.ma.MaskedArray(data, mask=mask), Affine(px, 0, x0, 0, -px, y0), px


@settings(max_examples=40, deadline=None)
@given(r=rasters(), res=st.integers(8, 13), k=st.sampled_from([1, 2, 4]))
def test_area_weighted_mean_over_covering_cells_is_the_raster_mean(r, res: int, k: int) -> None:
    band, transform, px = r
    v = raster_values(band, transform, _UTM, res, k=k, block_rows=7)
    assert np.isclose(_weighted_mean(v), band.mean(), rtol=1e-9, atol=1e-12)
    assert np.isclose(v["weight"].to_numpy().sum(), band.count() * px * px, rtol=1e-9)
    assert int(pc.sum(v["count"]).as_py()) == band.count() * k * k
    spec = LayerSpec(name="r", variable="v", unit="1", aggregation="area_weighted_mean",
                     resolutions=[max(0, res - 3), res])
    coarse = rollup(v, spec)
    coarse = coarse.filter(pc.equal(coarse["res"], spec.resolutions[0]))
    assert np.isclose(_weighted_mean(coarse), band.mean(), rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(r=rasters(), res=st.integers(9, 12))
def test_class_fraction_times_covered_area_is_the_class_area(r, res: int) -> None:
    band, transform, px = r
    classes = np.ma.MaskedArray((np.ma.getdata(band) * 3).astype(int) % 4, mask=np.ma.getmaskarray(band))
    v = class_fraction_values(classes, transform, _UTM, res, classes=[1, 2])
    frac = v["value"].to_numpy()
    assert ((frac >= 0) & (frac <= 1)).all()
    area = (frac * v["weight"].to_numpy()).sum()
    assert np.isclose(area, (np.isin(classes.filled(-1), [1, 2])).sum() * px * px, rtol=1e-9, atol=1e-9)


def test_nodata_and_time_stamp() -> None:
    from datetime import UTC, datetime

    data = np.array([[1.0, 0.0], [3.0, 0.0]])
    v = raster_values(data, Affine(10, 0, 485_000, 0, -10, 5_205_000), _UTM, 10, nodata=0.0,
                      t=datetime(2020, 8, 31, tzinfo=UTC))
    assert np.isclose(_weighted_mean(v), 2.0) and np.isclose(v["weight"].to_numpy().sum(), 200.0)
    assert set(v["t"].to_pylist()) == {datetime(2020, 8, 31, tzinfo=UTC)}
    with pytest.raises(ValueError, match="2-D"):
        raster_values(np.zeros(3), Affine.identity(), _UTM, 9)
