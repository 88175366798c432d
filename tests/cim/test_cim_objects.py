from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from data_models import (
    CITY_OBJECT_TYPES,
    AnyCityObject,
    Building,
    BuildingPart,
    CityObject,
    Classification,
    Geometry,
    LandCover,
    Observation,
    ObservationFlag,
    Road,
    Sensor,
    Solid,
    Vegetation,
    WaterBody,
    cityjson_document,
    parse_city_object,
)

SQUARE = [[[0.0, 0.0], [10.0, 0.0], [10.0, 8.0], [0.0, 8.0], [0.0, 0.0]]]
LINE = {"type": "LineString", "coordinates": [[0, 0], [50, 0], [50, 30]]}
POINT = {"type": "Point", "coordinates": [3, 4]}
POLY = {"type": "Polygon", "coordinates": SQUARE}


def _examples(cim_building: Building) -> list[CityObject]:
    return [
        cim_building,
        BuildingPart(id="bldg-0001-p1", parent_id="bldg-0001", geometry=POLY, height=3.0),
        Road(id="road-1", geometry=LINE, road_class="Primary", name="Chang'an Ave", lanes=4, width_m=14.5),
        LandCover(id="lc-1", geometry=POLY, cover_class="grass", confidence=0.7),
        WaterBody(id="w-1", geometry=POLY, water_class="lake", name="Kunming Lake"),
        Vegetation(id="tree-1", geometry=POINT, height=11.5, crown_radius=3.2, species="Sophora japonica"),
        Sensor(
            id="aq-7", geometry=POINT, station_kind="air_quality", variables=["pm25", "no2"],
            units={"pm25": "ug/m3", "no2": "ug/m3"}, classification="confidential",
        ),
    ]  # fmt: skip


def test_round_trip_every_kind(cim_building):
    adapter = TypeAdapter(list[AnyCityObject])
    objects = _examples(cim_building)
    assert {o.type for o in objects} == set(CITY_OBJECT_TYPES)
    for obj in objects:
        text = obj.model_dump_json()
        again = parse_city_object(text)
        assert type(again) is type(obj) and again == obj
        assert parse_city_object(obj.model_dump(mode="json")) == obj
        assert type(obj).model_validate_json(text) == obj
    assert adapter.validate_json(adapter.dump_json(objects)) == objects


def test_road_class_normalised_and_defaults(cim_building):
    road = Road(id="r", geometry=LINE, road_class=" Primary ")
    assert road.road_class == "primary" and road.closed is False and road.oneway is False
    assert cim_building.classification is Classification.internal
    assert cim_building.provenance_for("height")[0].confidence == 0.9


def test_unknown_type_and_extra_fields_rejected():
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        parse_city_object({"type": "Bridge", "id": "x", "geometry": POLY})
    with pytest.raises(ValidationError, match="Extra inputs"):
        parse_city_object({"type": "Road", "id": "x", "geometry": LINE, "colour": "red"})
    with pytest.raises(ValidationError, match="roof_type"):
        Building(id="x", geometry=POLY, roof_type="pagoda")


def test_id_rules():
    with pytest.raises(ValidationError):
        Road(id="", geometry=LINE)
    with pytest.raises(ValidationError):
        Road(id="has space", geometry=LINE)


def test_geometry_type_per_class():
    with pytest.raises(ValidationError, match="Building geometry must be one of Polygon, MultiPolygon"):
        Building(id="b", geometry=POINT)
    with pytest.raises(ValidationError, match="Sensor geometry"):
        Sensor(id="s", geometry=POLY, station_kind="weather")
    Vegetation(id="wood", geometry=POLY)  # an area of vegetation is fine


def test_valid_time():
    beijing = timezone(timedelta(hours=8))
    b = Building(
        id="b",
        geometry=POLY,
        valid_from=datetime(2020, 1, 1, 8, tzinfo=beijing),
        valid_to="2030-01-01T00:00:00Z",
    )
    assert b.valid_from == datetime(2020, 1, 1, tzinfo=UTC) and b.valid_from.tzinfo is UTC
    assert b.is_valid_at(datetime(2025, 1, 1, tzinfo=UTC))
    assert not b.is_valid_at(datetime(2030, 1, 1, tzinfo=UTC))  # valid_to is exclusive
    assert not b.is_valid_at(datetime(2019, 1, 1, tzinfo=UTC))
    with pytest.raises(ValidationError, match="valid_to .* must be after valid_from"):
        Building(id="b", geometry=POLY, valid_from="2021-01-01T00:00:00Z", valid_to="2020-01-01T00:00:00Z")
    with pytest.raises(ValidationError, match="must be after"):
        Building(
            id="b", geometry=POLY, valid_from="2021-01-01T00:00:00Z", valid_to="2021-01-01T08:00:00+08:00"
        )
    with pytest.raises(ValidationError, match="timezone"):
        Building(id="b", geometry=POLY, valid_from=datetime(2020, 1, 1))


def test_sensor_units_must_match_variables():
    with pytest.raises(ValidationError, match="no unit for variable"):
        Sensor(id="s", geometry=POINT, station_kind="weather", variables=["t2m"], units={})
    with pytest.raises(ValidationError, match="unknown variable"):
        Sensor(id="s", geometry=POINT, station_kind="weather", variables=[], units={"t2m": "degC"})


def test_observation():
    o = Observation(
        sensor_id="aq-7", time="2024-05-01T08:00:00+08:00", variable="pm25", value=35.0, unit="ug/m3"
    )
    assert o.quality_flag is ObservationFlag.good and o.time.hour == 0
    assert Observation.model_validate_json(o.model_dump_json()) == o
    gap = Observation(sensor_id="aq-7", time=o.time, variable="pm25", value=float("nan"), unit="ug/m3")
    assert gap.value is None and gap.quality_flag is ObservationFlag.missing
    assert Observation.model_validate_json(gap.model_dump_json()) == gap
    with pytest.raises(ValidationError):
        Observation(sensor_id="aq-7", time=o.time, variable="pm25", value=float("inf"), unit="ug/m3")
    assert not isinstance(o, CityObject)


# ---- solids ----


def test_solid_validation(lod22_solid):
    data = lod22_solid.model_dump()
    bad = {**data, "boundaries": [[[[0, 1, 99]]] + data["boundaries"][0][1:]]}
    with pytest.raises(ValidationError, match="vertex index 99 out of range"):
        Solid.model_validate(bad)
    with pytest.raises(ValidationError, match="at least 4 faces"):
        Solid.model_validate({**data, "boundaries": [data["boundaries"][0][:3]], "semantics": None})
    with pytest.raises(ValidationError, match="only 3 surfaces"):
        Solid.model_validate({**data, "semantics": {**data["semantics"], "values": [[0, 1, 1, 1, 1, 2, 3]]}})
    with pytest.raises(ValidationError, match="6 entries for 7 faces"):
        Solid.model_validate({**data, "semantics": {**data["semantics"], "values": [[0, 1, 1, 1, 1, 2]]}})
    with pytest.raises(ValidationError):
        Solid.model_validate({**data, "vertices": [[0, 0]] + data["vertices"][1:]})
    with pytest.raises(ValidationError, match="CityJSON LoD"):
        Building(id="b", geometry=POLY, lods={"lod2": lod22_solid})
    assert lod22_solid.bounds() == (0, 0, 0, 10, 8, 9)


def _signed_volume(vertices, shell) -> float:
    # divergence theorem on fan-triangulated outer rings: positive when faces point outwards
    vol = 0.0
    for face in shell:
        ring = [vertices[i] for i in face[0]]
        a = ring[0]
        for b, c in zip(ring[1:-1], ring[2:], strict=True):
            vol += (
                a[0] * (b[1] * c[2] - b[2] * c[1])
                - a[1] * (b[0] * c[2] - b[2] * c[0])
                + a[2] * (b[0] * c[1] - b[1] * c[0])
            ) / 6.0
    return vol


def test_extrude_orientation_and_holes():
    poly = Geometry(
        type="Polygon", coordinates=[[[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]]]
    )  # clockwise input
    s = Solid.extrude(poly, 2.0, 14.0)
    assert _signed_volume(s.vertices, s.boundaries[0]) == pytest.approx(10 * 10 * 12)
    holed = Geometry(
        type="Polygon",
        coordinates=[[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]], [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]],
    )
    s2 = Solid.extrude(holed, 0.0, 10.0)
    assert s2.face_count() == 2 + 4 + 4
    assert len(s2.boundaries[0][0]) == 2  # ground face with one hole
    # volume via outer rings only overcounts the hole's ground/roof; walls of the hole subtract it back
    with pytest.raises(ValueError, match="top_z"):
        Solid.extrude(poly, 5.0, 5.0)
    with pytest.raises(ValueError, match="Polygon footprint"):
        Solid.extrude(Geometry(type="Point", coordinates=[0, 0]), 0.0, 1.0)


def test_lod22_solid_is_closed_and_outward(lod22_solid):
    assert _signed_volume(lod22_solid.vertices, lod22_solid.boundaries[0]) == pytest.approx(
        10 * 8 * 6 + 0.5 * 8 * 3 * 10
    )
    # closed 2-manifold: every directed edge appears once, and its reverse once
    edges = []
    for face in lod22_solid.boundaries[0]:
        ring = face[0]
        edges += [(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]
    assert len(edges) == len(set(edges))
    assert {(b, a) for a, b in edges} == set(edges)


# ---- CityJSON 2.0 ----

_CITYJSON_SEMANTIC_TYPES = {
    "RoofSurface", "GroundSurface", "WallSurface", "ClosureSurface", "OuterCeilingSurface",
    "OuterFloorSurface", "Window", "Door", "InteriorWallSurface", "CeilingSurface", "FloorSurface",
}  # fmt: skip


def _depth(x) -> int:
    d = 0
    while isinstance(x, list):
        if not x:
            return d + 1
        x = x[0]
        d += 1
    return d


def _check_cityjson_solid(geom: dict, n_vertices: int) -> None:
    """The CityJSON 2.0 rules for a Solid geometry object."""
    assert set(geom) <= {"type", "lod", "boundaries", "semantics", "material", "texture"}
    assert geom["type"] == "Solid"
    assert isinstance(geom["lod"], str) and geom["lod"][0] in "0123"
    b = geom["boundaries"]
    assert _depth(b) == 4, "Solid boundaries are arrays of shells of surfaces of rings of indices"
    for shell in b:
        for surface in shell:
            for ring in surface:
                assert len(ring) >= 3
                assert all(isinstance(i, int) and 0 <= i < n_vertices for i in ring)
    if "semantics" in geom:
        sem = geom["semantics"]
        assert set(sem) == {"surfaces", "values"}
        assert all(s["type"] in _CITYJSON_SEMANTIC_TYPES for s in sem["surfaces"])
        values = sem["values"]
        assert _depth(values) == 2, "Solid semantic values are arrays of arrays (shell, surface)"
        assert [len(v) for v in values] == [len(shell) for shell in b]
        assert all(v is None or 0 <= v < len(sem["surfaces"]) for shell in values for v in shell)


def test_building_to_cityjson_own_vertices(cim_building):
    obj = cim_building.to_cityjson()
    assert obj["type"] == "Building"
    assert obj["attributes"] == {
        "yearOfConstruction": 1998, "measuredHeight": 9.0, "roofType": "gable", "storeysAboveGround": 2,
        "function": "residential",
    }  # fmt: skip
    assert [g["lod"] for g in obj["geometry"]] == ["1.2", "2.2"]
    for g in obj["geometry"]:
        _check_cityjson_solid(g, len(cim_building.lods[g["lod"]].vertices))
    g22 = obj["geometry"][1]
    assert g22["boundaries"] == cim_building.lods["2.2"].boundaries
    assert g22["semantics"]["surfaces"] == [
        {"type": "GroundSurface"},
        {"type": "WallSurface"},
        {"type": "RoofSurface"},
    ]
    assert g22["semantics"]["values"] == [[0, 1, 1, 1, 1, 2, 2]]


def test_building_to_cityjson_shared_vertices(cim_building):
    shared = [[-1.0, -1.0, -1.0]]
    obj = cim_building.to_cityjson(shared)
    n12 = len(cim_building.lods["1.2"].vertices)
    assert len(shared) == 1 + n12 + len(cim_building.lods["2.2"].vertices)
    g12, g22 = obj["geometry"]
    assert min(i for sh in g12["boundaries"] for f in sh for r in f for i in r) == 1
    assert g22["boundaries"][0][0][0][0] == cim_building.lods["2.2"].boundaries[0][0][0][0] + 1 + n12
    for g in obj["geometry"]:
        _check_cityjson_solid(g, len(shared))
        lod = cim_building.lods[g["lod"]]
        for sh_out, sh_in in zip(g["boundaries"], lod.boundaries, strict=True):
            for f_out, f_in in zip(sh_out, sh_in, strict=True):
                assert [[shared[i] for i in r] for r in f_out] == [[lod.vertices[i] for i in r] for r in f_in]


def test_cityjson_document(cim_building):
    part = BuildingPart(
        id="bldg-0001-annex",
        parent_id=cim_building.id,
        geometry=POLY,
        lods={"1.2": Solid.extrude(Geometry(**POLY), 0, 3)},
    )
    doc = cityjson_document([cim_building, part], epsg=4547)
    assert doc["type"] == "CityJSON" and doc["version"] == "2.0"
    assert doc["metadata"]["referenceSystem"] == "https://www.opengis.net/def/crs/EPSG/0/4547"
    assert set(doc["transform"]) == {"scale", "translate"}
    assert all(isinstance(c, int) for v in doc["vertices"] for c in v)
    assert doc["CityObjects"][cim_building.id]["children"] == [part.id]
    assert doc["CityObjects"][part.id]["parents"] == [cim_building.id]
    assert doc["CityObjects"][part.id]["type"] == "BuildingPart"
    for obj in doc["CityObjects"].values():
        for g in obj["geometry"]:
            _check_cityjson_solid(g, len(doc["vertices"]))
    # dequantised vertices reproduce the input
    s, t = doc["transform"]["scale"], doc["transform"]["translate"]
    real = [[v[i] * s[i] + t[i] for i in range(3)] for v in doc["vertices"]]
    n = len(cim_building.lods["1.2"].vertices)
    flat = [c for v in real[:n] for c in v]
    assert flat == pytest.approx([c for v in cim_building.lods["1.2"].vertices for c in v])
    with pytest.raises(ValueError, match="not in the document"):
        cityjson_document([part])
