"""DTM / DSM / nDSM rasters (COG) and the terrain mesh, on the demo city against its truth."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
import shapely

from tests.conftest import shared_data
from twin.reality3d.terrain import build_terrain, terrain_mesh, write_terrain


@pytest.fixture(scope="module")
def terrain_city(city):
    """The session's small demo city and its terrain at 1 m, built once for this module."""
    out = city["dir"]
    laz = sorted((out / "sources" / "lidar").glob("*.laz"))
    return {"dir": out, "laz": laz, "terrain": build_terrain(laz, resolution=1.0)}


def _truth_ground(d):
    pts = []
    for f in json.loads((d / "truth" / "buildings.geojson").read_text())["features"]:
        if f["properties"]["status"] != "demolished":
            c = shapely.geometry.shape(f["geometry"]).centroid
            pts.append((c.x, c.y, f["properties"]["ground_z"]))
    with (d / "truth" / "trees.csv").open() as fh:
        pts += [(float(r["x_epsg4548"]), float(r["y_epsg4548"]), float(r["ground_z"])) for r in csv.DictReader(fh)]
    return np.array(pts)


def _at(t, grid, x, y):
    inv = ~t.transform
    col = np.floor(inv.a * x + inv.c).astype(int)
    row = np.floor(inv.e * y + inv.f).astype(int)
    return grid[row, col]


def test_dtm_matches_truth_ground(terrain_city):
    t = terrain_city["terrain"]
    p = _truth_ground(terrain_city["dir"])
    err = np.abs(_at(t, t.dtm, p[:, 0], p[:, 1]) - p[:, 2])
    print(f"DTM (classes) |error| median {np.median(err):.3f} m, p95 {np.percentile(err, 95):.3f} m, n={len(p)}")
    assert np.median(err) <= 0.15
    assert np.isfinite(t.dtm).all() and np.isfinite(t.dsm).all()  # no holes after filling
    assert (t.ndsm >= 0).all() and (t.dsm >= t.dtm).all()
    assert t.ground_method == "classes" and t.crs == "EPSG:4548"


def test_dtm_from_smrf_filter_matches_truth(terrain_city):
    t = build_terrain(terrain_city["laz"], resolution=2.0, use_existing=False)
    p = _truth_ground(terrain_city["dir"])
    err = np.abs(_at(t, t.dtm, p[:, 0], p[:, 1]) - p[:, 2])
    print(f"DTM (SMRF, 2 m) |error| median {np.median(err):.3f} m, p95 {np.percentile(err, 95):.3f} m")
    assert t.ground_method == "smrf" and np.isfinite(t.dtm).all()
    assert np.median(err) <= 0.15


def test_cogs_open_with_crs_and_nodata(terrain_city, tmp_path):
    t = terrain_city["terrain"]
    files = write_terrain(t, tmp_path)
    assert set(files) == {"dtm", "dsm", "ndsm"}
    for name, path in files.items():
        with rasterio.open(path) as r:
            assert r.crs.to_epsg() == 4548 and r.nodata == -9999.0 and r.dtypes == ("float32",)
            assert r.profile["tiled"] and r.overviews(1)  # cloud-optimized: tiled, with overviews
            assert r.bounds.left == pytest.approx(t.bounds[0]) and r.bounds.top == pytest.approx(t.bounds[3])
            np.testing.assert_allclose(r.read(1), getattr(t, name), atol=1e-4)


def test_mesh_covers_dtm_without_degenerate_triangles(terrain_city, tmp_path):
    t = terrain_city["terrain"]
    for mesh in (terrain_mesh(t.dtm, t.transform, stride=7), terrain_mesh(t.dtm, t.transform, max_error=1.0)):
        v, f = mesh.vertices, mesh.triangles
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        cross_z = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        assert (cross_z > 0).all()  # non-degenerate, counter-clockwise seen from above
        xmin, ymin, xmax, ymax = t.bounds
        assert v[:, 0].min() == pytest.approx(xmin) and v[:, 0].max() == pytest.approx(xmax)
        assert v[:, 1].min() == pytest.approx(ymin) and v[:, 1].max() == pytest.approx(ymax)
        assert np.abs(cross_z).sum() / 2 == pytest.approx((xmax - xmin) * (ymax - ymin))  # covers, no overlap
        assert v[:, 2].min() >= t.dtm.min() - 1e-6 and v[:, 2].max() <= t.dtm.max() + 1e-6
    obj = mesh.write_obj(tmp_path / "terrain.obj")
    lines = obj.read_text().splitlines()
    assert sum(ln.startswith("v ") for ln in lines) == len(mesh.vertices)
    assert sum(ln.startswith("f ") for ln in lines) == len(mesh.triangles)


def test_feet_file_written_in_its_crs_units(tmp_path):
    path = shared_data("lidar/autzen_trim") / "autzen_trim.laz"
    t = build_terrain(path, resolution=2.0)
    assert t.xy_m == pytest.approx(0.3048)
    with rasterio.open(write_terrain(t, tmp_path)["dtm"]) as r:
        assert r.bounds.left == pytest.approx(t.bounds[0] / 0.3048, abs=1e-3)
        assert 636_000 - 10 <= r.bounds.left <= 636_002  # feet, as the header
    assert 120 < float(np.median(t.dtm)) < 140  # metres (the file's 406-520 ft)
