"""Vector reader: SpatiaLite BGT themes (Delft), entity_type override, multi-layer files, stable ids, bad input."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from data_models import Building, LandCover, Road, WaterBody
from tests.conftest import shared_data
from twin.sources import ReadContext, SourceError
from twin.sources.vector import read

RD = "EPSG:28992"


def bgt(name: str) -> Path:
    return shared_data("lidar/delft_ahn3") / "bgt" / f"{name}.sqlite"


def rows(path: Path, sql: str) -> list[tuple]:
    """Rows straight from the SQLite file (stdlib sqlite3, not GDAL): an independent reference."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def ctx(path: Path, store_crs: str = RD, **options) -> ReadContext:
    return ReadContext(path=path, store_crs=store_crs, asset_id="src-test", options=options)


def test_bgt_pand_buildings_keep_their_gml_ids() -> None:
    p = bgt("bgt_pand")
    ref = dict(rows(p, "SELECT gml_id, identificatiebagpnd FROM buildingpart"))
    got = read(ctx(p))
    assert got.info["crs"] == RD and got.info["feature_count"] == len(ref) == 160
    assert all(isinstance(e, Building) for e in got.entities)
    assert {e.id: e.attributes["identificatiebagpnd"] for e in got.entities} == ref
    assert all(e.attributes["bgt_theme"] == "pand" for e in got.entities)
    # re-reading gives the same ids and geometries (ids are stable across re-ingest)
    again = read(ctx(p))
    assert [e.model_dump() for e in again.entities] == [e.model_dump() for e in got.entities]
    x0, y0, x1, y1 = got.info["bbox"]
    assert 84_000 < x0 < x1 < 86_000 and 447_000 < y0 < y1 < 448_000


def test_bgt_themes_map_to_roads_water_and_land_cover() -> None:
    road = read(ctx(bgt("bgt_wegdeel")))
    ref_fn = Counter(r[0] for r in rows(bgt("bgt_wegdeel"), "SELECT function FROM trafficarea"))
    assert len(road.entities) == sum(ref_fn.values()) == 151
    assert all(isinstance(e, Road) and e.geometry.type in ("Polygon", "MultiPolygon") for e in road.entities)
    classes = Counter(e.road_class for e in road.entities)
    assert classes["footway"] == ref_fn["voetpad"] and classes["residential"] == ref_fn["rijbaan lokale weg"]
    assert classes["parking"] == ref_fn["parkeervlak"] and classes["steps"] == ref_fn["voetpad op trap"]

    water = read(ctx(bgt("bgt_waterdeel")))
    assert len(water.entities) == 3 and all(isinstance(e, WaterBody) for e in water.entities)
    assert {e.water_class for e in water.entities} == {"waterloop"}

    bare = read(ctx(bgt("bgt_onbegroeidterreindeel")))
    ref = Counter(r[0] for r in rows(bgt("bgt_onbegroeidterreindeel"),
                                     "SELECT bgt_fysiekvoorkomen FROM onbegroeidterreindeel"))
    cover = Counter(e.cover_class.value for e in bare.entities)
    assert all(isinstance(e, LandCover) for e in bare.entities)
    assert cover == {"bare": ref["onverhard"], "impervious": sum(ref.values()) - ref["onverhard"]}

    green = read(ctx(bgt("bgt_begroeidterreindeel")))
    ref = Counter(r[0] for r in rows(bgt("bgt_begroeidterreindeel"), "SELECT plus_fysiekvoorkomen FROM plantcover"))
    cover = Counter(e.cover_class.value for e in green.entities)
    assert cover == {"tree": ref["heesters"], "grass": sum(ref.values()) - ref["heesters"]}  # shrubs are woody


def test_unmapped_bgt_themes_are_skipped_and_counted() -> None:
    got = read(ctx(bgt("bgt_scheiding")))
    n = rows(bgt("bgt_scheiding"), "SELECT count(*) FROM scheiding")[0][0]
    assert got.entities == [] and list(got.info["skipped"].values()) == [n] and n == 57
    empty = read(ctx(bgt("bgt_tunneldeel")))
    assert empty.entities == [] and empty.info["feature_count"] == 0


def test_entity_type_option_overrides_the_theme(tmp_path: Path) -> None:
    got = read(ctx(bgt("bgt_pand"), entity_type="landcover", cover_class="impervious"))
    assert len(got.entities) == 160 and all(isinstance(e, LandCover) and e.cover_class == "impervious"
                                            for e in got.entities)
    with pytest.raises(SourceError, match=r"bgt_pand\.sqlite: unknown entity_type 'house'"):
        read(ctx(bgt("bgt_pand"), entity_type="house"))
    with pytest.raises(SourceError, match="a building cannot have a LineString geometry"):
        read(ctx(_lines_geojson(tmp_path), "EPSG:4548", entity_type="building"))
    water = read(ctx(_lines_geojson(tmp_path), "EPSG:4548", entity_type="water"))
    assert isinstance(water.entities[0], WaterBody) and water.entities[0].id == "water-s1"


def _lines_geojson(folder: Path) -> Path:
    p = folder / "streets.geojson"
    p.write_text(json.dumps(_fc([{"id": "s1", "class": "primary"}], [
        {"type": "LineString", "coordinates": [[448000, 4418000], [448100, 4418000]]}])))
    return p


def _fc(props: list[dict], geoms: list[dict], crs: int | None = 4548) -> dict:
    doc: dict = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": p, "geometry": g} for p, g in zip(props, geoms, strict=True)]}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{crs}"}}
    return doc


def _square(x: float, y: float, s: float = 10.0) -> dict:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]]}


def test_multi_layer_geopackage(tmp_path: Path) -> None:
    p = tmp_path / "city.gpkg"
    b = gpd.GeoDataFrame({"building_id": ["a", "b"], "use": ["office", "residential"], "storeys": [3, 5]},
                         geometry=[shapely.box(448_000, 4_418_000, 448_010, 4_418_010),
                                   shapely.box(448_020, 4_418_000, 448_030, 4_418_010)], crs="EPSG:4548")
    r = gpd.GeoDataFrame({"road_id": ["r1"], "highway": ["primary"], "lanes": [4], "maxspeed": ["60"]},
                         geometry=[shapely.LineString([(448_000, 4_417_990), (448_100, 4_417_990)])], crs="EPSG:4548")
    t = gpd.GeoDataFrame({"species": ["Ginkgo biloba"], "height": [12.5]},
                         geometry=[shapely.Point(448_050, 4_418_050)], crs="EPSG:4548")
    b.to_file(p, layer="buildings", driver="GPKG")
    r.to_file(p, layer="roads", driver="GPKG")
    t.to_file(p, layer="trees", driver="GPKG")
    got = read(ctx(p, "EPSG:4548"))
    by = {e.id: e for e in got.entities}
    assert set(by) == {"bldg-a", "bldg-b", "road-r1"} | {e.id for e in got.entities if e.id.startswith("veg-")}
    assert by["bldg-a"].use == "office" and by["bldg-b"].storeys == 5
    assert by["road-r1"].road_class == "primary" and by["road-r1"].lanes == 4 and by["road-r1"].speed_limit_kmh == 60
    tree = next(e for e in got.entities if e.type == "Vegetation")
    assert tree.species == "Ginkgo biloba" and tree.height == 12.5 and tree.geometry.type == "Point"
    assert set(got.info["layers"]) == {"buildings", "roads", "trees"}
    only = read(ctx(p, "EPSG:4548", layer="roads"))
    assert [e.id for e in only.entities] == ["road-r1"]
    with pytest.raises(SourceError, match=r"city\.gpkg: no layer 'rivers'; layers: buildings, roads, trees"):
        read(ctx(p, "EPSG:4548", layer="rivers"))


def test_geojson_mapping_and_reprojection(tmp_path: Path) -> None:
    p = tmp_path / "mixed.geojson"
    p.write_text(json.dumps(_fc([{"id": "h1", "use": "school", "height": "21.5 m"}, {"water_id": "w1", "name": "Moat"},
                                 {"id": "x", "class": "secondary", "oneway": "yes", "width_m": 12}],
                                [_square(448_000, 4_418_000), _square(448_100, 4_418_000, 30),
                                 {"type": "LineString", "coordinates": [[448_000, 4_417_900], [448_200, 4_417_900]]}])))
    got = read(ctx(p, "EPSG:4490"))  # store in CGCS2000 geographic
    by = {e.id: e for e in got.entities}
    assert by["bldg-h1"].height == 21.5 and by["bldg-h1"].use == "school"
    assert isinstance(by["water-w1"], WaterBody) and by["water-w1"].name == "Moat"
    assert by["road-x"].oneway is True and by["road-x"].width_m == 12
    x0, y0, _, _ = by["bldg-h1"].geometry.to_shapely().bounds
    assert 116.3 < x0 < 116.5 and 39.8 < y0 < 40.0  # degrees now


def test_declared_crs_wins_over_geojson_default(tmp_path: Path) -> None:
    p = tmp_path / "legacy.geojson"
    p.write_text(json.dumps(_fc([{"id": "a"}], [_square(448_000, 4_418_000)], crs=None)))
    with pytest.raises(SourceError, match=r"legacy\.geojson: coordinates .* outside the area of use of EPSG:4326"):
        read(ctx(p, "EPSG:4548"))
    got = read(ReadContext(path=p, store_crs="EPSG:4548", asset_id="a", crs="EPSG:4548"))
    assert got.info["crs"] == "EPSG:4548" and got.entities[0].id == "bldg-a"


@pytest.mark.parametrize("case,content,pattern", [
    ("empty.geojson", b"", "the file is empty"),
    ("cut.geojson", b'{"type": "FeatureCollection", "features": [{"type": "Feature", "geom', "not a readable"),
    ("junk.sqlite", b"SQLite format 3\x00" + b"\x13" * 3000, "not a readable"),
    ("junk.gpkg", b"\x00\x01garbage" * 100, "not a readable"),
])
def test_corrupt_files_are_named(tmp_path: Path, case: str, content: bytes, pattern: str) -> None:
    p = tmp_path / case
    p.write_bytes(content)
    with pytest.raises(SourceError, match=pattern) as err:
        read(ctx(p, "EPSG:4548"))
    assert str(p) in str(err.value)


def test_wrong_hemisphere_wrong_crs_and_wrong_store(tmp_path: Path) -> None:
    south = tmp_path / "south.geojson"
    south.write_text(json.dumps(_fc([{"id": "s"}], [_square(448_000, -4_418_000)])))
    with pytest.raises(SourceError, match=r"south\.geojson: coordinates .* outside the area of use of EPSG:4548"):
        read(ctx(south, "EPSG:4548"))
    degrees = tmp_path / "degrees.geojson"
    degrees.write_text(json.dumps(_fc([{"id": "d"}], [_square(116.39, 39.9, 0.001)])))
    with pytest.raises(SourceError, match="wrong CRS"):
        read(ctx(degrees, "EPSG:4548"))
    with pytest.raises(SourceError, match=r"bgt_pand\.sqlite: .*area of use of the store CRS EPSG:4548"):
        read(ctx(bgt("bgt_pand"), "EPSG:4548"))


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_missing_crs_and_contradicting_crs(tmp_path: Path) -> None:
    shp = tmp_path / "nocrs.shp"
    gpd.GeoDataFrame({"id": ["a"]}, geometry=[shapely.box(448_000, 4_418_000, 448_010, 4_418_010)]).to_file(shp)
    with pytest.raises(SourceError, match=r"nocrs\.shp: no CRS in the file; pass --crs"):
        read(ctx(shp, "EPSG:4548"))
    ok = read(ReadContext(path=shp, store_crs="EPSG:4548", asset_id="a", crs="EPSG:4548"))
    assert ok.entities[0].id == "bldg-a"
    with pytest.raises(SourceError, match="file declares CRS EPSG:28992 but --crs says EPSG:4548"):
        read(ReadContext(path=bgt("bgt_pand"), store_crs=RD, asset_id="a", crs="EPSG:4548"))
    # RD New + NAP is the same horizontal CRS as RD New: accepted
    assert len(read(ReadContext(path=bgt("bgt_waterdeel"), store_crs=RD, asset_id="a", crs="EPSG:7415")).entities) == 3


def test_invalid_geometry_is_refused_unless_repair(tmp_path: Path) -> None:
    p = tmp_path / "bowtie.geojson"
    bow = {"type": "Polygon", "coordinates": [[[448_000, 4_418_000], [448_010, 4_418_010], [448_010, 4_418_000],
                                               [448_000, 4_418_010], [448_000, 4_418_000]]]}
    p.write_text(json.dumps(_fc([{"id": "ok"}, {"id": "bow"}], [_square(448_100, 4_418_000), bow])))
    with pytest.raises(SourceError, match=r"bowtie\.geojson: feature 1: invalid geometry: Self-intersection"):
        read(ctx(p, "EPSG:4548"))
    got = read(ctx(p, "EPSG:4548", repair=True))
    fixed = {e.id: e for e in got.entities}["bldg-bow"].geometry.to_shapely()
    assert fixed.is_valid and fixed.geom_type == "MultiPolygon" and abs(fixed.area - 50) < 1e-6


def test_duplicate_ids_and_points_without_a_type(tmp_path: Path) -> None:
    p = tmp_path / "dups.geojson"
    squares = [_square(448_000, 4_418_000), _square(448_050, 4_418_000)]
    p.write_text(json.dumps(_fc([{"id": "a"}, {"id": "a"}], squares)))
    with pytest.raises(SourceError, match="feature 1: duplicate id 'bldg-a'"):
        read(ctx(p, "EPSG:4548"))
    pts = tmp_path / "poles.geojson"
    pts.write_text(json.dumps(_fc([{"id": "p"}], [{"type": "Point", "coordinates": [448_000, 4_418_000]}])))
    with pytest.raises(SourceError, match="Point features are not city objects .*entity_type"):
        read(ctx(pts, "EPSG:4548"))
    assert read(ctx(pts, "EPSG:4548", entity_type="vegetation")).entities[0].id == "veg-p"
