from __future__ import annotations

import datetime as dt
import json

import laspy
import numpy as np
import pytest
import rasterio
import shapely
from shapely.geometry import shape

from twin.demo.roofs import ROOF_CODES, local_uv, roof_height


@pytest.fixture(scope="module")
def points(city):
    files = sorted((city["dir"] / "sources/lidar").glob("*.laz"))
    assert len(files) >= 2
    cols = {
        k: [] for k in ("x", "y", "z", "classification", "return_number", "number_of_returns", "gps_time")
    }
    headers = []
    for f in files:
        las = laspy.read(f)
        headers.append(las.header)
        t = np.asarray(las.gps_time)
        assert np.all(np.diff(t) >= 0)  # time-ordered
        for k in cols:
            cols[k].append(np.asarray(getattr(las, k)))
    return {k: np.concatenate(v) for k, v in cols.items()} | {"headers": headers}


def test_header_and_crs(points):
    for h in points["headers"]:
        assert h.version.major == 1 and h.version.minor == 4 and h.point_format.id == 6
        assert h.parse_crs().to_epsg() == 4548
        assert h.creation_date == dt.date(2024, 6, 12)
        assert tuple(h.scales) == (0.01, 0.01, 0.01)
        assert h.global_encoding.wkt


def test_classes_and_returns(points):
    cls = points["classification"]
    present = set(np.unique(cls).tolist())
    assert {2, 6, 9} <= present and {3, 4, 5} <= present
    rn, nr = points["return_number"], points["number_of_returns"]
    assert np.all((rn >= 1) & (rn <= nr))
    veg = np.isin(cls, [3, 4, 5])
    assert np.mean(nr[veg] > 1) > 0.4
    # each pulse with n returns contributes exactly one point per return number
    for n in range(2, 5):
        counts = [np.sum((nr == n) & (rn == k)) for k in range(1, n + 1)]
        assert len(set(counts)) == 1 and counts[0] > 0
    # last returns under canopy reach the ground
    last = (rn == nr) & (nr > 1)
    assert np.sum(last & (cls == 2)) > 1000
    z = points["z"]
    assert 40 < np.percentile(z[cls == 2], 1) and np.percentile(z[cls == 2], 99) < 60
    assert np.ptp(z[cls == 2]) > 1.0  # undulating terrain


def test_density_over_open_ground(city, points):
    with rasterio.open(city["dir"] / "truth/landcover.tif") as src:
        lc = src.read(1)
        tr = src.transform
    first = points["return_number"] == 1
    x, y = points["x"][first], points["y"][first]
    col = ((x - tr.c) / tr.a).astype(int)
    row = ((y - tr.f) / tr.e).astype(int)
    counts = np.zeros(lc.shape, np.int64)
    np.add.at(counts, (row.clip(0, lc.shape[0] - 1), col.clip(0, lc.shape[1] - 1)), 1)
    # 10 m cells entirely in open ground (impervious, grass or bare)
    n = lc.shape[0] // 10
    open_ = np.isin(lc, [2, 3, 6])[: n * 10, : n * 10].reshape(n, 10, n, 10).all(axis=(1, 3))
    dens = counts[: n * 10, : n * 10].reshape(n, 10, n, 10).sum(axis=(1, 3)) / 100.0
    d = dens[open_]
    assert len(d) > 100
    assert 8.0 <= np.median(d) <= 20.0
    assert 8.0 <= np.percentile(d, 5) and np.percentile(d, 95) <= 20.0


def test_every_footprint_has_building_points_on_true_roof(city, points):
    cad = json.loads((city["dir"] / "sources/cadastre/buildings.geojson").read_text())["features"]
    truth = {
        f["properties"]["id"]: f["properties"]
        for f in json.loads((city["dir"] / "truth/buildings.geojson").read_text())["features"]
    }
    b = points["classification"] == 6
    x, y, z = points["x"][b], points["y"][b], points["z"][b]
    order = np.argsort(x)
    x, y, z = x[order], y[order], z[order]
    medians: dict[str, list[float]] = {}
    all_dz = []
    for f in cad:
        poly = shape(f["geometry"])
        bx0, by0, bx1, by1 = poly.bounds
        lo, hi = np.searchsorted(x, [bx0, bx1])
        xs, ys, zs = x[lo:hi], y[lo:hi], z[lo:hi]
        inside = shapely.contains_xy(poly, xs, ys)
        rec = truth[f["properties"]["cadastre_id"]]
        assert inside.sum() >= 0.5 * poly.area, rec["id"]  # at least 0.5 roof points per m2
        xs, ys, zs = xs[inside], ys[inside], zs[inside]
        zt = np.full(len(xs), np.nan)
        for part in rec["parts"]:
            pin = shapely.contains_xy(shape(part["geometry"]), xs, ys)
            fr = part["frame"]
            u, v = local_uv(xs[pin], ys[pin], fr["cx"], fr["cy"], np.radians(fr["angle_deg"]))
            zt[pin] = rec["ground_z"] + roof_height(
                u,
                v,
                fr["half_length"],
                fr["half_width"],
                ROOF_CODES[part["roof_type"]],
                part["eave_height"],
                part["ridge_height"] - part["eave_height"],
            )
        dz = np.abs(zs - zt)[np.isfinite(zt)]
        all_dz.append(dz)
        medians.setdefault(rec["roof_type"], []).append(float(np.median(dz)))
    assert set(medians) == {"flat", "gable", "hip", "shed", "multi-part"}
    for kind, meds in medians.items():
        assert max(meds) < 0.1, kind
    dz = np.concatenate(all_dz)
    assert np.percentile(dz, 90) < 0.1
    # demolished buildings left no roof points
    for rec in truth.values():
        if rec["status"] == "demolished":
            fp = [shape(q["geometry"]) for q in rec["parts"]]
            lo, hi = np.searchsorted(x, [min(g.bounds[0] for g in fp), max(g.bounds[2] for g in fp)])
            assert not any(shapely.contains_xy(g, x[lo:hi], y[lo:hi]).any() for g in fp)


def test_tree_points_follow_crowns(city, points):
    import csv

    with open(city["dir"] / "truth/trees.csv") as f:
        trees = list(csv.DictReader(f))
    assert len(trees) == city["manifest"]["counts"]["trees"]
    first_veg = (points["return_number"] == 1) & np.isin(points["classification"], [4, 5])
    zmax = np.max(points["z"][first_veg])
    top = max(float(t["ground_z"]) + float(t["height_m"]) for t in trees)
    assert zmax < top + 0.3
