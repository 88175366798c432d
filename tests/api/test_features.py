"""OGC API Features over the built demo city: structure, CRS84 geometry, filters, paging, versions and errors."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyproj
import pytest
import shapely
import shapely.geometry
from fastapi.testclient import TestClient

from twin.api.app import create_app
from twin.layers.registry import Layers
from twin.store import Query, Store

COLLECTION_TYPES = {"buildings": "Building", "building_parts": "BuildingPart", "roads": "Road",
                    "landcover": "LandCover", "water": "WaterBody", "vegetation": "Vegetation", "sensors": "Sensor"}


@pytest.fixture(scope="module")
def api(built_city) -> TestClient:
    return TestClient(create_app(built_city["store"]), headers=built_city["admin"])


@pytest.fixture(scope="module")
def store(built_city) -> Store:
    return Store(built_city["store"])


@pytest.fixture(scope="module")
def buildings(store: Store) -> list[dict]:
    return store.features(query=Query(types=["Building"]))


def _current(rows: list[dict]) -> list[dict]:
    """What the items answer by default: the states that have not ended by now."""
    now = datetime.now(UTC)
    return [r for r in rows if not r.get("valid_to") or datetime.fromisoformat(r["valid_to"]) > now]


def _to_crs84(store: Store):
    t = pyproj.Transformer.from_crs(store.crs, "OGC:CRS84", always_xy=True)

    def fn(xy: np.ndarray) -> np.ndarray:
        return np.array([t.transform(float(x), float(y)) for x, y in xy])  # point by point: independent of the API

    return lambda g: shapely.transform(shapely.geometry.shape(g), fn)


def _all(api: TestClient, url: str, skipped: int = 0) -> list[dict]:
    """Every feature of a query from ``url`` on (``skipped`` already read), following the next links and checking
    the paging bookkeeping on the way."""
    out: list[dict] = []
    while url:
        r = api.get(url)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["numberReturned"] == len(doc["features"])
        out += doc["features"]
        nxt = [lk for lk in doc["links"] if lk["rel"] == "next"]
        assert skipped + len(out) == doc["numberMatched"] or nxt, "a page short of numberMatched must link the next one"
        url = nxt[0]["href"] if nxt else None
    return out


def test_landing_page_json_links_resolve_and_html_stays_for_browsers(api: TestClient) -> None:
    doc = api.get("/?f=json").json()
    assert doc["time_zone"] == "Asia/Shanghai"  # the demo store's, for the viewer's local times
    rels = {lk["rel"]: lk for lk in doc["links"]}
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= set(rels)
    assert rels["service-desc"]["type"].startswith("application/vnd.oai.openapi+json")
    for rel in ("service-desc", "service-doc", "conformance", "data"):
        assert api.get(rels[rel]["href"]).status_code == 200, rel
    assert api.get("/", headers={"Accept": "application/json"}).json()["links"] == doc["links"]
    browser = api.get("/", headers={"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
    assert browser.headers["content-type"].startswith("text/html") and "/collections" in browser.text
    assert api.get("/").headers["content-type"].startswith("application/json")  # */* (curl, httpx, OWSLib): JSON
    assert api.get("/?f=xml").status_code == 400


def test_conformance_and_collections_with_extents_from_the_data(api: TestClient, store: Store,
                                                               buildings: list[dict]) -> None:
    conf = set(api.get("/conformance").json()["conformsTo"])
    for c in ("core", "geojson", "oas30"):
        assert f"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/{c}" in conf
    doc = api.get("/collections").json()
    cols = {c["id"]: c for c in doc["collections"]}
    layers = {f"layer-{spec.name}" for spec in Layers(store).list()}
    assert len(layers) >= 5 and set(cols) == set(COLLECTION_TYPES) | layers  # the entity types, then the H3 layers
    for cid, c in cols.items():
        assert {lk["rel"] for lk in c["links"]} >= {"self", "items", "describedby",
                                                    "http://www.opengis.net/def/rel/ogc/1.0/schema"}
        items = next(lk for lk in c["links"] if lk["rel"] == "items")
        assert items["type"] == "application/geo+json" and items["href"].endswith(f"/collections/{cid}/items")
        if cid in COLLECTION_TYPES:
            assert c["storageCrs"] == f"http://www.opengis.net/def/crs/EPSG/0/{store.crs.split(':')[1]}"
        assert api.get(f"/collections/{cid}").json()["id"] == cid
        # the count is what the items answer without parameters
        assert c["numberOfFeatures"] == api.get(f"/collections/{cid}/items?limit=1").json()["numberMatched"], cid
    # the buildings' CRS84 extent is the tight box around every building's reprojected footprint
    to84 = _to_crs84(store)
    bounds = np.array([to84(b["geometry"]).bounds for b in buildings])
    expect = [bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max()]
    got = cols["buildings"]["extent"]["spatial"]["bbox"][0]
    assert np.all(np.isfinite(got)) and cols["buildings"]["extent"]["spatial"]["crs"].endswith("CRS84")
    assert got[0] <= expect[0] and got[1] <= expect[1] and got[2] >= expect[2] and got[3] >= expect[3]
    assert np.allclose(got, expect, atol=2e-5)  # within ~2 m: the box of the projected bbox
    # demolished buildings are history: not counted (nor served) unless `datetime` asks for their time
    assert cols["buildings"]["numberOfFeatures"] == len(_current(buildings)) < len(buildings)
    # temporal extent: demolished/new buildings have validity, most are open-ended, so the interval is open
    assert cols["buildings"]["extent"]["temporal"]["interval"] == [[None, None]]
    assert cols["building_parts"]["numberOfFeatures"] >= len(_current(buildings)) - 10  # LoD1.3 parts
    assert np.allclose(cols["building_parts"]["extent"]["spatial"]["bbox"][0], got, atol=1e-4)
    hourly = next(c for c in cols.values() if c["id"] == "layer-pm25-hourly")
    start, end = hourly["extent"]["temporal"]["interval"][0]
    assert start < end and hourly["storageCrs"].endswith("CRS84")


def test_items_are_the_store_geometry_reprojected_to_crs84(api: TestClient, store: Store) -> None:
    to84 = _to_crs84(store)
    for cid in ("buildings", "roads", "sensors", "vegetation", "water", "landcover"):
        r = api.get(f"/collections/{cid}/items?limit=25")
        assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
        assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
        doc = r.json()
        assert doc["type"] == "FeatureCollection" and doc["numberReturned"] == len(doc["features"]) > 0
        assert doc["numberMatched"] == len(_current(store.features(query=Query(types=[COLLECTION_TYPES[cid]]))))
        datetime.fromisoformat(doc["timeStamp"].replace("Z", "+00:00"))
        for f in doc["features"]:
            ref = store.get(f["id"])
            assert ref["type"] == COLLECTION_TYPES[cid] == f["properties"]["type"]
            want = shapely.get_coordinates(to84(ref["geometry"]))
            got = shapely.get_coordinates(shapely.geometry.shape(f["geometry"]))
            assert got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-9), f["id"]
    b = api.get("/collections/buildings/items?limit=5").json()["features"]
    for f in b:
        ref = store.get(f["id"])
        p = f["properties"]
        assert "lods" not in p and p["height"] == ref["height"] and p["district"] == ref["attributes"]["district"]
        assert p["quality_rmse_lod12"] == ref["quality"]["rmse"]["1.2"]
        assert p["quality_valid"] is ref["quality"]["valid"]
        assert p["store_version"] == ref["_store"]["version"]
    # flat=false: the nested record, as stored
    for f in api.get("/collections/buildings/items?limit=5&flat=false").json()["features"]:
        ref = store.get(f["id"])
        p = f["properties"]
        assert "lods" not in p and p["height"] == ref["height"] and p["quality"] == ref["quality"]
        assert p["attributes"] == ref["attributes"] and p["provenance"] == ref["provenance"]
        assert p["store_version"] == ref["_store"]["version"]
    # lods only when asked for, and then exactly the store's solids
    for flat in ("true", "false"):
        f = api.get(f"/collections/buildings/items?limit=1&properties=lods,height&flat={flat}").json()["features"][0]
        assert set(f["properties"]) == {"lods", "height"} and f["properties"]["lods"] == store.get(f["id"])["lods"]


def test_crs_parameter_returns_storage_and_lat_lon_axis_orders(api: TestClient, store: Store) -> None:
    fid = store.features(query=Query(types=["Building"], limit=1))[0]["id"]
    ref = shapely.get_coordinates(shapely.geometry.shape(store.get(fid)["geometry"]))
    native = api.get(f"/collections/buildings/items/{fid}?crs=http://www.opengis.net/def/crs/EPSG/0/4548")
    assert native.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4548>"
    got = shapely.get_coordinates(shapely.geometry.shape(native.json()["geometry"]))
    assert np.allclose(got[:, ::-1], ref, atol=1e-9)  # EPSG:4548 axis order is northing, easting
    lonlat = shapely.get_coordinates(shapely.geometry.shape(api.get(f"/collections/buildings/items/{fid}").json()
                                                            ["geometry"]))
    latlon = shapely.get_coordinates(shapely.geometry.shape(api.get(f"/collections/buildings/items/{fid}?crs=EPSG:4326")
                                                            .json()["geometry"]))
    assert np.allclose(latlon[:, ::-1], lonlat, atol=1e-12)
    # a bbox in the storage CRS (northing, easting order) selects the same buildings as the CRS84 box around it
    x0, y0 = ref.min(axis=0)
    box = f"{y0 - 1},{x0 - 1},{y0 + 50},{x0 + 50}"
    url = f"/collections/buildings/items?bbox={box}&bbox-crs=EPSG:4548&limit=1000&datetime=../.."
    ids = {f["id"] for f in api.get(url).json()["features"]}
    want = {b["id"] for b in store.features(query=Query(types=["Building"], bbox=[x0 - 1, y0 - 1, x0 + 50, y0 + 50]))}
    assert fid in ids and ids == want


def test_bbox_selects_the_features_intersecting_the_crs84_box(api: TestClient, store: Store,
                                                              buildings: list[dict]) -> None:
    to84 = _to_crs84(store)
    geoms = {b["id"]: to84(b["geometry"]) for b in buildings}
    allb = shapely.union_all(list(geoms.values())).bounds
    box = (allb[0] + 0.3 * (allb[2] - allb[0]), allb[1] + 0.2 * (allb[3] - allb[1]),
           allb[0] + 0.6 * (allb[2] - allb[0]), allb[1] + 0.7 * (allb[3] - allb[1]))
    want = {i for i, g in geoms.items() if g.intersects(shapely.box(*box))}
    assert 10 < len(want) < len(geoms)
    got = _all(api, "/collections/buildings/items?datetime=../..&limit=40&bbox=" + ",".join(f"{v:.10f}" for v in box))
    assert {f["id"] for f in got} == want and len(got) == len(want)
    # 6 numbers (with heights) are the same box; a world-wide box is everything; a box elsewhere is nothing
    six = f"{box[0]},{box[1]},-10,{box[2]},{box[3]},500"
    every = "&limit=1&datetime=../.."
    assert api.get(f"/collections/buildings/items?bbox={six}{every}").json()["numberMatched"] == len(want)
    assert api.get(f"/collections/buildings/items?bbox=-180,-90,180,90{every}").json()["numberMatched"] == len(geoms)
    assert api.get("/collections/buildings/items?bbox=0,0,1,1").json()["numberMatched"] == 0


def test_datetime_matches_validity(api: TestClient, buildings: list[dict]) -> None:
    def valid(b: dict, a: datetime | None, z: datetime | None) -> bool:
        vf = datetime.fromisoformat(b["valid_from"]) if b["valid_from"] else None
        vt = datetime.fromisoformat(b["valid_to"]) if b["valid_to"] else None
        return (vf is None or z is None or vf <= z) and (vt is None or a is None or vt > a)

    bounded = [b for b in buildings if b["valid_from"] or b["valid_to"]]
    assert bounded, "the demo city has new and demolished buildings with valid time"
    t = [datetime(2020, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)]
    cases = {
        "2020-01-01T00:00:00Z": (t[0], t[0]),
        "2025-01-01T00:00:00Z": (t[2], t[2]),
        "2024-01-01T00:00:00+08:00/2025-01-01T00:00:00Z": (datetime(2023, 12, 31, 16, tzinfo=UTC), t[2]),
        "../2020-01-01T00:00:00Z": (None, t[0]),
        "2025-01-01T00:00:00Z/..": (t[2], None),
        "2024-01-01": (t[1], t[1]),
    }
    seen = set()
    for value, (a, z) in cases.items():
        want = {b["id"] for b in buildings if valid(b, a, z)}
        got = {f["id"] for f in api.get("/collections/buildings/items", params={"datetime": value, "limit": 10000})
               .json()["features"]}
        assert got == want, value
        seen.add(len(want))
    assert len(seen) > 1, "the cases must tell validity apart"
    # no datetime: what has not ended by now (the demolished buildings are history); ../..: every state
    default = {f["id"] for f in api.get("/collections/buildings/items?limit=10000").json()["features"]}
    assert default == {b["id"] for b in _current(buildings)} and len(default) < len(buildings)
    assert not any(i.startswith("bldg-demolished") for i in default)
    every = api.get("/collections/buildings/items", params={"datetime": "../..", "limit": 10000}).json()
    assert {f["id"] for f in every["features"]} == {b["id"] for b in buildings}
    # a demolished building is still there by id (the viewer shows it), and in the past
    gone = next(b for b in buildings if b["valid_to"])
    assert api.get(f"/collections/buildings/items/{gone['id']}").status_code == 200
    before = api.get("/collections/buildings/items", params={"datetime": "2020-01-01", "limit": 10000}).json()
    assert gone["id"] in {f["id"] for f in before["features"]}


def test_property_filters_and_cql2_subset(api: TestClient, buildings: list[dict]) -> None:
    q = api.get("/collections/buildings/queryables")
    assert q.headers["content-type"] == "application/schema+json"
    props = q.json()["properties"]
    assert props["height"]["type"] == "number" and props["use"]["type"] == "string"
    assert props["storeys"]["type"] == "integer" and props["district"]["type"] == "string"
    assert props["quality_rmse_lod22"]["type"] == "number" and props["quality_valid"]["type"] == "boolean"
    assert "roof_type" in props and "lods" not in props and "provenance_height_method" not in props

    def ids(params: dict) -> set[str]:
        r = api.get("/collections/buildings/items", params={"limit": 10000, "datetime": "../..", **params})
        assert r.status_code == 200, r.text
        return {f["id"] for f in r.json()["features"]}

    def rmse(b: dict, lod: str) -> float | None:
        return ((b.get("quality") or {}).get("rmse") or {}).get(lod)

    uses = {b["use"] for b in buildings if b.get("use")}
    assert len(uses) > 1
    use = sorted(uses)[0]
    assert ids({"use": use}) == {b["id"] for b in buildings if b.get("use") == use}
    high = {b["id"] for b in buildings if (rmse(b, "1.2") or 0) > 1}
    assert 0 < len(high) < len(buildings)
    assert ids({"filter": "quality_rmse_lod12 > 1"}) == high  # the flat column
    assert ids({"filter": "quality.rmse.1.2 > 1"}) == high  # the nested paths of before still work
    assert ids({"filter": 'quality.rmse."1.2" > 1'}) == high
    assert ids({"filter": "1 < quality_rmse_lod12"}) == high
    both = {b["id"] for b in buildings if (rmse(b, "1.2") or 0) > 1 and (b.get("height") or 0) >= 10}
    assert ids({"filter": "quality_rmse_lod12 > 1 AND height >= 10", "filter-lang": "cql2-text"}) == both
    assert ids({"filter": "(height >= 10) and (quality.rmse.1.2 > 1)"}) == both
    assert ids({"height": "10", "filter": "height <> 10"}) == set()
    district = next(b["attributes"]["district"] for b in buildings if b["attributes"].get("district"))
    in_district = {b["id"] for b in buildings if b["attributes"].get("district") == district}
    assert ids({"filter": f"district = '{district}'"}) == in_district == ids({"district": district})
    assert ids({"filter": f"attributes.district = '{district}'"}) == in_district
    valid = {b["id"] for b in buildings if (b.get("quality") or {}).get("valid") is True}
    assert ids({"filter": "quality_valid = TRUE"}) == valid == ids({"quality_valid": "true"})
    assert ids({"quality.valid": "true"}) == valid


def test_paging_returns_every_feature_exactly_once_in_id_order(api: TestClient, store: Store) -> None:
    want = [f["id"] for f in store.features(query=Query(types=["Vegetation"]))]
    got = _all(api, "/collections/vegetation/items?limit=97")
    ids = [f["id"] for f in got]
    assert ids == sorted(want) and len(set(ids)) == len(want) > 1000
    page2 = api.get("/collections/vegetation/items?limit=97&offset=97").json()
    prev = next(lk for lk in page2["links"] if lk["rel"] == "prev")
    assert prev["type"] == "application/geo+json" and [f["id"] for f in api.get(prev["href"]).json()["features"]] \
        == ids[:97]
    beyond = api.get("/collections/vegetation/items?offset=100000").json()
    assert beyond["numberReturned"] == 0 and beyond["numberMatched"] == len(want)
    assert not [lk for lk in beyond["links"] if lk["rel"] == "next"]
    assert api.get("/collections/vegetation/items").json()["numberReturned"] == 10  # the default limit
    assert api.get("/collections/vegetation/items?limit=10000").json()["numberReturned"] == len(want)


def test_as_of_branch_and_pinned_paging_see_the_right_state(built_city, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(built_city["store"], root)
    s = Store(root)
    before = s.head()
    api = TestClient(create_app(root), headers=built_city["admin"])
    first = api.get("/collections/buildings/items?limit=50&datetime=../..").json()
    nxt = next(lk["href"] for lk in first["links"] if lk["rel"] == "next")
    assert parse_qs(urlsplit(nxt).query)["as_of"] == [str(before)]
    assert parse_qs(urlsplit(nxt).query)["datetime"] == ["../.."]
    # a commit lands while a client pages: it changes one building, removes one and the pages still read `before`
    old = s.features(query=Query(types=["Building"]))
    changed, gone = dict(old[3]), old[-1]["id"]
    changed.pop("_store")
    changed["height"] = 123.25
    s.commit([changed], [gone], message="edit while paging")
    rest = _all(api, nxt, skipped=50)
    assert [f["id"] for f in first["features"] + rest] == [b["id"] for b in old]
    after = api.get("/collections/buildings/items?limit=10000&datetime=../..").json()
    assert after["numberMatched"] == len(old) - 1 and gone not in {f["id"] for f in after["features"]}
    item = f"/collections/buildings/items/{changed['id']}"
    assert api.get(item).json()["properties"]["height"] == 123.25
    assert api.get(f"{item}?as_of={before}").json()["properties"]["height"] == old[3]["height"]
    assert api.get(f"/collections/buildings/items/{gone}").status_code == 404
    assert api.get(f"/collections/buildings/items/{gone}?as_of={before}").status_code == 200
    # a scenario branch edits a building; main does not see it
    s.create_branch("scenario", from_branch="main")
    edit = dict(s.get(old[5]["id"]))
    edit.pop("_store")
    edit["use"] = "park-pavilion"
    s.commit([edit], message="what if", branch="scenario")
    on_branch = api.get("/collections/buildings/items", params={"branch": "scenario", "use": "park-pavilion"}).json()
    assert [f["id"] for f in on_branch["features"]] == [edit["id"]]
    assert api.get("/collections/buildings/items", params={"use": "park-pavilion"}).json()["numberMatched"] == 0
    assert api.get(f"/collections/buildings/items/{edit['id']}?branch=scenario").json()["properties"]["use"] == \
        "park-pavilion"


def test_item_by_id_is_the_store_entity(api: TestClient, store: Store) -> None:
    for cid, t in COLLECTION_TYPES.items():
        rows = store.features(query=Query(types=[t], limit=1))
        if not rows:
            continue
        r = api.get(f"/collections/{cid}/items/{rows[0]['id']}")
        assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
        doc = r.json()
        assert doc["id"] == rows[0]["id"] and doc["type"] == "Feature"
        assert {lk["rel"] for lk in doc["links"]} >= {"self", "collection"}
    bid = store.features(query=Query(types=["Building"], limit=1))[0]["id"]
    wrong = api.get(f"/collections/roads/items/{bid}")
    assert wrong.status_code == 404 and "collection 'buildings'" in wrong.json()["detail"]
    assert api.get("/collections/buildings/items/no-such-id").status_code == 404


@pytest.mark.parametrize(("url", "status", "says"), [
    ("/collections/nope", 404, "no collection 'nope'"),
    ("/collections/nope/items", 404, "collections: buildings"),
    ("/collections/nope/queryables", 404, "no collection"),
    ("/collections/buildings/items?limit=10001", 400, "limit"),
    ("/collections/buildings/items?limit=0", 400, "limit"),
    ("/collections/buildings/items?limit=ten", 400, "limit"),
    ("/collections/buildings/items?offset=-5", 400, "offset"),
    ("/collections/buildings/items?bbox=1,2,3", 400, "bbox"),
    ("/collections/buildings/items?bbox=a,b,c,d", 400, "bbox"),
    ("/collections/buildings/items?bbox=116.5,39,116.4,40", 400, "bbox"),
    ("/collections/buildings/items?bbox=116,39,200,40", 400, "bbox"),
    ("/collections/buildings/items?bbox=1,2,3,nan", 400, "bbox"),
    ("/collections/buildings/items?datetime=yesterday", 400, "datetime"),
    ("/collections/buildings/items?datetime=2024-13-01T00:00:00Z", 400, "datetime"),
    ("/collections/buildings/items?datetime=2025-01-01T00:00:00Z/2024-01-01T00:00:00Z", 400, "datetime"),
    ("/collections/buildings/items?datetime=a/b/c", 400, "datetime"),
    ("/collections/buildings/items?filter=height >> 3", 400, "filter"),
    ("/collections/buildings/items?filter=height > 3 OR use = 'x'", 400, "OR is not supported"),
    ("/collections/buildings/items?filter=nosuch > 3", 400, "not a queryable"),
    ("/collections/buildings/items?filter=height > ", 400, "filter"),
    ("/collections/buildings/items?filter=(height > 3", 400, "filter"),
    ("/collections/buildings/items?filter=height > 3&filter-lang=cql2-json", 400, "filter-lang"),
    ("/collections/buildings/items?nosuch=3", 400, "unknown parameter"),
    ("/collections/buildings/items?height=tall", 400, "height"),
    ("/collections/buildings/items?properties=nosuch", 400, "properties"),
    ("/collections/buildings/items?crs=EPSG:3857", 400, "crs"),
    ("/collections/buildings/items?bbox=0,0,1,1&bbox-crs=EPSG:9999999", 400, "bbox-crs"),
    ("/collections/buildings/items?as_of=99999", 404, "version"),
    ("/collections/buildings/items?as_of=last-week", 400, "as_of"),
    ("/collections/buildings/items?branch=nope", 404, "branch"),
    ("/collections/buildings/items?f=xml", 400, "f"),
    ("/collections/buildings/items/x?crs=nope", 400, "crs"),
    ("/collections/buildings/items?flat=maybe", 400, "flat"),
    ("/collections/buildings/items?res=9", 400, "res: only layer collections"),
    ("/collections/buildings/items?properties=quality", 400, "properties"),  # nested names need flat=false
    ("/collections/buildings/items?filter=provenance_height_method = 'x'", 400, "not a queryable"),
    ("/collections/buildings/schema?level=nested", 400, "level"),
    ("/collections/layer-pm25-hourly/items?res=3", 400, "res: layer 'pm25-hourly' has resolutions"),
    ("/collections/layer-pm25-hourly/items?height=3", 400, "unknown parameter"),
    ("/collections/layer-pm25-hourly/items?filter=height > 3", 400, "not a queryable"),
    ("/collections/layer-pm25-hourly/items?pm25=high", 400, "pm25: expected a number"),
    ("/collections/layer-pm25-hourly/items/8931aa42803ffff", 404, "no item"),
    ("/collections/layer-nope/items", 404, "no collection 'layer-nope'"),
])
def test_bad_input_is_a_clear_client_error(api: TestClient, url: str, status: int, says: str) -> None:
    r = api.get(url)
    assert r.status_code == status, r.text
    assert says in r.json()["detail"]


def test_openapi_describes_the_ogc_endpoints_and_parameters(api: TestClient) -> None:
    r = api.get("/openapi.json")
    doc = r.json()
    assert doc["openapi"] == "3.0.3"  # the OGC oas30 class: no JSON Schema 2020 constructs left

    def walk(x: object) -> None:
        if isinstance(x, dict):
            assert x != {"type": "null"} and "const" not in x and "prefixItems" not in x
            assert "$ref" not in x or len(x) == 1, x
            assert not isinstance(x.get("type"), list) and not isinstance(x.get("examples"), list)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc)
    assert api.get("/docs").status_code == 200
    paths = doc["paths"]
    for p in ("/", "/conformance", "/collections", "/collections/{collectionId}",
              "/collections/{collectionId}/queryables", "/collections/{collectionId}/items",
              "/collections/{collectionId}/items/{featureId}", "/imagery", "/imagery/tilejson.json",
              "/imagery/{z}/{x}/{y}.png"):
        assert "get" in paths[p], p
    for p, ops in paths.items():
        for op in ops.values():
            for prm in op.get("parameters", []):
                assert {"name", "in", "schema"} <= set(prm) and prm["in"] in ("query", "path", "header", "cookie")
                if prm["in"] == "path":
                    assert prm["required"] and "{" + prm["name"] + "}" in p
    items = {prm["name"]: prm for prm in paths["/collections/{collectionId}/items"]["get"]["parameters"]}
    assert {"bbox", "bbox-crs", "datetime", "limit", "offset", "filter", "filter-lang", "crs", "properties",
            "branch", "as_of"} <= set(items)
    assert items["limit"]["schema"]["maximum"] == 10000 and items["limit"]["schema"]["default"] == 10
    assert "application/geo+json" in paths["/collections/{collectionId}/items"]["get"]["responses"]["200"]["content"]
