from __future__ import annotations

import hashlib
import json

import pytest

from twin.demo import SIZES, generate

from .conftest import tree_hashes


def test_bad_size_raises(tmp_path):
    with pytest.raises(ValueError) as e:
        generate(tmp_path, size="huge")
    for name in ("tiny", "small", "medium", "large"):
        assert name in str(e.value)
    assert set(SIZES) == {"tiny", "small", "medium", "large"}


def test_same_seed_is_byte_identical_and_other_seed_differs(city, tmp_path):
    again = tmp_path / "again"
    generate(again, size="small", seed=city["seed"])
    first, second = tree_hashes(city["dir"]), tree_hashes(again)
    assert first == second
    other = tmp_path / "other"
    generate(other, size="small", seed=city["seed"] + 1)
    third = tree_hashes(other)
    assert set(third) - {p for p in third if p.startswith("sources/lidar/")} == set(first) - {
        p for p in first if p.startswith("sources/lidar/")
    }
    for key in (
        "sources/cadastre/buildings.geojson",
        "sources/streets/roads.geojson",
        "truth/buildings.geojson",
        "sources/imagery/bj_sat_2024-06-03.tif",
        "sources/sensors/air_quality_hourly.csv",
    ):
        assert first[key] != third[key], key
    lidar_first = sorted(v for k, v in first.items() if k.startswith("sources/lidar/"))
    lidar_third = sorted(v for k, v in third.items() if k.startswith("sources/lidar/"))
    assert not set(lidar_first) & set(lidar_third)


def test_manifest(city):
    m, root = city["manifest"], city["dir"]
    on_disk = json.loads((root / "manifest.json").read_text())
    assert on_disk == m
    assert m["crs"] == "EPSG:4548" and m["seed"] == city["seed"] and m["size"] == "small"
    x0, y0, x1, y1 = m["extent"]
    assert x1 - x0 == SIZES["small"].side_m == y1 - y0
    # central Beijing
    lon0, lat0, lon1, lat1 = m["extent_wgs84"]
    assert 116.3 < lon0 < lon1 < 116.5 and 39.85 < lat0 < lat1 < 39.95
    kinds = {f["kind"] for f in m["files"]}
    assert {
        "cadastre",
        "streets",
        "lidar",
        "imagery",
        "sensor_stations",
        "sensor_air_quality",
        "sensor_traffic",
        "truth_buildings",
        "truth_solids",
        "truth_landcover",
        "truth_changes",
        "truth_trees",
    } <= kinds
    for f in m["files"]:
        p = root / f["path"]
        assert hashlib.sha256(p.read_bytes()).hexdigest() == f["sha256"]
        assert f["bytes"] == p.stat().st_size
    assert [f["path"] for f in m["files"]] == sorted(f["path"] for f in m["files"])
    c = m["counts"]
    assert 150 <= c["buildings"] <= 500  # target about 300 (varies with the street grid of the seed)
    assert c["built"] >= 4 and c["demolished"] >= 3
    assert c["buildings_truth"] == c["buildings"] + c["demolished"]
    assert set(c["roof_types"]) == {"flat", "gable", "hip", "shed", "multi-part"}
    assert c["trees"] > 500 and c["roads"] > 10
    assert c["lidar_points"] == sum(f["points"] for f in m["files"] if f["kind"] == "lidar")
    for f in m["files"]:
        if f["kind"] == "lidar":
            bx0, by0, bx1, by1 = f["bounds"]
            assert bx1 - bx0 <= 1000 and by1 - by0 <= 1000


def test_progress_is_monotonic_and_completes(city):
    calls = city["progress"]
    assert len(calls) > 5
    fracs = [f for _, f in calls]
    assert fracs == sorted(fracs) and fracs[-1] == 1.0 and 0.0 <= fracs[0] < 0.1
    stages = [s for s, _ in calls]
    assert {"layout", "lidar", "imagery", "truth", "manifest"} <= set(stages)
