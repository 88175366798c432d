from __future__ import annotations

import json

import numpy as np
import shapely
from shapely.geometry import shape


def load(path):
    return json.loads(path.read_text())


def test_cadastre(city):
    fc = load(city["dir"] / "sources/cadastre/buildings.geojson")
    assert fc["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4548"}}
    feats = fc["features"]
    assert len(feats) == city["manifest"]["counts"]["buildings"]
    ids = [f["properties"]["cadastre_id"] for f in feats]
    assert len(set(ids)) == len(ids)
    uses = {f["properties"]["use"] for f in feats}
    assert uses == {"residential", "commercial", "industrial", "public"}
    x0, y0, x1, y1 = city["manifest"]["extent"]
    kinds = set()
    for f in feats:
        assert not any("height" in k for k in f["properties"])
        g = shape(f["geometry"])
        assert g.is_valid and g.geom_type == "Polygon" and g.area > 20
        bx0, by0, bx1, by1 = g.bounds
        assert x0 <= bx0 and bx1 <= x1 and y0 <= by0 and by1 <= y1
        kinds.add((len(g.exterior.coords) - 1 > 4, len(g.interiors) > 0))
    assert (False, False) in kinds and (True, False) in kinds  # rectangles, L/U shapes
    assert any(hole for _, hole in kinds)  # courtyards
    polys = [shape(f["geometry"]) for f in feats]
    tree = shapely.STRtree(polys)
    a, b = tree.query(polys, predicate="overlaps")
    assert len(a) == 0


def test_roads(city):
    fc = load(city["dir"] / "sources/streets/roads.geojson")
    assert fc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::4548"
    classes = {f["properties"]["class"] for f in fc["features"]}
    assert {"primary", "secondary"} <= classes and classes & {"residential", "service"}
    diagonal = curved = False
    for f in fc["features"]:
        p = f["properties"]
        assert set(p) >= {"road_id", "class", "name", "lanes", "width_m"}
        assert f["geometry"]["type"] == "LineString"
        c = np.asarray(f["geometry"]["coordinates"])
        d = np.diff(c, axis=0)
        ang = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 90
        diagonal |= bool(np.any((ang > 10) & (ang < 80)) and len(c) == 2)
        curved |= len(c) > 10
    assert diagonal and curved


def test_truth_buildings_consistent_with_cadastre(city):
    truth = load(city["dir"] / "truth/buildings.geojson")["features"]
    cad = {
        f["properties"]["cadastre_id"]: f
        for f in load(city["dir"] / "sources/cadastre/buildings.geojson")["features"]
    }
    statuses = {}
    for f in truth:
        p = f["properties"]
        statuses[p["status"]] = statuses.get(p["status"], 0) + 1
        assert (p["status"] != "demolished") == (p["id"] in cad)
        assert 3.0 <= p["roof_max_height"] <= 150.0
        assert p["eave_height"] <= p["roof_max_height"]
        assert 40 < p["ground_z"] < 60
        assert abs(p["roof_max_z"] - p["ground_z"] - p["roof_max_height"]) < 0.02
        parts = [shape(q["geometry"]) for q in p["parts"]]
        union = shapely.union_all(parts)
        assert abs(union.area - shape(f["geometry"]).area) < 0.01 * union.area + 0.5
        assert abs(sum(q["volume_m3"] for q in p["parts"]) - p["volume_m3"]) < 1.0
        assert p["volume_m3"] > p["footprint_area_m2"] * 2.9
        if p["status"] != "existing":
            assert "2023-05-12" < p["change_date"] < "2024-06-03"
    assert statuses["built"] >= 4 and statuses["demolished"] >= 3
    changes = load(city["dir"] / "truth/changes.json")
    assert {b["id"] for b in changes["built"]} == {
        f["properties"]["id"] for f in truth if f["properties"]["status"] == "built"
    }
    assert changes["date_1"] == "2023-05-12" and changes["date_2"] == "2024-06-03"


def _signed_volume(verts, surfaces):
    v = 0.0
    for surf in surfaces:
        for ring in surf:
            p = verts[ring]
            # fan triangulation of the ring (planar polygons); holes are clockwise and subtract
            a = p[0]
            for i in range(1, len(p) - 1):
                v += np.dot(a, np.cross(p[i], p[i + 1])) / 6.0
    return v


def test_cityjson_solids_match_truth_volumes(city):
    cj = load(city["dir"] / "truth/buildings.city.json")
    assert cj["type"] == "CityJSON" and cj["version"] == "2.0"
    assert cj["metadata"]["referenceSystem"].endswith("/EPSG/0/4548")
    scale = np.asarray(cj["transform"]["scale"])
    verts = np.asarray(cj["vertices"], dtype=np.float64) * scale  # translation does not change volumes
    verts -= verts.mean(axis=0)
    truth = {
        f["properties"]["id"]: f["properties"]
        for f in load(city["dir"] / "truth/buildings.geojson")["features"]
    }
    objs = cj["CityObjects"]
    assert {k for k, o in objs.items() if o["type"] == "Building"} == set(truth)
    for bid, rec in truth.items():
        o = objs[bid]
        geoms = o.get("geometry") or [g for c in o["children"] for g in objs[c]["geometry"]]
        vol = 0.0
        for g in geoms:
            assert g["type"] == "Solid" and g["lod"] == "2.2"
            assert len(g["semantics"]["values"][0]) == len(g["boundaries"][0])
            vol += _signed_volume(verts, g["boundaries"][0])
        assert vol == pytest_approx(rec["volume_m3"]), bid


def pytest_approx(v):
    import pytest

    return pytest.approx(v, rel=0.005, abs=1.0)
