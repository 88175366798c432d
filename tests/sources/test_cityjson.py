"""CityJSON reader on the cjio sample files: counts per type and LoD, de-quantisation, LoDs, parts, footprints.

References: the files themselves (counted here with the json module), their metadata (geographicalExtent), SOURCE.md,
and the BGT SpatiaLite footprints of the same Delft area (an independent data set: 3dfier extruded them).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import shapely

from data_models import Building, BuildingPart, LandCover, Road, WaterBody
from tests.conftest import shared_data
from twin.geo.crs import transformer
from twin.pipeline.ingest import ingest_paths
from twin.sources import ReadContext, SourceError
from twin.sources import read as read_source
from twin.sources.cityjson import read
from twin.store import Query, Store

RD = "EPSG:28992"


def cj(name: str) -> Path:
    return shared_data("cityjson") / name


def load(name: str) -> dict:
    return json.loads(cj(name).read_text())


def ctx(path: Path, store_crs: str = RD, crs: str | None = None, **options) -> ReadContext:
    return ReadContext(path=path, store_crs=store_crs, asset_id="src-cj", crs=crs, options=options)


@pytest.fixture(scope="module")
def delft():
    return read(ctx(cj("delft.json")))


def test_delft_counts_per_type_and_lod(delft) -> None:
    doc = load("delft.json")
    ref = Counter(o["type"] for o in doc["CityObjects"].values())
    assert delft.info["object_counts"] == dict(ref)
    assert (ref["Building"], ref["Road"], ref["PlantCover"], ref["LandUse"]) == (160, 143, 126, 81)
    got = Counter(e.type for e in delft.entities)
    assert got == {"Building": 160, "Road": 143, "LandCover": 126 + 81, "WaterBody": ref["WaterBody"]}
    assert delft.info["skipped"] == {"Bridge (not mapped)": ref["Bridge"],
                                     "GenericCityObject (not mapped)": ref["GenericCityObject"]}
    assert delft.info["lod_counts"]["Building:1"] == 160
    assert all(list(e.lods) == ["1"] for e in delft.entities if isinstance(e, Building))
    assert {e.id for e in delft.entities} == {k for k, o in doc["CityObjects"].items()
                                              if o["type"] not in ("Bridge", "GenericCityObject")}
    assert delft.info["cityjson_version"] == "2.0" and delft.info["crs"] == "EPSG:7415"


def test_delft_dequantised_vertices_match_the_metadata(delft) -> None:
    doc = load("delft.json")
    assert delft.info["vertex_count"] == len(doc["vertices"]) == 18_262
    x0, y0, z0, x1, y1, z1 = doc["metadata"]["geographicalExtent"]
    assert np.allclose(delft.info["bbox"], [x0, y0, x1, y1], atol=1e-6)
    assert np.allclose(delft.info["z_range"], [z0, z1], atol=1e-6)
    # one building, recomputed by hand: v * scale + translate
    bid = next(k for k, o in doc["CityObjects"].items() if o["type"] == "Building")
    g = doc["CityObjects"][bid]["geometry"][0]
    idx = sorted({i for shell in g["boundaries"] for face in shell for ring in face for i in ring})
    scale, translate = np.array(doc["transform"]["scale"]), np.array(doc["transform"]["translate"])
    ref = np.array([doc["vertices"][i] for i in idx]) * scale + translate
    solid = next(e for e in delft.entities if e.id == bid).lods["1"]
    assert np.allclose(np.array(solid.vertices), ref, atol=1e-9)
    assert solid.face_count() == sum(len(shell) for shell in g["boundaries"])


def test_delft_footprints_equal_the_bgt_polygons(delft) -> None:
    by = {e.id: e for e in delft.entities}
    bgt = shared_data("lidar/delft_ahn3") / "bgt"
    for name, cls, n in [("bgt_pand", Building, 160), ("bgt_wegdeel", Road, 143),
                         ("bgt_begroeidterreindeel", LandCover, 126), ("bgt_waterdeel", WaterBody, 3)]:
        ref = {e.id: e for e in read_source(ctx(bgt / f"{name}.sqlite")).entities}
        common = [k for k in ref if k in by]
        assert len(common) == n, name
        for k in common:
            a, b = by[k].geometry.to_shapely(), ref[k].geometry.to_shapely()
            assert isinstance(by[k], cls)
            iou = a.intersection(b).area / a.union(b).area
            assert iou > 0.999, (name, k, iou)
            if cls is LandCover:
                assert by[k].cover_class == ref[k].cover_class


def test_multi_lod_needs_a_crs_and_keeps_three_lods() -> None:
    with pytest.raises(SourceError, match=r"multi_lod\.json: no CRS in the file .*pass --crs"):
        read(ctx(cj("multi_lod.json")))
    got = read(ctx(cj("multi_lod.json"), crs="EPSG:7415"))
    doc = load("multi_lod.json")
    assert len(got.entities) == 10 and got.info["vertex_count"] == len(doc["vertices"])
    assert got.info["lod_counts"] == {"Building:1.2": 10, "Building:1.3": 10, "Building:2.2": 10}
    for b in got.entities:
        assert set(b.lods) == {"1.2", "1.3", "2.2"}
        top12 = max(v[2] for v in b.lods["1.2"].vertices)
        s22 = b.lods["2.2"]
        roof_faces = [f for f, k in zip(s22.boundaries[0], s22.semantics.values[0], strict=True)
                      if k is not None and s22.semantics.surfaces[k].type == "RoofSurface"]
        roof_max = max(s22.vertices[i][2] for face in roof_faces for ring in face for i in ring)
        assert roof_max >= top12 - 1e-6, b.id
        assert b.attributes["identificatie"].startswith("NL.IMBAG.Pand.")
        # footprint: the LoD2.2 ground surface, which lies inside the solid's x/y extent
        fp = b.geometry.to_shapely()
        x0, y0, _, x1, y1, _ = s22.bounds()
        assert fp.area > 5 and fp.bounds[0] >= x0 - 1e-3 and fp.bounds[2] <= x1 + 1e-3  # snapped to 1 mm
        assert fp.bounds[1] >= y0 - 1e-3 and fp.bounds[3] <= y1 + 1e-3
    x0, y0, x1, y1 = got.info["bbox"]
    assert 153_301 <= x0 < x1 <= 153_777 and 414_163 <= y0 < y1 <= 414_689  # SOURCE.md extent


def test_delft_1b_is_version_1_1_and_urn_crs_works(tmp_path: Path) -> None:
    got = read(ctx(cj("delft_1b.json")))
    assert got.info["cityjson_version"] == "1.1" and len(got.entities) == 1
    b = got.entities[0]
    assert b.height == 6 and "measuredHeight" not in b.attributes
    assert b.attributes["identificatiebagpnd"] == "503100000000035"
    doc = load("delft_1b.json")
    doc["metadata"]["referenceSystem"] = "urn:ogc:def:crs:EPSG::7415"
    p = tmp_path / "urn.city.json"
    p.write_text(json.dumps(doc))
    again = read(ctx(p))
    assert again.info["crs"] == "EPSG:7415" and again.entities[0].model_dump() == b.model_dump()
    with pytest.raises(SourceError, match="file declares CRS EPSG:7415 but --crs says EPSG:4548"):
        read(ctx(p, crs="EPSG:4548"))
    # reprojected into WGS84: the footprint moves with the transformation
    wgs = read(ctx(cj("delft_1b.json"), store_crs="EPSG:4326")).entities[0]
    c = b.geometry.to_shapely().centroid
    lon, lat = transformer(RD, "EPSG:4326").transform(c.x, c.y)
    cw = wgs.geometry.to_shapely().centroid
    assert abs(cw.x - lon) < 1e-6 and abs(cw.y - lat) < 1e-6
    assert wgs.lods["1"].vertices[0][2] == b.lods["1"].vertices[0][2]  # z is kept


def test_den_haag_parts_and_parents() -> None:
    got = read(ctx(cj("DH_01_subs.city.json"), crs=RD))
    doc = load("DH_01_subs.city.json")
    assert Counter(e.type for e in got.entities) == {"Building": 4, "BuildingPart": 8}
    parts = [e for e in got.entities if isinstance(e, BuildingPart)]
    for p in parts:
        assert p.parent_id == doc["CityObjects"][p.id]["parents"][0]
        assert set(p.lods) == {"2"} and p.lods["2"].semantics is not None
        assert p.attributes["RelativeEavesHeight"] == doc["CityObjects"][p.id]["attributes"]["RelativeEavesHeight"]
    by = {e.id: e for e in got.entities}
    for bid, o in doc["CityObjects"].items():
        if o["type"] == "Building" and o.get("children"):
            union = shapely.union_all([by[c].geometry.to_shapely() for c in o["children"]])
            fp = by[bid].geometry.to_shapely()
            assert fp.symmetric_difference(union).area < 1e-3 * union.area
            assert by[bid].lods == {}
    assert got.info["vertex_count"] == len(doc["vertices"]) == 92


def test_cityjsonseq_gives_the_same_objects(tmp_path: Path) -> None:
    doc = load("delft_1b.json")
    header = {k: v for k, v in doc.items() if k not in ("CityObjects", "vertices")}
    header.update(CityObjects={}, vertices=[])
    (oid, obj), = doc["CityObjects"].items()
    feature = {"type": "CityJSONFeature", "id": oid, "CityObjects": {oid: obj}, "vertices": doc["vertices"]}
    p = tmp_path / "one.city.jsonl"
    p.write_text(json.dumps(header) + "\n" + json.dumps(feature) + "\n")
    seq = read(ctx(p)).entities
    assert [e.model_dump() for e in seq] == [e.model_dump() for e in read(ctx(cj("delft_1b.json"))).entities]


def _tiny(lod2: dict, **doc) -> dict:
    base = {"type": "CityJSON", "version": "2.0", "transform": {"scale": [0.01, 0.01, 0.01],
                                                                 "translate": [448_000, 4_418_000, 40]},
            "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/4548"},
            "vertices": [[0, 0, 0], [1000, 0, 0], [1000, 800, 0], [0, 800, 0],
                         [0, 0, 900], [1000, 0, 900], [1000, 800, 900], [0, 800, 900]],
            "CityObjects": {"b1": {"type": "Building", "attributes": {"storeysAboveGround": 3, "roofType": "flat"},
                                   "geometry": [{"type": "MultiSurface", "lod": "0",
                                                 "boundaries": [[[0, 3, 2, 1]]]}, lod2]}}}
    base.update(doc)
    return base


def test_multisurface_lods_are_recorded_as_one_shell(tmp_path: Path) -> None:
    faces = [[[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]], [[1, 2, 6, 5]], [[2, 3, 7, 6]], [[3, 0, 4, 7]]]
    lod2 = {"type": "MultiSurface", "lod": "2.2", "boundaries": faces,
            "semantics": {"surfaces": [{"type": "GroundSurface"}, {"type": "RoofSurface"}, {"type": "WallSurface"}],
                          "values": [0, 1, 2, 2, 2, 2]}}
    p = tmp_path / "tiny.city.json"
    p.write_text(json.dumps(_tiny(lod2)))
    b = read(ctx(p, store_crs="EPSG:4548")).entities[0]
    assert set(b.lods) == {"2.2"} and b.attributes["lod_geometry_types"] == {"2.2": "MultiSurface"}
    assert len(b.lods["2.2"].boundaries) == 1 and b.lods["2.2"].semantics.values == [[0, 1, 2, 2, 2, 2]]
    assert b.storeys == 3 and b.roof_type == "flat"
    fp = b.geometry.to_shapely()
    assert abs(fp.area - 80.0) < 1e-6 and fp.bounds == (448_000.0, 4_418_000.0, 448_010.0, 4_418_008.0)
    assert b.lods["2.2"].bounds()[5] == 49.0


@pytest.mark.parametrize("mutate,pattern", [
    (lambda d: d.update(version="3.0"), "unsupported CityJSON version '3.0'"),
    (lambda d: d.pop("transform"), "needs a 'transform'"),
    (lambda d: d.update(type="FeatureCollection"), 'not a CityJSON file'),
    (lambda d: d["CityObjects"]["b1"]["geometry"][1]["boundaries"][0][0][0].append(99),
     "object 'b1': vertex index 99 out of range"),
    (lambda d: d["CityObjects"]["b1"]["geometry"][1]["boundaries"][0][0].append(99), "malformed Solid boundaries"),
    (lambda d: d["metadata"].update(referenceSystem="EPSG:4548"),
     None),  # a plain EPSG code is accepted too
    (lambda d: d.update(vertices=[[v[0], -v[1] - 900_000_000, v[2]] for v in d["vertices"]]),
     "outside the area of use of EPSG:4548"),
])
def test_bad_cityjson(tmp_path: Path, mutate, pattern) -> None:
    lod2 = {"type": "Solid", "lod": "1", "boundaries": [[[[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]],
                                                          [[1, 2, 6, 5]], [[2, 3, 7, 6]], [[3, 0, 4, 7]]]]}
    doc = _tiny(lod2)
    mutate(doc)
    p = tmp_path / "bad.city.json"
    p.write_text(json.dumps(doc))
    if pattern is None:
        assert read(ctx(p, store_crs="EPSG:4548")).entities[0].lods["1"].face_count() == 6
        return
    with pytest.raises(SourceError, match=pattern) as err:
        read(ctx(p, store_crs="EPSG:4548"))
    assert str(p) in str(err.value)


def test_truncated_and_empty_files(tmp_path: Path) -> None:
    cut = tmp_path / "cut.city.json"
    cut.write_bytes(cj("delft_1b.json").read_bytes()[:20_000])
    with pytest.raises(SourceError, match=r"cut\.city\.json: not valid JSON .*truncated or corrupt"):
        read(ctx(cut))
    empty = tmp_path / "empty.city.json"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="the file is empty"):
        read(ctx(empty))


def test_ingest_delft_json_through_the_vector_sniffer(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "store", crs=RD)
    ingest_paths(store, [cj("delft.json")], kind="cityjson")
    assert store.count(query=Query(types=["Building"])) == 160
    assert store.count(query=Query(types=["LandCover"])) == 207
    # a .json whose "type" comes late: the registry still tells it is CityJSON
    got = read_source(ctx(cj("delft_1b.json")))
    assert got.info["cityjson_version"] == "1.1"


def test_declared_gcj02_vertices_are_converted(tmp_path: Path) -> None:
    from twin.geo.crs import wgs84_to_gcj02

    lon = np.array([116.3970, 116.3980, 116.3980, 116.3970] * 2)
    lat = np.array([39.9080, 39.9080, 39.9088, 39.9088] * 2)
    glon, glat = wgs84_to_gcj02(lon, lat)
    z = np.array([0.0] * 4 + [9.0] * 4)
    scale = [1e-7, 1e-7, 0.01]
    verts = [[round((a - 116) / scale[0]), round((b - 39) / scale[1]), round(c / scale[2])]
             for a, b, c in zip(glon, glat, z, strict=True)]
    faces = [[[[0, 3, 2, 1]], [[4, 5, 6, 7]], [[0, 1, 5, 4]], [[1, 2, 6, 5]], [[2, 3, 7, 6]], [[3, 0, 4, 7]]]]
    doc = {"type": "CityJSON", "version": "2.0", "transform": {"scale": scale, "translate": [116, 39, 0]},
           "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/4326"}, "vertices": verts,
           "CityObjects": {"gate": {"type": "Building", "geometry": [{"type": "Solid", "lod": "1",
                                                                      "boundaries": faces}]}}}
    p = tmp_path / "gcj.city.json"
    p.write_text(json.dumps(doc))
    got = read(ctx(p, store_crs="EPSG:4548", coords="gcj02"))
    x, y = transformer("EPSG:4326", "EPSG:4548").transform(lon[:4], lat[:4])
    truth = shapely.Polygon(np.column_stack([x, y]))
    assert shapely.hausdorff_distance(got.entities[0].geometry.to_shapely(), truth) < 0.5
    assert got.info["coords_converted_from"] == "gcj02"
    with pytest.raises(SourceError, match="unknown coords"):
        read(ctx(p, store_crs="EPSG:4548", coords="baidu-ish"))
