"""Building heights from real LiDAR (Delft AHN3 + BGT footprints) and from a point cloud in feet."""

from __future__ import annotations

from pathlib import Path

import laspy
import numpy as np
import pyproj
import pytest
import shapely

from tests.conftest import shared_data
from twin.lidar.heights import footprint_heights
from twin.pipeline.ingest import ingest_paths
from twin.sources import SourceError
from twin.store import ASSETS, Query, Store


@pytest.fixture(scope="module")
def delft_store(tmp_path_factory) -> tuple[Store, Path]:
    root = shared_data("lidar/delft_ahn3")
    store = Store.init(tmp_path_factory.mktemp("delft") / "store", crs="EPSG:28992")
    laz = root / "delft_ahn3_part2.laz"
    ingest_paths(store, [root / "bgt" / "bgt_pand.sqlite", laz], crs="EPSG:28992")
    return store, laz


def test_delft_footprints_under_the_strip_get_roof_heights(delft_store: tuple[Store, Path]) -> None:
    store, laz = delft_store
    buildings = store.features(query=Query(types=["Building"]))
    assert len(buildings) == 160
    cloud = store.get("src-delft-ahn3-delft-ahn3-part2-laz", collection=ASSETS)
    geoms = [shapely.geometry.shape(b["geometry"]) for b in buildings]
    with pytest.raises(SourceError, match="no CRS in the LAS header"):
        footprint_heights(geoms, [laz])  # the file has no CRS: it must be declared
    res = footprint_heights(geoms, [laz], crs=store.crs, las_crs=cloud["crs"])
    strip = shapely.box(*cloud["extent"]["bbox"])
    covered = [i for i, g in enumerate(geoms) if strip.buffer(-0.5).contains(g)]
    touching = [i for i, g in enumerate(geoms) if strip.intersects(g)]
    assert 25 <= len(touching) <= 31  # SOURCE.md: about 28 of 160 intersect the strip
    assert len(covered) >= 15
    for i in covered:
        r = res[i]
        assert r.height is not None and 3.0 <= r.height <= 40.0, (i, r)
        assert -3.0 <= r.ground_z <= 3.0  # NAP ground level in Delft
        assert r.point_density > 1.0 and r.flags == []
    away = [i for i in range(len(geoms)) if i not in touching]
    assert len(away) >= 120
    for i in away:
        assert res[i].height is None and "no_roof_points" in res[i].flags and res[i].n_points == 0


def _scene(path: Path, crs: str, to_units: float) -> tuple[shapely.Polygon, Path]:
    """Flat ground at 100 m, a 20 m x 12 m flat roof at 110 m, points every ~0.4 m; written in ``crs`` whose
    linear unit is ``to_units`` metres (coordinates converted by PROJ, z divided by the unit)."""
    x0, y0 = pyproj.Transformer.from_crs(4326, 26945, always_xy=True).transform(-118.25, 34.05)
    rng = np.random.default_rng(9)
    gx, gy = np.meshgrid(np.arange(-20, 40, 0.4), np.arange(-20, 32, 0.4))
    x = gx.ravel() + rng.uniform(-0.1, 0.1, gx.size)
    y = gy.ravel() + rng.uniform(-0.1, 0.1, gx.size)
    roof = (x >= 0) & (x <= 20) & (y >= 0) & (y <= 12)
    z = np.where(roof, 110.0, 100.0) + rng.normal(0, 0.03, x.size)
    cls = np.where(roof, 6, 2).astype(np.uint8)
    ex, ey = pyproj.Transformer.from_crs(26945, crs, always_xy=True).transform(x + x0, y + y0)
    las = laspy.LasData(laspy.LasHeader(point_format=1, version="1.2"))
    las.header.scales = [0.01] * 3
    las.header.offsets = [float(np.floor(ex.min())), float(np.floor(ey.min())), 0.0]
    las.header.add_crs(pyproj.CRS(crs))
    las.x, las.y, las.z, las.classification = ex, ey, z / to_units, cls
    las.write(path)
    return shapely.box(x0, y0, x0 + 20, y0 + 12), path


def test_heights_from_a_feet_file_are_metres(tmp_path: Path) -> None:
    ftus = pyproj.CRS("EPSG:2229").axis_info[0].unit_conversion_factor  # California zone 5, US survey feet
    fp_m, metric = _scene(tmp_path / "m.las", "EPSG:26945", 1.0)
    _, feet = _scene(tmp_path / "ft.las", "EPSG:2229", ftus)
    ref = footprint_heights([fp_m], [metric])[0]
    assert ref.height == pytest.approx(10.0, abs=0.1) and ref.roof_z == pytest.approx(110.0, abs=0.1)
    # footprints in metres, points in feet: reprojected and scaled
    r = footprint_heights([fp_m], [feet], crs="EPSG:26945")[0]
    assert r.height == pytest.approx(10.0, abs=0.1) and r.ground_z == pytest.approx(100.0, abs=0.1)
    assert r.point_density == pytest.approx(ref.point_density, rel=0.05)
    # footprints in the file's own feet CRS: heights are still metres, densities points per m²
    fp_ft = shapely.transform(fp_m, lambda c: np.column_stack(
        pyproj.Transformer.from_crs(26945, 2229, always_xy=True).transform(c[:, 0], c[:, 1])))
    r2 = footprint_heights([fp_ft], [feet])[0]
    assert r2.height == pytest.approx(10.0, abs=0.1) and r2.roof_z == pytest.approx(110.0, abs=0.1)
    assert r2.point_density == pytest.approx(ref.point_density, rel=0.05)
    assert 4.0 < ref.point_density < 9.0  # ~6.25 points per m² on the 0.4 m grid
