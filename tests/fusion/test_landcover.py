"""LiDAR gridding and land-cover fusion on the small demo city, scored against its ground truth.

The truth rasters (``truth/landcover.tif``) and the buildings' ground elevations come from the generator's plan,
not from anything these modules compute.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely

from data_models import LandCover, Provenance
from twin.fusion.landcover import classify, grid_key, landcover_entities, score, vector_features
from twin.lidar.grids import grid_lidar
from twin.sources import SourceError
from twin.sources.imagery import image_grid

DATE_2 = "2024-06-03"


def _features(path: Path) -> list[dict]:
    return json.loads(path.read_text())["features"]


@pytest.fixture(scope="module")
def scene(rs_city) -> dict:
    src = rs_city["sources"]
    image = src / "imagery" / f"bj_sat_{DATE_2}.tif"
    las = sorted((src / "lidar").glob("*.laz"))
    with rasterio.open(rs_city["truth"] / "landcover.tif") as ds:
        truth = ds.read(1)
    buildings = [{"id": f["id"], "geometry": f["geometry"]} for f in _features(src / "cadastre" / "buildings.geojson")]
    roads = [{"geometry": f["geometry"], "width_m": f["properties"]["width_m"], "road_class": f["properties"]["class"]}
             for f in _features(src / "streets" / "roads.geojson")]
    return {"image": image, "las": las, "truth": truth, "grid": image_grid(image),
            "features": vector_features(buildings, roads), "roads": roads}


@pytest.fixture(scope="module")
def lidar(scene):
    transform, shape, crs = scene["grid"]
    return grid_lidar(scene["las"], transform, shape, grid_crs=crs, points_crs=crs)


@pytest.fixture(scope="module")
def results(scene) -> dict:
    grid = scene["grid"]
    return {
        "fused": classify(scene["image"], scene["las"], scene["features"]),
        "imagery": classify(scene["image"]),
        "lidar": classify(las_paths=scene["las"], grid=grid),
    }


def test_lidar_grids_against_truth(scene, lidar, rs_city) -> None:
    truth = scene["truth"]
    assert lidar.shape == truth.shape and lidar.density > 8  # ~10 pulses/m² survey
    assert np.all(lidar.dsm >= lidar.dtm - 0.5) and np.all(lidar.ndsm >= 0)
    assert np.isfinite(lidar.dtm).all() and 40 < float(lidar.dtm.min()) and float(lidar.dtm.max()) < 60
    assert np.median(lidar.ndsm[truth == 1]) > 3.0 and np.median(lidar.ndsm[truth == 3]) < 0.3
    assert float(lidar.veg_fraction[truth == 4].mean()) > 0.6 and float(lidar.veg_fraction[truth == 2].mean()) < 0.05
    water = truth == 5
    assert lidar.water[water].mean() > 0.95 and lidar.water[~water].mean() < 0.005
    # DTM under buildings (interpolated across the gap) vs the true ground elevation of each building
    inv = ~lidar.transform
    errs = []
    for f in _features(rs_city["truth"] / "buildings.geojson"):
        if f["properties"]["status"] == "demolished":
            continue
        c = shapely.geometry.shape(f["geometry"]).centroid
        col, row = inv @ (c.x, c.y)
        if 0 <= row < truth.shape[0] and 0 <= col < truth.shape[1]:
            errs.append(float(lidar.dtm[int(row), int(col)]) - f["properties"]["ground_z"])
    errs = np.abs(errs)
    assert len(errs) > 100 and np.median(errs) < 0.25 and np.percentile(errs, 90) < 0.6, np.percentile(errs, [50, 90])


def test_fusion_beats_each_single_source(scene, results) -> None:
    truth = scene["truth"]
    s = {k: score(r.classes, truth) for k, r in results.items()}
    for k, v in s.items():
        per = {c: (round(x["producer"] or 0, 3), round(x["user"] or 0, 3)) for c, x in v["classes"].items()}
        print(f"{k:8s} overall {v['overall']:.4f} kappa {v['kappa']:.3f} (producer, user) {per}")
    fused = s["fused"]["overall"]
    assert fused >= 0.85
    assert fused > s["imagery"]["overall"] and fused > s["lidar"]["overall"]
    assert s["fused"]["kappa"] > max(s["imagery"]["kappa"], s["lidar"]["kappa"])
    # every class is found by the fusion; buildings need the LiDAR / footprints the imagery lacks
    for name, c in s["fused"]["classes"].items():
        assert c["producer"] > 0.8 and c["user"] > 0.8, (name, c)
    assert s["fused"]["classes"]["building"]["producer"] > s["imagery"]["classes"]["building"]["producer"] + 0.2
    assert s["lidar"]["classes"]["grass"]["producer"] in (None, 0.0)  # LiDAR alone cannot tell grass from pavement
    r = results["fused"]
    assert r.classes.dtype == np.uint8 and r.confidence.dtype == np.float32 and r.crs == "EPSG:4548"
    assert r.transform == scene["grid"][0]


def test_confidence_ranks_pixels_by_correctness(scene, results) -> None:
    r = results["fused"]
    ok = r.classes == scene["truth"]
    conf = r.confidence
    assert float(conf.min()) >= 0.5 and float(conf.max()) <= 1.0
    lo, hi = conf < np.percentile(conf, 10), conf >= np.percentile(conf, 50)
    assert ok[hi].mean() > ok[lo].mean()
    # agreeing sources are surer than one source alone
    assert float(r.confidence.mean()) > float(results["imagery"].confidence.mean())


def test_strips_give_the_same_classes_as_one_pass(scene, results) -> None:
    strips = classify(scene["image"], scene["las"], scene["features"], strip_rows=350)
    same = float((strips.classes == results["fused"].classes).mean())
    assert same > 0.999, same


def test_landcover_entities_are_stable_and_cover_the_grid(results) -> None:
    r = results["fused"]
    prov = Provenance(source_asset_id="src-imagery-bj-sat-2024-06-03-tif", method="landcover-fusion")
    ents = landcover_entities(r.classes, r.confidence, r.transform, r.crs, prov, min_area_m2=25.0)
    again = landcover_entities(r.classes, r.confidence, r.transform, r.crs, prov, min_area_m2=25.0)
    assert [e.id for e in ents] == [e.id for e in again]
    assert len({e.id for e in ents}) == len(ents) > 50
    assert all(isinstance(e, LandCover) and e.id.startswith(f"lc-{grid_key(r.transform, r.classes.shape, r.crs)}-")
               for e in ents)
    area = sum(shapely.geometry.shape(e.geometry.model_dump()).area for e in ents)
    assert abs(area - r.classes.size * abs(r.transform.a * r.transform.e)) < 1.0  # a partition of the grid
    assert min(e.attributes["area_m2"] for e in ents) >= 25.0
    classes = {e.cover_class.value for e in ents}
    assert {"building", "impervious", "grass", "tree", "water"} <= classes
    assert all(0.5 <= e.confidence <= 1 and e.provenance[0].confidence == e.confidence for e in ents)
    # the first cell of each region (row-major) is the one named in its id and has the region's class
    for e in ents[:50]:
        row, col = map(int, e.id.rsplit("-", 2)[1:])
        sieved_class = e.attributes["code"]
        x, y = r.transform @ (col + 0.5, row + 0.5)
        assert shapely.geometry.shape(e.geometry.model_dump()).contains(shapely.Point(x, y))
        assert 1 <= sieved_class <= 6
    # into another store CRS: same ids, reprojected outlines
    wgs = landcover_entities(r.classes, r.confidence, r.transform, r.crs, prov, min_area_m2=25.0,
                             store_crs="EPSG:4490")
    assert [e.id for e in wgs] == [e.id for e in ents]
    lon, lat = shapely.geometry.shape(wgs[0].geometry.model_dump()).centroid.coords[0]
    assert 116 < lon < 117 and 39 < lat < 41


def test_vector_features_buffer_roads_by_width(scene) -> None:
    road = scene["roads"][0]
    (g, kind), = vector_features(roads=[road])
    line = shapely.geometry.shape(road["geometry"])
    assert kind == "road" and abs(g.area - line.length * road["width_m"]) < 0.02 * g.area
    (g2, _), = vector_features(roads=[{"geometry": road["geometry"], "road_class": "service"}])
    assert abs(g2.area - line.length * 5.0) < 0.02 * g2.area  # default width of the class


def test_classify_rejects_bad_inputs(scene, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one source"):
        classify(grid=scene["grid"])
    with pytest.raises(ValueError, match="unknown land-use kind"):
        classify(features=[(shapely.box(0, 0, 1, 1), "lava")], grid=scene["grid"])
    cut = tmp_path / "cut.tif"
    cut.write_bytes(scene["image"].read_bytes()[:200_000])
    with pytest.raises(SourceError) as err:
        classify(cut)
    assert str(cut) in str(err.value)
