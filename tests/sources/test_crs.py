"""CRS handling: CGCS2000 codes, CityJSON/OGC CRS URIs, area-of-use checks, GCJ-02 / BD-09 against published values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import shapely

from twin.geo import crs as C
from twin.sources import ReadContext, SourceError
from twin.sources.vector import read

# Published WGS84 -> GCJ-02 test vectors of eviltransform (github.com/googollee/eviltransform, python/test.py):
# (wgs lat, wgs lon, gcj lat, gcj lon)
EVIL = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]
# Published values of coordtransform (github.com/wandergis/coordtransform, README / test/app.js), Tiananmen:
# input (116.404, 39.915) (lon, lat)
CT_IN = (116.404, 39.915)
CT_GCJ_TO_BD = (116.41036949371029, 39.92133699351021)
CT_BD_TO_GCJ = (116.39762729119315, 39.90865673957631)
CT_WGS_TO_GCJ = (116.41024449916938, 39.91640428150164)


def metres(lon0, lat0, lon1, lat1) -> float:
    """Great-circle distance (spherical, R = 6371 km): enough to judge sub-metre agreement."""
    p0, p1 = math.radians(lat0), math.radians(lat1)
    dl = math.radians(lon1 - lon0)
    a = math.sin((p1 - p0) / 2) ** 2 + math.cos(p0) * math.cos(p1) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(a))


@pytest.mark.parametrize("wlat,wlon,glat,glon", EVIL)
def test_wgs84_to_gcj02_matches_published_vectors(wlat, wlon, glat, glon) -> None:
    lon, lat = C.wgs84_to_gcj02(wlon, wlat)
    assert abs(float(lon) - glon) < 1e-9 and abs(float(lat) - glat) < 1e-9


@pytest.mark.parametrize("wlat,wlon,glat,glon", EVIL)
def test_gcj02_inverse_is_accurate_to_half_a_metre(wlat, wlon, glat, glon) -> None:
    lon, lat = C.gcj02_to_wgs84(glon, glat)
    assert metres(float(lon), float(lat), wlon, wlat) < 0.5
    # and the offset it removes is the known few hundred metres
    assert 100 < metres(glon, glat, wlon, wlat) < 700


def test_coordtransform_tiananmen_values() -> None:
    assert np.allclose(C.gcj02_to_bd09(*CT_IN), CT_GCJ_TO_BD, atol=1e-9)
    assert np.allclose(C.bd09_to_gcj02(*CT_IN), CT_BD_TO_GCJ, atol=1e-9)
    assert np.allclose(C.wgs84_to_gcj02(*CT_IN), CT_WGS_TO_GCJ, atol=1e-9)


def test_round_trips_over_china_are_sub_metre_and_outside_china_is_identity() -> None:
    rng = np.random.default_rng(3)
    lon = rng.uniform(74, 134, 2000)
    lat = rng.uniform(18, 53, 2000)
    glon, glat = C.wgs84_to_gcj02(lon, lat)
    blon, blat = C.gcj02_to_bd09(glon, glat)
    wlon, wlat = C.bd09_to_wgs84(blon, blat)
    err = [metres(a, b, c, d) for a, b, c, d in zip(lon, lat, wlon, wlat, strict=True)]
    assert max(err) < 0.5
    off = [metres(a, b, c, d) for a, b, c, d in zip(lon, lat, glon, glat, strict=True)]
    assert min(off) > 1 and max(off) < 1200  # the GCJ-02 shift is never zero in China, never kilometres
    # Helsinki and Mexico are outside China: GCJ-02 == WGS84
    assert C.wgs84_to_gcj02(24.94, 60.17) == (24.94, 60.17)
    assert C.gcj02_to_wgs84(-102.29, 21.87) == (-102.29, 21.87)


def test_cgcs2000_codes_and_uris() -> None:
    assert C.normalise("EPSG:4490") == "EPSG:4490"
    assert C.normalise("epsg:4548") == "EPSG:4548"
    assert C.normalise(C.parse("EPSG:4547").to_wkt()) == "EPSG:4547"
    assert C.normalise("https://www.opengis.net/def/crs/EPSG/0/7415") == "EPSG:7415"
    assert C.normalise("urn:ogc:def:crs:EPSG::28992") == "EPSG:28992"
    assert C.same_horizontal("EPSG:7415", "EPSG:28992") and not C.same_horizontal("EPSG:4547", "EPSG:4548")
    # CGCS2000 GK zone CM 117E (false easting 500 km): Tiananmen, 0.6 degrees west of 117E, lies ~51 km west
    x, y = C.transformer("EPSG:4490", "EPSG:4548").transform(116.3975, 39.9087)
    assert 447_000 < x < 449_000 and 4_418_000 < y < 4_420_000
    with pytest.raises(ValueError, match="unknown CRS"):
        C.parse("EPSG:999999")


def test_area_of_use_catches_wrong_crs_and_hemisphere() -> None:
    assert C.outside_area_of_use([448_000, 4_418_000, 449_000, 4_419_000], "EPSG:4548") is None
    # degrees declared as GK metres
    why = C.outside_area_of_use([116.3, 39.9, 116.5, 40.0], "EPSG:4548")
    assert why and "outside the area of use of EPSG:4548" in why and "wrong CRS?" in why
    # southern hemisphere in a northern CRS
    assert C.outside_area_of_use([448_000, -4_419_000, 449_000, -4_418_000], "EPSG:4548")
    assert C.outside_area_of_use([116.3, -40.0, 116.5, -39.9], "EPSG:4490")
    # metres declared as degrees
    assert "outside the area of use of EPSG:4326" in C.outside_area_of_use([448_000, 4_418_000, 449_000,
                                                                            4_419_000], "EPSG:4326")
    # the store check: Dutch RD coordinates do not belong in a Beijing store
    assert C.outside_area_of_use([84_000, 447_000, 85_000, 448_000], "EPSG:28992", against="EPSG:4548")


def _gcj_geojson(path: Path, pts_wgs: np.ndarray, kind: str) -> Path:
    lon, lat = C.wgs84_to_gcj02(pts_wgs[:, 0], pts_wgs[:, 1])
    if kind == "bd09":
        lon, lat = C.gcj02_to_bd09(lon, lat)
    ring = [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]
    ring.append(ring[0])
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "gate"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("kind", ["gcj02", "bd09"])
def test_vector_reader_converts_declared_web_coordinates(tmp_path: Path, kind: str) -> None:
    wgs = np.array([[116.3970, 39.9080], [116.3980, 39.9080], [116.3980, 39.9088], [116.3970, 39.9088]])
    p = _gcj_geojson(tmp_path / f"{kind}.geojson", wgs, kind)
    plain = read(ReadContext(path=p, store_crs="EPSG:4548", asset_id="a"))
    conv = read(ReadContext(path=p, store_crs="EPSG:4548", asset_id="a", options={"coords": kind}))
    truth = shapely.Polygon(np.column_stack(C.transformer("EPSG:4326", "EPSG:4548").transform(wgs[:, 0], wgs[:, 1])))
    g_plain = plain.entities[0].geometry.to_shapely()
    conv_g = conv.entities[0].geometry.to_shapely()
    assert shapely.hausdorff_distance(conv_g, truth) < 0.5
    assert shapely.hausdorff_distance(g_plain, truth) > 100  # without the declaration the web offset remains
    assert conv.info["coords_converted_from"] == kind


def test_web_coordinates_need_degrees(tmp_path: Path) -> None:
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4548"}},
           "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
               [[448000, 4418000], [448010, 4418000], [448010, 4418010], [448000, 4418000]]]}}]}
    p = tmp_path / "gk.geojson"
    p.write_text(json.dumps(doc))
    with pytest.raises(SourceError, match=r"gk\.geojson: coords=gcj02 needs longitude/latitude"):
        read(ReadContext(path=p, store_crs="EPSG:4548", asset_id="a", options={"coords": "gcj02"}))
    with pytest.raises(SourceError, match="unknown coords 'mars2'"):
        read(ReadContext(path=p, store_crs="EPSG:4548", asset_id="a", options={"coords": "mars2"}))
