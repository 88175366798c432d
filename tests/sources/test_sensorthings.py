"""SensorThings API JSON: expanded responses and flat exports give the same Sensors and observations."""

from __future__ import annotations

import copy
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import pytest

from twin.pipeline.ingest import ingest_paths
from twin.sources import ReadContext, SourceError, sensorthings
from twin.sources import read as read_source
from twin.store import Query, Store

STORE_CRS = "EPSG:4548"
BASE = "https://sta.example.org/v1.1"
UG = {"name": "microgram per cubic metre", "symbol": "µg/m³", "definition": "http://unitsofmeasure.org/ucum.html#ug/m3"}


def _obs(oid: int, time: str, result) -> dict:
    return {"@iot.id": oid, "@iot.selfLink": f"{BASE}/Observations({oid})", "phenomenonTime": time,
            "resultTime": time, "result": result}


def expanded() -> dict:
    """A response to Things?$expand=Locations,Datastreams/ObservedProperty,Datastreams/Observations (v1.1)."""
    return {
        "@iot.count": 2,
        "value": [
            {
                "@iot.id": 1, "@iot.selfLink": f"{BASE}/Things(1)", "name": "Dongsi",
                "description": "national air-quality monitoring site",
                "properties": {"station_kind": "air_quality", "operator": "BJMEMC"},
                "Locations": [{"@iot.id": 11, "name": "Dongsi site", "description": "roof",
                               "encodingType": "application/geo+json",
                               "location": {"type": "Point", "coordinates": [116.417, 39.929]}}],
                "Datastreams": [
                    {"@iot.id": 101, "name": "PM2.5 at Dongsi", "description": "hourly mean",
                     "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                     "unitOfMeasurement": UG,
                     "ObservedProperty": {"@iot.id": 1001, "name": "PM2.5",
                                          "definition": "http://vocab.example.org/pm25", "description": "fine dust"},
                     "Observations": [
                         _obs(1, "2024-05-27T00:00:00+08:00", 35.2),
                         _obs(2, "2024-05-27T01:00:00+08:00/2024-05-27T02:00:00+08:00", None),
                         _obs(3, "2024-05-26T18:00:00.000Z", "41.5"),
                     ]},
                    {"@iot.id": 102, "name": "Wind direction at Dongsi",
                     "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_CategoryObservation",
                     "unitOfMeasurement": {"name": None, "symbol": None, "definition": None},
                     "ObservedProperty": {"@iot.id": 1002, "name": "wind direction"},
                     "Observations": [_obs(4, "2024-05-27T00:00:00+08:00", "NNW")]},
                ],
            },
            {
                "@iot.id": "weather-7", "name": "Haidian weather mast", "description": "met mast",
                "properties": {"kind": "weather"},
                "Locations": [{"@iot.id": 12, "name": "mast", "encodingType": "application/vnd.geo+json",
                               "location": {"type": "Feature", "properties": {},
                                            "geometry": {"type": "Point", "coordinates": [116.31, 39.99]}}}],
                "Datastreams": [
                    {"@iot.id": 201, "name": "air temperature",
                     "unitOfMeasurement": {"name": "degree Celsius", "symbol": "°C", "definition": "ucum:Cel"},
                     "ObservedProperty": {"@iot.id": 1003, "name": "Temperature"},
                     "Observations": [_obs(5, "2024-05-26T16:00:00Z", 21), _obs(6, "2024-05-26T17:00:00Z", 20.5)]},
                ],
            },
        ],
    }


def export(doc: dict) -> dict:
    """The same content as a flat export: top-level entity arrays linked by @iot.id references."""
    things, locations, datastreams, observations, props = [], [], [], [], {}
    for t in copy.deepcopy(doc["value"]):
        for loc in t.pop("Locations"):
            loc["Things"] = [{"@iot.id": t["@iot.id"]}]
            locations.append(loc)
        for ds in t.pop("Datastreams"):
            op = ds.pop("ObservedProperty")
            props[op["@iot.id"]] = op
            ds["ObservedProperty@iot.id"] = op["@iot.id"]
            ds["Thing@iot.id"] = t["@iot.id"]
            for o in ds.pop("Observations"):
                o["Datastream"] = {"@iot.id": ds["@iot.id"]}
                observations.append(o)
            datastreams.append(ds)
        things.append(t)
    return {"Things": things, "Locations": locations, "Datastreams": datastreams,
            "ObservedProperties": list(props.values()), "Observations": observations}


def dump(path: Path, doc) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            json.dump(doc, f)
    else:
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def read(path: Path, **options):
    return read_source(ReadContext(path=path, store_crs=STORE_CRS, asset_id="src-sta", options=options), "sensors")


def _sorted(t: pa.Table) -> pa.Table:
    return t.sort_by([("sensor_id", "ascending"), ("variable", "ascending"), ("time", "ascending")])


def test_expanded_things_give_sensors_and_observations(tmp_path) -> None:
    got = read(dump(tmp_path / "things.json", expanded()))
    by_id = {e.id: e for e in got.entities}
    assert set(by_id) == {"sensor-1", "sensor-weather-7"}
    to_store = pyproj.Transformer.from_crs("EPSG:4326", STORE_CRS, always_xy=True)
    assert by_id["sensor-1"].geometry.coordinates == pytest.approx(to_store.transform(116.417, 39.929), abs=1e-6)
    assert by_id["sensor-weather-7"].geometry.coordinates == pytest.approx(to_store.transform(116.31, 39.99), abs=1e-6)
    assert by_id["sensor-1"].station_kind == "air_quality" and by_id["sensor-weather-7"].station_kind == "weather"
    assert by_id["sensor-1"].units == {"pm25": "ug/m3", "wind_direction": ""}
    assert by_id["sensor-1"].attributes["datastreams"] == {"pm25": 101, "wind_direction": 102}
    assert by_id["sensor-1"].name == "Dongsi" and by_id["sensor-1"].attributes["operator"] == "BJMEMC"
    obs = _sorted(got.tables["observations"])
    assert obs.column("variable").to_pylist() == ["pm25"] * 3 + ["temperature"] * 2
    assert obs.column("value").to_pylist() == [35.2, None, 41.5, 21.0, 20.5]  # the null result is kept
    assert obs.column("quality_flag").to_pylist() == ["good", "missing", "good", "good", "good"]
    assert obs.column("unit").to_pylist() == ["ug/m3"] * 3 + ["degC"] * 2
    times = obs.filter(pc.equal(obs.column("sensor_id"), "sensor-1")).column("time").to_pylist()
    # 18:00Z, 00:00+08 = 16:00Z, the interval 01:00+08/02:00+08 starts at 17:00Z
    assert sorted(times) == [datetime(2024, 5, 26, 16, tzinfo=UTC), datetime(2024, 5, 26, 17, tzinfo=UTC),
                             datetime(2024, 5, 26, 18, tzinfo=UTC)]
    text = got.tables["observations_text"]
    assert text.column("value").to_pylist() == ["NNW"] and text.column("variable").to_pylist() == ["wind_direction"]
    assert got.info["things"] == 2 and got.info["observations"] == 6
    assert got.info["bbox"] == pytest.approx([116.31, 39.929, 116.417, 39.99])


def test_flat_export_reads_like_the_expanded_response(tmp_path) -> None:
    a = read(dump(tmp_path / "things.json", expanded()))
    b = read(dump(tmp_path / "export.json.gz", export(expanded())))
    assert _sorted(a.tables["observations"]).equals(_sorted(b.tables["observations"]))
    assert a.tables["observations_text"].equals(b.tables["observations_text"])
    assert [e.model_dump() for e in sorted(a.entities, key=lambda e: e.id)] == \
        [e.model_dump() for e in sorted(b.entities, key=lambda e: e.id)]


def test_datastreams_with_thing_expanded_and_multidatastreams(tmp_path) -> None:
    doc = {"value": [
        {"@iot.id": "ds-1", "name": "noise", "unitOfMeasurement": {"symbol": "dB(A)"},
         "ObservedProperty": {"name": "LAeq"},
         "Thing": {"@iot.id": "n1", "name": "noise box", "Locations": [
             {"@iot.id": "l1", "encodingType": "application/geo+json",
              "location": {"type": "Point", "coordinates": [116.40, 39.91]}}]},
         "Observations": [_obs(1, "2024-05-27T00:00:00Z", 55.5)]},
        {"@iot.id": "md-1", "name": "climate", "unitOfMeasurements": [{"symbol": "°C"}, {"symbol": "%"}],
         "ObservedProperties": [{"name": "temperature"}, {"name": "relative humidity"}],
         "Thing": {"@iot.id": "n1"},
         "Observations": [_obs(2, "2024-05-27T00:00:00Z", [20.5, 61]), _obs(3, "2024-05-27T01:00:00Z", [None, 63])]},
    ]}
    got = read(dump(tmp_path / "ds.json", doc), station_kind="noise")
    assert [e.id for e in got.entities] == ["sensor-n1"]
    assert got.entities[0].units == {"laeq": "dB(A)", "temperature": "degC", "relative_humidity": "%"}
    obs = _sorted(got.tables["observations"])
    assert obs.column("variable").to_pylist() == ["laeq", "relative_humidity", "relative_humidity", "temperature",
                                                  "temperature"]
    assert obs.column("value").to_pylist() == [55.5, 61.0, 63.0, 20.5, None]


def test_reached_through_ingest_with_kind_sensors(tmp_path) -> None:
    path = dump(tmp_path / "sta.json", expanded())
    store = Store.init(tmp_path / "store", STORE_CRS)
    assert ingest_paths(store, [path], kind="sensors") is not None
    assert store.count(query=Query(types=["Sensor"])) == 2
    assert store.read_table("observations", columns="count(*) AS n")["n"][0].as_py() == 5
    assert store.read_table("observations_text", columns="count(*) AS n")["n"][0].as_py() == 1


def test_bad_sensorthings_files(tmp_path) -> None:
    def fails(path: Path, *words: str) -> None:
        with pytest.raises(SourceError) as exc:
            read(path)
        assert exc.value.path == str(path)
        for w in words:
            assert w in str(exc.value)

    (tmp_path / "broken.json").write_text('{"value": [{"@iot.id": 1, "Datastreams": [', encoding="utf-8")
    fails(tmp_path / "broken.json", "not valid JSON")
    orphan = {"Datastreams": [{"@iot.id": 5, "name": "x", "unitOfMeasurement": {"symbol": "m"}}]}
    fails(dump(tmp_path / "orphan.json", orphan), "Datastream 5", "not linked to a Thing")
    west = expanded()
    west["value"][0]["Locations"][0]["location"]["coordinates"] = [-116.417, 39.929]
    fails(dump(tmp_path / "west.json", west), "outside the area of use", "wrong hemisphere")
    naive = expanded()
    naive["value"][1]["Datastreams"][0]["Observations"][0]["phenomenonTime"] = "2024-05-26T16:00:00"
    fails(dump(tmp_path / "naive.json", naive), "some times carry a zone")
    wkt = expanded()
    wkt["value"][0]["Locations"][0]["encodingType"] = "text/plain"
    fails(dump(tmp_path / "wkt.json", wkt), "encodingType")
    fails(dump(tmp_path / "empty.json", {"value": []}), "SensorThings")
    fails(dump(tmp_path / "bare.json", {"value": [{"@iot.id": 1, "name": "x"}]}),
          "no SensorThings Things with a Location")


def test_direct_reader_matches_dispatch(tmp_path) -> None:
    path = dump(tmp_path / "things.json", expanded())
    ctx = ReadContext(path=path, store_crs=STORE_CRS, asset_id="src-sta")
    assert sensorthings.read(ctx).tables["observations"].equals(read(path).tables["observations"])
