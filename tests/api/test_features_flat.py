"""OGC API Features for GIS clients: flat typed columns fixed per collection, building parts, layers as collections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import h3
import numpy as np
import pyproj
import pytest
import shapely
import shapely.geometry
from fastapi.testclient import TestClient

from twin.api.app import create_app
from twin.layers.registry import Layers
from twin.store import Query, Store

ENTITIES = ("buildings", "building_parts", "roads", "landcover", "water", "vegetation", "sensors")


@pytest.fixture(scope="module")
def api(built_city) -> TestClient:
    return TestClient(create_app(built_city["store"]), headers=built_city["admin"])


@pytest.fixture(scope="module")
def store(built_city) -> Store:
    return Store(built_city["store"])


def _pages(api: TestClient, url: str) -> list[dict]:
    out: list[dict] = []
    while url:
        doc = api.get(url).json()
        out += doc["features"]
        url = next((lk["href"] for lk in doc["links"] if lk["rel"] == "next"), None)
    return out


def _is(value: object, prop: dict) -> bool:
    """``value`` fits the Part 5 property (null always does)."""
    if value is None:
        return True
    t = prop["type"]
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    if prop.get("format") == "date-time":
        return isinstance(value, str) and value.endswith("Z") and datetime.fromisoformat(value[:-1] + "+00:00") > \
            datetime(1900, 1, 1, tzinfo=UTC)
    return isinstance(value, str)


@pytest.mark.parametrize("cid", [*ENTITIES, "layer-pm25-hourly", "layer-green-fraction"])
def test_every_feature_of_every_page_has_the_schema_columns_of_their_type(api: TestClient, cid: str) -> None:
    r = api.get(f"/collections/{cid}/schema")
    assert r.status_code == 200 and r.headers["content-type"] == "application/schema+json"
    schema = r.json()
    props = {k: v for k, v in schema["properties"].items() if k != "geometry"}
    assert schema["properties"]["geometry"]["x-ogc-role"] == "primary-geometry"
    assert [p["x-ogc-propertySeq"] for p in schema["properties"].values()] == list(range(1, len(props) + 2))
    assert all(isinstance(p["type"], str) for p in props.values())  # one type string: what GDAL and QGIS read
    # the describedby document GDAL reads: a GeoJSON Feature whose properties are the same columns
    feature = api.get(f"/collections/{cid}/schema?level=feature").json()
    assert feature["properties"]["properties"]["properties"] == {
        k: {kk: vv for kk, vv in v.items() if not kk.startswith("x-ogc-p") and kk != "x-ogc-role"}
        for k, v in props.items()}
    for name, q in api.get(f"/collections/{cid}/queryables").json()["properties"].items():
        assert props[name]["type"] == q["type"], name
    feats = _pages(api, f"/collections/{cid}/items?limit=97&datetime=../..")
    assert feats
    for f in feats:
        assert list(f["properties"]) == list(props), f["id"]  # the same columns, in order, on every page
        bad = {k: v for k, v in f["properties"].items() if not _is(v, props[k])}
        assert not bad, (f["id"], bad)
    if cid in ENTITIES:  # validity columns are date-time in every collection, even where all are null
        assert props["valid_from"]["format"] == props["valid_to"]["format"] == "date-time"
        assert props["store_version"]["type"] == "integer"


def test_columns_are_typed_from_the_model_and_every_feature_not_the_first_page(api: TestClient,
                                                                              store: Store) -> None:
    props = api.get("/collections/buildings/schema").json()["properties"]
    buildings = store.features(query=Query(types=["Building"]))
    assert all(b["storeys"] is None for b in buildings)  # no storeys in the demo: still an integer column
    assert props["storeys"]["type"] == "integer" and props["height"]["type"] == "number"
    for lod in ("12", "13", "22"):
        assert props[f"quality_rmse_lod{lod}"] == {**props[f"quality_rmse_lod{lod}"], "type": "number",
                                                    "x-ogc-unit": "m"}
    assert props["quality_valid"]["type"] == "boolean" and props["quality_lod13_parts"]["type"] == "integer"
    # attributes are columns (an attribute named like a model field or `id` gets the attr_ prefix)
    assert props["district"]["type"] == "string" and props["name"]["type"] == "string"
    assert props["ndvi_mean"]["type"] == "number" and "attr_id" in props and "id" not in props
    # an attribute only the changed buildings have is a column of every feature
    changed = [b for b in buildings if "change" in b["attributes"]]
    assert changed and len(changed) < 50 and props["change_kind"]["type"] == "string"
    first = api.get("/collections/buildings/items?limit=5").json()["features"]
    assert all("change_kind" in f["properties"] for f in first)
    one = api.get(f"/collections/buildings/items/{changed[0]['id']}").json()["properties"]
    assert one["change_kind"] == changed[0]["attributes"]["change"]["kind"]
    # provenance per attribute, readable as text
    b = buildings[0]
    rec = next(p for p in b["provenance"] if p["attribute"] == "height")
    p = api.get(f"/collections/buildings/items/{b['id']}").json()["properties"]
    assert p["provenance_height_method"] == rec["method"] and p["provenance_height_source"] == rec["source_asset_id"]
    assert props["provenance_height_acquired"]["format"] == "date-time"
    # properties= takes the flat names
    f = api.get("/collections/buildings/items?limit=1&properties=district,quality_rmse_lod22").json()["features"][0]
    assert set(f["properties"]) == {"district", "quality_rmse_lod22"}


def test_the_nested_record_stays_for_the_viewer(api: TestClient, store: Store) -> None:
    bid = store.features(query=Query(types=["Building"], limit=1))[0]["id"]
    ref = store.get(bid)
    p = api.get(f"/collections/buildings/items/{bid}?flat=false").json()["properties"]
    assert p["quality"] == ref["quality"] and p["provenance"] == ref["provenance"]
    assert p["attributes"] == ref["attributes"] and "lods" not in p
    f = api.get("/collections/buildings/items?flat=false&limit=1&properties=quality").json()["features"][0]
    assert set(f["properties"]) == {"quality"}


def _roof_faces(b: dict) -> int:
    solid = b["lods"].get("1.3")
    if not solid:
        return 0
    kinds = [s["type"] for s in solid["semantics"]["surfaces"]]
    return sum(1 for v in solid["semantics"]["values"][0] if kinds[v] == "RoofSurface")


def test_building_parts_are_the_parts_of_the_lod13_solids(api: TestClient, store: Store) -> None:
    buildings = {b["id"]: b for b in store.features(query=Query(types=["Building"]))}
    assert not store.count(query=Query(types=["BuildingPart"]))  # the build stores no parts: they are derived
    want = sum(_roof_faces(b) for b in buildings.values())
    parts = _pages(api, "/collections/building_parts/items?limit=200&datetime=../..")
    assert len(parts) == want > len(buildings) * 0.9
    by_parent: dict[str, list[dict]] = {}
    for f in parts:
        by_parent.setdefault(f["properties"]["parent_id"], []).append(f)
    assert set(by_parent) <= set(buildings)
    multi = [k for k, v in by_parent.items() if len(v) > 1]
    assert multi, "the demo city has buildings of several heights"
    t = pyproj.Transformer.from_crs(store.crs, "OGC:CRS84", always_xy=True)
    for bid, fs in by_parent.items():
        b = buildings[bid]
        assert sorted(f["id"] for f in fs) == sorted(f"{bid}.part-{k}" for k in range(1, len(fs) + 1))
        footprint = shapely.transform(shapely.geometry.shape(b["geometry"]), lambda xy: np.column_stack(
            t.transform(xy[:, 0], xy[:, 1])))
        union = shapely.union_all([shapely.geometry.shape(f["geometry"]) for f in fs])
        # the parts tile the footprint (LoD1.3 partitions it), each with its own height
        assert union.symmetric_difference(footprint).area < 0.02 * footprint.area, bid
        for f in fs:
            p = f["properties"]
            assert p["type"] == "BuildingPart" and p["valid_to"] == b["valid_to"] and p["use"] == b["use"]
            assert p["height"] == pytest.approx(p["roof_z"] - p["ground_z"], abs=2e-3) and p["height"] > 0
            assert p["parts"] == len(fs)
        assert max(f["properties"]["roof_z"] for f in fs) == pytest.approx(
            max(v[2] for v in b["lods"]["1.3"]["vertices"]), abs=2e-3)
    # filters, by id, and the nested form like any collection
    bid = multi[0]
    got = api.get("/collections/building_parts/items", params={"parent_id": bid}).json()
    assert {f["id"] for f in got["features"]} == {f["id"] for f in by_parent[bid]}
    tall = api.get("/collections/building_parts/items", params={"filter": "height > 30", "limit": 1000}).json()
    assert {f["id"] for f in tall["features"]} == {f["id"] for f in parts if f["properties"]["height"] > 30}
    one = api.get(f"/collections/building_parts/items/{bid}.part-1?flat=false&properties=parent_id,attributes,lods")
    assert one.status_code == 200 and one.json()["properties"]["parent_id"] == bid
    assert set(one.json()["properties"]["lods"]) == {"1.3"}
    assert api.get(f"/collections/building_parts/items/{bid}.part-99").status_code == 404


def test_layers_are_collections_of_cells_with_named_typed_values(api: TestClient, store: Store) -> None:
    layers = Layers(store)
    for spec in layers.list():
        cid = f"layer-{spec.name}"
        schema = api.get(f"/collections/{cid}/schema").json()["properties"]
        values = [k for k, v in schema.items() if v.get("x-ogc-unit") == spec.unit and v["type"] == "number"]
        assert len(values) == 1, (cid, schema)
        value = values[0]
        assert schema["cell"]["type"] == "string" and schema["res"]["type"] == "integer"
        assert schema["count"]["type"] == "integer" and ("time" in schema) == bool(spec.time_bucket)
        if spec.time_bucket:
            assert schema["time"]["format"] == schema["time_end"]["format"] == "date-time"
        for res in (max(spec.resolutions), min(spec.resolutions)):
            table = layers.query(spec.name, res=res).to_pylist()
            doc = api.get(f"/collections/{cid}/items", params={"res": res, "limit": 50}).json()
            assert doc["numberMatched"] == len(table), (cid, res)
            for f, row in zip(doc["features"], table, strict=False):
                p = f["properties"]
                assert p["cell"] == h3.int_to_str(row["cell"]) and p["res"] == res == h3.get_resolution(p["cell"])
                assert p[value] == pytest.approx(row["value"]) and p["count"] == row["count"]
                assert p["unit"] == spec.unit
                if spec.time_bucket:
                    assert datetime.fromisoformat(p["time"].replace("Z", "+00:00")) == row["t"]
                ring = [(lng, lat) for lat, lng in h3.cell_to_boundary(p["cell"])]
                assert np.allclose(f["geometry"]["coordinates"][0][:-1], ring, atol=1e-12)


def test_layer_time_resolution_bbox_and_ids(api: TestClient, store: Store) -> None:
    spec = Layers(store).spec("pm25-hourly")
    table = Layers(store).query(spec.name).to_pylist()
    t0 = table[0]["t"]
    inside = t0 + timedelta(minutes=30)
    # an instant: the bucket holding it; an interval: the buckets overlapping it
    at = api.get("/collections/layer-pm25-hourly/items", params={"datetime": inside.isoformat(), "limit": 10000})
    assert {f["properties"]["time"] for f in at.json()["features"]} == {t0.isoformat().replace("+00:00", "Z")}
    assert at.json()["numberMatched"] == sum(1 for r in table if r["t"] == t0)
    span = f"{inside.isoformat()}/{(t0 + timedelta(hours=2)).isoformat()}"
    got = api.get("/collections/layer-pm25-hourly/items", params={"datetime": span, "limit": 10000}).json()
    assert got["numberMatched"] == sum(1 for r in table if t0 <= r["t"] <= t0 + timedelta(hours=2))
    # a bbox: the cells whose hexagon meets it
    cells = sorted({r["cell"] for r in table})
    lat, lng = h3.cell_to_latlng(h3.int_to_str(cells[0]))
    box = (lng - 1e-4, lat - 1e-4, lng + 1e-4, lat + 1e-4)
    near = {c for c in cells if shapely.Polygon([(x, y) for y, x in h3.cell_to_boundary(h3.int_to_str(c))])
            .intersects(shapely.box(*box))}
    got = api.get("/collections/layer-pm25-hourly/items",
                  params={"bbox": ",".join(map(str, box)), "limit": 10000}).json()
    assert {f["properties"]["cell"] for f in got["features"]} == {h3.int_to_str(c) for c in near}
    assert got["numberMatched"] == sum(1 for r in table if r["cell"] in near)
    # filters on the value; one feature by its id
    value = table[len(table) // 2]["value"]
    high = api.get("/collections/layer-pm25-hourly/items", params={"filter": f"pm25 > {value}", "limit": 10000})
    assert high.json()["numberMatched"] == sum(1 for r in table if r["value"] > value) > 0
    fid = got["features"][0]["id"]
    one = api.get(f"/collections/layer-pm25-hourly/items/{fid}").json()
    assert one["id"] == fid and one["properties"] == got["features"][0]["properties"]
    # the storage CRS on request
    native = api.get(f"/collections/layer-pm25-hourly/items/{fid}?crs=EPSG:{store.crs.split(':')[1]}").json()
    x, y = pyproj.Transformer.from_crs("OGC:CRS84", store.crs, always_xy=True).transform(
        *np.array(one["geometry"]["coordinates"][0]).T)
    assert np.allclose(np.array(native["geometry"]["coordinates"][0])[:, ::-1], np.column_stack([x, y]), atol=1e-6)
