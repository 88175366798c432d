from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
from rasterio.features import geometry_mask

DATES = ("2023-05-12", "2024-06-03")


@pytest.fixture(scope="module")
def images(city):
    out = {}
    for d in DATES:
        with rasterio.open(city["dir"] / f"sources/imagery/bj_sat_{d}.tif") as src:
            out[d] = {
                "data": src.read().astype(np.float64),
                "crs": src.crs,
                "transform": src.transform,
                "desc": src.descriptions,
                "tags": src.tags(),
                "count": src.count,
                "dtype": src.dtypes[0],
                "overviews": src.overviews(1),
                "block": src.block_shapes[0],
            }
    with rasterio.open(city["dir"] / "truth/landcover.tif") as src:
        out["lc"] = src.read(1)
        out["lc_transform"] = src.transform
        out["lc_crs"] = src.crs
    with rasterio.open(city["dir"] / "truth/landcover_2023-05-12.tif") as src:
        out["lc1"] = src.read(1)
    return out


def test_image_format(images):
    for d in DATES:
        im = images[d]
        assert im["count"] == 4 and im["dtype"] == "uint16"
        assert im["crs"].to_epsg() == 4548
        assert im["desc"] == ("red", "green", "blue", "nir")
        assert im["tags"]["TIFFTAG_DATETIME"] == d.replace("-", ":") + " 10:48:00"
        assert im["tags"]["ACQUISITION_DATE"] == d
        assert im["transform"] == images["lc_transform"]
        assert im["block"] == (256, 256) and im["overviews"]
        assert 0.9 <= im["transform"].a <= 2.0
    assert images["lc_crs"].to_epsg() == 4548
    assert set(np.unique(images["lc"]).tolist()) == {1, 2, 3, 4, 5, 6}


def test_ndvi_by_cover(images):
    for d, lc in ((DATES[0], images["lc1"]), (DATES[1], images["lc"])):
        r, nir = images[d]["data"][0], images[d]["data"][3]
        ndvi = (nir - r) / (nir + r)
        veg = min(ndvi[lc == 4].mean(), ndvi[lc == 3].mean())
        assert veg > 0.6
        assert veg > ndvi[lc == 1].mean() + 0.4
        assert ndvi[lc == 5].mean() < 0.0


def test_changes_visible_in_images(city, images):
    changes = json.loads((city["dir"] / "truth/changes.json").read_text())
    truth = json.loads((city["dir"] / "truth/buildings.geojson").read_text())["features"]
    a, b = images[DATES[0]]["data"], images[DATES[1]]["data"]
    tr, shape = images["lc_transform"], images["lc"].shape

    def inside(geom):
        return geometry_mask([geom], out_shape=shape, transform=tr, invert=True)

    def change(geom):
        m = inside(geom)
        return float(np.abs(a[:, m].mean(axis=1) - b[:, m].mean(axis=1)).mean())

    stable = [change(f["geometry"]) for f in truth if f["properties"]["status"] == "existing"][:80]
    threshold = 2 * np.median(stable) + 100
    for rec in changes["built"]:
        m = inside(rec["geometry"])
        assert np.mean(images["lc1"][m] == 6) > 0.8 and np.mean(images["lc"][m] == 1) > 0.8
        assert change(rec["geometry"]) > threshold
    for rec in changes["demolished"]:
        m = inside(rec["geometry"])
        assert np.mean(images["lc1"][m] == 1) > 0.8 and np.mean(images["lc"][m] == 6) > 0.8
        assert change(rec["geometry"]) > threshold


def test_sensors(city):
    root = city["dir"] / "sources/sensors"
    with open(root / "stations.csv") as f:
        stations = list(csv.DictReader(f))
    assert {"station_id", "lon_wgs84", "lat_wgs84", "x_epsg4548", "y_epsg4548"} <= set(stations[0])
    kinds = {s["kind"] for s in stations}
    assert kinds == {"air_quality", "traffic"}
    for s in stations:
        assert 116.3 < float(s["lon_wgs84"]) < 116.5 and 39.8 < float(s["lat_wgs84"]) < 40.0
    n_aq = sum(s["kind"] == "air_quality" for s in stations)
    with open(root / "air_quality_hourly.csv") as f:
        aq = list(csv.DictReader(f))
    assert all(r["timestamp"].endswith("+08:00") for r in aq)
    assert len(aq) < n_aq * 14 * 24  # some hours are missing
    assert any(r["pm25_ugm3"] == "" for r in aq) and any(r["no2_ugm3"] == "" for r in aq)
    pm = np.array([float(r["pm25_ugm3"]) for r in aq if r["pm25_ugm3"]])
    assert 5 < np.median(pm) < 150
    with open(root / "traffic_counts_hourly.csv") as f:
        tc = list(csv.DictReader(f))
    assert all(r["timestamp"].endswith("+08:00") for r in tc)
    assert any(r["vehicles_per_hour"] == "" for r in tc)
    by_hour = np.zeros(24)
    n = np.zeros(24)
    for r in tc:
        if r["vehicles_per_hour"] and r["timestamp"][:10] == "2024-05-28":  # a Tuesday
            h = int(r["timestamp"][11:13])
            by_hour[h] += float(r["vehicles_per_hour"])
            n[h] += 1
    mean = by_hour / np.maximum(n, 1)
    assert mean[8] > 2 * mean[3] and mean[18] > 2 * mean[3]  # morning and evening peaks
