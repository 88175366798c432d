"""Ingest: catalog records, vector features as city objects, atomicity and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import laspy
import numpy as np
import pyproj
import pytest
import shapely

from tests.helpers_geojson import write_buildings_geojson
from twin.pipeline.ingest import ingest_paths
from twin.sources import SourceError
from twin.store import ASSETS, Query, Store


def test_vector_ingest_creates_assets_and_entities(store: Store, tmp_path: Path) -> None:
    src = write_buildings_geojson(tmp_path / "cadastre" / "buildings.geojson", 12)
    c = ingest_paths(store, [src], acquired="2024-05-01T00:00:00+08:00", classification="internal")
    assert c.changes.added == 13  # 12 buildings + 1 asset
    asset = store.get("src-cadastre-buildings-geojson", collection=ASSETS)
    assert asset["kind"] == "vector" and asset["crs"] == "EPSG:4548" and asset["asset_version"] == 1
    assert asset["acquired"].startswith("2024-04-30T16:00:00")
    assert len(asset["checksum"]) == 64 and asset["properties"]["feature_count"] == 12
    b = store.get("bldg-C0003")
    assert b["use"] == "residential" and b["classification"] == "internal"
    assert b["provenance"][0]["source_asset_id"] == asset["id"]
    # same bytes read the same way again: no-op
    assert ingest_paths(store, [src], acquired="2024-05-01T00:00:00+08:00", classification="internal") is None
    # changed delivery: a new asset version
    write_buildings_geojson(src, 13)
    c2 = ingest_paths(store, [src])
    assert store.get(asset["id"], collection=ASSETS)["asset_version"] == 2
    assert c2.changes.added == 1 and store.count(query=Query(types=["Building"])) == 13


def test_reprojects_into_the_store_crs(store: Store, tmp_path: Path) -> None:
    lon, lat = 116.39, 39.99
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"id": "p1"},
           "geometry": {"type": "Polygon", "coordinates": [[[lon, lat], [lon + 1e-4, lat], [lon + 1e-4, lat + 1e-4],
                                                            [lon, lat]]]}}]}
    p = tmp_path / "wgs84.geojson"
    p.write_text(json.dumps(doc))
    ingest_paths(store, [p])
    g = shapely.geometry.shape(store.get("bldg-p1")["geometry"])
    x, y = pyproj.Transformer.from_crs(4326, 4548, always_xy=True).transform(lon, lat)
    assert abs(g.exterior.coords[0][0] - x) < 1e-6 and abs(g.exterior.coords[0][1] - y) < 1e-6


def test_missing_crs_is_never_guessed(store: Store, tmp_path: Path) -> None:
    p = write_buildings_geojson(tmp_path / "nocrs" / "b.geojson", 3, crs=None)
    # GeoJSON without a crs member is WGS84 by RFC 7946, so the coordinates are checked as degrees by GDAL;
    # a shapefile without .prj is the real 'no CRS' case
    shp = tmp_path / "nocrs" / "b.shp"
    import pyogrio

    pyogrio.write_dataframe(__import__("geopandas").read_file(p).set_crs(None, allow_override=True), shp)
    (tmp_path / "nocrs" / "b.prj").unlink(missing_ok=True)
    with pytest.raises(SourceError, match=r"b\.shp: no CRS in the file; pass --crs"):
        ingest_paths(store, [shp])
    c = ingest_paths(store, [shp], crs="EPSG:4548")
    assert c.changes.added == 4


def test_a_bad_file_in_a_batch_leaves_the_store_identical(store: Store, tmp_path: Path) -> None:
    ingest_paths(store, [write_buildings_geojson(tmp_path / "a" / "b.geojson", 5)])
    before = store.content_digest()
    good = write_buildings_geojson(tmp_path / "batch" / "good.geojson", 5, x0=449_000)
    bad = tmp_path / "batch" / "zz-broken.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [ {"type": "Feat')
    with pytest.raises(SourceError, match="zz-broken.geojson: not a readable vector file"):
        ingest_paths(store, [tmp_path / "batch"])
    assert store.content_digest() == before
    assert not (store.root / "tmp").exists() or not any((store.root / "tmp").iterdir())
    assert good.exists()


def test_pointcloud_and_unknown_files(store: Store, tmp_path: Path) -> None:
    las = laspy.LasData(laspy.LasHeader(point_format=6, version="1.4"))
    las.header.scales = [0.01, 0.01, 0.01]
    las.header.offsets = [448_000, 4_428_000, 0]
    las.header.add_crs(pyproj.CRS.from_epsg(4548))
    rng = np.random.default_rng(1)
    las.x = 448_000 + rng.uniform(0, 100, 1000)
    las.y = 4_428_000 + rng.uniform(0, 50, 1000)
    las.z = rng.uniform(40, 60, 1000)
    path = tmp_path / "lidar" / "tile.laz"
    path.parent.mkdir()
    las.write(path)
    ingest_paths(store, [path])
    a = store.get("src-lidar-tile-laz", collection=ASSETS)
    assert a["kind"] == "pointcloud" and a["crs"] == "EPSG:4548" and a["properties"]["point_count"] == 1000
    assert 448_000 <= a["extent"]["bbox"][0] < a["extent"]["bbox"][2] <= 448_100
    weird = tmp_path / "notes.xyz"
    weird.write_text("hello")
    with pytest.raises(SourceError, match=r"notes\.xyz: cannot tell the kind"):
        ingest_paths(store, [weird])
    with pytest.raises(SourceError, match="no such file"):
        ingest_paths(store, [tmp_path / "missing.laz"])


def _shapefile_without_crs(tmp_path: Path, n: int = 3) -> Path:
    """A shapefile with no .prj: its CRS is whatever --crs declares, so the same bytes can be read two ways."""
    import geopandas
    import pyogrio

    src = write_buildings_geojson(tmp_path / "gj" / "b.geojson", n)
    shp = tmp_path / "plain" / "b.shp"
    shp.parent.mkdir()
    gdf = geopandas.read_file(src).rename(columns={"cadastre_id": "id"})  # shapefile names stop at 10 letters
    pyogrio.write_dataframe(gdf.set_crs(None, allow_override=True), shp)
    (shp.parent / "b.prj").unlink(missing_ok=True)
    return shp


def test_the_same_bytes_with_another_crs_are_read_again(store: Store, tmp_path: Path) -> None:
    """Issue 11: the reading parameters are part of what was ingested; a new --crs re-reads the file (the features
    move), the same --crs again is a no-op."""
    shp = _shapefile_without_crs(tmp_path)
    assert ingest_paths(store, [shp], crs="EPSG:4548").changes.added == 4
    assert ingest_paths(store, [shp], crs="EPSG:4548") is None
    aid = "src-plain-b-shp"
    first = store.get(aid, collection=ASSETS)
    assert first["properties"]["read_with"]["crs"] == "EPSG:4548"
    x0, y0 = store.get("bldg-C0000")["geometry"]["coordinates"][0][0][:2]
    c = ingest_paths(store, [shp], crs="EPSG:2436")  # Beijing 1954, CM 117E: ~80 m from CGCS2000 here
    assert c is not None and c.changes.modified == 4 and c.changes.added == 0
    again = store.get(aid, collection=ASSETS)
    assert again["checksum"] == first["checksum"] and again["asset_version"] == 2 and again["crs"] == "EPSG:2436"
    assert again["properties"]["read_with"]["digest"] != first["properties"]["read_with"]["digest"]
    x1, y1 = store.get("bldg-C0000")["geometry"]["coordinates"][0][0][:2]
    ex, ey = pyproj.Transformer.from_crs(2436, 4548, always_xy=True).transform(x0, y0)
    assert abs(x1 - ex) < 1e-6 and abs(y1 - ey) < 1e-6 and abs(y1 - y0) > 50
    assert ingest_paths(store, [shp], crs="EPSG:2436") is None


def test_other_reading_options_are_read_again_and_equal_ones_are_not(store: Store, tmp_path: Path) -> None:
    """Classification, the declared time and reader options change what is stored; naming the reader the file
    would get anyway (--kind vector) or passing the options in another order does not."""
    src = write_buildings_geojson(tmp_path / "cadastre" / "b.geojson", 2)
    aid = "src-cadastre-b-geojson"
    ingest_paths(store, [src], options={"tz": "+08:00", "priority": "x"})
    assert ingest_paths(store, [src], kind="vector", options={"priority": "x", "tz": "+08:00"}) is None
    c = ingest_paths(store, [src], classification="internal", options={"tz": "+08:00", "priority": "x"})
    assert c is not None and store.get("bldg-C0001")["classification"] == "internal"
    c = ingest_paths(store, [src], classification="internal", acquired="2024-05-01T00:00:00Z",
                     options={"tz": "+08:00", "priority": "x"})
    assert c is not None and store.get(aid, collection=ASSETS)["acquired"].startswith("2024-05-01T00:00:00")
    c = ingest_paths(store, [src], classification="internal", acquired="2024-05-01T00:00:00Z")
    assert c is not None and store.get(aid, collection=ASSETS)["properties"]["read_with"]["options"] == {}
    assert store.get(aid, collection=ASSETS)["asset_version"] == 4
    assert ingest_paths(store, [src], classification="internal", acquired="2024-05-01T00:00:00Z") is None
