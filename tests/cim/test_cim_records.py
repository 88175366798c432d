import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from data_models import (
    AddBuilding,
    Aggregation,
    Branch,
    Change,
    ChangeLandCover,
    Classification,
    CloseRoad,
    Commit,
    DemandChange,
    LayerSpec,
    ModifyBuilding,
    RainfallEvent,
    RemoveBuilding,
    RunStatus,
    Scenario,
    ScenarioEdit,
    SimulationRun,
    SourceAsset,
    SourceKind,
    parse_edit,
    parse_time_bucket,
)

SHA = hashlib.sha256(b"twin").hexdigest()
POLY = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}


def _round_trip(model):
    again = type(model).model_validate_json(model.model_dump_json())
    assert again == model
    return again


# ---- source assets ----


def _asset(**kw) -> SourceAsset:
    base = dict(
        id="lidar-2023", kind="pointcloud", path="data/tile_1.laz", crs="epsg:4547", checksum=SHA,
        size_bytes=1024,
        extent={"bbox": [448000, 4428000, 449000, 4429000], "bbox_wgs84": [116.39, 39.99, 116.40, 40.0]},
        acquired="2023-06-01T10:00:00+08:00", licence="CC-BY-4.0", classification="Internal",
        producer="BJ Survey",
    )  # fmt: skip
    base.update(kw)
    return SourceAsset(**base)


@pytest.mark.parametrize("kind", list(SourceKind))
def test_source_asset_round_trip(kind):
    a = _round_trip(_asset(kind=kind))
    assert a.kind is kind and a.crs == "EPSG:4547" and a.asset_version == 1
    assert a.classification is Classification.internal
    assert a.acquired == datetime(2023, 6, 1, 2, tzinfo=UTC)
    assert a.ingested.tzinfo is UTC


def test_source_asset_checksum():
    assert _asset(checksum="sha256:" + SHA.upper()).checksum == SHA
    for bad in ["abc", SHA[:-1], SHA[:-1] + "g", "md5:" + SHA]:
        with pytest.raises(ValidationError, match="SHA-256 digest"):
            _asset(checksum=bad)


def test_source_asset_other_errors():
    with pytest.raises(ValidationError, match="min <= max"):
        _asset(extent={"bbox": [10, 0, 0, 10]})
    with pytest.raises(ValidationError, match="outside"):
        _asset(extent={"bbox": [0, 0, 1, 1], "bbox_wgs84": [116, 39, 200, 40]})
    with pytest.raises(ValidationError):
        _asset(asset_version=0)
    with pytest.raises(ValidationError):
        _asset(kind="lidar")
    with pytest.raises(ValidationError, match="timezone"):
        _asset(acquired=datetime(2023, 6, 1))


def test_stac_item():
    item = _asset().to_stac_item()
    assert item["type"] == "Feature" and item["stac_version"] == "1.0.0" and item["id"] == "lidar-2023@1"
    assert item["bbox"] == [116.39, 39.99, 116.40, 40.0]
    assert item["properties"]["datetime"] == "2023-06-01T02:00:00Z"
    assert item["properties"]["proj:epsg"] == 4547
    assert item["assets"]["data"]["file:checksum"] == "1220" + SHA
    undated = _asset(acquired=None, extent=None).to_stac_item()
    assert undated["properties"]["datetime"] is None and undated["geometry"] is None


# ---- layers ----


def test_layer_spec_round_trip_and_normalisation():
    spec = LayerSpec(
        name="pm25_hourly", variable="pm25", unit="ug/m3", kind="intensive", aggregation="area_weighted_mean",
        resolutions=[9, 7, 9, 8], time_bucket="PT1H", lineage=["aq-sensors"], classification="internal",
    )  # fmt: skip
    assert spec.resolutions == [7, 8, 9] and spec.finest_resolution == 9
    assert spec.time_bucket == "1h" and spec.time_bucket_delta == timedelta(hours=1)
    _round_trip(spec)
    count = LayerSpec(name="buildings", variable="buildings", unit="1", aggregation="count", resolutions=[9])
    assert count.kind == "extensive" and count.time_bucket is None
    _round_trip(count)
    assert (
        LayerSpec(name="h", variable="height", unit="m", aggregation="max", resolutions=[10]).kind
        == "intensive"
    )


@pytest.mark.parametrize(
    "bucket, delta",
    [("15min", timedelta(minutes=15)), ("1d", timedelta(days=1)), ("P1D", timedelta(days=1)),
     ("PT30M", timedelta(minutes=30)), ("2w", timedelta(weeks=2)), ("10s", timedelta(seconds=10))],
)  # fmt: skip
def test_time_buckets(bucket, delta):
    assert parse_time_bucket(bucket) == delta


@pytest.mark.parametrize("bucket", ["1m", "1mo", "P1M", "0h", "h", "1 h", "P1DT1H", "1y"])
def test_bad_time_buckets(bucket):
    with pytest.raises(ValidationError, match="not a fixed duration"):
        LayerSpec(name="x", variable="x", unit="1", aggregation="sum", resolutions=[9], time_bucket=bucket)


def test_layer_spec_errors():
    with pytest.raises(ValidationError, match="less than or equal to 15"):
        LayerSpec(name="x", variable="x", unit="1", aggregation="sum", resolutions=[9, 16])
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        LayerSpec(name="x", variable="x", unit="1", aggregation="sum", resolutions=[-1])
    with pytest.raises(ValidationError, match="at least 1 item"):
        LayerSpec(name="x", variable="x", unit="1", aggregation="sum", resolutions=[])
    with pytest.raises(ValidationError, match="not a slug"):
        LayerSpec(name="PM 2.5", variable="x", unit="1", aggregation="sum", resolutions=[9])
    with pytest.raises(ValidationError) as e:
        LayerSpec(
            name="no2", variable="no2", unit="ug/m3", kind="intensive", aggregation="sum", resolutions=[9]
        )
    msg = str(e.value)
    assert "aggregation 'sum' does not fit intensive variable 'no2'" in msg
    assert "area_weighted_mean, max, mean, min" in msg
    with pytest.raises(ValidationError, match="does not fit extensive variable"):
        LayerSpec(
            name="pop", variable="population", unit="1", kind="extensive", aggregation="mean", resolutions=[9]
        )
    with pytest.raises(ValidationError):
        LayerSpec(name="x", variable="x", unit="1", aggregation="median", resolutions=[9])
    assert Aggregation("area_weighted_mean") is Aggregation.area_weighted_mean


# ---- scenarios ----


def _edits() -> list:
    return [
        AddBuilding(building={"id": "new-1", "geometry": POLY, "height": 30.0}),
        RemoveBuilding(building_id="bldg-0002"),
        ModifyBuilding(building_id="bldg-0003", height=45.0, attributes={"use_note": "converted"}),
        CloseRoad(road_id="road-17"),
        ChangeLandCover(geometry=POLY, new_class="tree"),
        RainfallEvent(intensity_mm_h=60.0, duration_min=60.0, hyetograph=[20.0, 60.0, 40.0]),
        DemandChange(zone_id="zone-3", factor=1.2),
    ]


def test_scenario_round_trip():
    sc = Scenario(
        id="sc-park",
        name="New park",
        base_branch="main",
        base_version=3,
        branch="park",
        edits=_edits(),
        author="ana",
    )
    again = _round_trip(sc)
    assert [e.kind for e in again.edits] == [
        "add_building", "remove_building", "modify_building", "close_road", "change_land_cover",
        "rainfall_event", "demand_change",
    ]  # fmt: skip
    adapter = TypeAdapter(ScenarioEdit)
    for e in _edits():
        assert adapter.validate_json(adapter.dump_json(e)) == e
        assert parse_edit(e.model_dump(mode="json")) == e


def test_scenario_errors():
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        parse_edit({"kind": "demolish_city"})
    with pytest.raises(ValidationError, match="must differ"):
        Scenario(id="s", name="s", branch="main", author="a")
    with pytest.raises(ValidationError, match="not a slug"):
        Scenario(id="s", name="s", branch="My Branch", author="a")
    with pytest.raises(ValidationError, match="changes nothing"):
        ModifyBuilding(building_id="b")
    with pytest.raises(ValidationError, match="Polygon or MultiPolygon"):
        ChangeLandCover(geometry={"type": "Point", "coordinates": [0, 0]}, new_class="tree")
    with pytest.raises(ValidationError, match="zone_id or a geometry"):
        DemandChange(factor=2)
    with pytest.raises(ValidationError, match="hyetograph peak"):
        RainfallEvent(intensity_mm_h=10, duration_min=30, hyetograph=[5, 20])
    with pytest.raises(ValidationError):
        RainfallEvent(intensity_mm_h=10, duration_min=0)


def test_rainfall_depth_and_modify_apply():
    assert RainfallEvent(intensity_mm_h=30, duration_min=120).total_depth_mm() == pytest.approx(60)
    assert RainfallEvent(
        intensity_mm_h=60, duration_min=60, hyetograph=[20, 60, 40]
    ).total_depth_mm() == pytest.approx(40)
    from data_models import Building, Solid

    b = Building(id="b", geometry=POLY, height=10, attributes={"a": 1, "b": 2}, lods={"1.2": Solid.extrude(
        Building(id="x", geometry=POLY).geometry, 0, 10)})  # fmt: skip
    m = ModifyBuilding(building_id="b", height=20, use="office", attributes={"a": None, "c": 3}).apply(b)
    assert (m.height, m.use, m.attributes, m.lods) == (20, "office", {"b": 2, "c": 3}, {})
    assert b.height == 10  # original untouched
    with pytest.raises(ValueError, match="targets"):
        ModifyBuilding(building_id="other", height=1).apply(b)


# ---- runs & versions ----


def test_simulation_run():
    run = SimulationRun(
        id="run-1", simulator="flood", branch="park", version=4, parameters={"dt_s": 5},
        code_version="twin 0.1.0+g1234abc", status="succeeded", started="2024-05-01T00:00:00Z",
        finished="2024-05-01T00:01:30Z", timings={"solve": 80.5}, outputs=["flood_depth"],
    )  # fmt: skip
    assert _round_trip(run).duration_s == 90 and run.status is RunStatus.succeeded
    with pytest.raises(ValidationError, match="finished must not be before started"):
        SimulationRun(**{**run.model_dump(), "finished": "2023-01-01T00:00:00Z"})
    with pytest.raises(ValidationError):
        SimulationRun(**{**run.model_dump(), "status": "done"})
    with pytest.raises(ValidationError, match="non-negative"):
        SimulationRun(**{**run.model_dump(), "timings": {"solve": -1}})


def test_commit_branch_change():
    c = Commit(version=2, branch="main", parent_version=1, author="ingest", message="add buildings",
               changes={"added": 120, "modified": 3})  # fmt: skip
    assert _round_trip(c).changes.total == 123 and c.time.tzinfo is UTC
    first = Commit(version=1, author="ingest")
    assert first.parent_version is None and first.changes.total == 0
    with pytest.raises(ValidationError, match="must be less than version"):
        Commit(version=2, parent_version=2, author="a")
    with pytest.raises(ValidationError):
        Commit(version=0, author="a")
    with pytest.raises(ValidationError):
        Commit(version=1, author="a", changes={"added": -1})
    br = Branch(name="park", base_branch="main", base_version=2, author="ana", description="new park")
    _round_trip(br)
    _round_trip(Branch(name="main", author="system"))
    with pytest.raises(ValidationError, match="base_branch is not"):
        Branch(name="park", base_version=2, author="a")
    with pytest.raises(ValidationError, match="based on itself"):
        Branch(name="park", base_branch="park", author="a")
    ch = Change(version=2, entity_id="bldg-0001", op="modify")
    _round_trip(ch)
    with pytest.raises(ValidationError):
        Change(version=2, entity_id="bldg-0001", op="update")
